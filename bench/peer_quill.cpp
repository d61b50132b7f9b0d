// peer_quill.cpp: the "quill" and "quill-lowlat" contenders (bench/README.md,
// "The leaders"). quill (github.com/odygrd/quill) is built from
// QL_BENCH_QUILL_DIR, header-only; never part of this repository.
//
// Producers call LOG_INFO(logger, "hello {}", v): the call copies the
// argument and a TSC timestamp into the thread's own queue; quill's single
// backend thread formats the message and hands it to every sink of the
// logger. The one sink here reads the formatted message (log_message) and
// does bench_sink_take on it (peer_bench.h). The pattern is "%(message)": the
// backend formats no header, as spdlog's sink reads msg.payload only and
// ql_bench's handler the record's message only.
//
// quill (default options): FrontendOptions and BackendOptions as shipped
//   (UnboundedBlocking queue of 128 KiB growing up to 2 GiB per thread; the
//   backend sleeps 100 us when it finds nothing).
// quill-lowlat (PEER_QUILL_LOW_LATENCY): the frontend queue its latency
//   benchmarks use, bounded, 256 KiB per thread, never reallocated; blocking
//   instead of dropping (a dropped record fails the check); each producer
//   thread's queue allocated before the start (Frontend::preallocate); the
//   backend never sleeps (sleep_duration 0) and yields when idle
//   (enable_yield_when_idle: two cores are shared with the producers).
#include "peer_bench.h"

#include "quill/Backend.h"
#include "quill/Frontend.h"
#include "quill/LogMacros.h"
#include "quill/Logger.h"
#include "quill/sinks/Sink.h"

#include <memory>

namespace {

#ifdef PEER_QUILL_LOW_LATENCY
struct BenchFrontendOptions : quill::FrontendOptions {
    static constexpr quill::QueueType queue_type = quill::QueueType::BoundedBlocking;
    static constexpr size_t initial_queue_capacity = 256u * 1024u;
};
#else
struct BenchFrontendOptions : quill::FrontendOptions {};
#endif
using Frontend = quill::FrontendImpl<BenchFrontendOptions>;
using Logger = quill::LoggerImpl<BenchFrontendOptions>;

class CheckingSink final : public quill::Sink {
public:
    explicit CheckingSink(peer_sink *s) : s_(s) {}
    void write_log(quill::MacroMetadata const *, uint64_t, std::string_view, std::string_view,
                   std::string const &, std::string_view, quill::LogLevel, std::string_view,
                   std::string_view, std::vector<std::pair<std::string, std::string>> const *,
                   std::string_view log_message, std::string_view) override {
        s_->take(log_message.data(), log_message.size());
    }
    void flush_sink() override {}

private:
    peer_sink *s_;
};

class QuillPeer {
public:
#ifdef PEER_QUILL_LOW_LATENCY
    static constexpr const char *kContender = "quill-lowlat";
#else
    static constexpr const char *kContender = "quill";
#endif
    static constexpr const char *kVariant = "message";

    static void setup(const std::string &) {
        quill::BackendOptions o;
#ifdef PEER_QUILL_LOW_LATENCY
        o.sleep_duration = std::chrono::nanoseconds{0};
        o.enable_yield_when_idle = true;
#endif
        quill::Backend::start(o);
    }

    static void thread_start() {
#ifdef PEER_QUILL_LOW_LATENCY
        Frontend::preallocate();
#endif
    }

    explicit QuillPeer(uint64_t target) : sink_(target) {
        static unsigned runs;
        name_ = "bench" + std::to_string(runs++);  // a fresh logger per run
        logger_ = Frontend::create_or_get_logger(name_, std::make_shared<CheckingSink>(&sink_),
                                                 quill::PatternFormatterOptions{"%(message)"});
    }
    ~QuillPeer() { Frontend::remove_logger_blocking(logger_); }

    void log(uint64_t v) { LOG_INFO(logger_, "hello {}", v); }

    bool finish(uint64_t total) { return sink_.wait_done(peer_guard(total)); }

    std::string check(uint32_t producers, uint32_t n) { return sink_.verify(producers, n); }

private:
    peer_sink sink_;
    std::string name_;
    Logger *logger_;
};

}  // namespace

int main(int argc, char **argv) { return peer_main<QuillPeer>(argc, argv); }
