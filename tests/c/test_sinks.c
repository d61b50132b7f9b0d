/*
 * test_sinks: the output layer's promises, each shown against a failure
 * mode the built-in handlers used to get wrong.
 *
 * For every built-in handler: received == written + lost + pending (read
 * with ql_listener_handler_stats), pending == 0 once ql_stop or
 * ql_listener_flush returned; ql_stop / ql_listener_flush return
 * QL_ERR_LOST when lines were lost since the previous stop or flush; a
 * failure at a batch end or a flush is counted in handler_errors and told
 * to on_error (QL_STAGE_HANDLER, record NULL, code = errno).
 *
 *  1. /dev/full: every record counted lost, ENOSPC reported, flush and
 *     stop say QL_ERR_LOST once per loss.
 *  2. Rotation while the new file cannot be opened (EMFILE): nothing is
 *     deleted or shifted, nothing lost; rotation resumes by itself.
 *  3. A relative path, then chdir: rotation stays in the first directory.
 *  4. /dev/null and a symlink to it are never rotated.
 *  5. Log injection: control bytes escaped, one line per record; raw is
 *     explicit.
 *  6. A closed pipe: EPIPE counted, SIGPIPE never kills the process, and
 *     the program's signal state is left as it was.
 *  7. A FILE * under a SIGALRM storm (no SA_RESTART): every line once,
 *     whole, in order.
 *  8. Torn tails: a line cut by a dead writer is ended before ours (a
 *     prepared one, and a real SIGKILL: that tears a line only when the
 *     kernel cuts the write short, which some never do for 64 KiB writes;
 *     "after" must then still stand alone after whole lines).
 *  9. A non-blocking pipe: EAGAIN waited out for a slow reader; a reader
 *     that never reads must cost a bounded time (ql_stop within 10 s:
 *     once a write failed, records are held, not written one by one, so
 *     the timeout is waited once per batch, not once per record).
 * 10. RLIMIT_FSIZE: SIGXFSZ never kills; only whole lines in the file.
 * 11. Time rotation with an injected clock (seconds, midnight UTC).
 * 12. gzip-compressed backups.
 * 13. watch, and ql_reopen_files.
 * 14. rotate_on_open.
 * 15. Bad rotation options.
 *
 * Risky cases run in a fork()ed child whose exit status is checked; every
 * wait is bounded (poll on a pipe the child holds, then waitpid).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ql_test.h"

static char dir[256];

static void in_dir(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", dir, name);
}

static ql_queue *new_queue(size_t capacity) {
    ql_queue_options o = ql_queue_options_default();
    o.capacity = capacity;
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new_with_options(&o, &q));
    return q;
}

static ql_listener *new_listener(ql_queue *q, ql_handler *h, size_t n, const ql_hooks *hooks) {
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, h, n, hooks, false, &l));
    return l;
}

/* A built-in handler's account, checked: received == written + lost +
 * pending, and (settled: after ql_stop or ql_listener_flush) pending == 0. */
#define ACCOUNT(l, i, settled) account_at(__LINE__, (l), (i), (settled))
static ql_handler_stats account_at(int line, const ql_listener *l, size_t i, bool settled) {
    ql_handler_stats hs;
    memset(&hs, 0, sizeof hs);
    CHECK_OK(ql_listener_handler_stats(l, i, &hs));
    if (!hs.has_counts) QLT_FAIL("line %d: handler %zu keeps no account", line, i);
    if (hs.received != hs.sink.written + hs.sink.lost + hs.sink.pending)
        QLT_FAIL("line %d: handler %zu: received %llu != written %llu + lost %llu + pending %llu",
                 line, i, (unsigned long long)hs.received, (unsigned long long)hs.sink.written,
                 (unsigned long long)hs.sink.lost, (unsigned long long)hs.sink.pending);
    if (settled && hs.sink.pending != 0)
        QLT_FAIL("line %d: handler %zu: %llu records still pending after a stop or flush", line,
                 i, (unsigned long long)hs.sink.pending);
    return hs;
}

/* ------------------------------------------------------------ files */

static bool exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

/* The whole file, NUL-terminated (malloc'd); NULL when it cannot be read. */
static char *slurp(const char *path, size_t *len_out) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    CHECK(buf != NULL);
    for (;;) {
        if (cap - len < 65537) {
            cap = cap * 2 + 65537;
            buf = realloc(buf, cap);
            CHECK(buf != NULL);
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR) continue;
        CHECK(n >= 0);
        if (n == 0) break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = 0;
    if (len_out) *len_out = len;
    return buf;
}

static void spit(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK(fd >= 0);
    size_t n = strlen(text);
    CHECK(write(fd, text, n) == (ssize_t)n);
    CHECK(close(fd) == 0);
}

/* Fails unless the file holds exactly `want`. */
#define EXPECT_FILE(path, want) expect_file_at(__LINE__, (path), (want))
static void expect_file_at(int line, const char *path, const char *want) {
    size_t len = 0;
    char *got = slurp(path, &len);
    if (got == NULL) QLT_FAIL("line %d: %s cannot be read: %s", line, path, strerror(errno));
    if (len != strlen(want) || memcmp(got, want, len) != 0)
        QLT_FAIL("line %d: %s holds (%zu bytes)\n---\n%.2000s\n---\nwant (%zu bytes)\n---\n%.2000s\n---",
                 line, path, len, got, strlen(want), want);
    free(got);
}

static size_t count_byte(const char *s, size_t n, char c) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += s[i] == c;
    return k;
}

/* A growable string. */
typedef struct {
    char *s;
    size_t len, cap;
} text;

static void text_add(text *t, const char *s) {
    size_t n = strlen(s);
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->s = realloc(t->s, t->cap);
        CHECK(t->s != NULL);
    }
    memcpy(t->s + t->len, s, n + 1);
    t->len += n;
}

/* Message i of a numbered run: "<tag> NNNNNN " padded with '.' to
 * width - 1 bytes, so that with "{message}" the line is `width` bytes. */
static void numbered(char *out, size_t width, const char *tag, int i) {
    int n = snprintf(out, width, "%s %06d ", tag, i);
    CHECK(n > 0 && (size_t)n < width - 1);
    memset(out + n, '.', width - 1 - (size_t)n);
    out[width - 1] = 0;
}

/* Fails unless buf is exactly lines numbered(first .. first+count) each
 * ended by '\n', in order. */
static void expect_numbered(const char *what, const char *buf, size_t len, size_t width,
                            const char *tag, int first, int count) {
    char want[1024];
    CHECK(width < sizeof want);
    size_t at = 0;
    for (int i = first; i < first + count; i++) {
        numbered(want, width, tag, i);
        if (at + width > len)
            QLT_FAIL("%s: ends at byte %zu, before line %d (of %d..%d)", what, len, i, first,
                     first + count - 1);
        if (memcmp(buf + at, want, width - 1) != 0 || buf[at + width - 1] != '\n')
            QLT_FAIL("%s: at byte %zu line %d is '%.*s', want '%s'", what, at, i,
                     (int)(width - 1), buf + at, want);
        at += width;
    }
    if (at != len) QLT_FAIL("%s: %zu bytes past the last line", what, len - at);
}

/* ------------------------------------------------------------ children */

/* In a child: where child_say writes. */
static int result_fd = -1;

/* From a child: a line of figures for the parent's PASS line. */
static void child_say(const char *fmt, ...) QL_PRINTF_LIKE(1, 2);
static void child_say(const char *fmt, ...) {
    char b[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t len = (size_t)n < sizeof b ? (size_t)n : sizeof b - 1;
    for (size_t off = 0; off < len;) {
        ssize_t w = write(result_fd, b + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
}

typedef struct {
    int status;
    bool timed_out;
    long long ms;
    char said[2048];
} child_result;

/* Runs fn(arg) in a fork()ed child, which exits 0 when fn returns (a
 * failed CHECK exits 1). Waits for it at most timeout_ms: the child holds
 * the write end of a pipe, which closes when it ends; past the deadline it
 * is killed and `timed_out` set. The parent must have no threads running. */
static child_result run_child(void (*fn)(void *), void *arg, long long timeout_ms) {
    child_result r;
    memset(&r, 0, sizeof r);
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    fflush(NULL);
    long long t0 = qlt_now_ms();
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        result_fd = p[1];
        fn(arg);
        fflush(NULL);
        _exit(0);
    }
    close(p[1]);
    size_t said = 0;
    for (;;) {
        long long left = t0 + timeout_ms - qlt_now_ms();
        if (left <= 0) {
            r.timed_out = true;
            kill(pid, SIGKILL);
            break;
        }
        struct pollfd pfd = {p[0], POLLIN, 0};
        int n = poll(&pfd, 1, (int)left);
        if (n < 0 && errno == EINTR) continue;
        CHECK(n >= 0);
        if (n == 0) continue;
        char b[512];
        ssize_t got = read(p[0], b, sizeof b);
        if (got < 0 && errno == EINTR) continue;
        CHECK(got >= 0);
        if (got == 0) break; /* the child ended */
        size_t take = (size_t)got < sizeof r.said - 1 - said ? (size_t)got : sizeof r.said - 1 - said;
        memcpy(r.said + said, b, take);
        said += take;
    }
    close(p[0]);
    while (waitpid(pid, &r.status, 0) < 0) CHECK(errno == EINTR);
    r.ms = qlt_now_ms() - t0;
    return r;
}

/* Fails unless the child exited by itself with status 0. */
static void expect_clean_exit(const child_result *r, const char *what) {
    if (r->timed_out) QLT_FAIL("%s: the child did not end within its deadline (%lld ms)", what, r->ms);
    if (WIFSIGNALED(r->status))
        QLT_FAIL("%s: the child was killed by signal %d (%s)", what, WTERMSIG(r->status),
                 strsignal(WTERMSIG(r->status)));
    if (!WIFEXITED(r->status) || WEXITSTATUS(r->status) != 0)
        QLT_FAIL("%s: the child exited with status %d (its failure is printed above)", what,
                 WEXITSTATUS(r->status));
}

/* ------------------------------------------------------------ on_error */

typedef struct {
    int32_t want_code;
    atomic_long calls;
    atomic_long bad_stage;   /* not QL_STAGE_HANDLER of handler 0 */
    atomic_long with_record; /* record not NULL */
    atomic_long wrong_code;  /* code != want_code */
} errors_seen;

static void errors_init(errors_seen *e, int32_t want_code) {
    e->want_code = want_code;
    atomic_init(&e->calls, 0);
    atomic_init(&e->bad_stage, 0);
    atomic_init(&e->with_record, 0);
    atomic_init(&e->wrong_code, 0);
}

static void note_error(void *ctx, ql_stage stage, size_t index, void *record, int32_t code) {
    errors_seen *e = ctx;
    atomic_fetch_add(&e->calls, 1);
    if (stage != QL_STAGE_HANDLER || index != 0) atomic_fetch_add(&e->bad_stage, 1);
    if (record != NULL) atomic_fetch_add(&e->with_record, 1);
    if (code != e->want_code) atomic_fetch_add(&e->wrong_code, 1);
}

static ql_hooks error_hooks(errors_seen *e) {
    ql_hooks hooks;
    memset(&hooks, 0, sizeof hooks);
    hooks.ctx = e;
    hooks.on_error = note_error;
    return hooks;
}

/* Every on_error call was a failure of handler 0 with want_code: one per
 * failure at a batch end or flush (record NULL, deferred_errors) and one
 * per failure returned by handle (with its record); all counted in
 * handler_errors. */
static long expect_reported_errors(errors_seen *e, const ql_stats *s, const ql_handler_stats *hs) {
    long calls = atomic_load(&e->calls), with_record = atomic_load(&e->with_record);
    CHECK(hs->sink.deferred_errors >= 1);
    CHECK_EQ_INT(atomic_load(&e->bad_stage), 0);
    CHECK_EQ_INT(atomic_load(&e->wrong_code), 0);
    CHECK_EQ_INT(calls, s->handler_errors);
    CHECK_EQ_INT(hs->errors, s->handler_errors);
    CHECK_EQ_INT(calls - with_record, hs->sink.deferred_errors);
    CHECK_EQ_INT(with_record, hs->sink.write_errors - hs->sink.deferred_errors);
    return with_record;
}

/* ============================================================ 1. /dev/full */

static void full_device(void) {
    int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        printf("  skipped: /dev/full cannot be opened (%s)\n", strerror(errno));
        return;
    }
    enum { RECORDS = 1000 };
    /* A: default options (QL_FLUSH_BATCH), 1000 records, stop. */
    ql_queue *q = new_queue(8192);
    ql_handler h;
    CHECK_OK(ql_stream_handler_fd(fd, NULL, &h));
    errors_seen e;
    errors_init(&e, ENOSPC);
    ql_hooks hooks = error_hooks(&e);
    ql_listener *l = new_listener(q, &h, 1, &hooks);
    CHECK_OK(ql_start(l));
    for (int i = 0; i < RECORDS; i++) CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "disk", "record %d", i));
    CHECK_EQ_STATUS(ql_stop(l), QL_ERR_LOST);
    ql_stats s = qlt_stats(l);
    ql_handler_stats hs = ACCOUNT(l, 0, true);
    CHECK_EQ_INT(s.handled, RECORDS);
    CHECK_EQ_INT(hs.received, RECORDS);
    CHECK_EQ_INT(hs.sink.lost, RECORDS);
    CHECK_EQ_INT(hs.sink.written, 0);
    CHECK_EQ_INT(hs.sink.pending, 0);
    CHECK(s.handler_errors >= 1);
    CHECK_EQ_INT(hs.sink.last_errno, ENOSPC);
    /* 1000 short lines stay below the 1 MiB a handle call writes at: every
     * failure was at a batch end or the final flush, told with no record. */
    CHECK_EQ_INT(expect_reported_errors(&e, &s, &hs), 0);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    const unsigned long long errors_a = (unsigned long long)s.handler_errors;

    /* B: while it runs, a flush says QL_ERR_LOST for the records that
     * failed, and QL_OK when nothing new was lost. */
    q = new_queue(8192);
    CHECK_OK(ql_stream_handler_fd(fd, NULL, &h));
    errors_init(&e, ENOSPC);
    hooks = error_hooks(&e);
    l = new_listener(q, &h, 1, &hooks);
    CHECK_OK(ql_start(l));
    for (int i = 0; i < 10; i++) CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "disk", "flush-1 %d", i));
    CHECK_EQ_STATUS(ql_listener_flush(l, 10000), QL_ERR_LOST);
    hs = ACCOUNT(l, 0, true);
    CHECK_EQ_INT(hs.sink.lost, 10);
    CHECK_OK(ql_listener_flush(l, 10000)); /* nothing new lost */
    for (int i = 0; i < 5; i++) CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "disk", "flush-2 %d", i));
    CHECK_EQ_STATUS(ql_listener_flush(l, 10000), QL_ERR_LOST);
    hs = ACCOUNT(l, 0, true);
    CHECK_EQ_INT(hs.sink.lost, 15);
    CHECK_EQ_INT(hs.sink.written, 0);
    CHECK_OK(ql_stop(l)); /* the losses were reported by the flushes */
    s = qlt_stats(l);
    hs = ACCOUNT(l, 0, true);
    CHECK_EQ_INT(hs.sink.lost, 15);
    CHECK_EQ_INT(expect_reported_errors(&e, &s, &hs), 0);
    /* Past the last handler: a clear status, nothing written. */
    ql_handler_stats untouched;
    memset(&untouched, 0x5a, sizeof untouched);
    ql_handler_stats probe = untouched;
    CHECK_EQ_STATUS(ql_listener_handler_stats(l, 1, &probe), QL_ERR_INVALID);
    CHECK_EQ_STATUS(ql_listener_handler_stats(l, SIZE_MAX, &probe), QL_ERR_INVALID);
    CHECK(memcmp(&probe, &untouched, sizeof probe) == 0);
    CHECK_EQ_STATUS(ql_listener_handler_stats(l, 0, NULL), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_listener_handler_stats(NULL, 0, &probe), QL_ERR_NULL);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    close(fd);
    PASS("/dev/full: ql_stop QL_ERR_LOST, %d received = 0 written + %d lost + 0 pending, %llu "
         "deferred failures each told to on_error (QL_STAGE_HANDLER, NULL record, ENOSPC); "
         "running: flush QL_ERR_LOST (10 lost), flush QL_OK, flush QL_ERR_LOST (5 more), stop QL_OK",
         RECORDS, RECORDS, errors_a);
}

/* ============================================================ 2. EMFILE */

enum { EMFILE_WIDTH = 41 }; /* 4 lines (164 bytes) per 200-byte file */

static void emfile_child(void *arg) {
    (void)arg;
    char path[512], bak[3][520];
    in_dir(path, sizeof path, "emfile.log");
    for (int i = 0; i < 3; i++) snprintf(bak[i], sizeof bak[i], "%s.%d", path, i + 1);
    ql_queue *q = new_queue(256);
    ql_handler_options o = ql_handler_options_default();
    o.pattern = "{message}";
    o.flush = QL_FLUSH_EVERY_RECORD;
    o.max_bytes = 200;
    o.backup_count = 3;
    ql_handler h;
    CHECK_OK(ql_file_handler(path, &o, &h));
    ql_listener *l = new_listener(q, &h, 1, NULL);
    CHECK_OK(ql_start(l));
    char msg[EMFILE_WIDTH];
    for (int i = 0; i < 20; i++) {
        numbered(msg, sizeof msg, "before", i);
        CHECK_OK(ql_log(q, QL_LEVEL_INFO, "t", msg, strlen(msg)));
    }
    CHECK_OK(ql_listener_flush(l, 10000));
    ql_handler_stats hs = ACCOUNT(l, 0, true);
    CHECK_EQ_INT(hs.sink.rotations, 4);
    char *old[4];
    old[0] = slurp(path, NULL);
    for (int i = 0; i < 3; i++) old[i + 1] = slurp(bak[i], NULL);
    for (int i = 0; i < 4; i++) CHECK(old[i] != NULL && strlen(old[i]) == 4 * EMFILE_WIDTH);

    /* Every descriptor taken (a lower soft limit keeps this quick). */
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (rl.rlim_cur > 512) {
        struct rlimit lower = rl;
        lower.rlim_cur = 512;
        if (setrlimit(RLIMIT_NOFILE, &lower) == 0) rl = lower;
    }
    size_t cap = rl.rlim_cur == RLIM_INFINITY ? 1 << 20 : (size_t)rl.rlim_cur + 16;
    int *extra = malloc(cap * sizeof *extra);
    CHECK(extra != NULL);
    size_t taken = 0;
    for (;;) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            if (errno != EMFILE) QLT_FAIL("open(/dev/null): %s, want EMFILE", strerror(errno));
            break;
        }
        if (taken == cap) QLT_FAIL("no EMFILE after %zu descriptors", taken);
        extra[taken++] = fd;
    }
    /* Three batches, each past max_bytes, while no file can be opened. */
    for (int b = 0; b < 3; b++) {
        for (int i = 0; i < 6; i++) {
            numbered(msg, sizeof msg, "emfile", b * 6 + i);
            CHECK_OK(ql_log(q, QL_LEVEL_INFO, "t", msg, strlen(msg)));
        }
        CHECK_OK(ql_listener_flush(l, 10000)); /* nothing lost */
    }
    ql_handler_stats during = ACCOUNT(l, 0, true);
    for (size_t i = 0; i < taken; i++) close(extra[i]);
    free(extra);

    /* Nothing was deleted or shifted; every record is in the current file. */
    for (int i = 0; i < 3; i++) EXPECT_FILE(bak[i], old[i + 1]);
    text want = {0};
    text_add(&want, old[0]);
    for (int i = 0; i < 18; i++) {
        numbered(msg, sizeof msg, "emfile", i);
        text_add(&want, msg);
        text_add(&want, "\n");
    }
    EXPECT_FILE(path, want.s);
    CHECK_EQ_INT(during.sink.lost, 0);
    CHECK_EQ_INT(during.sink.written, 38);
    CHECK_EQ_INT(during.sink.rotations, 4);
    CHECK(during.sink.rotation_failures > 0);
    CHECK_EQ_INT(during.sink.last_errno, EMFILE);

    /* Descriptors back: the next write rotates by itself. */
    numbered(msg, sizeof msg, "after", 0);
    CHECK_OK(ql_log(q, QL_LEVEL_INFO, "t", msg, strlen(msg)));
    CHECK_OK(ql_listener_flush(l, 10000));
    hs = ACCOUNT(l, 0, true);
    CHECK_EQ_INT(hs.sink.rotations, 5);
    CHECK_EQ_INT(hs.sink.lost, 0);
    char line[EMFILE_WIDTH + 1];
    snprintf(line, sizeof line, "%s\n", msg);
    EXPECT_FILE(path, line);
    EXPECT_FILE(bak[0], want.s);
    EXPECT_FILE(bak[1], old[1]);
    EXPECT_FILE(bak[2], old[2]);
    CHECK_OK(ql_stop(l));
    hs = ACCOUNT(l, 0, true);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    child_say("%zu descriptors taken; %llu failed rotations kept 4 files intact, 18 records "
              "appended, 0 lost; rotations 4 -> %llu once descriptors returned",
              taken, (unsigned long long)during.sink.rotation_failures,
              (unsigned long long)hs.sink.rotations);
    free(want.s);
    for (int i = 0; i < 4; i++) free(old[i]);
}

static void rotation_under_emfile(void) {
    child_result r = run_child(emfile_child, NULL, 15000);
    expect_clean_exit(&r, "rotation under EMFILE");
    PASS("rotation while the new file cannot be opened (EMFILE, forked child): %s", r.said);
}

/* ============================================================ 3. chdir */

static void relative_path_then_chdir(void) {
    char a[512], b[512], cwd[4096], p[600];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    in_dir(a, sizeof a, "A");
    in_dir(b, sizeof b, "B");
    CHECK(mkdir(a, 0755) == 0 && mkdir(b, 0755) == 0);
    CHECK(chdir(a) == 0);
    ql_handler_options o = ql_handler_options_default();
    o.pattern = "{message}";
    o.flush = QL_FLUSH_EVERY_RECORD;
    o.max_bytes = 60; /* three 20-byte lines per file */
    o.backup_count = 2;
    ql_handler h;
    CHECK_OK(ql_file_handler("app.log", &o, &h));
    CHECK(chdir(b) == 0);
    spit("app.log", "B's own log\n");
    ql_queue *q = new_queue(64);
    ql_listener *l = new_listener(q, &h, 1, NULL);
    CHECK_OK(ql_start(l));
    char msg[20];
    for (int i = 0; i < 12; i++) {
        numbered(msg, sizeof msg, "rel", i);
        CHECK_OK(ql_log(q, QL_LEVEL_INFO, "t", msg, strlen(msg)));
    }
    CHECK_OK(ql_stop(l));
    ql_handler_stats hs = ACCOUNT(l, 0, true);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    CHECK(chdir(cwd) == 0);

    snprintf(p, sizeof p, "%s/app.log", b);
    EXPECT_FILE(p, "B's own log\n");
    snprintf(p, sizeof p, "%s/app.log.1", b);
    CHECK(!exists(p));
    snprintf(p, sizeof p, "%s/app.log.2", b);
    CHECK(!exists(p));
    const char *names[3] = {"app.log", "app.log.1", "app.log.2"};
    for (int k = 0; k < 3; k++) {
        snprintf(p, sizeof p, "%s/%s", a, names[k]);
        size_t len = 0;
        char *got = slurp(p, &len);
        if (got == NULL) QLT_FAIL("%s missing", p);
        expect_numbered(p, got, len, 20, "rel", 9 - 3 * k, 3);
        free(got);
    }
    CHECK_EQ_INT(hs.sink.rotations, 3);
    CHECK_EQ_INT(hs.sink.written, 12);
    CHECK_EQ_INT(hs.sink.lost, 0);
    PASS("relative path then chdir: 12 records, 3 rotations, all in A (app.log, .1, .2 exact); "
         "B/app.log untouched, no B/app.log.1");
}

/* ============================================================ 4. devices */

static void devices_never_rotate(void) {
    char link[512];
    in_dir(link, sizeof link, "null-link.log");
    CHECK(symlink("/dev/null", link) == 0);
    ql_handler_options o = ql_handler_options_default();
    o.pattern = "{message}";
    o.max_bytes = 100;
    o.backup_count = 2;
    ql_handler h[2];
    CHECK_OK(ql_file_handler("/dev/null", &o, &h[0]));
    CHECK_OK(ql_file_handler(link, &o, &h[1]));
    ql_queue *q = new_queue(256);
    ql_listener *l = new_listener(q, h, 2, NULL);
    CHECK_OK(ql_start(l));
    for (int i = 0; i < 100; i++)
        CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "t", "line %03d of a device that is never rotated", i));
    CHECK_OK(ql_stop(l));
    ql_handler_stats hs[2];
    for (size_t k = 0; k < 2; k++) {
        hs[k] = ACCOUNT(l, k, true);
        CHECK_EQ_INT(hs[k].sink.written, 100);
        CHECK_EQ_INT(hs[k].sink.lost, 0);
        CHECK_EQ_INT(hs[k].sink.rotations, 0);
    }
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    struct stat st;
    CHECK(stat("/dev/null", &st) == 0);
    CHECK(S_ISCHR(st.st_mode));
    CHECK(lstat(link, &st) == 0);
    CHECK(S_ISLNK(st.st_mode));
    char target[64] = "";
    ssize_t n = readlink(link, target, sizeof target - 1);
    CHECK(n > 0);
    target[n] = 0;
    CHECK(strcmp(target, "/dev/null") == 0);
    char p[600];
    CHECK(!exists("/dev/null.1") && !exists("/dev/null.2"));
    snprintf(p, sizeof p, "%s.1", link);
    CHECK(!exists(p));
    snprintf(p, sizeof p, "%s.2", link);
    CHECK(!exists(p));
    PASS("/dev/null and a symlink to it, max_bytes 100, 2 backups, 100 lines each: still a "
         "character device and a symlink to it, no .1/.2, rotations 0, written 100, lost 0 "
         "(rotation_failures %llu / %llu)",
         (unsigned long long)hs[0].sink.rotation_failures,
         (unsigned long long)hs[1].sink.rotation_failures);
}

/* ============================================================ 5. injection */

static const char FORGED[] = "2026-11-24T21:31:05.123+00:00 CRITICAL [1] auth: forged";

static bool some_line_starts_with(const char *buf, const char *prefix) {
    size_t n = strlen(prefix);
    for (const char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strncmp(line, prefix, n) == 0) return true;
    return false;
}

static void log_injection(void) {
    char esc_path[512], raw_path[512];
    in_dir(esc_path, sizeof esc_path, "escaped.log");
    in_dir(raw_path, sizeof raw_path, "raw.log");
    ql_handler_options o = ql_handler_options_default(); /* the default pattern */
    ql_handler h[2];
    CHECK_OK(ql_file_handler(esc_path, &o, &h[0]));
    o.raw = true;
    CHECK_OK(ql_file_handler(raw_path, &o, &h[1]));
    ql_queue *q = new_queue(64);
    ql_listener *l = new_listener(q, h, 2, NULL);
    CHECK_OK(ql_start(l));
    char user[128];
    snprintf(user, sizeof user, "bob\n%s", FORGED);
    CHECK_OK(ql_logf(q, QL_LEVEL_WARNING, "auth", "login failed for %s", user));
    CHECK_OK(ql_log(q, QL_LEVEL_WARNING, "svc\r\nX\x1b[2J", "hello", 5));
    CHECK_OK(ql_log(q, QL_LEVEL_INFO, "auth", "plain", 5));
    CHECK_OK(ql_stop(l));
    for (size_t k = 0; k < 2; k++) {
        ql_handler_stats hs = ACCOUNT(l, k, true);
        CHECK_EQ_INT(hs.sink.written, 3);
    }
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);

    size_t len = 0;
    char *esc = slurp(esc_path, &len);
    CHECK(esc != NULL);
    CHECK_EQ_INT(count_byte(esc, len, '\n'), 3);
    CHECK_EQ_INT(count_byte(esc, len, '\r'), 0);
    CHECK_EQ_INT(count_byte(esc, len, '\x1b'), 0);
    CHECK(!some_line_starts_with(esc, FORGED));
    char want[256];
    snprintf(want, sizeof want, " WARNING [%u] auth: login failed for bob\\n%s\n", qlt_gettid(), FORGED);
    if (strstr(esc, want) == NULL) QLT_FAIL("escaped.log lacks '%s':\n%s", want, esc);
    if (strstr(esc, "] svc\\r\\nX\\x1b[2J: hello\n") == NULL)
        QLT_FAIL("escaped.log lacks the escaped logger name:\n%s", esc);
    free(esc);

    char *raw = slurp(raw_path, &len);
    CHECK(raw != NULL);
    CHECK_EQ_INT(count_byte(raw, len, '\n'), 5); /* raw: the newlines go through */
    CHECK(some_line_starts_with(raw, FORGED));
    CHECK(strstr(raw, "] svc\r\nX\x1b[2J: hello\n") != NULL);
    free(raw);
    PASS("log injection: a message and a logger name carrying \\n, \\r and ESC give one line "
         "per record (3 lines), shown as \\n \\r \\x1b, no line starts with the forged "
         "record; with raw = true they go through as is (5 lines, the forged one included)");
}

/* ============================================================ 6. SIGPIPE */

static void sigpipe_child(void *arg) {
    const bool use_file = arg != NULL;
    /* The default disposition, unblocked: a stray SIGPIPE would kill us. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGPIPE, &sa, NULL) == 0);
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    QLT_PT(pthread_sigmask(SIG_UNBLOCK, &pipe_set, NULL));

    enum { RECORDS = 20000 };
    int fds[2];
    CHECK(pipe2(fds, O_CLOEXEC) == 0);
    close(fds[0]); /* no reader, ever */
    FILE *f = NULL;
    ql_handler h;
    if (use_file) {
        f = fdopen(fds[1], "w");
        CHECK(f != NULL);
        CHECK_OK(ql_stream_handler_file(f, NULL, &h));
    } else {
        CHECK_OK(ql_stream_handler_fd(fds[1], NULL, &h));
    }
    errors_seen e;
    errors_init(&e, EPIPE);
    ql_hooks hooks = error_hooks(&e);
    ql_queue *q = new_queue(8192);
    ql_listener *l = new_listener(q, &h, 1, &hooks);
    CHECK_OK(ql_start(l));
    for (int i = 0; i < RECORDS; i++) CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "pipe", "record %d", i));
    CHECK_EQ_STATUS(ql_stop(l), QL_ERR_LOST);
    ql_stats s = qlt_stats(l);
    ql_handler_stats hs = ACCOUNT(l, 0, true);
    CHECK_EQ_INT(hs.received, RECORDS);
    CHECK_EQ_INT(hs.sink.lost, RECORDS);
    CHECK_EQ_INT(hs.sink.written, 0);
    CHECK_EQ_INT(hs.sink.last_errno, EPIPE);
    long in_handle = expect_reported_errors(&e, &s, &hs);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    if (f) fclose(f);
    else close(fds[1]);

    /* The program's signal state is as it was. */
    struct sigaction now;
    CHECK(sigaction(SIGPIPE, NULL, &now) == 0);
    CHECK(now.sa_handler == SIG_DFL);
    sigset_t pending, mask;
    CHECK(sigpending(&pending) == 0);
    CHECK(sigismember(&pending, SIGPIPE) == 0);
    QLT_PT(pthread_sigmask(SIG_BLOCK, NULL, &mask));
    CHECK(sigismember(&mask, SIGPIPE) == 0);
    child_say("%s: %d lost, 0 written, EPIPE, %llu failures told to on_error (%llu at batch "
              "ends and flushes with no record, %ld returned by handle with theirs)",
              use_file ? "FILE *" : "fd", RECORDS, (unsigned long long)s.handler_errors,
              (unsigned long long)hs.sink.deferred_errors, in_handle);
}

static void closed_pipe(void) {
    child_result r1 = run_child(sigpipe_child, NULL, 15000);
    expect_clean_exit(&r1, "closed pipe (fd)");
    static int on = 1;
    child_result r2 = run_child(sigpipe_child, &on, 15000);
    expect_clean_exit(&r2, "closed pipe (FILE *)");
    PASS("closed pipe, SIGPIPE at SIG_DFL (forked children): both exit normally; ql_stop "
         "QL_ERR_LOST; %s; %s; SIGPIPE still SIG_DFL, not pending, not blocked",
         r1.said, r2.said);
}

/* ============================================================ readers */

typedef struct {
    int fd;
    size_t chunk;  /* bytes per read */
    long pause_us; /* between reads: pacing */
    char *buf;
    size_t len, cap;
    long reads;
} slow_reader;

static void *slow_read(void *p) {
    slow_reader *r = p;
    for (;;) {
        if (r->cap - r->len < r->chunk + 1) {
            r->cap = r->cap * 2 + r->chunk + 1;
            r->buf = realloc(r->buf, r->cap);
            CHECK(r->buf != NULL);
        }
        ssize_t n = read(r->fd, r->buf + r->len, r->chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) QLT_FAIL("reader: %s", strerror(errno));
        if (n == 0) break;
        r->len += (size_t)n;
        r->reads++;
        if (r->pause_us) qlt_sleep_us(r->pause_us);
    }
    r->buf[r->len] = 0;
    return NULL;
}

/* ============================================================ 7. EINTR storm */

enum { STORM_RECORDS = 20000, STORM_WIDTH = 100 };

static atomic_long alarms;

static void on_alarm(int sig) {
    (void)sig;
    atomic_fetch_add(&alarms, 1);
}

static void storm_child(void *arg) {
    (void)arg;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = 0; /* no SA_RESTART: blocking calls fail with EINTR */
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
    sigset_t alrm;
    sigemptyset(&alrm);
    sigaddset(&alrm, SIGALRM);
    QLT_PT(pthread_sigmask(SIG_UNBLOCK, &alrm, NULL));

    int fds[2];
    CHECK(pipe2(fds, O_CLOEXEC) == 0);
    FILE *w = fdopen(fds[1], "w");
    CHECK(w != NULL);
    ql_handler_options o = ql_handler_options_default();
    o.pattern = "{message}";
    ql_handler h;
    CHECK_OK(ql_stream_handler_file(w, &o, &h));
    ql_queue *q = new_queue(1024);
    ql_listener *l = new_listener(q, &h, 1, NULL);
    CHECK_OK(ql_start(l)); /* its thread takes SIGALRM */
    /* This thread and the reader block it, so every alarm hits the
     * listener thread. */
    QLT_PT(pthread_sigmask(SIG_BLOCK, &alrm, NULL));
    slow_reader rd = {fds[0], 4096, 50, NULL, 0, 0, 0};
    pthread_t reader;
    QLT_PT(pthread_create(&reader, NULL, slow_read, &rd));
    struct itimerval it = {{0, 100}, {0, 100}};
    CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
    char msg[STORM_WIDTH];
    for (int i = 0; i < STORM_RECORDS; i++) {
        numbered(msg, sizeof msg, "storm", i);
        CHECK_OK(ql_log(q, QL_LEVEL_INFO, "t", msg, strlen(msg)));
    }
    ql_status stopped = ql_stop(l);
    struct itimerval off;
    memset(&off, 0, sizeof off);
    CHECK(setitimer(ITIMER_REAL, &off, NULL) == 0);
    CHECK_OK(stopped);
    ql_handler_stats hs = ACCOUNT(l, 0, true);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    CHECK(fclose(w) == 0); /* the reader sees EOF */
    QLT_PT(pthread_join(reader, NULL));
    expect_numbered("storm pipe", rd.buf, rd.len, STORM_WIDTH, "storm", 0, STORM_RECORDS);
    CHECK_EQ_INT(hs.sink.written, STORM_RECORDS);
    CHECK_EQ_INT(hs.sink.lost, 0);
    CHECK_EQ_INT(hs.sink.write_errors, 0);
    child_say("%ld SIGALRMs, %zu bytes in %ld reads, written %llu, lost 0", atomic_load(&alarms),
              rd.len, rd.reads, (unsigned long long)hs.sink.written);
    free(rd.buf);
}

static void signal_storm(void) {
    child_result r = run_child(storm_child, NULL, 20000);
    expect_clean_exit(&r, "FILE * under SIGALRM");
    PASS("FILE * on a slow pipe under a SIGALRM storm every 100 us, no SA_RESTART (forked "
         "child): every one of %d records once, whole, in order: %s",
         STORM_RECORDS, r.said);
}

/* ============================================================ 8. torn tails */

static void torn_tail_prepared(void) {
    char path[512];
    in_dir(path, sizeof path, "torn.log");
    spit(path, "complete line\npartial-with-no-newline");
    ql_handler_options o = ql_handler_options_default();
    o.pattern = "{message}";
    ql_handler h;
    CHECK_OK(ql_file_handler(path, &o, &h));
    ql_queue *q = new_queue(64);
    ql_listener *l = new_listener(q, &h, 1, NULL);
    CHECK_OK(ql_start(l));
    CHECK_OK(qlt_log_str(q, "rec1"));
    CHECK_OK(qlt_log_str(q, "rec2"));
    CHECK_OK(ql_stop(l));
    ql_handler_stats hs = ACCOUNT(l, 0, true);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    EXPECT_FILE(path, "complete line\npartial-with-no-newline\nrec1\nrec2\n");
    CHECK_EQ_INT(hs.sink.torn_tails, 1);
    CHECK_EQ_INT(hs.sink.written, 2);
    PASS("torn tail: 'partial-with-no-newline' is ended before rec1; torn_tails 1");
}

enum { BIG = 64 * 1024 };

static void big_writer(const char *path) {
    ql_handler_options o = ql_handler_options_default();
    o.pattern = "{message}";
    o.flush = QL_FLUSH_EVERY_RECORD;
    ql_handler h;
    CHECK_OK(ql_file_handler(path, &o, &h));
    ql_queue *q = new_queue(16);
    ql_listener *l = new_listener(q, &h, 1, NULL);
    CHECK_OK(ql_start(l));
    char *msg = malloc(BIG);
    CHECK(msg != NULL);
    memset(msg, 'y', BIG - 1);
    for (int i = 0; i < 200; i++) {
        int n = snprintf(msg, 32, "big %04d ", i);
        msg[n] = 'y';
        CHECK_OK(ql_log(q, QL_LEVEL_INFO, "t", msg, BIG - 1));
    }
    CHECK_OK(ql_stop(l));
    for (;;) pause(); /* until the parent's SIGKILL */
}

/* One attempt: a child writing 64 KiB lines is SIGKILLed once the file
 * holds `kill_at` bytes; then a handler on the same file logs "after".
 * Returns true when the child left a torn line. */
static bool kill_writer_then_log(const char *path, long long kill_at, size_t *whole_out) {
    unlink(path);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        big_writer(path);
        _exit(1);
    }
    /* Kill it once the file holds kill_at bytes, preferably while a line
     * is being written (the size between two 64 KiB lines): a poll of its
     * size, paced until there is data, bounded. */
    long long until = qlt_now_ms() + 10000, soon = 0;
    struct stat st;
    for (;;) {
        long long now = qlt_now_ms();
        if (now > until) {
            kill(pid, SIGKILL);
            QLT_FAIL("the writer put nothing in %s", path);
        }
        if (stat(path, &st) != 0 || st.st_size < kill_at) {
            qlt_sleep_us(20);
            continue;
        }
        if (soon == 0) soon = now + 20;
        if (st.st_size % BIG != 0 || st.st_size >= 200LL * BIG || now > soon) break;
    }
    CHECK(kill(pid, SIGKILL) == 0);
    int status;
    while (waitpid(pid, &status, 0) < 0) CHECK(errno == EINTR);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    size_t before = 0;
    char *data = slurp(path, &before);
    CHECK(data != NULL && before > 0);
    const bool torn = data[before - 1] != '\n';
    free(data);

    ql_handler_options o = ql_handler_options_default();
    o.pattern = "{message}";
    ql_handler h;
    CHECK_OK(ql_file_handler(path, &o, &h));
    ql_queue *q = new_queue(16);
    ql_listener *l = new_listener(q, &h, 1, NULL);
    CHECK_OK(ql_start(l));
    CHECK_OK(qlt_log_str(q, "after"));
    CHECK_OK(ql_stop(l));
    ql_handler_stats hs = ACCOUNT(l, 0, true);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    CHECK_EQ_INT(hs.sink.torn_tails, torn ? 1 : 0);
    CHECK_EQ_INT(hs.sink.written, 1);

    size_t len = 0;
    data = slurp(path, &len);
    CHECK(data != NULL);
    CHECK_EQ_INT(len, before + 6 + (torn ? 1 : 0));
    CHECK(memcmp(data + len - 7, "\nafter\n", 7) == 0);
    /* Every line before: a whole 64 KiB record, except the last one when
     * the writer died inside it. */
    size_t at = 0, whole = 0;
    while (at < len - 6) {
        char *nl = memchr(data + at, '\n', len - at);
        CHECK(nl != NULL);
        size_t line = (size_t)(nl - (data + at));
        bool last = (size_t)(nl - data) + 1 == len - 6;
        if (line == BIG - 1 && strncmp(data + at, "big ", 4) == 0) whole++;
        else if (!(last && torn && strncmp(data + at, "big ", 4) == 0))
            QLT_FAIL("killed.log: line at byte %zu is %zu bytes: '%.20s...'", at, line, data + at);
        at += line + 1;
    }
    free(data);
    *whole_out = whole;
    return torn;
}

static void torn_tail_sigkill(void) {
    char path[512];
    in_dir(path, sizeof path, "killed.log");
    /* A kill lands inside a write only now and then: a few attempts, at
     * different sizes, until one leaves a torn line. */
    int attempts = 0, torn = 0;
    size_t whole = 0;
    while (attempts < 8 && torn == 0) {
        long long kill_at = (long long)BIG * (1 + attempts % 4) + 1;
        torn += kill_writer_then_log(path, kill_at, &whole);
        attempts++;
    }
    unlink(path);
    PASS("SIGKILLed writer of 64 KiB lines, %d attempt(s), %d torn inside a line: each time "
         "'after' is the last line, alone, after whole lines only (%zu in the last attempt); "
         "torn_tails 1 exactly when the file was torn",
         attempts, torn, whole);
}

/* ============================================================ 9. EAGAIN */

enum { NB_RECORDS = 20000, NB_WIDTH = 100 };

static void nonblocking_slow_reader(void) {
    int fds[2];
    CHECK(pipe2(fds, O_CLOEXEC) == 0);
    int fl = fcntl(fds[1], F_GETFL);
    CHECK(fl >= 0 && fcntl(fds[1], F_SETFL, fl | O_NONBLOCK) == 0);
    ql_handler_options o = ql_handler_options_default();
    o.pattern = "{message}";
    ql_handler h;
    CHECK_OK(ql_stream_handler_fd(fds[1], &o, &h));
    ql_queue *q = new_queue(1024);
    ql_listener *l = new_listener(q, &h, 1, NULL);
    CHECK_OK(ql_start(l));
    slow_reader rd = {fds[0], 4096, 50, NULL, 0, 0, 0};
    pthread_t reader;
    QLT_PT(pthread_create(&reader, NULL, slow_read, &rd));
    char msg[NB_WIDTH];
    for (int i = 0; i < NB_RECORDS; i++) {
        numbered(msg, sizeof msg, "nb", i);
        CHECK_OK(ql_log(q, QL_LEVEL_INFO, "t", msg, strlen(msg)));
    }
    CHECK_OK(ql_stop(l));
    ql_handler_stats hs = ACCOUNT(l, 0, true);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    close(fds[1]);
    QLT_PT(pthread_join(reader, NULL));
    close(fds[0]);
    expect_numbered("non-blocking pipe", rd.buf, rd.len, NB_WIDTH, "nb", 0, NB_RECORDS);
    CHECK_EQ_INT(hs.sink.written, NB_RECORDS);
    CHECK_EQ_INT(hs.sink.lost, 0);
    free(rd.buf);
    PASS("O_NONBLOCK pipe, slow reader (4 KiB per read, 50 us pauses): all %d records in "
         "order, lost 0, %ld reads",
         NB_RECORDS, rd.reads);
}

/* How long a stop takes when the reader never reads. */
static long long stalled_stop_bound_ms = 10000;

static void stalled_child(void *arg) {
    (void)arg;
    int fds[2];
    CHECK(pipe2(fds, O_CLOEXEC) == 0); /* fds[0] stays open, never read */
    int fl = fcntl(fds[1], F_GETFL);
    CHECK(fl >= 0 && fcntl(fds[1], F_SETFL, fl | O_NONBLOCK) == 0);
    ql_handler_options o = ql_handler_options_default();
    o.pattern = "{message}";
    o.write_timeout_ms = 200;
    ql_handler h;
    CHECK_OK(ql_stream_handler_fd(fds[1], &o, &h));
    ql_queue *q = new_queue(0); /* unbounded: the producer never waits */
    ql_listener *l = new_listener(q, &h, 1, NULL);
    CHECK_OK(ql_start(l));
    char msg[NB_WIDTH];
    for (int i = 0; i < NB_RECORDS; i++) {
        numbered(msg, sizeof msg, "stall", i);
        CHECK_OK(ql_log(q, QL_LEVEL_INFO, "t", msg, strlen(msg)));
    }
    long long t0 = qlt_now_ms();
    ql_status st = ql_stop_timeout(l, (uint64_t)stalled_stop_bound_ms);
    long long ms = qlt_now_ms() - t0;
    if (st == QL_ERR_TIMEOUT) {
        ql_stats s = qlt_stats(l);
        ql_handler_stats hs = ACCOUNT(l, 0, false);
        child_say("ql_stop had not returned after %lld ms: %llu of %d records handled, written "
                  "%llu, lost %llu, pending %llu, %llu failed writes (each waits "
                  "write_timeout_ms)",
                  ms, (unsigned long long)s.handled, NB_RECORDS,
                  (unsigned long long)hs.sink.written, (unsigned long long)hs.sink.lost,
                  (unsigned long long)hs.sink.pending, (unsigned long long)hs.sink.write_errors);
        fflush(NULL);
        _exit(3); /* the listener thread goes with the process */
    }
    CHECK_EQ_STATUS(st, QL_ERR_LOST);
    ql_handler_stats hs = ACCOUNT(l, 0, true);
    CHECK_EQ_INT(hs.received, NB_RECORDS);
    CHECK(hs.sink.lost > 0);
    CHECK_EQ_INT(hs.sink.last_errno, EAGAIN);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    close(fds[1]);
    close(fds[0]);
    child_say("ql_stop QL_ERR_LOST after %lld ms: written %llu + lost %llu = %d, %llu failed "
              "writes",
              ms, (unsigned long long)hs.sink.written, (unsigned long long)hs.sink.lost,
              NB_RECORDS, (unsigned long long)hs.sink.write_errors);
}

static void stalled_reader(void) {
    child_result r = run_child(stalled_child, NULL, stalled_stop_bound_ms + 15000);
    expect_clean_exit(&r, "reader that never reads");
    PASS("reader that never reads, write_timeout_ms 200 (forked child): %s", r.said);
}

/* ============================================================ 10. RLIMIT_FSIZE */

enum { FSIZE_LIMIT = 10050, FSIZE_WIDTH = 100, FSIZE_RECORDS = 1000 };

static void fsize_child(void *arg) {
    (void)arg;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGXFSZ, &sa, NULL) == 0);
    sigset_t xfsz;
    sigemptyset(&xfsz);
    sigaddset(&xfsz, SIGXFSZ);
    QLT_PT(pthread_sigmask(SIG_UNBLOCK, &xfsz, NULL));
    char path[512];
    in_dir(path, sizeof path, "fsize.log");
    ql_handler_options o = ql_handler_options_default();
    o.pattern = "{message}";
    ql_handler h;
    CHECK_OK(ql_file_handler(path, &o, &h));
    ql_queue *q = new_queue(2048);
    ql_listener *l = new_listener(q, &h, 1, NULL);
    struct rlimit old, lim;
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    lim = old;
    lim.rlim_cur = FSIZE_LIMIT; /* not a multiple of a line: a write goes out in part */
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    CHECK_OK(ql_start(l));
    char msg[FSIZE_WIDTH];
    for (int i = 0; i < FSIZE_RECORDS; i++) {
        numbered(msg, sizeof msg, "fsize", i);
        CHECK_OK(ql_log(q, QL_LEVEL_INFO, "t", msg, strlen(msg)));
    }
    ql_status st = ql_stop(l);
    /* The limit back before anything else writes (stderr may be a file). */
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    CHECK_EQ_STATUS(st, QL_ERR_LOST);
    ql_handler_stats hs = ACCOUNT(l, 0, true);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    size_t len = 0;
    char *data = slurp(path, &len);
    CHECK(data != NULL);
    CHECK(len > 0 && len <= FSIZE_LIMIT && data[len - 1] == '\n');
    size_t lines = count_byte(data, len, '\n');
    expect_numbered("fsize.log", data, len, FSIZE_WIDTH, "fsize", 0, (int)lines);
    CHECK_EQ_INT(hs.sink.written, lines);
    CHECK_EQ_INT(hs.sink.written + hs.sink.lost, FSIZE_RECORDS);
    CHECK_EQ_INT(hs.sink.last_errno, EFBIG);
    free(data);
    child_say("file %zu bytes (limit %d) = %zu whole lines = written; lost %llu; EFBIG", len,
              FSIZE_LIMIT, lines, (unsigned long long)hs.sink.lost);
}

static void file_size_limit(void) {
    child_result r = run_child(fsize_child, NULL, 15000);
    expect_clean_exit(&r, "RLIMIT_FSIZE");
    PASS("RLIMIT_FSIZE %d, SIGXFSZ at SIG_DFL (forked child): exits normally, ql_stop "
         "QL_ERR_LOST; %s",
         FSIZE_LIMIT, r.said);
}

/* ============================================================ 11. time */

static int64_t utc_ns(int y, int mo, int d, int h, int mi, int s) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    return (int64_t)timegm(&tm) * 1000000000LL;
}

static int64_t test_clock(void *ctx) {
    return atomic_load((_Atomic int64_t *)ctx);
}

static void time_rotation(const char *name, ql_rotate_when when, uint32_t interval, int64_t t0,
                          int64_t t1, const char *label) {
    char path[512], bak[520];
    in_dir(path, sizeof path, name);
    snprintf(bak, sizeof bak, "%s.1", path);
    static _Atomic int64_t now;
    atomic_store(&now, t0); /* before the handler is made: the first rollover counts from it */
    ql_handler_options o = ql_handler_options_default();
    o.pattern = "{message}";
    o.rotate_when = when;
    o.rotate_interval = interval;
    o.backup_count = 5;
    o.rotate_utc = true;
    o.clock = test_clock;
    o.clock_ctx = (void *)&now;
    ql_handler h;
    CHECK_OK(ql_file_handler(path, &o, &h));
    ql_queue *q = new_queue(64);
    ql_listener *l = new_listener(q, &h, 1, NULL);
    CHECK_OK(ql_start(l));
    CHECK_OK(qlt_log_str(q, "first"));
    CHECK_OK(ql_listener_flush(l, 10000));
    ql_handler_stats hs = ACCOUNT(l, 0, true);
    CHECK_EQ_INT(hs.sink.rotations, 0);
    CHECK(!exists(bak));
    atomic_store(&now, t1);
    CHECK_OK(qlt_log_str(q, "second"));
    CHECK_OK(ql_listener_flush(l, 10000));
    hs = ACCOUNT(l, 0, true);
    CHECK_OK(ql_stop(l));
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    EXPECT_FILE(bak, "first\n");
    EXPECT_FILE(path, "second\n");
    CHECK_EQ_INT(hs.sink.rotations, 1);
    PASS("time rotation, injected clock, %s: app.log.1 'first', app.log 'second', rotations 1",
         label);
}

/* ============================================================ 12. gzip */

static char *run_gunzip(const char *path) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "gzip -dc '%s'", path);
    fflush(NULL);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    text out = {0};
    text_add(&out, "");
    char buf[256];
    while (fgets(buf, sizeof buf, p)) text_add(&out, buf);
    int rc = pclose(p);
    if (rc != 0) QLT_FAIL("%s: exit status %d", cmd, rc);
    return out.s;
}

static void compressed_backups(void) {
    char path[512], p[600];
    in_dir(path, sizeof path, "gz.log");
    ql_handler_options o = ql_handler_options_default();
    o.pattern = "{message}";
    o.flush = QL_FLUSH_EVERY_RECORD;
    o.max_bytes = 100; /* five 20-byte lines per file */
    o.backup_count = 3;
    o.compress = true;
    ql_handler h;
    CHECK_OK(ql_file_handler(path, &o, &h));
    ql_queue *q = new_queue(64);
    ql_listener *l = new_listener(q, &h, 1, NULL);
    CHECK_OK(ql_start(l));
    char msg[20];
    for (int i = 0; i < 23; i++) {
        numbered(msg, sizeof msg, "gz", i);
        CHECK_OK(ql_log(q, QL_LEVEL_INFO, "t", msg, strlen(msg)));
    }
    CHECK_OK(ql_stop(l));
    ql_handler_stats hs = ACCOUNT(l, 0, true);
    CHECK_OK(ql_listener_free(l)); /* joins the compressor */
    ql_queue_free(q);
    CHECK_EQ_INT(hs.sink.rotations, 4);
    CHECK_EQ_INT(hs.sink.compress_failures, 0);
    CHECK_EQ_INT(hs.sink.lost, 0);
    size_t len = 0;
    char *cur = slurp(path, &len);
    CHECK(cur != NULL);
    expect_numbered(path, cur, len, 20, "gz", 20, 3);
    free(cur);
    for (int k = 1; k <= 3; k++) {
        snprintf(p, sizeof p, "%s.%d", path, k);
        if (exists(p)) QLT_FAIL("%s left uncompressed", p);
        snprintf(p, sizeof p, "%s.%d.gz", path, k);
        if (!exists(p)) QLT_FAIL("%s missing", p);
        char *plain = run_gunzip(p);
        expect_numbered(p, plain, strlen(plain), 20, "gz", 20 - 5 * k, 5);
        free(plain);
        snprintf(p, sizeof p, "%s.%d.gz.tmp", path, k);
        CHECK(!exists(p));
    }
    snprintf(p, sizeof p, "%s.4.gz", path);
    CHECK(!exists(p));
    PASS("compress: 23 lines, 4 rotations: gz.log.1.gz .2.gz .3.gz give exactly their 5 lines "
         "through gzip -dc, no uncompressed backup, no .4.gz, compress_failures 0");
}

/* ============================================================ 13. reopen */

static void watched_and_reopened(void) {
    char path[512], moved[600];
    in_dir(path, sizeof path, "watched.log");
    snprintf(moved, sizeof moved, "%s.moved", path);
    ql_handler_options o = ql_handler_options_default();
    o.pattern = "{message}";
    o.watch = true;
    ql_handler h;
    CHECK_OK(ql_file_handler(path, &o, &h));
    ql_queue *q = new_queue(64);
    ql_listener *l = new_listener(q, &h, 1, NULL);
    CHECK_OK(ql_start(l));
    CHECK_OK(qlt_log_str(q, "old 1"));
    CHECK_OK(qlt_log_str(q, "old 2"));
    CHECK_OK(ql_listener_flush(l, 10000));
    CHECK(rename(path, moved) == 0); /* as logrotate does */
    CHECK_OK(qlt_log_str(q, "new 1"));
    CHECK_OK(qlt_log_str(q, "new 2"));
    CHECK_OK(ql_stop(l));
    ql_handler_stats hs = ACCOUNT(l, 0, true);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    EXPECT_FILE(moved, "old 1\nold 2\n");
    EXPECT_FILE(path, "new 1\nnew 2\n");
    CHECK(hs.sink.reopens >= 1);
    const unsigned long long watched_reopens = (unsigned long long)hs.sink.reopens;

    /* Not watched: ql_reopen_files asks for it. */
    in_dir(path, sizeof path, "asked.log");
    snprintf(moved, sizeof moved, "%s.moved", path);
    o.watch = false;
    CHECK_OK(ql_file_handler(path, &o, &h));
    q = new_queue(64);
    l = new_listener(q, &h, 1, NULL);
    CHECK_OK(ql_start(l));
    CHECK_OK(qlt_log_str(q, "one"));
    CHECK_OK(ql_listener_flush(l, 10000));
    CHECK(rename(path, moved) == 0);
    CHECK_OK(qlt_log_str(q, "still old"));
    CHECK_OK(ql_listener_flush(l, 10000));
    CHECK(!exists(path));
    ql_reopen_files();
    CHECK_OK(qlt_log_str(q, "two"));
    CHECK_OK(ql_stop(l));
    hs = ACCOUNT(l, 0, true);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    EXPECT_FILE(moved, "one\nstill old\n");
    EXPECT_FILE(path, "two\n");
    CHECK_EQ_INT(hs.sink.reopens, 1);
    PASS("watch: after a rename the new records go to a new file, the moved one keeps the old "
         "(reopens %llu); unwatched: ql_reopen_files() makes the next write open a new file "
         "(reopens 1)",
         watched_reopens);
}

/* ============================================================ 14. rotate on open */

static void rotate_on_open(void) {
    char path[512], bak[520], bak2[520];
    in_dir(path, sizeof path, "onopen.log");
    snprintf(bak, sizeof bak, "%s.1", path);
    snprintf(bak2, sizeof bak2, "%s.2", path);
    spit(path, "the previous run\n");
    ql_handler_options o = ql_handler_options_default();
    o.pattern = "{message}";
    o.backup_count = 2;
    o.rotate_on_open = true;
    ql_handler h;
    CHECK_OK(ql_file_handler(path, &o, &h));
    EXPECT_FILE(bak, "the previous run\n");
    EXPECT_FILE(path, "");
    CHECK(!exists(bak2));
    ql_queue *q = new_queue(64);
    ql_listener *l = new_listener(q, &h, 1, NULL);
    CHECK_OK(ql_start(l));
    CHECK_OK(qlt_log_str(q, "this run"));
    CHECK_OK(ql_stop(l));
    ql_handler_stats hs = ACCOUNT(l, 0, true);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    EXPECT_FILE(path, "this run\n");
    EXPECT_FILE(bak, "the previous run\n");
    CHECK_EQ_INT(hs.sink.rotations, 1);
    PASS("rotate_on_open: the old content is in .1 as soon as the handler is made, the new "
         "file starts empty");
}

/* ============================================================ 15. bad options */

static void bad_rotation_options(void) {
    char path[512];
    in_dir(path, sizeof path, "bad.log");
    ql_handler h;
    memset(&h, 0x5a, sizeof h);
    const ql_handler untouched = h;
    ql_handler_options o = ql_handler_options_default();
    o.backup_count = QL_BACKUP_COUNT_MAX + 1;
    o.max_bytes = 100;
    CHECK_EQ_STATUS(ql_file_handler(path, &o, &h), QL_ERR_INVALID);
    o = ql_handler_options_default();
    o.rotate_when = 99;
    CHECK_EQ_STATUS(ql_file_handler(path, &o, &h), QL_ERR_INVALID);
    CHECK(memcmp(&h, &untouched, sizeof h) == 0);
    o = ql_handler_options_default();
    o.backup_count = QL_BACKUP_COUNT_MAX;
    CHECK_OK(ql_file_handler(path, &o, &h));
    ql_handler_free(&h);
    PASS("backup_count QL_BACKUP_COUNT_MAX + 1 and rotate_when 99: QL_ERR_INVALID, handler "
         "untouched; QL_BACKUP_COUNT_MAX itself accepted");
}

/* ============================================================ 16. rotators */

enum { MR_PROCS = 3, MR_LINES = 3000 };

/* Several processes, each with its own rotating handler on one file
 * (4 KiB files, 1000 backups: nothing is pruned): they take turns through
 * the rotation lock and follow each other's rotations, so every line of
 * every process is in one of the files, once, whole. */
static void several_rotators(void) {
    char sub[400], path[512];
    in_dir(sub, sizeof sub, "rotators");
    CHECK(mkdir(sub, 0700) == 0);
    snprintf(path, sizeof path, "%s/app.log", sub);
    fflush(NULL);
    pid_t pids[MR_PROCS];
    for (int p = 0; p < MR_PROCS; p++) {
        pids[p] = fork();
        CHECK(pids[p] >= 0);
        if (pids[p] == 0) {
            ql_queue *q = NULL;
            ql_handler_options o = ql_handler_options_default();
            o.pattern = "{message}";
            o.flush = QL_FLUSH_EVERY_RECORD;
            o.max_bytes = 4096;
            o.backup_count = 1000;
            ql_handler h;
            ql_listener *l = NULL;
            if (ql_queue_new(256, &q) != QL_OK || ql_file_handler(path, &o, &h) != QL_OK ||
                ql_listener_new_with_queue(q, &h, 1, NULL, false, &l) != QL_OK || ql_start(l) != QL_OK)
                _exit(2);
            for (int i = 0; i < MR_LINES; i++)
                if (ql_logf(q, 20, "t", "P%d-L%05d-xxxxxxxxxxxxxxxxxxxx", p, i) != QL_OK) _exit(3);
            if (ql_stop(l) != QL_OK) _exit(4);
            ql_handler_stats hs;
            if (ql_listener_handler_stats(l, 0, &hs) != QL_OK || hs.sink.written != MR_LINES) _exit(5);
            ql_listener_free(l);
            ql_queue_free(q);
            _exit(0);
        }
    }
    for (int p = 0; p < MR_PROCS; p++) {
        int status = 0;
        CHECK(waitpid(pids[p], &status, 0) == pids[p]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            QLT_FAIL("rotator %d ended with status %d", p, status);
    }
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "cat '%s'/app.log* | sort | uniq | grep -c '^P[0-9]-L[0-9]\\{5\\}-x\\{20\\}$'; "
             "cat '%s'/app.log* | wc -l",
             sub, sub);
    FILE *c = popen(cmd, "r");
    CHECK(c != NULL);
    long unique = -1, total = -1;
    CHECK(fscanf(c, "%ld %ld", &unique, &total) == 2);
    pclose(c);
    CHECK_EQ_INT(unique, MR_PROCS * MR_LINES);
    CHECK_EQ_INT(total, MR_PROCS * MR_LINES);
    PASS("%d processes rotating one file every 4 KiB: all %d lines present once, whole", MR_PROCS,
         MR_PROCS * MR_LINES);
}

int main(void) {
    qlt_begin("test_sinks");
    snprintf(dir, sizeof dir, "/tmp/ql-test-sinks-XXXXXX");
    if (!mkdtemp(dir)) QLT_FAIL("mkdtemp: %s", strerror(errno));
    QLT_RUN(full_device);
    QLT_RUN(rotation_under_emfile);
    QLT_RUN(relative_path_then_chdir);
    QLT_RUN(devices_never_rotate);
    QLT_RUN(log_injection);
    QLT_RUN(closed_pipe);
    QLT_RUN(signal_storm);
    QLT_RUN(torn_tail_prepared);
    QLT_RUN(torn_tail_sigkill);
    QLT_RUN(nonblocking_slow_reader);
    QLT_RUN(stalled_reader);
    QLT_RUN(file_size_limit);
    time_rotation("seconds.log", QL_ROTATE_SECONDS, 10, utc_ns(2026, 3, 1, 12, 0, 0),
                  utc_ns(2026, 3, 1, 12, 0, 11), "QL_ROTATE_SECONDS every 10 s, +11 s");
    time_rotation("midnight.log", QL_ROTATE_MIDNIGHT, 1, utc_ns(2026, 12, 5, 23, 59, 59),
                  utc_ns(2026, 12, 6, 0, 0, 1), "QL_ROTATE_MIDNIGHT UTC, 23:59:59 -> 00:00:01");
    QLT_RUN(compressed_backups);
    QLT_RUN(watched_and_reopened);
    QLT_RUN(rotate_on_open);
    QLT_RUN(bad_rotation_options);
    QLT_RUN(several_rotators);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    fflush(NULL);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return qlt_end();
}
