//! mode extended's PowerShell reader on plain scripts (the labelled corpus's everyday and
//! admin scripts, repeated to 4 MB): the tokenizer alone, and the whole reading
//! (`sessions`: tokenizer, reader, control flow, constant evaluation). Issue 14's target
//! for the tokenizer is 200 MB/s.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pssession_core::pwsh;

/// The corpus's scripts labelled `none` or `local` that use no obfuscation, joined and
/// repeated to about `bytes`.
fn plain_scripts(bytes: usize) -> String {
    let text = std::fs::read_to_string("tests/data/corpus/remote_sessions.jsonl")
        .unwrap_or_else(|e| panic!("the labelled corpus: {e}"));
    let mut one = String::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        let plain = matches!(
            v["category"].as_str(),
            Some("admin" | "help" | "local" | "session" | "other")
        );
        if plain {
            one.push_str(v["script"].as_str().unwrap_or(""));
            one.push('\n');
        }
    }
    let mut all = String::with_capacity(bytes + one.len());
    while all.len() < bytes {
        all.push_str(&one);
    }
    all
}

fn benches(c: &mut Criterion) {
    let script = plain_scripts(4 << 20);
    let mut g = c.benchmark_group("pwsh_reader");
    g.throughput(Throughput::Bytes(script.len() as u64));
    g.sample_size(10);
    g.bench_function("tokenize", |b| {
        b.iter(|| pwsh::tokenize(&script).tokens.len())
    });
    g.bench_function("sessions", |b| {
        b.iter(|| pwsh::sessions(&script, Some("ws01")).len())
    });
    g.finish();
}

criterion_group!(reader, benches);
criterion_main!(reader);
