/*
 * syslog_tls: records with fields, context fields and source location sent
 * to a syslog collector over TLS (RFC 5425), the server's certificate
 * verified against a CA file.
 *
 *   syslog_tls HOST PORT CA_FILE [SERVER_NAME]
 *
 * e.g. rsyslog with
 *   input(type="imtcp" port="6514" streamDriver.name="ossl" streamDriver.mode="1"
 *         streamDriver.authMode="anon" streamDriver.CAFile=... CertFile=... KeyFile=...)
 *
 * The handler delivers on a thread of its own: ql_log never waits for the
 * network, a collector that is down is retried with backoff, and the
 * handler's account says what was delivered (written) and what was not
 * (lost). ctest runs it against a private rsyslogd (tests/syslog/run.sh).
 */
#include <stdio.h>
#include <stdlib.h>

#include "queue_listener.h"

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s HOST PORT CA_FILE [SERVER_NAME]\n", argv[0]);
        return 2;
    }
    ql_syslog_options o = ql_syslog_options_default();
    o.transport = QL_SYSLOG_TLS;
    o.host = argv[1];
    o.port = (uint16_t)atoi(argv[2]);
    o.ca_file = argv[3];
    o.server_name = argc > 4 ? argv[4] : "localhost";
    o.app_name = "syslog_tls";
    o.msgid = "DEMO";
    o.facility = QL_SYSLOG_FACILITY_LOCAL0;

    ql_handler handler;
    ql_status st = ql_syslog_handler(&o, &handler);
    if (st != QL_OK) {
        fprintf(stderr, "ql_syslog_handler: %s\n", ql_status_str(st));
        return 1;
    }
    ql_queue *queue;
    if (ql_queue_new(0, &queue) != QL_OK) return 1;
    ql_listener *listener;
    if (ql_listener_new_with_queue(queue, &handler, 1, NULL, false, &listener) != QL_OK) return 1;
    if (ql_start(listener) != QL_OK) return 1;

    /* A context field: on every record this thread logs from now on. */
    ql_context_set(ql_field_str("request_id", "req-42"));
    ql_field fields[] = {
        ql_field_str("user", "alice"),
        ql_field_int("items", 3),
        ql_field_double("total", 19.99),
    };
    QL_LOG_FIELDS(queue, QL_LEVEL_INFO, "shop.checkout", fields, 3, "order placed");
    QL_WARNING(queue, "shop.stock", "only %d left of %s", 2, "widgets");
    QL_ERROR(queue, "shop.payment", "card declined");
    ql_context_clear();

    /* ql_stop waits (up to flush_timeout_ms) for delivery. */
    st = ql_stop(listener);
    ql_handler_stats stats;
    ql_listener_handler_stats(listener, 0, &stats);
    printf("received %llu, written %llu, lost %llu, pending %llu, write errors %llu\n",
           (unsigned long long)stats.received, (unsigned long long)stats.sink.written,
           (unsigned long long)stats.sink.lost, (unsigned long long)stats.sink.pending,
           (unsigned long long)stats.sink.write_errors);
    ql_listener_free(listener);
    ql_queue_free(queue);
    if (st != QL_OK || stats.sink.written != 3) {
        fprintf(stderr, "not delivered: %s\n", ql_status_str(st));
        return 1;
    }
    printf("syslog_tls: OK\n");
    return 0;
}
