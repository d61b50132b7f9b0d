/* ql_bench: this library's contenders, and the C baselines they are
 * measured against, in one program so every figure comes from one run.
 *
 *   e2e       ql-builtin (value, message, macro, fields), ql-ring-vtable,
 *             mutex-condvar, spsc-reference (P = 1 only)
 *   latency   ql-builtin, ql-ring-vtable, mutex-condvar, spsc-reference; and
 *             ql-logf, ql-macro, ql-fields (the message, macro and fields
 *             calls timed)
 *   vtable    ql-ring-vtable against plain-c-loop on a prefilled ring
 *   idle      ql-builtin: CPU over 1 s with nothing to do, ql_stop latency
 *   file      ql-builtin through ql_file_handler: lines per second to a file
 *             (variants file, rotating, rotating+gzip), P = 1 and 2
 *   file_latency  the same, P = 1, every ql_logf call timed (paced and
 *             saturating)
 *   journald  with --journald-socket: ql-builtin through ql_journald_handler
 *             to a journald (run.py starts a private namespaced one), and
 *             raw-socket (bench_journald.h), journald's own limit; P = 1, 2.
 *             run.py reads every entry back from the journal.
 *
 * Every contender's consumer does exactly bench_sink_take() per record, and
 * every run is checked by bench_sink_verify(); a file run is checked by
 * reading the files back (bench_file_check). Output: JSON lines (see
 * bench/README.md). Usage: ql_bench [--records N] [--reps R]
 * [--latency-calls C] [--file-dir DIR] [--no-file | --file-only]
 * [--journald-socket PATH [--journald-records N] [--journald-only]
 * [--journald-raw-first]]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/resource.h>

#include "bench_common.h"
#include "bench_file.h"
#include "bench_journald.h"
#include "queue_listener.h"

#define CAPACITY 8192 /* every bounded queue, as spdlog's in the issue */

static void die(const char *what, int code) {
    fprintf(stderr, "ql_bench: %s failed (%d)\n", what, code);
    exit(2);
}
#define QL(call)                                                                                   \
    do {                                                                                           \
        ql_status st_ = (call);                                                                    \
        if (st_ != QL_OK) die(#call, st_);                                                         \
    } while (0)
#define PT(call)                                                                                   \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != 0) die(#call, rc_);                                                             \
    } while (0)

/* ------------------------------------------------------------ the C ring */

/* A bounded ring with a mutex and two condition variables: the queue every C
 * programmer writes. Slots hold 64-bit values; 0 is the sentinel. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    uint64_t *slots;
    size_t cap, head, len;
    int consumer_waiting, producers_waiting;
} ring;

static void ring_init(ring *r, size_t cap) {
    PT(pthread_mutex_init(&r->mu, NULL));
    PT(pthread_cond_init(&r->not_empty, NULL));
    PT(pthread_cond_init(&r->not_full, NULL));
    r->slots = malloc(cap * sizeof *r->slots);
    if (!r->slots) die("malloc", 0);
    r->cap = cap;
    r->head = r->len = 0;
    r->consumer_waiting = r->producers_waiting = 0;
}

static void ring_destroy(ring *r) {
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->not_empty);
    pthread_cond_destroy(&r->not_full);
    free(r->slots);
}

static void ring_put(ring *r, uint64_t v) {
    pthread_mutex_lock(&r->mu);
    while (r->len == r->cap) {
        r->producers_waiting++;
        pthread_cond_wait(&r->not_full, &r->mu);
        r->producers_waiting--;
    }
    r->slots[(r->head + r->len) % r->cap] = v;
    r->len++;
    bool wake = r->consumer_waiting > 0;
    pthread_mutex_unlock(&r->mu);
    if (wake) pthread_cond_signal(&r->not_empty);
}

/* false when empty and !block */
static bool ring_get(ring *r, bool block, uint64_t *out) {
    pthread_mutex_lock(&r->mu);
    while (r->len == 0) {
        if (!block) {
            pthread_mutex_unlock(&r->mu);
            return false;
        }
        r->consumer_waiting++;
        pthread_cond_wait(&r->not_empty, &r->mu);
        r->consumer_waiting--;
    }
    *out = r->slots[r->head];
    r->head = (r->head + 1) % r->cap;
    r->len--;
    bool wake = r->producers_waiting > 0;
    pthread_mutex_unlock(&r->mu);
    if (wake) pthread_cond_signal(&r->not_full);
    return true;
}

/* The ring as a listener's queue. */
static ql_dequeue_result ring_vt_dequeue(void *ctx, bool block, void **out) {
    uint64_t v;
    if (!ring_get(ctx, block, &v)) return QL_DEQUEUE_EMPTY;
    if (v == 0) return QL_DEQUEUE_SENTINEL;
    *out = (void *)(uintptr_t)v;
    return QL_DEQUEUE_RECORD;
}

static ql_enqueue_result ring_vt_sentinel(void *ctx) {
    ring *r = ctx;
    pthread_mutex_lock(&r->mu);
    bool full = r->len == r->cap;
    pthread_mutex_unlock(&r->mu);
    if (full) return QL_ENQUEUE_FULL;
    ring_put(r, 0);
    return QL_ENQUEUE_OK;
}

static ql_queue_vtable ring_vtable(ring *r) {
    ql_queue_vtable vt = {r, ring_vt_dequeue, ring_vt_sentinel, NULL};
    return vt;
}

/* ------------------------------------------------------------ the SPSC ring */

/* The reference: one producer, one consumer, 8-byte values, no locks, the
 * consumer spinning. The fastest a handoff between two cores can be. */
typedef struct {
    _Alignas(64) _Atomic size_t tail; /* written by the producer */
    size_t head_cache;
    _Alignas(64) _Atomic size_t head; /* written by the consumer */
    size_t tail_cache;
    _Alignas(64) uint64_t slots[CAPACITY];
} spsc;

static void spsc_put(spsc *q, uint64_t v) {
    size_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
    while (t - q->head_cache == CAPACITY)
        q->head_cache = atomic_load_explicit(&q->head, memory_order_acquire);
    q->slots[t % CAPACITY] = v;
    atomic_store_explicit(&q->tail, t + 1, memory_order_release);
}

static uint64_t spsc_get(spsc *q) {
    size_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
    while (h == q->tail_cache) q->tail_cache = atomic_load_explicit(&q->tail, memory_order_acquire);
    uint64_t v = q->slots[h % CAPACITY];
    atomic_store_explicit(&q->head, h + 1, memory_order_release);
    return v;
}

/* ------------------------------------------------------------ handlers */

static int32_t sink_value(void *ctx, void *record) {
    bench_sink_take(ctx, (uint64_t)(uintptr_t)record);
    return 0;
}

/* A built-in record made by ql_logf: parse the formatted message back. */
static int32_t sink_message(void *ctx, void *record) {
    const ql_record *r = record;
    bench_sink_take(ctx, bench_parse_hello(r->message, r->message_len));
    return 0;
}

/* The sink of the macro and fields variants: bench_sink_take on the parsed
 * message, and a check of what else the record carries; a record that fails
 * it counts in `bad` and fails the run. */
typedef struct {
    bench_sink base; /* first: the value handlers take this struct as a bench_sink */
    uint64_t bad;
    uint32_t line; /* the macro's __LINE__, from its first record */
} checked_sink;

static bool str_is(const char *s, size_t len, const char *want) {
    return s && len == strlen(want) && memcmp(s, want, len) == 0;
}

/* QL_INFO: the file is this one, the function put_one, the same nonzero
 * line every time; no fields. */
static int32_t sink_macro(void *ctx, void *record) {
    checked_sink *cs = ctx;
    const ql_record *r = record;
    if (cs->line == 0) cs->line = r->line;
    static const char FILE_TAIL[] = "ql_bench.c";
    const size_t tail = sizeof FILE_TAIL - 1;
    if (r->line == 0 || r->line != cs->line || r->field_count != 0 || r->file_len < tail ||
        memcmp(r->file + r->file_len - tail, FILE_TAIL, tail) != 0 ||
        !str_is(r->func, r->func_len, "put_one"))
        cs->bad++;
    bench_sink_take(&cs->base, bench_parse_hello(r->message, r->message_len));
    return 0;
}

/* The fields variant's record "hello <v>" with seq = v & 0xffffffff:
 * user="bench-user" (string), seq=seq (int), half=seq/2.0 (double, exact),
 * odd=seq&1 (bool), then the producer's context field producer=v>>32 (uint):
 * five fields, in this order, each checked. */
static int32_t sink_fields(void *ctx, void *record) {
    checked_sink *cs = ctx;
    const ql_record *r = record;
    uint64_t v = bench_parse_hello(r->message, r->message_len);
    uint64_t seq = v & 0xffffffffu;
    const ql_field *f = r->fields;
    if (r->field_count != 5 || !f || strcmp(f[0].key, "user") != 0 ||
        f[0].kind != QL_FIELD_STR || !str_is(f[0].value.s.ptr, f[0].value.s.len, "bench-user") ||
        strcmp(f[1].key, "seq") != 0 || f[1].kind != QL_FIELD_INT ||
        f[1].value.i != (int64_t)seq || strcmp(f[2].key, "half") != 0 ||
        f[2].kind != QL_FIELD_DOUBLE || f[2].value.d != (double)seq / 2.0 ||
        strcmp(f[3].key, "odd") != 0 || f[3].kind != QL_FIELD_BOOL ||
        f[3].value.b != ((seq & 1) != 0) || strcmp(f[4].key, "producer") != 0 ||
        f[4].kind != QL_FIELD_UINT || f[4].value.u != v >> 32)
        cs->bad++;
    bench_sink_take(&cs->base, v);
    return 0;
}

/* ------------------------------------------------------------ producers */

typedef enum {
    TO_QL_VALUE,
    TO_QL_MESSAGE,
    TO_QL_MACRO,
    TO_QL_FIELDS,
    TO_RING,
    TO_SPSC
} target_kind;

typedef struct {
    target_kind kind;
    const ql_queue *q;
    ring *r;
    spsc *s;
    uint32_t producer, n;
    pthread_barrier_t *go;
    /* latency mode: per-call ticks, paced or not */
    uint64_t *ticks;
    bool paced;
    uint64_t start_ns; /* when this producer was released */
} producer;

static inline void put_one(const producer *p, uint64_t v) {
    switch (p->kind) {
    case TO_QL_VALUE:
        QL(ql_queue_put(p->q, (void *)(uintptr_t)v));
        break;
    case TO_QL_MESSAGE:
        QL(ql_logf(p->q, QL_LEVEL_INFO, "bench", "hello %llu", (unsigned long long)v));
        break;
    case TO_QL_MACRO: /* the same message, with file, line and function */
        QL(QL_INFO(p->q, "bench", "hello %llu", (unsigned long long)v));
        break;
    case TO_QL_FIELDS: { /* the same message and formatting path, with 4 fields */
        uint32_t seq = (uint32_t)v;
        ql_field f[4] = {ql_field_str("user", "bench-user"), ql_field_int("seq", seq),
                         ql_field_double("half", (double)seq / 2.0),
                         ql_field_bool("odd", (seq & 1) != 0)};
        QL(ql_logf_fields(p->q, QL_LEVEL_INFO, "bench", f, 4, "hello %llu",
                          (unsigned long long)v));
        break;
    }
    case TO_RING:
        ring_put(p->r, v);
        break;
    case TO_SPSC:
        spsc_put(p->s, v);
        break;
    }
}

static void *producer_main(void *arg) {
    producer *p = arg;
    /* The fields variant's thread carries one context field. */
    if (p->kind == TO_QL_FIELDS) QL(ql_context_set(ql_field_uint("producer", p->producer)));
    int rc = pthread_barrier_wait(p->go);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) die("pthread_barrier_wait", rc);
    p->start_ns = bench_now_ns();
    if (!p->ticks) {
        for (uint32_t i = 1; i <= p->n; i++) put_one(p, bench_value(p->producer, i));
    } else {
        for (uint32_t i = 1; i <= p->n; i++) {
            uint64_t t0 = bench_ticks();
            put_one(p, bench_value(p->producer, i));
            p->ticks[i - 1] = bench_ticks() - t0;
            if (p->paced && i % 64 == 0) bench_pause_ns(50000);
        }
    }
    if (p->kind == TO_QL_FIELDS) ql_context_clear();
    return NULL;
}

/* ------------------------------------------------------------ consumers */

typedef struct {
    ring *r;
    spsc *s;
    bench_sink *sink;
} consumer;

static void *mutex_consumer_main(void *arg) {
    consumer *c = arg;
    uint64_t v;
    while (ring_get(c->r, true, &v) && v != 0) bench_sink_take(c->sink, v);
    return NULL;
}

static void *spsc_consumer_main(void *arg) {
    consumer *c = arg;
    uint64_t v;
    while ((v = spsc_get(c->s)) != 0) bench_sink_take(c->sink, v);
    return NULL;
}

/* ------------------------------------------------------------ one run */

typedef enum {
    C_QL_VALUE,
    C_QL_MESSAGE,
    C_QL_MACRO,
    C_QL_FIELDS,
    C_QL_RING,
    C_MUTEX,
    C_SPSC
} contender;
static const char *const NAMES[] = {"ql-builtin",     "ql-builtin",    "ql-builtin", "ql-builtin",
                                    "ql-ring-vtable", "mutex-condvar", "spsc-reference"};
static const char *const VARIANTS[] = {"value", "message", "macro", "fields",
                                       "value", "value",   "value"};
/* The put-call latency rows of the message, macro and fields calls. */
static const char *const LATENCY_NAMES[] = {"ql-builtin",     "ql-logf",       "ql-macro",
                                            "ql-fields",      "ql-ring-vtable", "mutex-condvar",
                                            "spsc-reference"};

/* Runs P producers of n records each through contender c. With `ticks`
 * (P = 1), times every put. Returns the nanoseconds from the producers'
 * release to the last record handled; writes the check's verdict to why. */
static uint64_t run(contender c, uint32_t P, uint32_t n, uint64_t *ticks, bool paced, char *why,
                    size_t why_len) {
    checked_sink cs;
    memset(&cs, 0, sizeof cs);
    bench_sink_init(&cs.base);
    bench_sink *sink = &cs.base;
    ql_queue *q = NULL;
    ql_listener *l = NULL;
    ring r;
    spsc *s = NULL;
    pthread_t consumer_thread;
    consumer cons = {&r, NULL, sink};
    ql_handler h = {&cs, 0,
                    c == C_QL_MESSAGE  ? sink_message
                    : c == C_QL_MACRO  ? sink_macro
                    : c == C_QL_FIELDS ? sink_fields
                                       : sink_value,
                    NULL, NULL, NULL};

    switch (c) {
    case C_QL_VALUE:
    case C_QL_MESSAGE:
    case C_QL_MACRO:
    case C_QL_FIELDS:
        QL(ql_queue_new(CAPACITY, &q));
        QL(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l));
        QL(ql_start(l));
        break;
    case C_QL_RING: {
        ring_init(&r, CAPACITY);
        ql_queue_vtable vt = ring_vtable(&r);
        QL(ql_listener_new(&vt, &h, 1, NULL, false, &l));
        QL(ql_start(l));
        break;
    }
    case C_MUTEX:
        ring_init(&r, CAPACITY);
        PT(pthread_create(&consumer_thread, NULL, mutex_consumer_main, &cons));
        break;
    case C_SPSC:
        s = aligned_alloc(64, sizeof *s);
        if (!s) die("aligned_alloc", 0);
        memset(s, 0, sizeof *s);
        cons.s = s;
        PT(pthread_create(&consumer_thread, NULL, spsc_consumer_main, &cons));
        break;
    }

    static const target_kind KIND[] = {TO_QL_VALUE, TO_QL_MESSAGE, TO_QL_MACRO, TO_QL_FIELDS,
                                       TO_RING,     TO_RING,       TO_SPSC};
    pthread_barrier_t go;
    PT(pthread_barrier_init(&go, NULL, P + 1));
    producer prods[BENCH_MAX_PRODUCERS];
    pthread_t threads[BENCH_MAX_PRODUCERS];
    for (uint32_t p = 0; p < P; p++) {
        producer pr = {KIND[c], q, &r, s, p, n, &go, ticks, paced, 0};
        prods[p] = pr;
        PT(pthread_create(&threads[p], NULL, producer_main, &prods[p]));
    }
    int rc = pthread_barrier_wait(&go);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) die("pthread_barrier_wait", rc);
    /* The span starts when the first producer was released: this thread
     * may not run again until well after that. */
    for (uint32_t p = 0; p < P; p++) PT(pthread_join(threads[p], NULL));
    uint64_t t0 = prods[0].start_ns;
    for (uint32_t p = 1; p < P; p++)
        if (prods[p].start_ns < t0) t0 = prods[p].start_ns;
    /* The end: every record put is handled. */
    switch (c) {
    case C_QL_VALUE:
    case C_QL_MESSAGE:
    case C_QL_MACRO:
    case C_QL_FIELDS:
    case C_QL_RING:
        QL(ql_stop(l));
        break;
    case C_MUTEX:
        ring_put(&r, 0);
        PT(pthread_join(consumer_thread, NULL));
        break;
    case C_SPSC:
        spsc_put(s, 0);
        PT(pthread_join(consumer_thread, NULL));
        break;
    }
    uint64_t ns = bench_now_ns() - t0;
    pthread_barrier_destroy(&go);
    if (bench_sink_verify(sink, P, n, why, why_len) == 0 && cs.bad)
        snprintf(why, why_len, "%llu records with wrong source or fields",
                 (unsigned long long)cs.bad);
    if (l) QL(ql_listener_free(l));
    if (q) ql_queue_free(q);
    if (c == C_QL_RING || c == C_MUTEX) ring_destroy(&r);
    free(s);
    return ns;
}

/* ------------------------------------------------------------ vtable overhead */

typedef struct {
    ring *r;
    bench_sink *sink;
    int32_t (*handle)(void *, void *);
} plain_loop;

static void *plain_loop_main(void *arg) {
    plain_loop *pl = arg;
    for (;;) {
        void *rec = NULL;
        ql_dequeue_result d = ring_vt_dequeue(pl->r, true, &rec);
        if (d != QL_DEQUEUE_RECORD) break;
        if (pl->handle(pl->sink, rec) != 0) break;
    }
    return NULL;
}

/* The same prefilled ring (n records, then the sentinel) drained by a
 * listener through the vtable, and by a plain C loop on its own thread
 * calling the same dequeue function and the same handler directly. */
static void vtable_overhead(uint32_t n, int rep) {
    for (int which = 0; which < 2; which++) {
        ring r;
        ring_init(&r, (size_t)n + 1);
        for (uint32_t i = 1; i <= n; i++) ring_put(&r, bench_value(0, i));
        bench_sink sink;
        bench_sink_init(&sink);
        uint64_t t0, ns;
        if (which == 0) {
            ql_handler h = {&sink, 0, sink_value, NULL, NULL, NULL};
            ql_queue_vtable vt = ring_vtable(&r);
            ql_listener *l = NULL;
            QL(ql_listener_new(&vt, &h, 1, NULL, false, &l));
            QL(ql_enqueue_sentinel(l)); /* so ql_stop puts none */
            t0 = bench_now_ns();
            QL(ql_start(l));
            QL(ql_stop(l));
            ns = bench_now_ns() - t0;
            QL(ql_listener_free(l));
        } else {
            ring_put(&r, 0);
            plain_loop pl = {&r, &sink, sink_value};
            pthread_t t;
            t0 = bench_now_ns();
            PT(pthread_create(&t, NULL, plain_loop_main, &pl));
            PT(pthread_join(t, NULL));
            ns = bench_now_ns() - t0;
        }
        char why[160];
        bench_sink_verify(&sink, 1, n, why, sizeof why);
        printf("{\"workload\":\"vtable\",\"contender\":\"%s\",\"rep\":%d,\"records\":%u,"
               "\"seconds\":%.6f,\"ns_per_record\":%.3f,\"ok\":%s,\"error\":\"%s\"}\n",
               which == 0 ? "ql-ring-vtable" : "plain-c-loop", rep, n, (double)ns / 1e9,
               (double)ns / n, why[0] ? "false" : "true", why);
        fflush(stdout);
        ring_destroy(&r);
    }
}

/* ------------------------------------------------------------ idle */

static double cpu_ms(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static void idle(int rep) {
    bench_sink sink;
    bench_sink_init(&sink);
    ql_queue *q = NULL;
    ql_listener *l = NULL;
    ql_handler h = {&sink, 0, sink_value, NULL, NULL, NULL};
    QL(ql_queue_new(CAPACITY, &q));
    QL(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l));
    QL(ql_start(l));
    /* One record first, so the thread is surely past its start-up. */
    QL(ql_queue_put(q, (void *)(uintptr_t)bench_value(0, 1)));
    size_t len = 1;
    while (len != 0) QL(ql_queue_len(q, &len));
    struct timespec second = {1, 0};
    double c0 = cpu_ms();
    uint64_t w0 = bench_now_ns();
    nanosleep(&second, NULL);
    double used = cpu_ms() - c0;
    double wall_s = (double)(bench_now_ns() - w0) / 1e9;
    uint64_t t0 = bench_now_ns();
    QL(ql_stop(l));
    uint64_t stop_ns = bench_now_ns() - t0;
    char why[160];
    bench_sink_verify(&sink, 1, 1, why, sizeof why);
    printf("{\"workload\":\"idle\",\"contender\":\"ql-builtin\",\"rep\":%d,\"cpu_ms_per_s\":%.3f,"
           "\"stop_us\":%.1f,\"ok\":%s,\"error\":\"%s\"}\n",
           rep, used / wall_s, (double)stop_ns / 1e3, why[0] ? "false" : "true", why);
    fflush(stdout);
    QL(ql_listener_free(l));
    ql_queue_free(q);
}

/* ------------------------------------------------------------ file sink */

typedef enum { F_PLAIN, F_ROTATING, F_ROTATING_GZ } file_variant;
static const char *const FILE_VARIANTS[] = {"file", "rotating", "rotating+gzip"};
static const char *const FILE_NAMES[] = {"ql-file", "ql-rotating", "ql-rotating-gzip"};

/* P producers log n records each with ql_logf through a built-in queue to
 * one ql_file_handler (default options: QL_FLUSH_BATCH, the default
 * pattern), rotating at 8 MiB with 3 backups for the rotating variants,
 * gzip-compressing them for rotating+gzip. The span ends when ql_stop
 * returns: every line written (the handler's flush ran). For the gzip
 * variant, `seconds_all` also covers ql_listener_free, which waits for the
 * last backup's compression. With `ticks` (P = 1) every call is timed and
 * the line is a file_latency one. */
static void file_run(file_variant fv, uint32_t P, uint32_t n, uint64_t *ticks, bool paced,
                     int rep, const char *dir) {
    char base[BENCH_PATH_MAX], why[512] = "";
    snprintf(base, sizeof base, "%s/%s", dir, FILE_NAMES[fv]);
    bench_file_remove(base, BENCH_ROTATE_BACKUPS);
    ql_handler_options opts = ql_handler_options_default();
    if (fv != F_PLAIN) {
        opts.max_bytes = BENCH_ROTATE_MAX_BYTES;
        opts.backup_count = BENCH_ROTATE_BACKUPS;
        opts.compress = fv == F_ROTATING_GZ;
    }
    ql_handler h;
    ql_queue *q = NULL;
    ql_listener *l = NULL;
    QL(ql_file_handler(base, &opts, &h));
    QL(ql_queue_new(CAPACITY, &q));
    QL(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l));
    QL(ql_start(l));

    pthread_barrier_t go;
    PT(pthread_barrier_init(&go, NULL, P + 1));
    producer prods[BENCH_MAX_PRODUCERS];
    pthread_t threads[BENCH_MAX_PRODUCERS];
    for (uint32_t p = 0; p < P; p++) {
        producer pr = {TO_QL_MESSAGE, q, NULL, NULL, p, n, &go, ticks, paced, 0};
        prods[p] = pr;
        PT(pthread_create(&threads[p], NULL, producer_main, &prods[p]));
    }
    int rc = pthread_barrier_wait(&go);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) die("pthread_barrier_wait", rc);
    for (uint32_t p = 0; p < P; p++) PT(pthread_join(threads[p], NULL));
    uint64_t t0 = prods[0].start_ns;
    for (uint32_t p = 1; p < P; p++)
        if (prods[p].start_ns < t0) t0 = prods[p].start_ns;
    ql_status st = ql_stop(l);
    uint64_t t_stop = bench_now_ns();
    ql_handler_stats hs;
    memset(&hs, 0, sizeof hs);
    QL(ql_listener_handler_stats(l, 0, &hs));
    ql_status st_free = ql_listener_free(l); /* waits for the last backup's compression */
    uint64_t t_free = bench_now_ns();
    ql_queue_free(q);
    pthread_barrier_destroy(&go);

    const uint64_t total = (uint64_t)P * n;
    bench_file_result res;
    memset(&res, 0, sizeof res);
    if (st != QL_OK || st_free != QL_OK) {
        snprintf(why, sizeof why, "ql_stop: %s, ql_listener_free: %s", ql_status_str(st),
                 ql_status_str(st_free));
    } else if (hs.sink.written != total || hs.sink.lost || hs.sink.pending ||
               hs.sink.write_errors || hs.sink.rotation_failures || hs.sink.compress_failures) {
        snprintf(why, sizeof why, "handler account: written %llu of %llu, lost %llu, pending "
                 "%llu, write errors %llu, rotation failures %llu, compress failures %llu",
                 (unsigned long long)hs.sink.written, (unsigned long long)total,
                 (unsigned long long)hs.sink.lost, (unsigned long long)hs.sink.pending,
                 (unsigned long long)hs.sink.write_errors,
                 (unsigned long long)hs.sink.rotation_failures,
                 (unsigned long long)hs.sink.compress_failures);
    } else {
        bench_file_check(base, fv == F_PLAIN ? 0 : BENCH_ROTATE_BACKUPS,
                         fv == F_PLAIN ? 0 : BENCH_ROTATE_MAX_BYTES, fv == F_ROTATING_GZ, P, n,
                         &res, why, sizeof why);
    }
    bench_file_remove(base, BENCH_ROTATE_BACKUPS);
    for (char *c = why; *c; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) *c = '?';

    if (ticks) {
        printf("{\"workload\":\"file_latency\",\"contender\":\"ql-builtin\",\"variant\":\"%s\","
               "\"mode\":\"%s\",\"rep\":%d,\"records\":%u,\"seconds\":%.6f,\"rotations\":%llu,",
               FILE_VARIANTS[fv], paced ? "paced" : "saturating", rep, n,
               (double)(t_stop - t0) / 1e9, (unsigned long long)hs.sink.rotations);
        if (!why[0]) {
            bench_print_percentiles(ticks, n);
            printf(",");
        }
    } else {
        printf("{\"workload\":\"file\",\"contender\":\"ql-builtin\",\"variant\":\"%s\","
               "\"rep\":%d,\"producers\":%u,\"records\":%llu,\"seconds\":%.6f,"
               "\"seconds_all\":%.6f,\"rotations\":%llu,",
               FILE_VARIANTS[fv], rep, P, (unsigned long long)total, (double)(t_stop - t0) / 1e9,
               (double)(t_free - t0) / 1e9, (unsigned long long)hs.sink.rotations);
    }
    bench_file_print_result(&res);
    printf(",\"ok\":%s,\"error\":\"%s\"}\n", why[0] ? "false" : "true", why);
    fflush(stdout);
}

/* ------------------------------------------------------------ journald */

/* P producers log n records each, `ql_logf(q, QL_LEVEL_INFO, "bench",
 * "hello %llu", v)` as everywhere, through a built-in queue to one
 * ql_journald_handler (identifier `ident`, default options otherwise); or,
 * `raw`, P bench_raw_sender threads. The span ends when ql_stop returns
 * (every entry handed to journald's socket, whose queue holds at most
 * net.unix.max_dgram_qlen datagrams) or when the last sender is joined.
 * The handler's account must be written = P * n; run.py then reads the
 * entries of `ident` back from the journal and checks every producer's
 * records arrived once each, in order. */
static void journald_run(bool raw, uint32_t P, uint32_t n, int rep, const char *socket_path) {
    char ident[64], why[512] = "";
    snprintf(ident, sizeof ident, "qlb-%s-r%d-p%u", raw ? "raw" : "ql", rep, P);
    pthread_barrier_t go;
    PT(pthread_barrier_init(&go, NULL, P + 1));
    pthread_t threads[BENCH_MAX_PRODUCERS];
    const uint64_t total = (uint64_t)P * n;
    uint64_t t0 = 0, t_end;
    if (raw) {
        bench_raw_sender snd[BENCH_MAX_PRODUCERS];
        for (uint32_t p = 0; p < P; p++) {
            bench_raw_sender s = {socket_path, ident, p, n, &go, 0, 0, 0};
            snd[p] = s;
            PT(pthread_create(&threads[p], NULL, bench_raw_sender_main, &snd[p]));
        }
        int rc = pthread_barrier_wait(&go);
        if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) die("pthread_barrier_wait", rc);
        for (uint32_t p = 0; p < P; p++) PT(pthread_join(threads[p], NULL));
        t_end = bench_now_ns();
        t0 = snd[0].start_ns;
        for (uint32_t p = 0; p < P; p++) {
            if (snd[p].start_ns < t0) t0 = snd[p].start_ns;
            if (snd[p].error && !why[0])
                snprintf(why, sizeof why, "sender %u: errno %d after %llu", p, snd[p].error,
                         (unsigned long long)snd[p].sent);
        }
    } else {
        ql_journald_options o = ql_journald_options_default();
        o.socket_path = socket_path;
        o.identifier = ident;
        ql_handler h;
        ql_queue *q = NULL;
        ql_listener *l = NULL;
        QL(ql_journald_handler(&o, &h));
        QL(ql_queue_new(CAPACITY, &q));
        QL(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l));
        QL(ql_start(l));
        producer prods[BENCH_MAX_PRODUCERS];
        for (uint32_t p = 0; p < P; p++) {
            producer pr = {TO_QL_MESSAGE, q, NULL, NULL, p, n, &go, NULL, false, 0};
            prods[p] = pr;
            PT(pthread_create(&threads[p], NULL, producer_main, &prods[p]));
        }
        int rc = pthread_barrier_wait(&go);
        if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) die("pthread_barrier_wait", rc);
        for (uint32_t p = 0; p < P; p++) PT(pthread_join(threads[p], NULL));
        ql_status st = ql_stop(l);
        t_end = bench_now_ns();
        t0 = prods[0].start_ns;
        for (uint32_t p = 1; p < P; p++)
            if (prods[p].start_ns < t0) t0 = prods[p].start_ns;
        ql_handler_stats hs;
        memset(&hs, 0, sizeof hs);
        QL(ql_listener_handler_stats(l, 0, &hs));
        ql_status st_free = ql_listener_free(l);
        ql_queue_free(q);
        if (st != QL_OK || st_free != QL_OK) {
            snprintf(why, sizeof why, "ql_stop: %s, ql_listener_free: %s", ql_status_str(st),
                     ql_status_str(st_free));
        } else if (hs.sink.written != total || hs.sink.lost || hs.sink.pending) {
            snprintf(why, sizeof why, "handler account: written %llu of %llu, lost %llu, "
                     "pending %llu, last errno %d", (unsigned long long)hs.sink.written,
                     (unsigned long long)total, (unsigned long long)hs.sink.lost,
                     (unsigned long long)hs.sink.pending, (int)hs.sink.last_errno);
        }
    }
    pthread_barrier_destroy(&go);
    printf("{\"workload\":\"journald\",\"contender\":\"%s\",\"variant\":\"journald\","
           "\"rep\":%d,\"producers\":%u,\"records\":%llu,\"seconds\":%.6f,\"ident\":\"%s\","
           "\"ok\":%s,\"error\":\"%s\"}\n",
           raw ? "raw-socket" : "ql-builtin", rep, P, (unsigned long long)total,
           (double)(t_end - t0) / 1e9, ident, why[0] ? "false" : "true", why);
    fflush(stdout);
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv) {
    uint32_t n = 1000000, calls = 128000;
    int reps = 5;
    bool run_main = true, run_file = true;
    const char *file_dir = ".";
    const char *journald_socket = NULL;
    uint32_t journald_n = 0;
    bool journald_only = false, journald_raw_first = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "--no-file")) run_file = false;
        else if (!strcmp(a, "--file-only")) run_main = false;
        else if (!strcmp(a, "--journald-only")) journald_only = true;
        else if (!strcmp(a, "--journald-raw-first")) journald_raw_first = true;
        else if (!v) ok = false;
        else if (!strcmp(a, "--records")) n = (uint32_t)strtoul(v, NULL, 10), i++;
        else if (!strcmp(a, "--reps")) reps = atoi(v), i++;
        else if (!strcmp(a, "--latency-calls")) calls = (uint32_t)strtoul(v, NULL, 10), i++;
        else if (!strcmp(a, "--file-dir")) file_dir = v, i++;
        else if (!strcmp(a, "--journald-socket")) journald_socket = v, i++;
        else if (!strcmp(a, "--journald-records")) journald_n = (uint32_t)strtoul(v, NULL, 10), i++;
        else ok = false;
        if (!ok) {
            fprintf(stderr, "usage: ql_bench [--records N] [--reps R] [--latency-calls C] "
                            "[--file-dir DIR] [--no-file | --file-only] [--journald-socket PATH "
                            "[--journald-records N] [--journald-only] [--journald-raw-first]]\n");
            return 2;
        }
    }
    if (n == 0 || reps <= 0 || calls == 0) {
        fprintf(stderr, "ql_bench: records, reps and latency-calls must be positive\n");
        return 2;
    }
    printf("{\"workload\":\"info\",\"program\":\"ql_bench\",\"ql_version\":\"%s\","
           "\"capacity\":%d,\"tsc_ticks_per_ns\":%.4f,\"timer_floor_ns\":%.1f}\n",
           ql_version(), CAPACITY, bench_ticks_per_ns(), bench_timer_floor_ns());
    if (journald_only) run_main = run_file = false;
    if (journald_n == 0) journald_n = n / 10 ? n / 10 : 1;
    char why[160];
    uint64_t *ticks = malloc(calls * sizeof *ticks);
    if (!ticks) die("malloc", 0);

    /* Reps interleave the contenders, so a noisy moment hits them all. */
    for (int rep = 0; run_main && rep < reps; rep++) {
        for (uint32_t P = 1; P <= 2; P++) {
            for (contender c = C_QL_VALUE; c <= C_SPSC; c++) {
                if (c == C_SPSC && P != 1) continue; /* single producer */
                uint64_t ns = run(c, P, n, NULL, false, why, sizeof why);
                bench_emit_e2e(NAMES[c], VARIANTS[c], rep, P, n, ns, why);
            }
        }
        for (int paced = 1; paced >= 0; paced--) {
            for (contender c = C_QL_VALUE; c <= C_SPSC; c++) {
                run(c, 1, calls, ticks, paced, why, sizeof why);
                if (why[0]) {
                    printf("{\"workload\":\"latency\",\"contender\":\"%s\",\"mode\":\"%s\","
                           "\"rep\":%d,\"calls\":%u,\"ok\":false,\"error\":\"%s\"}\n",
                           LATENCY_NAMES[c], paced ? "paced" : "saturating", rep, calls, why);
                } else {
                    bench_emit_latency(LATENCY_NAMES[c], paced ? "paced" : "saturating", rep,
                                       ticks, calls);
                }
            }
        }
        vtable_overhead(n, rep);
        idle(rep);
    }
    free(ticks);

    /* The file sink, after every other workload (its page-cache writes then
     * cannot disturb them), with its own interleaved reps. */
    uint64_t *file_ticks = run_file ? malloc((size_t)n * sizeof *file_ticks) : NULL;
    if (run_file && !file_ticks) die("malloc", 0);
    for (int rep = 0; run_file && rep < reps; rep++) {
        for (uint32_t P = 1; P <= 2; P++)
            for (file_variant fv = F_PLAIN; fv <= F_ROTATING_GZ; fv++)
                file_run(fv, P, n, NULL, false, rep, file_dir);
        for (int paced = 1; paced >= 0; paced--)
            for (file_variant fv = F_PLAIN; fv <= F_ROTATING_GZ; fv++)
                file_run(fv, 1, n, file_ticks, paced, rep, file_dir);
    }
    free(file_ticks);

    /* journald, last: its disk writes then cannot disturb the others. Each
     * run makes the journal bigger: run.py alternates which contender goes
     * first (--journald-raw-first), so neither always meets the smaller one. */
    for (int rep = 0; journald_socket && rep < reps; rep++)
        for (uint32_t P = 1; P <= 2; P++)
            for (int i = 0; i <= 1; i++)
                journald_run(journald_raw_first ? i == 0 : i == 1, P, journald_n, rep,
                             journald_socket);
    return 0;
}
