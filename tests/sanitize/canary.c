/*
 * canary: bugs planted on purpose, each of which the sanitizer build must
 * report. They prove that the runtime is active, that a report fails the
 * program, and (for TSan) that tsan_model.c only adds the library's real
 * ordering: a race in a handler, or between two producers, is still found.
 *
 *   canary race-handler     a handler writes a global that the main thread
 *                           reads after its put, without waiting (TSan)
 *   canary race-producers   two producer threads write one global, each
 *                           after its own ql_queue_put (TSan)
 *   canary heap-overflow    a handler reads one byte past a record (ASan)
 *   canary leak             a handler loses its record (LSan); the record
 *                           is made and put by a thread that has exited
 *                           before the check, so no stale copy on the main
 *                           thread's stack (or ASan's fake stack) can keep
 *                           it reachable: only the library could
 *   canary signed-overflow  INT_MAX + 1 in a handler (UBSan)
 *
 * Each mode ends with "canary: no report" when nothing was reported; the
 * ctest entry expects the report and a nonzero exit status instead.
 */
#define _GNU_SOURCE 1
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue_listener.h"

static int shared;          /* the racy global */
static volatile int sink;   /* keeps reads from being optimised away */

static int32_t write_shared(void *ctx, void *record) {
    (void)ctx;
    (void)record;
    shared = 1;
    return 0;
}

static int32_t read_past_end(void *ctx, void *record) {
    (void)ctx;
    const char *bytes = (const char *)record;
    sink = bytes[16]; /* the record is 16 bytes */
    return 0;
}

static int32_t lose_record(void *ctx, void *record) {
    (void)ctx;
    (void)record; /* should have been freed here */
    return 0;
}

static int32_t overflow_int(void *ctx, void *record) {
    (void)ctx;
    int v = (int)(intptr_t)record;
    sink = v + 1; /* record is INT_MAX */
    return 0;
}

static void pause_ms(long ms) {
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

static ql_queue *queue;

static void *producer(void *arg) {
    (void)arg;
    if (ql_queue_put(queue, NULL) != QL_OK) exit(2);
    shared++; /* both producers, unordered */
    return NULL;
}

/* The leak canary's producer: the only place the lost record's address is
 * ever held outside the library. */
static void *put_lost_record(void *arg) {
    (void)arg;
    if (ql_queue_put(queue, malloc(32)) != QL_OK) exit(2);
    return NULL;
}

static void run_leak(void) {
    ql_listener *l = NULL;
    ql_handler h = {NULL, 0, lose_record, NULL, NULL, NULL};
    pthread_t t;
    if (ql_queue_new(0, &queue) != QL_OK) exit(2);
    if (ql_listener_new_with_queue(queue, &h, 1, NULL, false, &l) != QL_OK) exit(2);
    if (ql_start(l) != QL_OK) exit(2);
    if (pthread_create(&t, NULL, put_lost_record, NULL) != 0) exit(2);
    pthread_join(t, NULL);
    if (ql_stop(l) != QL_OK) exit(2);
    ql_listener_free(l);
    ql_queue_free(queue);
}

static void run(int32_t (*handle)(void *, void *), void *record, int after_put_race) {
    ql_listener *l = NULL;
    ql_handler h = {NULL, 0, handle, NULL, NULL, NULL};
    if (ql_queue_new(0, &queue) != QL_OK) exit(2);
    if (ql_listener_new_with_queue(queue, &h, 1, NULL, false, &l) != QL_OK) exit(2);
    if (ql_start(l) != QL_OK) exit(2);
    if (ql_queue_put(queue, record) != QL_OK) exit(2);
    if (after_put_race) {
        pause_ms(50); /* the handler has most likely run: the race is its write vs this read */
        sink = shared;
    }
    if (ql_stop(l) != QL_OK) exit(2);
    ql_listener_free(l);
    ql_queue_free(queue);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "race-handler") == 0) {
        run(write_shared, NULL, 1);
    } else if (strcmp(mode, "race-producers") == 0) {
        pthread_t a, b;
        ql_listener *l = NULL;
        ql_handler h = {NULL, 0, lose_record, NULL, NULL, NULL};
        if (ql_queue_new(0, &queue) != QL_OK) exit(2);
        if (ql_listener_new_with_queue(queue, &h, 1, NULL, false, &l) != QL_OK) exit(2);
        if (ql_start(l) != QL_OK) exit(2);
        pthread_create(&a, NULL, producer, NULL);
        pthread_create(&b, NULL, producer, NULL);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        ql_stop(l);
        ql_listener_free(l);
        ql_queue_free(queue);
    } else if (strcmp(mode, "heap-overflow") == 0) {
        char *record = (char *)calloc(16, 1);
        run(read_past_end, record, 0);
        free(record);
    } else if (strcmp(mode, "leak") == 0) {
        run_leak();
    } else if (strcmp(mode, "signed-overflow") == 0) {
        run(overflow_int, (void *)(intptr_t)INT_MAX, 0);
    } else {
        fprintf(stderr, "usage: canary race-handler|race-producers|heap-overflow|leak|signed-overflow\n");
        return 2;
    }
    printf("canary: no report\n");
    return 0;
}
