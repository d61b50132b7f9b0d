/*
 * journald: log structured records to systemd-journald, no libsystemd.
 *
 *   journald [SOCKET]
 *
 * SOCKET is journald's native socket; without it the system journal's
 * (/run/systemd/journal/socket). A namespaced journald started with
 * `systemd-journald NAME` listens on /run/systemd/journal.NAME/socket.
 * Read the entries back with
 *
 *   journalctl [--namespace=NAME] -o verbose SYSLOG_IDENTIFIER=journald-example
 *
 * Each record becomes one entry: MESSAGE, PRIORITY (from the level),
 * SYSLOG_IDENTIFIER, QL_LOGGER, TID, CODE_FILE/LINE/FUNC (the QL_* macros),
 * and every field upper-cased (request_id -> REQUEST_ID). See
 * docs/journald.md.
 */
#include <stdio.h>
#include <stdlib.h>

#include "queue_listener.h"

static void handle_request(ql_queue *q) {
    /* Every record this thread logs from now on carries REQUEST_ID. */
    ql_context_set(ql_field_str("request_id", "req-42"));
    ql_field slow[] = {ql_field_double("duration_ms", 1250.5)};
    QL_LOG_FIELDS(q, QL_LEVEL_WARNING, "shop", slow, 1, "slow request");
    ql_field retry[] = {ql_field_bool("retry", true)};
    QL_LOG_FIELDS(q, QL_LEVEL_ERROR, "shop", retry, 1, "connection lost\nretrying in %d s", 5);
    ql_context_clear();
}

int main(int argc, char **argv) {
    ql_journald_options options = ql_journald_options_default();
    if (argc > 1) options.socket_path = argv[1];
    options.identifier = "journald-example";

    ql_handler handler;
    ql_queue *queue;
    ql_listener *listener;
    if (ql_journald_handler(&options, &handler) != QL_OK) {
        fprintf(stderr, "journald: bad options\n");
        return 1;
    }
    if (ql_queue_new(1024, &queue) != QL_OK ||
        ql_listener_new_with_queue(queue, &handler, 1, NULL, false, &listener) != QL_OK ||
        ql_start(listener) != QL_OK) {
        fprintf(stderr, "journald: setup failed\n");
        return 1;
    }

    ql_field started[] = {ql_field_int("port", 8080), ql_field_str("version", "1.4.2")};
    QL_LOG_FIELDS(queue, QL_LEVEL_INFO, "shop", started, 2, "service started");
    handle_request(queue);

    ql_stop(listener);
    /* The handler's account: written reached journald's socket, lost did
     * not (journald not running, and nothing could be held). */
    ql_handler_stats stats;
    ql_listener_handler_stats(listener, 0, &stats);
    printf("journald: %llu written, %llu lost (errno %d)\n",
           (unsigned long long)stats.sink.written, (unsigned long long)stats.sink.lost,
           (int)stats.sink.last_errno);
    ql_listener_free(listener);
    ql_queue_free(queue);
    if (stats.sink.written != 3) return 1;
    printf("journald: OK\n");
    return 0;
}
