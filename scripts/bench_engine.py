#!/usr/bin/env python3
"""The plugin's cost inside a real Fluent Bit (`make bench-engine`).

Workload: `tail` (json parser) -> [filter] -> `null`, over BENCH_RECORDS (default 300 000)
real mixed Windows events from ../shared/data/otrf (NXLog JSON, 2.2 KB a line; the repo's
labelled NXLog samples when that folder is absent), 1 in BENCH_POSITIVE_EVERY (default
1 000) of them turned into a PowerShell 4104 `Enter-PSSession -ComputerName` script block.
Pipelines, run side by side in rotation BENCH_RUNS times (default 5) each:

  passthrough      no filter
  nothing flagged  the plugin with `exclude_computer .*` (every match suppressed)
  defaults         the plugin, `mode exact`, aggregation on
  aggregate off    the plugin without the aggregate
  mode extended    the plugin reading PowerShell
  lua              a Lua filter doing the analytic's two substring tests on one flat shape,
                   as a user would write it

Each run's cost is the CPU time (user + sys) of the fluent-bit process, from wait4(); the
table shows the minimum and the range, and the overhead over passthrough of the minimums.
On a shared machine CPU time moves by 10% from run to run; BENCH_CALLGRIND=1 counts the
process's instructions under valgrind instead (every thread, the kernel excluded), which
repeat exactly, at about 50x the time (use a smaller BENCH_RECORDS).
The fluent-bit binary is FLUENT_BIT or the one on PATH; the plugin BENCH_PLUGIN or
target/release/flb-filter_pssession.so. Standard library only. Exit status 2 without a
fluent-bit, 1 when a run failed (a non-zero exit, or records missing in the plugin's own
count).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = int(os.environ.get("BENCH_RECORDS", "300000"))
EVERY = int(os.environ.get("BENCH_POSITIVE_EVERY", "1000"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))

LUA = """-- The analytic as a user writes it in Lua: EventID 4104 and both substrings, on the
-- NXLog shape (ScriptBlockText), case-insensitive.
function detect(tag, ts, record)
  if tostring(record["EventID"]) ~= "4104" then
    return 0, ts, record
  end
  local text = record["ScriptBlockText"]
  if text == nil then
    return 0, ts, record
  end
  local l = string.lower(text)
  if string.find(l, "enter-pssession", 1, true) and string.find(l, "-computername", 1, true) then
    record["mitre_technique_id"] = "T1021.006"
    record["alert"] = "Interactive Session on Remote Endpoint with PowerShell"
    return 1, ts, record
  end
  return 0, ts, record
end
"""

PIPELINES = [
    ("passthrough", None),
    ("nothing flagged", ["exclude_computer: '.*'"]),
    ("defaults", []),
    ("aggregate off", ["aggregate: off"]),
    ("mode extended", ["mode: extended"]),
    ("lua", "lua"),
]


def background_lines():
    """Real event lines: the otrf captures, else the repo's NXLog samples."""
    otrf = os.path.join(ROOT, "..", "shared", "data", "otrf")
    lines = []
    if os.path.isdir(otrf):
        for name in sorted(os.listdir(otrf)):
            if name.endswith(".zip"):
                with zipfile.ZipFile(os.path.join(otrf, name)) as z:
                    for member in z.namelist():
                        lines += z.read(member).decode("utf-8", "replace").splitlines()
        source = "../shared/data/otrf"
    else:
        path = os.path.join(ROOT, "tests", "data", "labelled", "nxlog.jsonl")
        for line in open(path):
            case = json.loads(line)
            if not case["expect"]["flagged"]:
                lines.append(json.dumps(case["record"]))
        source = "tests/data/labelled/nxlog.jsonl (negatives; ../shared/data is absent)"
    return [l for l in lines if l.strip()], source


def positive(base, k):
    """A real event turned into a 4104 script block that opens a remote session."""
    d = json.loads(base)
    text = "$c = Get-Credential\r\nEnter-PSSession -ComputerName srv%02d.corp.local -Credential $c" % (k % 50)
    d.update({
        "EventID": 4104,
        "Channel": "Microsoft-Windows-PowerShell/Operational",
        "SourceName": "Microsoft-Windows-PowerShell",
        "ScriptBlockText": text,
        "MessageNumber": 1,
        "MessageTotal": 1,
        "Message": "Creating Scriptblock text (1 of 1):\r\n%s\r\n\r\nScriptBlock ID: "
                   "0d1f6a5c-0000-4000-8000-%012d\r\nPath: " % (text, k),
    })
    return json.dumps(d)


def workload(d):
    lines, source = background_lines()
    path = os.path.join(d, "events.jsonl")
    positives = 0
    with open(path, "w") as f:
        for i in range(N):
            base = lines[i % len(lines)]
            if EVERY and i % EVERY == EVERY // 2:
                f.write(positive(base, i) + "\n")
                positives += 1
            else:
                f.write(base + "\n")
    return path, positives, source


def config(d, events, name, props, plugin):
    tail = ["- name: tail", "  path: %s" % events, "  parser: json", "  read_from_head: true",
            "  exit_on_eof: true", "  buffer_chunk_size: 1M", "  buffer_max_size: 4M",
            "  tag: win.events"]
    filters = ""
    if props == "lua":
        script = os.path.join(d, "detect.lua")
        with open(script, "w") as f:
            f.write(LUA)
        filters = ("  filters:\n    - name: lua\n      match: '*'\n      script: %s\n"
                   "      call: detect\n" % script)
    elif props is not None:
        filters = "  filters:\n    - name: pssession\n      match: '*'\n" + "".join(
            "      %s\n" % p for p in props)
    conf = ("service:\n  flush: 1\n  grace: 1\n  log_level: info\n"
            + ("plugins:\n  - %s\n" % plugin)
            + "parsers:\n  - name: json\n    format: json\n"
            + "pipeline:\n  inputs:\n" + "".join("    %s\n" % t for t in tail)
            + filters
            + "  outputs:\n    - name: 'null'\n      match: '*'\n")
    path = os.path.join(d, "%s.yaml" % name.replace(" ", "-"))
    with open(path, "w") as f:
        f.write(conf)
    return path


CALLGRIND = os.environ.get("BENCH_CALLGRIND") == "1"


def run(fb, conf, d):
    """(cost, wall seconds, exit status, log): cost is CPU seconds, or instructions."""
    log_path = conf + ".log"
    cmd = [fb, "-c", conf]
    if CALLGRIND:
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] + cmd
    with open(log_path, "w") as log:
        t = time.time()
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=d)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.time() - t
    text = open(log_path, errors="replace").read()
    cost = usage.ru_utime + usage.ru_stime
    if CALLGRIND:
        m = re.search(r"Collected : (\d+)", text)
        cost = int(m.group(1)) if m else float("nan")
    return cost, wall, os.waitstatus_to_exitcode(status), text


def check_plugin_counts(text, positives, name):
    """The plugin's exit line must account for every record (and, unless everything is
    excluded, flag every positive)."""
    m = re.search(r"stopping: (.*)", text)
    if not m:
        return "no exit line from the plugin"
    line = m.group(1)
    records = re.search(r"(\d+) records", line)
    if not records or int(records.group(1)) != N:
        return "the plugin read %s records of %d: %s" % (records and records.group(1), N, line)
    flagged = re.search(r"(\d+) flagged", line)
    want = 0 if name == "nothing flagged" else positives
    if not flagged or int(flagged.group(1)) != want:
        return "flagged %s, expected %d: %s" % (flagged and flagged.group(1), want, line)
    return None


def main():
    fb = os.environ.get("FLUENT_BIT") or shutil.which("fluent-bit")
    if not fb or not os.path.exists(fb):
        print("bench-engine needs a real Fluent Bit: set FLUENT_BIT=/path/to/fluent-bit or "
              "put fluent-bit on PATH", file=sys.stderr)
        return 2
    plugin = os.path.abspath(os.environ.get(
        "BENCH_PLUGIN", os.path.join(ROOT, "target", "release", "flb-filter_pssession.so")))
    if not os.path.exists(plugin):
        print("no plugin at %s: run make build" % plugin, file=sys.stderr)
        return 2
    if os.path.basename(plugin) != "flb-filter_pssession.so":
        print("Fluent Bit loads a filter only from a file named flb-filter_<name>.so, not %s"
              % plugin, file=sys.stderr)
        return 2
    version = subprocess.run([fb, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    d = tempfile.mkdtemp(prefix="pssession-bench-engine-")
    try:
        events, positives, source = workload(d)
        size = os.path.getsize(events)
        print("== %s; %d records (%.0f MB) from %s, %d positives; %d runs each"
              % (version, N, size / 1e6, source, positives, RUNS))
        confs = [(name, config(d, events, name, props, plugin)) for name, props in PIPELINES]
        cpu = {name: [] for name, _ in PIPELINES}
        failed = False
        for r in range(RUNS):
            for name, conf in confs:
                secs, wall, rc, text = run(fb, conf, d)
                problem = "exit status %d" % rc if rc != 0 else None
                if problem is None and name not in ("passthrough", "lua"):
                    problem = check_plugin_counts(text, positives, name)
                if problem:
                    print("FAIL %s (run %d): %s" % (name, r + 1, problem))
                    failed = True
                cpu[name].append(secs)
                unit = "instructions" if CALLGRIND else "s CPU"
                sys.stderr.write("  run %d %-16s %.6g %s, %.2f s wall\n" % (r + 1, name, secs, unit, wall))
        report(cpu)
        return 1 if failed else 0
    finally:
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(d, ignore_errors=True)


def report(cpu):
    base = min(cpu["passthrough"])
    if CALLGRIND:
        print("| pipeline | instructions | over passthrough | per record |")
        print("|---|---|---|---|")
    else:
        print("| pipeline | CPU s (min) | range | over passthrough | per record |")
        print("|---|---|---|---|---|")
    over = {}
    for name, _ in PIPELINES:
        lo, hi = min(cpu[name]), max(cpu[name])
        over[name] = lo - base
        extra = "-" if name == "passthrough" else "%+.1f%%" % (100 * over[name] / base)
        if CALLGRIND:
            per = "-" if name == "passthrough" else "%+.0f instructions" % (over[name] / N)
            print("| %s | %.4g | %s | %s |" % (name, lo, extra, per))
            continue
        per = "-" if name == "passthrough" else "%+.2f µs" % (1e6 * over[name] / N)
        print("| %s | %.2f | %.2f-%.2f | %s | %s |" % (name, lo, lo, hi, extra, per))
    plug = max(over["defaults"], 1e-9)
    print()
    print("defaults: %+.1f%% (goal <= 10%%); nothing flagged: %+.1f%% (goal <= 3%%); "
          "Lua's overhead / ours: %.1fx (goal >= 10x); extended / exact: %.2fx (goal <= 1.2x)"
          % (100 * over["defaults"] / base, 100 * over["nothing flagged"] / base,
             over["lua"] / plug, min(cpu["mode extended"]) / min(cpu["defaults"])))


if __name__ == "__main__":
    sys.exit(main())
