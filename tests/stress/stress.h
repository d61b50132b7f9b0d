/*
 * stress.h: what the stress tests share on top of tests/c/ql_test.h.
 *
 * - stress_arg: an optional positive integer command-line argument (the
 *   sizes: the defaults are the issue's, smaller values are for valgrind);
 * - stress_under_valgrind: true when the program runs under valgrind
 *   (its preload library is in LD_PRELOAD), where resident memory says
 *   nothing about the program's own allocations;
 * - stress_fd_count / stress_rss_bytes: open file descriptors
 *   (/proc/self/fd) and resident memory (/proc/self/statm).
 */
#ifndef QL_STRESS_H
#define QL_STRESS_H

#include "ql_test.h"

/* argv[i] as a positive integer, or `def` when it is absent. */
static inline long stress_arg(int argc, char **argv, int i, long def) {
    if (i >= argc) return def;
    char *end = NULL;
    errno = 0;
    long v = strtol(argv[i], &end, 10);
    if (errno != 0 || end == argv[i] || *end != '\0' || v <= 0)
        QLT_FAIL("argument %d: '%s' is not a positive integer", i, argv[i]);
    return v;
}

static inline bool stress_under_valgrind(void) {
    const char *p = getenv("LD_PRELOAD");
    return p != NULL && strstr(p, "vgpreload") != NULL;
}

/* Open file descriptors, not counting the one used to list them. */
static inline int stress_fd_count(void) {
    DIR *dir = opendir("/proc/self/fd");
    if (!dir) QLT_FAIL("opendir(/proc/self/fd): %s", strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] != '.') n++;
    }
    closedir(dir);
    return n - 1;
}

/* Resident set size in bytes (second field of /proc/self/statm, in pages). */
static inline long stress_rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) QLT_FAIL("fopen(/proc/self/statm): %s", strerror(errno));
    long size = 0, resident = 0;
    int got = fscanf(f, "%ld %ld", &size, &resident);
    fclose(f);
    if (got != 2) QLT_FAIL("/proc/self/statm: could not read the resident size");
    return resident * sysconf(_SC_PAGESIZE);
}

#endif /* QL_STRESS_H */
