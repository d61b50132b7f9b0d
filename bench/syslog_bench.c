/*
 * syslog_bench: records per second from one producer to a real rsyslogd over
 * TCP and RELP, beside the file sink, and rsyslogd's own limit (a raw
 * sender writing pre-made octet-counted frames as fast as the socket
 * takes them). Run by bench/syslog_bench.sh, which starts a private
 * rsyslogd through tests/syslog/run.sh (environment QLS_*), e.g.
 *
 *   bash bench/syslog_bench.sh build-bench/bench/syslog_bench [RECORDS]
 *
 * Prints one JSON object per line:
 *   {"workload":"syslog","contender":"ql-tcp", "records":N,
 *    "handed_s":..., "stored_s":..., "written":..., "lost":...}
 * handed_s: from the first ql_log to the flush barrier returning with
 * every record written (TCP: in the kernel; RELP: acknowledged);
 * stored_s: until rsyslogd's output file held every line.
 */
#define _GNU_SOURCE 1
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "queue_listener.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static const char *dir;
static char out_path[512];
static long out_offset; /* bytes of out.log already counted */
static long out_lines;

/* Waits until rsyslogd's output holds `lines` lines in all (60 s at most). */
static bool wait_lines(long lines) {
    char buf[1 << 16];
    double deadline = now_s() + 60;
    while (now_s() < deadline) {
        int fd = open(out_path, O_RDONLY);
        if (fd >= 0) {
            ssize_t n;
            while ((n = pread(fd, buf, sizeof buf, out_offset)) > 0) {
                for (ssize_t i = 0; i < n; i++) out_lines += buf[i] == '\n';
                out_offset += n;
            }
            close(fd);
        }
        if (out_lines >= lines) return true;
        struct timespec ms = {0, 2000000};
        nanosleep(&ms, NULL);
    }
    return false;
}

static long expected_lines;

/* CPU seconds (user + system) of the collector, from /proc (its pid is in
 * DIR/server.pid), and of this process: who is the bottleneck. */
static double collector_cpu(void) {
    char path[600], buf[1024];
    snprintf(path, sizeof path, "%s/server.pid", dir);
    FILE *f = fopen(path, "r");
    int pid = 0;
    if (!f) return -1;
    if (fscanf(f, "%d", &pid) != 1) pid = 0;
    fclose(f);
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double own_cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int run_ql(const char *name, int transport, uint16_t port, uint32_t n, uint32_t window) {
    ql_queue_options qo = ql_queue_options_default();
    qo.capacity = 65536;
    ql_queue *q;
    if (ql_queue_new_with_options(&qo, &q) != QL_OK) return 1;
    ql_handler h;
    ql_status st;
    if (transport < 0) {
        char path[600];
        snprintf(path, sizeof path, "%s/file-sink.log", dir);
        st = ql_file_handler(path, NULL, &h);
    } else {
        ql_syslog_options o = ql_syslog_options_default();
        o.transport = transport;
        o.host = "127.0.0.1";
        o.port = port;
        o.app_name = name;
        o.buffer_bytes = (uint64_t)1 << 30; /* measure speed, not the bound */
        o.flush_timeout_ms = 120000;
        if (window) o.relp_window = window;
        st = ql_syslog_handler(&o, &h);
    }
    if (st != QL_OK) return 1;
    ql_listener *l;
    if (ql_listener_new_with_queue(q, &h, 1, NULL, false, &l) != QL_OK) return 1;
    if (ql_start(l) != QL_OK) return 1;
    double c0 = collector_cpu(), o0 = own_cpu();
    double t0 = now_s();
    for (uint32_t i = 0; i < n; i++) {
        char msg[128];
        int len = snprintf(msg, sizeof msg, "bench record %u of a syslog throughput run", i);
        if (ql_log(q, QL_LEVEL_INFO, "bench", msg, (size_t)len) != QL_OK) return 1;
    }
    st = ql_listener_flush(l, 300000);
    double handed = now_s() - t0;
    ql_handler_stats s;
    ql_listener_handler_stats(l, 0, &s);
    double stored = -1;
    if (transport >= 0) {
        expected_lines += n;
        if (wait_lines(expected_lines)) stored = now_s() - t0;
    }
    double collector = collector_cpu() - c0, own = own_cpu() - o0;
    printf("{\"workload\":\"syslog\",\"contender\":\"%s\",\"records\":%u,\"handed_s\":%.4f,"
           "\"stored_s\":%.4f,\"handed_rec_s\":%.0f,\"stored_rec_s\":%.0f,\"collector_cpu_s\":%.2f,"
           "\"own_cpu_s\":%.2f,\"written\":%llu,\"lost\":%llu,\"ok\":%s}\n",
           name, n, handed, stored, n / handed, stored > 0 ? n / stored : 0, collector, own,
           (unsigned long long)s.sink.written, (unsigned long long)s.sink.lost,
           st == QL_OK && s.sink.written == n ? "true" : "false");
    fflush(stdout);
    ql_stop(l);
    ql_listener_free(l);
    ql_queue_free(q);
    return 0;
}

/* rsyslogd's own limit: pre-made RFC 5424 frames written raw over TCP. */
static int run_raw(uint16_t port, uint32_t n) {
    size_t cap = (size_t)n * 160, len = 0;
    char *buf = malloc(cap);
    if (!buf) return 1;
    for (uint32_t i = 0; i < n; i++) {
        char msg[160];
        int m = snprintf(msg, sizeof msg,
                         "<14>1 2026-12-05T00:00:00.000000+00:00 h raw-tcp 1 - - bench record %u of a "
                         "syslog throughput run",
                         i);
        len += (size_t)sprintf(buf + len, "%d %s", m, msg);
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) return 1;
    double c0 = collector_cpu(), o0 = own_cpu();
    double t0 = now_s();
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0 && errno != EINTR) return 1;
        if (w > 0) off += (size_t)w;
    }
    double handed = now_s() - t0;
    expected_lines += n;
    bool ok = wait_lines(expected_lines);
    double stored = now_s() - t0;
    close(fd);
    free(buf);
    printf("{\"workload\":\"syslog\",\"contender\":\"raw-tcp\",\"records\":%u,\"handed_s\":%.4f,"
           "\"stored_s\":%.4f,\"handed_rec_s\":%.0f,\"stored_rec_s\":%.0f,\"collector_cpu_s\":%.2f,"
           "\"own_cpu_s\":%.2f,\"ok\":%s}\n",
           n, handed, stored, n / handed, n / stored, collector_cpu() - c0, own_cpu() - o0,
           ok ? "true" : "false");
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    uint32_t n = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 200000;
    dir = getenv("QLS_DIR");
    if (!dir || !getenv("QLS_TCP") || !getenv("QLS_RELP")) {
        fprintf(stderr, "run through bench/syslog_bench.sh\n");
        return 2;
    }
    snprintf(out_path, sizeof out_path, "%s/out.log", dir);
    uint16_t tcp = (uint16_t)atoi(getenv("QLS_TCP")), relp = (uint16_t)atoi(getenv("QLS_RELP"));
    int rc = 0;
    rc |= run_ql("ql-file", -1, 0, n, 0);
    rc |= run_raw(tcp, n);
    rc |= run_ql("ql-tcp", QL_SYSLOG_TCP, tcp, n, 0);
    rc |= run_ql("ql-relp", QL_SYSLOG_RELP, relp, n, 0);
    rc |= run_ql("ql-relp-w1024", QL_SYSLOG_RELP, relp, n, 1024);
    printf("syslog bench: OK\n");
    return rc;
}
