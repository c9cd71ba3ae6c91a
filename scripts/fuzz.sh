#!/usr/bin/env bash
# Fuzzing with cargo-fuzz / libFuzzer (ASan + debug assertions).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     run each target for SECONDS (default 60)
#   SEED=1 scripts/fuzz.sh ...                regenerate the seed corpora first
#
# Targets (fuzz/fuzz_targets/): filter_chunk (arbitrary chunk through the pure filter: default,
# reassemble on, mode extended, bare detector), shapes (record body -> shape reader),
# xml_event (XmlWinEventLog parser), syslog_line (PowerShell-on-Linux readers), pwsh_script
# (mode extended's PowerShell tokenizer and Enter-PSSession binding), ffi_entry (the real
# cb_init / cb_filter of the registration, in-process, host functions exported by the fuzz
# binary).
#
# Toolchain: cargo-fuzz needs nightly rustc flags (-Zsanitizer=address). A nightly toolchain
# is used when rustup has one; otherwise the stable toolchain with RUSTC_BOOTSTRAP=1, which
# accepts the same -Z flags (the stable compiler is a nightly with those gated off).
#
# Corpora are generated into fuzz/corpus/<target>/ (git-ignored) from
# tests/data/labelled/*.jsonl, samples/demo.jsonl and, when present, ../shared/data (EVTX
# events as winevtlog records and XML documents, OTRF JSON lines). Crashes are written to
# fuzz/artifacts/<target>/ (git-ignored); logs to fuzz/artifacts/<target>.log. Every crash
# found becomes a regression test in tests/hostile.rs. Exit status 1 if any target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SECONDS_EACH=${1:-60}
shift || true
ALL_TARGETS=(filter_chunk shapes xml_event syslog_line pwsh_script ffi_entry)
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

# Seed corpora: generated once (or with SEED=1).
if [ "${SEED:-0}" = 1 ] || [ ! -d fuzz/corpus/filter_chunk ]; then
  echo "== generating seed corpora into fuzz/corpus/"
  rm -rf fuzz/corpus
  shared=""
  [ -d ../shared/data ] && shared=$(cd ../shared/data && pwd)
  # the main crate's lock file pins the same versions (the build reuses them)
  [ -f fuzz/seedgen/Cargo.lock ] || cp Cargo.lock fuzz/seedgen/Cargo.lock
  cargo run --quiet --manifest-path fuzz/seedgen/Cargo.toml \
    --target-dir "${SEEDGEN_TARGET_DIR:-fuzz/seedgen/target}" -- "$ROOT" "$ROOT/fuzz/corpus" $shared
fi

cd fuzz
# -a: debug assertions (overflow checks) on; release (optimised) is cargo-fuzz's default.
# `cargo fuzz run` rebuilds too, so the source must compile for the whole run.
"${FUZZ[@]}" build -a
mkdir -p artifacts
status=0
printf '%-14s %12s %8s %s\n' target executions seconds result
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log="artifacts/$t.log"
  set +e
  "${FUZZ[@]}" run -a "$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_EACH" -timeout=20 -rss_limit_mb=4096 -max_len=65536 \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' | tail -1 || true)
  if [ $rc -eq 0 ]; then
    result=ok
  elif grep -q 'failed to build fuzz script' "$log"; then
    result="BUILD FAILED -- see fuzz/$log"
    status=1
  else
    artifact=$(ls -t "artifacts/$t" 2>/dev/null | head -1 || true)
    result="CRASH (exit $rc): ${artifact:+fuzz/artifacts/$t/$artifact} -- see fuzz/$log"
    status=1
  fi
  printf '%-14s %12s %8s %s\n' "$t" "${runs:-?}" "${secs:-$SECONDS_EACH}" "$result"
done
exit $status
