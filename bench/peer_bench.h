// peer_bench.h: the harness of the field's leaders in the benchmark (quill,
// fmtlog, NanoLog; peer_quill.cpp, peer_fmtlog.cpp, peer_nanolog.cpp). Their
// sources are not in this repository: bench/CMakeLists.txt builds each from a
// directory given at configure time.
//
// The work is ql_bench's message variant and spdlog_bench's: P producers each
// log n messages "hello <value>" (value = (p << 32) | i, bench_common.h),
// each with the logger's producer-side timestamp; the logger's consumer side
// formats the message and hands it to a sink that parses it back and does
// bench_sink_take (order per producer, duplicates, checksum); the run is then
// checked by bench_sink_verify. The span, the per-call timing (paced and
// saturating), the reps and the JSON lines are spdlog_bench's.
//
// A peer is a class with:
//   static constexpr const char *kContender, *kVariant;  // the report's row
//   static void setup(const std::string &dir);  // once, before any run
//   static void thread_start();      // on each producer thread, before the start
//   explicit Peer(uint64_t target);  // a fresh logger and sink for one run
//   void log(uint64_t v);            // the call under test
//   bool finish(uint64_t total);     // waits until every record reached the sink
//                                    // (false: timed out); the span ends here
//   std::string check(uint32_t producers, uint32_t n);  // "" or why the run failed
//
// A run that times out leaves a logger that may never deliver again (a record
// its consumer cannot take blocks every later one): the program prints the
// failed line and exits 3, and run.py marks every row of the program FAILED.
#ifndef QL_PEER_BENCH_H
#define QL_PEER_BENCH_H

#include "bench_common.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

// The sink of the peers whose consumer hands each formatted message to user
// code: bench_sink_take on the parsed message (as spdlog's counting_sink and
// ql_bench's sink_message), and a signal to the waiting main thread when the
// target count is reached.
class peer_sink {
public:
    explicit peer_sink(uint64_t target) : target_(target) { bench_sink_init(&sink_); }

    // Called on the logger's consumer thread only.
    void take(const char *msg, size_t len) {
        bench_sink_take(&sink_, bench_parse_hello(msg, len));
        if (sink_.count == target_) {
            std::lock_guard<std::mutex> lock(mu_);
            done_ = true;
            cv_.notify_one();
        }
    }

    // Waits until the sink has taken `target` records (true), or `timeout`.
    bool wait_done(std::chrono::milliseconds timeout) {
        std::unique_lock<std::mutex> lock(mu_);
        return cv_.wait_for(lock, timeout, [this] { return done_; });
    }

    // Read after wait_done returned true (the mutex orders the consumer's
    // writes before it), or after the consumer has stopped.
    std::string verify(uint32_t producers, uint32_t n) const {
        char why[256];
        bench_sink_verify(&sink_, producers, n, why, sizeof why);
        return why;
    }

private:
    bench_sink sink_;
    uint64_t target_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool done_ = false;
};

// The guard against a lost record hanging a run: 30 s + 5 us per record.
inline std::chrono::milliseconds peer_guard(uint64_t records) {
    return std::chrono::milliseconds(30000 + records / 200);
}

template <class Peer>
void peer_timed_out(const char *what, uint32_t producers, int rep) {
    fprintf(stderr, "%s: %s P=%u rep %d: the sink never received every record; exiting\n",
            Peer::kContender, what, producers, rep);
    fflush(stderr);
    _exit(3);
}

template <class Peer>
void peer_run_e2e(uint32_t producers, uint32_t n, int rep) {
    const uint64_t total = (uint64_t)producers * n;
    std::string why;
    uint64_t t0, t1;
    {
        Peer peer(total);
        std::atomic<uint32_t> ready{0};
        std::atomic<bool> go{false};
        std::vector<uint64_t> starts(producers);
        std::vector<std::thread> threads;
        threads.reserve(producers);
        for (uint32_t p = 0; p < producers; p++) {
            threads.emplace_back([&, p] {
                Peer::thread_start();
                ready.fetch_add(1, std::memory_order_acq_rel);
                while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
                starts[p] = bench_now_ns();
                for (uint32_t i = 1; i <= n; i++) peer.log(bench_value(p, i));
            });
        }
        while (ready.load(std::memory_order_acquire) != producers) std::this_thread::yield();
        go.store(true, std::memory_order_release);
        for (auto &t : threads) t.join();
        t0 = starts[0];
        for (uint64_t s : starts) t0 = s < t0 ? s : t0;
        bool reached = peer.finish(total);
        t1 = bench_now_ns();
        why = peer.check(producers, n);
        if (!reached) {
            bench_emit_e2e(Peer::kContender, Peer::kVariant, rep, producers, n, t1 - t0,
                           why.empty() ? "timed out waiting for the sink" : why.c_str());
            peer_timed_out<Peer>("e2e", producers, rep);
        }
    }
    bench_emit_e2e(Peer::kContender, Peer::kVariant, rep, producers, n, t1 - t0, why.c_str());
}

template <class Peer>
void peer_run_latency(bool paced, uint32_t calls, int rep, std::vector<uint64_t> &ticks) {
    const char *mode = paced ? "paced" : "saturating";
    std::string why;
    uint64_t *d = ticks.data();
    {
        Peer peer(calls);
        Peer::thread_start();
        for (uint32_t i = 1; i <= calls; i++) {
            uint64_t a = bench_ticks();
            peer.log(bench_value(0, i));
            uint64_t b = bench_ticks();
            d[i - 1] = b - a;
            if (paced && i % 64 == 0) bench_pause_ns(50000);
        }
        bool reached = peer.finish(calls);
        why = peer.check(1, calls);
        if (!reached && why.empty()) why = "timed out waiting for the sink";
        if (!reached || !why.empty()) {
            printf("{\"workload\":\"latency\",\"contender\":\"%s\",\"mode\":\"%s\",\"rep\":%d,"
                   "\"calls\":%u,\"ok\":false,\"error\":\"%s\"}\n",
                   Peer::kContender, mode, rep, calls, why.c_str());
            fflush(stdout);
            if (!reached) peer_timed_out<Peer>("latency", 1, rep);
            return;
        }
    }
    bench_emit_latency(Peer::kContender, mode, rep, d, calls);
}

// Before the first measurement: 1000 messages from this thread through a
// logger, until the sink has them all and they pass the check. A peer's
// consumer thread starts and calibrates its clock when the logger is set up
// (quill's backend, fmtlog's polling thread, NanoLog's compression thread);
// without this, the first run of every program would pay for it (each program
// runs one rep; run.py starts it once per rep).
template <class Peer>
void peer_warm_up() {
    const uint32_t n = 1000;
    Peer peer(n);
    Peer::thread_start();
    for (uint32_t i = 1; i <= n; i++) peer.log(bench_value(0, i));
    bool reached = peer.finish(n);
    std::string why = peer.check(1, n);
    if (!reached || !why.empty()) {
        fprintf(stderr, "%s: warm-up: %s\n", Peer::kContender,
                reached ? why.c_str() : "the sink never received every record");
        fflush(stderr);
        _exit(3);
    }
}

[[noreturn]] inline void peer_usage(const char *prog, const std::string &why) {
    fprintf(stderr,
            "%s: %s\n"
            "usage: %s [--records N] [--reps R] [--latency-calls C] [--file-dir DIR]\n"
            "  N: records per producer (default 1000000)\n"
            "  R: repetitions of each measurement (default 5)\n"
            "  C: calls per latency run (default 128000, a multiple of 64)\n"
            "  DIR: where a peer that writes files (NanoLog) writes them (default .)\n",
            prog, why.c_str(), prog);
    exit(2);
}

inline unsigned long long peer_arg(const char *prog, const char *name, const char *s,
                                   unsigned long long max) {
    if (!s) peer_usage(prog, std::string(name) + " needs a value");
    char *end = nullptr;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v == 0 || v > max)
        peer_usage(prog, std::string("bad value for ") + name + ": " + s);
    return v;
}

// The program: reps of e2e at P = 1 and 2, then the put call timed, paced
// then saturating (spdlog_bench's order).
template <class Peer>
int peer_main(int argc, char **argv) {
    uint32_t records = 1000000, calls = 128000;
    int reps = 5;
    std::string dir = ".";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : nullptr;
        if (strcmp(a, "--records") == 0) {
            records = (uint32_t)peer_arg(argv[0], a, v, 0xffffffffu);
        } else if (strcmp(a, "--reps") == 0) {
            reps = (int)peer_arg(argv[0], a, v, 1000000);
        } else if (strcmp(a, "--latency-calls") == 0) {
            calls = (uint32_t)peer_arg(argv[0], a, v, 0xffffffffu);
            if (calls % 64) peer_usage(argv[0], "--latency-calls must be a multiple of 64");
        } else if (strcmp(a, "--file-dir") == 0) {
            if (!v) peer_usage(argv[0], "--file-dir needs a value");
            dir = v;
        } else {
            peer_usage(argv[0], std::string("unknown argument ") + a);
        }
        i++;
    }
    bench_ticks_per_ns();  // calibrate once, outside every measurement
    Peer::setup(dir);
    peer_warm_up<Peer>();
    std::vector<uint64_t> ticks(calls);
    for (int rep = 0; rep < reps; rep++) {
        for (uint32_t producers = 1; producers <= 2; producers++)
            peer_run_e2e<Peer>(producers, records, rep);
        for (int paced = 1; paced >= 0; paced--)
            peer_run_latency<Peer>(paced != 0, calls, rep, ticks);
    }
    return 0;
}

#endif
