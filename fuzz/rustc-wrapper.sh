#!/bin/sh
# rustc wrapper for fuzz builds (scripts/fuzz.sh sets RUSTC_WRAPPER to it): the regex family
# (regex, regex-automata, regex-syntax, aho-corasick, memchr) is built without libFuzzer's
# coverage instrumentation. Its compiler took 60 to 80% of the properties, constant_eval and
# pwsh_script campaigns' time, most of it in coverage callbacks, and its edges told libFuzzer
# about the regex crate rather than about us (OSS-Fuzz fuzzes that crate itself). ASan and
# debug assertions still apply to it; only the coverage flags are turned back off (LLVM takes
# the last occurrence of each).
# the crates left uninstrumented (crate names); `rustc-wrapper.sh --list` prints them
UNINSTRUMENTED="regex regex_automata regex_syntax aho_corasick memchr"
if [ "${1:-}" = --list ]; then
  echo "$UNINSTRUMENTED"
  exit 0
fi
crate=""
prev=""
for arg in "$@"; do
  [ "$prev" = --crate-name ] && crate=$arg
  prev=$arg
done
for c in $UNINSTRUMENTED; do
  if [ "$crate" = "$c" ]; then
    exec "$@" -Cllvm-args=-sanitizer-coverage-level=0 \
      -Cllvm-args=-sanitizer-coverage-inline-8bit-counters=false \
      -Cllvm-args=-sanitizer-coverage-pc-table=false \
      -Cllvm-args=-sanitizer-coverage-trace-compares=false \
      -Cllvm-args=-sanitizer-coverage-stack-depth=false
  fi
done
exec "$@"
