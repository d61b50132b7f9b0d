#!/bin/sh
# Runs one test program under a valgrind tool; any valgrind error fails it.
#   run_valgrind.sh VALGRIND (memcheck|drd|helgrind) SUPPRESSIONS PROGRAM [ARGS...]
# SUPPRESSIONS: suppression files separated by ':' (each must exist).
# Exits 77 (ctest: SKIP_RETURN_CODE) when valgrind is missing or cannot run
# here, after saying why.
set -u
vg=$1 tool=$2 supps=$3
shift 3

skip() {
    echo "skipped: $*"
    exit 77
}
case $vg in
    ""|*-NOTFOUND) vg=$(command -v valgrind 2>/dev/null || true) ;;
esac
[ -n "$vg" ] && [ -x "$vg" ] || skip "valgrind is not installed (Debian package: valgrind)"
"$vg" --tool="$tool" --version >/dev/null 2>&1 || skip "'$vg --tool=$tool' does not run on this machine"

# Common: every error is fatal (exit 1); threads are scheduled fairly, so a
# spinning thread cannot starve the others (valgrind runs one thread at a
# time); the project's suppressions, each with its reason.
set -- --tool="$tool" --error-exitcode=1 --fair-sched=yes --num-callers=30 "$@"
old_ifs=$IFS
IFS=:
for f in $supps; do
    [ -f "$f" ] || { echo "run_valgrind.sh: no suppression file $f"; exit 2; }
    set -- "--suppressions=$f" "$@"
done
IFS=$old_ifs
case $tool in
    memcheck)
        # Definite and indirect leaks are errors; "possibly lost" is not
        # (the Rust runtime keeps the main thread's handle through an
        # interior pointer: one 48-byte possibly-lost block).
        set -- --leak-check=full --errors-for-leak-kinds=definite,indirect \
            --show-leak-kinds=definite,indirect "$@" ;;
    drd|helgrind) ;;
    *) echo "unknown valgrind tool '$tool'"; exit 2 ;;
esac
echo "$vg $*"
exec "$vg" "$@"
