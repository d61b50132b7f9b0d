/* bench_journald.h: the journald workload's reference sender.
 *
 * raw-socket: the collector's own limit. P threads each send n entries
 * straight to journald's native socket, one blocking send(2) per entry on a
 * connected AF_UNIX datagram socket, with the fields the library's handler
 * sends for a `ql_logf(q, QL_LEVEL_INFO, "bench", "hello %llu", v)` record
 * (MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, QL_LOGGER, TID, QL_TIME_USEC):
 * no queue, no thread handoff, nothing but formatting and the system call.
 * journald reads one datagram at a time, and a sender blocks once its
 * socket queue holds net.unix.max_dgram_qlen datagrams, so the sender's
 * rate is journald's rate.
 */
#ifndef QL_BENCH_JOURNALD_H
#define QL_BENCH_JOURNALD_H

#include "bench_common.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

typedef struct {
    const char *socket_path, *ident;
    uint32_t producer, n;
    pthread_barrier_t *go;
    uint64_t start_ns, sent;
    int error; /* errno of the first failed send, 0 when none */
} bench_raw_sender;

static void *bench_raw_sender_main(void *arg) {
    bench_raw_sender *s = arg;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", s->socket_path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) s->error = errno;
    unsigned tid = (unsigned)syscall(SYS_gettid);
    int rc = pthread_barrier_wait(s->go);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) abort();
    s->start_ns = bench_now_ns();
    char buf[256];
    for (uint32_t i = 1; i <= s->n && !s->error; i++) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        int len = snprintf(buf, sizeof buf,
                           "MESSAGE=hello %llu\nPRIORITY=6\nSYSLOG_IDENTIFIER=%s\nQL_LOGGER=bench\n"
                           "TID=%u\nQL_TIME_USEC=%lld\n",
                           (unsigned long long)bench_value(s->producer, i), s->ident, tid,
                           (long long)tv.tv_sec * 1000000 + tv.tv_usec);
        while (send(fd, buf, (size_t)len, MSG_NOSIGNAL) < 0) {
            if (errno != EINTR) {
                s->error = errno;
                break;
            }
        }
        if (!s->error) s->sent++;
    }
    if (fd >= 0) close(fd);
    return NULL;
}

#endif
