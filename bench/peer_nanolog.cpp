// peer_nanolog.cpp: the "nanolog" contender (bench/README.md, "The leaders"):
// NOT EQUAL WORK. NanoLog (github.com/PlatformLab/NanoLog), its C++17
// version, is built from QL_BENCH_NANOLOG_DIR by bench/CMakeLists.txt; never
// part of this repository.
//
// Producers call NANO_LOG(NOTICE, "hello %lu", v): the call copies a format
// id, a TSC timestamp and the argument into the thread's own staging buffer;
// NanoLog's background thread compresses them into a binary log file (written
// with O_DSYNC through POSIX AIO). Nothing is formatted in the process, and
// no user code sees a message while the program runs: the text exists only
// when the log is decompressed afterwards. So the span ends at NanoLog::sync()
// (every message logged before it persisted), and the check, outside the span,
// runs NanoLog's own decompressor on the run's file and does bench_sink_take
// on every "hello <value>" it prints: each producer's records once each, in
// order, and the checksum, as everywhere.
//
// Files: one per run in --file-dir (run.py passes build-bench/filesink),
// deleted after its check. NanoLog opens ./compressedLog when the program
// starts, before main; run.py runs this program in --file-dir, and setup()
// removes that file once NanoLog has switched to the first run's file.
#include "peer_bench.h"

#include <array>  // NanoLogCpp17.h uses std::array without including it (GCC 12 needs it)

#include "NanoLogCpp17.h"

#include <sys/stat.h>

namespace {

std::string g_dir;

class NanologPeer {
public:
    static constexpr const char *kContender = "nanolog";
    static constexpr const char *kVariant = "binary";

    static void setup(const std::string &dir) {
        g_dir = dir;
        NanoLog::setLogLevel(NanoLog::LogLevels::NOTICE);
    }

    static void thread_start() { NanoLog::preallocate(); }

    explicit NanologPeer(uint64_t) {
        static unsigned runs;
        path_ = g_dir + "/nanolog-" + std::to_string(getpid()) + "-" + std::to_string(runs) +
                ".clog";
        unlink(path_.c_str());
        NanoLog::setLogFile(path_.c_str());
        if (runs++ == 0) unlink("compressedLog");  // opened by NanoLog at start-up, in the cwd
    }
    ~NanologPeer() { unlink(path_.c_str()); }

    void log(uint64_t v) { NANO_LOG(NOTICE, "hello %lu", (unsigned long)v); }

    bool finish(uint64_t) {
        NanoLog::sync();
        return true;
    }

    // Decompresses the run's file with NanoLog's decompressor (sorted by
    // time, each thread's messages in their order) and checks every message.
    std::string check(uint32_t producers, uint32_t n) {
        std::string cmd = std::string("'") + PEER_NANOLOG_DECOMPRESSOR + "' decompress '" +
                          path_ + "'";
        FILE *f = popen(cmd.c_str(), "r");
        if (!f) return "could not run the decompressor";
        bench_sink sink;
        bench_sink_init(&sink);
        static const char kTag[] = "]: hello ";
        char *line = nullptr;
        size_t cap = 0;
        ssize_t len;
        uint64_t other = 0;
        while ((len = getline(&line, &cap, f)) > 0) {
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
            const char *at = strstr(line, kTag);
            if (!at) {
                other++;  // the decompressor's own header and summary lines
                continue;
            }
            const char *msg = at + 3;
            bench_sink_take(&sink, bench_parse_hello(msg, (size_t)(line + len - msg)));
        }
        free(line);
        int st = pclose(f);
        if (st != 0) return "the decompressor failed (status " + std::to_string(st) + ")";
        char why[256];
        bench_sink_verify(&sink, producers, n, why, sizeof why);
        return why;
    }

private:
    std::string path_;
};

}  // namespace

int main(int argc, char **argv) { return peer_main<NanologPeer>(argc, argv); }
