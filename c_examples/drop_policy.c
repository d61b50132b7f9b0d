/*
 * drop_policy.c: what each overflow policy does when the listener cannot
 * keep up, and how every drop is counted.
 *
 * A handler stalls (as on a full disk) until the producer has logged 1000
 * records onto a queue of 64. Then it is released, the listener stops, and
 * the program prints the counters for each policy:
 *
 *   QL_OVERFLOW_DROP_NEWEST   new records are refused while the queue is full
 *   QL_OVERFLOW_DROP_OLDEST   the oldest queued records make room for new ones
 *   QL_OVERFLOW_BLOCK_TIMEOUT the producer waits up to 1 ms, then drops
 *
 * With report_drops, the listener itself logs "N records dropped" through
 * the handlers as soon as room returns, so losses show in the log.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

enum { RECORDS = 1000, CAPACITY = 64 };

/* A handler that waits at its first record until the gate opens. */
struct stalled {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;
    unsigned long records, reports;
    unsigned long reported_drops; /* the N of "N records dropped" */
};

static int32_t stalled_handle(void *ctx, void *record)
{
    struct stalled *s = ctx;
    const ql_record *r = record;
    pthread_mutex_lock(&s->mu);
    while (!s->open)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    if (strcmp(r->logger, "queue_listener") == 0) {
        s->reports++;
        s->reported_drops += strtoul(r->message, NULL, 10);
    } else {
        s->records++;
    }
    return 0;
}

static int run(const char *name, ql_overflow policy)
{
    struct stalled s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);

    ql_queue_options qo = ql_queue_options_default();
    qo.capacity = CAPACITY;
    qo.overflow = policy;
    qo.block_timeout_ms = 1;
    qo.report_drops = true;
    ql_queue *q = NULL;
    CHECK(ql_queue_new_with_options(&qo, &q));
    ql_handler h = {.ctx = &s, .handle = stalled_handle};
    ql_listener *l = NULL;
    CHECK(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l));
    CHECK(ql_start(l));

    unsigned long refused = 0;
    for (int i = 0; i < RECORDS; i++) {
        ql_status st = ql_logf(q, QL_LEVEL_INFO, "app", "record %d", i);
        if (st == QL_ERR_FULL || st == QL_ERR_TIMEOUT)
            refused++; /* dropped by the policy, and counted by the queue */
        else
            CHECK(st);
    }

    pthread_mutex_lock(&s.mu);
    s.open = 1;
    pthread_cond_broadcast(&s.cv);
    pthread_mutex_unlock(&s.mu);
    CHECK(ql_stop(l));

    ql_stats st;
    CHECK(ql_listener_stats(l, &st));
    printf("%-26s handled %4lu, dropped %4llu (refused to the producer: %4lu), "
           "reported in the log: %lu in %lu report(s), high water %llu\n",
           name, s.records, (unsigned long long)st.dropped, refused, s.reported_drops, s.reports,
           (unsigned long long)st.queue_high_water);
    int ok = s.records + st.dropped == RECORDS && s.reported_drops == st.dropped &&
             (policy == QL_OVERFLOW_DROP_OLDEST ? refused == 0 : refused == st.dropped) &&
             st.dropped > 0;

    CHECK(ql_listener_free(l));
    ql_queue_free(q);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
    return ok;
}

int main(void)
{
    printf("%d records onto a queue of %d while the handler is stalled:\n", RECORDS, CAPACITY);
    int ok = run("QL_OVERFLOW_DROP_NEWEST", QL_OVERFLOW_DROP_NEWEST);
    ok &= run("QL_OVERFLOW_DROP_OLDEST", QL_OVERFLOW_DROP_OLDEST);
    ok &= run("QL_OVERFLOW_BLOCK_TIMEOUT", QL_OVERFLOW_BLOCK_TIMEOUT);
    printf(ok ? "drop_policy: OK (handled + dropped == logged for every policy)\n"
              : "drop_policy: MISMATCH\n");
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
