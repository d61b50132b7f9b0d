/*
 * hb_model.c: tells a race detector the ordering that queue_listener
 * guarantees ("happens-before"), for the ThreadSanitizer build (-DQLM_TSAN)
 * and the valgrind DRD build (-DQLM_DRD) of the C tests and examples only.
 *
 * Why: the library is Rust, built without -fsanitize=thread (that needs
 * nightly Rust). Neither TSan nor DRD sees its synchronization
 * (crossbeam's atomics, std's futex-based Mutex and Condvar), so when a C
 * producer writes memory and then puts a record, and a C handler reads
 * that memory on the listener thread, they report a data race although
 * the library orders the two. They do see pthread_create and pthread_join
 * (the listener thread's start and ql_stop's join): only the hand-offs
 * through the queue and the flush barrier are invisible.
 *
 * What: every test program of these builds is linked with
 * -Wl,--wrap=<function> for the functions below, so its calls go through
 * a __wrap_ function here that annotates the library's documented
 * happens-before edges (TSan: __tsan_release / __tsan_acquire; DRD:
 * ANNOTATE_HAPPENS_BEFORE / ANNOTATE_HAPPENS_AFTER), then calls the real
 * function:
 *
 *   (in)  what a thread did before it put, logged, started, stopped,
 *         flushed, freed or sent a sentinel happens before every callback
 *         the library makes afterwards (handlers, hooks, on_drop), and
 *         before a ql_queue_get* that takes a record;
 *   (out) what a callback did happens before the return of ql_stop,
 *         ql_stop_timeout, ql_listener_flush, ql_listener_free and
 *         ql_start (which waits for a flush still running).
 *
 * Two sync objects, `in` and `out`, are used for every queue and listener:
 * a slight over-approximation (a callback also "acquires" puts made to an
 * unrelated queue) in exchange for no bookkeeping. Producers only release
 * and never acquire, so races between two producer threads that call the
 * library are still reported; so is a race between a callback and any C
 * code that does not go through one of the calls above (for example a
 * test reading handler state after polling ql_listener_stats or
 * ql_queue_len: the library promises no ordering there). canary.c checks
 * that both are still found.
 *
 * The callbacks are annotated through trampolines: ql_listener_new,
 * ql_listener_new_with_queue and ql_queue_new_with_options get copies of
 * the handlers, hooks and options whose function pointers point here and
 * whose ctx points to a small struct holding the program's original
 * ones. Only callbacks compiled into the program itself are wrapped: the
 * library's own handlers (ql_stream_handler_fd, ql_file_handler...) are
 * passed through untouched. The program's callbacks still get their own
 * ctx.
 *
 * TSan only: a constructor starts and joins one thread before main, so
 * that TSan's background thread (started at the first pthread_create)
 * already runs when a test first counts its threads (/proc/self/task).
 *
 * A function added to the library's API that moves data between threads
 * needs a line here; until then TSan reports the hand-off as a race. The
 * list of wrapped functions is read from this file by CMakeLists.txt.
 */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue_listener.h"

static char qlm_in;  /* released by callers of the library, acquired by callbacks */
static char qlm_out; /* released by callbacks, acquired by stop / flush / free / start */

#if defined(QLM_TSAN)
#include <sanitizer/tsan_interface.h>
#define QLM_RELEASE(a) __tsan_release(a)
#define QLM_ACQUIRE(a) __tsan_acquire(a)
#elif defined(QLM_DRD)
#include <valgrind/drd.h>
#define QLM_RELEASE(a) ANNOTATE_HAPPENS_BEFORE(a)
#define QLM_ACQUIRE(a) ANNOTATE_HAPPENS_AFTER(a)
#else
#error "build hb_model.c with -DQLM_TSAN or -DQLM_DRD"
#endif

#define QLM_IN_RELEASE() QLM_RELEASE(&qlm_in)
#define QLM_IN_ACQUIRE() QLM_ACQUIRE(&qlm_in)
#define QLM_OUT_RELEASE() QLM_RELEASE(&qlm_out)
#define QLM_OUT_ACQUIRE() QLM_ACQUIRE(&qlm_out)

/* ------------------------------------------------------------ calls */

/* A call that hands data to the listener (records, a sentinel). */
#define QLM_PRODUCER(ret, name, params, args)                                \
    __typeof__(name) __real_##name;                                          \
    ret __wrap_##name params;                                                \
    ret __wrap_##name params {                                               \
        QLM_IN_RELEASE();                                                    \
        return __real_##name args;                                           \
    }

/* A call that hands data to the listener and waits for callbacks. */
#define QLM_CONTROL(ret, name, params, args)                                 \
    __typeof__(name) __real_##name;                                          \
    ret __wrap_##name params;                                                \
    ret __wrap_##name params {                                               \
        QLM_IN_RELEASE();                                                    \
        ret r = __real_##name args;                                          \
        QLM_OUT_ACQUIRE();                                                   \
        return r;                                                            \
    }

/* A call that takes a record some producer put. */
#define QLM_CONSUMER(ret, name, params, args)                                \
    __typeof__(name) __real_##name;                                          \
    ret __wrap_##name params;                                                \
    ret __wrap_##name params {                                               \
        ret r = __real_##name args;                                          \
        QLM_IN_ACQUIRE();                                                    \
        return r;                                                            \
    }

QLM_PRODUCER(ql_status, ql_queue_put, (const ql_queue *q, void *rec), (q, rec))
QLM_PRODUCER(ql_status, ql_queue_put_nowait, (const ql_queue *q, void *rec), (q, rec))
QLM_PRODUCER(ql_status, ql_queue_put_timeout, (const ql_queue *q, void *rec, uint64_t ms),
             (q, rec, ms))
QLM_PRODUCER(ql_status, ql_log,
             (const ql_queue *q, int32_t level, const char *logger, const char *msg, size_t len),
             (q, level, logger, msg, len))
QLM_PRODUCER(ql_status, ql_log_user,
             (const ql_queue *q, int32_t level, const char *logger, const char *msg, size_t len,
              void *user),
             (q, level, logger, msg, len, user))
QLM_PRODUCER(ql_status, ql_log_fields,
             (const ql_queue *q, int32_t level, const char *logger, const ql_field *fields,
              size_t n, const char *msg, size_t len),
             (q, level, logger, fields, n, msg, len))
QLM_PRODUCER(ql_status, ql_log_src,
             (const ql_queue *q, int32_t level, const char *logger, const ql_source *source,
              const ql_field *fields, size_t n, const char *msg, size_t len, void *user),
             (q, level, logger, source, fields, n, msg, len, user))
/* ql_logf and the call-site macros (static inline) call it for a deferred
 * message, ql_log_src for one formatted eagerly. */
QLM_PRODUCER(ql_status, ql_log_args,
             (const ql_queue *q, int32_t level, const char *logger, const ql_source *source,
              const ql_field *fields, size_t n, const ql_printf *format, const ql_arg *args,
              size_t count),
             (q, level, logger, source, fields, n, format, args, count))
QLM_PRODUCER(ql_status, ql_enqueue_sentinel, (const ql_listener *l), (l))

QLM_CONTROL(ql_status, ql_start, (const ql_listener *l), (l))
QLM_CONTROL(ql_status, ql_stop, (const ql_listener *l), (l))
QLM_CONTROL(ql_status, ql_stop_timeout, (const ql_listener *l, uint64_t ms), (l, ms))
QLM_CONTROL(ql_status, ql_listener_flush, (const ql_listener *l, uint64_t ms), (l, ms))
QLM_CONTROL(ql_status, ql_listener_free, (ql_listener *l), (l))

QLM_CONSUMER(ql_status, ql_queue_get, (const ql_queue *q, void **out), (q, out))
QLM_CONSUMER(ql_status, ql_queue_get_nowait, (const ql_queue *q, void **out), (q, out))
QLM_CONSUMER(ql_status, ql_queue_get_timeout, (const ql_queue *q, uint64_t ms, void **out),
             (q, ms, out))

/* ------------------------------------------------------------ callbacks */

/* True when `fn` is NULL or compiled into this program (not the library). */
static bool qlm_ours(const void *fn) {
    Dl_info mine, theirs;
    if (fn == NULL) return true;
    if (!dladdr((const void *)&qlm_ours, &mine) || !dladdr(fn, &theirs)) return false;
    return mine.dli_fbase == theirs.dli_fbase;
}
#define QLM_OURS(fn) qlm_ours((const void *)(uintptr_t)(fn))

/* Around every wrapped callback: it sees what callers did before their
 * calls, and stop / flush / free see what it did. */
#define QLM_CALL(expr)                                                       \
    do {                                                                     \
        QLM_IN_ACQUIRE();                                                    \
        expr;                                                                \
        QLM_OUT_RELEASE();                                                   \
    } while (0)

/* Handlers. */
typedef struct {
    ql_handler h;
} qlm_handler;

static int32_t qlm_handle(void *ctx, void *record) {
    qlm_handler *m = (qlm_handler *)ctx;
    int32_t r;
    QLM_CALL(r = m->h.handle(m->h.ctx, record));
    return r;
}

static void qlm_flush(void *ctx) {
    qlm_handler *m = (qlm_handler *)ctx;
    QLM_CALL(m->h.flush(m->h.ctx));
}

static void qlm_batch_end(void *ctx) {
    qlm_handler *m = (qlm_handler *)ctx;
    QLM_CALL(m->h.batch_end(m->h.ctx));
}

static void qlm_destroy(void *ctx) {
    qlm_handler *m = (qlm_handler *)ctx;
    QLM_CALL(m->h.destroy(m->h.ctx));
    free(m);
}

/* Hooks. */
typedef struct {
    ql_hooks h;
} qlm_hooks;

static ql_dequeue_result qlm_hook_dequeue(void *ctx, bool block, void **out) {
    qlm_hooks *m = (qlm_hooks *)ctx;
    ql_dequeue_result r;
    QLM_CALL(r = m->h.dequeue(m->h.ctx, block, out));
    return r;
}

static int32_t qlm_hook_prepare(void *ctx, void *record, void **out) {
    qlm_hooks *m = (qlm_hooks *)ctx;
    int32_t r;
    QLM_CALL(r = m->h.prepare(m->h.ctx, record, out));
    return r;
}

static int32_t qlm_hook_handle(void *ctx, void *record) {
    qlm_hooks *m = (qlm_hooks *)ctx;
    int32_t r;
    QLM_CALL(r = m->h.handle(m->h.ctx, record));
    return r;
}

static ql_enqueue_result qlm_hook_enqueue_sentinel(void *ctx) {
    qlm_hooks *m = (qlm_hooks *)ctx;
    ql_enqueue_result r;
    QLM_CALL(r = m->h.enqueue_sentinel(m->h.ctx));
    return r;
}

static int32_t qlm_hook_record_level(void *ctx, void *record) {
    qlm_hooks *m = (qlm_hooks *)ctx;
    int32_t r;
    QLM_CALL(r = m->h.record_level(m->h.ctx, record));
    return r;
}

static void qlm_hook_release(void *ctx, void *prepared) {
    qlm_hooks *m = (qlm_hooks *)ctx;
    QLM_CALL(m->h.release(m->h.ctx, prepared));
}

static void qlm_hook_done(void *ctx, void *record) {
    qlm_hooks *m = (qlm_hooks *)ctx;
    QLM_CALL(m->h.done(m->h.ctx, record));
}

static void qlm_hook_on_error(void *ctx, ql_stage stage, size_t index, void *record, int32_t code) {
    qlm_hooks *m = (qlm_hooks *)ctx;
    QLM_CALL(m->h.on_error(m->h.ctx, stage, index, record, code));
}

/* on_drop of the built-in queue: runs on the thread whose put evicted a
 * record another thread may have put. */
typedef struct {
    void *ctx;
    void (*on_drop)(void *ctx, void *record);
} qlm_drop;

static void qlm_on_drop(void *ctx, void *record) {
    qlm_drop *m = (qlm_drop *)ctx;
    QLM_CALL(m->on_drop(m->ctx, record));
}

/* Copies of the handlers and hooks with trampolines, or NULL to pass the
 * originals through (bad input, which the library must see as it is; or a
 * callback of the library itself). */
static ql_handler *qlm_wrap_handlers(const ql_handler *handlers, size_t n) {
    if (handlers == NULL || n == 0 || n > 4096) return NULL;
    ql_handler *out = (ql_handler *)calloc(n, sizeof *out);
    if (out == NULL) return NULL;
    for (size_t i = 0; i < n; i++) {
        const ql_handler *h = &handlers[i];
        out[i] = *h;
        if (h->handle == NULL || !QLM_OURS(h->handle) || !QLM_OURS(h->flush) ||
            !QLM_OURS(h->batch_end) || !QLM_OURS(h->destroy))
            continue;
        qlm_handler *m = (qlm_handler *)malloc(sizeof *m);
        if (m == NULL) continue;
        m->h = *h;
        out[i].ctx = m;
        out[i].handle = qlm_handle;
        out[i].flush = h->flush ? qlm_flush : NULL;
        out[i].batch_end = h->batch_end ? qlm_batch_end : NULL;
        /* Without a destroy of the program's, the trampoline is left
         * allocated (one small block per handler; TSan checks no leaks). */
        out[i].destroy = h->destroy ? qlm_destroy : NULL;
    }
    return out;
}

/* After a failed ql_listener_new*: nothing was kept, free the trampolines. */
static void qlm_unwrap_handlers(ql_handler *wrapped, size_t n) {
    if (wrapped == NULL) return;
    for (size_t i = 0; i < n; i++)
        if (wrapped[i].handle == qlm_handle) free(wrapped[i].ctx);
}

static ql_hooks *qlm_wrap_hooks(const ql_hooks *hooks) {
    if (hooks == NULL) return NULL;
    if (!QLM_OURS(hooks->dequeue) || !QLM_OURS(hooks->prepare) || !QLM_OURS(hooks->handle) ||
        !QLM_OURS(hooks->enqueue_sentinel) || !QLM_OURS(hooks->record_level) ||
        !QLM_OURS(hooks->release) || !QLM_OURS(hooks->done) || !QLM_OURS(hooks->on_error))
        return NULL;
    qlm_hooks *m = (qlm_hooks *)malloc(sizeof *m);
    ql_hooks *out = (ql_hooks *)malloc(sizeof *out);
    if (m == NULL || out == NULL) {
        free(m);
        free(out);
        return NULL;
    }
    m->h = *hooks;
    *out = *hooks;
    out->ctx = m;
    out->dequeue = hooks->dequeue ? qlm_hook_dequeue : NULL;
    out->prepare = hooks->prepare ? qlm_hook_prepare : NULL;
    out->handle = hooks->handle ? qlm_hook_handle : NULL;
    out->enqueue_sentinel = hooks->enqueue_sentinel ? qlm_hook_enqueue_sentinel : NULL;
    out->record_level = hooks->record_level ? qlm_hook_record_level : NULL;
    out->release = hooks->release ? qlm_hook_release : NULL;
    out->done = hooks->done ? qlm_hook_done : NULL;
    out->on_error = hooks->on_error ? qlm_hook_on_error : NULL;
    return out;
}

/* The hooks' trampoline context lives as long as the listener; it is left
 * allocated (one small block per listener; TSan checks no leaks). */
static void qlm_unwrap_hooks(ql_hooks *wrapped) {
    if (wrapped == NULL) return;
    free(wrapped->ctx);
}

__typeof__(ql_listener_new) __real_ql_listener_new;
ql_status __wrap_ql_listener_new(const ql_queue_vtable *queue, const ql_handler *handlers,
                                 size_t n, const ql_hooks *hooks, bool respect_level,
                                 ql_listener **out);
ql_status __wrap_ql_listener_new(const ql_queue_vtable *queue, const ql_handler *handlers,
                                 size_t n, const ql_hooks *hooks, bool respect_level,
                                 ql_listener **out) {
    ql_handler *wh = qlm_wrap_handlers(handlers, n);
    ql_hooks *wk = qlm_wrap_hooks(hooks);
    ql_status r = __real_ql_listener_new(queue, wh ? wh : handlers, n, wk ? wk : hooks,
                                         respect_level, out);
    if (r != QL_OK) {
        qlm_unwrap_handlers(wh, n);
        qlm_unwrap_hooks(wk);
    }
    free(wh); /* the library copied the array */
    free(wk); /* ... and the hooks struct */
    return r;
}

__typeof__(ql_listener_new_with_queue) __real_ql_listener_new_with_queue;
ql_status __wrap_ql_listener_new_with_queue(const ql_queue *queue, const ql_handler *handlers,
                                            size_t n, const ql_hooks *hooks, bool respect_level,
                                            ql_listener **out);
ql_status __wrap_ql_listener_new_with_queue(const ql_queue *queue, const ql_handler *handlers,
                                            size_t n, const ql_hooks *hooks, bool respect_level,
                                            ql_listener **out) {
    ql_handler *wh = qlm_wrap_handlers(handlers, n);
    ql_hooks *wk = qlm_wrap_hooks(hooks);
    ql_status r = __real_ql_listener_new_with_queue(queue, wh ? wh : handlers, n,
                                                    wk ? wk : hooks, respect_level, out);
    if (r != QL_OK) {
        qlm_unwrap_handlers(wh, n);
        qlm_unwrap_hooks(wk);
    }
    free(wh);
    free(wk);
    return r;
}

__typeof__(ql_queue_new_with_options) __real_ql_queue_new_with_options;
ql_status __wrap_ql_queue_new_with_options(const ql_queue_options *options, ql_queue **out);
ql_status __wrap_ql_queue_new_with_options(const ql_queue_options *options, ql_queue **out) {
    if (options == NULL || options->on_drop == NULL || !QLM_OURS(options->on_drop))
        return __real_ql_queue_new_with_options(options, out);
    qlm_drop *m = (qlm_drop *)malloc(sizeof *m);
    if (m == NULL) return __real_ql_queue_new_with_options(options, out);
    m->ctx = options->drop_ctx;
    m->on_drop = options->on_drop;
    ql_queue_options o = *options;
    o.drop_ctx = m;
    o.on_drop = qlm_on_drop;
    ql_status r = __real_ql_queue_new_with_options(&o, out);
    if (r != QL_OK) free(m); /* else it lives as long as the queue (left allocated) */
    return r;
}

/* ------------------------------------------------------------ threads */

#if defined(QLM_TSAN)
static void *qlm_nothing(void *arg) { return arg; }

/* TSan starts its background thread at the first pthread_create; start it
 * before main so that the tests' thread counts do not see it appear. */
__attribute__((constructor)) static void qlm_start_tsan_background_thread(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, qlm_nothing, NULL) == 0) pthread_join(t, NULL);
}
#endif
