//! Helpers shared by the integration tests: the plugin loaded through the host emulator,
//! chunks built from JSON, and the shared real-data folder.
#![allow(dead_code)]

use pssession_core::chunk_io::{self, DecodedRecord, Layout};
use pssession_host_emulator::{self as host_emulator, Plugin};
use serde_json::Value;
use std::path::PathBuf;

pub fn plugin() -> &'static Plugin {
    host_emulator::shared_plugin().unwrap_or_else(|e| panic!("{e}"))
}

/// A chunk of the given bodies, one second apart from `t0`.
pub fn chunk_of(bodies: &[Value], t0: f64, layout: Layout) -> Vec<u8> {
    let mut chunk = Vec::new();
    for (i, b) in bodies.iter().enumerate() {
        chunk_io::push_record(
            &mut chunk,
            &chunk_io::json_to_msgpack(b),
            t0 + i as f64,
            layout,
        );
    }
    chunk
}

pub fn decode(chunk: &[u8]) -> Vec<DecodedRecord> {
    chunk_io::decode_chunk(chunk).unwrap_or_else(|off| panic!("output not msgpack at {off}"))
}

/// Reads a JSON-lines file of the repo.
pub fn jsonl(rel: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .collect()
}

/// `../shared/data` beside the checkout, if present. Absent, tests that need it print a
/// visible SKIPPED line and pass on a user's clone (it is not part of one), but fail in CI
/// (`CI` set), where it is always laid beside the checkout: a missing folder there must not
/// pass for a clean run.
pub fn shared_data() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if p.is_dir() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} not found, and CI is set: CI always has it",
        p.display()
    );
    eprintln!(
        "SKIPPED: {} not found (team machines and CI have it)",
        p.display()
    );
    None
}

/// Looks up a dotted path in a JSON object (each segment a key).
pub fn at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    let mut cur = v;
    for k in path {
        cur = cur.get(*k)?;
    }
    Some(cur)
}

/// Asserts that `out` keeps everything of `original`: every key of a map with its value
/// (maps may have gained keys), every other value equal.
pub fn assert_keeps(out: &Value, original: &Value, ctx: &str) {
    match (out, original) {
        (Value::Object(o), Value::Object(orig)) => {
            for (k, v) in orig {
                let got = o.get(k).unwrap_or_else(|| panic!("{ctx}: lost key {k}"));
                assert_keeps(got, v, &format!("{ctx}.{k}"));
            }
        }
        _ => assert_eq!(out, original, "{ctx}: value changed"),
    }
}
