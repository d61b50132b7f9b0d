// peer_fmtlog.cpp: the "fmtlog" and "fmtlog-fixed" contenders (bench/README.md,
// "The leaders"). fmtlog (github.com/MengRao/fmtlog) and its fmt submodule are
// built from QL_BENCH_FMTLOG_DIR, header-only (FMTLOG_HEADER_ONLY,
// FMT_HEADER_ONLY); never part of this repository.
//
// Producers call logi("hello {}", v): the call copies the argument and a TSC
// timestamp into the thread's own queue (1 MiB; FMTLOG_BLOCK=1, so a full
// queue makes the producer wait instead of dropping the message). fmtlog's
// polling thread (startPollingThread, 1 us between polls; the kernel makes
// each sleep about 50 us) formats each message and calls the log callback,
// which does bench_sink_take on the message body (peer_bench.h). The header
// pattern is empty and no log file is open: the polling thread formats the
// body only, as spdlog's sink reads msg.payload only.
//
// fmtlog (as shipped): fmtlog.h as in the given tree.
// fmtlog-fixed (PEER_FMTLOG_FIXED): the same with MsgHeader::push's store, which
//   publishes a message to the polling thread, made a release store; the copy
//   with that one line changed is made in the build directory by
//   bench/CMakeLists.txt.
#include "peer_bench.h"

#include "fmtlog.h"

namespace {

peer_sink *current;  // the run's sink; set before its producers start

void on_log(int64_t, fmtlog::LogLevel, fmt::string_view, size_t, fmt::string_view,
            fmt::string_view msg, size_t body_pos, size_t) {
    current->take(msg.data() + body_pos, msg.size() - body_pos);
}

class FmtlogPeer {
public:
#ifdef PEER_FMTLOG_FIXED
    static constexpr const char *kContender = "fmtlog-fixed";
#else
    static constexpr const char *kContender = "fmtlog";
#endif
    static constexpr const char *kVariant = "message";

    static void setup(const std::string &) {
        fmtlog::closeLogFile();  // its default is stdout, where the JSON lines go
        fmtlog::setHeaderPattern("");
        fmtlog::setLogCB(on_log, fmtlog::INF);
        fmtlog::setLogLevel(fmtlog::INF);
        fmtlog::startPollingThread(1000);
    }

    static void thread_start() { fmtlog::preallocate(); }

    // The polling thread reads `current` only for messages, and the previous
    // run's last message was taken before its finish() returned.
    explicit FmtlogPeer(uint64_t target) : sink_(target) { current = &sink_; }

    void log(uint64_t v) { logi("hello {}", v); }

    bool finish(uint64_t total) { return sink_.wait_done(peer_guard(total)); }

    std::string check(uint32_t producers, uint32_t n) { return sink_.verify(producers, n); }

private:
    peer_sink sink_;
};

}  // namespace

int main(int argc, char **argv) { return peer_main<FmtlogPeer>(argc, argv); }
