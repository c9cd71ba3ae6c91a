#!/usr/bin/env bash
# The integration suites (the host emulator loading the plugin .so, as Fluent Bit does) under
# a sanitizer, with the plugin .so and the test binaries built the same way.
#
#   scripts/sanitize.sh thread  [TEST...]   ThreadSanitizer; default: the multi-threaded suites
#                                           (abi: callbacks on 4 threads; aggregate: the timer
#                                           against callbacks, input threads; lifecycle:
#                                           reloads, 4 threads x chunks; placements: threaded
#                                           input processors and their timers)
#   scripts/sanitize.sh address [TEST...]   AddressSanitizer + LeakSanitizer; default: every
#                                           suite that loads the plugin
#
# Needs a nightly toolchain with rust-src (-Zsanitizer, -Zbuild-std: the standard library is
# rebuilt instrumented, so its atomics and locks are seen, and no suppression is needed for
# it). Installs rust-src when missing. Builds into target/<kind>-san/ (about 5 minutes the
# first time on 2 cores). The suites see PSSESSION_UNDER_TOOL=1 (no RSS bounds, fewer
# chunks on the thread tests) and PSSESSION_TIME_SCALE=20 (time bounds x20).
# Exit status: that of `cargo test` (a sanitizer report fails its test binary).
set -euo pipefail
cd "$(dirname "$0")/.."

kind=${1:?usage: scripts/sanitize.sh thread|address [TEST...]}
shift
case $kind in
  thread) default=(abi aggregate lifecycle placements) ;;
  address) default=(abi abi_legacy_host aggregate aggregate_no_emitter config_abuse hostile
                    labelled_shapes lifecycle placements properties real_data reassembly) ;;
  *) echo "unknown sanitizer '$kind' (thread or address)" >&2; exit 2 ;;
esac
if [ $# -gt 0 ]; then tests=("$@"); else tests=("${default[@]}"); fi

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
rustup component list --toolchain nightly --installed | grep -q '^rust-src' ||
  rustup component add rust-src --toolchain nightly

host=$(rustc -vV | sed -n 's/^host: //p')
dir=target/$kind-san
export RUSTFLAGS="-Zsanitizer=$kind -Cforce-frame-pointers=yes"
export RUSTDOCFLAGS=$RUSTFLAGS
build=(cargo +nightly build -Zbuild-std --target "$host" --target-dir "$dir" --release --locked)

echo "== building the plugin .so with -Zsanitizer=$kind"
"${build[@]}" -p flb-pssession --lib
so=$dir/$host/release/libflb_filter_pssession.so
staged=$dir/plugin/flb-filter_pssession.so
mkdir -p "$(dirname "$staged")"
cp "$so" "$staged"
# (the symbol list is read whole: grep -q would end the pipe early and fail it)
if ! grep -q " U __${kind:0:1}san_" <<<"$(nm -D "$staged")"; then
  echo "the plugin .so is not instrumented for $kind" >&2
  exit 1
fi

args=()
for t in "${tests[@]}"; do args+=(--test "$t"); done
export PSSESSION_PLUGIN=$PWD/$staged PSSESSION_UNDER_TOOL=1 PSSESSION_TIME_SCALE=20
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
export ASAN_OPTIONS="detect_leaks=1 halt_on_error=1 ${ASAN_OPTIONS:-}"
test=(cargo +nightly test -Zbuild-std --target "$host" --target-dir "$dir" --release --locked
  --features sanitize-tests)

# First, proof that this build reports a bug: a planted one must fail its test.
echo "== canary: a planted bug must be reported"
if PSSESSION_SANITIZER=$kind "${test[@]}" --test sanitizer_canary -- --ignored \
  >"$dir/canary.log" 2>&1; then
  echo "the $kind sanitizer did not report the planted bug: the runs below would prove nothing" >&2
  exit 1
fi
grep -q "${kind^}Sanitizer" "$dir/canary.log" || {
  echo "the canary failed, but not by a $kind sanitizer report: see $dir/canary.log" >&2
  exit 1
}
echo "   reported, as it must be"

echo "== running ${tests[*]} under the ${kind} sanitizer (plugin: $staged)"
"${test[@]}" "${args[@]}" -- --test-threads=2
