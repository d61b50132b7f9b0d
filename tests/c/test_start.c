/*
 * test_start: ql_start.
 *
 * - start while running: QL_ERR_ALREADY_STARTED, no second thread (thread
 *   ids seen by the handler, /proc/self/task); two threads starting at
 *   once: exactly one succeeds;
 * - 1000 start/stop cycles while a producer thread keeps putting records:
 *   nothing lost, nothing duplicated, FIFO order kept, thread count back
 *   to where it started;
 * - the listener thread is named "ql-listener".
 */
#include "ql_test.h"

/* ------------------------------------------------------------- no second thread */

#define MAX_IDS 16

typedef struct {
    pthread_t ids[MAX_IDS];
    int n_ids;
    qlt_counter count;
} tid_handler;

static int32_t tid_handle(void *ctx, void *record) {
    (void)record;
    tid_handler *h = (tid_handler *)ctx;
    pthread_t me = pthread_self();
    bool seen = false;
    for (int i = 0; i < h->n_ids; i++) seen = seen || pthread_equal(h->ids[i], me);
    if (!seen) {
        CHECK(h->n_ids < MAX_IDS);
        h->ids[h->n_ids++] = me;
    }
    qlt_counter_add(&h->count, 1);
    return 0;
}

typedef struct {
    const ql_listener *l;
    pthread_barrier_t *barrier;
    ql_status status;
} starter;

static void *starter_main(void *arg) {
    starter *s = (starter *)arg;
    int rc = pthread_barrier_wait(s->barrier);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) QLT_FAIL("pthread_barrier_wait: %d", rc);
    s->status = ql_start(s->l);
    return NULL;
}

static void start_while_running(void) {
    tid_handler h;
    memset(&h, 0, sizeof h);
    qlt_counter_init(&h.count);
    ql_handler handler = {&h, 0, tid_handle, NULL, NULL, NULL};
    ql_queue *q = NULL;
    ql_listener *l = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_listener_new_with_queue(q, &handler, 1, NULL, false, &l));
    const int base = qlt_thread_count();
    CHECK_OK(ql_start(l));
    qlt_wait_thread_count(base + 1);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ_STATUS(ql_start(l), QL_ERR_ALREADY_STARTED);
        CHECK_OK(ql_queue_put(q, QLT_REC(i + 1)));
    }
    qlt_counter_wait_at_least(&h.count, 5);
    CHECK_EQ_INT(qlt_thread_count(), base + 1);
    CHECK_EQ_STATUS(ql_start(l), QL_ERR_ALREADY_STARTED);
    CHECK(qlt_is_running(l));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(qlt_counter_get(&h.count), 5);
    CHECK_EQ_INT(h.n_ids, 1);
    CHECK(!qlt_is_running(l));
    qlt_wait_thread_count(base);
    PASS("start while running: QL_ERR_ALREADY_STARTED x6, one listener thread (1 thread id, "
         "%d -> %d threads)",
         base, base + 1);

    /* Two threads starting at once, many times: one QL_OK, one refusal. */
    for (int round = 0; round < 200; round++) {
        pthread_barrier_t barrier;
        QLT_PT(pthread_barrier_init(&barrier, NULL, 2));
        starter s[2] = {{l, &barrier, -1}, {l, &barrier, -1}};
        pthread_t t[2];
        for (int i = 0; i < 2; i++) QLT_PT(pthread_create(&t[i], NULL, starter_main, &s[i]));
        for (int i = 0; i < 2; i++) QLT_PT(pthread_join(t[i], NULL));
        QLT_PT(pthread_barrier_destroy(&barrier));
        int ok = (s[0].status == QL_OK) + (s[1].status == QL_OK);
        int refused = (s[0].status == QL_ERR_ALREADY_STARTED) + (s[1].status == QL_ERR_ALREADY_STARTED);
        if (ok != 1 || refused != 1)
            QLT_FAIL("round %d: concurrent starts gave %s and %s", round, ql_status_str(s[0].status),
                     ql_status_str(s[1].status));
        qlt_wait_thread_count(base + 1);
        CHECK_OK(ql_queue_put(q, QLT_REC(round)));
        CHECK_OK(ql_stop(l));
        CHECK_EQ_INT(qlt_counter_get(&h.count), 5 + round + 1);
    }
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_counter_destroy(&h.count);
    qlt_wait_thread_count(base);
    PASS("two threads starting at once, 200 rounds: exactly one QL_OK and one "
         "QL_ERR_ALREADY_STARTED each time, never a second thread");
}

/* ------------------------------------------------------------- start/stop churn */

enum { CYCLES = 1000, MAX_RECORDS = 2000000 };

typedef struct {
    long expected; /* next sequence number */
    long out_of_order;
    long count;
    unsigned char *seen; /* per sequence number: times handled */
} churn_handler;

static int32_t churn_handle(void *ctx, void *record) {
    churn_handler *h = (churn_handler *)ctx;
    long seq = QLT_NUM(record);
    if (seq < 1 || seq > MAX_RECORDS) QLT_FAIL("record %ld out of range", seq);
    if (seq != h->expected) h->out_of_order++;
    h->expected = seq + 1;
    if (h->seen[seq] < 255) h->seen[seq]++;
    h->count++;
    return 0;
}

typedef struct {
    const ql_queue *q;
    atomic_bool stop;
    long produced;
} producer;

static void *producer_main(void *arg) {
    producer *p = (producer *)arg;
    long seq = 0;
    while (!atomic_load(&p->stop) && seq < MAX_RECORDS) {
        CHECK_OK(ql_queue_put(p->q, QLT_REC(++seq)));
        if (seq % 16 == 0) qlt_sleep_us(20); /* pacing only: some 100k records a second */
    }
    p->produced = seq;
    return NULL;
}

static void start_stop_churn(void) {
    churn_handler h;
    memset(&h, 0, sizeof h);
    h.expected = 1;
    h.seen = (unsigned char *)calloc(MAX_RECORDS + 1, 1);
    CHECK(h.seen != NULL);
    ql_handler handler = {&h, 0, churn_handle, NULL, NULL, NULL};
    ql_queue *q = NULL;
    ql_listener *l = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_listener_new_with_queue(q, &handler, 1, NULL, false, &l));
    const int base = qlt_thread_count();

    producer p;
    p.q = q;
    atomic_init(&p.stop, false);
    p.produced = 0;
    pthread_t t;
    QLT_PT(pthread_create(&t, NULL, producer_main, &p));
    long long t0 = qlt_now_ms();
    for (int i = 0; i < CYCLES; i++) {
        CHECK_OK(ql_start(l));
        if (i % 2) CHECK_EQ_STATUS(ql_start(l), QL_ERR_ALREADY_STARTED);
        CHECK_OK(ql_stop(l));
        if (i % 3 == 0) CHECK_OK(ql_stop(l)); /* stopped already: no-op */
    }
    atomic_store(&p.stop, true);
    QLT_PT(pthread_join(t, NULL));
    long long took = qlt_now_ms() - t0;
    /* Whatever is still queued is handled by one last run. */
    CHECK_OK(ql_start(l));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    CHECK(p.produced > 0);
    CHECK_EQ_INT(h.count, p.produced);
    CHECK_EQ_INT(h.out_of_order, 0);
    CHECK_EQ_INT(h.expected, p.produced + 1);
    for (long s = 1; s <= p.produced; s++) {
        if (h.seen[s] != 1) QLT_FAIL("record %ld handled %d times", s, h.seen[s]);
    }
    ql_stats st = qlt_stats(l);
    CHECK_EQ_INT(st.handled, p.produced);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    free(h.seen);
    qlt_wait_thread_count(base); /* the producer is gone too */
    PASS("%d start/stop cycles in %lld ms with a producer putting %ld records: each handled "
         "exactly once, in order; thread count back to %d",
         CYCLES, took, p.produced, base);
}

/* ------------------------------------------------------------- thread name */

typedef struct {
    char name[32];
    int rc;
    qlt_counter count;
} name_handler;

static int32_t name_handle(void *ctx, void *record) {
    (void)record;
    name_handler *h = (name_handler *)ctx;
    memset(h->name, 0, sizeof h->name);
    h->rc = pthread_getname_np(pthread_self(), h->name, sizeof h->name);
    qlt_counter_add(&h->count, 1);
    return 0;
}

static void thread_name(void) {
    name_handler h;
    memset(&h, 0, sizeof h);
    qlt_counter_init(&h.count);
    ql_handler handler = {&h, 0, name_handle, NULL, NULL, NULL};
    ql_queue *q = NULL;
    ql_listener *l = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_listener_new_with_queue(q, &handler, 1, NULL, false, &l));
    for (int run = 1; run <= 2; run++) {
        CHECK_OK(ql_start(l));
        CHECK_OK(ql_queue_put(q, NULL));
        CHECK_OK(ql_stop(l));
        CHECK_EQ_INT(qlt_counter_get(&h.count), run);
        CHECK_EQ_INT(h.rc, 0);
        if (strcmp(h.name, "ql-listener") != 0)
            QLT_FAIL("listener thread is named '%s', want 'ql-listener'", h.name);
    }
    /* The caller's own thread keeps its name. */
    char mine[32] = {0};
    QLT_PT(pthread_getname_np(pthread_self(), mine, sizeof mine));
    CHECK(strcmp(mine, "ql-listener") != 0);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_counter_destroy(&h.count);
    PASS("the listener thread is named \"ql-listener\" (first run and after a restart)");
}

int main(void) {
    qlt_begin("test_start");
    start_while_running();
    start_stop_churn();
    thread_name();
    return qlt_end();
}
