#!/bin/sh
# Builds tests/consumer/main.c against an installed prefix with pkg-config
# only, and runs it.   usage: pkg_config.sh PREFIX WORKDIR CC
set -eu
prefix=$1 work=$2 cc=$3
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
pkg-config --exists --print-errors queue_listener
flags=$(pkg-config --cflags --libs queue_listener)
echo "pkg-config: $flags"
# shellcheck disable=SC2086
"$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror "$here/main.c" $flags -o "$work/consumer_pkg_config"
libdir=$(pkg-config --variable=libdir queue_listener)
LD_LIBRARY_PATH="$libdir" "$work/consumer_pkg_config"
