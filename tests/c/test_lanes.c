/* Per-thread lanes of the built-in queue (issue 12, part 2): every record of
 * many short-lived threads arrives and memory stays bounded; per-thread
 * FIFO exact and records queued together merged by timestamp; ql_stop
 * waits for every thread's records; a flush never waits for later records;
 * a record put after another (happened-before) is handled after it; every
 * waiting get wakes; a fork child gets lanes of its own. */
#include "ql_test.h"

#include <sys/wait.h>

/* Resident set size in KiB, from /proc/self/statm. */
static long rss_kib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f != NULL);
    long size = 0, resident = 0;
    CHECK(fscanf(f, "%ld %ld", &size, &resident) == 2);
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

typedef struct {
    ql_queue *q;
    int records;
} burst;

static void *burst_main(void *p) {
    burst *b = (burst *)p;
    for (int i = 0; i < b->records; i++) CHECK_OK(ql_logf(b->q, 20, "short", "record %d", i));
    return NULL;
}

/* Runs `threads` threads that log `each` records, WAVE at a time. */
static void run_short_lived(ql_queue *q, long threads, int each) {
    enum { WAVE = 8 };
    burst b = {q, each};
    for (long done = 0; done < threads; done += WAVE) {
        pthread_t t[WAVE];
        int n = threads - done < WAVE ? (int)(threads - done) : WAVE;
        for (int i = 0; i < n; i++) QLT_PT(pthread_create(&t[i], NULL, burst_main, &b));
        for (int i = 0; i < n; i++) QLT_PT(pthread_join(t[i], NULL));
    }
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define QLT_SANITIZED 1
#else
#define QLT_SANITIZED 0
#endif

static void short_lived_threads(void) {
    /* 100000 in the plain build; a fifth under ASan and TSan, whose thread
     * creation is slow (QLT_LANES_THREADS sets it). */
    const char *env = getenv("QLT_LANES_THREADS");
    const long threads = env ? atol(env) : QLT_SANITIZED ? 20000 : 100000;
    const int each = 3;
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(8192, &q));
    qlt_sink s;
    qlt_sink_init(&s, 0);
    s.copy = false;
    ql_listener *l = qlt_start_sink(q, &s);

    /* Warm: the first 1000 threads make what is made once. */
    run_short_lived(q, 1000, each);
    CHECK_OK(ql_listener_flush(l, 10000));
    long before = rss_kib();
    run_short_lived(q, threads, each);
    CHECK_OK(ql_listener_flush(l, 10000));
    long after = rss_kib();
    CHECK_EQ_INT(qlt_sink_count(&s), (threads + 1000) * each);
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    /* A lane per thread that was never given back would be 100000 lanes
     * of at least one segment (128 slots and their records): hundreds of
     * MiB. */
    if (QLT_SANITIZED)
        printf("  (RSS bound not checked: ASan's quarantine and TSan's shadow memory keep freed "
               "memory resident)\n");
    else if (after - before > 32 * 1024)
        QLT_FAIL("%ld short-lived threads grew the RSS by %ld KiB (%ld -> %ld)", threads,
                 after - before, before, after);
    CHECK_OK(ql_stop(l));
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_sink_fini(&s);
    PASS("%ld short-lived threads logging %d records each: all %ld handled, RSS %ld -> %ld KiB",
         threads, each, threads * each, before, after);
}

/* Threads taking turns: the record of turn k is logged after every record
 * of the turns before it (a mutex hand-off between them). */
typedef struct {
    ql_queue *q;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int turn, threads, rounds;
} turns;

typedef struct {
    turns *t;
    int id;
} turn_arg;

static void *turn_main(void *p) {
    turn_arg *a = (turn_arg *)p;
    turns *t = a->t;
    for (int r = 0; r < t->rounds; r++) {
        QLT_PT(pthread_mutex_lock(&t->mu));
        struct timespec dl = qlt_deadline();
        while (t->turn % t->threads != a->id) qlt_cond_wait(&t->cv, &t->mu, &dl, "a turn");
        CHECK_OK(ql_logf(t->q, 20, "turn", "%d:%d", a->id, r));
        t->turn++;
        QLT_PT(pthread_cond_broadcast(&t->cv));
        QLT_PT(pthread_mutex_unlock(&t->mu));
    }
    return NULL;
}

/* A started listener on q whose sink holds its first record, "hold", at
 * `gate` until the test opens it: what is logged meanwhile stays queued. */
static ql_listener *start_held(ql_queue *q, qlt_sink *s, qlt_latch *gate) {
    qlt_latch_init(gate);
    s->gate_msg[0] = "hold";
    s->gate[0] = gate;
    ql_listener *l = qlt_start_sink(q, s);
    CHECK_OK(ql_log(q, 20, "t", "hold", 4));
    qlt_latch_wait_arrived(gate, 1);
    return l;
}

static void merged_by_timestamp(void) {
    enum { THREADS = 3, ROUNDS = 200 };
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    qlt_sink s;
    qlt_sink_init(&s, 0);
    qlt_latch gate;
    ql_listener *l = start_held(q, &s, &gate); /* every record below queues behind it */

    turns t = {q, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, THREADS, ROUNDS};
    pthread_t th[THREADS];
    turn_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i].t = &t;
        args[i].id = i;
        QLT_PT(pthread_create(&th[i], NULL, turn_main, &args[i]));
    }
    for (int i = 0; i < THREADS; i++) QLT_PT(pthread_join(th[i], NULL));
    CHECK_EQ_INT(qlt_queue_len(q), THREADS * ROUNDS);
    qlt_latch_open(&gate);
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(qlt_sink_count(&s), 1 + THREADS * ROUNDS);
    /* Three lanes, all queued before the listener looked: handled in the
     * order they were logged, which is their timestamps' order. */
    for (int k = 0; k < THREADS * ROUNDS; k++) {
        qlt_rec r = qlt_sink_at(&s, (size_t)k + 1);
        char want[32];
        snprintf(want, sizeof want, "%d:%d", k % THREADS, k / THREADS);
        if (!qlt_rec_is(&r, want))
            QLT_FAIL("record %d: \"%s\", want \"%s\" (turn order)", k, r.message, want);
        if (k > 0 && r.timestamp_ns < qlt_sink_at(&s, (size_t)k).timestamp_ns)
            QLT_FAIL("record %d: timestamp before the previous record's", k);
    }
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_latch_destroy(&gate);
    qlt_sink_fini(&s);
    PASS("%d threads taking turns, %d records each, queued behind a held handler: handled in turn "
         "(timestamp) order, every thread's own order exact",
         THREADS, ROUNDS);
}

typedef struct {
    ql_queue *q;
    int id, n;
} seq_arg;

static void *seq_main(void *p) {
    seq_arg *a = (seq_arg *)p;
    for (int i = 0; i < a->n; i++) CHECK_OK(ql_logf(a->q, 20, "seq", "%d %d", a->id, i));
    return NULL;
}

static void stop_after_every_thread(void) {
    enum { THREADS = 4, N = 5000, CAP = 64 };
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(CAP, &q)); /* small: producers wait for room */
    qlt_sink s;
    qlt_sink_init(&s, 0);
    ql_listener *l = qlt_start_sink(q, &s);
    pthread_t th[THREADS];
    seq_arg a[THREADS];
    for (int i = 0; i < THREADS; i++) {
        a[i] = (seq_arg){q, i, N};
        QLT_PT(pthread_create(&th[i], NULL, seq_main, &a[i]));
    }
    for (int i = 0; i < THREADS; i++) QLT_PT(pthread_join(th[i], NULL));
    CHECK_OK(ql_stop(l)); /* every record put before it, on any thread */
    CHECK_EQ_INT(qlt_sink_count(&s), THREADS * N);
    int next[THREADS] = {0};
    for (size_t k = 0; k < (size_t)THREADS * N; k++) {
        qlt_rec r = qlt_sink_at(&s, k);
        int id = -1, i = -1;
        CHECK(sscanf(r.message, "%d %d", &id, &i) == 2);
        CHECK(id >= 0 && id < THREADS);
        if (i != next[id]) QLT_FAIL("thread %d: record %d handled when %d was due", id, i, next[id]);
        next[id]++;
    }
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_sink_fini(&s);
    PASS("%d threads x %d records through a queue of capacity %d: ql_stop after the joins "
         "handled all of them, each thread's in its order",
         THREADS, N, CAP);
}

typedef struct {
    ql_queue *q;
    atomic_bool stop;
    long logged;
} endless;

static void *endless_main(void *p) {
    endless *e = (endless *)p;
    while (!atomic_load(&e->stop)) {
        CHECK_OK(ql_log(e->q, 20, "later", "later", 5));
        e->logged++;
    }
    return NULL;
}

static void flush_ignores_later_records(void) {
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(1024, &q)); /* the producer cannot run far ahead */
    qlt_sink s;
    qlt_sink_init(&s, 0);
    s.copy = false;
    ql_listener *l = qlt_start_sink(q, &s);
    endless e = {q, false, 0};
    atomic_init(&e.stop, false);
    pthread_t t;
    QLT_PT(pthread_create(&t, NULL, endless_main, &e));
    for (int i = 0; i < 20; i++) {
        CHECK_OK(ql_log(q, 20, "now", "now", 3));
        /* Waiting for the producer's later records would never end. */
        CHECK_OK(ql_listener_flush(l, 10000));
    }
    atomic_store(&e.stop, true);
    QLT_PT(pthread_join(t, NULL));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(qlt_sink_count(&s), e.logged + 20);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_sink_fini(&s);
    PASS("20 flushes while another thread logs without pause: each QL_OK; %ld + 20 records "
         "handled",
         e.logged);
}

/* A record put after another that happened before it (a hand-off between
 * two threads) is never handled first, with the listener running. */
typedef struct {
    ql_queue *q;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int round; /* odd: B's turn */
    int rounds;
} relay;

/* Waits for turn `turn`, logs "<who> <i>", hands the turn on. */
static void relay_step(relay *r, int turn, char who, int i) {
    QLT_PT(pthread_mutex_lock(&r->mu));
    struct timespec dl = qlt_deadline();
    while (r->round != turn) qlt_cond_wait(&r->cv, &r->mu, &dl, "the other thread's record");
    QLT_PT(pthread_mutex_unlock(&r->mu));
    CHECK_OK(ql_logf(r->q, 20, "relay", "%c %d", who, i));
    QLT_PT(pthread_mutex_lock(&r->mu));
    r->round++;
    QLT_PT(pthread_cond_broadcast(&r->cv));
    QLT_PT(pthread_mutex_unlock(&r->mu));
}

static void *relay_b(void *p) {
    relay *r = (relay *)p;
    for (int i = 0; i < r->rounds; i++) relay_step(r, 2 * i + 1, 'b', i);
    return NULL;
}

static void happened_before_is_kept(void) {
    enum { ROUNDS = 3000 };
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    qlt_sink s;
    qlt_sink_init(&s, 0);
    ql_listener *l = qlt_start_sink(q, &s);
    relay r = {q, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, ROUNDS};
    pthread_t b;
    QLT_PT(pthread_create(&b, NULL, relay_b, &r));
    for (int i = 0; i < ROUNDS; i++) relay_step(&r, 2 * i, 'a', i);
    QLT_PT(pthread_join(b, NULL));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(qlt_sink_count(&s), 2 * ROUNDS);
    for (int k = 0; k < 2 * ROUNDS; k++) {
        qlt_rec rec = qlt_sink_at(&s, (size_t)k);
        char want[32];
        snprintf(want, sizeof want, "%c %d", k % 2 ? 'b' : 'a', k / 2);
        if (!qlt_rec_is(&rec, want))
            QLT_FAIL("record %d: \"%s\", want \"%s\" (each put after the other's)", k,
                     rec.message, want);
    }
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_sink_fini(&s);
    PASS("two threads handing off %d times, the listener running: every record handled after "
         "the one put before it on the other thread",
         2 * ROUNDS);
}

/* Two program threads blocked in ql_queue_get: two puts wake both. */
static void *getter(void *p) {
    ql_queue *q = (ql_queue *)p;
    void *record = NULL;
    CHECK_OK(ql_queue_get(q, &record));
    CHECK_EQ_INT(QLT_NUM(record), 7);
    return NULL;
}

static void every_waiting_get_wakes(void) {
    for (int round = 0; round < 200; round++) {
        ql_queue *q = NULL;
        CHECK_OK(ql_queue_new(0, &q));
        pthread_t g[2];
        for (int i = 0; i < 2; i++) QLT_PT(pthread_create(&g[i], NULL, getter, q));
        if (round % 2) qlt_sleep_ms(1); /* sometimes both are asleep first */
        CHECK_OK(ql_queue_put(q, QLT_REC(7)));
        CHECK_OK(ql_queue_put(q, QLT_REC(7)));
        for (int i = 0; i < 2; i++) QLT_PT(pthread_join(g[i], NULL)); /* the watchdog bounds it */
        ql_queue_free(q);
    }
    PASS("200 rounds of two threads blocked in ql_queue_get and two puts: both gets return");
}

static void fork_child_lanes(void) {
#if QLT_SANITIZED
    printf("  skipped: fork of a multi-threaded process under ASan/TSan (see test_process; "
           "this part runs in the plain build)\n");
#else
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    qlt_sink s;
    qlt_sink_init(&s, 0);
    qlt_latch gate;
    ql_listener *l = start_held(q, &s, &gate);
    for (int i = 0; i < 10; i++) CHECK_OK(ql_log(q, 20, "t", "parent", 6));
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        /* The parent's queue is not the child's; a queue of its own is. */
        int bad = ql_log(q, 20, "t", "inherited", 9) != QL_ERR_FORKED;
        ql_queue *cq = NULL;
        bad |= ql_queue_new(0, &cq) != QL_OK;
        qlt_sink cs;
        qlt_sink_init(&cs, 1);
        ql_handler h = qlt_sink_handler(&cs, 0);
        ql_listener *cl = NULL;
        bad |= ql_listener_new_with_queue(cq, &h, 1, NULL, false, &cl) != QL_OK;
        bad |= ql_start(cl) != QL_OK;
        for (int i = 0; i < 5; i++) bad |= ql_log(cq, 20, "t", "child", 5) != QL_OK;
        bad |= ql_stop(cl) != QL_OK;
        bad |= cs.len != 5;
        for (size_t i = 0; i < cs.len; i++) bad |= !qlt_rec_is(&cs.recs[i], "child");
        _exit(bad ? 1 : 0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    qlt_latch_open(&gate);
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(qlt_sink_count(&s), 11);
    for (size_t i = 1; i < 11; i++) CHECK(qlt_rec_is(&s.recs[i], "parent"));
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_latch_destroy(&gate);
    qlt_sink_fini(&s);
    PASS("fork with 10 records in the parent's lane: the child's own queue handled its 5 "
         "records and none of the parent's; the parent handled its 10");
#endif
}

int main(void) {
    qlt_begin("test_lanes");
    short_lived_threads();
    merged_by_timestamp();
    stop_after_every_thread();
    flush_ignores_later_records();
    happened_before_is_kept();
    every_waiting_get_wakes();
    fork_child_lanes();
    return qlt_end();
}
