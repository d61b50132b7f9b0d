#!/bin/sh
# Passes when PROGRAM, run as it is, loads libqueue_listener from DIR.
#   usage: loads_from.sh PROGRAM DIR
set -eu
program=$1 dir=$(cd "$2" && pwd -P)
line=$(ldd "$program" | grep 'libqueue_listener\.so') || {
  echo "loads_from: $program does not load libqueue_listener"; exit 1; }
path=$(echo "$line" | sed -n 's/.*=> \(.*\) (0x.*/\1/p')
case $path in
  /*) ;;
  *) echo "loads_from: libqueue_listener not found: $line"; exit 1 ;;
esac
loaded=$(cd "$(dirname "$path")" && pwd -P)
if [ "$loaded" != "$dir" ]; then
  echo "loads_from: $program loads $path, not from $dir"; exit 1
fi
echo "loads_from: OK ($path)"
