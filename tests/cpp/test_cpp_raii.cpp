// Tests of queue_listener.hpp, the C++ RAII layer. Each check prints what
// it checked; the program exits 1 when any failed.
//
// No sleep is used to wait for the listener: stop(), flush(), the
// listener's destructor (which stops it), thread joins and condition
// variables (with a generous deadline, so a bug fails instead of hanging).
#include "queue_listener.hpp"

#include <cerrno>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <errno.h>
#include <sys/wait.h>
#include <unistd.h>

// Defined in test_cpp_raii_tu2.cpp (a second translation unit).
ql::handler tu2_counting_handler(std::atomic<long> &count, int level);
long tu2_log_and_count(ql::queue &q, int records);

namespace {

int g_checks = 0;
int g_failures = 0;
const char *g_test = "";

void check_that(bool ok, const char *what, const char *file, int line) {
    ++g_checks;
    if (!ok) ++g_failures;
    std::printf("%s %s: %s", ok ? "ok  " : "FAIL", g_test, what);
    if (!ok) std::printf("  (%s:%d)", file, line);
    std::printf("\n");
}
#define CHECK(cond) check_that((cond), #cond, __FILE__, __LINE__)

// Runs `f`, expecting a ql::error with `want`; checks what() too.
template <typename F>
void check_throws(ql_status want, const char *what, F &&f) {
    ql_status got = QL_OK;
    std::string message;
    try {
        f();
    } catch (const ql::error &e) {
        got = e.status();
        message = e.what();
    }
    ++g_checks;
    bool ok = got == want && message.find(ql_status_str(want)) != std::string::npos;
    if (!ok) ++g_failures;
    std::printf("%s %s: %s throws ql::error(%s) [got %d: \"%s\"]\n", ok ? "ok  " : "FAIL", g_test, what,
                ql_status_str(want), static_cast<int>(got), message.c_str());
}

constexpr auto kDeadline = std::chrono::seconds(30);

// A counter handlers bump on the listener thread and the test waits on.
struct waitable_count {
    std::mutex m;
    std::condition_variable cv;
    long n = 0;

    void bump() {
        std::lock_guard<std::mutex> lock(m);
        ++n;
        cv.notify_all();
    }
    bool wait_for_at_least(long want) {
        std::unique_lock<std::mutex> lock(m);
        return cv.wait_for(lock, kDeadline, [&] { return n >= want; });
    }
    long get() {
        std::lock_guard<std::mutex> lock(m);
        return n;
    }
};

// ------------------------------------------------------------------ tests

// The listener starts in its constructor; its destructor returns once every
// record logged in its scope has been handled, in order per producer.
void test_raii_scope() {
    g_test = "raii_scope";
    constexpr int kProducers = 2, kPerProducer = 5000;
    ql::queue q(64);  // small: producers block on it now and then
    long count = 0, out_of_order = 0, bad_records = 0;
    int next[kProducers] = {0, 0};
    bool was_running = false;
    {
        ql::listener l(q, {[&](const ql_record &r) {
                           ++count;
                           int p = -1, i = -1;
                           if (std::sscanf(r.message, "p%d i%d", &p, &i) != 2 || p < 0 || p >= kProducers) {
                               ++bad_records;
                               return;
                           }
                           if (i != next[p]) ++out_of_order;
                           next[p] = i + 1;
                       }});
        was_running = l.running();
        std::vector<std::thread> producers;
        for (int p = 0; p < kProducers; ++p)
            producers.emplace_back([&q, p] {
                for (int i = 0; i < kPerProducer; ++i) q.logf(QL_LEVEL_INFO, "raii", "p%d i%d", p, i);
            });
        for (auto &t : producers) t.join();
    }
    CHECK(was_running);
    CHECK(count == kProducers * kPerProducer);
    CHECK(bad_records == 0);
    CHECK(out_of_order == 0);
    CHECK(q.size() == 0);
}

// stop() then start() any number of times; records logged while stopped
// wait on the queue for the next run.
void test_stop_restart() {
    g_test = "stop_restart";
    ql::queue q(16);
    long handled = 0;
    ql::listener l(q, {[&](void *) { ++handled; }});
    long expected = 0;
    for (int cycle = 0; cycle < 3; ++cycle) {
        q.log(QL_LEVEL_INFO, "cycle", "while running");
        ++expected;
        l.stop();
        CHECK(!l.running());
        CHECK(handled == expected);
        l.stop();  // not running: nothing happens
        q.log(QL_LEVEL_INFO, "cycle", "while stopped 1");
        q.log(QL_LEVEL_INFO, "cycle", "while stopped 2");
        CHECK(q.size() == 2);
        CHECK(handled == expected);  // nobody takes them
        l.start();
        CHECK(l.running());
        expected += 2;
    }
    CHECK(l.stop(std::chrono::seconds(30)));  // timed stop: true when stopped in time
    CHECK(!l.running());
    CHECK(handled == expected);
    CHECK(l.stats().handled == static_cast<uint64_t>(expected));
    l.start();  // the destructor stops it again
}

// A handler that throws is counted as a failure; the listener, the other
// handlers and the next records go on.
void test_throwing_handler() {
    g_test = "throwing_handler";
    ql::queue q(32);
    constexpr int kRecords = 100;
    long counted = 0, thrower_calls = 0, after_throw = 0;
    ql::listener l(q, {[&](const ql_record &r) {
                           ++thrower_calls;
                           int i = std::atoi(r.message);
                           if (i % 4 == 1) throw std::runtime_error("handler failed");
                           if (i % 4 == 3) throw 42;  // not even a std::exception
                       },
                       [&](const ql_record &r) {
                           ++counted;
                           return std::atoi(r.message) % 10 == 0 ? 5 : 0;  // nonzero code: a failure
                       },
                       [&](void *) { ++after_throw; }});
    for (int i = 0; i < kRecords; ++i) q.logf(QL_LEVEL_INFO, "t", "%d", i);
    CHECK(l.flush(std::chrono::seconds(30)));
    CHECK(l.running());  // still going after 50 exceptions
    ql_stats s = l.stats();
    CHECK(s.handled == kRecords);
    CHECK(s.handler_errors == kRecords / 2 + kRecords / 10);
    CHECK(thrower_calls == kRecords);
    CHECK(counted == kRecords);
    CHECK(after_throw == kRecords);
    q.log(QL_LEVEL_INFO, "t", "1");  // one more exception, then a clean stop
    l.stop();
    CHECK(l.stats().handled == kRecords + 1);
    CHECK(l.stats().handler_errors == kRecords / 2 + kRecords / 10 + 1);
}

// The program's own queue: a mutex + condition variable deque. Its methods
// can be told to throw.
class test_queue : public ql::queue_interface {
public:
    std::atomic<int> dequeue_throws{0};       // the next N dequeue calls throw
    std::atomic<bool> sentinel_throws{false};  // enqueue_sentinel throws
    std::atomic<long> task_done_records{0}, task_done_sentinels{0};

    void push(int *record) {
        std::lock_guard<std::mutex> lock(m_);
        items_.push_back(record);
        cv_.notify_one();
    }

    ql_dequeue_result dequeue(bool block, void **record_out) override {
        if (dequeue_throws.load() > 0) {
            dequeue_throws.fetch_sub(1);
            throw std::runtime_error("dequeue failed");
        }
        std::unique_lock<std::mutex> lock(m_);
        if (!block && items_.empty()) return QL_DEQUEUE_EMPTY;
        cv_.wait(lock, [&] { return !items_.empty(); });
        int *item = items_.front();
        items_.pop_front();
        if (item == nullptr) return QL_DEQUEUE_SENTINEL;
        *record_out = item;
        return QL_DEQUEUE_RECORD;
    }

    ql_enqueue_result enqueue_sentinel() override {
        if (sentinel_throws.load()) throw std::logic_error("enqueue_sentinel failed");
        push(nullptr);
        return QL_ENQUEUE_OK;
    }

    void task_done(void *record) override {
        (record == nullptr ? task_done_sentinels : task_done_records).fetch_add(1);
        throw std::runtime_error("task_done failed");  // swallowed by the trampoline
    }

    int record_level(void *record) override {
        int level = *static_cast<int *>(record);
        if (level < 0) throw std::out_of_range("no level");  // then every handler gets it
        return level;
    }

private:
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<int *> items_;  // nullptr is the sentinel
};

// A queue_interface whose dequeue throws: counted as a dequeue error, and
// the listener recovers. One whose enqueue_sentinel throws: stop() throws
// QL_ERR_QUEUE and the listener keeps running. task_done's exceptions are
// swallowed, record_level gives handler levels.
void test_queue_interface() {
    g_test = "queue_interface";
    test_queue tq;
    tq.dequeue_throws = 2;
    std::vector<int> levels;  // the records: each an int holding its level
    for (int i = 0; i < 20; ++i) levels.push_back(i % 2 == 0 ? QL_LEVEL_INFO : QL_LEVEL_ERROR);
    levels.push_back(-1);  // record_level throws for this one
    waitable_count all;
    long warnings = 0;
    {
        // "all" comes last: once it has seen a record, so has "warnings".
        ql::listener l(tq, {ql::handler([&](void *) { ++warnings; }, QL_LEVEL_WARNING),
                            ql::handler([&](void *) { all.bump(); })},
                       /*respect_handler_level=*/true);
        for (int &level : levels) tq.push(&level);
        CHECK(all.wait_for_at_least(static_cast<long>(levels.size())));
        CHECK(l.stats().dequeue_errors == 2);  // counted before the first record was taken
        CHECK(l.running());
        CHECK(warnings == 10 + 1);  // the ERROR records, and the one without a level

        check_throws(QL_ERR_UNSUPPORTED, "flush() on a queue_interface",
                     [&] { l.flush(std::chrono::seconds(1)); });

        tq.sentinel_throws = true;
        check_throws(QL_ERR_QUEUE, "stop() when enqueue_sentinel throws", [&] { l.stop(); });
        CHECK(l.running());
        int one_more = QL_LEVEL_INFO;
        tq.push(&one_more);
        CHECK(all.wait_for_at_least(static_cast<long>(levels.size()) + 1));
        tq.sentinel_throws = false;
        l.stop();
        CHECK(!l.running());
        CHECK(l.stats().handled == levels.size() + 1);
        CHECK(tq.task_done_records.load() == static_cast<long>(levels.size()) + 1);
        CHECK(tq.task_done_sentinels.load() == 1);

        // Restart on a queue that fails once more: recovers again.
        tq.dequeue_throws = 1;
        l.start();
        int last = QL_LEVEL_CRITICAL;
        tq.push(&last);
        CHECK(all.wait_for_at_least(static_cast<long>(levels.size()) + 2));
        CHECK(l.stats().dequeue_errors == 3);
    }  // ~listener stops it: the queue must outlive the listener
    CHECK(tq.task_done_sentinels.load() == 2);
}

// ql::error carries the status of the failed call.
void test_errors() {
    g_test = "errors";
    check_throws(QL_ERR_INVALID, "ql::queue over QL_QUEUE_MAX_CAPACITY",
                 [] { ql::queue q(static_cast<size_t>(QL_QUEUE_MAX_CAPACITY) + 1); });
    {
        ql_queue_options options = ql_queue_options_default();
        options.overflow = 99;
        check_throws(QL_ERR_INVALID, "ql::queue with an unknown overflow policy", [&] { ql::queue q(options); });
    }

    ql::queue q(8);
    ql::listener l(q, {[](void *) {}});
    check_throws(QL_ERR_ALREADY_STARTED, "start() while running", [&] { l.start(); });
    CHECK(l.running());
    l.stop();
    check_throws(QL_ERR_NOT_RUNNING, "flush() on a stopped listener", [&] { l.flush(std::chrono::seconds(1)); });
    // The crash flush: accepted on a built-in queue, an unknown flag refused.
    l.flush_on_crash();
    check_throws(QL_ERR_INVALID, "flush_on_crash() with an unknown flag", [&] { l.flush_on_crash(64); });

    // From inside a handler: stop() would wait for itself, start() is refused.
    {
        std::atomic<ql::listener *> self{nullptr};
        ql_status stop_status = QL_OK, start_status = QL_OK, flush_status = QL_OK;
        ql::listener inner(q, {[&](void *) {
                              ql::listener *me = self.load();
                              try {
                                  me->stop();
                              } catch (const ql::error &e) {
                                  stop_status = e.status();
                              }
                              try {
                                  me->start();
                              } catch (const ql::error &e) {
                                  start_status = e.status();
                              }
                              try {
                                  me->flush(std::chrono::seconds(1));
                              } catch (const ql::error &e) {
                                  flush_status = e.status();
                              }
                          }});
        self.store(&inner);
        q.log(QL_LEVEL_INFO, "self", "call the listener from its own handler");
        inner.stop();
        CHECK(stop_status == QL_ERR_WOULD_DEADLOCK);
        CHECK(start_status == QL_ERR_ALREADY_STARTED);
        CHECK(flush_status == QL_ERR_WOULD_DEADLOCK);
    }

    // A queue whose overflow policy refuses: log/put return false, not throw.
    {
        ql_queue_options options = ql_queue_options_default();
        options.capacity = 2;
        options.overflow = QL_OVERFLOW_DROP_NEWEST;
        ql::queue small(options);
        CHECK(small.log(QL_LEVEL_INFO, "drop", "1"));
        CHECK(small.logf(QL_LEVEL_INFO, "drop", "%d", 2));
        CHECK(!small.log(QL_LEVEL_INFO, "drop", "3"));  // refused, dropped, counted
        int x = 0;
        CHECK(!small.put(&x));  // refused, still ours
        CHECK(!small.put_nowait(&x));
        long got = 0;
        ql::listener drain(small, {[&](void *) { ++got; }});
        drain.stop();
        CHECK(got == 2);
        CHECK(drain.stats().dropped == 1);
    }

    // A moved-from queue or listener: every call throws QL_ERR_NULL.
    ql::queue moved_to(std::move(q));
    check_throws(QL_ERR_NULL, "log() on a moved-from queue", [&] { q.log(QL_LEVEL_INFO, "x", "y"); });
    check_throws(QL_ERR_NULL, "a listener on a moved-from queue", [&] { ql::listener bad(q, {[](void *) {}}); });
    ql::listener moved_l(std::move(l));
    check_throws(QL_ERR_NULL, "running() on a moved-from listener", [&] { static_cast<void>(l.running()); });
    CHECK(!moved_l.running());
}

// The listener holds its own reference to the built-in queue: the
// ql::queue may go first.
void test_queue_destroyed_first() {
    g_test = "queue_destroyed_first";
    auto q = std::make_unique<ql::queue>(16);
    long count = 0;
    ql::listener l(*q, {[&](void *) { ++count; }});
    for (int i = 0; i < 100; ++i) q->logf(QL_LEVEL_INFO, "gone", "record %d", i);
    q->log(QL_LEVEL_INFO, "gone", "not yet handled, perhaps");
    q.reset();  // the program's reference is gone; the listener's stays
    CHECK(l.flush(std::chrono::seconds(30)));
    CHECK(count == 101);
    l.stop();
    l.start();  // still usable
    l.stop();
    CHECK(l.stats().handled == 101);

    // A temporary queue: nothing can log to it, but it is safe.
    long none = 0;
    ql::listener on_temporary(ql::queue(4), {[&](void *) { ++none; }});
    CHECK(on_temporary.running());
    on_temporary.stop();
    CHECK(none == 0);
}

// The header in a second translation unit: its functions work with this one's.
void test_second_translation_unit() {
    g_test = "second_translation_unit";
    ql::queue q(32);
    CHECK(tu2_log_and_count(q, 250) == 250);
    std::atomic<long> warnings{0}, everything{0};
    {
        ql::listener l(q, {tu2_counting_handler(warnings, QL_LEVEL_WARNING), tu2_counting_handler(everything, 0)},
                       true);
        for (int i = 0; i < 30; ++i) q.log(i % 3 == 0 ? QL_LEVEL_WARNING : QL_LEVEL_DEBUG, "tu1", "x");
    }
    CHECK(warnings.load() == 10);
    CHECK(everything.load() == 30);
}

// Records as handlers see them; log's string_view arguments.
void test_record_contents() {
    g_test = "record_contents";
    ql::queue q(8);
    std::vector<std::string> loggers, messages;
    std::vector<int> levels;
    std::vector<void *> users;
    int user_value = 7;
    const std::string long_logger(300, 'L');
    {
        ql::listener l(q, {[&](const ql_record &r) {
                           loggers.emplace_back(r.logger, r.logger_len);
                           messages.emplace_back(r.message, r.message_len);
                           levels.push_back(r.level);
                           users.push_back(r.user);
                       }});
        q.logf(QL_LEVEL_ERROR, "app.db", "value=%d %s", 42, "ok");
        q.log(QL_LEVEL_DEBUG, "", std::string_view("a\0b", 3));  // empty logger: root; NUL kept
        q.log(QL_LEVEL_INFO, long_logger, "long logger name", &user_value);
        std::string not_terminated = "app.netXXXX";
        q.log(QL_LEVEL_WARNING, std::string_view(not_terminated).substr(0, 7), "cut view");
        q.set_level(QL_LEVEL_INFO);
        CHECK(!q.enabled(QL_LEVEL_DEBUG));
        CHECK(q.log(QL_LEVEL_DEBUG, "app", "below the queue level: skipped, still true"));
        q.set_level(QL_LEVEL_ALL);
    }
    CHECK(loggers.size() == 4);
    if (loggers.size() != 4) return;
    CHECK(loggers[0] == "app.db" && messages[0] == "value=42 ok" && levels[0] == QL_LEVEL_ERROR);
    CHECK(loggers[1] == "root" && messages[1] == std::string("a\0b", 3) && levels[1] == QL_LEVEL_DEBUG);
    CHECK(loggers[2] == long_logger && users[2] == &user_value);
    CHECK(loggers[3] == "app.net" && messages[3] == "cut view");
    CHECK(users[0] == nullptr);
}

// Fields in their C++ form, a scoped context field, and the call-site
// macros from C++.
void test_fields() {
    g_test = "fields";
    ql::queue q(8);
    std::vector<std::string> seen;  // "key=kind:value" per field, "|" between records
    std::vector<std::string> sources;
    {
        ql::listener l(q, {[&](const ql_record &r) {
                           std::string out;
                           for (size_t i = 0; i < r.field_count; i++) {
                               const ql_field &f = r.fields[i];
                               out += f.key;
                               switch (f.kind) {
                               case QL_FIELD_STR: out += "=s:" + std::string(f.value.s.ptr, f.value.s.len); break;
                               case QL_FIELD_INT: out += "=i:" + std::to_string(f.value.i); break;
                               case QL_FIELD_UINT: out += "=u:" + std::to_string(f.value.u); break;
                               case QL_FIELD_DOUBLE: out += "=d:" + std::to_string(f.value.d); break;
                               case QL_FIELD_BOOL: out += f.value.b ? "=b:true" : "=b:false"; break;
                               default: out += "=?";
                               }
                               out += ";";
                           }
                           seen.push_back(out);
                           sources.push_back(std::string(r.func, r.func_len) + ":" + std::to_string(r.line));
                       }});
        std::string name = "alice";
        short small = -2;
        unsigned long long big = 18446744073709551615ull;
        CHECK(q.log(QL_LEVEL_INFO, "app", "login",
                    {{"user", name}, {"view", std::string_view("ab")}, {"lit", "c"},
                     {"small", small}, {"big", big}, {"ratio", 0.5f}, {"ok", true}}));
        {
            ql::scoped_context request{{"request_id", 42}};
            CHECK(q.log(QL_LEVEL_INFO, "app", "in scope"));
            QL_INFO(q.native(), "app", "macro %d", 1);
        }
        CHECK(q.log(QL_LEVEL_INFO, "app", "out of scope"));
        check_throws(QL_ERR_INVALID, "a bad key throws",
                     [&] { q.log(QL_LEVEL_INFO, "app", "m", {{"bad key", 1}}); });
        check_throws(QL_ERR_INVALID, "a bad context key throws",
                     [&] { ql::context_set({"bad key", 1}); });
        CHECK(!ql::context_remove("request_id"));
    }
    CHECK(seen.size() == 4);
    if (seen.size() != 4) return;
    CHECK(seen[0] == "user=s:alice;view=s:ab;lit=s:c;small=i:-2;big=u:18446744073709551615;"
                     "ratio=d:0.500000;ok=b:true;");
    CHECK(seen[1] == "request_id=i:42;");
    CHECK(seen[2] == "request_id=i:42;");
    CHECK(seen[3].empty());
    CHECK(sources[2].rfind("test_fields:", 0) == 0 && sources[2] != "test_fields:0");
    CHECK(sources[1] == ":0");
}


// What ql::field makes of each C++ type: an unscoped enum is its number
// (it was `true`: enum -> bool is a standard conversion, the integer
// template refused enums), and a pointer other than a C string does not
// compile (it became `true` too).
enum review_color { review_red = 0, review_green = 7 };
enum class review_state : unsigned char { idle = 3 };
enum review_big : unsigned long long { review_huge = 18446744073709551615ull };

void test_field_types() {
    g_test = "field types";
    review_color c = review_green;
    const ql_field e = ql::field("e", c).native();
    // Its underlying type is the compiler's choice (GCC: unsigned int).
    CHECK((e.kind == QL_FIELD_INT && e.value.i == 7) || (e.kind == QL_FIELD_UINT && e.value.u == 7));
    const ql_field s = ql::field("s", review_state::idle).native();
    CHECK(s.kind == QL_FIELD_UINT && s.value.u == 3);
    const ql_field h = ql::field("h", review_huge).native();
    CHECK(h.kind == QL_FIELD_UINT && h.value.u == 18446744073709551615ull);
    CHECK(!(std::is_constructible_v<ql::field, const char *, int *>));
    CHECK(!(std::is_constructible_v<ql::field, const char *, const void *>));
    CHECK(!(std::is_constructible_v<ql::field, const char *, const char16_t *>));
    // Every integer type keeps its signedness and value.
    CHECK(ql::field("a", (signed char)-3).native().kind == QL_FIELD_INT);
    CHECK(ql::field("a", (signed char)-3).native().value.i == -3);
    CHECK(ql::field("a", (unsigned char)250).native().value.u == 250);
    CHECK(ql::field("a", -5L).native().value.i == -5);
    CHECK(ql::field("a", (size_t)-1).native().value.u == (uint64_t)(size_t)-1);
    CHECK(ql::field("a", (long long)INT64_MIN).native().value.i == INT64_MIN);
    CHECK(ql::field("a", true).native().kind == QL_FIELD_BOOL);
    CHECK(ql::field("a", false).native().value.b == false);
    char buf[] = "mutable";
    CHECK(ql::field("a", buf).native().kind == QL_FIELD_STR);
    CHECK(ql::field("a", buf).native().value.s.len == 7);
}

// A C ql_handler wrapped in ql::handler: its ctx is destroyed exactly once,
// whether a listener takes it or not; only one listener may take it.
struct c_counter {
    long handled = 0;
    long flushed = 0;
};
std::atomic<int> g_c_destroyed{0};

extern "C" int32_t c_counter_handle(void *ctx, void *) {
    ++static_cast<c_counter *>(ctx)->handled;
    return 0;
}
extern "C" void c_counter_flush(void *ctx) { ++static_cast<c_counter *>(ctx)->flushed; }
extern "C" void c_counter_destroy(void *ctx) {
    delete static_cast<c_counter *>(ctx);
    g_c_destroyed.fetch_add(1);
}

ql_handler make_c_handler(c_counter *ctx, int level) {
    ql_handler h{};
    h.ctx = ctx;
    h.level = level;
    h.handle = c_counter_handle;
    h.flush = c_counter_flush;
    h.destroy = c_counter_destroy;
    return h;
}

void test_raw_handler() {
    g_test = "raw_handler";
    ql::queue q(8);
    g_c_destroyed = 0;
    {
        auto *ctx = new c_counter;
        ql::handler h(make_c_handler(ctx, QL_LEVEL_INFO));
        CHECK(h.raw() != nullptr && h.raw()->ctx == ctx && h.level() == QL_LEVEL_INFO);
        ql::handler copy = h;  // shares the one ctx
        {
            ql::listener l(q, {h});
            q.log(QL_LEVEL_INFO, "c", "1");
            q.log(QL_LEVEL_INFO, "c", "2");
            l.stop();
            CHECK(ctx->handled == 2 && ctx->flushed == 1);
            check_throws(QL_ERR_INVALID, "a second listener taking the same ql_handler",
                         [&] { ql::listener second(q, {copy}); });
            CHECK(g_c_destroyed.load() == 0);
        }  // ~listener destroys the ctx
        CHECK(g_c_destroyed.load() == 1);
    }  // the ql::handler copies do not destroy it again
    CHECK(g_c_destroyed.load() == 1);

    // Never given to a listener: the last copy destroys it.
    {
        ql::handler h(make_c_handler(new c_counter, 0));
        ql::handler copy = h;
    }
    CHECK(g_c_destroyed.load() == 2);

    // A listener that cannot be made gives it back, for a later listener.
    {
        auto *ctx = new c_counter;
        ql::handler h(make_c_handler(ctx, 0));
        ql::queue dead(std::move(q));
        check_throws(QL_ERR_NULL, "a listener on a moved-from queue, with a ql_handler",
                     [&] { ql::listener bad(q, {h, [](void *) {}}); });
        CHECK(g_c_destroyed.load() == 2);
        ql::listener good(dead, {h});
        dead.log(QL_LEVEL_INFO, "c", "given back");
        good.stop();
        CHECK(ctx->handled == 1);
    }
    CHECK(g_c_destroyed.load() == 3);
}

// flush(): a barrier while the listener goes on; handler's on_flush hook.
void test_flush() {
    g_test = "flush";
    ql::queue q(16);
    long count = 0, flushes = 0;
    ql::listener l(q, {ql::handler([&](void *) { ++count; }).on_flush([&] { ++flushes; })});
    for (int i = 0; i < 50; ++i) q.log(QL_LEVEL_INFO, "f", "x");
    CHECK(l.flush(std::chrono::seconds(30)));
    CHECK(count == 50);  // read after the barrier: the listener thread is waiting
    CHECK(flushes >= 1);
    CHECK(l.running());
    l.stop();
    CHECK(flushes >= 2);
}

// A listener is movable: the moved-to object owns the running listener;
// move assignment stops and frees the one it replaces.
void test_move() {
    g_test = "move";
    ql::queue q1(16), q2(16);
    long a = 0, b = 0;
    std::vector<ql::listener> listeners;
    listeners.emplace_back(q1, std::vector<ql::handler>{[&](void *) { ++a; }});
    listeners.emplace_back(q2, std::vector<ql::handler>{[&](void *) { ++b; }});  // may reallocate: moves
    q1.log(QL_LEVEL_INFO, "m", "1");
    q2.log(QL_LEVEL_INFO, "m", "2");
    CHECK(listeners[0].running() && listeners[1].running());
    listeners[0] = std::move(listeners[1]);  // stops the q1 listener: its record is handled
    CHECK(a == 1);
    CHECK(listeners[0].running());
    q2.log(QL_LEVEL_INFO, "m", "3");
    listeners.clear();
    CHECK(b == 2);
}

// A child process opts in to draining at exit, then calls std::exit() in
// the middle of its work, without a stop. Every record reaches the handler,
// which counts them and reports the count down a pipe only from its flush
// (run when a stop ends the loop), so records handled without a stop, as
// the process dies, are not counted:
// - with the queue and listener leaked on the heap, only the drain can
//   have handled them;
// - with them in function-local statics, the C++ runtime destroys them at
//   exit before the drain runs (the library registers its exit hook at its
//   first use, before any static listener can exist, and exit runs hooks in
//   reverse order): the destructor stops the listener, and the drain then
//   finds it gone. Neither crashes nor hangs (the child would then not exit
//   0) nor handles a record twice.
void test_drain_at_exit_with_static_objects() {
    g_test = "drain_at_exit_static";
    constexpr long kRecords = 20000;
    enum { kLeaked, kStatics };
    for (int mode : {kLeaked, kStatics}) {
        int fds[2];
        CHECK(pipe(fds) == 0);
        std::fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            alarm(60);  // a hang kills the child: the parent sees a signal
            int out = fds[1];
            auto counted = std::make_shared<long>(0);
            auto counter = [counted, out] {
                // The count since the last flush, as one line.
                ql::handler h([counted](void *) { ++*counted; });
                h.on_flush([counted, out] {
                    char line[32];
                    int n = std::snprintf(line, sizeof line, "%ld\n", *counted);
                    *counted = 0;
                    if (write(out, line, static_cast<size_t>(n)) != n) std::_Exit(20);
                });
                return h;
            };
            if (mode == kLeaked) {
                auto *q = new ql::queue(256);
                auto *l = new ql::listener(*q, {counter()});
                l->drain_at_exit(std::chrono::seconds(20));
                for (long i = 0; i < kRecords; ++i) q->logf(QL_LEVEL_INFO, "exit", "r%ld", i);
            } else {
                static ql::queue q(256);
                static ql::listener l(q, {counter()});
                l.drain_at_exit(std::chrono::seconds(20));
                for (long i = 0; i < kRecords; ++i) q.logf(QL_LEVEL_INFO, "exit", "r%ld", i);
            }
            std::exit(0);
        }
        close(fds[1]);
        std::string text;
        char buf[4096];
        for (;;) {
            ssize_t n = read(fds[0], buf, sizeof buf);
            if (n > 0) {
                text.append(buf, static_cast<size_t>(n));
            } else if (n == 0 || errno != EINTR) {
                break;
            }
        }
        close(fds[0]);
        long reported = 0;  // the records the flushes reported, summed
        for (const char *p = text.c_str(); *p != '\0';) {
            char *end = nullptr;
            reported += std::strtol(p, &end, 10);
            if (end == p) break;
            p = end;
        }
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK(reported == kRecords);
        static const char *const kModes[] = {"leaked objects, stopped by the drain",
                                             "statics, stopped by their destructor before the drain"};
        std::printf("     %s: %ld of %ld records reported by its flushes\n", kModes[mode], reported,
                    kRecords);
    }
}

}  // namespace

// A built-in file handler on /dev/full: stop() throws QL_ERR_LOST (the
// listener is stopped all the same), handler_stats() accounts for every
// record, and the destructor stays silent.
void test_lost_records() {
    g_test = "lost_records";
    ql_handler raw{};
    ql_handler_options o = ql_handler_options_default();
    if (ql_file_handler("/dev/full", &o, &raw) != QL_OK) {
        std::printf("skipped %s: /dev/full cannot be opened\n", g_test);
        return;
    }
    ql::queue q(64);
    ql::listener l(q, {ql::handler(raw)});
    for (int i = 0; i < 10; i++) q.log(QL_LEVEL_INFO, "t", "x");
    check_throws(QL_ERR_LOST, "stop() after lines were lost", [&] { l.stop(); });
    CHECK(!l.running());
    ql_handler_stats s = l.handler_stats(0);
    CHECK(s.has_counts && s.received == 10 && s.sink.lost == 10 && s.sink.written == 0);
    CHECK(s.sink.pending == 0 && s.sink.last_errno == ENOSPC);
    l.stop();  // nothing new lost: no throw
    check_throws(QL_ERR_INVALID, "handler_stats past the last handler", [&] { l.handler_stats(1); });
}

int main() {
    test_raii_scope();
    test_stop_restart();
    test_throwing_handler();
    test_queue_interface();
    test_errors();
    test_queue_destroyed_first();
    test_second_translation_unit();
    test_record_contents();
    test_fields();
    test_field_types();
    test_raw_handler();
    test_flush();
    test_move();
    test_drain_at_exit_with_static_objects();
    test_lost_records();
    std::printf("test_cpp_raii: %d checks, %d failed\n", g_checks, g_failures);
    return g_failures == 0 ? 0 : 1;
}
