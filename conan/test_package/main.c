/* The Conan package links and works: a listener with a file handler on
 * stdout logs one record with a field, and the header's version is the
 * library's. */
#include <stdio.h>
#include <string.h>

#include "queue_listener.h"

int main(void) {
    char header[32];
    snprintf(header, sizeof header, "%d.%d.%d", QL_VERSION_MAJOR, QL_VERSION_MINOR,
             QL_VERSION_PATCH);
    if (strcmp(header, ql_version()) != 0) {
        fprintf(stderr, "header %s, library %s\n", header, ql_version());
        return 1;
    }
    ql_queue *q = NULL;
    ql_handler h;
    ql_listener *l = NULL;
    if (ql_queue_new(16, &q) != QL_OK || ql_stream_handler_fd(1, NULL, &h) != QL_OK ||
        ql_listener_new_with_queue(q, &h, 1, NULL, false, &l) != QL_OK || ql_start(l) != QL_OK)
        return 1;
    ql_field f = ql_field_str("from", "conan");
    if (ql_log_fields(q, QL_LEVEL_INFO, "test_package", &f, 1, "hello", 5) != QL_OK) return 1;
    if (ql_stop(l) != QL_OK || ql_listener_free(l) != QL_OK) return 1;
    ql_queue_free(q);
    printf("conan test_package: OK (queue_listener %s)\n", ql_version());
    return 0;
}
