/*
 * rotating_file.c: a file handler with size-based rotation, as Python's
 * RotatingFileHandler: app.log is the current file, app.log.1 the newest
 * backup, and at most three backups are kept.
 *
 * The program logs 2000 lines from two threads, stops the listener, then
 * shows the files and checks that no file passed the size limit, that
 * every line in them is whole, and that no more backups than asked for
 * were kept.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "queue_listener.h"

#define CHECK(call)                                                        \
    do {                                                                   \
        ql_status check_status_ = (call);                                  \
        if (check_status_ != QL_OK) {                                      \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__,  \
                    #call, ql_status_str(check_status_));                  \
            exit(EXIT_FAILURE);                                            \
        }                                                                  \
    } while (0)

enum { THREADS = 2, LINES_PER_THREAD = 1000, MAX_BYTES = 4096, BACKUPS = 3 };

static void *worker(void *q)
{
    for (int i = 0; i < LINES_PER_THREAD; i++)
        CHECK(ql_logf(q, QL_LEVEL_INFO, "rotating", "line %04d of this thread", i));
    return NULL;
}

/* Checks one file: size within the limit, every line complete. Returns the
 * number of lines, or -1. */
static long check_file(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char line[256];
    long lines = 0;
    int whole = 1;
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        /* "... INFO [tid] rotating: line NNNN of this thread\n" */
        if (n == 0 || line[n - 1] != '\n' || strstr(line, "rotating: line ") == NULL ||
            strstr(line, " of this thread\n") == NULL)
            whole = 0;
        lines++;
    }
    fclose(f);
    printf("  %-12s %5lld bytes, %4ld lines%s\n", strrchr(path, '/') ? strrchr(path, '/') + 1 : path,
           (long long)st.st_size, lines, whole ? "" : "  (BROKEN LINE)");
    if (!whole || st.st_size > MAX_BYTES)
        return -1;
    return lines;
}

int main(void)
{
    const char *base = "app.log";
    char name[64];
    remove(base);
    for (int i = 1; i <= BACKUPS + 1; i++) {
        snprintf(name, sizeof name, "%s.%d", base, i);
        remove(name);
    }

    ql_queue *queue = NULL;
    ql_queue_options qo = ql_queue_options_default();
    CHECK(ql_queue_new_with_options(&qo, &queue));

    ql_handler_options ho = ql_handler_options_default();
    ho.max_bytes = MAX_BYTES;
    ho.backup_count = BACKUPS;
    ql_handler file;
    CHECK(ql_file_handler(base, &ho, &file));

    ql_listener *listener = NULL;
    CHECK(ql_listener_new_with_queue(queue, &file, 1, NULL, false, &listener));
    CHECK(ql_start(listener));
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&threads[i], NULL, worker, queue);
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    CHECK(ql_stop(listener)); /* every line written and flushed */
    CHECK(ql_listener_free(listener));
    ql_queue_free(queue);

    printf("files after %d lines, max %d bytes each, %d backups:\n", THREADS * LINES_PER_THREAD,
           MAX_BYTES, BACKUPS);
    int ok = 1;
    long kept = 0;
    for (int i = 0; i <= BACKUPS; i++) {
        if (i == 0)
            snprintf(name, sizeof name, "%s", base);
        else
            snprintf(name, sizeof name, "%s.%d", base, i);
        long lines = check_file(name);
        if (lines <= 0)
            ok = 0;
        else
            kept += lines;
    }
    snprintf(name, sizeof name, "%s.%d", base, BACKUPS + 1);
    struct stat st;
    if (stat(name, &st) == 0) {
        printf("  %s exists: more backups than asked for\n", name);
        ok = 0;
    }
    printf("%ld lines kept in %d files (the oldest rotated away)\n", kept, BACKUPS + 1);
    printf(ok ? "rotating_file: OK\n" : "rotating_file: MISMATCH\n");
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
