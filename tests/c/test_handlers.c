/*
 * test_handlers: the built-in handlers.
 *
 * - stream handler on a pipe: the default pattern (ISO-8601 local time with
 *   milliseconds and offset, level name, thread id, logger, message) and a
 *   custom one with every field and brace escapes;
 * - stream handler on a FILE *;
 * - flush policies: every record (the line is out before the next handler
 *   sees the record), batch (out at the end of the batch, not before),
 *   explicit (out only at a flush barrier or stop);
 * - file rotation: no file past max_bytes, backup_count kept;
 * - whole lines: two listeners with two producers each appending to one
 *   file: every line intact and present exactly once;
 * - null handler;
 * - a failing sink (/dev/full): every failed write counted in
 *   handler_errors with its errno, lines dropped past the retry buffer
 *   counted by ql_handler_lines_lost;
 * - bad input.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ql_test.h"

static char dir[256];

static void path_in_dir(char *out, size_t len, const char *name) {
    snprintf(out, len, "%s/%s", dir, name);
}

static ql_queue *new_queue(size_t capacity) {
    ql_queue_options o = ql_queue_options_default();
    o.capacity = capacity;
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new_with_options(&o, &q));
    return q;
}

static long long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* Reads all of fd into buf (NUL-terminated); returns the length. */
static size_t read_all(int fd, char *buf, size_t cap) {
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    buf[n] = 0;
    return n;
}

/* ------------------------------------------------------------ patterns */

static void patterns_on_a_pipe(void) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    ql_queue *q = new_queue(64);
    ql_handler handlers[2];
    ql_handler_options d = ql_handler_options_default(); /* the default pattern */
    d.flush = QL_FLUSH_EVERY_RECORD; /* so the two handlers' lines alternate */
    CHECK_OK(ql_stream_handler_fd(fds[1], &d, &handlers[0]));
    ql_handler_options o = ql_handler_options_default();
    o.flush = QL_FLUSH_EVERY_RECORD;
    o.pattern = "{{{levelno}}} {level}|{logger}|{message}|{thread}";
    CHECK_OK(ql_stream_handler_fd(fds[1], &o, &handlers[1]));
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, handlers, 2, NULL, false, &l));
    CHECK_OK(ql_start(l));
    const long tid = syscall(SYS_gettid);
    CHECK_OK(ql_log(q, QL_LEVEL_WARNING, "app.db", "disk at 91%", 11));
    CHECK_OK(ql_log(q, 25, NULL, "custom level", 12));
    CHECK_OK(ql_stop(l));
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    close(fds[1]);
    char out[4096];
    read_all(fds[0], out, sizeof out);
    close(fds[0]);

    /* Handler order per record: default line, then custom line. */
    char *lines[4];
    int n = 0;
    for (char *save = NULL, *line = strtok_r(out, "\n", &save); line && n < 4;
         line = strtok_r(NULL, "\n", &save))
        lines[n++] = line;
    CHECK_EQ_INT(n, 4);
    regex_t re;
    char pattern[256];
    snprintf(pattern, sizeof pattern,
             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}[+-][0-9]{2}:[0-9]{2} "
             "WARNING \\[%ld\\] app\\.db: disk at 91%%$",
             tid);
    CHECK(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) == 0);
    if (regexec(&re, lines[0], 0, NULL, 0) != 0) QLT_FAIL("default line: '%s'", lines[0]);
    regfree(&re);
    char want[256];
    snprintf(want, sizeof want, "{30} WARNING|app.db|disk at 91%%|%ld", tid);
    if (strcmp(lines[1], want) != 0) QLT_FAIL("custom line '%s', want '%s'", lines[1], want);
    if (strstr(lines[2], " Level 25 [") == NULL || strstr(lines[2], "] root: custom level") == NULL)
        QLT_FAIL("level 25 line: '%s'", lines[2]);
    snprintf(want, sizeof want, "{25} Level 25|root|custom level|%ld", tid);
    if (strcmp(lines[3], want) != 0) QLT_FAIL("custom line '%s', want '%s'", lines[3], want);
    PASS("stream handler on a pipe: default pattern (ISO-8601 ms + offset, level, thread %ld, "
         "logger, message) and a custom one with every field, escapes, 'Level 25', 'root'",
         tid);
}

static void stream_on_file_star(void) {
    FILE *f = tmpfile();
    CHECK(f != NULL);
    ql_queue *q = new_queue(64);
    ql_handler_options o = ql_handler_options_default();
    o.pattern = "{message}";
    ql_handler h;
    CHECK_OK(ql_stream_handler_file(f, &o, &h));
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l));
    CHECK_OK(ql_start(l));
    for (int i = 0; i < 100; i++) CHECK_OK(ql_logf(q, 20, "t", "line %d", i));
    CHECK_OK(ql_stop(l)); /* flushes: fflush */
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    rewind(f);
    char line[64];
    int i = 0;
    while (fgets(line, sizeof line, f)) {
        char want[64];
        snprintf(want, sizeof want, "line %d\n", i);
        if (strcmp(line, want) != 0) QLT_FAIL("line %d is '%s'", i, line);
        i++;
    }
    CHECK_EQ_INT(i, 100);
    fclose(f);
    PASS("stream handler on a FILE *: 100 lines in order, flushed by ql_stop");
}

/* ------------------------------------------------------------ flush policies */

/* A handler placed after the file handler: at each record (and at each
 * batch end) it notes the file's size, so the test sees whether the line
 * was already out. */
typedef struct {
    const char *path;
    long long size_at_handle[8];
    int handled;
    long long size_at_batch_end;
    qlt_latch batch_ended;
} probe;

static int32_t probe_handle(void *ctx, void *record) {
    (void)record;
    probe *p = ctx;
    if (p->handled < 8) p->size_at_handle[p->handled] = file_size(p->path);
    p->handled++;
    return 0;
}

static void probe_batch_end(void *ctx) {
    probe *p = ctx;
    p->size_at_batch_end = file_size(p->path);
    qlt_latch_open(&p->batch_ended);
}

static void flush_policy(ql_flush_policy policy, const char *name) {
    char path[512];
    path_in_dir(path, sizeof path, name);
    ql_queue *q = new_queue(64);
    ql_handler_options o = ql_handler_options_default();
    o.pattern = "{message}";
    o.flush = policy;
    ql_handler handlers[2];
    CHECK_OK(ql_file_handler(path, &o, &handlers[0]));
    probe p;
    memset(&p, 0, sizeof p);
    p.path = path;
    qlt_latch_init(&p.batch_ended);
    handlers[1] = (ql_handler){&p, 0, probe_handle, NULL, NULL, probe_batch_end};
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, handlers, 2, NULL, false, &l));
    CHECK_OK(ql_log(q, 20, "t", "abc", 3)); /* "abc\n": 4 bytes */
    CHECK_OK(ql_start(l));
    qlt_latch_wait(&p.batch_ended); /* the batch of one record ended */
    CHECK_EQ_INT(p.handled, 1);
    const long long at_handle = p.size_at_handle[0], at_batch_end = p.size_at_batch_end;
    CHECK_OK(ql_listener_flush(l, 10000));
    const long long after_flush = file_size(path);
    CHECK_OK(ql_stop(l));
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_latch_destroy(&p.batch_ended);
    CHECK_EQ_INT(after_flush, 4);
    switch (policy) {
    case QL_FLUSH_EVERY_RECORD:
        CHECK_EQ_INT(at_handle, 4); /* out before the next handler ran */
        CHECK_EQ_INT(at_batch_end, 4);
        PASS("QL_FLUSH_EVERY_RECORD: the line is in the file before the next handler sees "
             "the record");
        break;
    case QL_FLUSH_BATCH:
        CHECK_EQ_INT(at_handle, 0); /* held back within the batch */
        CHECK_EQ_INT(at_batch_end, 4);
        PASS("QL_FLUSH_BATCH: not written while the batch runs, written at its end");
        break;
    default:
        CHECK_EQ_INT(at_handle, 0);
        CHECK_EQ_INT(at_batch_end, 0); /* not even at the batch end */
        PASS("QL_FLUSH_EXPLICIT: written neither per record nor at the batch end, only at "
             "the flush barrier");
        break;
    }
}

/* ------------------------------------------------------------ rotation */

static void rotation(void) {
    char path[512], name[600];
    path_in_dir(path, sizeof path, "rot.log");
    ql_queue *q = new_queue(256);
    ql_handler_options o = ql_handler_options_default();
    o.pattern = "{message}";
    o.max_bytes = 1000;
    o.backup_count = 2;
    ql_handler h;
    CHECK_OK(ql_file_handler(path, &o, &h));
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l));
    CHECK_OK(ql_start(l));
    for (int i = 0; i < 1000; i++) CHECK_OK(ql_logf(q, 20, "t", "record %04d", i)); /* 12 B */
    CHECK_OK(ql_stop(l));
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    /* The newest record is the last line of the current file. */
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    char line[64], last[64] = "";
    while (fgets(line, sizeof line, f)) strcpy(last, line);
    fclose(f);
    CHECK(strcmp(last, "record 0999\n") == 0);
    for (int i = 0; i <= 2; i++) {
        if (i == 0)
            snprintf(name, sizeof name, "%s", path);
        else
            snprintf(name, sizeof name, "%s.%d", path, i);
        long long size = file_size(name);
        if (size <= 0 || size > 1000 || size % 12 != 0)
            QLT_FAIL("%s has %lld bytes", name, size);
    }
    /* rot.log.2 holds the records just before rot.log.1, which holds those
     * just before rot.log. */
    snprintf(name, sizeof name, "%s.3", path);
    CHECK_EQ_INT(file_size(name), -1);
    PASS("rotation: max_bytes 1000, 2 backups: every file within the limit and of whole lines, "
         "no third backup, the newest record last in the current file");
}

/* ------------------------------------------------------------ whole lines */

enum { WL_PRODUCERS = 2, WL_RECORDS = 20000, WL_LISTENERS = 2 };

typedef struct {
    ql_queue *q;
    int id;
} wl_arg;

static void *wl_produce(void *p) {
    wl_arg *a = p;
    char pad[181];
    memset(pad, 'x', 180);
    pad[180] = 0;
    for (int i = 0; i < WL_RECORDS; i++)
        if (ql_logf(a->q, 20, "t", "P%d %d %s END", a->id, i, pad) != QL_OK) QLT_FAIL("logf");
    return NULL;
}

static void whole_lines_two_listeners(void) {
    char path[512];
    path_in_dir(path, sizeof path, "shared.log");
    ql_queue *q[WL_LISTENERS];
    ql_listener *l[WL_LISTENERS];
    for (int k = 0; k < WL_LISTENERS; k++) {
        q[k] = new_queue(1024);
        ql_handler_options o = ql_handler_options_default();
        o.pattern = "{message}";
        o.flush = QL_FLUSH_BATCH; /* large writes */
        ql_handler h;
        CHECK_OK(ql_file_handler(path, &o, &h));
        CHECK_OK(ql_listener_new_with_queue(q[k], &h, 1, NULL, false, &l[k]));
        CHECK_OK(ql_start(l[k]));
    }
    pthread_t t[WL_LISTENERS * WL_PRODUCERS];
    wl_arg args[WL_LISTENERS * WL_PRODUCERS];
    for (int k = 0; k < WL_LISTENERS * WL_PRODUCERS; k++) {
        args[k] = (wl_arg){q[k % WL_LISTENERS], k};
        QLT_PT(pthread_create(&t[k], NULL, wl_produce, &args[k]));
    }
    for (int k = 0; k < WL_LISTENERS * WL_PRODUCERS; k++) QLT_PT(pthread_join(t[k], NULL));
    for (int k = 0; k < WL_LISTENERS; k++) {
        CHECK_OK(ql_stop(l[k]));
        CHECK_OK(ql_listener_free(l[k]));
        ql_queue_free(q[k]);
    }
    const int producers = WL_LISTENERS * WL_PRODUCERS;
    int *next = calloc((size_t)producers, sizeof *next);
    CHECK(next != NULL);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    char line[512];
    long lines = 0;
    while (fgets(line, sizeof line, f)) {
        int p, i;
        size_t len = strlen(line);
        if (sscanf(line, "P%d %d ", &p, &i) != 2 || p < 0 || p >= producers || len < 5 ||
            strcmp(line + len - 5, " END\n") != 0 || strspn(strchr(strchr(line, ' ') + 1, ' ') + 1, "x") != 180)
            QLT_FAIL("broken line %ld: '%.60s...'", lines + 1, line);
        /* one producer's records reach one listener in order */
        if (i != next[p]) QLT_FAIL("producer %d: line %d where %d was due", p, i, next[p]);
        next[p]++;
        lines++;
    }
    fclose(f);
    for (int p = 0; p < producers; p++) CHECK_EQ_INT(next[p], WL_RECORDS);
    CHECK_EQ_INT(lines, (long)producers * WL_RECORDS);
    free(next);
    PASS("two listeners, two producers each, one file: %ld lines of ~200 bytes, every one whole, "
         "each exactly once, in per-producer order",
         lines);
}

/* ------------------------------------------------------------ null, failure */

static void null_handler(void) {
    ql_queue *q = new_queue(64);
    ql_handler h;
    CHECK_OK(ql_null_handler(40, &h));
    CHECK_EQ_INT(h.level, 40);
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l));
    CHECK_OK(ql_start(l));
    for (int i = 0; i < 50; i++) CHECK_OK(ql_log(q, 20, "t", "m", 1));
    CHECK_OK(ql_stop(l));
    ql_stats s;
    CHECK_OK(ql_listener_stats(l, &s));
    CHECK_EQ_INT(s.handled, 50);
    CHECK_EQ_INT(s.handler_errors, 0);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    PASS("null handler: 50 records handled, nothing written, no errors");
}

typedef struct {
    long errors;
    int last_code;
} error_log;

static void note_error(void *ctx, ql_stage stage, size_t index, void *record, int32_t code) {
    (void)stage;
    (void)index;
    (void)record;
    error_log *e = ctx;
    e->errors++;
    e->last_code = code;
}

static void failing_sink(void) {
    int fd = open("/dev/full", O_WRONLY);
    if (fd < 0) {
        printf("  skipped: failing sink: /dev/full cannot be opened (%s)\n", strerror(errno));
        return;
    }
    enum { RECORDS = 60000 }; /* ~5 MiB of lines: past the 4 MiB retry buffer */
    ql_queue *q = new_queue(1024);
    ql_handler_options o = ql_handler_options_default();
    o.pattern = "{message}";
    o.flush = QL_FLUSH_EVERY_RECORD;
    ql_handler h;
    CHECK_OK(ql_stream_handler_fd(fd, &o, &h));
    error_log e = {0, 0};
    ql_hooks hooks;
    memset(&hooks, 0, sizeof hooks);
    hooks.ctx = &e;
    hooks.on_error = note_error;
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, &h, 1, &hooks, false, &l));
    CHECK_OK(ql_start(l));
    char msg[80];
    memset(msg, 'm', sizeof msg);
    for (int i = 0; i < RECORDS; i++) CHECK_OK(ql_log(q, 20, "t", msg, sizeof msg));
    /* Nothing could be written: the stop says records were lost. */
    CHECK_EQ_STATUS(ql_stop(l), QL_ERR_LOST);
    ql_stats s;
    CHECK_OK(ql_listener_stats(l, &s));
    CHECK_EQ_INT(s.handled, RECORDS);
    ql_handler_stats hs;
    CHECK_OK(ql_listener_handler_stats(l, 0, &hs));
    CHECK(hs.has_counts);
    CHECK_EQ_INT(hs.received, RECORDS);
    /* Every record is accounted for: none written, every one lost. */
    CHECK_EQ_INT(hs.sink.written, 0);
    CHECK_EQ_INT(hs.sink.lost, RECORDS);
    CHECK_EQ_INT(hs.sink.pending, 0);
    /* The first record's failed write, then (records held meanwhile, not
     * written one by one) the retries at batch ends and the final flush:
     * each counted and told to on_error. */
    CHECK(hs.errors >= 2);
    CHECK_EQ_INT(s.handler_errors, hs.errors);
    CHECK_EQ_INT(e.errors, (long)hs.errors);
    CHECK_EQ_INT(e.last_code, ENOSPC);
    CHECK_EQ_INT(hs.sink.last_errno, ENOSPC);
    const uint64_t lost = ql_handler_lines_lost(&h);
    CHECK_EQ_INT(lost, RECORDS);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    close(fd);
    PASS("failing sink (/dev/full): ql_stop says QL_ERR_LOST; all %d records counted lost, "
         "none pending; %llu failed writes counted with ENOSPC and told to on_error",
         RECORDS, (unsigned long long)hs.errors);
}

static void bad_input(void) {
    ql_handler h;
    memset(&h, 0x5a, sizeof h);
    const ql_handler untouched = h;
    ql_handler_options o = ql_handler_options_default();
    CHECK_EQ_STATUS(ql_file_handler(NULL, &o, &h), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_file_handler("/tmp/x", &o, NULL), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_stream_handler_file(NULL, &o, &h), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_stream_handler_fd(2, &o, NULL), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_null_handler(0, NULL), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_file_handler("/nonexistent-dir/x.log", &o, &h), QL_ERR_INVALID);
    o.pattern = "{nope}";
    CHECK_EQ_STATUS(ql_stream_handler_fd(2, &o, &h), QL_ERR_INVALID);
    o.pattern = "{message";
    CHECK_EQ_STATUS(ql_stream_handler_fd(2, &o, &h), QL_ERR_INVALID);
    o = ql_handler_options_default();
    o.flush = 7;
    CHECK_EQ_STATUS(ql_stream_handler_fd(2, &o, &h), QL_ERR_INVALID);
    o = ql_handler_options_default();
    o.pattern = "{message}\n2026-01-01 CRITICAL forged";
    CHECK_EQ_STATUS(ql_stream_handler_fd(2, &o, &h), QL_ERR_INVALID);
    /* A closed fd: refused, or its number's next owner would get our lines. */
    o = ql_handler_options_default();
    int closed = dup(2);
    CHECK(closed >= 0);
    close(closed);
    errno = 0;
    CHECK_EQ_STATUS(ql_stream_handler_fd(closed, &o, &h), QL_ERR_INVALID);
    CHECK_EQ_INT(errno, EBADF);
    CHECK(memcmp(&h, &untouched, sizeof h) == 0); /* written only on success */
    /* A handler never given to a listener is freed with ql_handler_free. */
    o = ql_handler_options_default();
    CHECK_OK(ql_stream_handler_fd(-1, &o, &h)); /* stderr */
    ql_handler_free(&h);
    CHECK(h.handle == NULL && h.destroy == NULL && h.ctx == NULL);
    ql_handler_free(&h); /* twice: a no-op */
    ql_handler_free(NULL);
    CHECK_EQ_INT(ql_handler_lines_lost(NULL), 0);
    PASS("handler bad input: NULLs, a bad pattern (a newline in it too) or policy, a closed fd "
         "(EBADF), an unopenable path give clear "
         "statuses with the out-param untouched; ql_handler_free frees an unused handler");
}

int main(void) {
    qlt_begin("test_handlers");
    snprintf(dir, sizeof dir, "/tmp/ql-test-handlers-XXXXXX");
    if (!mkdtemp(dir)) QLT_FAIL("mkdtemp: %s", strerror(errno));
    patterns_on_a_pipe();
    stream_on_file_star();
    flush_policy(QL_FLUSH_EVERY_RECORD, "every.log");
    flush_policy(QL_FLUSH_BATCH, "batch.log");
    flush_policy(QL_FLUSH_EXPLICIT, "explicit.log");
    rotation();
    whole_lines_two_listeners();
    null_handler();
    failing_sink();
    bad_input();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return qlt_end();
}
