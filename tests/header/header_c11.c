/* The header is the first and only include: it must bring its own types. */
#include "queue_listener.h"

int puts(const char *s);

int main(void) {
    ql_queue *q = NULL;
    if (ql_queue_new(0, &q) != QL_OK || ql_queue_put(q, NULL) != QL_OK) return 1;
    size_t len = 0;
    bool ok = ql_queue_len(q, &len) == QL_OK && len == 1;
    ql_queue_free(q);
    if (!ok) return 1;
    puts("header: OK");
    return 0;
}
