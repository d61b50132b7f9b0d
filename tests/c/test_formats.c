/* Line formats of the built-in handlers, checked by a real parser:
 *
 * - QL_FORMAT_JSON: every line is one object that Python's json module
 *   parses, with exactly the documented keys; each message and logger,
 *   hostile ones included (every byte value, quotes, backslashes, newlines,
 *   invalid UTF-8, U+2028, a 200 KiB message, an empty one), comes back
 *   equal to the bytes logged decoded as UTF-8 with each invalid sequence
 *   replaced by U+FFFD; the time is RFC 3339 with microseconds and offset.
 * - QL_FORMAT_LOGFMT: every line parses as key=value pairs in the
 *   documented order, and the message and logger come back byte for byte
 *   (logfmt's \xHH keeps invalid bytes).
 * - colour: QL_COLOR_ALWAYS colours the level, NEVER and AUTO on a file
 *   do not; a bad format or colour value is QL_ERR_INVALID.
 *
 * The parser is python3 (always on the test machines); without it the
 * parse checks are skipped with the reason printed.
 */
#define _GNU_SOURCE
#include "ql_test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

enum { BIG = 200 * 1024 };

typedef struct {
    const char *logger;
    size_t logger_len;
    const char *msg;
    size_t msg_len;
    int32_t level;
} rec;

static char all_bytes[255];
static char *big;

static size_t make_records(rec *out) {
    for (int i = 0; i < 255; i++) all_bytes[i] = (char)(i + 1);
    big = malloc(BIG);
    CHECK(big != NULL);
    for (size_t i = 0; i < BIG; i++) big[i] = (char)('a' + i % 26);
    big[1000] = '\n';
    big[2000] = '"';
    static const char forged[] = "x\n{\"time\":\"2026\",\"level\":\"CRITICAL\",\"message\":\"forged\"}";
    static const char invalid[] = "bad \xff\xfe, cut \xe2\x82, overlong \xc0\xaf, ok \xc3\xa9";
    static const char uni[] = "line\xe2\x80\xa8sep\xe2\x80\xa9para \xf0\x9f\x98\x80 \\ \\n";
    static const char spaces[] = "disk at 91% a=b \"q\"";
    size_t n = 0;
    out[n++] = (rec){"app.db", 6, "plain", 5, QL_LEVEL_INFO};
    out[n++] = (rec){"all", 3, all_bytes, sizeof all_bytes, QL_LEVEL_WARNING};
    out[n++] = (rec){"auth", 4, forged, sizeof forged - 1, QL_LEVEL_ERROR};
    out[n++] = (rec){"bad\xff\n", 5, invalid, sizeof invalid - 1, QL_LEVEL_DEBUG};
    out[n++] = (rec){"uni", 3, uni, sizeof uni - 1, QL_LEVEL_CRITICAL};
    out[n++] = (rec){"big", 3, big, BIG, 35};
    out[n++] = (rec){"", 0, "", 0, -7};
    out[n++] = (rec){"sp ace", 6, spaces, sizeof spaces - 1, QL_LEVEL_INFO};
    return n;
}

/* Logs the records through a file handler with `format`; writes the
 * expected logger/message/level as hex to `expect`. */
static void log_all(const char *path, const char *expect, ql_format format, const rec *r, size_t n) {
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(64, &q));
    ql_handler_options o = ql_handler_options_default();
    o.format = format;
    ql_handler h;
    CHECK_OK(ql_file_handler(path, &o, &h));
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l));
    CHECK_OK(ql_start(l));
    FILE *e = fopen(expect, "w");
    CHECK(e != NULL);
    for (size_t i = 0; i < n; i++) {
        CHECK_OK(ql_log(q, r[i].level, r[i].logger, r[i].msg, r[i].msg_len));
        fprintf(e, "%d ", (int)r[i].level);
        /* level, logger and message as hex ("-" when empty); an empty
         * logger name is the root logger, as in Python */
        const char *lg = r[i].logger_len ? r[i].logger : "root";
        const size_t lg_len = r[i].logger_len ? r[i].logger_len : 4;
        for (size_t k = 0; k < lg_len; k++) fprintf(e, "%02x", (unsigned char)lg[k]);
        fputc(' ', e);
        for (size_t k = 0; k < r[i].msg_len; k++) fprintf(e, "%02x", (unsigned char)r[i].msg[k]);
        fputs(r[i].msg_len ? "\n" : "-\n", e);
    }
    CHECK(fclose(e) == 0);
    CHECK_OK(ql_stop(l));
    ql_handler_stats hs;
    CHECK_OK(ql_listener_handler_stats(l, 0, &hs));
    CHECK_EQ_INT(hs.sink.written, n);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
}

static const char *checker =
    "import json, re, sys\n"
    "fmt, path, expect = sys.argv[1], sys.argv[2], sys.argv[3]\n"
    "def unhex(t):\n"
    "    return b'' if t == '-' else bytes.fromhex(t)\n"
    "want = []\n"
    "for line in open(expect):\n"
    "    parts = line.split()\n"
    "    want.append((int(parts[0]), unhex(parts[1]), unhex(parts[2])))\n"
    "raw = open(path, 'rb').read()\n"
    "lines = raw.split(b'\\n')\n"
    "assert lines[-1] == b'', 'the file ends with a newline'\n"
    "lines = lines[:-1]\n"
    "assert len(lines) == len(want), (len(lines), len(want))\n"
    "names = {10: 'DEBUG', 20: 'INFO', 30: 'WARNING', 40: 'ERROR', 50: 'CRITICAL'}\n"
    "time_re = re.compile(r'^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{6}[+-]\\d\\d:\\d\\d$')\n"
    "def unquote(v):\n"
    "    if not v.startswith(b'\"'): return v\n"
    "    out = bytearray(); i = 1\n"
    "    while True:\n"
    "        c = v[i]\n"
    "        if c == 0x22: assert i == len(v) - 1, v; return bytes(out)\n"
    "        if c == 0x5c:\n"
    "            e = v[i+1]\n"
    "            if e == ord('x'): out.append(int(v[i+2:i+4], 16)); i += 4; continue\n"
    "            out.append({ord('n'): 10, ord('r'): 13, ord('t'): 9, 0x22: 0x22, 0x5c: 0x5c}[e]); i += 2; continue\n"
    "        out.append(c); i += 1\n"
    "def logfmt(line):\n"
    "    pairs = []; i = 0\n"
    "    while i < len(line):\n"
    "        j = line.index(b'=', i); key = line[i:j].decode(); i = j + 1\n"
    "        if line[i:i+1] == b'\"':\n"
    "            k = i + 1\n"
    "            while line[k] != 0x22: k += 2 if line[k] == 0x5c else 1\n"
    "            end = k + 1\n"
    "        else:\n"
    "            end = line.find(b' ', i); end = len(line) if end < 0 else end\n"
    "        pairs.append((key, unquote(line[i:end]))); i = end + 1\n"
    "    return pairs\n"
    "for n, (line, (level, logger, msg)) in enumerate(zip(lines, want)):\n"
    "    name = names.get(level, 'Level %d' % level)\n"
    "    if fmt == 'json':\n"
    "        o = json.loads(line)\n"
    "        assert list(o) == ['time', 'level', 'levelno', 'thread', 'logger', 'message'], list(o)\n"
    "        assert time_re.match(o['time']), o['time']\n"
    "        assert o['level'] == name and o['levelno'] == level, (o['level'], o['levelno'])\n"
    "        assert isinstance(o['thread'], int) and o['thread'] > 0\n"
    "        assert o['logger'] == logger.decode('utf-8', 'replace'), (n, o['logger'])\n"
    "        assert o['message'] == msg.decode('utf-8', 'replace'), (n, o['message'][:80])\n"
    "    else:\n"
    "        p = logfmt(line)\n"
    "        assert [k for k, _ in p] == ['time', 'level', 'levelno', 'thread', 'logger', 'msg'], p\n"
    "        d = dict(p)\n"
    "        assert time_re.match(d['time'].decode()), d['time']\n"
    "        assert d['level'].decode() == name and int(d['levelno']) == level\n"
    "        assert d['logger'] == logger, (n, d['logger'])\n"
    "        assert d['msg'] == msg, (n, d['msg'][:80])\n"
    "print('parsed %d %s lines' % (len(lines), fmt))\n";

static bool have_python(void) {
    return system("python3 -c 'import json' >/dev/null 2>&1") == 0;
}

static void parse_with_python(const char *fmt, const char *path, const char *expect, size_t n) {
    char script[300], cmd[1200];
    snprintf(script, sizeof script, "%s/check.py", dir);
    FILE *s = fopen(script, "w");
    CHECK(s != NULL);
    fputs(checker, s);
    CHECK(fclose(s) == 0);
    snprintf(cmd, sizeof cmd, "python3 '%s' %s '%s' '%s'", script, fmt, path, expect);
    fflush(NULL);
    int rc = system(cmd);
    if (rc != 0) QLT_FAIL("%s: python3's parse failed (status %d)", fmt, rc);
    PASS("%s: %zu hostile records (every byte value, forged records, invalid UTF-8, U+2028, "
         "200 KiB, empty) parsed back by python3, every field as documented",
         fmt, n);
}

static void json_and_logfmt(void) {
    rec r[16];
    size_t n = make_records(r);
    if (!have_python()) {
        printf("  skipped: JSON and logfmt parse checks: python3 with json is not available\n");
        free(big);
        return;
    }
    const struct {
        const char *name;
        ql_format format;
    } formats[] = {{"json", QL_FORMAT_JSON}, {"logfmt", QL_FORMAT_LOGFMT}};
    for (int f = 0; f < 2; f++) {
        char path[400], expect[400];
        snprintf(path, sizeof path, "%s/%s.log", dir, formats[f].name);
        snprintf(expect, sizeof expect, "%s/%s.expect", dir, formats[f].name);
        log_all(path, expect, formats[f].format, r, n);
        parse_with_python(formats[f].name, path, expect, n);
    }
    free(big);
}

static void colour(void) {
    const struct {
        ql_color color;
        bool coloured;
    } cases[] = {{QL_COLOR_ALWAYS, true}, {QL_COLOR_NEVER, false}, {QL_COLOR_AUTO, false}};
    for (int c = 0; c < 3; c++) {
        char path[400];
        snprintf(path, sizeof path, "%s/colour%d.log", dir, c);
        ql_queue *q = NULL;
        CHECK_OK(ql_queue_new(8, &q));
        ql_handler_options o = ql_handler_options_default();
        o.pattern = "{level} {message}";
        o.color = cases[c].color;
        ql_handler h;
        CHECK_OK(ql_file_handler(path, &o, &h));
        ql_listener *l = NULL;
        CHECK_OK(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l));
        CHECK_OK(ql_start(l));
        CHECK_OK(ql_log(q, QL_LEVEL_ERROR, "t", "m", 1));
        CHECK_OK(ql_stop(l));
        CHECK_OK(ql_listener_free(l));
        ql_queue_free(q);
        char got[100] = {0};
        FILE *f = fopen(path, "r");
        CHECK(f != NULL);
        CHECK(fgets(got, sizeof got, f) != NULL);
        fclose(f);
        const char *want = cases[c].coloured ? "\x1b[31mERROR\x1b[0m m\n" : "ERROR m\n";
        if (strcmp(got, want) != 0) QLT_FAIL("colour case %d: got '%s'", c, got);
    }
    ql_handler h;
    ql_handler_options o = ql_handler_options_default();
    o.format = 3;
    CHECK_EQ_STATUS(ql_stream_handler_fd(2, &o, &h), QL_ERR_INVALID);
    o = ql_handler_options_default();
    o.color = 3;
    CHECK_EQ_STATUS(ql_stream_handler_fd(2, &o, &h), QL_ERR_INVALID);
    PASS("colour: ALWAYS colours the level (ERROR red), NEVER and AUTO on a file do not; "
         "format 3 and colour 3 are QL_ERR_INVALID");
}

int main(void) {
    qlt_begin("test_formats");
    snprintf(dir, sizeof dir, "/tmp/ql-test-formats-XXXXXX");
    if (!mkdtemp(dir)) QLT_FAIL("mkdtemp: %s", strerror(errno));
    json_and_logfmt();
    colour();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return qlt_end();
}
