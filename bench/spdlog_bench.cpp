// spdlog_bench.cpp: the "spdlog-async" contender of the benchmark.
//
// spdlog's async logger (queue of 8192 messages, one worker thread, overflow
// policy block) with one counting sink. Producers call
// logger->info("hello {}", v); the sink parses the formatted payload back
// (bench_parse_hello) and hands the value to bench_sink_take. The sink never
// runs a pattern formatter: it reads msg.payload, the formatted message only.
//
// The file sink workload (after the others): the same async logger with
// basic_file_sink_mt or rotating_file_sink_mt (8 MiB, 3 backups) and a
// pattern giving the library's default line; the file is read back and
// checked (bench_file.h).
//
// Output: one JSON object per line on stdout (bench_common.h); diagnostics on
// stderr. Arguments: --records N --reps R --latency-calls C --file-dir DIR
// [--no-file | --file-only].
#include "bench_common.h"
#include "bench_file.h"
#include "peer_bench.h"

#include <spdlog/async.h>
#include <spdlog/async_logger.h>
#include <spdlog/details/null_mutex.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/rotating_file_sink.h>
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

// The sink runs on the pool's single worker thread, hence null_mutex. It hands
// each payload to a peer_sink (peer_bench.h: bench_sink_take, and a signal to
// the waiting main thread when it has taken `target` records).
class counting_sink final : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
public:
    explicit counting_sink(uint64_t target) : sink_(target) {}

    // Waits until the sink has taken `target` records, or until `timeout`
    // passes (a guard against a lost record hanging the run). True if reached.
    bool wait_done(std::chrono::milliseconds timeout) { return sink_.wait_done(timeout); }

    // "" or why the run failed; only called after the worker thread has been joined.
    std::string verify(uint32_t producers, uint32_t n) const { return sink_.verify(producers, n); }

protected:
    void sink_it_(const spdlog::details::log_msg &msg) override {
        sink_.take(msg.payload.data(), msg.payload.size());
    }
    void flush_() override {}

private:
    peer_sink sink_;
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
        return sink->wait_done(peer_guard(records));  // 30 s + 5 us/record
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
    snprintf(why, sizeof why, "%s", r.sink->verify(producers, n).c_str());
    if (!why[0] && !reached) snprintf(why, sizeof why, "timed out waiting for the sink");
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
    snprintf(why, sizeof why, "%s", r.sink->verify(1, calls).c_str());
    if (!why[0] && !reached) snprintf(why, sizeof why, "timed out waiting for the sink");
    if (why[0])
        emit_latency_failure(mode, rep, calls, why);
    else
        bench_emit_latency(kContender, mode, rep, d, calls);
}

// ------------------------------------------------------------ file sink

// The library's default line, "{time} {level} [{thread}] {logger}:
// {message}": local time, ISO 8601 with milliseconds and UTC offset, level
// name (spdlog's is lower case), thread id (gettid), logger name, message.
const char *const kFilePattern = "%Y-%m-%dT%H:%M:%S.%e%z %l [%t] %n: %v";

// P producers call logger->info("hello {}", v) n times each on an async
// logger (queue 8192, one worker, block policy) with one file sink. The span
// ends when every line is in the file: logger->flush() (queued behind every
// record) then the pool destroyed, which joins its worker after it has
// handled everything queued. With `ticks` (P = 1) every call is timed.
void run_file(bool rotating, uint32_t producers, uint32_t n, int rep, uint64_t *ticks,
              bool paced, const std::string &dir) {
    const char *variant = rotating ? "rotating" : "file";
    std::string base = dir + (rotating ? "/spdlog-rotating" : "/spdlog-file");
    bench_file_remove(base.c_str(), BENCH_ROTATE_BACKUPS);
    std::string error;
    uint64_t t0 = 0, t1 = 0;
    try {
        std::shared_ptr<spdlog::sinks::sink> sink;
        if (rotating)
            sink = std::make_shared<spdlog::sinks::rotating_file_sink_mt>(
                base, (size_t)BENCH_ROTATE_MAX_BYTES, (size_t)BENCH_ROTATE_BACKUPS);
        else
            sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(base, true);
        auto pool = std::make_shared<spdlog::details::thread_pool>(kQueueSize, 1);
        auto logger = std::make_shared<spdlog::async_logger>(
            "bench", sink, pool, spdlog::async_overflow_policy::block);
        logger->set_pattern(kFilePattern);
        logger->set_level(spdlog::level::info);
        logger->flush_on(spdlog::level::off);
        spdlog::async_logger *log = logger.get();

        std::atomic<uint32_t> ready{0};
        std::atomic<bool> go{false};
        std::vector<uint64_t> starts(producers);
        std::vector<std::thread> threads;
        for (uint32_t p = 0; p < producers; p++) {
            threads.emplace_back([&, p] {
                ready.fetch_add(1, std::memory_order_acq_rel);
                while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
                starts[p] = bench_now_ns();
                if (!ticks) {
                    for (uint32_t i = 1; i <= n; i++) log->info("hello {}", bench_value(p, i));
                    return;
                }
                for (uint32_t i = 1; i <= n; i++) {
                    uint64_t a = bench_ticks();
                    log->info("hello {}", bench_value(p, i));
                    ticks[i - 1] = bench_ticks() - a;
                    if (paced && i % 64 == 0) bench_pause_ns(50000);
                }
            });
        }
        while (ready.load(std::memory_order_acquire) != producers) std::this_thread::yield();
        go.store(true, std::memory_order_release);
        for (auto &t : threads) t.join();
        t0 = starts[0];
        for (uint64_t s : starts) t0 = s < t0 ? s : t0;
        logger->flush();  // queued behind every record: the sink's fflush
        logger.reset();
        pool.reset();  // the last owner: joins the worker once the queue is done
        t1 = bench_now_ns();
    } catch (const std::exception &e) {
        error = std::string("spdlog: ") + e.what();
    }

    char why[512] = "";
    bench_file_result res;
    memset(&res, 0, sizeof res);
    if (!error.empty())
        snprintf(why, sizeof why, "%s", error.c_str());
    else
        bench_file_check(base.c_str(), rotating ? BENCH_ROTATE_BACKUPS : 0,
                         rotating ? BENCH_ROTATE_MAX_BYTES : 0, 0, producers, n, &res, why,
                         sizeof why);
    bench_file_remove(base.c_str(), BENCH_ROTATE_BACKUPS);
    for (char *c = why; *c; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) *c = '?';
    if (ticks) {
        printf("{\"workload\":\"file_latency\",\"contender\":\"%s\",\"variant\":\"%s\","
               "\"mode\":\"%s\",\"rep\":%d,\"records\":%u,\"seconds\":%.6f,",
               kContender, variant, paced ? "paced" : "saturating", rep, n,
               (double)(t1 - t0) / 1e9);
        if (!why[0]) {
            bench_print_percentiles(ticks, n);
            printf(",");
        }
    } else {
        printf("{\"workload\":\"file\",\"contender\":\"%s\",\"variant\":\"%s\",\"rep\":%d,"
               "\"producers\":%u,\"records\":%llu,\"seconds\":%.6f,",
               kContender, variant, rep, producers, (unsigned long long)producers * n,
               (double)(t1 - t0) / 1e9);
    }
    bench_file_print_result(&res);
    printf(",\"ok\":%s,\"error\":\"%s\"}\n", why[0] ? "false" : "true", why);
    fflush(stdout);
}

[[noreturn]] void usage(const char *why) {
    fprintf(stderr,
            "spdlog_bench: %s\n"
            "usage: spdlog_bench [--records N] [--reps R] [--latency-calls C] [--file-dir DIR]\n"
            "                    [--no-file | --file-only]\n"
            "  N: records per producer (default 1000000, at most 4294967295)\n"
            "  R: repetitions of each measurement (default 5)\n"
            "  C: calls per latency run (default 128000, a multiple of 64)\n"
            "  DIR: where the file sink workload writes (default .)\n",
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
    bool run_main = true, run_files = true;
    std::string file_dir = ".";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : nullptr;
        if (strcmp(a, "--no-file") == 0) {
            run_files = false;
        } else if (strcmp(a, "--file-only") == 0) {
            run_main = false;
        } else if (strcmp(a, "--file-dir") == 0) {
            if (!v) usage("--file-dir needs a value");
            file_dir = v;
            i++;
        } else if (strcmp(a, "--records") == 0) {
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
    for (int rep = 0; run_main && rep < reps; rep++) {
        for (uint32_t producers = 1; producers <= 2; producers++) run_e2e(producers, records, rep);
        for (int paced = 1; paced >= 0; paced--) run_latency(paced != 0, calls, rep, ticks);
    }

    // The file sink, after the rest (as in ql_bench.c), with its own reps.
    std::vector<uint64_t> file_ticks(run_files ? records : 0);
    for (int rep = 0; run_files && rep < reps; rep++) {
        for (uint32_t producers = 1; producers <= 2; producers++)
            for (int rotating = 0; rotating <= 1; rotating++)
                run_file(rotating != 0, producers, records, rep, nullptr, false, file_dir);
        for (int paced = 1; paced >= 0; paced--)
            for (int rotating = 0; rotating <= 1; rotating++)
                run_file(rotating != 0, 1, records, rep, file_ticks.data(), paced != 0, file_dir);
    }
    return 0;
}
