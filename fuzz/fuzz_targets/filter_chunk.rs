//! Arbitrary bytes as a Fluent Bit chunk through the pure filter: a default instance, one
//! with `reassemble on`, one in `mode extended` (PowerShell tokenizer, reassembly on by
//! default there), and the bare detector. See common.rs for the invariants.
//!
//! The instances are made afresh for every input (reassembly keeps open blocks from one
//! chunk to the next), so a finding replays alone; `ffi_entry` fuzzes whole histories.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use pssession_core::config::{Config, Mode, ReassemblySettings};
use pssession_core::filter::Detector;
use pssession_core::instance::{FilterInstance, RowSink};
use std::sync::OnceLock;

struct Configs {
    plain: Config,
    reassembling: Config,
    extended: Config,
}

fn configs() -> &'static Configs {
    static C: OnceLock<Configs> = OnceLock::new();
    C.get_or_init(|| {
        let mut reasm = Config::default();
        reasm.reassembly = Some(ReassemblySettings {
            timeout_secs: 30.0,
            max_bytes: 1 << 20,
            max_blocks: 50,
        });
        let mut ext = reasm.clone();
        ext.mode = Mode::Extended;
        ext.flag_local_sessions = true;
        Configs {
            plain: Config::default(),
            reassembling: reasm,
            extended: ext,
        }
    })
}

fn instance(config: &Config) -> FilterInstance {
    FilterInstance::new(config.clone(), RowSink::Timer, "fuzz".into(), 0.0)
}

fuzz_target!(|data: &[u8]| {
    let c = configs();
    let input = common::Input::read(data);
    let now = 1.7e9;
    let a = instance(&c.plain).process_tagged(data, "fuzz", now, false);
    input.check(&a.result, "instance");
    let b = instance(&c.reassembling).process_tagged(data, "fuzz", now, false);
    input.check(&b.result, "reassemble on");
    for l in &b.late {
        assert!(!l.record.is_empty(), "late flag without a record");
        let (recs, end) = pssession_oracle::values(&l.record);
        assert!(
            recs.len() == 1 && end == l.record.len(),
            "late record decodes"
        );
    }
    let e = instance(&c.extended).process_tagged(data, "fuzz", now, false);
    input.check(&e.result, "mode extended");
    let d = Detector::new(c.plain.clone()).filter_chunk(data);
    input.check(&d, "detector");
    assert_eq!(d.outcome, a.result.outcome, "detector and instance agree");
});
