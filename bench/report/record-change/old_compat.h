/* Only for building HEAD's ql_bench.c against the library at a45c660, which
 * has no journald handler: the journald workload is never run there (no
 * --journald-socket); these stubs make it compile and exit if called. */
#include <stdio.h>
#include <stdlib.h>
#include "queue_listener.h"
typedef struct { const char *socket_path, *identifier; } ql_journald_options;
static inline ql_journald_options ql_journald_options_default(void) {
    ql_journald_options o = {0, 0};
    return o;
}
static inline ql_status ql_journald_handler(const ql_journald_options *o, ql_handler *h) {
    (void)o, (void)h;
    fprintf(stderr, "old build: no journald handler\n");
    exit(2);
}
