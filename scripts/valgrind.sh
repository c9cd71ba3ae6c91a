#!/usr/bin/env bash
# Runs the integration test binaries (the host emulator loading the built plugin .so) under
# valgrind memcheck, and reports leaks and invalid accesses, separating those with a frame
# in the plugin (the loaded flb-filter_pssession.so / libflb_filter_pssession.so) from those
# of the host side (the emulator, std, the test harness).
#
#   scripts/valgrind.sh [TEST...]        default: every tests/*.rs that loads the plugin
#
# Release build (debug = 1 in Cargo.toml, so frames have file:line): a debug build is too
# slow under valgrind for the 10 MB and 100 000-chunk tests. The tests scale their time
# bounds by PSSESSION_TIME_SCALE and skip RSS bounds / run fewer chunks when
# PSSESSION_UNDER_TOOL is set.
#
# valgrind: --leak-check=full --error-exitcode=1 (definite and possible leaks count as
# errors). Suppressions: scripts/valgrind.supp, written by this script, each justified there.
# Logs: $TARGET_DIR/valgrind/<test>.log (text) and .xml (parsed for the summary).
# Exit status: 1 if any error has a frame in the plugin; 2 if only host-side errors were
# found; 0 if clean.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null; then
  echo "== installing valgrind"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind
fi

TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=$TARGET_DIR/valgrind
mkdir -p "$OUT"
SUPP=$OUT/valgrind.supp

# Suppressions, each with its reason. Rust symbols are matched demangled.
cat > "$SUPP" <<'SUPP'
# Rust std: the handle of the current thread (an Arc kept in a thread-local, created on
# first use, e.g. by the test harness's channels) is reported "possibly lost" at exit: the
# TLS slot points inside the allocation, not at its start. Not the plugin's (std, in the
# test binary).
{
   rust-std-current-thread-handle
   Memcheck:Leak
   match-leak-kinds: possible
   fun:malloc
   ...
   fun:*std*thread*current*init_current*
}
SUPP

if [ $# -gt 0 ]; then
  TESTS=("$@")
else
  # every integration test that loads the plugin (c_header and docs do not)
  TESTS=()
  for f in tests/*.rs; do
    t=$(basename "$f" .rs)
    grep -q 'export_host_symbols!' "$f" && TESTS+=("$t")
  done
fi

echo "== building (release) ${TESTS[*]}"
args=()
for t in "${TESTS[@]}"; do args+=(--test "$t"); done
CARGO_TARGET_DIR=$TARGET_DIR cargo test --release --no-run "${args[@]}" \
  --message-format=json 2>/dev/null >"$OUT/build.json"
# the test executables, by test name
python3 - "$OUT/build.json" >"$OUT/executables.txt" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and \
            "test" in m["target"]["kind"]:
        print(m["target"]["name"], m["executable"])
PY

export PSSESSION_TIME_SCALE=100 PSSESSION_UNDER_TOOL=1
plugin_errors=0
host_errors=0
printf '%-22s %8s %8s %10s %s\n' test errors plugin "def.lost" result
while read -r name exe; do
  log=$OUT/$name.log
  xml=$OUT/$name.xml
  set +e
  valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,possible \
    --errors-for-leak-kinds=definite,possible --error-exitcode=1 \
    --suppressions="$SUPP" --num-callers=40 --trace-children=no \
    --log-file="$log" --xml=yes --xml-file="$xml" \
    "$exe" --test-threads=2 -q >"$OUT/$name.out" 2>&1
  rc=$?
  set -e
  read -r errs plug lost < <(python3 - "$xml" <<'PY'
import sys, xml.etree.ElementTree as ET
PLUGIN = ("flb-filter_pssession.so", "libflb_filter_pssession.so")
errs = plug = lost = 0
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print("? ? ?"); sys.exit()
for e in root.iter("error"):
    errs += 1
    kind = e.findtext("kind") or ""
    objs = [f.findtext("obj") or "" for f in e.iter("frame")]
    if any(o.endswith(PLUGIN) for o in objs):
        plug += 1
    if kind == "Leak_DefinitelyLost":
        x = e.find("xwhat")
        if x is not None:
            lost += int(x.findtext("leakedbytes") or 0)
print(errs, plug, lost)
PY
)
  if [ "$rc" = 0 ]; then
    result=clean
  elif [ "$errs" = 0 ] && [ "$rc" != 1 ]; then
    result="tests failed (exit $rc): see $OUT/$name.out"
    host_errors=$((host_errors + 1))
  else
    result="errors: see $log"
  fi
  [ "$plug" != "?" ] && [ "$plug" -gt 0 ] && plugin_errors=$((plugin_errors + plug))
  [ "$errs" != "?" ] && [ "$errs" -gt "${plug:-0}" ] && host_errors=$((host_errors + errs - plug))
  printf '%-22s %8s %8s %10s %s\n' "$name" "$errs" "$plug" "$lost" "$result"
done <"$OUT/executables.txt"

if [ "$plugin_errors" -gt 0 ]; then
  echo "== $plugin_errors valgrind errors with a frame in the plugin"
  exit 1
elif [ "$host_errors" -gt 0 ]; then
  echo "== no error in the plugin; host-side errors or test failures: see $OUT"
  exit 2
fi
echo "== clean: no leak and no invalid access"
