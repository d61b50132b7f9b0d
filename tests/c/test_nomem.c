/*
 * test_nomem: allocation failure under RLIMIT_AS (256 MiB) gives a status
 * and a counted drop, never an abort.
 *
 * - ql_queue_new with QL_QUEUE_MAX_CAPACITY succeeds (nothing is allocated
 *   for the capacity up front; it used to abort allocating 384 MiB);
 * - ql_log of ~1 MiB messages on an unbounded queue whose listener is held
 *   up: once memory runs out, QL_ERR_NOMEM, each refusal counted in the
 *   queue's dropped count; the same for ql_log_fields with large string
 *   fields and ql_logf with a large %s argument; small records go on (or
 *   are refused the same way);
 * - once the listener goes on, every record accepted is handled, whole.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "ql_test.h"

#define BIG (((size_t)1 << 20) - 64)
#define LIMIT ((rlim_t)256 << 20)

static qlt_latch go;
static qlt_counter handled;
static atomic_long whole, unformatted;

static bool is(const ql_record *r, const char *text) {
    return r->message_len == strlen(text) && memcmp(r->message, text, r->message_len) == 0;
}

static int32_t held_handle(void *ctx, void *record) {
    (void)ctx;
    const ql_record *r = record;
    qlt_latch_wait(&go);
    if ((r->message_len == BIG && r->message[0] == 'm' && r->message[BIG - 1] == 'm') ||
        is(r, "fields") || is(r, "tiny"))
        atomic_fetch_add(&whole, 1);
    else if (is(r, "[message not formatted: out of memory]"))
        atomic_fetch_add(&unformatted, 1); /* a ql_logf the listener could not format */
    qlt_counter_add(&handled, 1);
    return 0;
}

int main(void) {
    qlt_begin("test_nomem");
    qlt_latch_init(&go);
    qlt_counter_init(&handled);
    struct rlimit limit = {LIMIT, LIMIT};
    if (setrlimit(RLIMIT_AS, &limit) != 0) QLT_FAIL("setrlimit(RLIMIT_AS): %s", strerror(errno));

    /* The largest capacity: no allocation for it up front. */
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(QL_QUEUE_MAX_CAPACITY, &q));
    CHECK_OK(ql_queue_put(q, QLT_REC(1)));
    ql_queue_free(q);
    PASS("ql_queue_new(QL_QUEUE_MAX_CAPACITY) under RLIMIT_AS 256 MiB: QL_OK");

    /* A bounded queue (capacity 1, drop newest) this thread has put on
     * before memory runs out (a thread's first put on a queue makes its
     * lane: a small allocation that still aborts, README "Out of memory"). */
    ql_queue_options bo = ql_queue_options_default();
    bo.capacity = 1;
    bo.overflow = QL_OVERFLOW_DROP_NEWEST;
    ql_queue *bounded = NULL;
    CHECK_OK(ql_queue_new_with_options(&bo, &bounded));
    CHECK_OK(ql_log(bounded, 20, "b", "warm", 4));
    void *taken = NULL;
    CHECK_OK(ql_queue_get_nowait(bounded, &taken));
    ql_record_free(taken);

    char *big = malloc(BIG + 1);
    if (!big) QLT_FAIL("malloc");
    memset(big, 'm', BIG);
    big[BIG] = '\0';

    CHECK_OK(ql_queue_new(0, &q));
    ql_listener *l = NULL;
    ql_handler h = {NULL, 0, held_handle, NULL, NULL, NULL};
    CHECK_OK(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l));
    CHECK_OK(ql_start(l));

    long accepted = 0, refused = 0, first_refusal = -1;
    for (int i = 0; i < 600 && refused < 20; i++) {
        ql_status st;
        switch (i % 3) {
        case 0:
            st = ql_log(q, 20, "big", big, BIG);
            break;
        case 1: {
            ql_field f[2] = {ql_field_str("a", big), ql_field_int("n", i)};
            /* Two copies of a 1 MiB string: more than one message. */
            st = ql_log_fields(q, 20, "big", f, 2, "fields", 6);
            break;
        }
        default:
            st = ql_logf(q, 20, "big", "%s", big);
            break;
        }
        if (st == QL_OK) {
            accepted++;
        } else {
            CHECK_EQ_STATUS(st, QL_ERR_NOMEM);
            if (first_refusal < 0) first_refusal = i;
            refused++;
        }
    }
    if (refused == 0) QLT_FAIL("600 records of ~1 MiB under a 256 MiB limit: none refused");
    CHECK(accepted >= 10);
    /* Small records: queued, or refused the same way (a lane's segment may
     * not be had either) - never an abort. */
    long small_ok = 0, small_refused = 0;
    for (int i = 0; i < 1000; i++) {
        ql_status st = ql_log(q, 20, "small", "tiny", 4);
        if (st == QL_OK) {
            small_ok++;
        } else {
            CHECK_EQ_STATUS(st, QL_ERR_NOMEM);
            small_refused++;
        }
    }
    ql_stats s = qlt_stats(l);
    CHECK_EQ_INT((long)s.dropped, refused + small_refused);

    /* The bounded queue: a record refused for want of memory gives its
     * room back at once; the next small one fits (it did not: the failed
     * one kept the only slot until a taker looked). */
    long bounded_nomem = 0;
    for (int i = 0; i < 5; i++) {
        ql_status st = ql_log(bounded, 20, "b", big, BIG);
        if (st == QL_ERR_NOMEM) {
            bounded_nomem++;
            break;
        }
        CHECK_OK(st);
        CHECK_OK(ql_queue_get_nowait(bounded, &taken)); /* made it after all: empty it */
        ql_record_free(taken);
    }
    CHECK(bounded_nomem == 1);
    size_t depth = 99;
    CHECK_OK(ql_queue_len(bounded, &depth));
    CHECK_EQ_INT((long)depth, 0);
    /* A program pointer needs no allocation: it fits (QL_ERR_FULL if the
     * refused record had kept the only slot). */
    CHECK_OK(ql_queue_put(bounded, QLT_REC(7)));
    CHECK_OK(ql_queue_get_nowait(bounded, &taken));
    CHECK_EQ_PTR(taken, QLT_REC(7));
    ql_queue_free(bounded);

    /* Every accepted record is handled (and its memory given back) before
     * the stop, whose own bookkeeping is a small allocation that still
     * aborts when no memory is left at all (README, "Out of memory"). */
    qlt_latch_open(&go);
    qlt_counter_wait_at_least(&handled, accepted + small_ok);
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(qlt_counter_get(&handled), accepted + small_ok);
    CHECK_EQ_INT(atomic_load(&whole) + atomic_load(&unformatted), qlt_counter_get(&handled));
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    free(big);
    qlt_counter_destroy(&handled);
    PASS("~1 MiB records under RLIMIT_AS 256 MiB: %ld accepted, then QL_ERR_NOMEM (first at call "
         "%ld), %ld refusals all counted as drops; %ld small records queued, %ld refused; every "
         "accepted record handled, whole (%ld formatted with a marker for want of memory); a "
         "bounded queue of 1 is empty right after a refusal and takes the next record",
         accepted, first_refusal, refused, small_ok, small_refused, atomic_load(&unformatted));
    return qlt_end();
}
