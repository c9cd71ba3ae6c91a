//! Arbitrary bytes as a Fluent Bit chunk through the pure filter: a default instance, one
//! with `reassemble on`, one in `mode extended` (PowerShell tokenizer, reassembly on by
//! default there), and the bare detector. See common.rs for the invariants.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use pssession_core::config::{Config, Mode, ReassemblySettings};
use pssession_core::filter::Detector;
use pssession_core::instance::{FilterInstance, RowSink};
use std::sync::OnceLock;

struct Targets {
    plain: FilterInstance,
    reassembling: FilterInstance,
    extended: FilterInstance,
    detector: Detector,
}

fn targets() -> &'static Targets {
    static T: OnceLock<Targets> = OnceLock::new();
    T.get_or_init(|| {
        let mut reasm = Config::default();
        reasm.reassembly = Some(ReassemblySettings {
            timeout_secs: 30.0,
            max_bytes: 1 << 20,
            max_blocks: 50,
        });
        let mut ext = reasm.clone();
        ext.mode = Mode::Extended;
        ext.flag_local_sessions = true;
        Targets {
            extended: FilterInstance::new(ext, RowSink::Timer, "fuzz".into(), 0.0),
            plain: FilterInstance::new(Config::default(), RowSink::Timer, "fuzz".into(), 0.0),
            reassembling: FilterInstance::new(reasm, RowSink::Timer, "fuzz".into(), 0.0),
            detector: Detector::new(Config::default()),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let t = targets();
    let now = 1.7e9;
    let a = t.plain.process_tagged(data, "fuzz", now, false);
    common::check(data, &a.result, "instance");
    let b = t.reassembling.process_tagged(data, "fuzz", now, false);
    common::check(data, &b.result, "reassemble on");
    for l in &b.late {
        assert!(!l.record.is_empty(), "late flag without a record");
        let (recs, end) = pssession_oracle::values(&l.record);
        assert!(
            recs.len() == 1 && end == l.record.len(),
            "late record decodes"
        );
    }
    let e = t.extended.process_tagged(data, "fuzz", now, false);
    common::check(data, &e.result, "mode extended");
    let c = t.detector.filter_chunk(data);
    common::check(data, &c, "detector");
    assert_eq!(c.outcome, a.result.outcome, "detector and instance agree");
});
