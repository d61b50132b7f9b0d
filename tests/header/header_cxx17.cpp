// The header as C++17: it must compile and give the functions C linkage.
#include "queue_listener.h"

#include <cstdio>
#include <cstring>
#include <type_traits>

static_assert(std::is_same<ql_status, int32_t>::value, "ql_status is a fixed-width integer");
static_assert(std::is_standard_layout<ql_handler>::value, "ql_handler is a C struct");

extern "C" int32_t handle_nothing(void *, void *) { return 0; }

int main() {
    ql_queue *q = nullptr;
    if (ql_queue_new(8, &q) != QL_OK) return 1;
    ql_handler handler{nullptr, 0, handle_nothing, nullptr, nullptr, nullptr};
    ql_listener *l = nullptr;
    if (ql_listener_new_with_queue(q, &handler, 1, nullptr, false, &l) != QL_OK) return 1;
    if (ql_start(l) != QL_OK || ql_stop(l) != QL_OK || ql_listener_free(l) != QL_OK) return 1;
    ql_queue_free(q);
    if (std::strncmp(ql_version(), "0.", 2) != 0) return 1;
    std::puts("header: OK");
    return 0;
}
