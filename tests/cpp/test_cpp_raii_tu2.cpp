// A second translation unit including queue_listener.hpp: with the first
// one (test_cpp_raii.cpp) it proves the header links into one program
// without duplicate symbols and that both units share its inline code.
#include "queue_listener.hpp"

#include <atomic>

// Declared again in test_cpp_raii.cpp, which calls them.
ql::handler tu2_counting_handler(std::atomic<long> &count, int level);
long tu2_log_and_count(ql::queue &q, int records);

ql::handler tu2_counting_handler(std::atomic<long> &count, int level) {
    return ql::handler([&count](const ql_record &) { count.fetch_add(1, std::memory_order_relaxed); }, level);
}

long tu2_log_and_count(ql::queue &q, int records) {
    long handled = 0;
    {
        ql::listener l(q, {[&handled](void *) { ++handled; }});
        for (int i = 0; i < records; ++i) q.logf(QL_LEVEL_INFO, "tu2", "record %d", i);
    }  // ~listener: all handled
    return handled;
}
