/*
 * custom_queue.c: a listener on the program's own queue, with a `prepare`
 * hook, as a Python subclass of QueueListener would override `prepare`.
 *
 * - The queue is a fixed-capacity ring buffer guarded by a mutex and two
 *   condition variables, plugged in through ql_queue_vtable:
 *     dequeue          blocks with pthread_cond_wait until a slot is filled;
 *     enqueue_sentinel never blocks: QL_ENQUEUE_FULL when the ring is full
 *                      (the library tries again while ql_stop waits);
 *     task_done        counts records and sentinels, as Python's
 *                      queue.task_done.
 *   The sentinel is a flag on its slot, so no record value (not even NULL)
 *   can be mistaken for it.
 *
 * - `prepare` stamps each record: it makes a NEW record, a copy with a
 *   "[stamped] " prefix and a sequence number given by the listener, and
 *   never touches the producer's record. `release` frees the stamped copy
 *   once the handlers have seen it; `done` frees the original.
 *
 * The order for each record: dequeue -> prepare -> handler -> release ->
 * task_done -> done.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdbool.h>
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

#define PTHREAD_CHECK(call)                                                \
    do {                                                                   \
        int pthread_rc_ = (call);                                          \
        if (pthread_rc_ != 0) {                                            \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__,  \
                    #call, strerror(pthread_rc_));                         \
            exit(EXIT_FAILURE);                                            \
        }                                                                  \
    } while (0)

enum { RING_CAPACITY = 64, PRODUCERS = 4, RECORDS_PER_PRODUCER = 2500 };
enum { TOTAL = PRODUCERS * RECORDS_PER_PRODUCER };

#define STAMP_PREFIX "[stamped] "

struct record {
    int producer;
    int seq;
    unsigned long stamp; /* 0 in an original; 1, 2, ... in a stamped copy */
    char msg[64];
};

static void *xmalloc(size_t size)
{
    void *p = malloc(size);
    if (p == NULL) {
        perror("malloc");
        exit(EXIT_FAILURE);
    }
    return p;
}

/* ================================================================ ring */

struct slot {
    void *record;
    bool is_sentinel;
};

struct ring {
    pthread_mutex_t lock;
    pthread_cond_t not_empty;
    pthread_cond_t not_full;
    struct slot slots[RING_CAPACITY];
    size_t head; /* index of the oldest slot */
    size_t len;
    unsigned long records_done;   /* task_done calls for records */
    unsigned long sentinels_done; /* task_done calls for the sentinel */
    unsigned long bad_task_done;  /* task_done with a stamped record: must stay 0 */
};

static void ring_init(struct ring *q)
{
    memset(q, 0, sizeof *q);
    PTHREAD_CHECK(pthread_mutex_init(&q->lock, NULL));
    PTHREAD_CHECK(pthread_cond_init(&q->not_empty, NULL));
    PTHREAD_CHECK(pthread_cond_init(&q->not_full, NULL));
}

static void ring_destroy(struct ring *q)
{
    pthread_cond_destroy(&q->not_full);
    pthread_cond_destroy(&q->not_empty);
    pthread_mutex_destroy(&q->lock);
}

/* Caller holds the lock and has checked there is room. */
static void ring_push_locked(struct ring *q, struct slot s)
{
    q->slots[(q->head + q->len) % RING_CAPACITY] = s;
    q->len++;
    pthread_cond_signal(&q->not_empty);
}

/* For producers: waits for room. */
static void ring_put(struct ring *q, void *record)
{
    pthread_mutex_lock(&q->lock);
    while (q->len == RING_CAPACITY)
        pthread_cond_wait(&q->not_full, &q->lock);
    ring_push_locked(q, (struct slot){.record = record, .is_sentinel = false});
    pthread_mutex_unlock(&q->lock);
}

/* vtable.dequeue: called on the listener thread (always with block). */
static ql_dequeue_result ring_dequeue(void *ctx, bool block, void **record_out)
{
    struct ring *q = ctx;
    pthread_mutex_lock(&q->lock);
    while (q->len == 0) {
        if (!block) {
            pthread_mutex_unlock(&q->lock);
            return QL_DEQUEUE_EMPTY;
        }
        pthread_cond_wait(&q->not_empty, &q->lock);
    }
    struct slot s = q->slots[q->head];
    q->head = (q->head + 1) % RING_CAPACITY;
    q->len--;
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->lock);

    if (s.is_sentinel)
        return QL_DEQUEUE_SENTINEL;
    *record_out = s.record;
    return QL_DEQUEUE_RECORD;
}

/* vtable.enqueue_sentinel: called on the thread running ql_stop, maybe
 * while ring_dequeue waits on the listener thread. Never blocks. */
static ql_enqueue_result ring_enqueue_sentinel(void *ctx)
{
    struct ring *q = ctx;
    pthread_mutex_lock(&q->lock);
    if (q->len == RING_CAPACITY) {
        pthread_mutex_unlock(&q->lock);
        return QL_ENQUEUE_FULL;
    }
    ring_push_locked(q, (struct slot){.record = NULL, .is_sentinel = true});
    pthread_mutex_unlock(&q->lock);
    return QL_ENQUEUE_OK;
}

/* vtable.task_done: the dequeued (original) record, or NULL for the
 * sentinel. This program never queues NULL records, so NULL means the
 * sentinel here. */
static void ring_task_done(void *ctx, void *record)
{
    struct ring *q = ctx;
    pthread_mutex_lock(&q->lock);
    if (record == NULL)
        q->sentinels_done++;
    else if (((const struct record *)record)->stamp != 0)
        q->bad_task_done++;
    else
        q->records_done++;
    pthread_mutex_unlock(&q->lock);
}

/* =============================================================== hooks */

struct stamper {
    unsigned long next_stamp; /* listener thread only */
    unsigned long released;
    unsigned long done;
    unsigned long originals_modified; /* must stay 0 */
};

/* Makes a stamped copy; the producer's record stays as it was. */
static int32_t stamp_prepare(void *ctx, void *record, void **prepared_out)
{
    struct stamper *st = ctx;
    const struct record *orig = record;
    struct record *copy = malloc(sizeof *copy);
    if (copy == NULL)
        return 1; /* skipped: counted in prepare_errors */
    copy->producer = orig->producer;
    copy->seq = orig->seq;
    copy->stamp = ++st->next_stamp;
    int n = snprintf(copy->msg, sizeof copy->msg, STAMP_PREFIX "%s", orig->msg);
    if (n < 0 || (size_t)n >= sizeof copy->msg) {
        free(copy); /* a failing prepare keeps nothing it made */
        return 2;
    }
    *prepared_out = copy;
    return 0;
}

/* Takes back the stamped copy, after the handler saw it. */
static void stamp_release(void *ctx, void *prepared)
{
    struct stamper *st = ctx;
    st->released++;
    free(prepared);
}

/* Frees the original, after task_done. */
static void record_done(void *ctx, void *record)
{
    struct stamper *st = ctx;
    const struct record *orig = record;
    char expected[sizeof orig->msg];
    snprintf(expected, sizeof expected, "producer %d message %d", orig->producer, orig->seq);
    if (orig->stamp != 0 || strcmp(orig->msg, expected) != 0)
        st->originals_modified++;
    st->done++;
    free(record);
}

/* ============================================================= handler */

struct check_handler {
    unsigned long count;
    unsigned long unstamped;     /* no prefix, or stamp out of order */
    unsigned long duplicates;
    unsigned long out_of_range;
    unsigned char seen[TOTAL];
};

static int32_t check_handle(void *ctx, void *rec)
{
    struct check_handler *h = ctx;
    const struct record *r = rec;

    h->count++;
    /* Stamps are given in dequeue order: the n-th record has stamp n. */
    if (strncmp(r->msg, STAMP_PREFIX, strlen(STAMP_PREFIX)) != 0 || r->stamp != h->count)
        h->unstamped++;
    if (r->producer < 0 || r->producer >= PRODUCERS || r->seq < 0 ||
        r->seq >= RECORDS_PER_PRODUCER) {
        h->out_of_range++;
        return 1;
    }
    unsigned char *seen = &h->seen[r->producer * RECORDS_PER_PRODUCER + r->seq];
    if (*seen)
        h->duplicates++;
    *seen = 1;

    /* Producer 0's records come off the FIFO in the order it put them, so
     * these three lines print the same way on every run. (The stamp number
     * depends on scheduling, so it is not printed.) */
    if (r->producer == 0 && r->seq < 3)
        printf("  %s\n", r->msg);
    return 0;
}

static void check_destroy(void *ctx)
{
    free(ctx);
}

/* =========================================================== producers */

struct producer_arg {
    struct ring *ring;
    int id;
};

static void *producer(void *p)
{
    const struct producer_arg *arg = p;
    for (int seq = 0; seq < RECORDS_PER_PRODUCER; seq++) {
        struct record *r = xmalloc(sizeof *r);
        r->producer = arg->id;
        r->seq = seq;
        r->stamp = 0;
        snprintf(r->msg, sizeof r->msg, "producer %d message %d", arg->id, seq);
        ring_put(arg->ring, r);
    }
    return NULL;
}

/* ================================================================ main */

int main(void)
{
    static struct ring ring; /* must outlive the listener */
    ring_init(&ring);
    struct stamper stamper = {0};

    const ql_queue_vtable vtable = {
        .ctx = &ring,
        .dequeue = ring_dequeue,
        .enqueue_sentinel = ring_enqueue_sentinel,
        .task_done = ring_task_done,
    };
    const ql_hooks hooks = {
        .ctx = &stamper,
        .prepare = stamp_prepare,
        .release = stamp_release,
        .done = record_done,
    };
    struct check_handler *checker = calloc(1, sizeof *checker);
    if (checker == NULL) {
        perror("calloc");
        return EXIT_FAILURE;
    }
    const ql_handler handler = {
        .ctx = checker, .level = 0, .handle = check_handle, .destroy = check_destroy,
    };

    ql_listener *listener = NULL;
    CHECK(ql_listener_new(&vtable, &handler, 1, &hooks, false, &listener));

    printf("custom_queue: %d producers x %d records through a %d-slot ring\n",
           PRODUCERS, RECORDS_PER_PRODUCER, RING_CAPACITY);
    printf("first stamped records of producer 0:\n");
    fflush(stdout);

    CHECK(ql_start(listener));

    pthread_t threads[PRODUCERS];
    struct producer_arg args[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        args[i] = (struct producer_arg){.ring = &ring, .id = i};
        PTHREAD_CHECK(pthread_create(&threads[i], NULL, producer, &args[i]));
    }
    for (int i = 0; i < PRODUCERS; i++)
        PTHREAD_CHECK(pthread_join(threads[i], NULL));

    /* Puts the sentinel (in a flagged slot) behind every record, waits for
     * the listener to reach it, and joins the thread. */
    CHECK(ql_stop(listener));

    ql_stats stats;
    CHECK(ql_listener_stats(listener, &stats));

    unsigned long missing = 0;
    for (size_t i = 0; i < TOTAL; i++)
        missing += !checker->seen[i];

    printf("handler got %lu records: %lu missing, %lu duplicated, %lu unstamped\n",
           checker->count, missing, checker->duplicates, checker->unstamped);
    printf("stamped copies released: %lu, originals done: %lu, originals modified: %lu\n",
           stamper.released, stamper.done, stamper.originals_modified);
    printf("task_done called %lu times (%lu records + %lu sentinel)\n",
           ring.records_done + ring.sentinels_done + ring.bad_task_done,
           ring.records_done, ring.sentinels_done);

    bool ok = checker->count == TOTAL && missing == 0 && checker->duplicates == 0 &&
              checker->unstamped == 0 && checker->out_of_range == 0 &&
              stamper.next_stamp == TOTAL && stamper.released == TOTAL &&
              stamper.done == TOTAL && stamper.originals_modified == 0 &&
              ring.records_done == TOTAL && ring.sentinels_done == 1 &&
              ring.bad_task_done == 0 && ring.len == 0 && stats.handled == TOTAL &&
              stats.handler_errors == 0 && stats.prepare_errors == 0 &&
              stats.dequeue_errors == 0;

    /* Destroys the handler (frees checker). The ring and the stamper must
     * stay valid until here; the ring is empty, so nothing is left to free. */
    CHECK(ql_listener_free(listener));
    ring_destroy(&ring);

    if (!ok) {
        printf("custom_queue: MISMATCH\n");
        return EXIT_FAILURE;
    }
    printf("custom_queue: OK\n");
    return EXIT_SUCCESS;
}
