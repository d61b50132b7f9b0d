// spdlog_bench.cpp: the "spdlog-async" contender of the benchmark.
//
// spdlog's async logger (queue of 8192 messages, one worker thread, overflow
// policy block) with one counting sink. Producers call
// logger->info("hello {}", v); the sink parses the formatted payload back
// (bench_parse_hello) and hands the value to bench_sink_take. The sink never
// runs a pattern formatter: it reads msg.payload, the formatted message only.
//
// Output: one JSON object per line on stdout (bench_common.h); diagnostics on
// stderr. Arguments: --records N --reps R --latency-calls C.
#include "bench_common.h"

#include <spdlog/async.h>
#include <spdlog/async_logger.h>
#include <spdlog/details/null_mutex.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

const char *const kContender = "spdlog-async";
const size_t kQueueSize = 8192;

// The sink runs on the pool's single worker thread, hence null_mutex. When it
// has taken `target` records it signals the waiting main thread.
class counting_sink final : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
public:
    explicit counting_sink(uint64_t target) : target_(target) { bench_sink_init(&sink_); }

    // Waits until the sink has taken `target` records, or until `timeout`
    // passes (a guard against a lost record hanging the run). True if reached.
    bool wait_done(std::chrono::milliseconds timeout) {
        std::unique_lock<std::mutex> lock(mu_);
        return cv_.wait_for(lock, timeout, [this] { return done_; });
    }

    // Only read after the worker thread has been joined.
    const bench_sink &state() const { return sink_; }

protected:
    void sink_it_(const spdlog::details::log_msg &msg) override {
        bench_sink_take(&sink_, bench_parse_hello(msg.payload.data(), msg.payload.size()));
        if (sink_.count == target_) {
            std::lock_guard<std::mutex> lock(mu_);
            done_ = true;
            cv_.notify_one();
        }
    }
    void flush_() override {}

private:
    bench_sink sink_;
    uint64_t target_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool done_ = false;
};

// A fresh thread pool, sink and logger for one rep.
struct rig {
    std::shared_ptr<counting_sink> sink;
    std::shared_ptr<spdlog::details::thread_pool> pool;
    std::shared_ptr<spdlog::async_logger> logger;

    explicit rig(uint64_t target) {
        sink = std::make_shared<counting_sink>(target);
        pool = std::make_shared<spdlog::details::thread_pool>(kQueueSize, 1);
        logger = std::make_shared<spdlog::async_logger>("bench", sink, pool,
                                                        spdlog::async_overflow_policy::block);
        logger->set_level(spdlog::level::info);
        logger->flush_on(spdlog::level::off);
    }

    // Waits for the sink to take every record (with a generous guard), then
    // drops the logger and joins the worker (which handles anything still
    // queued first). Returns false if the guard expired.
    bool finish(uint64_t records) {
        auto guard = std::chrono::milliseconds(30000 + records / 200);  // 30 s + 5 us/record
        return sink->wait_done(guard);
    }
    void teardown() {
        logger.reset();
        pool.reset();  // posts terminate and joins the worker
    }
};

void run_e2e(uint32_t producers, uint32_t n, int rep) {
    const uint64_t total = (uint64_t)producers * n;
    rig r(total);
    std::atomic<uint32_t> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    threads.reserve(producers);
    spdlog::async_logger *log = r.logger.get();
    // Each producer reads the clock once released; the span starts at the
    // earliest (as in ql_bench.c and py_bench.py).
    std::vector<uint64_t> starts(producers);
    for (uint32_t p = 0; p < producers; p++) {
        threads.emplace_back([&, p] {
            ready.fetch_add(1, std::memory_order_acq_rel);
            while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
            starts[p] = bench_now_ns();
            for (uint32_t i = 1; i <= n; i++) log->info("hello {}", bench_value(p, i));
        });
    }
    while (ready.load(std::memory_order_acquire) != producers) std::this_thread::yield();
    go.store(true, std::memory_order_release);
    for (auto &t : threads) t.join();
    uint64_t t0 = starts[0];
    for (uint64_t s : starts) t0 = s < t0 ? s : t0;
    bool reached = r.finish(total);
    uint64_t t1 = bench_now_ns();
    r.teardown();

    char why[256];
    if (bench_sink_verify(&r.sink->state(), producers, n, why, sizeof why) == 0 && !reached)
        snprintf(why, sizeof why, "timed out waiting for the sink");
    if (!reached) fprintf(stderr, "spdlog_bench: e2e P=%u rep %d: sink never reached %llu\n",
                          producers, rep, (unsigned long long)total);
    bench_emit_e2e(kContender, "message", rep, producers, n, t1 - t0, why);
}

void emit_latency_failure(const char *mode, int rep, size_t calls, const char *why) {
    printf("{\"workload\":\"latency\",\"contender\":\"%s\",\"mode\":\"%s\",\"rep\":%d,"
           "\"calls\":%zu,\"ok\":false,\"error\":\"%s\"}\n",
           kContender, mode, rep, calls, why);
    fflush(stdout);
}

void run_latency(bool paced, uint32_t calls, int rep, std::vector<uint64_t> &ticks) {
    const char *mode = paced ? "paced" : "saturating";
    rig r(calls);
    spdlog::async_logger *log = r.logger.get();
    uint64_t *d = ticks.data();
    if (paced) {
        for (uint32_t i = 1; i <= calls; i++) {
            uint64_t a = bench_ticks();
            log->info("hello {}", bench_value(0, i));
            uint64_t b = bench_ticks();
            d[i - 1] = b - a;
            if (i % 64 == 0) bench_pause_ns(50000);
        }
    } else {
        for (uint32_t i = 1; i <= calls; i++) {
            uint64_t a = bench_ticks();
            log->info("hello {}", bench_value(0, i));
            uint64_t b = bench_ticks();
            d[i - 1] = b - a;
        }
    }
    bool reached = r.finish(calls);
    r.teardown();

    char why[256];
    if (bench_sink_verify(&r.sink->state(), 1, calls, why, sizeof why) == 0 && !reached)
        snprintf(why, sizeof why, "timed out waiting for the sink");
    if (why[0])
        emit_latency_failure(mode, rep, calls, why);
    else
        bench_emit_latency(kContender, mode, rep, d, calls);
}

[[noreturn]] void usage(const char *why) {
    fprintf(stderr,
            "spdlog_bench: %s\n"
            "usage: spdlog_bench [--records N] [--reps R] [--latency-calls C]\n"
            "  N: records per producer (default 1000000, at most 4294967295)\n"
            "  R: repetitions of each measurement (default 5)\n"
            "  C: calls per latency run (default 128000, a multiple of 64)\n",
            why);
    exit(2);
}

unsigned long long parse_arg(const char *name, const char *s, unsigned long long max) {
    if (!s) usage((std::string(name) + " needs a value").c_str());
    char *end = nullptr;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v == 0 || v > max)
        usage((std::string("bad value for ") + name + ": " + s).c_str());
    return v;
}

}  // namespace

int main(int argc, char **argv) {
    uint32_t records = 1000000, calls = 128000;
    int reps = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : nullptr;
        if (strcmp(a, "--records") == 0) {
            records = (uint32_t)parse_arg(a, v, 0xffffffffu);
            i++;
        } else if (strcmp(a, "--reps") == 0) {
            reps = (int)parse_arg(a, v, 1000000);
            i++;
        } else if (strcmp(a, "--latency-calls") == 0) {
            calls = (uint32_t)parse_arg(a, v, 0xffffffffu);
            if (calls % 64) usage("--latency-calls must be a multiple of 64");
            i++;
        } else {
            usage((std::string("unknown argument ") + a).c_str());
        }
    }

    bench_ticks_per_ns();  // calibrate once, outside every measurement

    std::vector<uint64_t> ticks(calls);
    for (int rep = 0; rep < reps; rep++) {
        for (uint32_t producers = 1; producers <= 2; producers++) run_e2e(producers, records, rep);
        for (int paced = 1; paced >= 0; paced--) run_latency(paced != 0, calls, rep, ticks);
    }
    return 0;
}
