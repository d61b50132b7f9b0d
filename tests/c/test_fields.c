/* Structured records: fields, context fields, source location.
 *
 * - Fields of every type reach a handler through ql_record exactly (keys,
 *   kinds, values, string bytes with NULs and invalid UTF-8), followed by
 *   the logging thread's context fields; a call's field wins over a
 *   context field of the same key; a repeated key keeps its first value.
 * - Context fields are captured on the logging thread when the record is
 *   made: four threads, each with its own context, log concurrently and
 *   every handled record carries its own thread's value (the handler runs
 *   on the listener thread, long after).
 * - QL_INFO and friends record file, line and function, and test the level
 *   before evaluating their arguments.
 * - Bad input: NULL and bad keys, bad kinds, too many fields, NULL strings
 *   with lengths: a clear status, nothing queued, nothing counted.
 * - A file handler's JSON lines carry file/line/func and the fields as keys
 *   with the collision rule (python3's json parses them); the text pattern's
 *   {file} {line} {func} {fields}.
 */
#define _GNU_SOURCE
#include "ql_test.h"

#include <math.h>
#include <sys/syscall.h>

/* ------------------------------------------------- a copying handler */

typedef struct {
    char key[40];
    int32_t kind;
    char str[64];
    size_t str_len;
    int64_t i;
    uint64_t u;
    double d;
    bool b;
} copied_field;

typedef struct {
    int32_t level;
    uint32_t thread_id;
    char message[64];
    char file[128];
    char func[64];
    uint32_t line;
    size_t field_count;
    copied_field fields[8];
} copied;

enum { MAX_COPIES = 5000 };
static copied copies[MAX_COPIES];
static qlt_counter handled;

static int32_t copy_record(void *ctx, void *record) {
    (void)ctx;
    const ql_record *r = record;
    long i = qlt_counter_get(&handled);
    if (i >= MAX_COPIES) return 0;
    copied *c = &copies[i];
    c->level = r->level;
    c->thread_id = r->thread_id;
    snprintf(c->message, sizeof c->message, "%.*s", (int)r->message_len, r->message);
    /* The strings are NUL-terminated where the lengths say. */
    if (r->file[r->file_len] != '\0' || r->func[r->func_len] != '\0') return 1;
    snprintf(c->file, sizeof c->file, "%s", r->file);
    snprintf(c->func, sizeof c->func, "%s", r->func);
    c->line = r->line;
    c->field_count = r->field_count;
    for (size_t k = 0; k < r->field_count && k < 8; k++) {
        const ql_field *f = &r->fields[k];
        copied_field *o = &c->fields[k];
        snprintf(o->key, sizeof o->key, "%s", f->key);
        o->kind = f->kind;
        switch (f->kind) {
        case QL_FIELD_STR:
            if (f->value.s.ptr[f->value.s.len] != '\0') return 2;
            o->str_len = f->value.s.len < sizeof o->str ? f->value.s.len : sizeof o->str;
            memcpy(o->str, f->value.s.ptr, o->str_len);
            break;
        case QL_FIELD_INT: o->i = f->value.i; break;
        case QL_FIELD_UINT: o->u = f->value.u; break;
        case QL_FIELD_DOUBLE: o->d = f->value.d; break;
        case QL_FIELD_BOOL: o->b = f->value.b; break;
        default: return 3;
        }
    }
    qlt_counter_add(&handled, 1);
    return 0;
}

static ql_queue *q;
static ql_listener *l;

static void setup(void) {
    qlt_counter_init(&handled);
    CHECK_OK(ql_queue_new(0, &q));
    ql_handler h = {NULL, 0, copy_record, NULL, NULL, NULL};
    CHECK_OK(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l));
    CHECK_OK(ql_start(l));
}

static void wait_handled(long n) {
    CHECK_OK(ql_listener_flush(l, 20000));
    CHECK_EQ_INT(qlt_counter_get(&handled), n);
    ql_stats s = qlt_stats(l);
    CHECK_EQ_INT(s.handler_errors, 0);
}

static const copied_field *find(const copied *c, const char *key) {
    for (size_t k = 0; k < c->field_count; k++)
        if (strcmp(c->fields[k].key, key) == 0) return &c->fields[k];
    QLT_FAIL("no field %s", key);
}

/* ------------------------------------------------------------ cases */

static void every_type_arrives(void) {
    static const char bytes[] = "a\0b\xff\n\"";
    ql_field f[] = {
        ql_field_str("user", "bob"),
        ql_field_strn("raw", bytes, sizeof bytes - 1),
        ql_field_int("neg", INT64_MIN),
        ql_field_uint("big", UINT64_MAX),
        ql_field_double("ratio", -0.125),
        ql_field_bool("ok", true),
        ql_field_str("user", "second value of a repeated key"),
    };
    CHECK_OK(ql_context_set(ql_field_str("request_id", "r-1")));
    CHECK_OK(ql_context_set(ql_field_str("ok", "the context loses to the call")));
    long before = qlt_counter_get(&handled);
    CHECK_OK(ql_log_fields(q, QL_LEVEL_WARNING, "app", f, 7, "hello", 5));
    ql_context_clear();
    wait_handled(before + 1);
    const copied *c = &copies[before];
    CHECK_EQ_INT(c->field_count, 7); /* 6 distinct keys of the call + request_id */
    CHECK(strcmp(c->fields[0].key, "user") == 0 && c->fields[0].kind == QL_FIELD_STR);
    CHECK(c->fields[0].str_len == 3 && memcmp(c->fields[0].str, "bob", 3) == 0);
    CHECK(strcmp(c->fields[1].key, "raw") == 0 && c->fields[1].str_len == sizeof bytes - 1);
    CHECK(memcmp(c->fields[1].str, bytes, sizeof bytes - 1) == 0);
    CHECK(c->fields[2].kind == QL_FIELD_INT && c->fields[2].i == INT64_MIN);
    CHECK(c->fields[3].kind == QL_FIELD_UINT && c->fields[3].u == UINT64_MAX);
    CHECK(c->fields[4].kind == QL_FIELD_DOUBLE && c->fields[4].d == -0.125);
    CHECK(strcmp(c->fields[5].key, "ok") == 0 && c->fields[5].kind == QL_FIELD_BOOL &&
          c->fields[5].b);
    CHECK(strcmp(c->fields[6].key, "request_id") == 0 && c->fields[6].str_len == 3);
    /* ql_log gives no source location: empty strings, line 0. */
    CHECK(c->file[0] == '\0' && c->func[0] == '\0' && c->line == 0);
    PASS("fields of every type reach the handler exactly, context fields after them, the "
         "first value of a repeated key kept (the call's over the context's)");
}

typedef struct {
    int index;
    qlt_latch *go;
} worker_arg;

enum { WORKERS = 4, PER_WORKER = 1000 };

static void *worker(void *p) {
    worker_arg *a = p;
    uint32_t tid = (uint32_t)syscall(SYS_gettid);
    if (ql_context_set(ql_field_uint("tid", tid)) != QL_OK) QLT_FAIL("ql_context_set");
    if (ql_context_set(ql_field_int("worker", a->index)) != QL_OK) QLT_FAIL("ql_context_set");
    qlt_latch_wait(a->go);
    for (int i = 0; i < PER_WORKER; i++) {
        /* Change the context while records are in flight. */
        if (ql_context_set(ql_field_int("seq", i)) != QL_OK) QLT_FAIL("ql_context_set");
        if (QL_INFO(q, "worker", "record %d", i) != QL_OK) QLT_FAIL("QL_INFO");
    }
    return NULL;
}

static void context_is_the_logging_threads(void) {
    long before = qlt_counter_get(&handled);
    qlt_latch go;
    qlt_latch_init(&go);
    pthread_t t[WORKERS];
    worker_arg args[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        args[i] = (worker_arg){i, &go};
        QLT_PT(pthread_create(&t[i], NULL, worker, &args[i]));
    }
    qlt_latch_open(&go);
    for (int i = 0; i < WORKERS; i++) QLT_PT(pthread_join(t[i], NULL));
    qlt_latch_destroy(&go);
    wait_handled(before + WORKERS * PER_WORKER);
    for (long i = before; i < before + WORKERS * PER_WORKER; i++) {
        const copied *c = &copies[i];
        CHECK_EQ_INT(c->field_count, 3);
        const copied_field *tid = find(c, "tid");
        if (tid->u != c->thread_id)
            QLT_FAIL("record of thread %u carries the context of thread %llu", c->thread_id,
                     (unsigned long long)tid->u);
        int seq = atoi(c->message + strlen("record "));
        CHECK_EQ_INT(find(c, "seq")->i, seq);
    }
    /* This thread's context is its own: empty. */
    CHECK_EQ_STATUS(ql_context_remove("tid"), QL_ERR_EMPTY);
    PASS("%d threads logging concurrently with changing context fields: each of %d records "
         "carries the context its own thread had when it logged it",
         WORKERS, WORKERS * PER_WORKER);
}

static int evaluated;
static int side_effect(void) { return ++evaluated; }

static void macros_record_the_call_site(void) {
    long before = qlt_counter_get(&handled);
    CHECK_OK(ql_queue_set_level(q, QL_LEVEL_INFO));
    CHECK_OK(QL_DEBUG(q, "app", "never formatted %d", side_effect()));
    CHECK_EQ_INT(evaluated, 0);
    const uint32_t line = __LINE__ + 1;
    CHECK_OK(QL_WARNING(q, "app", "formatted %d", side_effect()));
    CHECK_EQ_INT(evaluated, 1);
    ql_field f[] = {ql_field_int("n", 7)};
    CHECK_OK(QL_LOG_FIELDS(q, QL_LEVEL_ERROR, "app", f, 1, "with %s", "fields"));
    CHECK_OK(QL_INFO(q, "app", "no arguments"));
    CHECK_OK(QL_CRITICAL(q, "app", "critical"));
    CHECK_OK(ql_queue_set_level(q, QL_LEVEL_ALL));
    wait_handled(before + 4);
    const copied *c = &copies[before];
    CHECK(strcmp(c->message, "formatted 1") == 0);
    CHECK(strstr(c->file, "test_fields.c") != NULL);
    CHECK_EQ_INT(c->line, line);
    CHECK(strcmp(c->func, "macros_record_the_call_site") == 0);
    CHECK_EQ_INT(c->level, QL_LEVEL_WARNING);
    c = &copies[before + 1];
    CHECK(strcmp(c->message, "with fields") == 0 && c->level == QL_LEVEL_ERROR);
    CHECK(c->field_count == 1 && c->fields[0].i == 7 && c->line == line + 3);
    CHECK(strcmp(copies[before + 2].message, "no arguments") == 0);
    CHECK_EQ_INT(copies[before + 3].level, QL_LEVEL_CRITICAL);
    PASS("QL_* macros record file, line and function, and below the level evaluate nothing");
}

static void bad_input_is_refused_whole(void) {
    size_t len_before = qlt_queue_len(q);
    ql_stats s0 = qlt_stats(l);
    ql_field good = ql_field_int("k", 1);
    ql_field null_key = good;
    null_key.key = NULL;
    ql_field bad_kind = good;
    bad_kind.kind = 0;
    ql_field null_str = ql_field_strn("k", NULL, 3);
    ql_field empty_null = ql_field_strn("k", NULL, 0);
    CHECK_EQ_STATUS(ql_log_fields(q, 20, "a", &null_key, 1, "m", 1), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_log_fields(q, 20, "a", &null_str, 1, "m", 1), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_log_fields(q, 20, "a", NULL, 2, "m", 1), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_log_fields(q, 20, "a", &bad_kind, 1, "m", 1), QL_ERR_INVALID);
    static const char *bad_keys[] = {"", "a b", "a=b", "quote\"", "br]", "new\nline",
                                     "\xc3\xa9t\xc3\xa9", "x12345678901234567890123456789012"};
    for (size_t i = 0; i < sizeof bad_keys / sizeof *bad_keys; i++) {
        ql_field f = ql_field_int(bad_keys[i], 1);
        CHECK_EQ_STATUS(ql_log_fields(q, 20, "a", &f, 1, "m", 1), QL_ERR_INVALID);
        CHECK_EQ_STATUS(ql_context_set(f), QL_ERR_INVALID);
    }
    ql_field many[QL_FIELDS_MAX + 1];
    char keys[QL_FIELDS_MAX + 1][8];
    for (int i = 0; i <= QL_FIELDS_MAX; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        many[i] = ql_field_int(keys[i], i);
    }
    CHECK_EQ_STATUS(ql_log_fields(q, 20, "a", many, QL_FIELDS_MAX + 1, "m", 1), QL_ERR_INVALID);
    /* A count past the limit is refused before any field is read (a count
     * larger than the array must not make the library read past it). */
    CHECK_EQ_STATUS(ql_log_fields(q, 20, "a", &null_key, QL_FIELDS_MAX + 1, "m", 1),
                    QL_ERR_INVALID);
    CHECK_EQ_STATUS(ql_log_fields(q, 20, "a", &good, SIZE_MAX, "m", 1), QL_ERR_INVALID);
    CHECK_EQ_STATUS(ql_log_src(NULL, 20, "a", NULL, &good, 1, "m", 1, NULL), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_context_set(null_key), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_context_set(bad_kind), QL_ERR_INVALID);
    CHECK_EQ_STATUS(ql_context_remove(NULL), QL_ERR_NULL);
    CHECK_EQ_INT(qlt_queue_len(q), len_before);
    ql_stats s1 = qlt_stats(l);
    CHECK_EQ_INT(s1.handled, s0.handled);
    /* The limits themselves are fine: 64 fields, a 32-byte key, NULL with 0. */
    long before = qlt_counter_get(&handled);
    many[0] = ql_field_int("x1234567890123456789012345678901", 0);
    CHECK_OK(ql_log_fields(q, 20, "a", many, QL_FIELDS_MAX, "m", 1));
    CHECK_OK(ql_log_fields(q, 20, "a", &empty_null, 1, "m", 1));
    CHECK_OK(ql_log_fields(q, 20, "a", NULL, 0, "m", 1));
    wait_handled(before + 3);
    CHECK_EQ_INT(copies[before].field_count, QL_FIELDS_MAX);
    PASS("NULL keys and strings, bad keys and kinds, %d fields: refused with a status, "
         "nothing queued; the limits themselves pass",
         QL_FIELDS_MAX + 1);
}

/* ------------------------------------------------------ line formats */

static char dir[] = "/tmp/ql-fields-XXXXXX";

static void file_lines(void) {
    char json[300], text[300], script[300];
    snprintf(json, sizeof json, "%s/json.log", dir);
    snprintf(text, sizeof text, "%s/text.log", dir);
    ql_queue *fq = NULL;
    CHECK_OK(ql_queue_new(64, &fq));
    ql_handler h[2];
    ql_handler_options o = ql_handler_options_default();
    o.format = QL_FORMAT_JSON;
    CHECK_OK(ql_file_handler(json, &o, &h[0]));
    o = ql_handler_options_default();
    o.pattern = "{levelno} {file}:{line} {func} {message} [{fields}]";
    CHECK_OK(ql_file_handler(text, &o, &h[1]));
    ql_listener *fl = NULL;
    CHECK_OK(ql_listener_new_with_queue(fq, h, 2, NULL, false, &fl));
    CHECK_OK(ql_start(fl));
    static const char hostile[] = "q\"\\\n\x01\xff}{\"level\":\"CRITICAL\"";
    ql_field f[] = {
        ql_field_strn("s", hostile, sizeof hostile - 1),
        ql_field_str("message", "a field named message"),
        ql_field_int("_x", -1),
        ql_field_uint("u", UINT64_MAX),
        ql_field_double("nan", NAN),
        ql_field_double("d", 1e300),
        ql_field_bool("b", false),
    };
    CHECK_OK(ql_context_set(ql_field_str("request_id", "r 9")));
    const uint32_t line = __LINE__ + 1;
    CHECK_OK(QL_LOG_FIELDS(fq, QL_LEVEL_INFO, "app", f, 7, "hello %s", "json"));
    ql_context_clear();
    CHECK_OK(ql_log(fq, QL_LEVEL_INFO, "app", "plain", 5));
    CHECK_OK(ql_stop(fl));
    CHECK_OK(ql_listener_free(fl));
    ql_queue_free(fq);

    snprintf(script, sizeof script, "%s/check.py", dir);
    FILE *p = fopen(script, "w");
    CHECK(p != NULL);
    fprintf(p,
            "import json, sys\n"
            "lines = open(sys.argv[1], 'rb').read().split(b'\\n')\n"
            "assert lines[-1] == b'' and len(lines) == 3, lines\n"
            "a, b = json.loads(lines[0]), json.loads(lines[1])\n"
            "assert a['message'] == 'hello json', a\n"
            "assert a['file'].endswith('test_fields.c') and a['line'] == %u, a\n"
            "assert a['func'] == 'file_lines', a\n"
            "assert a['s'] == 'q\"\\\\\\n\\x01\\ufffd}{\"level\":\"CRITICAL\"', repr(a['s'])\n"
            "assert a['_message'] == 'a field named message' and a['__x'] == -1, a\n"
            "assert a['u'] == 18446744073709551615 and a['nan'] == 'NaN', a\n"
            "assert a['d'] == 1e300 and a['b'] is False and a['request_id'] == 'r 9', a\n"
            "want = ['time','level','levelno','thread','logger','message','file','line','func',\n"
            "        's','_message','__x','u','nan','d','b','request_id']\n"
            "assert list(a) == want, list(a)\n"
            "assert list(b) == want[:6], list(b)\n"
            "t = open(sys.argv[2], 'rb').read().split(b'\\n')\n"
            "assert t[0].startswith(b'20 ') and b'test_fields.c:%u file_lines hello json [s=\"q\\\\\"'"
            " in t[0], t[0]\n"
            "assert t[0].endswith(b' message=\"a field named message\" _x=-1 "
            "u=18446744073709551615 nan=NaN d=1e300 b=false request_id=\"r 9\"]'), t[0]\n"
            "assert t[1] == b'20 :0  plain []' and t[2] == b'', t\n",
            line, line);
    CHECK(fclose(p) == 0);
    char cmd[1000];
    snprintf(cmd, sizeof cmd, "python3 %s %s %s", script, json, text);
    if (system("python3 -c 'import json' 2>/dev/null") != 0) {
        printf("SKIP: python3 is missing, so the JSON lines are not parsed\n");
        return;
    }
    CHECK(system(cmd) == 0);
    PASS("JSON lines carry file/line/func and every field as a key (fixed keys never "
         "overwritten: message -> _message, _x -> __x), parsed by python3; the text pattern's "
         "{file}:{line} {func} [{fields}]");
}


/* ------------------------------------------------- review: attacks */

static void macros_report_a_null_queue(void) {
    /* ql_logf(NULL, ...) says QL_ERR_NULL; the macros said QL_OK (a silent
     * drop): ql_queue_enabled(NULL) is false, so they took the "below the
     * level" branch. */
    CHECK_EQ_STATUS(ql_logf(NULL, QL_LEVEL_INFO, "app", "x %d", 1), QL_ERR_NULL);
    evaluated = 0;
    CHECK_EQ_STATUS(QL_INFO(NULL, "app", "x %d", side_effect()), QL_ERR_NULL);
    CHECK_EQ_STATUS(QL_DEBUG(NULL, "app", "x"), QL_ERR_NULL);
    ql_field f[] = {ql_field_int("n", 1)};
    CHECK_EQ_STATUS(QL_LOG_FIELDS(NULL, QL_LEVEL_ERROR, "app", f, 1, "x"), QL_ERR_NULL);
    CHECK_EQ_INT(evaluated, 0);
    PASS("QL_INFO, QL_DEBUG and QL_LOG_FIELDS on a NULL queue return QL_ERR_NULL (as ql_logf), "
         "evaluating no argument");
}

/* A bool given as a byte other than 0 and 1 (a field filled through the
 * wrong union member): C reads it as true; the library must not treat it
 * as an invalid Rust bool (it gave false for 2 and true for 255). */
static void bool_bytes_are_read_as_c_reads_them(void) {
    ql_field f[] = {ql_field_bool("two", true), ql_field_bool("ff", true),
                    ql_field_bool("zero", true)};
    f[0].value.u = 0; f[0].value.b = 0;
    memset(&f[0].value, 2, 1);
    memset(&f[1].value, 0xff, 1);
    memset(&f[2].value, 0, 1);
    long before = qlt_counter_get(&handled);
    CHECK_OK(ql_log_fields(q, QL_LEVEL_INFO, "app", f, 3, "bools", 5));
    wait_handled(before + 1);
    const copied *c = &copies[before];
    CHECK_EQ_INT(c->field_count, 3);
    unsigned char b0, b1, b2;
    memcpy(&b0, &c->fields[0].b, 1);
    memcpy(&b1, &c->fields[1].b, 1);
    memcpy(&b2, &c->fields[2].b, 1);
    CHECK_EQ_INT(b0, 1);
    CHECK_EQ_INT(b1, 1);
    CHECK_EQ_INT(b2, 0);
    PASS("a bool field whose byte is 2 or 0xff arrives as true (1), 0 as false");
}

/* Context calls from a thread that is exiting: a pthread key destructor
 * runs after the thread's Rust thread-locals are destroyed. */
static pthread_key_t exit_key;
static ql_status exit_set, exit_remove;
static ql_status exit_log;

static void at_thread_exit(void *arg) {
    (void)arg;
    exit_set = ql_context_set(ql_field_str("late", "x"));
    exit_remove = ql_context_remove("req");
    ql_context_clear();
    exit_log = ql_log(q, QL_LEVEL_INFO, "app", "from a key destructor", 21);
}

static void *exiting_thread(void *arg) {
    (void)arg;
    if (ql_context_set(ql_field_str("req", "r-7")) != QL_OK) QLT_FAIL("ql_context_set");
    if (pthread_setspecific(exit_key, &exit_key) != 0) QLT_FAIL("pthread_setspecific");
    return NULL;
}

static void context_during_thread_exit(void) {
    QLT_PT(pthread_key_create(&exit_key, at_thread_exit));
    exit_set = exit_remove = exit_log = -1;
    long before = qlt_counter_get(&handled);
    pthread_t t;
    QLT_PT(pthread_create(&t, NULL, exiting_thread, NULL));
    QLT_PT(pthread_join(t, NULL));
    QLT_PT(pthread_key_delete(exit_key));
    /* Not QL_ERR_PANIC (with a panic message on stderr): the thread's
     * context is gone, so nothing can be set and there is nothing to
     * remove. */
    CHECK_EQ_STATUS(exit_set, QL_ERR_UNSUPPORTED);
    CHECK_EQ_STATUS(exit_remove, QL_ERR_EMPTY);
    CHECK_OK(exit_log);
    wait_handled(before + 1);
    CHECK_EQ_INT(copies[before].field_count, 0);
    PASS("from a pthread key destructor (thread-locals gone): ql_context_set gives "
         "QL_ERR_UNSUPPORTED, ql_context_remove QL_ERR_EMPTY, ql_context_clear nothing, "
         "ql_log logs without context; no panic");
}

/* Records a program made itself, handed to built-in handlers through a
 * vtable queue: a field key the library would have refused (a quote, a
 * newline, empty, NULL), an unknown kind, or NULL text with a length,
 * would forge JSON keys or a second line, or crash. Such a record is
 * refused by the handler: EINVAL, counted received and lost, the file
 * keeps only whole valid lines. */
static void program_records_with_bad_fields_are_refused(void) {
    char json[300], logfmt[300], script[300];
    snprintf(json, sizeof json, "%s/program.json", dir);
    snprintf(logfmt, sizeof logfmt, "%s/program.logfmt", dir);
    ql_handler h[2];
    ql_handler_options o = ql_handler_options_default();
    o.format = QL_FORMAT_JSON;
    CHECK_OK(ql_file_handler(json, &o, &h[0]));
    o.format = QL_FORMAT_LOGFMT;
    CHECK_OK(ql_file_handler(logfmt, &o, &h[1]));
    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    ql_listener *pl = NULL;
    CHECK_OK(ql_listener_new(&vt, h, 2, NULL, false, &pl));

    enum { BAD = 7 };
    static ql_field forged[BAD];
    forged[0] = ql_field_int("x\":1,\"level\":\"CRITICAL", 1);
    forged[1] = ql_field_str("new\nline", "v");
    forged[2] = ql_field_int("", 1);
    forged[3] = ql_field_int("k", 1);
    forged[3].key = NULL;
    forged[4] = ql_field_int("k", 1);
    forged[4].kind = 99;
    forged[5] = ql_field_strn("k", NULL, 5);
    forged[6] = ql_field_int("x12345678901234567890123456789012", 1); /* 33 bytes */
    static ql_record bad[BAD + 2];
    static ql_field good[2];
    good[0] = ql_field_str("user", "bob");
    good[1] = ql_field_int("n", 3);
    for (int i = 0; i < BAD + 2; i++) {
        memset(&bad[i], 0, sizeof bad[i]);
        bad[i].level = QL_LEVEL_WARNING;
        bad[i].logger = "app";
        bad[i].logger_len = 3;
        bad[i].message = "m";
        bad[i].message_len = 1;
        if (i < BAD) {
            bad[i].fields = &forged[i];
            bad[i].field_count = 1;
        }
    }
    bad[BAD].logger = NULL; /* NULL text with a length: refused, not a crash */
    bad[BAD + 1].fields = good; /* a count no record of the library has: never read */
    bad[BAD + 1].field_count = SIZE_MAX;
    ql_record ok;
    memset(&ok, 0, sizeof ok);
    ok.level = QL_LEVEL_INFO;
    ok.message = "fine"; /* NULL logger with length 0: "" */
    ok.message_len = 4;
    ok.fields = good;
    ok.field_count = 2;
    ok.file = NULL; /* a record made with the old layout in mind */
    ok.file_len = 7;
    for (int i = 0; i < BAD + 2; i++) qlt_cq_put(&cq, &bad[i]);
    qlt_cq_put(&cq, &ok);
    CHECK_OK(ql_start(pl));
    CHECK_EQ_STATUS(ql_stop(pl), QL_ERR_LOST);
    for (size_t i = 0; i < 2; i++) {
        ql_handler_stats hs;
        CHECK_OK(ql_listener_handler_stats(pl, i, &hs));
        CHECK_EQ_INT(hs.received, BAD + 3);
        CHECK_EQ_INT(hs.errors, BAD + 2);
        CHECK_EQ_INT(hs.sink.written, 1);
        CHECK_EQ_INT(hs.sink.lost, BAD + 2);
        CHECK_EQ_INT(hs.sink.pending, 0);
    }
    CHECK_OK(ql_listener_free(pl));
    qlt_cq_destroy(&cq);

    snprintf(script, sizeof script, "%s/program.py", dir);
    FILE *p = fopen(script, "w");
    CHECK(p != NULL);
    fprintf(p, "import json, sys\n"
               "lines = open(sys.argv[1], 'rb').read().split(b'\\n')\n"
               "assert len(lines) == 2 and lines[1] == b'', lines\n"
               "a = json.loads(lines[0])\n"
               "assert a['message'] == 'fine' and a['logger'] == '' and a['user'] == 'bob', a\n"
               "assert a['n'] == 3 and 'file' not in a, a\n"
               "t = open(sys.argv[2], 'rb').read().split(b'\\n')\n"
               "assert len(t) == 2 and t[0].endswith(b' msg=fine user=bob n=3'), t\n");
    CHECK(fclose(p) == 0);
    if (system("python3 -c 'import json' 2>/dev/null") != 0) {
        printf("SKIP: python3 is missing, so the JSON lines are not parsed\n");
        return;
    }
    char cmd[1000];
    snprintf(cmd, sizeof cmd, "python3 %s %s %s", script, json, logfmt);
    CHECK(system(cmd) == 0);
    PASS("records a program made, with a forging key (quote, newline, empty, NULL, 33 bytes), "
         "an unknown kind, NULL text with a length or SIZE_MAX fields: refused by the JSON and logfmt handlers "
         "(EINVAL, received = written + lost, QL_ERR_LOST), no crash; the valid record is one "
         "valid line each");
}

int main(void) {
    qlt_begin("test_fields");
    setup();
    every_type_arrives();
    context_is_the_logging_threads();
    macros_record_the_call_site();
    bad_input_is_refused_whole();
    macros_report_a_null_queue();
    bool_bytes_are_read_as_c_reads_them();
    context_during_thread_exit();
    CHECK_OK(ql_stop(l));
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    CHECK(mkdtemp(dir) != NULL);
    file_lines();
    program_records_with_bad_fields_are_refused();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return qlt_end();
}
