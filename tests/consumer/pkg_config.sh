#!/bin/sh
# Builds a consumer against an installed prefix with pkg-config only, checks
# that every path pkg-config gives points into that install, and runs it.
#   usage: pkg_config.sh PREFIX LIBDIR INCLUDEDIR WORKDIR LANG COMPILER
# LIBDIR and INCLUDEDIR are as installed (CMAKE_INSTALL_LIBDIR and
# CMAKE_INSTALL_INCLUDEDIR): relative to PREFIX, or absolute. LANG is c
# (main.c, C11) or cxx (cxx/main.cpp, C++17).
set -eu
prefix=$1 libdir=$2 includedir=$3 work=$4 lang=$5 compiler=$6
here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "pkg_config: $*" >&2; exit 1; }
# The directory $1 (relative to the prefix, or absolute), symlinks resolved.
real_dir() {
  case $1 in /*) d=$1 ;; *) d=$prefix/$1 ;; esac
  (cd "$d" 2>/dev/null && pwd -P) || fail "no directory $d"
}
prefix=$(real_dir "$prefix")
libdir=$(real_dir "$libdir")
includedir=$(real_dir "$includedir")
case $lang in
  c) src=$here/main.c std=-std=c11 ;;
  cxx) src=$here/cxx/main.cpp std=-std=c++17 ;;
  *) fail "LANG is c or cxx, not $lang" ;;
esac
mkdir -p "$work"

# Only this install's .pc file: no PKG_CONFIG_PATH, no system directory.
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
export PKG_CONFIG_LIBDIR="$libdir/pkgconfig"
pkg-config --exists --print-errors queue_listener
for var in prefix libdir includedir; do
  value=$(pkg-config --variable=$var queue_listener)
  eval "want=\$$var"
  [ "$(real_dir "$value")" = "$want" ] || fail "$var=$value is not $want"
done
flags=$(pkg-config --cflags --libs queue_listener)
echo "pkg-config: $flags"
for flag in $flags; do
  case $flag in
    -I*) [ "$(real_dir "${flag#-I}")" = "$includedir" ] || fail "$flag is not $includedir" ;;
    -L*) [ "$(real_dir "${flag#-L}")" = "$libdir" ] || fail "$flag is not $libdir" ;;
  esac
done
for header in queue_listener.h queue_listener.hpp; do
  [ -f "$includedir/$header" ] || fail "no $includedir/$header"
done

program=$work/consumer_pkg_config_$lang
rm -f "$program"
# shellcheck disable=SC2086
"$compiler" $std -Wall -Wextra -Wpedantic -Werror "$src" $flags -o "$program"
LD_LIBRARY_PATH="$libdir" sh "$here/loads_from.sh" "$program" "$libdir"
LD_LIBRARY_PATH="$libdir" "$program"
echo "pkg_config: OK ($lang)"
