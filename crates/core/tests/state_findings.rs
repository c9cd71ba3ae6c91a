//! Every state file the `state_file` fuzz target once failed on
//! (`tests/data/fuzz/state_file/`, byte for byte): what the reader accepts, the writer writes
//! back so that it reads the same, times to the last bit; restored into an instance with
//! room for 3 keys (or for 64 bytes of Message), every count comes back out (saturating,
//! never wrapping or panicking).

use pssession_core::aggregate::{rows_from_state, rows_to_state, total_count};
use pssession_core::config::Config;
use pssession_core::instance::{FilterInstance, RowSink};

#[test]
fn kept_state_file_findings_round_trip_exactly() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/fuzz/state_file"
    );
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no findings kept in {dir}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let rows = rows_from_state(&text, 1.7e9).unwrap();
        let again = rows_from_state(&rows_to_state(&rows), 1.7e9).unwrap();
        assert_eq!(rows.len(), again.len(), "{}", f.display());
        for (a, b) in rows.iter().zip(&again) {
            let times = |r: &pssession_core::aggregate::Row| {
                [r.first_time, r.last_time, r.window_start].map(f64::to_bits)
            };
            assert_eq!(times(a), times(b), "{}: times changed", f.display());
            assert_eq!((&a.key, a.count), (&b.key, b.count), "{}", f.display());
        }
        for max_message_bytes in [1 << 20, 64] {
            let mut config = Config::default();
            if let Some(a) = config.aggregate.as_mut() {
                a.max_keys = 3;
                a.max_message_bytes = max_message_bytes;
            }
            let inst = FilterInstance::new(config, RowSink::Timer, "test".into(), 1.7e9);
            inst.restore(&rows, 1.7e9);
            let out = inst.on_exit(1.7e9);
            assert_eq!(total_count(&rows), total_count(&out), "{}", f.display());
        }
    }
}
