/*
 * test_crash: the crash flush (ql_listener_flush_on_crash), with real
 * crashes in forked children. Each child logs numbered records to a file
 * handler, then dies; the parent checks that the child died of the
 * original signal and that every record queued before the crash is in the
 * file exactly once.
 *
 * - each signal (SIGSEGV by a NULL write, SIGBUS by touching a mapping past
 *   the end of its file, SIGILL by __builtin_trap, SIGFPE by an integer
 *   division by zero, SIGABRT by abort, SIGTERM and SIGINT raised), with
 *   records in three places: still queued (listener not started), held in
 *   the handler's buffer (QL_FLUSH_EXPLICIT, all handled), and mixed (a
 *   burst logged right before the crash);
 * - under load: 4 producer threads logging while the main thread crashes
 *   at a random moment; every record a producer's ql_log returned QL_OK
 *   for is in the file exactly once, the one in flight at most once;
 * - the crash on the listener's own thread, inside a program handler that
 *   comes after the file handler: every record, the one in hand included,
 *   exactly once;
 * - without the opt-in: the queued records are lost (the test can fail);
 * - chaining: a program's SIGTERM handler installed before the opt-in is
 *   called after the flush; when it returns the process lives on and the
 *   listener goes on, with no record written twice. A SIGSEGV handler with
 *   SA_RESETHAND that returns: the fault kills the process, no loop. A
 *   program handler that calls the library's back: no endless cycle.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ql_test.h"

enum { PLACE_QUEUED, PLACE_HELD, PLACE_MIXED };
static const char *const PLACES[] = {"queued", "held in the handler", "mixed"};

#define N_RECORDS 3000
#define PRODUCERS 4
#define MAX_SEQ 2000000

static char path[256];

/* An address nothing is mapped at, hidden from the compiler. */
static volatile uintptr_t nowhere = 8;

/* ------------------------------------------------------------ the crashes */

static void crash_with(int sig) {
    switch (sig) {
    case SIGSEGV:
        *(volatile int *)nowhere = 1;
        break;
    case SIGBUS: {
        char name[] = "/tmp/ql_crash_busXXXXXX";
        int fd = mkstemp(name);
        if (fd < 0) _exit(90);
        unlink(name);
        /* A page mapped over an empty file: touching it is SIGBUS. */
        volatile char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) _exit(91);
        p[0] = 1;
        break;
    }
    case SIGILL:
        __builtin_trap();
        break;
    case SIGFPE: {
        volatile int zero = 0, seven = 7;
        volatile int x = seven / zero;
        (void)x;
        break;
    }
    case SIGABRT:
        abort();
        break;
    default:
        raise(sig);
        break;
    }
    _exit(92); /* the crash did not happen */
}

/* ------------------------------------------------------ reading the file */

/* counts[i]: how many lines say "rec <i>" (or "t<k> <i>" for producer k,
 * at k * MAX_SEQ + i). */
static unsigned char *read_counts(size_t n) {
    unsigned char *counts = calloc(n, 1);
    if (!counts) QLT_FAIL("calloc");
    FILE *f = fopen(path, "r");
    if (!f) QLT_FAIL("fopen %s", path);
    char line[512];
    while (fgets(line, sizeof line, f)) {
        const char *m = strstr(line, ": ");
        if (!m) continue;
        m += 2;
        long k = 0, i = -1;
        if (sscanf(m, "rec %ld", &i) == 1) {
            k = 0;
        } else if (sscanf(m, "t%ld %ld", &k, &i) != 2) {
            continue;
        }
        size_t at = (size_t)k * MAX_SEQ + (size_t)i;
        if (i < 0 || at >= n) QLT_FAIL("line out of range: %s", line);
        if (counts[at] < 255) counts[at]++;
    }
    fclose(f);
    return counts;
}

/* The child's end: dead of `sig`, as it would be without the library. */
static void expect_death(pid_t pid, int sig) {
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) QLT_FAIL("waitpid");
    if (!WIFSIGNALED(status)) {
        QLT_FAIL("child not killed by a signal (exit status %d, want signal %d)",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1, sig);
    }
    CHECK_EQ_INT(WTERMSIG(status), sig);
}

static void fresh_file(void) {
    snprintf(path, sizeof path, "/tmp/ql_crash_%d.log", (int)getpid());
    unlink(path);
}

/* Every record 0..N_RECORDS-1 in the file exactly once (then the file is
 * removed); `what` names the case in a failure. */
static void expect_each_once(const char *what) {
    unsigned char *counts = read_counts(N_RECORDS);
    for (int i = 0; i < N_RECORDS; i++)
        if (counts[i] != 1) QLT_FAIL("%s: record %d written %d times", what, i, counts[i]);
    free(counts);
    unlink(path);
}

/* A child for one case, with a fresh log file. */
static pid_t spawn(void) {
    fresh_file();
    pid_t pid = fork();
    if (pid < 0) QLT_FAIL("fork: %s", strerror(errno));
    return pid;
}

/* -------------------------------------------------------- one listener */

static ql_queue *queue;
static ql_listener *listener;

static void no_core(void) {
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
}

static void make_listener(int flush, const ql_handler *extra, bool opt_in, ql_crash_signals signals) {
    ql_handler handlers[2];
    ql_handler_options o = ql_handler_options_default();
    o.flush = flush;
    o.pattern = "{level} {logger}: {message}";
    if (ql_file_handler(path, &o, &handlers[0]) != QL_OK) _exit(93);
    size_t n = 1;
    if (extra) handlers[n++] = *extra;
    if (ql_queue_new(0, &queue) != QL_OK) _exit(94);
    if (ql_listener_new_with_queue(queue, handlers, n, NULL, false, &listener) != QL_OK) _exit(95);
    if (opt_in && ql_listener_flush_on_crash(listener, signals) != QL_OK) _exit(96);
}

static void log_range(int from, int to) {
    for (int i = from; i < to; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof msg, "rec %d", i);
        if (ql_log(queue, 20, "crash", msg, (size_t)len) != QL_OK) _exit(97);
    }
}

static void wait_handled(uint64_t n) {
    for (int spins = 0; spins < 20000; spins++) {
        ql_stats s;
        if (ql_listener_stats(listener, &s) != QL_OK) _exit(98);
        if (s.handled >= n) return;
        qlt_sleep_ms(1);
    }
    _exit(99);
}

static void child_place(int sig, int place, bool opt_in) {
    no_core();
    ql_crash_signals signals = 0;
    if (sig == SIGTERM) signals = QL_CRASH_SIGTERM;
    if (sig == SIGINT) signals = QL_CRASH_SIGINT;
    make_listener(place == PLACE_HELD ? QL_FLUSH_EXPLICIT : QL_FLUSH_BATCH, NULL, opt_in, signals);
    switch (place) {
    case PLACE_QUEUED:
        log_range(0, N_RECORDS);
        break;
    case PLACE_HELD:
        if (ql_start(listener) != QL_OK) _exit(100);
        log_range(0, N_RECORDS);
        wait_handled(N_RECORDS);
        break;
    default:
        if (ql_start(listener) != QL_OK) _exit(100);
        log_range(0, N_RECORDS / 2);
        wait_handled(N_RECORDS / 2 / 2);
        log_range(N_RECORDS / 2, N_RECORDS);
        break;
    }
    crash_with(sig);
}

static void each_signal_each_place(void) {
    const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTERM, SIGINT};
    for (size_t s = 0; s < sizeof sigs / sizeof sigs[0]; s++) {
        for (int place = PLACE_QUEUED; place <= PLACE_MIXED; place++) {
            pid_t pid = spawn();
            if (pid == 0) child_place(sigs[s], place, true);
            expect_death(pid, sigs[s]);
            char what[64];
            snprintf(what, sizeof what, "signal %d, records %s", sigs[s], PLACES[place]);
            expect_each_once(what);
        }
        PASS("%s: the child died of it; every record (queued, held in the handler, mixed) "
             "in the file exactly once",
             strsignal(sigs[s]));
    }
}

static void without_opt_in_records_are_lost(void) {
    pid_t pid = spawn();
    if (pid == 0) child_place(SIGSEGV, PLACE_QUEUED, false);
    expect_death(pid, SIGSEGV);
    unsigned char *counts = read_counts(N_RECORDS);
    int written = 0;
    for (int i = 0; i < N_RECORDS; i++) written += counts[i];
    free(counts);
    unlink(path);
    CHECK_EQ_INT(written, 0);
    PASS("without ql_listener_flush_on_crash the queued records are lost (0 of %d written): "
         "the checks above can fail",
         N_RECORDS);
}

/* --------------------------------------------------------------- load */

/* Shared with the parent: the last seq each producer got QL_OK for, and
 * its copy made by the crashing thread right before the crash (records
 * after it may be put while the flush runs: written at most once). */
static long *acked;
static long *acked_at_crash;

static void *produce(void *arg) {
    long k = (long)(intptr_t)arg;
    for (long i = 0; i < MAX_SEQ; i++) {
        char msg[48];
        int len = snprintf(msg, sizeof msg, "t%ld %ld", k, i);
        if (ql_log(queue, 20, "load", msg, (size_t)len) != QL_OK) _exit(101);
        __atomic_store_n(&acked[k], i, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void under_load(unsigned seed) {
    for (int k = 0; k < PRODUCERS; k++) acked[k] = acked_at_crash[k] = -1;
    pid_t pid = spawn();
    if (pid == 0) {
        no_core();
        make_listener(QL_FLUSH_BATCH, NULL, true, 0);
        if (ql_start(listener) != QL_OK) _exit(100);
        pthread_t t[PRODUCERS];
        for (long k = 0; k < PRODUCERS; k++)
            if (pthread_create(&t[k], NULL, produce, (void *)(intptr_t)k) != 0) _exit(102);
        qlt_sleep_us(2000 + (long)(seed % 20000));
        for (int k = 0; k < PRODUCERS; k++)
            acked_at_crash[k] = __atomic_load_n(&acked[k], __ATOMIC_ACQUIRE);
        crash_with(SIGSEGV);
    }
    expect_death(pid, SIGSEGV);
    unsigned char *counts = read_counts((size_t)PRODUCERS * MAX_SEQ);
    long total = 0;
    for (int k = 0; k < PRODUCERS; k++) {
        long last = acked_at_crash[k];
        long logged = __atomic_load_n(&acked[k], __ATOMIC_ACQUIRE);
        for (long i = 0; i < MAX_SEQ; i++) {
            unsigned char c = counts[(size_t)k * MAX_SEQ + (size_t)i];
            if (i <= last && c != 1)
                QLT_FAIL("load, seed %u: producer %d record %ld (acknowledged up to %ld) written "
                         "%d times",
                         seed, k, i, last, c);
            if (i > last && c > 1)
                QLT_FAIL("load, seed %u: producer %d record %ld written %d times", seed, k, i, c);
            if (i > logged + 1 && c != 0)
                QLT_FAIL("load, seed %u: producer %d record %ld written, never logged", seed, k, i);
        }
        total += last + 1;
    }
    free(counts);
    unlink(path);
    PASS("under load (seed %u): 4 producers, a crash at a random moment: all %ld acknowledged "
         "records exactly once, none twice",
         seed, total);
}

/* ------------------------------------------- the listener's own thread */

#define CRASH_AT 1234

static int32_t crash_on(void *ctx, void *record) {
    (void)ctx;
    const ql_record *r = record;
    char at[16];
    int n = snprintf(at, sizeof at, "rec %d", CRASH_AT);
    if (r->message_len == (size_t)n && memcmp(r->message, at, (size_t)n) == 0) crash_with(SIGSEGV);
    return 0;
}

static void crash_in_a_handler(void) {
    pid_t pid = spawn();
    if (pid == 0) {
        no_core();
        ql_handler crashing = {NULL, 0, crash_on, NULL, NULL, NULL};
        make_listener(QL_FLUSH_EXPLICIT, &crashing, true, 0);
        log_range(0, N_RECORDS);
        if (ql_start(listener) != QL_OK) _exit(100);
        /* Returns only once every record was handled: the handler crashes
         * the process before. */
        ql_stop(listener);
        _exit(103);
    }
    expect_death(pid, SIGSEGV);
    expect_each_once("crash in a handler");
    PASS("a crash on the listener's thread, inside a handler after the file handler at record "
         "%d: every record, the one in hand included, exactly once",
         CRASH_AT);
}

/* ---------------------------------------------------------- bad input */

static ql_dequeue_result never_dequeue(void *ctx, bool block, void **record_out) {
    (void)ctx;
    (void)block;
    (void)record_out;
    return QL_DEQUEUE_EMPTY;
}

static ql_enqueue_result never_sentinel(void *ctx) {
    (void)ctx;
    return QL_ENQUEUE_OK;
}

static void refused_setups(void) {
    CHECK_EQ_STATUS(ql_listener_flush_on_crash(NULL, 0), QL_ERR_NULL);
    ql_queue_vtable vt;
    memset(&vt, 0, sizeof vt);
    vt.dequeue = never_dequeue;
    vt.enqueue_sentinel = never_sentinel;
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new(&vt, NULL, 0, NULL, false, &l));
    CHECK_EQ_STATUS(ql_listener_flush_on_crash(l, 0), QL_ERR_UNSUPPORTED);
    CHECK_OK(ql_listener_free(l));
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_listener_new_with_queue(q, NULL, 0, NULL, false, &l));
    CHECK_EQ_STATUS(ql_listener_flush_on_crash(l, 4), QL_ERR_INVALID);
    CHECK_OK(ql_listener_flush_on_crash(l, QL_CRASH_SIGTERM));
    CHECK_OK(ql_listener_flush_on_crash(l, 0)); /* again: nothing changes */
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    PASS("ql_listener_flush_on_crash: NULL, a program's queue (QL_ERR_UNSUPPORTED), an unknown "
         "flag (QL_ERR_INVALID) refused; twice is fine; free forgets it");
}

/* ------------------------------------------------------------ chaining */

static volatile sig_atomic_t term_seen;

static void on_term(int sig) {
    (void)sig;
    term_seen = 1;
}

static void program_handler_chained(void) {
    pid_t pid = spawn();
    if (pid == 0) {
        no_core();
        signal(SIGTERM, on_term);
        make_listener(QL_FLUSH_BATCH, NULL, true, QL_CRASH_SIGTERM);
        log_range(0, N_RECORDS / 2); /* queued: the listener is not started */
        raise(SIGTERM);
        if (!term_seen) _exit(104);
        /* Lived on: the listener goes on with the rest. */
        if (ql_start(listener) != QL_OK) _exit(105);
        log_range(N_RECORDS / 2, N_RECORDS);
        if (ql_stop(listener) != QL_OK) _exit(106);
        ql_listener_free(listener);
        _exit(0);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) QLT_FAIL("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        QLT_FAIL("child: %s %d", WIFEXITED(status) ? "exit" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    expect_each_once("chained");
    PASS("a program's SIGTERM handler, installed first: called after the flush; the process "
         "lived on and the listener went on, every record exactly once");
}

/* A program's SIGSEGV handler that returns (counted in shared memory). */
static long *program_calls;
static struct sigaction library_action;

static void returning_handler(int sig) {
    (void)sig;
    __atomic_fetch_add(program_calls, 1, __ATOMIC_RELAXED);
}

/* A program handler installed over the library's that calls it back, as
 * handlers that chain to the previous action do. */
static void chaining_back(int sig, siginfo_t *info, void *context) {
    __atomic_fetch_add(program_calls, 1, __ATOMIC_RELAXED);
    library_action.sa_sigaction(sig, info, context);
}

/* resethand: a program SIGSEGV handler with SA_RESETHAND that returns: the
 * fault comes back and the default kills the process (no loop).
 * cycle: the program's handler chains back to the library's, which an
 * opt-in made after it chains to it: the default ends the cycle. */
static void program_handlers_kept(bool cycle) {
    *program_calls = 0;
    pid_t pid = spawn();
    if (pid == 0) {
        no_core();
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sigemptyset(&sa.sa_mask);
        if (!cycle) {
            sa.sa_handler = returning_handler;
            sa.sa_flags = SA_RESETHAND;
            sigaction(SIGSEGV, &sa, NULL);
            make_listener(QL_FLUSH_BATCH, NULL, true, 0);
        } else {
            make_listener(QL_FLUSH_BATCH, NULL, true, 0);
            sa.sa_sigaction = chaining_back;
            sa.sa_flags = SA_SIGINFO;
            sigaction(SIGSEGV, &sa, &library_action);
            if (!(library_action.sa_flags & SA_SIGINFO)) _exit(107);
            ql_listener *again = listener;
            if (ql_listener_flush_on_crash(again, 0) != QL_OK) _exit(108);
        }
        log_range(0, N_RECORDS);
        crash_with(SIGSEGV);
    }
    expect_death(pid, SIGSEGV);
    CHECK_EQ_INT(*program_calls, 1);
    expect_each_once(cycle ? "program handler calling back" : "SA_RESETHAND handler");
    if (cycle)
        PASS("a program handler installed over the library's and calling it back, then a new "
             "opt-in: called once, no endless cycle, died of SIGSEGV, every record once");
    else
        PASS("a program SIGSEGV handler with SA_RESETHAND that returns: called once after the "
             "flush, then the fault killed the process (no loop), every record once");
}

int main(void) {
    qlt_begin("test_crash");
    acked = mmap(NULL, 2 * sizeof(long) * PRODUCERS, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (acked == MAP_FAILED) QLT_FAIL("mmap");
    acked_at_crash = acked + PRODUCERS;
    program_calls = mmap(NULL, sizeof(long), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                         -1, 0);
    if (program_calls == MAP_FAILED) QLT_FAIL("mmap");
    refused_setups();
    each_signal_each_place();
    without_opt_in_records_are_lost();
    crash_in_a_handler();
    program_handler_chained();
    program_handlers_kept(false);
    program_handlers_kept(true);
    unsigned seed = (unsigned)getpid();
    for (int round = 0; round < 5; round++) under_load(seed * 7919u + (unsigned)round * 104729u);
    return qlt_end();
}
