/*
 * quickstart.c: the smallest complete use of queue_listener, with the
 * library's defaults and no vtable.
 *
 * Four producer threads log with ql_logf onto the built-in queue and never
 * touch a handler; one listener thread takes each record off the queue and
 * gives it to three handlers, as Python's logging.handlers.QueueListener
 * does (respect_handler_level = true):
 *
 *   - a file handler at level 0 (NOTSET): every record, in quickstart.log;
 *   - a stream handler on stdout at ERROR: errors only;
 *   - the program's own handler at WARNING: counts what it gets.
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

enum { PRODUCERS = 4, RECORDS_PER_PRODUCER = 1000 };

#define LOG_PATH "quickstart.log"

/* ------------------------------------------------ the program's own handler */

/* Counts the records it gets. It runs on the listener thread only, one call
 * at a time, so it needs no lock. */
struct counter {
    unsigned long count;
    unsigned long below_warning; /* must stay 0: the listener filters */
};

static int32_t count_handle(void *ctx, void *record)
{
    struct counter *c = ctx;
    const ql_record *r = record; /* built-in records, from ql_logf */
    c->count++;
    if (r->level < QL_LEVEL_WARNING)
        c->below_warning++;
    return 0;
}

/* ------------------------------------------------------------ producers */

struct producer_arg {
    ql_queue *queue;
    int id;
};

static void *producer(void *p)
{
    const struct producer_arg *arg = p;
    static const int32_t levels[] = {QL_LEVEL_DEBUG, QL_LEVEL_INFO, QL_LEVEL_WARNING};

    for (int seq = 0; seq < RECORDS_PER_PRODUCER - 1; seq++) {
        /* Formats on this thread (on its stack), copies the text into a
         * pooled record and queues it; waits only if the queue is full. */
        CHECK(ql_logf(arg->queue, levels[seq % 3], "app.worker", "producer %d record %d",
                      arg->id, seq));
    }
    CHECK(ql_logf(arg->queue, QL_LEVEL_ERROR, "app.worker", "producer %d finished", arg->id));
    return NULL;
}

static unsigned long count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    unsigned long lines = 0;
    for (int c; (c = fgetc(f)) != EOF;)
        lines += c == '\n';
    fclose(f);
    return lines;
}

/* ----------------------------------------------------------------- main */

int main(void)
{
    remove(LOG_PATH);

    /* 1. The built-in queue with the default options: 8192 records,
     *    lossless (producers wait when it is full). */
    ql_queue_options options = ql_queue_options_default();
    ql_queue *queue = NULL;
    CHECK(ql_queue_new_with_options(&options, &queue));

    /* 2. Three handlers. The built-in ones format each record as
     *    "{time} {level} [{thread}] {logger}: {message}". */
    ql_handler handlers[3];
    ql_handler_options file_options = ql_handler_options_default(); /* level 0 */
    CHECK(ql_file_handler(LOG_PATH, &file_options, &handlers[0]));
    ql_handler_options stdout_options = ql_handler_options_default();
    stdout_options.level = QL_LEVEL_ERROR;
    stdout_options.pattern = "stdout: {level} {logger}: {message}";
    CHECK(ql_stream_handler_file(stdout, &stdout_options, &handlers[1]));
    struct counter warnings = {0, 0};
    handlers[2] = (ql_handler){.ctx = &warnings, .level = QL_LEVEL_WARNING, .handle = count_handle};

    /* 3. The listener, with respect_handler_level = true. It copies the
     *    array and owns the built-in handlers from now on. */
    ql_listener *listener = NULL;
    CHECK(ql_listener_new_with_queue(queue, handlers, 3, NULL, true, &listener));

    /* 4. Start the listener thread, then the producers. */
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

    /* 5. Stop: every record logged before this call has been handled, and
     *    every handler flushed, when it returns. */
    CHECK(ql_stop(listener));

    ql_stats stats;
    CHECK(ql_listener_stats(listener, &stats));
    const unsigned long total = (unsigned long)PRODUCERS * RECORDS_PER_PRODUCER;
    /* A third of all but the last record of each producer are WARNING;
     * the last is ERROR. */
    const unsigned long due_warnings = PRODUCERS * ((RECORDS_PER_PRODUCER - 1 + 0) / 3 + 1);
    const unsigned long file_lines = count_lines(LOG_PATH);

    printf("file handler wrote %lu lines to " LOG_PATH "\n", file_lines);
    printf("counting handler got %lu records (WARNING and above)\n", warnings.count);
    printf("listener handled %llu records in %llu batches, %llu dropped, %llu handler errors\n",
           (unsigned long long)stats.handled, (unsigned long long)stats.batches,
           (unsigned long long)stats.dropped, (unsigned long long)stats.handler_errors);

    int ok = file_lines == total && warnings.count == due_warnings &&
             warnings.below_warning == 0 && stats.handled == total && stats.dropped == 0 &&
             stats.handler_errors == 0;

    /* 6. Free the listener (which destroys its handlers) and the queue. */
    CHECK(ql_listener_free(listener));
    ql_queue_free(queue);

    if (!ok) {
        printf("quickstart: MISMATCH (expected %lu lines and %lu warnings)\n", total,
               due_warnings);
        return EXIT_FAILURE;
    }
    printf("quickstart: OK\n");
    return EXIT_SUCCESS;
}
