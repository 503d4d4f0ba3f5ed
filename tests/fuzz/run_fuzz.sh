#!/usr/bin/env bash
# Builds axp_fuzz with clang (libFuzzer + ASan + UBSan), writes the seed corpus and fuzzes for
# a bounded time. Exits non-zero on any crash, leak, sanitizer report or broken invariant.
# Usage: run_fuzz.sh <clang++> <source dir> <work dir> <seconds>
set -euo pipefail
cxx=$1 src=$2 work=$3 seconds=$4
mkdir -p "$work/corpus" "$work/artifacts"
flags=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=all -I"$src/protocol/include" -I"$src/bpf" -I"$src/dataplane/src")
protocol=("$src/protocol/src/axp.cc" "$src/protocol/src/packet.cc")
"$cxx" "${flags[@]}" -o "$work/axp_fuzz" "$src/tests/fuzz/axp_fuzz.cc" "${protocol[@]}" \
  "$src/dataplane/src/reply_builder.cc"
"$cxx" -std=c++20 -O1 -I"$src/protocol/include" -I"$src/bpf" -o "$work/make_corpus" \
  "$src/tests/fuzz/make_corpus.cc" "${protocol[@]}"
"$work/make_corpus" "$work/corpus"
# -max_total_time bounds the run; the corpus grows in the work dir, never in the source tree.
"$work/axp_fuzz" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
  "$work/corpus"
