//! Every chunk the `filter_chunk` fuzz target once failed on (`tests/data/fuzz/filter_chunk/`,
//! byte for byte), through the pure filter in `mode extended` with reassembly (where the
//! PowerShell reader and its constant evaluator run): no panic, and every record the oracle
//! decodes comes out, in order.

use pssession_core::config::{Config, Mode, ReassemblySettings};
use pssession_core::filter::Outcome;
use pssession_core::instance::{FilterInstance, RowSink};

#[test]
fn kept_filter_chunk_findings_pass_through_extended_mode() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fuzz/filter_chunk");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no findings kept in {dir}");
    let config = Config {
        mode: Mode::Extended,
        flag_local_sessions: true,
        reassembly: Some(ReassemblySettings {
            timeout_secs: 30.0,
            max_bytes: 1 << 20,
            max_blocks: 50,
        }),
        ..Config::default()
    };
    for f in files {
        let chunk = std::fs::read(&f).unwrap();
        let inst = FilterInstance::new(config.clone(), RowSink::Timer, "t".into(), 0.0);
        let out = inst.process_tagged(&chunk, "fuzz", 1.7e9, false);
        let (records, _) = pssession_oracle::values(&chunk);
        if let Outcome::Modified(modified) = &out.result.outcome {
            let (after, _) = pssession_oracle::values(modified);
            assert!(
                after.len() >= records.len(),
                "{}: records lost",
                f.display()
            );
        }
    }
}
