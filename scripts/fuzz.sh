#!/usr/bin/env bash
# Fuzzing with cargo-fuzz / libFuzzer (ASan + debug assertions).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     run each target for SECONDS (default 60)
#   scripts/fuzz.sh --totals                  executions so far, per target, from the ledger
#   scripts/fuzz.sh --markdown                the same as the README's table
#   SEED=1 scripts/fuzz.sh ...                regenerate the seed corpora first
#   FUZZ_CORPUS=DIR                           corpora and ledger (default fuzz/corpus)
#   FUZZ_SANITIZER=none                       long campaigns without ASan (4x to 10x the
#                                             executions); replay their corpora under ASan:
#   scripts/fuzz.sh --asan-replay [TARGET...] every corpus input once, under ASan
#
# Targets (fuzz/fuzz_targets/): filter_chunk (arbitrary chunk through the pure filter: default,
# reassemble on, mode extended, bare detector), shapes (record body -> shape reader),
# xml_event (XmlWinEventLog parser), syslog_line (PowerShell-on-Linux readers), pwsh_script
# (mode extended's PowerShell tokenizer and Enter-PSSession binding), constant_eval (its
# constant evaluator: concatenation, -f, decoding, inflating, within its budget), ffi_entry (the real
# cb_init / cb_filter / timers / cb_exit through the host emulator: each input is a whole
# history of a fresh instance, so every finding replays alone), properties (the property
# parser and start-up), state_file (the aggregate's state file, read and restored).
#
# Campaigns resume: each target's corpus (FUZZ_CORPUS/<target>/, outside git) grows from run
# to run, and every run appends a line to FUZZ_CORPUS/ledger.tsv (date, target, executions,
# seconds, coverage, features, result, sanitizer); --totals sums it. Rows from before the
# sanitizer column count as ASan for the FFI targets (they always ran under it then) and as
# unknown (not ASan) for the others.
#
# Toolchain: cargo-fuzz needs nightly rustc flags (-Zsanitizer=address). A nightly toolchain
# is used when rustup has one; otherwise the stable toolchain with RUSTC_BOOTSTRAP=1, which
# accepts the same -Z flags. Crashes are written to fuzz/artifacts/<target>/ (git-ignored);
# logs to fuzz/artifacts/<target>.log. Every crash found becomes a regression test.
# Exit status 1 if any target crashed or failed to build.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CORPUS=$(mkdir -p "${FUZZ_CORPUS:-fuzz/corpus}" && cd "${FUZZ_CORPUS:-fuzz/corpus}" && pwd)
LEDGER=$CORPUS/ledger.tsv

ALL_TARGETS=(filter_chunk shapes xml_event syslog_line pwsh_script constant_eval ffi_entry properties state_file)

# Per target: the longest input (smaller inputs run faster; each reader's hostile sizes are
# covered by tests/hostile.rs) and the dictionary. Measured on 2026-11-29 (one core, no
# ASan): pwsh_script runs 980 inputs/s at 1 KB and 500 at 4 KB, filter_chunk 3,700 at 2 KB
# and 1,240 at 8 KB. constant_eval and properties ran 600 to 850 inputs/s whatever the
# length, compiling the regexes their inputs name; with the regex family uninstrumented
# (fuzz/rustc-wrapper.sh) they run 2.8x and 4.2x that, pwsh_script 1.5x. Then constant_eval
# ran 1,800 inputs/s while its inputs were short and 360 once libFuzzer let them grow to
# 2 KB: like pwsh_script, it reads PowerShell text up to 1 KB.
max_len() {
  # a replay runs every kept input whole, however long (libFuzzer cuts longer ones)
  if [ "${ASAN_REPLAY:-0}" = 1 ]; then echo 1048576; return; fi
  case $1 in
    pwsh_script|constant_eval) echo 1024 ;;
    properties|filter_chunk) echo 2048 ;;
    state_file|syslog_line) echo 4096 ;;
    *) echo 8192 ;;
  esac
}
dict() {
  case $1 in
    pwsh_script|constant_eval) echo dict/pwsh.dict ;;
    properties) echo dict/properties.dict ;;
    state_file) echo dict/state.dict ;;
    *) echo dict/msgpack.dict ;;
  esac
}

# awk: per target, executions (all, and under ASan), seconds, the last coverage and date.
SUM_LEDGER='
  function asan(   s) { s = $8; if (s == "") s = ($2 ~ /^(ffi_entry|properties|state_file)$/) ? "address" : "?"
    return s == "address" }
  { runs[$2] += $3; if (asan()) aruns[$2] += $3; secs[$2] += $4; cov[$2] = $5; ft[$2] = $6; last[$2] = $1 }'

totals() {
  [ -f "$LEDGER" ] || { echo "no ledger at $LEDGER yet"; return; }
  printf "%-14s %14s %14s %9s %7s %8s %s\n" target executions "under ASan" seconds cov features "last run"
  awk -F'\t' "$SUM_LEDGER"'
    END { for (t in runs) printf "%-14s %14d %14d %9d %7s %8s %s\n", t, runs[t], aruns[t], secs[t], cov[t], ft[t], last[t] }' \
    "$LEDGER" | sort
}

# The README's table: per target, executions, time, coverage and the date of the last run.
totals_markdown() {
  [ -f "$LEDGER" ] || { echo "no ledger at $LEDGER yet"; return; }
  echo "| target | executions | of which under ASan | time fuzzed | coverage (edges / features) | last run |"
  echo "|---|---|---|---|---|---|"
  awk -F'\t' "$SUM_LEDGER"'
    function commas(n,   s, out) { s = sprintf("%d", n); out = ""
      while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
      return s out }
    END { for (t in runs) printf "| `%s` | %s | %s | %d min | %s / %s | %s |\n", t, commas(runs[t]), commas(aruns[t]), secs[t] / 60, cov[t], ft[t], substr(last[t], 1, 10) }' \
    "$LEDGER" | sort
}

case "${1:-}" in
  --totals) totals; exit 0 ;;
  --markdown) totals_markdown; exit 0 ;;
  --asan-replay) ASAN_REPLAY=1; shift ;;
esac

if [ "${ASAN_REPLAY:-0}" = 1 ]; then
  # each corpus input once (-runs=0 stops after the corpus is read and run)
  RUN_LIMIT=(-runs=0)
else
  SECONDS_EACH=${1:-60}
  shift || true
  RUN_LIMIT=(-max_total_time="$SECONDS_EACH")
fi
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  FUZZ=(cargo +nightly fuzz)
  echo "== toolchain: nightly ($(rustc +nightly --version))"
else
  export RUSTC_BOOTSTRAP=1
  FUZZ=(cargo fuzz)
  echo "== toolchain: stable with RUSTC_BOOTSTRAP=1 ($(rustc --version))"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# Seed corpora: generated once (or with SEED=1), added to what earlier campaigns kept.
if [ "${SEED:-0}" = 1 ] || [ ! -d "$CORPUS/filter_chunk" ]; then
  echo "== generating seed corpora into $CORPUS"
  shared=""
  [ -d ../shared/data ] && shared=$(cd ../shared/data && pwd)
  # the main crate's lock file pins the same versions (the build reuses them)
  [ -f fuzz/seedgen/Cargo.lock ] || cp Cargo.lock fuzz/seedgen/Cargo.lock
  cargo run --quiet --manifest-path fuzz/seedgen/Cargo.toml \
    --target-dir "${SEEDGEN_TARGET_DIR:-fuzz/seedgen/target}" -- "$ROOT" "$CORPUS" $shared
fi

# The sanitizer of the build: ASan unless FUZZ_SANITIZER says otherwise. Long campaigns may
# run without it (FUZZ_SANITIZER=none: 4x the executions for the pure targets, 10x for the
# FFI ones, whose per-run cost is mostly ASan's bookkeeping); panics, debug assertions and
# the targets' own checks still stop them, and --asan-replay then runs every input the
# campaign kept under ASan, so a memory error on any input that reached new code is still
# seen. The CI smoke always runs under ASan. Each sanitizer builds in its own target dir (no
# rebuild thrash): fuzz/target (ASan, cargo-fuzz's default), fuzz/target-none.
sanitizer() {
  if [ "${ASAN_REPLAY:-0}" = 1 ]; then echo address; else echo "${FUZZ_SANITIZER:-address}"; fi
}
target_dir() {
  if [ "$1" = address ]; then echo target; else echo "target-$1"; fi
}
fuzz_args() {
  local san
  san=$(sanitizer "$1")
  echo "-a -s $san --target-dir $(target_dir "$san")"
}

# The lines of a failed run's log that say why: the panic and its message, the sanitizer's
# report and summary, libFuzzer's verdict, and the input's bytes (base64, to replay).
cause() {
  grep -aE -A3 "panicked at|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|^SUMMARY:" "$1" \
    | grep -avE '^\s+#?[0-9]+:? |^\s+at ' | head -20 | sed 's/^/    | /'
  grep -aE -m1 '^Base64: ' "$1" | cut -c1-2000 | sed 's/^/    | /' || true
}

cd fuzz
# -a: debug assertions (overflow checks) on; release (optimised) is cargo-fuzz's default.
# The wrapper leaves the regex family without coverage instrumentation (see its header).
# Cargo's fingerprints leave the wrapper out, so a target dir built with another list of
# uninstrumented crates is cleaned of them once (the stamp file names the list's checksum).
export RUSTC_WRAPPER=$ROOT/fuzz/rustc-wrapper.sh
UNINSTRUMENTED=$("$RUSTC_WRAPPER" --list)
STAMP=.uninstrumented-$(cksum <<<"$UNINSTRUMENTED" | cut -d' ' -f1)
PACKAGES=()
for c in $UNINSTRUMENTED; do PACKAGES+=(-p "${c//_/-}"); done
for san in $(for t in "${TARGETS[@]}"; do sanitizer "$t"; done | sort -u); do
  dir=$(target_dir "$san")
  if [ -d "$dir" ] && [ ! -f "$dir/$STAMP" ]; then
    "${FUZZ[@]:0:${#FUZZ[@]}-1}" clean --release --target-dir "$dir" \
      --target "$(rustc -vV | sed -n 's/^host: //p')" "${PACKAGES[@]}" >/dev/null 2>&1 || true
  fi
  mkdir -p "$dir" && touch "$dir/$STAMP"
  if ! "${FUZZ[@]}" build -a -s "$san" --target-dir "$(target_dir "$san")" >artifacts.build.log 2>&1; then
    tail -30 artifacts.build.log
    echo "BUILD FAILED -- see fuzz/artifacts.build.log"
    exit 1
  fi
done
mkdir -p artifacts
status=0
printf '%-14s %12s %8s %7s %8s %s\n' target executions seconds cov features result
for t in "${TARGETS[@]}"; do
  mkdir -p "$CORPUS/$t" "artifacts/$t"
  # Each run writes its own log, moved to artifacts/<target>.log once read: two runs of one
  # target at once (a campaign and a replay) would otherwise write into one file, and each
  # would count the other's executions.
  log="artifacts/$t.log"
  run_log=$(mktemp "artifacts/$t.run.XXXXXX")
  before=$(ls "artifacts/$t" | wc -l)
  started=$(date +%s)
  set +e
  # shellcheck disable=SC2046
  "${FUZZ[@]}" run $(fuzz_args "$t") "$t" "$CORPUS/$t" -- \
    "${RUN_LIMIT[@]}" -timeout=20 -rss_limit_mb=4096 \
    -max_len="$(max_len "$t")" -dict="$(dict "$t")" -print_final_stats=1 >"$run_log" 2>&1
  rc=$?
  set -e
  runs=$(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$run_log" | grep -o '[0-9]*$' | awk '{s+=$1} END {print s+0}' || true)
  last=$(grep -aE '^#[0-9]+.*cov: ' "$run_log" | tail -1 || true)
  cov=$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.*ft: ([0-9]+).*/\1/p' <<<"$last")
  secs=$(grep -ao 'Done [0-9]* runs in [0-9]* second' "$run_log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' | tail -1 || true)
  # a crash ends the run early, without that line: the wall time of the run instead
  [ -n "$secs" ] || secs=$(( $(date +%s) - started ))
  if [ $rc -eq 0 ]; then
    result=ok
  elif grep -aq 'failed to build fuzz script' "$run_log"; then
    result="BUILD FAILED -- see fuzz/$log"
    status=1
  elif [ "$(ls "artifacts/$t" | wc -l)" -gt "$before" ]; then
    artifact=$(ls -t "artifacts/$t" | head -1)
    result="CRASH (exit $rc): fuzz/artifacts/$t/$artifact -- see fuzz/$log"
    status=1
  else
    result="FAILED to run (exit $rc) -- see fuzz/$log"
    status=1
  fi
  printf '%-14s %12s %8s %7s %8s %s\n' "$t" "${runs:-0}" "$secs" "${cov:-?}" "${ft:-?}" "$result"
  # the cause, where whoever reads only this output (a CI log) can see it
  [ $rc -eq 0 ] || cause "$run_log"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "${runs:-0}" "$secs" \
    "${cov:-}" "${ft:-}" "${result%% *}" "$(sanitizer "$t")" >>"$LEDGER"
  mv -f "$run_log" "$log"
done
exit $status
