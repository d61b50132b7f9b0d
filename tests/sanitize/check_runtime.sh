#!/bin/sh
# Fails unless each program was built with its sanitizer AND has its runtime.
#   check_runtime.sh NM READELF asan PROGRAM tsan PROGRAM ...
#
# gcc links libasan / libtsan dynamically by default, so the runtime's entry
# points are *undefined* references in the program (nm -D shows "U
# __asan_init") resolved at load time from a DT_NEEDED libasan.so.N; with
# -static-libasan they are defined in the program itself (nm shows "T").
# So, for each program:
#   1. the init entry point (__asan_init / __tsan_init) is named in its
#      symbol table or dynamic symbol table, defined or not;
#   2. the code is instrumented: it references a per-access check
#      (__asan_report_* / __tsan_read* / __tsan_write* / __tsan_func_entry);
#      for asan also UBSan's __ubsan_handle_* (the build is address,undefined);
#   3. the runtime is there: either defined in the program (static), or a
#      NEEDED entry libasan.so* / libtsan.so* (dynamic).
set -u
nm=$1 readelf=$2
shift 2
status=0
while [ $# -ge 2 ]; do
    kind=$1 prog=$2
    shift 2
    if [ ! -f "$prog" ]; then
        echo "FAIL: $kind: $prog does not exist"; status=1; continue
    fi
    syms=$( { "$nm" "$prog" 2>/dev/null; "$nm" -D "$prog" 2>/dev/null; } )
    needed=$("$readelf" -d "$prog" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p')
    case $kind in
        asan) init=__asan_init probes='__asan_report_ __ubsan_handle_' lib=libasan ;;
        tsan) init=__tsan_init probes='__tsan_func_entry' lib=libtsan ;;
        *) echo "FAIL: unknown sanitizer '$kind'"; status=1; continue ;;
    esac
    ok=1
    line=$(printf '%s\n' "$syms" | grep -E "[[:space:]]$init\$" | head -n 1)
    if [ -z "$line" ]; then
        echo "FAIL: $kind: $prog names no $init"; ok=0
    else
        echo "$kind: $prog: $init found ($line)"
    fi
    for p in $probes; do
        n=$(printf '%s\n' "$syms" | grep -c "[[:space:]]$p")
        if [ "$n" -eq 0 ]; then
            echo "FAIL: $kind: $prog references no $p* (not instrumented)"; ok=0
        else
            echo "$kind: $prog: $n symbols $p*"
        fi
    done
    if printf '%s\n' "$needed" | grep -q "^$lib\.so"; then
        echo "$kind: $prog: NEEDED $(printf '%s\n' "$needed" | grep "^$lib\.so")"
    elif printf '%s\n' "$line" | grep -qE "[[:space:]][TtWw][[:space:]]"; then
        echo "$kind: $prog: runtime linked statically"
    else
        echo "FAIL: $kind: $prog neither needs $lib.so nor defines $init"; ok=0
    fi
    [ $ok -eq 1 ] || status=1
done
if [ $# -ne 0 ]; then echo "usage: check_runtime.sh NM READELF (asan|tsan PROGRAM)..."; exit 2; fi
[ $status -eq 0 ] && echo "runtime_linked: OK"
exit $status
