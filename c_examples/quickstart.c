/*
 * quickstart.c: the smallest complete use of queue_listener.
 *
 * Several producer threads log records onto a bounded queue without ever
 * touching a handler; one listener thread takes the records off the queue
 * and gives each to two handlers, as Python's
 * logging.handlers.QueueListener does:
 *
 *   - "console" at level 0 (NOTSET): gets every record;
 *   - "alerts"  at level 30 (WARNING): gets WARNING and above only, because
 *     the listener is made with respect_handler_level = true.
 *
 * Records are the program's own structs: the library only moves pointers.
 * The `record_level` hook tells it a record's level and the `done` hook
 * frees a record once every handler has seen it.
 *
 * Build and run (from the repository root):
 *   cmake -S . -B build && cmake --build build --target quickstart && ./build/c_examples/quickstart
 * or, against an installed library:
 *   cc quickstart.c $(pkg-config --cflags --libs queue_listener) -lpthread
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "queue_listener.h"

/* Stop the program with a message when a library call fails. */
#define CHECK(call)                                                        \
    do {                                                                   \
        ql_status check_status_ = (call);                                  \
        if (check_status_ != QL_OK) {                                      \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__,  \
                    #call, ql_status_str(check_status_));                  \
            exit(EXIT_FAILURE);                                            \
        }                                                                  \
    } while (0)

/* Python's logging levels. */
enum { DEBUG = 10, INFO = 20, WARNING = 30, ERROR = 40 };

enum { PRODUCERS = 4, RECORDS_PER_PRODUCER = 1000, QUEUE_CAPACITY = 1024 };

/* A log record: whatever the program wants; the library never reads it. */
struct record {
    int level;
    int producer;
    int seq;
    char msg[64];
};

/* ------------------------------------------------------------ handlers */

/* A handler that counts the records it gets (a real one would write them
 * somewhere). handle() runs on the listener thread only, one call at a
 * time, so the counter needs no lock. */
struct counting_handler {
    unsigned long count;
    unsigned long below_level; /* records under the handler's level: must stay 0 */
    int level;
};

static int32_t counting_handle(void *ctx, void *rec)
{
    struct counting_handler *h = ctx;
    const struct record *r = rec; /* borrowed for the call */
    h->count++;
    if (r->level < h->level)
        h->below_level++;
    return 0; /* nonzero would be counted in handler_errors */
}

/* The listener owns each handler's ctx and calls destroy once, from
 * ql_listener_free. */
static void counting_destroy(void *ctx)
{
    free(ctx);
}

static struct counting_handler *counting_new(int level)
{
    struct counting_handler *h = calloc(1, sizeof *h);
    if (h == NULL) {
        perror("calloc");
        exit(EXIT_FAILURE);
    }
    h->level = level;
    return h;
}

/* --------------------------------------------------------------- hooks */

/* Needed with respect_handler_level: the level of a record. */
static int32_t record_level(void *ctx, void *rec)
{
    (void)ctx;
    return ((const struct record *)rec)->level;
}

/* The last step of a record's life: every handler has seen it. */
static void record_done(void *ctx, void *rec)
{
    (void)ctx;
    free(rec);
}

/* ------------------------------------------------------------ producers */

struct producer_arg {
    ql_queue *queue;
    int id;
};

static void *producer(void *p)
{
    const struct producer_arg *arg = p;
    static const int levels[] = {DEBUG, INFO, WARNING, ERROR};

    for (int seq = 0; seq < RECORDS_PER_PRODUCER; seq++) {
        struct record *r = malloc(sizeof *r);
        if (r == NULL) {
            perror("malloc");
            exit(EXIT_FAILURE);
        }
        r->level = levels[seq % 4];
        r->producer = arg->id;
        r->seq = seq;
        snprintf(r->msg, sizeof r->msg, "producer %d record %d", arg->id, seq);
        /* Waits while the bounded queue is full. From here on the listener
         * owns the record, until record_done frees it. */
        CHECK(ql_queue_put(arg->queue, r));
    }
    return NULL;
}

/* ----------------------------------------------------------------- main */

int main(void)
{
    /* 1. A bounded queue: producers wait when 1024 records are pending. */
    ql_queue *queue = NULL;
    CHECK(ql_queue_new(QUEUE_CAPACITY, &queue));

    /* 2. Two handlers at different levels. */
    struct counting_handler *console = counting_new(0);
    struct counting_handler *alerts = counting_new(WARNING);
    const ql_handler handlers[] = {
        {.ctx = console, .level = 0, .handle = counting_handle, .destroy = counting_destroy},
        {.ctx = alerts, .level = WARNING, .handle = counting_handle, .destroy = counting_destroy},
    };

    /* 3. Hooks left NULL keep Python's default behaviour. */
    const ql_hooks hooks = {.record_level = record_level, .done = record_done};

    /* 4. The listener, on the queue, with respect_handler_level = true. It
     *    copies the arrays and now owns console and alerts. */
    ql_listener *listener = NULL;
    CHECK(ql_listener_new_with_queue(queue, handlers, 2, &hooks, true, &listener));

    /* 5. Start the listener thread, then the producers. */
    CHECK(ql_start(listener));

    pthread_t threads[PRODUCERS];
    struct producer_arg args[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        args[i] = (struct producer_arg){.queue = queue, .id = i};
        if (pthread_create(&threads[i], NULL, producer, &args[i]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return EXIT_FAILURE;
        }
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(threads[i], NULL);

    /* 6. Stop: every record put before this call has been handled (and
     *    freed by record_done) when it returns. */
    CHECK(ql_stop(listener));

    /* 7. The handlers' ctx stay valid until ql_listener_free. */
    ql_stats stats;
    CHECK(ql_listener_stats(listener, &stats));

    const unsigned long total = (unsigned long)PRODUCERS * RECORDS_PER_PRODUCER;
    const unsigned long warning_and_above = total / 2; /* WARNING and ERROR */

    printf("console handler got %lu records\n", console->count);
    printf("alerts handler got %lu records (WARNING and above)\n", alerts->count);
    printf("listener handled %llu records, %llu handler errors\n",
           (unsigned long long)stats.handled, (unsigned long long)stats.handler_errors);

    int ok = console->count == total && alerts->count == warning_and_above &&
             alerts->below_level == 0 && stats.handled == total &&
             stats.handler_errors == 0 && stats.prepare_errors == 0 &&
             stats.dequeue_errors == 0;

    /* 8. Free the listener (destroys the handlers) and the queue. The
     *    queue could be freed first: the listener holds its own reference. */
    CHECK(ql_listener_free(listener));
    ql_queue_free(queue);

    if (!ok) {
        printf("quickstart: MISMATCH (expected %lu console and %lu alerts records)\n",
               total, warning_and_above);
        return EXIT_FAILURE;
    }
    printf("quickstart: OK\n");
    return EXIT_SUCCESS;
}
