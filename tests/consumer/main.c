/* The smallest real use of the installed library: a built-in queue, one
 * handler, 1000 records, stop, and a check that every one arrived. */
#include <queue_listener.h>

#include <stdint.h>
#include <stdio.h>

static int32_t sum_handler(void *ctx, void *record) {
    *(uintptr_t *)ctx += (uintptr_t)record;
    return 0;
}

int main(void) {
    uintptr_t sum = 0;
    ql_handler handler = {&sum, 0, sum_handler, NULL, NULL, NULL};
    ql_queue *queue = NULL;
    ql_listener *listener = NULL;
    if (ql_queue_new(64, &queue) != QL_OK) return 1;
    if (ql_listener_new_with_queue(queue, &handler, 1, NULL, false, &listener) != QL_OK) return 1;
    if (ql_start(listener) != QL_OK) return 1;
    for (uintptr_t i = 1; i <= 1000; i++) {
        if (ql_queue_put(queue, (void *)i) != QL_OK) return 1;
    }
    if (ql_stop(listener) != QL_OK) return 1;
    ql_listener_free(listener);
    ql_queue_free(queue);
    if (sum != 1000u * 1001u / 2u) {
        printf("consumer: wrong sum %lu\n", (unsigned long)sum);
        return 1;
    }
    printf("consumer: OK (library %s)\n", ql_version());
    return 0;
}
