/*
 * test_process: draining at exit() and fork() safety.
 *
 * - drain at exit: a child process logs records and calls exit() without
 *   stopping its listener; every record is in the log file afterwards.
 * - exit is bounded: a child whose handler blocks forever still exits,
 *   after about the bound, with status 0.
 * - fork while a listener runs: the child cannot use the parent's
 *   listener or queue (QL_ERR_FORKED; ql_stop and the frees are harmless),
 *   can make, start and stop its own, and never writes the parent's queued
 *   records a second time; the parent is unaffected.
 *
 * Children run under alarm(), so a hang fails the test instead of blocking
 * it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ql_test.h"

static char dir[256];

static void path_in_dir(char *out, size_t len, const char *name) {
    snprintf(out, len, "%s/%s", dir, name);
}

/* Counts lines of `path` that equal "<prefix><n>" for n in [0, count), and
 * returns how many lines there were in all; `seen[n]` gets each count. */
static long read_numbered(const char *path, const char *prefix, long count, int *seen) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[256];
    long lines = 0;
    const size_t plen = strlen(prefix);
    while (fgets(line, sizeof line, f)) {
        lines++;
        if (strncmp(line, prefix, plen) != 0) continue;
        long n = strtol(line + plen, NULL, 10);
        if (n >= 0 && n < count) seen[n]++;
    }
    fclose(f);
    return lines;
}

/* Waits for `pid`; returns its exit status, or -signal when killed. */
static int wait_child(pid_t pid) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) QLT_FAIL("waitpid: %s", strerror(errno));
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return -WTERMSIG(status);
}

static ql_queue *new_queue(void) {
    ql_queue_options o = ql_queue_options_default();
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new_with_options(&o, &q));
    return q;
}

/* ------------------------------------------------------------ drain at exit */

enum { EXIT_RECORDS = 20000 };

static void drain_at_exit(void) {
    char path[512];
    path_in_dir(path, sizeof path, "drain.log");
    pid_t pid = fork();
    if (pid < 0) QLT_FAIL("fork: %s", strerror(errno));
    if (pid == 0) {
        alarm(60);
        ql_queue *q = new_queue();
        ql_handler_options ho = ql_handler_options_default();
        ho.pattern = "{message}";
        ho.flush = QL_FLUSH_EXPLICIT; /* nothing written before the end */
        ql_handler h;
        if (ql_file_handler(path, &ho, &h) != QL_OK) _exit(10);
        ql_listener *l = NULL;
        if (ql_listener_new_with_queue(q, &h, 1, NULL, false, &l) != QL_OK) _exit(11);
        if (ql_listener_drain_at_exit(l, 20000) != QL_OK) _exit(12);
        if (ql_start(l) != QL_OK) _exit(13);
        for (long i = 0; i < EXIT_RECORDS; i++)
            if (ql_logf(q, QL_LEVEL_INFO, "t", "r%ld", i) != QL_OK) _exit(14);
        exit(0); /* no ql_stop: the atexit drain must handle everything */
    }
    CHECK_EQ_INT(wait_child(pid), 0);
    int *seen = calloc(EXIT_RECORDS, sizeof *seen);
    CHECK(seen != NULL);
    CHECK_EQ_INT(read_numbered(path, "r", EXIT_RECORDS, seen), EXIT_RECORDS);
    for (long i = 0; i < EXIT_RECORDS; i++)
        if (seen[i] != 1) QLT_FAIL("record %ld written %d times", i, seen[i]);
    free(seen);
    PASS("exit() without ql_stop, drain at exit registered: all %d records written once",
         EXIT_RECORDS);
}

/* ------------------------------------------------------------ bounded exit */

static pthread_mutex_t never_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never_cv = PTHREAD_COND_INITIALIZER;

static int32_t block_forever(void *ctx, void *record) {
    (void)ctx;
    (void)record;
    pthread_mutex_lock(&never_mu);
    for (;;) pthread_cond_wait(&never_cv, &never_mu);
    return 0;
}

static void exit_is_bounded(void) {
    pid_t pid = fork();
    if (pid < 0) QLT_FAIL("fork: %s", strerror(errno));
    if (pid == 0) {
        alarm(30); /* a hang kills the child with SIGALRM: the test fails */
        ql_queue *q = new_queue();
        ql_handler h = {NULL, 0, block_forever, NULL, NULL, NULL};
        ql_listener *l = NULL;
        if (ql_listener_new_with_queue(q, &h, 1, NULL, false, &l) != QL_OK) _exit(11);
        if (ql_listener_drain_at_exit(l, 300) != QL_OK) _exit(12);
        if (ql_start(l) != QL_OK) _exit(13);
        for (int i = 0; i < 10; i++) ql_log(q, 20, "t", "x", 1);
        exit(0);
    }
    long long t0 = qlt_now_ms();
    CHECK_EQ_INT(wait_child(pid), 0);
    long long took = qlt_now_ms() - t0;
    CHECK(took >= 250); /* it did wait for the handler, up to the bound */
    PASS("a handler blocked forever: exit() still returns after the 300 ms bound (took %lld ms)",
         took);
}

/* ------------------------------------------------------------ fork */

enum { PARENT_BEFORE = 5000, PARENT_AFTER = 5000, CHILD_RECORDS = 1000 };

typedef struct {
    ql_queue *q;
    long from, to;
} producer_arg;

static void *produce(void *p) {
    producer_arg *a = p;
    for (long i = a->from; i < a->to; i++)
        if (ql_logf(a->q, QL_LEVEL_INFO, "parent", "p%ld", i) != QL_OK) QLT_FAIL("ql_logf");
    return NULL;
}

static int child_after_fork(ql_listener *inherited, ql_queue *inherited_q, const char *path) {
    alarm(60);
    /* The parent's listener and queue are not usable here. */
    if (ql_start(inherited) != QL_ERR_FORKED) return 20;
    if (ql_enqueue_sentinel(inherited) != QL_ERR_FORKED) return 21;
    if (ql_listener_flush(inherited, 100) != QL_ERR_FORKED) return 22;
    if (ql_stop(inherited) != QL_OK) return 23; /* nothing runs here */
    if (ql_log(inherited_q, 20, "child", "x", 1) != QL_ERR_FORKED) return 24;
    if (ql_logf(inherited_q, 20, "child", "%d", 1) != QL_ERR_FORKED) return 25;
    if (ql_queue_put(inherited_q, NULL) != QL_ERR_FORKED) return 26;
    ql_listener *other = NULL;
    if (ql_listener_new_with_queue(inherited_q, NULL, 0, NULL, false, &other) != QL_ERR_FORKED)
        return 27;
    /* Its own listener works. */
    ql_queue *q = new_queue();
    ql_handler_options ho = ql_handler_options_default();
    ho.pattern = "{message}";
    ql_handler h;
    if (ql_file_handler(path, &ho, &h) != QL_OK) return 30;
    ql_listener *l = NULL;
    if (ql_listener_new_with_queue(q, &h, 1, NULL, false, &l) != QL_OK) return 31;
    for (int round = 0; round < 3; round++) {
        if (ql_start(l) != QL_OK) return 32;
        for (long i = 0; i < CHILD_RECORDS; i++)
            if (ql_logf(q, 20, "child", "c%d_%ld", round, i) != QL_OK) return 33;
        if (ql_stop(l) != QL_OK) return 34;
    }
    ql_stats s;
    if (ql_listener_stats(l, &s) != QL_OK || s.handled != 3 * CHILD_RECORDS) return 35;
    if (ql_listener_free(l) != QL_OK) return 36;
    ql_queue_free(q);
    /* Freeing the inherited objects is harmless and writes nothing. */
    if (ql_listener_free(inherited) != QL_OK) return 37;
    ql_queue_free(inherited_q);
    return 0; /* exit(): the parent's drain registration must do nothing */
}

static void fork_while_running(void) {
    char parent_log[512], child_log[512];
    path_in_dir(parent_log, sizeof parent_log, "parent.log");
    path_in_dir(child_log, sizeof child_log, "child.log");
    ql_queue *q = new_queue();
    ql_handler_options ho = ql_handler_options_default();
    ho.pattern = "{message}";
    ho.flush = QL_FLUSH_EXPLICIT; /* buffered lines are in memory at fork */
    ql_handler h;
    CHECK_OK(ql_file_handler(parent_log, &ho, &h));
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l));
    CHECK_OK(ql_listener_drain_at_exit(l, 5000));
    CHECK_OK(ql_start(l));

    /* Fork while a producer is logging and the listener is busy. */
    pthread_t t;
    producer_arg before = {q, 0, PARENT_BEFORE};
    QLT_PT(pthread_create(&t, NULL, produce, &before));
    for (long i = 0; i < 100; i++) /* some records surely queued or buffered */
        CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "parent", "p%ld", PARENT_BEFORE + PARENT_AFTER + i));
    pid_t pid = fork();
    if (pid < 0) QLT_FAIL("fork: %s", strerror(errno));
    if (pid == 0) exit(child_after_fork(l, q, child_log));
    QLT_PT(pthread_join(t, NULL));
    int child = wait_child(pid);
    if (child != 0) QLT_FAIL("child failed with %d (see child_after_fork)", child);

    /* The parent goes on, unaffected. */
    producer_arg after = {q, PARENT_BEFORE, PARENT_BEFORE + PARENT_AFTER};
    produce(&after);
    CHECK_OK(ql_stop(l));
    ql_stats s;
    CHECK_OK(ql_listener_stats(l, &s));
    const long total = PARENT_BEFORE + PARENT_AFTER + 100;
    CHECK_EQ_INT(s.handled, total);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);

    int *seen = calloc(total, sizeof *seen);
    CHECK(seen != NULL);
    CHECK_EQ_INT(read_numbered(parent_log, "p", total, seen), total);
    for (long i = 0; i < total; i++)
        if (seen[i] != 1) QLT_FAIL("parent record %ld written %d times", i, seen[i]);
    free(seen);
    int *cseen = calloc(1, sizeof *cseen);
    CHECK_EQ_INT(read_numbered(child_log, "c", 0, cseen), 3 * CHILD_RECORDS);
    free(cseen);
    PASS("fork while running: the child gets QL_ERR_FORKED from the parent's listener and "
         "queue, runs its own (3 start/stop rounds, %d records), frees the inherited ones "
         "harmlessly; each of the parent's %ld records written exactly once",
         3 * CHILD_RECORDS, total);
}

/* _Fork() runs no atfork handler: the child still notices, by its process
 * id, that the running listener is its parent's, so ql_stop returns at
 * once instead of waiting for a thread the child does not have. */
static void underscore_fork(void) {
    ql_queue *q = new_queue();
    qlt_sink s;
    qlt_sink_init(&s, 0);
    s.copy = false;
    ql_listener *l = qlt_start_sink(q, &s);
    CHECK_OK(ql_log(q, QL_LEVEL_INFO, "t", "before", 6));
    fflush(stdout);
    pid_t pid = _Fork();
    if (pid < 0) QLT_FAIL("_Fork: %s", strerror(errno));
    if (pid == 0) {
        /* A hang here is caught by the parent's bounded wait. */
        /* As after fork(): nothing of the parent's runs here. */
        if (ql_stop(l) != QL_OK) _exit(1);
        if (ql_start(l) != QL_ERR_FORKED) _exit(2);
        if (ql_log(q, QL_LEVEL_INFO, "t", "child", 5) != QL_ERR_FORKED) _exit(3);
        if (ql_listener_free(l) != QL_OK) _exit(4);
        _exit(0);
    }
    int child = wait_child(pid);
    if (child != 0) QLT_FAIL("the _Fork child got %d (a status other than QL_ERR_FORKED)", child);
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(qlt_sink_count(&s), 1);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_sink_fini(&s);
    PASS("_Fork() while a listener runs: in the child ql_stop and ql_listener_free return at "
         "once (QL_OK, nothing runs there), ql_start and ql_log give QL_ERR_FORKED; the parent "
         "goes on");
}

int main(void) {
    qlt_begin("test_process");
    snprintf(dir, sizeof dir, "/tmp/ql-test-process-XXXXXX");
    if (!mkdtemp(dir)) QLT_FAIL("mkdtemp: %s", strerror(errno));
    drain_at_exit();
    exit_is_bounded();
    fork_while_running();
    underscore_fork();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return qlt_end();
}
