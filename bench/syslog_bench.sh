#!/usr/bin/env bash
# Runs bench/syslog_bench.c against a private rsyslogd (tests/syslog/run.sh
# starts it on free loopback ports and stops it by pid).
#   bash bench/syslog_bench.sh PATH/TO/syslog_bench [RECORDS]
# Build it with: cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release
#   -DQL_BENCH=ON -DBUILD_TESTING=OFF && cmake --build build-bench --target syslog_bench
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
QLS_BENCH_RECORDS=${2:-200000} exec bash "$here/../tests/syslog/run.sh" bench "$1"
