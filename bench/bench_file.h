/* bench_file.h: what the C and C++ contenders of the file sink workload share.
 *
 * - Where: every contender writes `<dir>/<name>`, `dir` given by --file-dir
 *   (bench/run.py passes build-bench/filesink/, on the repository's disk).
 *   Backups are `<name>.1` (the newest) .. `<name>.3`, gzip-compressed as
 *   `<name>.N.gz`: the library's names, and spdlog's for a name without an
 *   extension.
 * - The check, after every run: bench_file_check() reads the files back,
 *   the oldest backup first (`.gz` through `gzip -dc`), parses each line's
 *   "] bench: hello <value>" and checks that each producer's records are
 *   there once each, in order, up to its last (N). Rotation deletes the
 *   oldest backup when a fourth would be made, so a rotating run may miss a
 *   prefix of each producer's records (counted in rotated_out), and only
 *   when every backup is present; each file must have been full when it
 *   was rotated (its size plus the next file's first line is over
 *   max_bytes; no file is over it), and each producer's records are
 *   consecutive across the files kept, so nothing is missing after the
 *   first record read. What the deleted backups held cannot be read back:
 *   the library's own account (written, lost) covers those records.
 */
#ifndef QL_BENCH_FILE_H
#define QL_BENCH_FILE_H

#include "bench_common.h"

#include <errno.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#define BENCH_ROTATE_MAX_BYTES (UINT64_C(8) << 20) /* 8 MiB */
#define BENCH_ROTATE_BACKUPS 3
#define BENCH_PATH_MAX 1024

typedef struct {
    uint64_t lines;       /* lines read back */
    uint64_t bytes;       /* bytes read back, uncompressed */
    uint64_t rotated_out; /* records in backups that rotation deleted (never read) */
    uint32_t files;       /* files read */
    uint32_t gz_files;    /* of which gzip-compressed */
} bench_file_result;

/* snprintf for messages, where a cut is harmless (and no warning is). */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static inline void bench_say(char *out, size_t len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, len, fmt, ap);
    va_end(ap);
}

/* `base` for i == 0, else `base.i`, with ".gz" when gz; `suffix` after. A
 * path too long for BENCH_PATH_MAX ends the program. */
static inline void bench_file_name_sfx(char *out, const char *base, int i, int gz,
                                       const char *suffix) {
    int w = i == 0 ? snprintf(out, BENCH_PATH_MAX, "%s%s%s", base, gz ? ".gz" : "", suffix)
                   : snprintf(out, BENCH_PATH_MAX, "%s.%d%s%s", base, i, gz ? ".gz" : "", suffix);
    if (w < 0 || w >= BENCH_PATH_MAX) {
        fprintf(stderr, "bench: path too long: %s\n", base);
        exit(2);
    }
}

static inline void bench_file_name(char *out, const char *base, int i, int gz) {
    bench_file_name_sfx(out, base, i, gz, "");
}

static inline int bench_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Removes `base` and its backups, compressed or not, and a half-written
 * compressed one (the library's `.gz.tmp`). */
static inline void bench_file_remove(const char *base, int backups) {
    char path[BENCH_PATH_MAX];
    for (int i = 0; i <= backups; i++) {
        bench_file_name_sfx(path, base, i, 0, "");
        unlink(path);
        bench_file_name_sfx(path, base, i, 1, "");
        unlink(path);
        bench_file_name_sfx(path, base, i, 1, ".tmp");
        unlink(path);
    }
}

/* The whole content of `path` (gunzipped by `gzip -dc` when gz) in a
 * malloc'd buffer; NULL with `why` on failure. */
static inline char *bench_file_slurp(const char *path, int gz, size_t *len_out, char *why,
                                     size_t why_len) {
    FILE *f;
    if (gz) {
        if (strchr(path, '\'')) {
            bench_say(why, why_len, "%s: a quote in the path", path);
            return NULL;
        }
        char cmd[BENCH_PATH_MAX + 32];
        bench_say(cmd, sizeof cmd, "gzip -dc -- '%s'", path);
        f = popen(cmd, "r");
    } else {
        f = fopen(path, "rb");
    }
    if (!f) {
        bench_say(why, why_len, "%s: cannot open (errno %d)", path, errno);
        return NULL;
    }
    size_t cap = (size_t)1 << 24, len = 0;
    char *buf = (char *)malloc(cap);
    for (;;) {
        if (!buf) break;
        if (len == cap) {
            char *bigger = (char *)realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    int rc = gz ? pclose(f) : fclose(f);
    if (!buf || bad || rc != 0) {
        bench_say(why, why_len, "%s: read failed (%s)", path,
                  !buf ? "out of memory" : gz ? "gzip -dc failed" : "read error");
        free(buf);
        return NULL;
    }
    *len_out = len;
    return buf;
}

/* The value of a line "... ] bench: hello <decimal>" (no newline); ~0 when
 * the line is not one. */
static inline uint64_t bench_file_line_value(const char *line, size_t len) {
    static const char TAIL[] = "] bench: hello ";
    const size_t tail = sizeof TAIL - 1;
    size_t d = len;
    while (d > 0 && line[d - 1] >= '0' && line[d - 1] <= '9') d--;
    if (d == len || len - d > 20 || d < tail + 4 || memcmp(line + d - tail, TAIL, tail) != 0)
        return ~(uint64_t)0;
    if (line[0] < '0' || line[0] > '9') return ~(uint64_t)0; /* starts with the year */
    uint64_t v = 0;
    for (size_t i = d; i < len; i++) v = v * 10 + (uint64_t)(line[i] - '0');
    return v;
}

/* 0 when the files at `base` (and `backups` backups, gzip-compressed when
 * `gz`) hold producers 0..P-1's records 1..n as the header describes;
 * otherwise -1 with the reason in `why`. `max_bytes` 0: no rotation, so
 * nothing may be missing. */
static inline int bench_file_check(const char *base, int backups, uint64_t max_bytes, int gz,
                                   uint32_t producers, uint32_t n, bench_file_result *res,
                                   char *why, size_t why_len) {
    uint64_t first[BENCH_MAX_PRODUCERS] = {0}, next[BENCH_MAX_PRODUCERS] = {0};
    memset(res, 0, sizeof *res);
    why[0] = 0;
    int64_t prev_size = -1; /* the file read before this one, for the fullness check */
    char path[BENCH_PATH_MAX], other[BENCH_PATH_MAX];
    /* Records may have been rotated out only when every backup is there. */
    bench_file_name(path, base, backups, gz);
    int may_miss = max_bytes && backups > 0 && bench_file_exists(path);
    for (int i = backups; i >= 0; i--) {
        int want_gz = gz && i > 0;
        bench_file_name(path, base, i, want_gz);
        bench_file_name(other, base, i, !want_gz);
        if (bench_file_exists(other)) {
            bench_say(why, why_len, "%s exists (%s expected)", other,
                      want_gz ? "only the compressed backup" : "no compressed file");
            return -1;
        }
        if (!bench_file_exists(path)) {
            if (i == 0 || prev_size >= 0) {
                bench_say(why, why_len, "%s missing", path);
                return -1;
            }
            continue;
        }
        size_t len = 0;
        char *buf = bench_file_slurp(path, want_gz, &len, why, why_len);
        if (!buf) return -1;
        res->files++;
        res->gz_files += want_gz;
        res->bytes += len;
        int bad = 0;
        if (len > 0 && buf[len - 1] != '\n') {
            bench_say(why, why_len, "%s ends inside a line", path);
            bad = 1;
        } else if (max_bytes && len > max_bytes) {
            bench_say(why, why_len, "%s holds %zu bytes, over max_bytes", path, len);
            bad = 1;
        } else if (max_bytes && prev_size >= 0) {
            const char *nl = (const char *)memchr(buf, '\n', len);
            size_t first_line = nl ? (size_t)(nl - buf) + 1 : 0;
            if ((uint64_t)prev_size + first_line <= max_bytes) {
                bench_say(why, why_len, "the file before %s was rotated before it was full "
                          "(%lld bytes)", path, (long long)prev_size);
                bad = 1;
            }
        }
        for (size_t at = 0; !bad && at < len;) {
            const char *nl = (const char *)memchr(buf + at, '\n', len - at);
            size_t line_len = (size_t)(nl - (buf + at));
            uint64_t v = bench_file_line_value(buf + at, line_len);
            uint64_t p = v >> 32, seq = v & 0xffffffffu;
            if (v == ~(uint64_t)0 || p >= producers || seq == 0 || seq > n) {
                bench_say(why, why_len, "%s: line %llu is not a record: %.*s", path,
                          (unsigned long long)res->lines + 1, (int)(line_len < 80 ? line_len : 80),
                          buf + at);
                bad = 1;
            } else if (next[p] == 0) {
                /* A producer's first line: record 1, unless rotation may
                 * have deleted the backups with the ones before. */
                if (seq != 1 && !may_miss) {
                    bench_say(why, why_len, "producer %llu: first record read is %llu",
                              (unsigned long long)p, (unsigned long long)seq);
                    bad = 1;
                }
                first[p] = seq;
                next[p] = seq + 1;
            } else if (seq != next[p]) {
                bench_say(why, why_len, "producer %llu: record %llu after %llu (%s)",
                          (unsigned long long)p, (unsigned long long)seq,
                          (unsigned long long)next[p] - 1, path);
                bad = 1;
            } else {
                next[p] = seq + 1;
            }
            res->lines++;
            at += line_len + 1;
        }
        free(buf);
        if (bad) return -1;
        prev_size = (int64_t)len;
    }
    for (uint32_t p = 0; p < producers; p++) {
        if (next[p] == 0 && may_miss) { /* every record of p rotated out */
            res->rotated_out += n;
            continue;
        }
        if (next[p] != (uint64_t)n + 1) {
            bench_say(why, why_len, "producer %u: last record read %llu of %u", p,
                      (unsigned long long)(next[p] ? next[p] - 1 : 0), n);
            return -1;
        }
        res->rotated_out += first[p] - 1;
    }
    return 0;
}

/* Prints the file check's figures as JSON fields (no braces). */
static inline void bench_file_print_result(const bench_file_result *r) {
    printf("\"lines_read\":%llu,\"bytes_read\":%llu,\"rotated_out\":%llu,\"files\":%u,"
           "\"gz_files\":%u",
           (unsigned long long)r->lines, (unsigned long long)r->bytes,
           (unsigned long long)r->rotated_out, r->files, r->gz_files);
}

#endif
