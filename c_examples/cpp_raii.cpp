// cpp_raii.cpp: queue_listener from C++ with queue_listener.hpp.
//
// Two producer threads log onto a ql::queue; a ql::listener, alive for one
// scope, hands every record to two lambda handlers:
//   - "alerts" at level WARNING: gets WARNING and above only, because the
//     listener respects handler levels;
//   - "all" at level 0 (NOTSET): gets every record.
// The listener starts in its constructor and, in its destructor, stops once
// every record logged before has been handled. Then the program shows a
// stop-then-restart and a ql::error.
//
// Build and run (from the repository root):
//   cmake -S . -B build && cmake --build build --target cpp_raii && ./build/c_examples/cpp_raii

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "queue_listener.hpp"

namespace {

constexpr int kProducers = 2;
constexpr int kRecordsPerProducer = 1000;  // every 10th one is a WARNING

bool expect(const char *what, long got, long want) {
    std::printf("  %-34s %6ld (expected %ld)\n", what, got, want);
    return got == want;
}

}  // namespace

int main() {
    bool ok = true;
    ql::queue q(1024);  // bounded: producers wait when it is full

    // Handlers run on the listener thread, one call at a time: plain
    // counters are enough, read once the listener has stopped.
    long alerts = 0, all = 0, alerts_below_warning = 0;
    std::string last_alert;
    auto alert_handler = ql::handler(
        [&](const ql_record &r) {
            ++alerts;
            if (r.level < QL_LEVEL_WARNING) ++alerts_below_warning;
            last_alert.assign(r.message, r.message_len);  // copy: the record is borrowed
        },
        QL_LEVEL_WARNING);
    auto count_all = ql::handler([&](const ql_record &) { ++all; }, QL_LEVEL_NOTSET);

    std::puts("cpp_raii: a scoped listener, 2 producer threads");
    {
        ql::listener listener(q, {alert_handler, count_all}, /*respect_handler_level=*/true);

        std::vector<std::thread> producers;
        for (int p = 0; p < kProducers; ++p) {
            producers.emplace_back([&q, p] {
                for (int i = 0; i < kRecordsPerProducer; ++i) {
                    int level = i % 10 == 0 ? QL_LEVEL_WARNING : QL_LEVEL_INFO;
                    q.logf(level, "producer", "producer %d record %d", p, i);
                }
            });
        }
        for (auto &t : producers) t.join();
    }  // ~listener: every record above is handled when it returns

    const long total = kProducers * kRecordsPerProducer;
    ok &= expect("'all' handler got", all, total);
    ok &= expect("'alerts' handler got", alerts, total / 10);
    ok &= expect("'alerts' records below WARNING", alerts_below_warning, 0);
    std::printf("  last alert: \"%s\"\n", last_alert.c_str());

    std::puts("cpp_raii: stop, log while stopped, restart");
    {
        long handled = 0;
        ql::listener listener(q, {ql::handler([&](void *) { ++handled; })});
        q.log(QL_LEVEL_INFO, "app", "before stop");
        listener.stop();  // returns once "before stop" is handled
        ok &= expect("handled before the restart", handled, 1);
        q.log(QL_LEVEL_INFO, "app", "while stopped");  // waits on the queue
        ok &= expect("records waiting while stopped", static_cast<long>(q.size()), 1);
        listener.start();
        q.log(QL_LEVEL_INFO, "app", "after restart");
        listener.stop();
        ok &= expect("handled after the restart", handled, 3);
        ok &= expect("listener stats().handled", static_cast<long>(listener.stats().handled), 3);
    }

    std::puts("cpp_raii: errors are ql::error exceptions");
    try {
        ql::queue too_big(static_cast<size_t>(QL_QUEUE_MAX_CAPACITY) + 1);
        std::puts("  no exception for a capacity over QL_QUEUE_MAX_CAPACITY");
        ok = false;
    } catch (const ql::error &e) {
        std::printf("  ql::error: status %d, \"%s\"\n", static_cast<int>(e.status()), e.what());
        ok &= expect("status is QL_ERR_INVALID", e.status(), QL_ERR_INVALID);
    }

    if (!ok) {
        std::puts("cpp_raii: FAILED");
        return 1;
    }
    std::puts("cpp_raii: ok");
    return 0;
}
