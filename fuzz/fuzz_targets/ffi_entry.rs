//! The real C entry points (`cb_init`, `cb_filter`, the timers, `cb_exit`) of the
//! `filter_pssession_plugin` registration, called in-process through the host emulator
//! (its host functions are exported from this binary, see build.rs) exactly as Fluent Bit
//! calls them.
//!
//! Every input is a whole, replayable history (see [`Script`]): the options of a fresh
//! instance, then a sequence of chunks with engine events between them (timers firing, a
//! stop). Nothing carries over from one input to the next, so a finding replays alone.
//!
//! Checks, for every chunk: the return code is NOTOUCH with no buffer or MODIFIED with a
//! malloc'd one (the emulator checks the buffer); the output holds every input record in
//! order (unflagged ones byte for byte, flagged ones keeping their header and every
//! original key and value, read by the independent oracle), then whole records the plugin
//! appended (late reassembled flags, aggregate rows), then the input's undecodable tail
//! exactly as it came; without reassembly, the records are exactly what the pure detector
//! makes of the chunk. After the stop: the emulator saw no fault, and everything the plugin
//! emitted decodes as whole records.
#![no_main]

pssession_host_emulator::export_host_symbols!();

mod linked;

use libfuzzer_sys::fuzz_target;
use linked::plugin;
use pssession_core::config::Config;
use pssession_core::filter::{Detector, Outcome};
use pssession_host_emulator::Instance;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Separates chunks in an input; the byte after it says what the engine does next.
const SEPARATOR: &[u8] = b"\xc1\xc1\xc1";
/// Most chunks read from one input (the rest of the input is the last chunk).
const MAX_CHUNKS: usize = 12;

/// One input, read as a history: byte 0 and 1 pick the instance's options, the rest is
/// chunks split at [`SEPARATOR`], each followed by an engine step.
struct Script<'a> {
    properties: Vec<(&'static str, &'static str)>,
    steps: Vec<(&'a [u8], Step)>,
}

/// What the engine does after a chunk, from the byte after its separator.
#[derive(Clone, Copy, Default)]
struct Step {
    /// The interval and tick timers fire.
    fire_timers: bool,
    /// Shutdown or reload: ingestion stops and the grace period runs (last chunk only).
    stop: bool,
}

impl<'a> Script<'a> {
    fn parse(data: &'a [u8]) -> Script<'a> {
        let (opts, rest) = match data {
            [a, b, rest @ ..] => ([*a, *b], rest),
            _ => ([0, 0], data),
        };
        let mut steps = Vec::new();
        let mut rest = rest;
        while let Some(at) = find(rest, SEPARATOR).filter(|_| steps.len() + 1 < MAX_CHUNKS) {
            let op = rest.get(at + SEPARATOR.len()).copied().unwrap_or(0);
            let step = Step {
                fire_timers: op & 1 != 0,
                stop: false,
            };
            steps.push((&rest[..at], step));
            rest = rest.get(at + SEPARATOR.len() + 1..).unwrap_or(&[]);
        }
        let last = Step {
            fire_timers: opts[1] & 0x80 != 0,
            stop: opts[0] & 0x80 != 0,
        };
        steps.push((rest, last));
        Script {
            properties: properties(opts),
            steps,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The options every other fuzz target varies, one bit each, so every combination with
/// `reassemble on` is reachable.
fn properties(opts: [u8; 2]) -> Vec<(&'static str, &'static str)> {
    let table: [(u8, u8, &[(&str, &str)]); 14] = [
        (
            0,
            0x01,
            &[("reassemble", "on"), ("reassemble_max_blocks", "4")],
        ),
        (0, 0x02, &[("mode", "extended")]),
        (0, 0x04, &[("aggregate", "off")]),
        (0, 0x08, &[("schema", "splunk")]),
        (0, 0x10, &[("aggregate_mode", "cumulative")]),
        (0, 0x20, &[("max_keys", "2")]),
        (0, 0x40, &[("flush_interval", "1s")]),
        (1, 0x01, &[("alert_tag", "alerts.pssession")]),
        (
            1,
            0x02,
            // anchored literals: a case-insensitive pattern costs a regex compile per input
            &[("exclude_user", "^nobody$"), ("exclude_computer", "^lab-")],
        ),
        (1, 0x04, &[("local_sessions", "flag")]),
        (1, 0x08, &[("transport_risk", "ssh=60,session=50")]),
        (1, 0x10, &[("max_message_bytes", "1K")]),
        (
            1,
            0x20,
            &[("reassemble_max_bytes", "1K"), ("reassemble_timeout", "1")],
        ),
        (1, 0x40, &[("namespace", "ps")]),
    ];
    let mut props = vec![("match", "*"), ("log_level", "off")];
    for (byte, bit, set) in table {
        if opts[byte as usize] & bit != 0 {
            props.extend_from_slice(set);
        }
    }
    props
}

/// The pure detector configured as the instance, when its output depends on the chunk
/// alone (no reassembly state). Kept per set of options: a detector without reassembly
/// holds no state, so sharing it keeps every input replayable alone.
fn detector_for(props: &[(&'static str, &'static str)]) -> Option<Arc<Detector>> {
    type Cache = Mutex<HashMap<Vec<(&'static str, &'static str)>, Option<Arc<Detector>>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    cache
        .entry(props.to_vec())
        .or_insert_with(|| {
            let config = Config::from_properties(|name| {
                props
                    .iter()
                    .filter(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
                    .collect()
            })
            .ok()?;
            config
                .reassembly
                .is_none()
                .then(|| Arc::new(Detector::new(config)))
        })
        .clone()
}

/// Every input record is in `out`, in order, kept; whatever follows them is whole records;
/// the input's undecodable tail ends `out` exactly as it came.
fn check_structure(input: &[u8], out: &[u8], what: &str) {
    let (ins, in_end) = pssession_oracle::values(input);
    let (outs, out_end) = pssession_oracle::values(out);
    assert!(outs.len() >= ins.len(), "{what}: records lost");
    for (a, b) in ins.iter().zip(&outs) {
        if a.raw != b.raw {
            assert_eq!(a.header(), b.header(), "{what}: header changed");
            assert!(
                matches!((a.body(), b.body()), (Some(x), Some(y)) if pssession_oracle::keeps_original(x, y)),
                "{what}: original entry lost"
            );
        }
    }
    assert_eq!(
        &out[out_end..],
        &input[in_end..],
        "{what}: the undecodable tail is not what ends the chunk"
    );
}

/// The records part of the pure detector's output for this chunk.
fn expected_records(detector: &Detector, chunk: &[u8], tag: &str) -> Vec<u8> {
    let want = detector.filter_chunk_at(chunk, tag, 0.0);
    let out: &[u8] = match &want.outcome {
        Outcome::NoTouch => chunk,
        Outcome::Modified(b) => b,
    };
    let (_, end) = pssession_oracle::values(out);
    out[..end].to_vec()
}

fn run_chunk(inst: &Instance<'_>, detector: Option<&Detector>, chunk: &[u8], i: usize) {
    let tag = "fuzz.tag";
    let call = inst.filter(chunk, tag);
    let what = format!("chunk {i}");
    if call.modified() {
        check_structure(chunk, &call.chunk, &what);
    }
    if let Some(d) = detector {
        let records = expected_records(d, chunk, tag);
        assert!(
            call.chunk.starts_with(&records),
            "{what}: the ABI's records differ from the pure detector's"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let script = Script::parse(data);
    let detector = detector_for(&script.properties);
    // every option in the table is valid, alone and together
    let mut inst = match plugin().instance(&script.properties) {
        Ok(inst) => inst,
        Err(e) => panic!("cb_init refused {:?}: {e}", script.properties),
    };
    for (i, (chunk, step)) in script.steps.iter().enumerate() {
        run_chunk(&inst, detector.as_deref(), chunk, i);
        if step.fire_timers {
            inst.fire_timers();
        }
        if step.stop {
            inst.stop_ingestion();
            inst.grace();
        }
    }
    let faults = inst.faults();
    drop(inst); // cb_exit
    assert!(faults.is_empty(), "the engine saw: {faults:?}");
    let (emitted, lost) = linked::end_run();
    for e in emitted.iter().chain(&lost) {
        let (_, end) = pssession_oracle::values(&e.data);
        assert_eq!(
            end,
            e.data.len(),
            "emitted bytes that are not whole records"
        );
    }
});
