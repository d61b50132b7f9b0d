/*
 * queue_listener.hpp: a header-only C++17 layer over queue_listener.h.
 *
 * Written by hand (unlike queue_listener.h, which cbindgen generates). Every
 * function is inline or a template, so the header may be included in any
 * number of translation units of one program.
 *
 *   ql::queue q(1024);
 *   {
 *       ql::listener l(q, {ql::handler([](const ql_record &r) {
 *                              std::printf("%s: %s\n", r.logger, r.message);
 *                          })});
 *       q.logf(QL_LEVEL_INFO, "app", "hello %d", 42);   // any thread
 *   }   // ~listener: every record logged before is handled here
 *
 * What is in it:
 *   ql::error            an exception carrying a ql_status; ql::check() throws it
 *   ql::field            a structured field for queue::log: {"user", name}, {"n", 42}
 *   ql::scoped_context   a context field for a scope (ql_context_set / remove)
 *   ql::queue            owns a built-in ql_queue (move-only)
 *   ql::queue_interface  base class for plugging in the program's own queue
 *   ql::handler          a handler made from a callable, or wrapping a ql_handler
 *   ql::listener         owns a ql_listener; starts in its constructor and
 *                        stops in its destructor (Python 3.14's `with listener:`)
 *
 * Exceptions. Every C call that fails throws ql::error, whose status() is
 * the ql_status and whose what() comes from ql_status_str. Outcomes that a
 * program asks for are not failures and are returned as `false` instead:
 * a record refused by the queue's overflow policy (QL_ERR_FULL,
 * QL_ERR_TIMEOUT, QL_ERR_WOULD_DEADLOCK) in queue::log / logf / put, a
 * deadline that passed in listener::stop(ms) / flush(ms), and a full queue
 * in listener::enqueue_sentinel(). Destructors never throw.
 *
 * Source location: the C macros QL_INFO(q.native(), "logger", "format", ...)
 * (QL_DEBUG ... QL_CRITICAL, QL_LOG, QL_LOG_FIELDS) work in C++ too.
 *
 * No exception ever crosses into the library. Each callback the library
 * calls (handlers, queue_interface methods) runs inside a `catch (...)`:
 *   - a handler that throws counts as a handler failure (code -1): it is
 *     counted in stats().handler_errors, and the listener goes on with the
 *     next handler and the next record;
 *   - queue_interface::dequeue throwing is QL_DEQUEUE_ERROR (counted in
 *     stats().dequeue_errors, retried after a pause);
 *   - queue_interface::enqueue_sentinel throwing is QL_ENQUEUE_ERROR
 *     (stop() then throws ql::error with QL_ERR_QUEUE);
 *   - an exception from task_done, record_level, a handler's flush or
 *     batch_end is swallowed (record_level then gives INT32_MAX).
 *
 * Threads. Handler callables and the queue_interface's dequeue, task_done
 * and record_level run on the listener thread (named `ql-listener`), one
 * call at a time for the whole listener, so they need no lock unless they
 * share state with other threads (read such state after stop(), flush() or
 * the listener's destruction, which all wait for the listener thread).
 * enqueue_sentinel runs on the thread that stops the listener. queue's
 * methods and listener's start / stop / flush / stats / running /
 * enqueue_sentinel may be called from any thread, concurrently; destroying
 * or moving an object must be the last use of it. From inside a handler,
 * stop() throws ql::error(QL_ERR_WOULD_DEADLOCK) and start() throws
 * ql::error(QL_ERR_ALREADY_STARTED); a listener must not be destroyed
 * from its own handlers.
 *
 * Ownership and lifetime.
 *   - A listener made on a ql::queue holds its own reference to the C queue:
 *     the ql::queue may be destroyed before the listener.
 *   - A listener made on a queue_interface borrows it: the object must
 *     outlive the listener.
 *   - Each handler's callable is copied (or moved) into the listener, which
 *     destroys it when the listener is destroyed, after its thread ended.
 *   - A handler wrapping a C ql_handler owns that handler's ctx until a
 *     listener takes it: the listener then owns it and calls its destroy.
 *     Copies of such a ql::handler share the one ctx, so only one listener
 *     may take it (a second throws ql::error(QL_ERR_INVALID)); if no
 *     listener ever does, the last copy calls destroy.
 *   - Records on the built-in queue as put() them are the program's; records
 *     made by log()/logf() belong to the library (a handler borrows them for
 *     the call).
 */
#ifndef QUEUE_LISTENER_HPP
#define QUEUE_LISTENER_HPP

#include "queue_listener.h"

#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace ql {

// ------------------------------------------------------------------ errors

/** A failed C call: status() is the ql_status, what() its description. */
class error : public std::runtime_error {
public:
    /** An error carrying `status` (what() is ql_status_str(status)). */
    explicit error(ql_status status) : std::runtime_error(ql_status_str(status)), status_(status) {}

    /** `context` (the failing call, for example "ql_start") prefixes what(). */
    error(ql_status status, const char *context)
        : std::runtime_error(std::string(context) + ": " + ql_status_str(status)), status_(status) {}

    /** The C status. */
    ql_status status() const noexcept { return status_; }

private:
    ql_status status_;
};

/** Throws ql::error unless `status` is QL_OK. */
inline void check(ql_status status) {
    if (status != QL_OK) throw error(status);
}

/** Throws ql::error, its message prefixed with `context`, unless `status` is QL_OK. */
inline void check(ql_status status, const char *context) {
    if (status != QL_OK) throw error(status, context);
}

namespace detail {

/** The statuses a queue's overflow policy gives for a refused record. */
inline bool refused_by_policy(ql_status status) noexcept {
    return status == QL_ERR_FULL || status == QL_ERR_TIMEOUT || status == QL_ERR_WOULD_DEADLOCK;
}

/** QL_OK → true; a refusal by the overflow policy → false; otherwise throws. */
inline bool queued(ql_status status, const char *context) {
    if (status == QL_OK) return true;
    if (refused_by_policy(status)) return false;
    throw error(status, context);
}

/** A duration in ms for the C API; a negative one is 0. */
inline uint64_t to_ms(std::chrono::milliseconds timeout) noexcept {
    return timeout.count() < 0 ? 0 : static_cast<uint64_t>(timeout.count());
}

}  // namespace detail

// ------------------------------------------------------------------- field

/**
 * One structured field, for queue::log: a key (1 to QL_FIELD_KEY_MAX bytes
 * of ASCII letters, digits, '_', '.' and '-'; a string literal, or any
 * C string that outlives the call) and a value of any natural type:
 *
 *   q.log(QL_LEVEL_INFO, "app.http", "request done",
 *         {{"path", path}, {"status", 200}, {"ms", 12.5}, {"cached", false}});
 *
 * Strings (std::string, std::string_view, const char *) are borrowed until
 * the call returns (the library copies them); signed integers become
 * QL_FIELD_INT, unsigned QL_FIELD_UINT (char as its platform's signedness
 * says), enums their underlying integer, floating point QL_FIELD_DOUBLE,
 * bool QL_FIELD_BOOL. Other pointers do not compile (they are not strings).
 */
class field {
public:
    /** A string field from a view (any bytes; copied by the logging call). */
    field(const char *key, std::string_view value) noexcept
        : f_(ql_field_strn(key, value.data(), value.size())) {}
    /** A string field from a NUL-terminated string (NULL is empty). */
    field(const char *key, const char *value) noexcept : f_(ql_field_str(key, value)) {}
    /** A string field from a std::string. */
    field(const char *key, const std::string &value) noexcept
        : f_(ql_field_strn(key, value.data(), value.size())) {}
    /** A bool field (exactly bool: a pointer or an enum would convert silently). */
    template <class T, std::enable_if_t<std::is_same_v<T, bool>, int> = 0>
    field(const char *key, T value) noexcept : f_(ql_field_bool(key, value)) {}
    /** An integer field: signed types as QL_FIELD_INT, unsigned as QL_FIELD_UINT. */
    template <class T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
    field(const char *key, T value) noexcept
        : f_(std::is_signed_v<T> ? ql_field_int(key, static_cast<int64_t>(value))
                                 : ql_field_uint(key, static_cast<uint64_t>(value))) {}
    /** An enum (scoped or not): its number, signed or not as its underlying type. */
    template <class T, std::enable_if_t<std::is_enum_v<T>, int> = 0>
    field(const char *key, T value) noexcept
        : field(key, static_cast<std::underlying_type_t<T>>(value)) {}
    /** A floating-point field (QL_FIELD_DOUBLE). */
    template <class T, std::enable_if_t<std::is_floating_point_v<T>, int> = 0>
    field(const char *key, T value) noexcept : f_(ql_field_double(key, static_cast<double>(value))) {}

    /** The C field. */
    const ql_field &native() const noexcept { return f_; }

private:
    ql_field f_;
};

/**
 * Binds a context field to every record the calling thread logs (see
 * ql_context_set): a copy is made now. Throws ql::error(QL_ERR_INVALID) for
 * a bad key, or a new key past QL_FIELDS_MAX context fields.
 */
inline void context_set(const field &f) { check(ql_context_set(f.native()), "ql_context_set"); }

/** Removes the calling thread's context field `key`; false when it had none. */
inline bool context_remove(const char *key) {
    ql_status status = ql_context_remove(key);
    if (status == QL_ERR_EMPTY) return false;
    check(status, "ql_context_remove");
    return true;
}

/** Removes all of the calling thread's context fields. */
inline void context_clear() noexcept { ql_context_clear(); }

/**
 * A context field for a scope: set by the constructor, removed by the
 * destructor (on the same thread). The key is removed, not restored: nest
 * scopes with different keys.
 *
 *   ql::scoped_context request{{"request_id", id}};
 */
class scoped_context {
public:
    /** Sets `f` as a context field of the calling thread until the destructor. */
    explicit scoped_context(const field &f) : key_(f.native().key == nullptr ? "" : f.native().key) {
        context_set(f);
    }
    ~scoped_context() { ql_context_remove(key_.c_str()); }
    scoped_context(const scoped_context &) = delete;
    scoped_context &operator=(const scoped_context &) = delete;

private:
    std::string key_;
};

// ------------------------------------------------------------------- queue

/**
 * The built-in queue (ql_queue), owned: move-only, freed by the destructor.
 * Every method may be called from any thread, concurrently.
 *
 * A listener made on it keeps the C queue alive, so a ql::queue may be
 * destroyed while listeners still run on it (nothing can be logged to it
 * any more; records already queued are still handled).
 */
class queue {
public:
    /** A bounded queue of `capacity` items (0: unbounded) that blocks when full. */
    explicit queue(size_t capacity = 8192) { check(ql_queue_new(capacity, &q_), "ql_queue_new"); }

    /** A queue as `options` say; start from ql_queue_options_default(). */
    explicit queue(const ql_queue_options &options) {
        check(ql_queue_new_with_options(&options, &q_), "ql_queue_new_with_options");
    }

    ~queue() { ql_queue_free(q_); }

    queue(const queue &) = delete;
    queue &operator=(const queue &) = delete;
    /** Takes over `other`'s queue; `other` is left empty (nullptr). */
    queue(queue &&other) noexcept : q_(std::exchange(other.q_, nullptr)) {}
    /** Frees this queue, then takes over `other`'s. */
    queue &operator=(queue &&other) noexcept {
        if (this != &other) {
            ql_queue_free(q_);
            q_ = std::exchange(other.q_, nullptr);
        }
        return *this;
    }

    /**
     * Logs `msg` (any bytes, copied) as a built-in record under the logger
     * name `logger` (copied; empty means "root"; cut at an embedded NUL).
     * `user` is handed to handlers in ql_record::user.
     *
     * Returns true when queued, or skipped for being below the queue's
     * level; false when the overflow policy refused it (the record was
     * dropped and counted in stats().dropped). Throws ql::error otherwise.
     */
    bool log(int level, std::string_view logger, std::string_view msg, void *user = nullptr) const {
        return log(level, logger, msg, {}, user);
    }

    /**
     * log() with structured fields (at most QL_FIELDS_MAX), each copied:
     *
     *   q.log(QL_LEVEL_INFO, "app", "login", {{"user", name}, {"attempt", 3}});
     *
     * The calling thread's context fields are added after them. A bad key
     * throws ql::error(QL_ERR_INVALID). Otherwise returns as log().
     */
    bool log(int level, std::string_view logger, std::string_view msg,
             std::initializer_list<field> fields, void *user = nullptr) const {
        if (fields.size() > QL_FIELDS_MAX) throw error(QL_ERR_INVALID, "ql_log_src");
        ql_field array[QL_FIELDS_MAX > 0 ? QL_FIELDS_MAX : 1];
        size_t n = 0;
        for (const field &f : fields) array[n++] = f.native();
        char small[128];
        std::string large;
        const char *name = nullptr;
        if (!logger.empty()) {
            if (logger.size() < sizeof small) {
                logger.copy(small, logger.size());
                small[logger.size()] = '\0';
                name = small;
            } else {
                large.assign(logger);
                name = large.c_str();
            }
        }
        return detail::queued(ql_log_src(q_, static_cast<int32_t>(level), name, nullptr,
                                         n == 0 ? nullptr : array, n, msg.data(), msg.size(), user),
                              "ql_log_src");
    }

    /**
     * Logs a printf-style message, as ql_logf: skipped at once when `level`
     * is below the queue's level; otherwise the arguments are copied (a
     * `%s` string too) and the message is formatted off the calling thread,
     * as the record leaves the queue (README, "Deferred formatting").
     * `logger` may be NULL ("root").
     * Returns as log(); a bad format throws ql::error(QL_ERR_INVALID).
     */
    QL_PRINTF_LIKE(4, 5)
    bool logf(int level, const char *logger, const char *format, ...) const {
        va_list args;
        va_start(args, format);
        ql_status status = ql_vlogf(q_, static_cast<int32_t>(level), logger, format, args);
        va_end(args);
        return detail::queued(status, "ql_logf");
    }

    /** logf with a va_list. */
    QL_PRINTF_LIKE(4, 0)
    bool vlogf(int level, const char *logger, const char *format, va_list args) const {
        return detail::queued(ql_vlogf(q_, static_cast<int32_t>(level), logger, format, args),
                              "ql_vlogf");
    }

    /**
     * Puts a program's record (any pointer, nullptr included) as the
     * overflow policy says. true: queued, the listener owns it now. false:
     * refused by the policy, the record stays the caller's. Throws
     * ql::error otherwise.
     */
    bool put(void *record) const { return detail::queued(ql_queue_put(q_, record), "ql_queue_put"); }

    /** put() that never waits: false when there is no room now. */
    bool put_nowait(void *record) const {
        return detail::queued(ql_queue_put_nowait(q_, record), "ql_queue_put_nowait");
    }

    /** Records of log()/logf() below `level` are skipped at once (QL_LEVEL_ALL: none). */
    void set_level(int level) const { check(ql_queue_set_level(q_, static_cast<int32_t>(level)), "ql_queue_set_level"); }

    /** True when a record at `level` passes the queue's level. */
    bool enabled(int level) const noexcept { return ql_queue_enabled(q_, static_cast<int32_t>(level)); }

    /** Items queued now (records and sentinels); stale as soon as read. */
    size_t size() const {
        size_t n = 0;
        check(ql_queue_len(q_, &n), "ql_queue_len");
        return n;
    }

    /** The C queue, still owned by this object (nullptr once moved from). */
    ql_queue *native() const noexcept { return q_; }

private:
    ql_queue *q_ = nullptr;
};

// --------------------------------------------------------- queue_interface

/**
 * The program's own queue, for a listener: derive from it and implement
 * dequeue and enqueue_sentinel (ql_queue_vtable's contract). The queue must
 * be thread-safe; the object must outlive every listener made on it.
 *
 * Exceptions are caught at the boundary: see the top of this header.
 */
class queue_interface {
public:
    virtual ~queue_interface() = default;

    /**
     * Takes the next item, waiting for one when `block` (the listener always
     * passes true). Returns QL_DEQUEUE_RECORD after writing *record_out, or
     * QL_DEQUEUE_SENTINEL, QL_DEQUEUE_EMPTY (the loop ends) or
     * QL_DEQUEUE_ERROR. Runs on the listener thread.
     */
    virtual ql_dequeue_result dequeue(bool block, void **record_out) = 0;

    /**
     * Puts the sentinel behind every queued item without blocking:
     * QL_ENQUEUE_OK, QL_ENQUEUE_FULL (retried while a stop waits) or
     * QL_ENQUEUE_ERROR. Runs on the thread stopping the listener, possibly
     * while dequeue runs.
     */
    virtual ql_enqueue_result enqueue_sentinel() = 0;

    /**
     * Called once per dequeued record after every handler saw it, and once
     * per sentinel with nullptr (Python's queue.task_done). Does nothing by
     * default. Runs on the listener thread.
     */
    virtual void task_done(void * /*record*/) {}

    /**
     * A record's level, used only by a listener made with
     * respect_handler_level. By default INT32_MAX: every handler gets every
     * record: override it to use respect_handler_level. Runs on the
     * listener thread.
     */
    virtual int record_level(void * /*record*/) { return INT32_MAX; }

    /**
     * A C vtable calling this object's methods, with exceptions caught.
     * For use with the C API directly; ql::listener makes its own.
     */
    ql_queue_vtable vtable() noexcept {
        ql_queue_vtable v{};
        v.ctx = this;
        v.dequeue = &queue_interface::dequeue_trampoline;
        v.enqueue_sentinel = &queue_interface::enqueue_sentinel_trampoline;
        v.task_done = &queue_interface::task_done_trampoline;
        return v;
    }

    /** A C `record_level` hook (ql_hooks::record_level) with ctx = this. */
    static int32_t record_level_trampoline(void *ctx, void *record) noexcept {
        try {
            return static_cast<int32_t>(static_cast<queue_interface *>(ctx)->record_level(record));
        } catch (...) {
            return INT32_MAX;
        }
    }

protected:
    queue_interface() = default;
    /** Copyable, for derived classes that want it. */
    queue_interface(const queue_interface &) = default;
    /** Copy assignment, for derived classes that want it. */
    queue_interface &operator=(const queue_interface &) = default;

private:
    static ql_dequeue_result dequeue_trampoline(void *ctx, bool block, void **record_out) noexcept {
        try {
            return static_cast<queue_interface *>(ctx)->dequeue(block, record_out);
        } catch (...) {
            return QL_DEQUEUE_ERROR;
        }
    }
    static ql_enqueue_result enqueue_sentinel_trampoline(void *ctx) noexcept {
        try {
            return static_cast<queue_interface *>(ctx)->enqueue_sentinel();
        } catch (...) {
            return QL_ENQUEUE_ERROR;
        }
    }
    static void task_done_trampoline(void *ctx, void *record) noexcept {
        try {
            static_cast<queue_interface *>(ctx)->task_done(record);
        } catch (...) {
        }
    }
};

// ----------------------------------------------------------------- handler

class listener;

namespace detail {

/** The ctx of a handler made from callables; owned by the listener. */
struct callable_ctx {
    std::function<int(void *)> handle;
    std::function<void()> flush;
    std::function<void()> batch_end;

    static int32_t handle_trampoline(void *ctx, void *record) noexcept {
        try {
            return static_cast<int32_t>(static_cast<callable_ctx *>(ctx)->handle(record));
        } catch (...) {
            return -1;
        }
    }
    static void flush_trampoline(void *ctx) noexcept {
        try {
            static_cast<callable_ctx *>(ctx)->flush();
        } catch (...) {
        }
    }
    static void batch_end_trampoline(void *ctx) noexcept {
        try {
            static_cast<callable_ctx *>(ctx)->batch_end();
        } catch (...) {
        }
    }
    static void destroy_trampoline(void *ctx) noexcept { delete static_cast<callable_ctx *>(ctx); }
};

/** A C ql_handler whose ctx is owned until a listener takes it. */
struct raw_handler_state {
    ql_handler raw;
    std::atomic<bool> taken{false};

    explicit raw_handler_state(const ql_handler &h) noexcept : raw(h) {}
    raw_handler_state(const raw_handler_state &) = delete;
    raw_handler_state &operator=(const raw_handler_state &) = delete;
    ~raw_handler_state() {
        if (!taken.load(std::memory_order_acquire) && raw.destroy != nullptr) raw.destroy(raw.ctx);
    }
};

/** F is callable as a handler: f(void *) or f(const ql_record &). */
template <typename F>
constexpr bool is_handler_callable =
    !std::is_same_v<std::decay_t<F>, ql_handler> &&
    (std::is_invocable_v<std::decay_t<F> &, void *> || std::is_invocable_v<std::decay_t<F> &, const ql_record &>);

template <typename R>
constexpr bool valid_handler_result =
    std::is_void_v<R> || (std::is_integral_v<R> && !std::is_same_v<R, bool>);

/** A handle function `int(void *)` calling `f` (see ql::handler). */
template <typename F>
std::function<int(void *)> adapt_handle(F &&f) {
    using Fn = std::decay_t<F>;
    if constexpr (std::is_invocable_v<Fn &, void *>) {
        using R = std::invoke_result_t<Fn &, void *>;
        static_assert(valid_handler_result<R>, "a handler returns void or an integer code");
        return [fn = Fn(std::forward<F>(f))](void *record) mutable -> int {
            if constexpr (std::is_void_v<R>) {
                fn(record);
                return 0;
            } else {
                return static_cast<int>(fn(record));
            }
        };
    } else if constexpr (std::is_invocable_v<Fn &, const ql_record &>) {
        using R = std::invoke_result_t<Fn &, const ql_record &>;
        static_assert(valid_handler_result<R>, "a handler returns void or an integer code");
        return [fn = Fn(std::forward<F>(f))](void *record) mutable -> int {
            if (record == nullptr) return -1;  // a program's nullptr, not a built-in record
            const ql_record &r = *static_cast<const ql_record *>(record);
            if constexpr (std::is_void_v<R>) {
                fn(r);
                return 0;
            } else {
                return static_cast<int>(fn(r));
            }
        };
    } else {
        static_assert(std::is_invocable_v<Fn &, void *>,
                      "a handler is callable as f(void *record) or f(const ql_record &record)");
        return {};
    }
}

}  // namespace detail

/**
 * One handler of a listener: a callable and a level (used when the listener
 * respects handler levels; 0 gets every record).
 *
 * The callable is any of
 *   void(void *record)          int(void *record)
 *   void(const ql_record &)     int(const ql_record &)
 * A nonzero int, or an exception, is a failure: counted in
 * stats().handler_errors (an exception as -1), and the listener goes on.
 * The `const ql_record &` forms are for queues fed by log()/logf() only
 * (a record put() by the program is not a ql_record; a nullptr record
 * counts as a failure). The record is borrowed for the call.
 *
 * The callable must be copyable (it is stored in a std::function); each
 * listener gets its own copy and calls it on its listener thread.
 *
 * A handler may also wrap a C ql_handler (for example one of the library's
 * built-in handlers): see the ownership notes at the top of this header.
 */
class handler {
public:
    /** A handler calling `handle` (implicit, so a lambda may stand for a level-0 handler). */
    template <typename F, typename = std::enable_if_t<detail::is_handler_callable<F>>>
    handler(F &&handle, int level = QL_LEVEL_NOTSET)
        : level_(level), handle_(detail::adapt_handle(std::forward<F>(handle))) {}

    /** Wraps a C handler, taking ownership of its ctx (its level is raw.level). */
    explicit handler(const ql_handler &raw)
        : level_(raw.level), raw_(std::make_shared<detail::raw_handler_state>(raw)) {}

    /**
     * Sets a callable run on the listener thread when its loop ends (before
     * stop() returns) and at each flush() barrier. on_flush and on_batch_end
     * apply to handlers made from callables; a wrapped ql_handler keeps its
     * own slots.
     */
    handler &on_flush(std::function<void()> flush) & {
        flush_ = std::move(flush);
        return *this;
    }
    /** on_flush for a temporary handler (chains in an initializer list). */
    handler &&on_flush(std::function<void()> flush) && { return std::move(on_flush(std::move(flush))); }

    /** Sets a callable run when the built-in queue was found empty (the end of a batch). */
    handler &on_batch_end(std::function<void()> batch_end) & {
        batch_end_ = std::move(batch_end);
        return *this;
    }
    /** on_batch_end for a temporary handler. */
    handler &&on_batch_end(std::function<void()> batch_end) && {
        return std::move(on_batch_end(std::move(batch_end)));
    }

    /** The handler's level (records below it are skipped with respect_handler_level). */
    int level() const noexcept { return level_; }

    /**
     * The wrapped C handler (for calls such as ql_handler_lines_lost), or
     * nullptr for a handler made from a callable. Its ctx is alive until
     * the listener that took it is destroyed.
     */
    const ql_handler *raw() const noexcept { return raw_ ? &raw_->raw : nullptr; }

private:
    friend class listener;

    int level_ = QL_LEVEL_NOTSET;
    std::function<int(void *)> handle_;
    std::function<void()> flush_;
    std::function<void()> batch_end_;
    std::shared_ptr<detail::raw_handler_state> raw_;
};

// ---------------------------------------------------------------- listener

/**
 * A listener (ql_listener), owned. It starts in its constructor and stops
 * in its destructor, which returns once every record queued before it was
 * handled, then frees the handlers. Non-copyable; movable (a moved-from
 * listener may only be destroyed or assigned; its other calls throw
 * ql::error(QL_ERR_NULL)).
 *
 * The destructor cannot report a failure: when ql_listener_free fails (it
 * runs on the listener's own thread: QL_ERR_WOULD_DEADLOCK; a
 * queue_interface that cannot take the sentinel: QL_ERR_QUEUE) it writes a
 * line to stderr and leaks the listener, which may still run. Call stop()
 * first where such failures are possible, to see them as exceptions.
 */
class listener {
public:
    /**
     * A listener on a built-in queue, started. With respect_handler_level,
     * a handler gets a record only when the record's level is at least its
     * level; the library cannot read a program pointer's level, so such a
     * listener is refused (ql::error, QL_ERR_INVALID) on a queue that has
     * taken put() records, and once made, the queue's put() throws
     * ql::error (QL_ERR_INVALID) for good. Throws ql::error when the
     * listener cannot be made or started.
     */
    listener(const queue &q, std::vector<handler> handlers, bool respect_handler_level = false) {
        make(q.native(), nullptr, std::move(handlers), respect_handler_level);
    }

    /**
     * A listener on the program's own queue, started. `q` is borrowed and
     * must outlive the listener. With respect_handler_level the levels come
     * from q.record_level().
     */
    listener(queue_interface &q, std::vector<handler> handlers, bool respect_handler_level = false) {
        make(nullptr, &q, std::move(handlers), respect_handler_level);
    }

    /** Stops the listener (waiting as long as it takes) and frees it. Never throws. */
    ~listener() { destroy(); }

    listener(const listener &) = delete;
    listener &operator=(const listener &) = delete;
    /** Takes over `other`'s listener; `other` is left empty. */
    listener(listener &&other) noexcept : l_(std::exchange(other.l_, nullptr)) {}
    /** Stops and frees this listener (as the destructor), then takes over `other`'s. */
    listener &operator=(listener &&other) noexcept {
        if (this != &other) {
            destroy();
            l_ = std::exchange(other.l_, nullptr);
        }
        return *this;
    }

    /** Starts the thread; throws ql::error(QL_ERR_ALREADY_STARTED) while it runs. */
    void start() { check(ql_start(l_), "ql_start"); }

    /**
     * Stops the thread once every record queued before the call is handled
     * and the handlers flushed. Not running: does nothing. Throws
     * ql::error (QL_ERR_WOULD_DEADLOCK from a handler; QL_ERR_QUEUE when the
     * queue failed, see ql_stop; QL_ERR_LOST when the listener stopped but
     * built-in handlers counted records lost since the last stop or flush:
     * see handler_stats()).
     */
    void stop() { check(ql_stop(l_), "ql_stop"); }

    /** stop() waiting at most `timeout`: false when it passed (the listener still runs). */
    bool stop(std::chrono::milliseconds timeout) {
        ql_status status = ql_stop_timeout(l_, detail::to_ms(timeout));
        if (status == QL_ERR_TIMEOUT) return false;
        check(status, "ql_stop_timeout");
        return true;
    }

    /**
     * Waits until every record queued before the call is handled and the
     * handlers flushed, while the listener goes on running. false when
     * `timeout` passed first. Throws ql::error: QL_ERR_NOT_RUNNING,
     * QL_ERR_UNSUPPORTED on a queue_interface, QL_ERR_WOULD_DEADLOCK from a
     * handler, QL_ERR_LOST when the flush completed but built-in handlers
     * counted records lost since the last stop or flush.
     */
    bool flush(std::chrono::milliseconds timeout) {
        ql_status status = ql_listener_flush(l_, detail::to_ms(timeout));
        if (status == QL_ERR_TIMEOUT) return false;
        check(status, "ql_listener_flush");
        return true;
    }

    /** Puts one sentinel now (Python's enqueue_sentinel): false when the queue is full. */
    bool enqueue_sentinel() {
        ql_status status = ql_enqueue_sentinel(l_);
        if (status == QL_ERR_FULL) return false;
        check(status, "ql_enqueue_sentinel");
        return true;
    }

    /**
     * Opts in to draining at exit (ql_listener_drain_at_exit): if the
     * program calls exit() while this listener runs, its records are
     * handled within `timeout` first. Throws ql::error on failure.
     */
    void drain_at_exit(std::chrono::milliseconds timeout) {
        check(ql_listener_drain_at_exit(l_, detail::to_ms(timeout)), "ql_listener_drain_at_exit");
    }

    /** The counters of handler `index` (ql_listener_handler_stats). Any thread. */
    ql_handler_stats handler_stats(std::size_t index) const {
        ql_handler_stats s{};
        check(ql_listener_handler_stats(l_, index, &s), "ql_listener_handler_stats");
        return s;
    }

    /** Whether the thread runs (from start() until a stop joins it). */
    bool running() const {
        bool r = false;
        check(ql_listener_is_running(l_, &r), "ql_listener_is_running");
        return r;
    }

    /** The counters since the listener was made. */
    ql_stats stats() const {
        ql_stats s{};
        check(ql_listener_stats(l_, &s), "ql_listener_stats");
        return s;
    }

    /**
     * Opts in to the crash flush (ql_listener_flush_on_crash): on a fatal
     * signal (and SIGTERM / SIGINT with QL_CRASH_SIGTERM / QL_CRASH_SIGINT
     * in `signals`), what the built-in file and fd handlers hold and every
     * record queued are written before the process dies. Throws ql::error.
     */
    void flush_on_crash(ql_crash_signals signals = 0) const {
        check(ql_listener_flush_on_crash(l_, signals), "ql_listener_flush_on_crash");
    }

    /** The C listener, still owned by this object (nullptr once moved from). */
    ql_listener *native() const noexcept { return l_; }

private:
    void make(const ql_queue *builtin, queue_interface *custom, std::vector<handler> handlers,
              bool respect_handler_level) {
        std::vector<ql_handler> c_handlers;
        std::vector<std::unique_ptr<detail::callable_ctx>> owned;  // freed here unless the listener took them
        std::vector<detail::raw_handler_state *> taken;           // given back unless the listener took them
        c_handlers.reserve(handlers.size());
        owned.reserve(handlers.size());
        taken.reserve(handlers.size());
        struct give_back {
            std::vector<detail::raw_handler_state *> &states;
            ~give_back() {
                for (auto *s : states) s->taken.store(false, std::memory_order_release);
            }
        } give_back_on_failure{taken};

        for (handler &h : handlers) {
            if (h.raw_) {
                if (h.raw_->taken.exchange(true, std::memory_order_acq_rel))
                    throw error(QL_ERR_INVALID, "ql::listener: a wrapped ql_handler already belongs to a listener");
                taken.push_back(h.raw_.get());
                ql_handler c = h.raw_->raw;
                c.level = static_cast<int32_t>(h.level_);
                c_handlers.push_back(c);
            } else {
                if (!h.handle_) throw error(QL_ERR_INVALID, "ql::listener: an empty handler");
                auto ctx = std::make_unique<detail::callable_ctx>();
                ctx->handle = std::move(h.handle_);
                ctx->flush = std::move(h.flush_);
                ctx->batch_end = std::move(h.batch_end_);
                ql_handler c{};
                c.ctx = ctx.get();
                c.level = static_cast<int32_t>(h.level_);
                c.handle = &detail::callable_ctx::handle_trampoline;
                c.flush = ctx->flush ? &detail::callable_ctx::flush_trampoline : nullptr;
                c.batch_end = ctx->batch_end ? &detail::callable_ctx::batch_end_trampoline : nullptr;
                c.destroy = &detail::callable_ctx::destroy_trampoline;
                owned.push_back(std::move(ctx));
                c_handlers.push_back(c);
            }
        }

        ql_listener *l = nullptr;
        ql_status status;
        if (custom != nullptr) {
            ql_queue_vtable vtable = custom->vtable();
            ql_hooks hooks{};
            hooks.ctx = custom;
            hooks.record_level = &queue_interface::record_level_trampoline;
            status = ql_listener_new(&vtable, c_handlers.data(), c_handlers.size(),
                                     respect_handler_level ? &hooks : nullptr, respect_handler_level, &l);
        } else {
            status = ql_listener_new_with_queue(builtin, c_handlers.data(), c_handlers.size(), nullptr,
                                                respect_handler_level, &l);
        }
        check(status, "ql_listener_new");  // on failure the handlers are still ours: freed, given back

        // The listener owns every ctx now.
        for (auto &ctx : owned) static_cast<void>(ctx.release());
        taken.clear();
        l_ = l;
        ql_status started = ql_start(l_);
        if (started != QL_OK) {
            destroy();
            throw error(started, "ql_start");
        }
    }

    void destroy() noexcept {
        if (l_ == nullptr) return;
        ql_status status = ql_listener_free(l_);
        // QL_ERR_LOST: freed all the same (the losses are in the handlers'
        // stats, which went with it).
        if (status != QL_OK && status != QL_ERR_LOST)
            std::fprintf(stderr, "ql::listener: ql_listener_free failed (%s); the listener is leaked\n",
                         ql_status_str(status));
        l_ = nullptr;
    }

    ql_listener *l_ = nullptr;
};

}  // namespace ql

#endif /* QUEUE_LISTENER_HPP */
