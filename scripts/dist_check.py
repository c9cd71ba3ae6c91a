#!/usr/bin/env python3
"""make dist-check: tests the release artifacts `make dist` left in dist/.

1. SHA256SUMS covers every file of dist/ and matches.
2. Each tarball holds what it should; every ELF file in the tarballs and the packages is
   built for its architecture, needs no glibc symbol version newer than 2.17 and no
   library beyond libc, libm, libdl, libpthread, libgcc_s and the dynamic loader (read
   from the files with readelf), carries no debug info, and names its split debug file by
   .gnu_debuglink with the right CRC.
3. The x86-64 plugin passes the labelled-shapes run: every record of
   tests/data/labelled/*.jsonl, as Fluent Bit msgpack records with a fixed time in both
   record layouts, through the tarball's pssession-replay and .so: flagged exactly when
   labelled, with the labelled computer, user and time; unflagged records unchanged.
4. The AArch64 replay binary loads the AArch64 .so under qemu-user and prints the same
   bytes as x86-64 on the labelled records (also in mode extended with schema splunk),
   samples/demo.jsonl and every record of ../shared/data (its EVTX logs, and its zipped
   NXLog captures unzipped). Only the wall clock is masked: the aggregate rows'
   window_start/window_end (replay has no option to fix its clock), and the summary's
   seconds and records_per_second.
5. Each .deb unpacks (dpkg -x) into a scratch root, each .rpm installs into one (rpm -i
   --root), with their files where README.md's Install section says, the same bytes as
   the tarball's, the plugins file a conffile; the packaged replay runs the samples with
   the packaged plugin (x86-64).

Usage: scripts/dist_check.py [--dist DIR] [--shared DIR]
       scripts/dist_check.py --elf FILE...   (only the ELF checks of step 2, on any files)
Exits 1 naming every failure.
"""

import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GLIBC_FLOOR = (2, 17)
# libgcc_s of the oldest supported systems (CentOS 7: GCC 4.8).
GCC_FLOOR = (4, 8)
ALLOWED_NEEDED = {
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "libpthread.so.0",
    "libgcc_s.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
}
ARCHS = {
    # arch: (readelf's Machine, Debian arch, RPM arch)
    "x86_64": ("Advanced Micro Devices X86-64", "amd64", "x86_64"),
    "aarch64": ("AArch64", "arm64", "aarch64"),
}
QEMU_SYSROOT = "/usr/aarch64-linux-gnu"
PLUGIN = "flb-filter_pssession.so"
REPLAY = "pssession-replay"

failures = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL: {msg}", flush=True)


def ok(msg):
    print(f"ok:   {msg}", flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, **kw)


# ---------------------------------------------------------------------------------------
# ELF


def version_tuple(text):
    return tuple(int(x) for x in text.split("."))


def read_section(path, name):
    """The bytes of section NAME of a 64-bit little-endian ELF file, or None."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError(f"{path}: not a 64-bit little-endian ELF file")
    shoff = int.from_bytes(data[0x28:0x30], "little")
    shentsize = int.from_bytes(data[0x3A:0x3C], "little")
    shnum = int.from_bytes(data[0x3C:0x3E], "little")
    shstrndx = int.from_bytes(data[0x3E:0x40], "little")

    def header(i):
        h = data[shoff + i * shentsize : shoff + (i + 1) * shentsize]
        return (
            int.from_bytes(h[0:4], "little"),  # name
            int.from_bytes(h[4:8], "little"),  # type
            int.from_bytes(h[24:32], "little"),  # offset
            int.from_bytes(h[32:40], "little"),  # size
        )

    _, _, str_off, str_size = header(shstrndx)
    strtab = data[str_off : str_off + str_size]
    for i in range(shnum):
        n, typ, off, size = header(i)
        end = strtab.index(b"\0", n)
        if strtab[n:end].decode() == name:
            return b"" if typ == 8 else data[off : off + size]  # SHT_NOBITS
    return None


def elf_checks(path, arch=None, debug_dir=None):
    """Every check of an ELF file that ships; True when all passed."""
    path = Path(path)
    before = len(failures)
    header = run(["readelf", "-h", "-W", str(path)], text=True).stdout
    machine = re.search(r"Machine:\s+(.*)", header).group(1).strip()
    if arch and machine != ARCHS[arch][0]:
        fail(f"{path}: machine {machine!r}, expected {ARCHS[arch][0]!r}")

    dynamic = run(["readelf", "-d", "-W", str(path)], text=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic)
    extra = sorted(set(needed) - ALLOWED_NEEDED)
    if extra:
        fail(f"{path}: needs libraries beyond the allowed set: {', '.join(extra)}")

    # The versions the loader will demand (.gnu.version_r), per library.
    versions = run(["readelf", "-V", "-W", str(path)], text=True).stdout
    required = []
    lib = None
    for line in versions.splitlines():
        m = re.search(r"File: (\S+)", line)
        if m:
            lib = m.group(1)
            continue
        m = re.search(r"Name: (\S+)", line)
        if m and lib:
            required.append((lib, m.group(1)))
    if not required:
        fail(f"{path}: no symbol versions found (not dynamically linked against glibc?)")
    too_new = []
    for lib, ver in required:
        m = re.fullmatch(r"GLIBC_(\d+(?:\.\d+)+)", ver)
        g = re.fullmatch(r"GCC_(\d+(?:\.\d+)+)", ver)
        if m and version_tuple(m.group(1)) <= GLIBC_FLOOR:
            continue
        if g and lib == "libgcc_s.so.1" and version_tuple(g.group(1)) <= GCC_FLOOR:
            continue
        too_new.append(f"{ver} ({lib})")
    if too_new:
        syms = run(["readelf", "--dyn-syms", "-W", str(path)], text=True).stdout
        bad = sorted(
            {
                s
                for s in re.findall(r"\s(\S+@\S+?)(?: \(\d+\))?$", syms, re.M)
                if any(s.endswith("@" + t.split(" ")[0]) for t in too_new)
            }
        )
        fail(
            f"{path}: needs versions newer than GLIBC_{'.'.join(map(str, GLIBC_FLOOR))}: "
            f"{', '.join(sorted(set(too_new)))}; symbols: {', '.join(bad) or '?'}"
        )

    if debug_dir is not None:
        if read_section(path, ".debug_info") is not None:
            fail(f"{path}: still carries .debug_info (not stripped)")
        link = read_section(path, ".gnu_debuglink")
        if link is None:
            fail(f"{path}: no .gnu_debuglink")
        else:
            name = link[: link.index(b"\0")].decode()
            crc = int.from_bytes(link[-4:], "little")
            dbg = Path(debug_dir) / name
            if name != path.name + ".debug":
                fail(f"{path}: .gnu_debuglink names {name}, expected {path.name}.debug")
            elif not dbg.is_file():
                fail(f"{path}: its debug file {name} is not in the debug archive")
            else:
                if zlib.crc32(dbg.read_bytes()) != crc:
                    fail(f"{path}: .gnu_debuglink CRC does not match {dbg.name}")
                if not read_section(dbg, ".debug_info"):
                    fail(f"{dbg}: no .debug_info")
    if len(failures) == before:
        newest = max(
            (version_tuple(v[6:]) for _, v in required if v.startswith("GLIBC_")),
            default=(),
        )
        ok(
            f"{path.name} ({machine}): needs {', '.join(sorted(set(needed)))}; newest "
            f"glibc version GLIBC_{'.'.join(map(str, newest))}"
            + ("; stripped, debug link and CRC right" if debug_dir is not None else "")
        )
        return True
    return False


# ---------------------------------------------------------------------------------------
# replay


def replay(exe, plugin, args, out, arch):
    """Runs pssession-replay (under qemu for aarch64); returns (stdout bytes, summary)."""
    cmd = [str(exe), "--plugin", str(plugin), "--format", "json", "-o", str(out), *args]
    if arch == "aarch64":
        cmd = ["qemu-aarch64", "-L", QEMU_SYSROOT, *cmd]
    p = subprocess.run(cmd, capture_output=True, cwd=ROOT)
    if p.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)}: exit {p.returncode}\n{p.stderr.decode(errors='replace')[-2000:]}"
        )
    summary = json.loads(p.stderr.decode().strip().splitlines()[-1])
    return Path(out).read_bytes(), summary


WINDOW = re.compile(rb'"window_start":-?[0-9.eE+-]+,"window_end":-?[0-9.eE+-]+')


def wall_clock_free(out, summary):
    """The output with only its wall-clock values masked."""
    masked = WINDOW.sub(b'"window_start":"<clock>","window_end":"<clock>"', out)
    s = {k: v for k, v in summary.items() if k not in ("seconds", "records_per_second")}
    return masked, s


def msgpack(v):
    """Minimal MessagePack encoding of a JSON value (what the labelled records hold)."""
    if v is None:
        return b"\xc0"
    if v is True or v is False:
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 0x80:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        return b"\xcf" + struct.pack(">Q", v) if v >= 0 else b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode()
        n = len(b)
        head = bytes([0xA0 | n]) if n < 32 else b"\xdb" + struct.pack(">I", n)
        return head + b
    if isinstance(v, list):
        return b"\xdd" + struct.pack(">I", len(v)) + b"".join(msgpack(x) for x in v)
    if isinstance(v, dict):
        return b"\xdf" + struct.pack(">I", len(v)) + b"".join(
            msgpack(k) + msgpack(x) for k, x in v.items()
        )
    raise TypeError(f"cannot encode {type(v)}")


# The Fluent Bit time the labelled records carry (tests/labelled_shapes.rs's FB_TIME): a
# fixed clock, so that records without their own time give the same output on every run.
FB_TIME = 1_800_000_000.5


def labelled_inputs(tmp):
    """The labelled records as Fluent Bit msgpack records, in the legacy layout
    [time, body] and the current one [[EventTime, metadata], body]."""
    cases = []
    for f in sorted((ROOT / "tests/data/labelled").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            if line.strip():
                cases.append(json.loads(line))
    legacy = Path(tmp) / "labelled-legacy.msgpack"
    legacy.write_bytes(
        b"".join(b"\x92" + msgpack(FB_TIME) + msgpack(c["record"]) for c in cases)
    )
    sec, nsec = int(FB_TIME), round((FB_TIME % 1) * 1e9)
    event_time = b"\xd7\x00" + struct.pack(">II", sec, nsec)
    current = Path(tmp) / "labelled-current.msgpack"
    current.write_bytes(
        b"".join(b"\x92\x92" + event_time + b"\x80" + msgpack(c["record"]) for c in cases)
    )
    return cases, {"legacy": legacy, "current": current}


def keeps(out, original, at=""):
    """Where OUT lost or changed a value of ORIGINAL (enrichment may only add), or None."""
    if isinstance(original, dict) and isinstance(out, dict):
        for k, v in original.items():
            if k not in out:
                return f"{at}.{k}"
            lost = keeps(out[k], v, f"{at}.{k}")
            if lost:
                return lost
        return None
    return None if out == original else at or "."


def check_labelled(cases, out_bytes, who):
    """The labelled-shapes run's verdict on replay --all output."""
    before = len(failures)
    outs = [json.loads(line) for line in out_bytes.decode().splitlines() if line.strip()]
    records = [o for o in outs if "window_start" not in o]
    if len(records) != len(cases):
        fail(f"{who}: labelled run printed {len(records)} records for {len(cases)} cases")
        return
    positives = 0
    for case, out in zip(cases, records):
        cid, exp = case["id"], case["expect"]
        flagged = "pssession" in out
        if flagged != exp["flagged"]:
            fail(f"{who}: {cid}: flagged={flagged}, labelled {exp['flagged']}")
            continue
        if not flagged:
            if out != case["record"]:
                fail(f"{who}: {cid}: an unflagged record changed")
            continue
        positives += 1
        n = out["pssession"]
        for key, want in (("ComputerName", exp["computer"]), ("User", exp["user"])):
            if n.get(key) != want:
                fail(f"{who}: {cid}: {key} {n.get(key)!r}, labelled {want!r}")
        if n.get("EventCode") != 4104 or n.get("rule_id") != "a4e8f3a4-48b2-11ec-bcfc-3e22fbd008af":
            fail(f"{who}: {cid}: EventCode/rule_id wrong")
        want_time = FB_TIME if exp["time"] is None else float(exp["time"])
        if abs(float(n.get("time", 0)) - want_time) > 1e-6:
            fail(f"{who}: {cid}: time {n.get('time')}, labelled {want_time}")
        if exp["time"] is None and n.get("time_source") != "fluentbit":
            fail(f"{who}: {cid}: time_source {n.get('time_source')!r}, expected fluentbit")
        lost = keeps(out, case["record"])
        if lost:
            fail(f"{who}: {cid}: the record's own field {lost} was lost or changed")
    want_pos = sum(1 for c in cases if c["expect"]["flagged"])
    if positives != want_pos:
        fail(f"{who}: {positives} positives flagged, {want_pos} labelled")
    if len(failures) == before:
        ok(f"{who}: labelled shapes: {len(cases)} records, {positives} flagged exactly as labelled")


# ---------------------------------------------------------------------------------------
# packages


def install_section_paths():
    """The absolute paths README.md's Install section says the packages install."""
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^## Install\n(.*?)(?=^## )", text, re.S | re.M)
    if not m:
        fail("README.md has no '## Install' section")
        return set()
    table = re.search(r"<!-- package-files -->\n(.*?)<!-- /package-files -->", m.group(1), re.S)
    if not table:
        fail("README.md's Install section has no package-files table")
        return set()
    return set(re.findall(r"`(/(?:usr|etc)/[^`\s]+)`", table.group(1)))


def tree_files(root):
    return {
        "/" + str(p.relative_to(root))
        for p in Path(root).rglob("*")
        if p.is_file() or p.is_symlink()
    }


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_package_tree(kind, root, arch, tar_dir, documented):
    """The files a package unpacked into ROOT: where the README says, same bytes."""
    files = tree_files(root)
    missing = sorted(documented - files)
    if missing:
        fail(f"{kind} {arch}: the README names {', '.join(missing)}, not in the package")
    undocumented = sorted(
        f for f in files - documented if not f.startswith("/usr/share/doc/")
        and not f.startswith("/usr/share/licenses/")
    )
    if undocumented:
        fail(f"{kind} {arch}: installs {', '.join(undocumented)}, which the README does not name")
    same = {
        f"/usr/lib/fluent-bit/plugins/{PLUGIN}": tar_dir / PLUGIN,
        f"/usr/bin/{REPLAY}": tar_dir / REPLAY,
        "/usr/include/flb_filter_pssession.h": tar_dir / "include/flb_filter_pssession.h",
        "/etc/fluent-bit/pssession-plugins.conf": ROOT / "packaging/pssession-plugins.conf",
    }
    for inside, ref in same.items():
        p = Path(root) / inside.lstrip("/")
        if p.is_file() and sha(p) != sha(ref):
            fail(f"{kind} {arch}: {inside} differs from {ref.relative_to(ref.parents[1])}")
    so = Path(root) / f"usr/lib/fluent-bit/plugins/{PLUGIN}"
    exe = Path(root) / f"usr/bin/{REPLAY}"
    if so.is_file() and exe.is_file():
        elf_checks(so, arch)
        elf_checks(exe, arch)
        if not os.access(exe, os.X_OK):
            fail(f"{kind} {arch}: {REPLAY} is not executable")
    conf = Path(root) / "etc/fluent-bit/pssession-plugins.conf"
    if conf.is_file() and f"Path /usr/lib/fluent-bit/plugins/{PLUGIN}" not in conf.read_text():
        fail(f"{kind} {arch}: pssession-plugins.conf does not name the installed plugin")
    return so, exe


def check_deb(deb, arch, tar_dir, documented, tmp):
    before = len(failures)
    info = run(["dpkg-deb", "-f", str(deb)], text=True).stdout
    fields = dict(
        (k.strip(), v.strip()) for k, v in (l.split(":", 1) for l in info.splitlines() if ":" in l and not l.startswith(" "))
    )
    if fields.get("Architecture") != ARCHS[arch][1]:
        fail(f"{deb.name}: Architecture {fields.get('Architecture')}, expected {ARCHS[arch][1]}")
    if fields.get("Package") != "flb-pssession":
        fail(f"{deb.name}: Package {fields.get('Package')}")
    conffiles = run(["dpkg-deb", "--ctrl-tarfile", str(deb)]).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(conffiles)) as t:
        names = {m.name.lstrip("./"): m for m in t.getmembers()}
        cf = t.extractfile(names["conffiles"]).read().decode() if "conffiles" in names else ""
    if "/etc/fluent-bit/pssession-plugins.conf" not in cf.split():
        fail(f"{deb.name}: /etc/fluent-bit/pssession-plugins.conf is not a conffile")
    if "/etc/fluent-bit/plugins.conf" in cf.split():
        fail(f"{deb.name}: would own Fluent Bit's own /etc/fluent-bit/plugins.conf")
    root = Path(tmp) / f"deb-{arch}"
    run(["dpkg", "-x", str(deb), str(root)])
    so, exe = check_package_tree("deb", root, arch, tar_dir, documented)
    if arch == "x86_64" and so.is_file():
        # The installed replay, pointed at the installed plugin, on the samples.
        out, summary = replay(exe, so, [str(ROOT / "samples/demo.jsonl")], Path(tmp) / "deb.out", arch)
        if summary["flagged"] != 6 or summary["records"] != 24:
            fail(f"{deb.name}: installed replay on samples: {summary['records']} records, "
                 f"{summary['flagged']} flagged (samples/README.md: 24, 6)")
    if len(failures) == before:
        ok(f"{deb.name}: {fields.get('Architecture')}, files where the README says, "
           f"same bytes as the tarball's")


def check_rpm(rpm, arch, tar_dir, documented, tmp):
    """rpm's own digest check and queries, then an install into a scratch root."""
    before = len(failures)
    run(["rpm", "-K", "--nosignature", str(rpm)])
    q = run(["rpm", "-qp", "--qf", "%{NAME} %{ARCH}\n", str(rpm)], text=True).stdout.split()
    if q != ["flb-pssession", ARCHS[arch][2]]:
        fail(f"{rpm.name}: name and arch {q}, expected flb-pssession {ARCHS[arch][2]}")
    config = run(["rpm", "-qpc", str(rpm)], text=True).stdout.split()
    if config != ["/etc/fluent-bit/pssession-plugins.conf"]:
        fail(f"{rpm.name}: config files {config}, expected /etc/fluent-bit/pssession-plugins.conf")
    root = Path(tmp) / f"rpm-{arch}"
    db = ["--root", str(root), "--dbpath", "/rpmdb"]  # a path inside the root
    run(["rpm", *db, "--initdb"])
    # --ignorearch: the aarch64 package goes into a scratch root on an x86-64 machine.
    run(["rpm", "-i", *db, "--nodeps", "--noscripts", "--ignorearch", "--nosignature", str(rpm)])
    if run(["rpm", "-qa", *db], text=True).stdout.split() != [f"flb-pssession-{rpm.name[14:-4]}"]:
        fail(f"{rpm.name}: rpm -qa in the scratch root does not list it")
    shutil.rmtree(root / "rpmdb")
    check_package_tree("rpm", root, arch, tar_dir, documented)
    if len(failures) == before:
        ok(f"{rpm.name}: {ARCHS[arch][2]}, installed into a scratch root: files where the "
           f"README says, same bytes as the tarball's")


# ---------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dist", default=str(ROOT / "dist"))
    ap.add_argument("--shared", default=str(ROOT.parent / "shared/data"))
    ap.add_argument("--elf", nargs="+", metavar="FILE", help="only the ELF checks, on these files")
    args = ap.parse_args()

    if args.elf:
        for f in args.elf:
            elf_checks(f)
        return finish()

    dist = Path(args.dist)
    version = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)
    if not dist.is_dir():
        fail(f"{dist}: no such directory (make dist)")
        return finish()

    # 1. checksums
    sums = (dist / "SHA256SUMS").read_text().splitlines() if (dist / "SHA256SUMS").is_file() else []
    listed = {line.split(None, 1)[1].lstrip("*") for line in sums if line.strip()}
    present = {p.name for p in dist.iterdir() if p.is_file() and p.name != "SHA256SUMS"}
    if listed != present:
        fail(f"SHA256SUMS lists {sorted(listed)}, dist/ holds {sorted(present)}")
    for line in sums:
        digest, name = line.split(None, 1)
        name = name.lstrip("*")
        if (dist / name).is_file() and sha(dist / name) != digest:
            fail(f"SHA256SUMS: {name} does not match")
    if sums and listed == present:
        ok(f"SHA256SUMS: {len(listed)} files, all match")

    documented = install_section_paths()
    with tempfile.TemporaryDirectory(prefix="dist-check-") as tmp:
        tmp = Path(tmp)
        trees = {}
        # 2. tarballs and ELF files
        for arch in ARCHS:
            name = f"flb-pssession-{version}-{arch}-linux-gnu"
            for suffix in (".tar.gz", ".debug.tar.gz"):
                f = dist / (name + suffix)
                if not f.is_file():
                    fail(f"dist/{f.name} missing")
                    continue
                with tarfile.open(f) as t:
                    for m in t.getmembers():
                        if m.name.startswith("/") or ".." in m.name.split("/") or not (m.isfile() or m.isdir()):
                            fail(f"dist/{f.name}: unexpected member {m.name}")
                    t.extractall(tmp / arch)
            top = tmp / arch / name
            if not top.is_dir():
                continue
            want = {PLUGIN, REPLAY, "include/flb_filter_pssession.h", "README.md", "LICENSE"}
            have = {str(p.relative_to(top)) for p in top.rglob("*") if p.is_file()}
            if not want <= have:
                fail(f"{name}.tar.gz lacks {sorted(want - have)}")
            conf = {str(p.relative_to(ROOT / "fluent-bit-conf")) for p in (ROOT / "fluent-bit-conf").rglob("*") if p.is_file()}
            tconf = {str(p.relative_to(top / "fluent-bit-conf")) for p in (top / "fluent-bit-conf").rglob("*") if p.is_file()}
            if conf != tconf:
                fail(f"{name}.tar.gz: fluent-bit-conf/ differs from the repo's")
            if (top / "LICENSE").is_file() and "Apache License" not in (top / "LICENSE").read_text():
                fail(f"{name}.tar.gz: LICENSE is not the Apache License")
            for f in (PLUGIN, REPLAY):
                if (top / f).is_file():
                    elf_checks(top / f, arch, debug_dir=tmp / arch / (name + ".debug"))
            trees[arch] = top

        # 3. the labelled-shapes run, x86-64, in both record layouts
        cases, labelled = labelled_inputs(tmp)
        inputs = {
            f"labelled ({layout} layout)": ["--all", str(path)] for layout, path in labelled.items()
        }
        inputs["labelled, mode extended, schema splunk"] = [
            "--all", "-p", "mode=extended", "-p", "schema=splunk", str(labelled["current"])
        ]
        inputs["samples"] = [str(ROOT / "samples/demo.jsonl")]
        shared = Path(args.shared)
        if (shared / "evtx").is_dir() and (shared / "otrf").is_dir():
            unz = tmp / "otrf"
            unz.mkdir()
            for z in sorted((shared / "otrf").glob("*.zip")):
                with zipfile.ZipFile(z) as zf:
                    zf.extractall(unz / z.stem)
            inputs["../shared/data, every record"] = ["--all", str(shared / "evtx"), str(unz)]
        else:
            fail(f"{shared}: no evtx/ and otrf/ (the shared data is needed for the AArch64 comparison)")
        outputs = {}
        if "x86_64" in trees:
            t = trees["x86_64"]
            for layout in labelled:
                what = f"labelled ({layout} layout)"
                out, summary = replay(t / REPLAY, t / PLUGIN, inputs[what], tmp / f"l-{layout}.out", "x86_64")
                check_labelled(cases, out, f"x86_64 {what}")
                outputs[(what, "x86_64")] = wall_clock_free(out, summary)

        # 4. AArch64 under qemu-user: the same bytes as x86-64
        if shutil.which("qemu-aarch64") is None or not Path(QEMU_SYSROOT, "lib/ld-linux-aarch64.so.1").exists():
            fail("qemu-aarch64 or libc6-arm64-cross missing (scripts/dist_tools.sh check)")
        elif set(trees) == set(ARCHS):
            for n, (what, a) in enumerate(inputs.items()):
                got = {}
                for arch in ARCHS:
                    key = (what, arch)
                    if key not in outputs:
                        t = trees[arch]
                        out, summary = replay(t / REPLAY, t / PLUGIN, a, tmp / f"run{n}-{arch}.out", arch)
                        outputs[key] = wall_clock_free(out, summary)
                    got[arch] = outputs[key]
                (ox, sx), (oa, sa) = got["x86_64"], got["aarch64"]
                if ox != oa:
                    at = next(i for i in range(min(len(ox), len(oa)) + 1) if ox[i : i + 1] != oa[i : i + 1])
                    fail(f"{what}: aarch64 output differs from x86-64 from byte {at}: "
                         f"{oa[max(0, at - 60) : at + 60]!r} vs {ox[max(0, at - 60) : at + 60]!r}")
                elif sx != sa:
                    fail(f"{what}: aarch64 summary differs: {sa} vs {sx}")
                else:
                    ok(f"{what}: aarch64 under qemu == x86-64: {len(ox)} bytes of output, "
                       f"{sx['records']} records, {sx['flagged']} flagged, {sx['aggregate_rows']} rows")
            if outputs[("samples", "x86_64")][1]["flagged"] != 6:
                fail("samples/demo.jsonl: not the 6 flagged records samples/README.md lists")

        # 5. packages
        for arch, (_, debarch, rpmarch) in ARCHS.items():
            if arch not in trees:
                continue
            deb = dist / f"flb-pssession_{version}-1_{debarch}.deb"
            rpm = dist / f"flb-pssession-{version}-1.{rpmarch}.rpm"
            if deb.is_file():
                check_deb(deb, arch, trees[arch], documented, tmp)
            else:
                fail(f"dist/{deb.name} missing")
            if rpm.is_file():
                check_rpm(rpm, arch, trees[arch], documented, tmp)
            else:
                fail(f"dist/{rpm.name} missing")
    return finish()


def finish():
    if failures:
        print(f"\ndist-check: {len(failures)} failure(s)", file=sys.stderr)
        return 1
    print("\ndist-check: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
