//! Throughput of the filter callback, called through the plugin's FFI entry point (the host
//! emulator loads the built .so), on chunks of real mixed Windows events: the NXLog captures
//! in ../shared/data/otrf when present, else the repo's samples. `make bench`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pssession_core::chunk::Records;
use pssession_core::chunk_io::{self, Layout};
use pssession_core::config::Config;
use pssession_core::filter::Detector;
use pssession_host_emulator as host_emulator;
use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;

pssession_host_emulator::export_host_symbols!();

/// Real events, as JSON bodies.
fn background() -> (Vec<Value>, &'static str) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let otrf = root.join("../shared/data/otrf");
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir(&otrf) {
        let mut paths: Vec<_> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            let Ok(f) = std::fs::File::open(&p) else {
                continue;
            };
            let Ok(mut z) = zip::ZipArchive::new(f) else {
                continue;
            };
            for i in 0..z.len() {
                let mut s = String::new();
                if z.by_index(i)
                    .and_then(|mut e| Ok(e.read_to_string(&mut s)?))
                    .is_ok()
                {
                    out.extend(s.lines().filter_map(|l| serde_json::from_str(l).ok()));
                }
            }
        }
    }
    if !out.is_empty() {
        return (out, "otrf");
    }
    let text = std::fs::read_to_string(root.join("samples/demo.jsonl")).unwrap();
    let samples: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for _ in 0..200 {
        out.extend(samples.iter().cloned());
    }
    (out, "samples")
}

fn chunk(bodies: &[Value]) -> Vec<u8> {
    let mut c = Vec::new();
    for b in bodies {
        chunk_io::push_record(
            &mut c,
            &chunk_io::json_to_msgpack(b),
            1.7e9,
            Layout::CURRENT,
        );
    }
    c
}

fn positive() -> Value {
    serde_json::json!({"EventID": 4104, "Channel": "Microsoft-Windows-PowerShell/Operational",
        "Hostname": "ws01", "Domain": "CONTOSO", "AccountName": "alice",
        "Message": "Creating Scriptblock text (1 of 1):\r\nEnter-PSSession -ComputerName dc01\r\n\r\nScriptBlock ID: x\r\nPath: ",
        "ScriptBlockText": "Enter-PSSession -ComputerName dc01"})
}

/// A naive version of the same analytic: every record decoded and round-tripped through
/// `serde_json::Value`, fields looked up by name, the text lowercased and searched.
fn naive_analytic(chunk: &[u8]) -> usize {
    let mut flagged = 0;
    for rec in Records::new(chunk).flatten() {
        let Ok(body) = rmpv::decode::read_value(&mut &rec.body()[..]) else {
            continue;
        };
        let v = chunk_io::msgpack_to_json(&body);
        let id = v.get("EventID").or_else(|| v.get("EventCode"));
        let is_4104 = id.is_some_and(|i| i == 4104 || i == "4104");
        let channel_ok = v.get("Channel").and_then(|c| c.as_str()).is_none_or(|c| {
            c.eq_ignore_ascii_case("Microsoft-Windows-PowerShell/Operational")
                || c.eq_ignore_ascii_case("PowerShellCore/Operational")
        });
        let text = v
            .get("Message")
            .or_else(|| v.get("ScriptBlockText"))
            .and_then(|m| m.as_str())
            .unwrap_or("")
            .to_lowercase();
        if is_4104
            && channel_ok
            && text.contains("enter-pssession")
            && text.contains("-computername")
        {
            flagged += 1;
        }
    }
    flagged
}

/// The floor: walking the same chunk's records without looking inside them.
fn bare_walk(chunk: &[u8]) -> usize {
    Records::new(chunk).count()
}

fn benches(c: &mut Criterion) {
    let (mut bodies, origin) = background();
    // Unflagged background only: the NOTOUCH path.
    bodies.retain(|b| !b.to_string().contains("Enter-PSSession"));
    let plain: Vec<Value> = bodies.iter().take(2000).cloned().collect();
    let plain_chunk = chunk(&plain);
    // 1% flagged.
    let mut mixed = plain.clone();
    for i in (0..mixed.len()).step_by(100) {
        mixed[i] = positive();
    }
    let mixed_chunk = chunk(&mixed);

    let plugin = host_emulator::shared_plugin().expect("build the plugin first");
    let inst = plugin
        .instance(&[("match", "*"), ("log_level", "error")])
        .unwrap();
    let ext = plugin
        .instance(&[("match", "*"), ("log_level", "error"), ("mode", "extended")])
        .unwrap();
    let detector = Detector::new(Config::default());

    let mut g = c.benchmark_group(format!("filter/{origin}"));
    g.throughput(Throughput::Bytes(plain_chunk.len() as u64));
    g.bench_function("floor_bare_msgpack_walk", |b| {
        b.iter(|| bare_walk(&plain_chunk))
    });
    g.bench_function("ffi_no_flagged", |b| {
        b.iter(|| inst.filter_discard(&plain_chunk))
    });
    g.bench_function("core_no_flagged", |b| {
        b.iter(|| detector.filter_chunk(&plain_chunk))
    });
    g.bench_function("ffi_extended_no_flagged", |b| {
        b.iter(|| ext.filter_discard(&plain_chunk))
    });
    g.bench_function("naive_serde_json_no_flagged", |b| {
        b.iter(|| naive_analytic(&plain_chunk))
    });
    g.throughput(Throughput::Bytes(mixed_chunk.len() as u64));
    g.bench_function("ffi_1pct_flagged", |b| {
        b.iter(|| inst.filter_discard(&mixed_chunk))
    });
    g.bench_function("ffi_extended_1pct_flagged", |b| {
        b.iter(|| ext.filter_discard(&mixed_chunk))
    });
    g.finish();

    let mut g = c.benchmark_group("records");
    g.throughput(Throughput::Elements(plain.len() as u64));
    g.bench_function("ffi_no_flagged_per_record", |b| {
        b.iter_batched(
            || (),
            |_| inst.filter_discard(&plain_chunk),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // One 10 MB script block: judged in time linear in its size, in both modes.
    let mut g = c.benchmark_group("script_block_10mb");
    g.sample_size(10);
    let mut big = positive();
    let script = format!(
        "{}\r\nEnter-PSSession -ComputerName dc01",
        "Get-Date # filler line\r\n".repeat((10 << 20) / 25)
    );
    big["ScriptBlockText"] = serde_json::json!(script);
    big["Message"] = serde_json::json!(format!(
        "Creating Scriptblock text (1 of 1):\r\n{script}\r\n\r\nScriptBlock ID: x\r\nPath: "
    ));
    let big_chunk = chunk(&[big]);
    g.throughput(Throughput::Bytes(big_chunk.len() as u64));
    g.bench_function("exact", |b| b.iter(|| inst.filter_discard(&big_chunk)));
    g.bench_function("extended", |b| b.iter(|| ext.filter_discard(&big_chunk)));
    g.finish();
}

criterion_group!(name = filter; config = Criterion::default().sample_size(30); targets = benches);
criterion_main!(filter);
