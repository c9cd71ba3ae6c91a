//! mode extended's PowerShell reader on plain scripts (the labelled corpus's everyday and
//! admin scripts): the tokenizer alone, and the whole reading (`sessions`: tokenizer,
//! reader, control flow, constant evaluation), each over the scripts one at a time as 4104
//! records bring them (`*_each`, 4 MB of them) and over one 4 MB text. Issue 14's target for
//! the tokenizer is 200 MB/s.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pssession_core::pwsh;

/// The corpus's everyday scripts (no obfuscation), repeated to about `bytes` in all.
fn plain_scripts(bytes: usize) -> Vec<String> {
    let text = std::fs::read_to_string("tests/data/corpus/remote_sessions.jsonl")
        .unwrap_or_else(|e| panic!("the labelled corpus: {e}"));
    let mut one = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        let plain = matches!(
            v["category"].as_str(),
            Some("admin" | "help" | "local" | "session" | "other")
        );
        if plain {
            one.push(format!("{}\n", v["script"].as_str().unwrap_or("")));
        }
    }
    let mut all = Vec::new();
    let mut len = 0;
    while len < bytes {
        len += one.iter().map(String::len).sum::<usize>();
        all.extend(one.iter().cloned());
    }
    all
}

fn benches(c: &mut Criterion) {
    let scripts = plain_scripts(4 << 20);
    let script = scripts.concat();
    let mut g = c.benchmark_group("pwsh_reader");
    g.throughput(Throughput::Bytes(script.len() as u64));
    g.sample_size(10);
    g.bench_function("tokenize_each", |b| {
        b.iter(|| {
            let tokens = scripts.iter().map(|s| pwsh::tokenize(s).tokens.len());
            tokens.sum::<usize>()
        })
    });
    g.bench_function("sessions_each", |b| {
        b.iter(|| {
            let found = scripts
                .iter()
                .map(|s| pwsh::sessions(s, Some("ws01")).len());
            found.sum::<usize>()
        })
    });
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
