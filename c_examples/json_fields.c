/*
 * json_fields.c: structured logging. Records carry typed fields, the
 * fields a thread binds to its context (a request id), and the file, line
 * and function of the call; a handler writes them as JSON Lines to stdout,
 * and a second one as text lines with the {fields} of the pattern to
 * stderr.
 *
 * Two "request" threads log with their own request id in their context;
 * each record carries the id of the thread that logged it, although both
 * are written later by the listener's thread. The QL_DEBUG call below the
 * queue's level evaluates none of its arguments.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "queue_listener.h"

#define CHECK(call)                                                        \
    do {                                                                   \
        ql_status check_status_ = (call);                                  \
        if (check_status_ != QL_OK) {                                      \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__,  \
                    #call, ql_status_str(check_status_));                  \
            exit(EXIT_FAILURE);                                            \
        }                                                                  \
    } while (0)

static ql_queue *queue;
static int expensive_calls;

static int expensive(void) { return ++expensive_calls; }

static void *serve(void *arg) {
    const char *request_id = arg;
    /* Every record this thread logs from now on carries request_id. */
    CHECK(ql_context_set(ql_field_str("request_id", request_id)));
    ql_field fields[] = {
        ql_field_str("path", "/api/orders"),
        ql_field_int("status", 200),
        ql_field_double("ms", 12.5),
        ql_field_bool("cached", false),
    };
    CHECK(QL_LOG_FIELDS(queue, QL_LEVEL_INFO, "app.http", fields, 4, "request done"));
    CHECK(QL_WARNING(queue, "app.db", "slow query: %d ms", 250));
    CHECK(QL_DEBUG(queue, "app.db", "plan: %d", expensive()));
    ql_context_clear();
    return NULL;
}

int main(void) {
    CHECK(ql_queue_new(1024, &queue));
    CHECK(ql_queue_set_level(queue, QL_LEVEL_INFO));

    ql_handler handlers[2];
    ql_handler_options json = ql_handler_options_default();
    json.format = QL_FORMAT_JSON;
    CHECK(ql_stream_handler_fd(1, &json, &handlers[0]));
    ql_handler_options text = ql_handler_options_default();
    text.pattern = "{level} {logger} {file}:{line} {func}: {message} {fields}";
    CHECK(ql_stream_handler_fd(2, &text, &handlers[1]));

    ql_listener *listener = NULL;
    CHECK(ql_listener_new_with_queue(queue, handlers, 2, NULL, true, &listener));
    CHECK(ql_start(listener));

    pthread_t a, b;
    if (pthread_create(&a, NULL, serve, "req-1") != 0 || pthread_create(&b, NULL, serve, "req-2") != 0)
        return EXIT_FAILURE;
    pthread_join(a, NULL);
    pthread_join(b, NULL);

    CHECK(ql_stop(listener));
    ql_handler_stats stats;
    CHECK(ql_listener_handler_stats(listener, 0, &stats));
    CHECK(ql_listener_free(listener));
    ql_queue_free(queue);

    if (stats.sink.written != 4 || stats.sink.lost != 0 || expensive_calls != 0) {
        fprintf(stderr, "json_fields: wrote %llu JSON lines (want 4), lost %llu, QL_DEBUG "
                        "evaluated its arguments %d times (want 0)\n",
                (unsigned long long)stats.sink.written, (unsigned long long)stats.sink.lost,
                expensive_calls);
        return EXIT_FAILURE;
    }
    printf("json_fields: OK\n");
    return EXIT_SUCCESS;
}
