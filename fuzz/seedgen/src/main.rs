//! Writes seed corpora for the fuzz targets:
//!   seedgen <repo dir> <corpus dir> [<shared data dir>]
//! from the labelled records (tests/data/labelled/*.jsonl), samples/demo.jsonl, and, when
//! present, the real EVTX logs and OTRF captures of ../shared/data. Each target gets a few
//! hundred small files at most.

use pssession_core::chunk_io::{json_to_msgpack, msgpack_to_json, push_record, Layout};
use pssession_tools::replay::{read_evtx, Source};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Most seeds per target taken from the real data (the labelled ones are all kept).
const REAL_PER_TARGET: usize = 400;

struct Corpus {
    dir: PathBuf,
    n: usize,
}

impl Corpus {
    fn new(root: &Path, target: &str) -> Corpus {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        Corpus { dir, n: 0 }
    }

    fn add(&mut self, prefix: &str, bytes: &[u8]) {
        if bytes.len() > 256 * 1024 {
            return;
        }
        let p = self.dir.join(format!("seed-{prefix}-{:05}", self.n));
        std::fs::write(p, bytes).expect("write seed");
        self.n += 1;
    }
}

fn jsonl(path: &Path) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn body_bytes(v: &Value) -> Vec<u8> {
    let mut b = Vec::new();
    rmpv::encode::write_value(&mut b, &json_to_msgpack(v)).expect("encode");
    b
}

fn chunk(bodies: &[&Value], layout: Layout) -> Vec<u8> {
    let mut c = Vec::new();
    for (i, b) in bodies.iter().enumerate() {
        push_record(
            &mut c,
            &json_to_msgpack(b),
            1_700_000_000.5 + i as f64,
            layout,
        );
    }
    c
}

/// String fields that may carry an XML document or a syslog line.
fn strings_of(v: &Value, keys: &[&str]) -> Vec<String> {
    keys.iter()
        .filter_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_string))
        .collect()
}

struct Seeds {
    chunks: Corpus,
    ffi: Corpus,
    shapes: Corpus,
    xml: Corpus,
    syslog: Corpus,
    pwsh: Corpus,
    constant: Corpus,
    properties: Corpus,
    state: Corpus,
}

/// The `ffi_entry` target's separator between the chunks of one history.
const FFI_SEPARATOR: &[u8] = b"\xc1\xc1\xc1";

/// An `ffi_entry` input: two option bytes, then the chunks, each followed by the separator
/// and an engine step (1: the timers fire).
fn ffi_history(options: [u8; 2], chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = options.to_vec();
    for (i, c) in chunks.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(FFI_SEPARATOR);
            out.push((i % 2) as u8);
        }
        out.extend_from_slice(c);
    }
    out
}

/// Option bytes spread over the seeds, so each option is on in some of them.
fn options_for(i: usize) -> [u8; 2] {
    [
        (i.wrapping_mul(37) % 128) as u8,
        (i.wrapping_mul(11) % 128) as u8,
    ]
}

impl Seeds {
    fn record(&mut self, prefix: &str, body: &Value, i: usize) {
        let layouts = Layout::all();
        let layout = layouts[i % layouts.len()];
        let c = chunk(&[body], layout);
        self.chunks.add(prefix, &c);
        self.ffi.add(prefix, &ffi_history(options_for(i), &[c]));
        self.shapes.add(prefix, &body_bytes(body));
        for s in strings_of(body, &["_raw", "log", "message", "Message"]) {
            if s.trim_start().starts_with('<') {
                self.xml.add(prefix, s.as_bytes());
            } else if s.contains("powershell") || s.contains("pwsh") || s.contains("Scriptblock") {
                self.syslog.add(prefix, s.as_bytes());
            }
        }
        for s in strings_of(body, &["MESSAGE"]) {
            self.syslog.add(prefix, s.as_bytes());
        }
        for s in strings_of(body, &["ScriptBlockText", "Message", "message"]) {
            if !s.trim_start().starts_with('<') {
                self.pwsh.add(prefix, s.as_bytes());
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: seedgen <repo dir> <corpus dir> [<shared data dir>]");
        std::process::exit(2);
    }
    let repo = PathBuf::from(&args[1]);
    let root = PathBuf::from(&args[2]);
    let mut s = Seeds {
        chunks: Corpus::new(&root, "filter_chunk"),
        ffi: Corpus::new(&root, "ffi_entry"),
        shapes: Corpus::new(&root, "shapes"),
        xml: Corpus::new(&root, "xml_event"),
        syslog: Corpus::new(&root, "syslog_line"),
        pwsh: Corpus::new(&root, "pwsh_script"),
        constant: Corpus::new(&root, "constant_eval"),
        properties: Corpus::new(&root, "properties"),
        state: Corpus::new(&root, "state_file"),
    };
    let mut i = seed_labelled_and_demo(&mut s, &repo);
    seed_kept_findings(&mut s, &repo.join("tests/data/fuzz"));
    seed_corpus_scripts(&mut s, &repo);
    seed_properties(&mut s, &repo);
    seed_state(&mut s);
    match args.get(3).map(PathBuf::from).filter(|p| p.is_dir()) {
        Some(shared) => {
            seed_findings(&mut s, &shared.join("../fuzz"));
            seed_real(&mut s, &shared, &mut i);
        }
        None => eprintln!("seedgen: no shared data dir; labelled and demo seeds only"),
    }
    report(&s);
}

/// Every labelled record and demo sample alone, each file's records in one chunk, and
/// each file's records as a history of one-record chunks with reassembly on (the parts
/// of a script block arrive in separate chunks). Returns the next seed number.
fn seed_labelled_and_demo(s: &mut Seeds, repo: &Path) -> usize {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo.join("tests/data/labelled"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    let mut i = 0;
    for f in &files {
        let cases = jsonl(f);
        let bodies: Vec<&Value> = cases.iter().filter_map(|c| c.get("record")).collect();
        for b in &bodies {
            s.record("labelled", b, i);
            i += 1;
        }
        let all = chunk(&bodies, Layout::CURRENT);
        s.chunks.add("labelled-all", &all);
        s.ffi.add("labelled-all", &ffi_history([0, 0], &[all]));
        let one_each: Vec<Vec<u8>> = bodies
            .iter()
            .take(11)
            .map(|b| chunk(&[b], Layout::CURRENT))
            .collect();
        s.ffi
            .add("labelled-history", &ffi_history([0x01, 0], &one_each));
        s.ffi
            .add("labelled-history", &ffi_history([0x43, 0x81], &one_each));
    }
    let demo = jsonl(&repo.join("samples/demo.jsonl"));
    for b in &demo {
        s.record("demo", b, i);
        i += 1;
    }
    let demo_refs: Vec<&Value> = demo.iter().collect();
    s.chunks
        .add("demo-all", &chunk(&demo_refs, Layout::CURRENT));
    i
}

/// Property lines: each property with its default, and the filter sections of the shipped
/// classic configs.
fn seed_properties(s: &mut Seeds, repo: &Path) {
    for p in pssession_core::config::PROPERTIES {
        if let Some(d) = p.default {
            s.properties
                .add("default", format!("{} {d}\n", p.name).as_bytes());
        }
    }
    let mut confs: Vec<PathBuf> = std::fs::read_dir(repo.join("fluent-bit-conf"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    confs.sort();
    for c in confs
        .iter()
        .filter(|c| c.extension().is_some_and(|e| e == "conf"))
    {
        let text = std::fs::read_to_string(c).unwrap_or_default();
        for section in text.split('[').filter(|x| x.contains("pssession")) {
            s.properties.add("conf", section.as_bytes());
        }
    }
}

/// State files as the plugin writes them, and near misses.
fn seed_state(s: &mut Seeds) {
    let row = |msg: &str, count: u64| {
        serde_json::json!({
            "EventCode": 4104, "Message": msg, "ComputerName": "ws01.corp.contoso.com",
            "User": "CORP\\alice", "count": count, "firstTime": 1.7e9, "lastTime": 1.7e9 + 5.0,
            "window_start": 1.7e9 - 60.0,
        })
        .to_string()
    };
    let a = row("Enter-PSSession -ComputerName dc01", 3);
    let b = row("etsn dc02", 1);
    s.state.add("rows", format!("{a}\n{b}\n").as_bytes());
    s.state
        .add("repeat", format!("{a}\n{a}\n{a}\n{a}\n").as_bytes());
    s.state.add("big-count", row("x", u64::MAX).as_bytes());
    s.state.add("truncated", &a.as_bytes()[..a.len() / 2]);
    s.state.add("empty", b"");
}

/// The findings kept in the repo (tests/data/fuzz/<target>/), each a seed of its target:
/// the `ffi_entry` ones are chunks (tests/reassembly.rs replays them as such), given here
/// with reassembly on; the `state_file` ones are state files.
fn seed_kept_findings(s: &mut Seeds, dir: &Path) {
    let read = |target: &str| -> Vec<Vec<u8>> {
        std::fs::read_dir(dir.join(target))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| std::fs::read(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    for chunk in read("ffi_entry") {
        s.ffi.add("kept", &ffi_history([0x01, 0], &[chunk]));
    }
    for state in read("state_file") {
        s.state.add("kept", &state);
    }
    for chunk in read("filter_chunk") {
        s.chunks.add("kept", &chunk);
    }
}

/// The labelled PowerShell corpora's scripts (plain, obfuscated, nested), as seeds of the
/// reader and of the constant evaluator.
fn seed_corpus_scripts(s: &mut Seeds, repo: &Path) {
    for name in ["remote_sessions.jsonl", "obfuscated.jsonl"] {
        for case in jsonl(&repo.join("tests/data/corpus").join(name)) {
            if let Some(script) = case.get("script").and_then(Value::as_str) {
                s.pwsh.add("corpus", script.as_bytes());
                s.constant.add("corpus", script.as_bytes());
            }
        }
    }
}

/// Inputs that once failed a target (../shared/fuzz/<target>-*.bin), as seeds of that
/// target; the old `ffi_entry` findings were one chunk, so they get default options.
fn seed_findings(s: &mut Seeds, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(bytes) = std::fs::read(e.path()) else {
            continue;
        };
        if name.starts_with("ffi_entry-") {
            s.ffi
                .add("finding", &ffi_history([0x01, 0], &[bytes.clone()]));
            s.chunks.add("finding", &bytes);
        }
    }
}

/// Real data: EVTX events as winevtlog records and as XML documents; OTRF JSON lines.
fn seed_real(s: &mut Seeds, shared: &Path, i: &mut usize) {
    let (real_bodies, xml_docs) = read_real(shared);
    // A spread of the real records, PowerShell 4104 ones first.
    let step = (real_bodies.len() / REAL_PER_TARGET).max(1);
    let ps: Vec<&Value> = real_bodies
        .iter()
        .filter(|b| b.to_string().contains("4104"))
        .take(REAL_PER_TARGET / 4)
        .collect();
    for b in ps
        .iter()
        .copied()
        .chain(real_bodies.iter().step_by(step))
        .take(REAL_PER_TARGET)
    {
        s.record("real", b, *i);
        *i += 1;
    }
    for pair in real_bodies.chunks(8).take(40) {
        let refs: Vec<&Value> = pair.iter().collect();
        s.chunks.add("real-multi", &chunk(&refs, Layout::CURRENT));
    }
    for d in xml_docs.iter().take(REAL_PER_TARGET) {
        s.xml.add("evtx", d.as_bytes());
    }
}

/// The records of ../shared/data (PowerShell 4104 ones first) and some XML documents.
fn read_real(shared: &Path) -> (Vec<Value>, Vec<String>) {
    let mut real_bodies: Vec<Value> = Vec::new();
    let mut xml_docs: Vec<String> = Vec::new();
    let mut evtx_files: Vec<PathBuf> = std::fs::read_dir(shared.join("evtx"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    evtx_files.sort();
    for f in &evtx_files {
        let Ok(bytes) = std::fs::read(f) else {
            continue;
        };
        let src = Source::File(f.clone());
        let _ = read_evtx(&src, &bytes[..], |r| {
            real_bodies.push(msgpack_to_json(&r.body));
            Ok(())
        });
        if let Ok(mut p) = evtx::EvtxParser::from_buffer(bytes) {
            for rec in p.records().flatten().take(20) {
                xml_docs.push(rec.data);
            }
        }
    }
    let mut otrf: Vec<PathBuf> = std::fs::read_dir(shared.join("otrf"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    otrf.sort();
    for f in &otrf {
        real_bodies.extend(otrf_records(f));
    }
    real_bodies.sort_by_key(|b| {
        let id = b.get("EventID").map(|v| v.to_string()).unwrap_or_default();
        !id.contains("4104")
    });
    (real_bodies, xml_docs)
}

/// The first 300 JSON records of each file in an OTRF zip.
fn otrf_records(f: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    let Ok(file) = std::fs::File::open(f) else {
        return out;
    };
    let Ok(mut zip) = zip::ZipArchive::new(file) else {
        return out;
    };
    for k in 0..zip.len() {
        let mut text = String::new();
        if zip
            .by_index(k)
            .and_then(|mut e| Ok(e.read_to_string(&mut text)?))
            .is_err()
        {
            continue;
        }
        out.extend(
            text.lines()
                .take(300)
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(Value::is_object),
        );
    }
    out
}

fn report(s: &Seeds) {
    eprintln!(
        "seedgen: filter_chunk {}, ffi_entry {}, shapes {}, xml_event {}, syslog_line {}, \
         pwsh_script {}, constant_eval {}, properties {}, state_file {}",
        s.chunks.n,
        s.ffi.n,
        s.shapes.n,
        s.xml.n,
        s.syslog.n,
        s.pwsh.n,
        s.constant.n,
        s.properties.n,
        s.state.n
    );
}
