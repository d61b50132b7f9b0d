/*
 * ql_test.h: small shared helpers for the C tests of queue_listener.
 *
 * Include this first in every test (it defines _GNU_SOURCE before any
 * system header, for pthread_getname_np and friends under -std=c11).
 *
 * - CHECK / CHECK_EQ_STATUS / CHECK_EQ_INT / CHECK_EQ_PTR: print file:line
 *   and what went wrong, then exit 1. Usable from any thread.
 * - PASS("..."): one line per check passed.
 * - qlt_latch: a one-shot gate (mutex + condvar) to hold the listener
 *   thread inside a handler until the test opens it.
 * - qlt_counter: a counter others can wait on ("wait until >= n").
 * - qlt_log: an ordered log of (who, record) events, waitable.
 * - qlt_handler_ctx: a recording handler (counts, log, flush, destroy).
 * - qlt_cq: a program-side queue behind a ql_queue_vtable, counting every
 *   callback (sentinels, task_done, unfinished tasks as Python's
 *   queue.Queue), optionally bounded, reporting EMPTY, or failing.
 *
 * - qlt_begin / qlt_end: the program's first and last lines; qlt_begin
 *   arms a watchdog (SIGALRM, re-armed by every PASS) so that a hang inside
 *   the library fails the test instead of blocking it.
 *
 * No sleep is used to wait for an outcome: every wait is on a condition,
 * with a generous deadline (QLT_WAIT_SECONDS) that turns a hang into a
 * failure. qlt_sleep_ms / qlt_sleep_us exist only to make a race likely
 * or to pace a producer. The one poll is qlt_wait_thread_count (the kernel
 * reaps a joined thread with no event to wait on).
 */
#ifndef QL_TEST_H
#define QL_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "queue_listener.h"

/* How long any wait on a condition may take before the test fails. */
#ifndef QLT_WAIT_SECONDS
#define QLT_WAIT_SECONDS 20
#endif

/* How long one check (from one PASS line to the next) may run before the
 * watchdog ends the program: a hang inside the library, where no wait of
 * ours can see it, becomes a failure well before ctest's timeout. */
#ifndef QLT_WATCHDOG_SECONDS
#define QLT_WATCHDOG_SECONDS 30
#endif

/* ------------------------------------------------------------ checks */

#define QLT_FAIL(...)                                                        \
    do {                                                                     \
        fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);                \
        fprintf(stderr, __VA_ARGS__);                                        \
        fputc('\n', stderr);                                                 \
        fflush(NULL);                                                        \
        _exit(1);                                                            \
    } while (0)

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) QLT_FAIL("CHECK(%s)", #cond);                           \
    } while (0)

#define CHECK_EQ_STATUS(got, want)                                           \
    do {                                                                     \
        ql_status qlt_g_ = (got);                                            \
        ql_status qlt_w_ = (want);                                           \
        if (qlt_g_ != qlt_w_)                                                \
            QLT_FAIL("%s: got %d (%s), want %d (%s)", #got, (int)qlt_g_,     \
                     ql_status_str(qlt_g_), (int)qlt_w_,                     \
                     ql_status_str(qlt_w_));                                 \
    } while (0)

#define CHECK_OK(expr) CHECK_EQ_STATUS((expr), QL_OK)

#define CHECK_EQ_INT(got, want)                                              \
    do {                                                                     \
        long long qlt_g_ = (long long)(got);                                 \
        long long qlt_w_ = (long long)(want);                                \
        if (qlt_g_ != qlt_w_)                                                \
            QLT_FAIL("%s == %s: got %lld, want %lld", #got, #want, qlt_g_,   \
                     qlt_w_);                                                \
    } while (0)

#define CHECK_EQ_PTR(got, want)                                              \
    do {                                                                     \
        const void *qlt_g_ = (const void *)(got);                            \
        const void *qlt_w_ = (const void *)(want);                           \
        if (qlt_g_ != qlt_w_)                                                \
            QLT_FAIL("%s == %s: got %p, want %p", #got, #want, qlt_g_,       \
                     qlt_w_);                                                \
    } while (0)

#define PASS(...)                                                            \
    do {                                                                     \
        printf("  ok: ");                                                    \
        printf(__VA_ARGS__);                                                 \
        printf("\n");                                                        \
        fflush(stdout);                                                      \
        alarm(QLT_WATCHDOG_SECONDS); /* re-arm the watchdog (qlt_begin) */   \
    } while (0)

/* Records that are small integers (never dereferenced). */
#define QLT_REC(n) ((void *)(uintptr_t)(n))
#define QLT_NUM(p) ((long)(uintptr_t)(p))

/* Checks a pthread call. */
#define QLT_PT(call)                                                         \
    do {                                                                     \
        int qlt_rc_ = (call);                                                \
        if (qlt_rc_ != 0) QLT_FAIL("%s: %s", #call, strerror(qlt_rc_));      \
    } while (0)

/* ------------------------------------------------------------ time */

static inline long long qlt_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Only to make a race likely; never to wait for an outcome. */
static inline void qlt_sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static inline void qlt_sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static inline struct timespec qlt_deadline(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += QLT_WAIT_SECONDS;
    return ts;
}

/* Waits on cv; fails the test once the deadline passed (a hang). */
static inline void qlt_cond_wait(pthread_cond_t *cv, pthread_mutex_t *mu,
                                 const struct timespec *deadline,
                                 const char *what) {
    int rc = pthread_cond_timedwait(cv, mu, deadline);
    if (rc == ETIMEDOUT) QLT_FAIL("no progress after %ds waiting for %s", QLT_WAIT_SECONDS, what);
    if (rc != 0) QLT_FAIL("pthread_cond_timedwait: %s", strerror(rc));
}

static inline void qlt_watchdog(int sig) {
    static const char msg[] =
        "FAIL: watchdog: the test made no progress (hang); the last 'ok' line above "
        "tells which check was running\n";
    (void)sig;
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(1);
}

/* Starts a test program: prints its name, arms the watchdog (SIGALRM ends
 * the program with a message if one check hangs; PASS re-arms it). */
static inline void qlt_begin(const char *name) {
    printf("%s (queue_listener %s)\n", name, ql_version());
    fflush(stdout);
    /* The header this test was compiled with is the library's version. */
    char header_version[32];
    snprintf(header_version, sizeof header_version, "%d.%d.%d", QL_VERSION_MAJOR,
             QL_VERSION_MINOR, QL_VERSION_PATCH);
    if (strcmp(header_version, ql_version()) != 0)
        QLT_FAIL("header version %s, library version %s", header_version, ql_version());
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = qlt_watchdog;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGALRM, &sa, NULL) != 0) QLT_FAIL("sigaction: %s", strerror(errno));
    alarm(QLT_WATCHDOG_SECONDS);
}

static inline int qlt_end(void) {
    printf("OK\n");
    fflush(stdout);
    return 0;
}

/* Threads of this process, from /proc/self/task. */
static inline int qlt_thread_count(void) {
    DIR *dir = opendir("/proc/self/task");
    if (!dir) QLT_FAIL("opendir(/proc/self/task): %s", strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] != '.') n++;
    }
    closedir(dir);
    return n;
}

/* Waits until the process has n threads. A joined thread leaves
 * /proc/self/task a moment after pthread_join returns (the kernel reaps it
 * after waking the joiner), and there is no event to wait on, so this polls
 * the condition, with a deadline. */
static inline void qlt_wait_thread_count(int n) {
    long long until = qlt_now_ms() + 1000LL * QLT_WAIT_SECONDS;
    int got;
    while ((got = qlt_thread_count()) != n) {
        if (qlt_now_ms() > until) QLT_FAIL("thread count stays %d, want %d", got, n);
        qlt_sleep_ms(1);
    }
}

static inline bool qlt_is_running(const ql_listener *l) {
    bool running = false;
    CHECK_OK(ql_listener_is_running(l, &running));
    return running;
}

static inline ql_stats qlt_stats(const ql_listener *l) {
    ql_stats s;
    memset(&s, 0xAB, sizeof s);
    CHECK_OK(ql_listener_stats(l, &s));
    return s;
}

static inline size_t qlt_queue_len(const ql_queue *q) {
    size_t n = (size_t)-1;
    CHECK_OK(ql_queue_len(q, &n));
    return n;
}

/* ------------------------------------------------------------ latch */

/* A one-shot gate: waiters block until someone opens it. It also counts
 * the threads that arrived at it, so a test can wait until the listener
 * thread is inside a handler ("entered") before going on. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
    long arrived;
} qlt_latch;

static inline void qlt_latch_init(qlt_latch *l) {
    QLT_PT(pthread_mutex_init(&l->mu, NULL));
    QLT_PT(pthread_cond_init(&l->cv, NULL));
    l->open = false;
    l->arrived = 0;
}

static inline void qlt_latch_destroy(qlt_latch *l) {
    QLT_PT(pthread_cond_destroy(&l->cv));
    QLT_PT(pthread_mutex_destroy(&l->mu));
}

static inline void qlt_latch_open(qlt_latch *l) {
    QLT_PT(pthread_mutex_lock(&l->mu));
    l->open = true;
    QLT_PT(pthread_cond_broadcast(&l->cv));
    QLT_PT(pthread_mutex_unlock(&l->mu));
}

/* Arrives at the gate (counted) and waits until it is open. */
static inline void qlt_latch_wait(qlt_latch *l) {
    struct timespec dl = qlt_deadline();
    QLT_PT(pthread_mutex_lock(&l->mu));
    l->arrived++;
    QLT_PT(pthread_cond_broadcast(&l->cv));
    while (!l->open) qlt_cond_wait(&l->cv, &l->mu, &dl, "a latch to open");
    QLT_PT(pthread_mutex_unlock(&l->mu));
}

/* Waits until at least n threads arrived at the gate. */
static inline void qlt_latch_wait_arrived(qlt_latch *l, long n) {
    struct timespec dl = qlt_deadline();
    QLT_PT(pthread_mutex_lock(&l->mu));
    while (l->arrived < n) qlt_cond_wait(&l->cv, &l->mu, &dl, "a thread to reach a latch");
    QLT_PT(pthread_mutex_unlock(&l->mu));
}

/* ------------------------------------------------------------ counter */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long value;
} qlt_counter;

static inline void qlt_counter_init(qlt_counter *c) {
    QLT_PT(pthread_mutex_init(&c->mu, NULL));
    QLT_PT(pthread_cond_init(&c->cv, NULL));
    c->value = 0;
}

static inline void qlt_counter_destroy(qlt_counter *c) {
    QLT_PT(pthread_cond_destroy(&c->cv));
    QLT_PT(pthread_mutex_destroy(&c->mu));
}

static inline long qlt_counter_add(qlt_counter *c, long n) {
    QLT_PT(pthread_mutex_lock(&c->mu));
    long v = (c->value += n);
    QLT_PT(pthread_cond_broadcast(&c->cv));
    QLT_PT(pthread_mutex_unlock(&c->mu));
    return v;
}

static inline long qlt_counter_get(qlt_counter *c) {
    QLT_PT(pthread_mutex_lock(&c->mu));
    long v = c->value;
    QLT_PT(pthread_mutex_unlock(&c->mu));
    return v;
}

static inline void qlt_counter_wait_at_least(qlt_counter *c, long n) {
    struct timespec dl = qlt_deadline();
    QLT_PT(pthread_mutex_lock(&c->mu));
    while (c->value < n) qlt_cond_wait(&c->cv, &c->mu, &dl, "a counter to reach its target");
    QLT_PT(pthread_mutex_unlock(&c->mu));
}

/* ------------------------------------------------------------ event log */

typedef struct {
    int who;      /* handler id, or any tag the test chooses */
    void *record; /* the record involved */
} qlt_event;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    qlt_event *ev;
    size_t len, cap;
} qlt_log;

static inline void qlt_log_init(qlt_log *g, size_t cap) {
    QLT_PT(pthread_mutex_init(&g->mu, NULL));
    QLT_PT(pthread_cond_init(&g->cv, NULL));
    g->ev = (qlt_event *)calloc(cap ? cap : 1, sizeof *g->ev);
    CHECK(g->ev != NULL);
    g->len = 0;
    g->cap = cap;
}

static inline void qlt_log_destroy(qlt_log *g) {
    free(g->ev);
    QLT_PT(pthread_cond_destroy(&g->cv));
    QLT_PT(pthread_mutex_destroy(&g->mu));
}

static inline size_t qlt_log_push(qlt_log *g, int who, void *record) {
    QLT_PT(pthread_mutex_lock(&g->mu));
    if (g->len == g->cap) QLT_FAIL("event log overflow (%zu events)", g->cap);
    size_t i = g->len++;
    g->ev[i].who = who;
    g->ev[i].record = record;
    QLT_PT(pthread_cond_broadcast(&g->cv));
    QLT_PT(pthread_mutex_unlock(&g->mu));
    return i;
}

static inline size_t qlt_log_len(qlt_log *g) {
    QLT_PT(pthread_mutex_lock(&g->mu));
    size_t n = g->len;
    QLT_PT(pthread_mutex_unlock(&g->mu));
    return n;
}

static inline void qlt_log_wait_len(qlt_log *g, size_t n) {
    struct timespec dl = qlt_deadline();
    QLT_PT(pthread_mutex_lock(&g->mu));
    while (g->len < n) qlt_cond_wait(&g->cv, &g->mu, &dl, "log events");
    QLT_PT(pthread_mutex_unlock(&g->mu));
}

/* ------------------------------------------------------------ handler */

/* A recording handler. Every field is safe to read once the listener is
 * stopped (ql_stop joins its thread); `handled` may be waited on while it
 * runs. */
typedef struct {
    int id;
    qlt_log *log;          /* optional: every handle call appended (who = id) */
    qlt_latch *gate;       /* optional: every handle call waits at this gate */
    int32_t fail_code;     /* returned by handle when nonzero ... */
    long fail_every;       /* ... for every fail_every-th call (1: all); 0 never */
    qlt_counter handled;   /* handle calls */
    qlt_counter flushed;   /* flush calls (waitable: the loop has ended) */
    atomic_long flushes;   /* flush calls */
    atomic_long destroys;  /* destroy calls */
    atomic_long handled_at_flush; /* `handled` when flush was last called */
} qlt_handler_ctx;

static inline void qlt_handler_init(qlt_handler_ctx *h, int id, qlt_log *log) {
    memset(h, 0, sizeof *h);
    h->id = id;
    h->log = log;
    qlt_counter_init(&h->handled);
    qlt_counter_init(&h->flushed);
    atomic_init(&h->flushes, 0);
    atomic_init(&h->destroys, 0);
    atomic_init(&h->handled_at_flush, -1);
}

static inline void qlt_handler_fini(qlt_handler_ctx *h) {
    qlt_counter_destroy(&h->handled);
    qlt_counter_destroy(&h->flushed);
}

static inline int32_t qlt_handler_handle(void *ctx, void *record) {
    qlt_handler_ctx *h = (qlt_handler_ctx *)ctx;
    if (atomic_load(&h->destroys) != 0) QLT_FAIL("handler %d used after destroy", h->id);
    if (h->gate) qlt_latch_wait(h->gate);
    if (h->log) qlt_log_push(h->log, h->id, record);
    long n = qlt_counter_add(&h->handled, 1);
    if (h->fail_every > 0 && n % h->fail_every == 0) return h->fail_code;
    return 0;
}

static inline void qlt_handler_flush(void *ctx) {
    qlt_handler_ctx *h = (qlt_handler_ctx *)ctx;
    atomic_store(&h->handled_at_flush, qlt_counter_get(&h->handled));
    atomic_fetch_add(&h->flushes, 1);
    qlt_counter_add(&h->flushed, 1);
}

static inline void qlt_handler_destroy(void *ctx) {
    qlt_handler_ctx *h = (qlt_handler_ctx *)ctx;
    atomic_fetch_add(&h->destroys, 1);
}

static inline ql_handler qlt_handler(qlt_handler_ctx *h, int32_t level) {
    ql_handler out;
    out.ctx = h;
    out.level = level;
    out.handle = qlt_handler_handle;
    out.flush = qlt_handler_flush;
    out.destroy = qlt_handler_destroy;
    out.batch_end = NULL;
    return out;
}

/* ------------------------------------------------------------ vtable queue */

typedef struct {
    void *record;
    bool sentinel;
} qlt_item;

/* A thread-safe FIFO behind a ql_queue_vtable, counting everything.
 * All counters are under `mu`; read them with qlt_cq_get or once the
 * listener is stopped. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* broadcast on every change */
    qlt_item *items;
    size_t head, len, cap; /* items[head .. head+len) */
    size_t capacity;       /* 0: unbounded */

    /* behaviour */
    bool empty_mode;        /* dequeue returns EMPTY instead of waiting */
    long empty_sleep_ms;    /* ... after counting it, sleeps this long before
                               returning (only to make a race likely) */
    bool sentinel_wait_ack; /* enqueue_sentinel returns only once the listener
                               acknowledged the sentinel (task_done(NULL)), or
                               after 1 s: forces the interleaving in which the
                               listener takes the sentinel before the stopping
                               thread goes on */
    long fail_dequeues;     /* the next N dequeues return this code: */
    int32_t fail_dequeue_code; /* QL_DEQUEUE_ERROR by default */
    bool force_sentinel_result; /* enqueue_sentinel returns sentinel_result */
    int32_t sentinel_result;

    /* counters */
    long puts;              /* records and sentinels put (queue.Queue's unfinished_tasks++) */
    long records_put;
    long sentinel_calls;    /* enqueue_sentinel calls */
    long sentinel_ok;       /* ... that put a sentinel */
    long sentinel_full;     /* ... that found no room */
    long dequeue_calls;
    long dequeued_records;
    long dequeued_sentinels;
    long empties;           /* dequeues that returned EMPTY */
    long dequeue_errors;    /* dequeues that returned an error */
    long task_done_records; /* task_done with a non-NULL record */
    long task_done_null;    /* task_done with NULL (the sentinel) */
    long unfinished;        /* Python's unfinished_tasks */
    long task_done_too_many; /* task_done below zero (Python's ValueError) */

    /* pairing: the listener calls task_done for an item before its next
     * dequeue, so a queue knows which item (NULL record or sentinel) a
     * task_done is for */
    bool awaiting_task_done; /* an item was handed out, no task_done yet */
    bool last_was_sentinel;
    void *last_record;
    long task_done_mismatch;       /* task_done not for the last item handed out */
    long dequeue_before_task_done; /* an item handed out before the last one's task_done */
} qlt_cq;

static inline void qlt_cq_init(qlt_cq *q, size_t capacity) {
    memset(q, 0, sizeof *q);
    QLT_PT(pthread_mutex_init(&q->mu, NULL));
    QLT_PT(pthread_cond_init(&q->cv, NULL));
    q->capacity = capacity;
    q->cap = capacity ? capacity : 64;
    q->items = (qlt_item *)calloc(q->cap, sizeof *q->items);
    CHECK(q->items != NULL);
    q->fail_dequeue_code = QL_DEQUEUE_ERROR;
}

static inline void qlt_cq_destroy(qlt_cq *q) {
    free(q->items);
    QLT_PT(pthread_cond_destroy(&q->cv));
    QLT_PT(pthread_mutex_destroy(&q->mu));
}

static inline void qlt_cq_lock(qlt_cq *q) { QLT_PT(pthread_mutex_lock(&q->mu)); }
static inline void qlt_cq_unlock(qlt_cq *q) { QLT_PT(pthread_mutex_unlock(&q->mu)); }

/* Under the lock: appends an item if there is room. */
static inline bool qlt_cq_push_locked(qlt_cq *q, void *record, bool sentinel) {
    if (q->capacity && q->len == q->capacity) return false;
    if (q->head + q->len == q->cap) {
        if (q->head > 0) {
            memmove(q->items, q->items + q->head, q->len * sizeof *q->items);
            q->head = 0;
        } else {
            q->cap *= 2;
            q->items = (qlt_item *)realloc(q->items, q->cap * sizeof *q->items);
            CHECK(q->items != NULL);
        }
    }
    q->items[q->head + q->len].record = record;
    q->items[q->head + q->len].sentinel = sentinel;
    q->len++;
    q->puts++;
    q->unfinished++;
    QLT_PT(pthread_cond_broadcast(&q->cv));
    return true;
}

/* Puts a record without waiting; false when the bounded queue is full. */
static inline bool qlt_cq_try_put(qlt_cq *q, void *record) {
    qlt_cq_lock(q);
    bool ok = qlt_cq_push_locked(q, record, false);
    if (ok) q->records_put++;
    qlt_cq_unlock(q);
    return ok;
}

static inline void qlt_cq_put(qlt_cq *q, void *record) {
    if (!qlt_cq_try_put(q, record)) QLT_FAIL("qlt_cq_put: queue full");
}

static inline ql_dequeue_result qlt_cq_dequeue(void *ctx, bool block, void **record_out) {
    qlt_cq *q = (qlt_cq *)ctx;
    struct timespec dl = qlt_deadline();
    qlt_cq_lock(q);
    q->dequeue_calls++;
    ql_dequeue_result result;
    long sleep_ms = 0;
    for (;;) {
        if (q->fail_dequeues > 0) {
            q->fail_dequeues--;
            q->dequeue_errors++;
            result = q->fail_dequeue_code;
            break;
        }
        if (q->len > 0) {
            qlt_item it = q->items[q->head];
            q->head++;
            q->len--;
            if (it.sentinel) {
                q->dequeued_sentinels++;
                result = QL_DEQUEUE_SENTINEL;
            } else {
                q->dequeued_records++;
                *record_out = it.record;
                result = QL_DEQUEUE_RECORD;
            }
            if (q->awaiting_task_done) q->dequeue_before_task_done++;
            q->awaiting_task_done = true;
            q->last_was_sentinel = it.sentinel;
            q->last_record = it.record;
            break;
        }
        if (q->empty_mode || !block) {
            q->empties++;
            result = QL_DEQUEUE_EMPTY;
            sleep_ms = q->empty_sleep_ms;
            break;
        }
        qlt_cond_wait(&q->cv, &q->mu, &dl, "an item in the vtable queue");
    }
    QLT_PT(pthread_cond_broadcast(&q->cv));
    qlt_cq_unlock(q);
    if (sleep_ms) qlt_sleep_ms(sleep_ms);
    return result;
}

static inline ql_enqueue_result qlt_cq_enqueue_sentinel(void *ctx) {
    qlt_cq *q = (qlt_cq *)ctx;
    qlt_cq_lock(q);
    q->sentinel_calls++;
    ql_enqueue_result result;
    if (q->force_sentinel_result) {
        result = q->sentinel_result;
    } else if (qlt_cq_push_locked(q, NULL, true)) {
        q->sentinel_ok++;
        result = QL_ENQUEUE_OK;
        if (q->sentinel_wait_ack) {
            /* A bounded wait: an engine that cannot let the listener go on
             * here is not blocked, only the interleaving is not forced. */
            long acked = q->task_done_null + 1;
            struct timespec dl;
            clock_gettime(CLOCK_REALTIME, &dl);
            dl.tv_sec += 1;
            while (q->task_done_null < acked) {
                if (pthread_cond_timedwait(&q->cv, &q->mu, &dl) == ETIMEDOUT) break;
            }
        }
    } else {
        q->sentinel_full++;
        result = QL_ENQUEUE_FULL;
    }
    QLT_PT(pthread_cond_broadcast(&q->cv));
    qlt_cq_unlock(q);
    return result;
}

static inline void qlt_cq_task_done(void *ctx, void *record) {
    qlt_cq *q = (qlt_cq *)ctx;
    qlt_cq_lock(q);
    if (record) q->task_done_records++;
    else q->task_done_null++;
    if (!q->awaiting_task_done || (q->last_was_sentinel ? record != NULL : record != q->last_record))
        q->task_done_mismatch++;
    q->awaiting_task_done = false;
    if (q->unfinished == 0) q->task_done_too_many++;
    else q->unfinished--;
    QLT_PT(pthread_cond_broadcast(&q->cv));
    qlt_cq_unlock(q);
}

static inline ql_queue_vtable qlt_cq_vtable(qlt_cq *q) {
    ql_queue_vtable vt;
    vt.ctx = q;
    vt.dequeue = qlt_cq_dequeue;
    vt.enqueue_sentinel = qlt_cq_enqueue_sentinel;
    vt.task_done = qlt_cq_task_done;
    return vt;
}

/* The listener acknowledged each item it took, in order, before taking
 * the next one (call once it is stopped). */
static inline void qlt_cq_check_pairing(qlt_cq *q) {
    qlt_cq_lock(q);
    long mismatch = q->task_done_mismatch, early = q->dequeue_before_task_done;
    qlt_cq_unlock(q);
    if (mismatch || early)
        QLT_FAIL("task_done pairing: %ld task_done calls not for the item last handed out, "
                 "%ld dequeues before the previous item's task_done",
                 mismatch, early);
}

/* Items queued now. */
static inline long qlt_cq_len(qlt_cq *q) {
    qlt_cq_lock(q);
    long v = (long)q->len;
    qlt_cq_unlock(q);
    return v;
}

/* Reads one counter of the queue under its lock. */
static inline long qlt_cq_get(qlt_cq *q, const long *field) {
    qlt_cq_lock(q);
    long v = *field;
    qlt_cq_unlock(q);
    return v;
}

/* Waits until one counter of the queue is at least n. */
static inline void qlt_cq_wait_at_least(qlt_cq *q, const long *field, long n) {
    struct timespec dl = qlt_deadline();
    qlt_cq_lock(q);
    while (*field < n) qlt_cond_wait(&q->cv, &q->mu, &dl, "a vtable queue counter");
    qlt_cq_unlock(q);
}

#endif /* QL_TEST_H */

/* ================================================================ records
 *
 * Helpers for built-in records (ql_log / ql_logf), appended for
 * test_records, test_overflow, test_flush and test_stats:
 *
 * - qlt_sink: a handler that casts each record to `const ql_record *`,
 *   checks its strings are NUL-terminated where their lengths say, and
 *   keeps a deep copy (the record is valid only during the call). It can
 *   hold the listener at a latch when it gets a record with a given
 *   message, run a test's own callback first, count flush and batch_end
 *   calls, and (with copy off) only count.
 * - qlt_realtime_ns / qlt_gettid: wall clock and the Linux thread id.
 */
#ifndef QL_TEST_RECORDS_H
#define QL_TEST_RECORDS_H

#include <sys/syscall.h>

static inline int64_t qlt_realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline uint32_t qlt_gettid(void) { return (uint32_t)syscall(SYS_gettid); }

/* A deep copy of one ql_record. */
typedef struct {
    int32_t level;
    uint32_t thread_id;
    int64_t timestamp_ns;
    void *user;
    char *logger; /* logger_len bytes + NUL */
    size_t logger_len;
    char *message; /* message_len bytes + NUL */
    size_t message_len;
} qlt_rec;

/* True when the copy's message is exactly the C string `text`. */
static inline bool qlt_rec_is(const qlt_rec *r, const char *text) {
    size_t n = strlen(text);
    return r->message_len == n && memcmp(r->message, text, n) == 0;
}

#define QLT_SINK_GATES 4

typedef struct qlt_sink qlt_sink;
struct qlt_sink {
    int id;
    bool copy; /* keep copies (default); false: count only */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    qlt_rec *recs;
    size_t len, cap;
    long count; /* handle calls */
    /* a record whose message is gate_msg[i] waits at gate[i] first */
    const char *gate_msg[QLT_SINK_GATES];
    qlt_latch *gate[QLT_SINK_GATES];
    /* optional, called first in every handle call (listener thread) */
    void (*on_record)(qlt_sink *s, const ql_record *r);
    void *arg;
    atomic_long flushes;
    atomic_long count_at_flush; /* `count` at the last flush */
    qlt_counter batch_ends;     /* batch_end calls (waitable) */
    atomic_long count_at_batch_end;
    atomic_long wrong_thread; /* calls not on the listener thread ql-listener */
};

static inline void qlt_sink_init(qlt_sink *s, int id) {
    memset(s, 0, sizeof *s);
    s->id = id;
    s->copy = true;
    QLT_PT(pthread_mutex_init(&s->mu, NULL));
    QLT_PT(pthread_cond_init(&s->cv, NULL));
    atomic_init(&s->flushes, 0);
    atomic_init(&s->count_at_flush, -1);
    qlt_counter_init(&s->batch_ends);
    atomic_init(&s->count_at_batch_end, -1);
    atomic_init(&s->wrong_thread, 0);
}

static inline void qlt_sink_fini(qlt_sink *s) {
    for (size_t i = 0; i < s->len; i++) {
        free(s->recs[i].logger);
        free(s->recs[i].message);
    }
    free(s->recs);
    qlt_counter_destroy(&s->batch_ends);
    QLT_PT(pthread_cond_destroy(&s->cv));
    QLT_PT(pthread_mutex_destroy(&s->mu));
}

static inline void qlt_sink_check_thread(qlt_sink *s) {
    char name[32] = "";
    if (pthread_getname_np(pthread_self(), name, sizeof name) != 0 ||
        strcmp(name, "ql-listener") != 0)
        atomic_fetch_add(&s->wrong_thread, 1);
}

static inline int32_t qlt_sink_handle(void *ctx, void *record) {
    qlt_sink *s = (qlt_sink *)ctx;
    const ql_record *r = (const ql_record *)record;
    if (r == NULL) QLT_FAIL("sink %d: NULL record", s->id);
    if (r->logger == NULL || r->message == NULL)
        QLT_FAIL("sink %d: record with a NULL logger or message", s->id);
    if (r->logger[r->logger_len] != '\0' || strlen(r->logger) != r->logger_len)
        QLT_FAIL("sink %d: logger not NUL-terminated at logger_len %zu", s->id, r->logger_len);
    if (r->message[r->message_len] != '\0')
        QLT_FAIL("sink %d: message not NUL-terminated at message_len %zu", s->id, r->message_len);
    qlt_sink_check_thread(s);
    if (s->on_record) s->on_record(s, r);
    for (int i = 0; i < QLT_SINK_GATES; i++) {
        if (s->gate[i] && s->gate_msg[i] && r->message_len == strlen(s->gate_msg[i]) &&
            memcmp(r->message, s->gate_msg[i], r->message_len) == 0)
            qlt_latch_wait(s->gate[i]);
    }
    qlt_rec c;
    memset(&c, 0, sizeof c);
    if (s->copy) {
        c.level = r->level;
        c.thread_id = r->thread_id;
        c.timestamp_ns = r->timestamp_ns;
        c.user = r->user;
        c.logger_len = r->logger_len;
        c.message_len = r->message_len;
        c.logger = (char *)malloc(r->logger_len + 1);
        c.message = (char *)malloc(r->message_len + 1);
        CHECK(c.logger != NULL && c.message != NULL);
        memcpy(c.logger, r->logger, r->logger_len + 1);
        memcpy(c.message, r->message, r->message_len + 1);
    }
    QLT_PT(pthread_mutex_lock(&s->mu));
    if (s->copy) {
        if (s->len == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 64;
            s->recs = (qlt_rec *)realloc(s->recs, s->cap * sizeof *s->recs);
            CHECK(s->recs != NULL);
        }
        s->recs[s->len++] = c;
    }
    s->count++;
    QLT_PT(pthread_cond_broadcast(&s->cv));
    QLT_PT(pthread_mutex_unlock(&s->mu));
    return 0;
}

static inline long qlt_sink_count(qlt_sink *s) {
    QLT_PT(pthread_mutex_lock(&s->mu));
    long n = s->count;
    QLT_PT(pthread_mutex_unlock(&s->mu));
    return n;
}

static inline void qlt_sink_flush(void *ctx) {
    qlt_sink *s = (qlt_sink *)ctx;
    qlt_sink_check_thread(s);
    atomic_store(&s->count_at_flush, qlt_sink_count(s));
    atomic_fetch_add(&s->flushes, 1);
}

static inline void qlt_sink_batch_end(void *ctx) {
    qlt_sink *s = (qlt_sink *)ctx;
    qlt_sink_check_thread(s);
    atomic_store(&s->count_at_batch_end, qlt_sink_count(s));
    qlt_counter_add(&s->batch_ends, 1);
}

/* The sink as a handler; no destroy (the test owns the sink). */
static inline ql_handler qlt_sink_handler(qlt_sink *s, int32_t level) {
    ql_handler h;
    h.ctx = s;
    h.level = level;
    h.handle = qlt_sink_handle;
    h.flush = qlt_sink_flush;
    h.destroy = NULL;
    h.batch_end = qlt_sink_batch_end;
    return h;
}

/* A started listener on q whose one handler is the sink (level 0). */
static inline ql_listener *qlt_start_sink(ql_queue *q, qlt_sink *s) {
    ql_handler h = qlt_sink_handler(s, 0);
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l));
    CHECK_OK(ql_start(l));
    return l;
}

/* Waits until the sink got at least n records. */
static inline void qlt_sink_wait(qlt_sink *s, long n) {
    struct timespec dl = qlt_deadline();
    QLT_PT(pthread_mutex_lock(&s->mu));
    while (s->count < n) qlt_cond_wait(&s->cv, &s->mu, &dl, "records at a sink");
    QLT_PT(pthread_mutex_unlock(&s->mu));
}

/* A copy of the i-th record (its strings stay owned by the sink). */
static inline qlt_rec qlt_sink_at(qlt_sink *s, size_t i) {
    QLT_PT(pthread_mutex_lock(&s->mu));
    if (i >= s->len) QLT_FAIL("sink %d: record %zu asked, %zu held", s->id, i, s->len);
    qlt_rec r = s->recs[i];
    QLT_PT(pthread_mutex_unlock(&s->mu));
    return r;
}

/* Fails unless the sink's messages are exactly `want[0..n)`, in order. */
#define qlt_sink_expect(s, want, n) qlt_sink_expect_at(__FILE__, __LINE__, (s), (want), (n))
static inline void qlt_sink_expect_at(const char *file, int line, qlt_sink *s,
                                      const char *const *want, size_t n) {
    QLT_PT(pthread_mutex_lock(&s->mu));
    bool same = s->len == n;
    for (size_t i = 0; same && i < n; i++) same = qlt_rec_is(&s->recs[i], want[i]);
    if (!same) {
        fprintf(stderr, "%s:%d: FAIL: sink %d got %zu records, want %zu\n  got: ", file, line,
                s->id, s->len, n);
        for (size_t i = 0; i < s->len; i++)
            fprintf(stderr, "\"%.*s\" ", (int)(s->recs[i].message_len < 40 ? s->recs[i].message_len : 40),
                    s->recs[i].message);
        fprintf(stderr, "\n  want: ");
        for (size_t i = 0; i < n; i++) fprintf(stderr, "\"%s\" ", want[i]);
        fputc('\n', stderr);
        fflush(NULL);
        _exit(1);
    }
    QLT_PT(pthread_mutex_unlock(&s->mu));
}

/* Logs a C string (level INFO, logger "test"). */
static inline ql_status qlt_log_str(const ql_queue *q, const char *text) {
    return ql_log(q, QL_LEVEL_INFO, "test", text, strlen(text));
}

/* Runs one test function and prints how long it took. */
#define QLT_RUN(fn)                                                          \
    do {                                                                     \
        long long qlt_t0_ = qlt_now_ms();                                    \
        fn();                                                                \
        printf("     (%s: %lld ms)\n", #fn, qlt_now_ms() - qlt_t0_);         \
        fflush(stdout);                                                      \
    } while (0)

#endif /* QL_TEST_RECORDS_H */
