#!/bin/sh
# Installs a build tree into a fresh prefix, then checks that every file the
# package documents is where it belongs.
#   usage: install.sh CMAKE BUILD_DIR WIPE PREFIX LIBDIR INCLUDEDIR DOCDIR [SOURCE_DIR CONFIGURE_ARG...]
# WIPE (a directory holding everything the install writes) is removed first.
# LIBDIR, INCLUDEDIR and DOCDIR are the build's CMAKE_INSTALL_* dirs,
# relative to PREFIX or absolute. With SOURCE_DIR, BUILD_DIR is first
# configured from it with the CONFIGURE_ARGs, and built.
set -eu
cmake=$1 build=$2 wipe=$3 prefix=$4 libdir=$5 includedir=$6 docdir=$7
shift 7
fail() { echo "install: $*" >&2; exit 1; }
under_prefix() { case $1 in /*) echo "$1" ;; *) echo "$prefix/$1" ;; esac; }

if [ $# -gt 0 ]; then
  source=$1
  shift
  "$cmake" -S "$source" -B "$build" "$@"
  "$cmake" --build "$build"
fi
rm -rf "$wipe"
"$cmake" --install "$build" --prefix "$prefix"

lib=$(under_prefix "$libdir") inc=$(under_prefix "$includedir") doc=$(under_prefix "$docdir")
for file in "$lib/libqueue_listener.so" "$lib/libqueue_listener.a" \
    "$lib/cmake/QueueListener/QueueListenerConfig.cmake" \
    "$lib/cmake/QueueListener/QueueListenerConfigVersion.cmake" \
    "$lib/pkgconfig/queue_listener.pc" \
    "$inc/queue_listener.h" "$inc/queue_listener.hpp" \
    "$doc/README.md" "$doc/LICENSE-MIT" "$doc/LICENSE-APACHE"; do
  [ -f "$file" ] || fail "missing $file"
done
# The soname link, and the development link to it.
soname=$(readelf -d "$lib/libqueue_listener.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ -n "$soname" ] && [ -f "$lib/$soname" ] || fail "no soname link $lib/$soname"
[ "$(readlink "$lib/libqueue_listener.so")" = "$soname" ] || fail "libqueue_listener.so does not link to $soname"
# The files configured at install time were filled in.
if grep -l '@QL_' "$lib/pkgconfig/queue_listener.pc" "$lib/cmake/QueueListener/QueueListenerConfig.cmake"; then
  fail "a placeholder was left in the file(s) above"
fi
echo "install: OK ($prefix, libdir $libdir)"
