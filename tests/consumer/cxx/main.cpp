// The smallest real use of the installed C++ layer: a ql::queue, a scoped
// ql::listener whose lambda handlers get 1000 built-in records, then 1000
// program pointers through a second listener, and a ql::error; every record
// must arrive.
#include <queue_listener.hpp>

#include <cstdint>
#include <cstdio>
#include <string>

int main() {
    long records = 0;
    std::string last;
    {
        ql::queue q(64);
        ql::listener l(q, {ql::handler([&](const ql_record &r) {
                           ++records;
                           last.assign(r.message, r.message_len);
                       })});
        for (int i = 1; i <= 1000; ++i) {
            if (!q.logf(QL_LEVEL_INFO, "consumer", "record %d", i)) return 1;
        }
    }  // ~listener: every record logged above is handled here

    std::uintptr_t sum = 0;
    ql::queue pointers(64);
    ql::listener l(pointers, {ql::handler([&](void *record) { sum += reinterpret_cast<std::uintptr_t>(record); })});
    for (std::uintptr_t i = 1; i <= 1000; ++i) {
        if (!pointers.put(reinterpret_cast<void *>(i))) return 1;
    }
    l.stop();
    const ql_stats stats = l.stats();

    bool threw = false;
    try {
        ql::check(QL_ERR_INVALID, "consumer");
    } catch (const ql::error &e) {
        threw = e.status() == QL_ERR_INVALID;
    }

    if (records != 1000 || last != "record 1000" || sum != 1000u * 1001u / 2u || stats.handled != 1000 ||
        !threw) {
        std::printf("consumer: wrong results: %ld records, last '%s', sum %lu, handled %llu, threw %d\n",
                    records, last.c_str(), static_cast<unsigned long>(sum),
                    static_cast<unsigned long long>(stats.handled), threw ? 1 : 0);
        return 1;
    }
    std::printf("consumer: OK (C++, library %s)\n", ql_version());
    return 0;
}
