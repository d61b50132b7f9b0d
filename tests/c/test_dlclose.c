/* dlclose (issue 13, item 2): the library is linked with -z nodelete, so
 * dlclose never unmaps it, even while a listener it started runs with a
 * drain at exit registered. A loop loads it, uses it, leaves a listener
 * running and unloads it; after each dlclose the library is still mapped
 * (dlopen with RTLD_NOLOAD finds it), and exit() still drains the
 * listeners left running. (glibc also keeps a library whose thread-local
 * destructors are pending, so this loop alone cannot tell the flag is
 * there: the ctest c/nodelete reads it from the dynamic section.) */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue_listener.h"

#define FAIL(...)                                                              \
    do {                                                                       \
        fprintf(stderr, "test_dlclose: FAIL: " __VA_ARGS__);                   \
        fprintf(stderr, "\n");                                                 \
        exit(1);                                                               \
    } while (0)

/* The library's functions, looked up by name (POSIX: dlsym's result is
 * copied into the function pointer). */
#define LOOKUP(lib, name, out)                                                 \
    do {                                                                       \
        void *found_ = dlsym((lib), #name);                                    \
        if (!found_) FAIL("dlsym %s: %s", #name, dlerror());                   \
        memcpy(&(out), &found_, sizeof(out));                                  \
    } while (0)

int main(void) {
    enum { ROUNDS = 40 };
    for (int round = 0; round < ROUNDS; round++) {
        void *lib = dlopen(QL_SHARED_LIB_PATH, RTLD_NOW | RTLD_LOCAL);
        if (!lib) FAIL("dlopen %s: %s", QL_SHARED_LIB_PATH, dlerror());
        __typeof__(&ql_queue_new) queue_new;
        __typeof__(&ql_null_handler) null_handler;
        __typeof__(&ql_listener_new_with_queue) listener_new;
        __typeof__(&ql_start) start;
        __typeof__(&ql_log) log;
        __typeof__(&ql_listener_drain_at_exit) drain;
        LOOKUP(lib, ql_queue_new, queue_new);
        LOOKUP(lib, ql_null_handler, null_handler);
        LOOKUP(lib, ql_listener_new_with_queue, listener_new);
        LOOKUP(lib, ql_start, start);
        LOOKUP(lib, ql_log, log);
        LOOKUP(lib, ql_listener_drain_at_exit, drain);
        ql_queue *q = NULL;
        if (queue_new(0, &q) != QL_OK) FAIL("ql_queue_new");
        ql_handler h;
        if (null_handler(0, &h) != QL_OK) FAIL("ql_null_handler");
        ql_listener *l = NULL;
        if (listener_new(q, &h, 1, NULL, false, &l) != QL_OK) FAIL("ql_listener_new_with_queue");
        if (drain(l, 1000) != QL_OK) FAIL("ql_listener_drain_at_exit");
        if (start(l) != QL_OK) FAIL("ql_start");
        for (int i = 0; i < 100; i++)
            if (log(q, 20, "t", "record", 6) != QL_OK) FAIL("ql_log");
        /* Left running, on purpose. */
        if (dlclose(lib) != 0) FAIL("dlclose: %s", dlerror());
        void *still = dlopen(QL_SHARED_LIB_PATH, RTLD_NOW | RTLD_NOLOAD);
        if (!still) FAIL("round %d: the library was unmapped by dlclose", round);
        dlclose(still);
    }
    printf("test_dlclose: %d rounds of dlopen, a running listener with drain at exit, dlclose: "
           "the library stays mapped\nOK\n",
           ROUNDS);
    return 0; /* exit(): the registered listeners are drained */
}
