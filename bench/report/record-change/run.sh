#!/bin/bash
# How the old-vs-new comparison was run (see bench/README.md, "The record
# change"): two ql_bench builds of the same program, alternated in ABBA
# order, one rep each. Usage: run.sh OLD_BIN NEW_BIN OUT_DIR [PAIRS]
# (OLD_BIN's lines go to OUT_DIR/old-I.jsonl, NEW_BIN's to new-I.jsonl).
set -eu
old=$1 new=$2 out=$3 pairs=${4:-10}
mkdir -p "$out/fs"
for i in $(seq 1 "$pairs"); do
  if [ $((i % 2)) = 1 ]; then order="old new"; else order="new old"; fi
  for side in $order; do
    bin=$old; [ "$side" = new ] && bin=$new
    "$bin" --records 300000 --reps 1 --latency-calls 128000 --file-dir "$out/fs" \
      > "$out/$side-$i.jsonl"
    echo "$side $i: $(cat /proc/loadavg)"
  done
done
rmdir "$out/fs"
