//! Lifecycle through the built plugin (host emulator playing Fluent Bit >= 5.0.3):
//! - 100 init / filter / exit cycles in one process (as hot reload does), with every
//!   feature that allocates switched on, keep resident memory flat;
//! - one instance called from 4 threads at once with 100 000 chunks in total (4 x 25 000
//!   small chunks: the debug build runs the whole file in seconds) gives exact counts in
//!   its exit summary and the same bytes on every call.
//!
//! Under valgrind or a sanitizer (`PSSESSION_UNDER_TOOL=1`) RSS means nothing
//! (the tool's own memory) and is not asserted, and the threads run a tenth of the chunks;
//! valgrind's leak check takes the place of the RSS bound.

mod common;
pssession_host_emulator::export_host_symbols!();

use common::*;
use pssession_core::chunk_io::Layout;
use pssession_host_emulator::{emitted, logs_containing};
use serde_json::{json, Value};
use std::sync::Mutex;

/// The RSS tests must not run beside the thread test (its allocations would count).
static SERIAL: Mutex<()> = Mutex::new(());

fn positive(host: &str, n: usize) -> Value {
    json!({"EventID": 4104, "Channel": "Microsoft-Windows-PowerShell/Operational",
           "Hostname": host, "Domain": "CONTOSO", "AccountName": format!("user{n}"),
           "ScriptBlockText": format!("Enter-PSSession -ComputerName dc{n}")})
}

fn negative() -> Value {
    json!({"EventID": 4624, "Channel": "Security", "Hostname": "dc01"})
}

fn part(id: &str, n: u32, total: u32, text: &str) -> Value {
    json!({"EventID": 4104, "Hostname": "ws01", "MessageNumber": n, "MessageTotal": total,
           "ScriptBlockId": id, "ScriptBlockText": text})
}

/// Under valgrind or a sanitizer (scripts/valgrind.sh and scripts/sanitize.sh set it): RSS
/// is the tool's, and everything runs several times slower.
fn under_valgrind() -> bool {
    std::env::var_os("PSSESSION_UNDER_TOOL").is_some()
}

/// Resident set size in bytes, from /proc/self/statm.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// One init / filter / exit cycle with aggregation, reassembly (a block left open at
/// exit), alert copies, exclusions and a state file.
fn cycle(i: usize, state: &std::path::Path) {
    let alias = format!("cycle{i}");
    let state = state.to_string_lossy().into_owned();
    let inst = plugin()
        .instance(&[
            ("match", "*"),
            ("alias", &alias),
            ("reassemble", "on"),
            ("alert_tag", "alerts.ps"),
            ("exclude_user", "^CONTOSO\\\\svc_"),
            ("exclude_computer", "(?i)^jump\\d+$"),
            ("aggregate_state_file", &state),
            ("schema", if i % 2 == 0 { "ecs" } else { "splunk" }),
        ])
        .unwrap();
    let bodies: Vec<Value> = (0..50)
        .map(|n| match n % 5 {
            0 => positive("ws01", n),
            1 => part(&format!("open-{n}"), 1, 2, "Enter-PSSession"),
            2 => part("done", 1 + (n % 2) as u32, 2, "-ComputerName x"),
            _ => negative(),
        })
        .collect();
    let chunk = chunk_of(&bodies, 1.7e9, Layout::CURRENT);
    for round in 0..4 {
        let call = inst.filter(&chunk, "t");
        assert!(call.modified());
        assert_eq!(decode(&call.chunk).len(), bodies.len());
        if round == 1 {
            // a flush on the timer; the rows of the later rounds are saved at exit
            inst.fire_timers();
        }
    }
    drop(inst);
}

/// Bytes the emulator keeps of the first `cycles` cycles: every record the plugin emitted
/// (alert copies, rows) and every log line, which it stores for the tests to read.
fn emulator_kept(cycles: usize) -> u64 {
    let emitted: usize = (0..cycles)
        .flat_map(|i| emitted(&format!("emitter_for_cycle{i}")))
        .map(|e| e.data.len() + e.tag.len() + 64)
        .sum();
    let logs: usize = logs_containing("").iter().map(|l| l.text.len() + 48).sum();
    (emitted + logs) as u64
}

/// What the emulator itself keeps per instance (log lines, emitted records, its own
/// emitter handles) grows with every cycle; it is cleared where it can be, and the bound
/// below leaves room for the rest.
#[test]
fn a_hundred_reload_cycles_keep_memory_flat() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = std::env::temp_dir().join(format!("pssession-lifecycle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("rows.state");
    // warm-up: the plugin is loaded, allocator arenas and lazily built tables exist
    for i in 0..20 {
        cycle(i, &state);
    }
    let kept_before = emulator_kept(20);
    let before = rss();
    for i in 20..120 {
        cycle(i, &state);
    }
    let after = rss();
    let kept = emulator_kept(120).saturating_sub(kept_before);
    let grown = after.saturating_sub(before);
    let plugin_grown = grown.saturating_sub(kept);
    eprintln!(
        "RSS before {} KiB, after {} KiB: grown {} KiB over 100 cycles, of which {} KiB are \
         the emulator's records of emitted records and log lines; {} KiB unexplained",
        before / 1024,
        after / 1024,
        grown / 1024,
        kept / 1024,
        plugin_grown / 1024
    );
    // A leak of each cycle's instance (config, regexes, aggregate, open script blocks,
    // buffers of ~20 KiB chunks) would pass 4 MiB over 100 cycles; allocator noise stays
    // well below it.
    assert!(
        under_valgrind() || plugin_grown < 4 << 20,
        "RSS grew by {} KiB beyond what the emulator keeps",
        plugin_grown / 1024
    );
    // every cycle's rows were saved for the next and restored by it
    let restored = logs_containing("restored ").len();
    assert!(restored >= 99, "state file restored {restored} times");
    let summaries = logs_containing("] stopping: ");
    assert!(summaries.len() >= 120, "{} exit summaries", summaries.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn four_threads_hundred_thousand_chunks_exact_counts() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    const THREADS: usize = 4;
    let chunks_per_thread: usize = if under_valgrind() { 2_500 } else { 25_000 };
    let inst = plugin()
        .instance(&[("match", "*"), ("alias", "lifecycle-threads")])
        .unwrap();
    // Each thread has its own chunks: its own computers, so the aggregate rows are exact.
    let chunks: Vec<(Vec<u8>, Vec<u8>)> = (0..THREADS)
        .map(|t| {
            let c = chunk_of(
                &[negative(), positive(&format!("ws{t}"), t), negative()],
                1.7e9,
                Layout::all()[t % Layout::all().len()],
            );
            let expected = inst.filter(&c, "t").chunk;
            (c, expected)
        })
        .collect();
    let neg_only = chunk_of(&[negative()], 1.7e9, Layout::CURRENT);
    std::thread::scope(|s| {
        for (c, expected) in &chunks {
            let inst = &inst;
            let neg_only = &neg_only;
            s.spawn(move || {
                for i in 0..chunks_per_thread {
                    if i % 2 == 0 {
                        let call = inst.filter(c, "t");
                        assert!(&call.chunk == expected, "chunk {i} differs");
                    } else {
                        let call = inst.filter(neg_only, "t");
                        assert!(!call.modified());
                    }
                }
            });
        }
    });
    drop(inst);
    let summary = logs_containing("[filter:pssession:lifecycle-threads] stopping");
    assert_eq!(summary.len(), 1);
    let text = &summary[0].text;
    // the calls made for the expected outputs, plus the threads' own
    let flagged_chunks = THREADS + THREADS * chunks_per_thread / 2;
    let neg_chunks = THREADS * chunks_per_thread / 2;
    let records = flagged_chunks * 3 + neg_chunks;
    for want in [
        format!("{records} records read"),
        format!("{flagged_chunks} PowerShell 4104 events"),
        format!("{flagged_chunks} flagged"),
        "0 excluded".to_string(),
        format!("{flagged_chunks} chunks modified"),
        "0 internal errors".to_string(),
    ] {
        assert!(text.contains(&want), "want '{want}' in: {text}");
    }
    // rows at exit: one per thread's key, with its exact count
    let rows = logs_containing("[filter:pssession:lifecycle-threads] aggregate row at shutdown");
    assert_eq!(rows.len(), THREADS, "{rows:?}");
    let per_key = 1 + chunks_per_thread / 2;
    for r in &rows {
        assert!(
            r.text.contains(&format!("\"count\":{per_key}")),
            "{}",
            r.text
        );
    }
}
