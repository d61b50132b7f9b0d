/* bench_common.h: what every C and C++ contender of the benchmark shares.
 *
 * - The record value: producer p's record number s (1-based) is the 64-bit
 *   value (p << 32) | s. Pointer-record contenders pass it as the pointer
 *   value; message contenders format "hello <value>" and parse it back.
 * - The check: bench_sink_take(sink, value) is the handler's whole work. It
 *   checks that each producer's records arrive once, in order (sequence
 *   numbers), and folds every value into an order-independent checksum.
 *   bench_sink_verify() then compares counts and checksum with what the
 *   producers put. A run that lost, duplicated or reordered a record fails.
 * - Timing: bench_now_ns() (CLOCK_MONOTONIC) for spans; bench_ticks() (the
 *   TSC) with bench_ticks_per_ns() for per-call latencies.
 * - Output: one JSON object per line on stdout (see bench/README.md).
 */
#ifndef QL_BENCH_COMMON_H
#define QL_BENCH_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#define BENCH_MAX_PRODUCERS 8

static inline uint64_t bench_value(uint32_t producer, uint32_t seq) {
    return ((uint64_t)producer << 32) | (uint64_t)seq;
}

/* A cheap 64-bit mix: the checksum is the wrapping sum of mix(value). */
static inline uint64_t bench_mix(uint64_t v) {
    v ^= v >> 33;
    v *= UINT64_C(0xff51afd7ed558ccd);
    v ^= v >> 33;
    return v;
}

typedef struct {
    uint64_t next[BENCH_MAX_PRODUCERS]; /* next expected seq per producer */
    uint64_t count;
    uint64_t checksum;
    uint64_t errors; /* out-of-order, duplicate or foreign values */
} bench_sink;

static inline void bench_sink_init(bench_sink *s) {
    memset(s, 0, sizeof *s);
    for (int p = 0; p < BENCH_MAX_PRODUCERS; p++) s->next[p] = 1;
}

static inline void bench_sink_take(bench_sink *s, uint64_t v) {
    uint64_t p = v >> 32, seq = v & 0xffffffffu;
    if (p >= BENCH_MAX_PRODUCERS || seq != s->next[p]) {
        s->errors++;
    } else {
        s->next[p] = seq + 1;
    }
    s->count++;
    s->checksum += bench_mix(v);
}

/* Parses "hello <decimal>" (length len, not NUL-terminated); ~0 on error. */
static inline uint64_t bench_parse_hello(const char *msg, size_t len) {
    if (len < 7 || memcmp(msg, "hello ", 6) != 0) return ~(uint64_t)0;
    uint64_t v = 0;
    for (size_t i = 6; i < len; i++) {
        unsigned d = (unsigned)(msg[i] - '0');
        if (d > 9) return ~(uint64_t)0;
        v = v * 10 + d;
    }
    return v;
}

/* 0 when the sink saw exactly records 1..n of producers 0..p-1, once each,
 * in per-producer order; otherwise writes why into `why`. */
static inline int bench_sink_verify(const bench_sink *s, uint32_t producers, uint32_t n,
                                    char *why, size_t why_len) {
    uint64_t want = 0;
    for (uint32_t p = 0; p < producers; p++)
        for (uint32_t i = 1; i <= n; i++) want += bench_mix(bench_value(p, i));
    if (s->errors) {
        snprintf(why, why_len, "%llu records out of order, duplicated or unknown",
                 (unsigned long long)s->errors);
        return -1;
    }
    if (s->count != (uint64_t)producers * n) {
        snprintf(why, why_len, "%llu records arrived, %llu were put",
                 (unsigned long long)s->count, (unsigned long long)producers * n);
        return -1;
    }
    for (uint32_t p = 0; p < producers; p++) {
        if (s->next[p] != (uint64_t)n + 1) {
            snprintf(why, why_len, "producer %u: last record %llu of %u", p,
                     (unsigned long long)(s->next[p] - 1), n);
            return -1;
        }
    }
    if (s->checksum != want) {
        snprintf(why, why_len, "checksum %llx, want %llx", (unsigned long long)s->checksum,
                 (unsigned long long)want);
        return -1;
    }
    why[0] = 0;
    return 0;
}

static inline uint64_t bench_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t bench_ticks(void) {
#if defined(__x86_64__)
    _mm_lfence();
    uint64_t t = __rdtsc();
    _mm_lfence();
    return t;
#else
    return bench_now_ns();
#endif
}

/* TSC ticks per nanosecond, measured against CLOCK_MONOTONIC over ~50 ms. */
static inline double bench_ticks_per_ns(void) {
    static double cached;
    if (cached > 0) return cached;
    uint64_t n0 = bench_now_ns(), t0 = bench_ticks();
    while (bench_now_ns() - n0 < 50000000u) {
    }
    uint64_t n1 = bench_now_ns(), t1 = bench_ticks();
    cached = (double)(t1 - t0) / (double)(n1 - n0);
    return cached;
}

static int bench_cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The median of an empty timed interval, in ns: the floor under every
 * per-call latency (the timer's own cost and resolution; not subtracted). */
static inline double bench_timer_floor_ns(void) {
    enum { N = 100001 };
    static uint64_t d[N];
    for (int i = 0; i < N; i++) {
        uint64_t t0 = bench_ticks();
        d[i] = bench_ticks() - t0;
    }
    qsort(d, N, sizeof d[0], bench_cmp_u64);
    return (double)d[N / 2] / bench_ticks_per_ns();
}

/* Busy-waits about `ns` nanoseconds (the paced producer's pause). */
static inline void bench_pause_ns(uint64_t ns) {
    uint64_t end = bench_now_ns() + ns;
    while (bench_now_ns() < end) {
    }
}

/* Sorts `ticks` (per-call TSC deltas) and prints the percentile fields of a
 * latency JSON line (no braces), for bench_emit_latency and the file sink's. */
static inline void bench_print_percentiles(uint64_t *ticks, size_t n) {
    qsort(ticks, n, sizeof *ticks, bench_cmp_u64);
    double k = bench_ticks_per_ns();
#define BENCH_PCT(q) ((double)ticks[(size_t)((double)(n - 1) * (q))] / k)
    printf("\"calls\":%zu,\"p50_ns\":%.1f,\"p99_ns\":%.1f,\"p999_ns\":%.1f,\"max_ns\":%.1f", n,
           BENCH_PCT(0.5), BENCH_PCT(0.99), BENCH_PCT(0.999), (double)ticks[n - 1] / k);
#undef BENCH_PCT
}

/* Sorts `ticks` (per-call TSC deltas) and prints one latency JSON line. */
static inline void bench_emit_latency(const char *contender, const char *mode, int rep,
                                      uint64_t *ticks, size_t n) {
    printf("{\"workload\":\"latency\",\"contender\":\"%s\",\"mode\":\"%s\",\"rep\":%d,",
           contender, mode, rep);
    bench_print_percentiles(ticks, n);
    printf(",\"ok\":true}\n");
    fflush(stdout);
}

/* Prints one end-to-end JSON line; `why` non-empty marks the run failed. */
static inline void bench_emit_e2e(const char *contender, const char *variant, int rep,
                                  uint32_t producers, uint32_t n, uint64_t ns, const char *why) {
    printf("{\"workload\":\"e2e\",\"contender\":\"%s\",\"variant\":\"%s\",\"rep\":%d,"
           "\"producers\":%u,\"records\":%llu,\"seconds\":%.6f,\"ok\":%s,\"error\":\"%s\"}\n",
           contender, variant, rep, producers, (unsigned long long)producers * n,
           (double)ns / 1e9, why[0] ? "false" : "true", why);
    fflush(stdout);
}

#endif
