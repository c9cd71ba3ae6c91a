//! Arbitrary bytes as the aggregate's state file: the pure reader (`rows_from_state`)
//! restoring into an instance with tight bounds, and the plugin's whole path (`cb_init`
//! reads the file from a private folder on tmpfs, `cb_exit` writes the rows back).
//!
//! Checks: never a panic; rows the reader accepts round-trip through the writer unchanged;
//! a restored instance with room for 3 keys (and for 64 bytes of Message) gives back every
//! count it took (kept or pushed out early); through the plugin, no file, however bad, stops start-up or makes
//! the engine see a fault.
#![no_main]

pssession_host_emulator::export_host_symbols!();

mod linked;

use libfuzzer_sys::fuzz_target;
use linked::plugin;
use pssession_core::aggregate::{rows_from_state, rows_to_state, total_count};
use pssession_core::config::Config;
use pssession_core::instance::{FilterInstance, RowSink};
use std::path::PathBuf;
use std::sync::OnceLock;

const NOW: f64 = 1.7e9;

/// A private folder for the state file, on tmpfs when there is one (fsync is free there).
fn folder() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let base = ["/dev/shm", "/tmp"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_dir())
            .expect("a temporary folder");
        let d = base.join(format!("pssession-fuzz-state-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("state folder");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).expect("0700");
        d
    })
}

fn pure(text: &str) {
    let Ok(rows) = rows_from_state(text, NOW) else {
        return;
    };
    let again = rows_from_state(&rows_to_state(&rows), NOW).expect("written rows read back");
    assert_eq!(rows.len(), again.len(), "round trip: row count");
    for (a, b) in rows.iter().zip(&again) {
        assert_eq!(a.key, b.key, "round trip: key");
        assert_eq!(a.count, b.count, "round trip: count");
        for (x, y) in [
            (a.first_time, b.first_time),
            (a.last_time, b.last_time),
            (a.window_start, b.window_start),
        ] {
            assert!(
                x == y || (x.is_nan() && y.is_nan()),
                "round trip: time {x} {y}"
            );
        }
    }
    // room for 3 keys, and for 3 keys or 64 bytes of Message (rows leave early, alone too)
    for max_message_bytes in [None, Some(64)] {
        let mut config = Config::default();
        if let Some(a) = config.aggregate.as_mut() {
            a.max_keys = 3;
            a.max_message_bytes = max_message_bytes.unwrap_or(a.max_message_bytes);
        }
        let inst = FilterInstance::new(config, RowSink::Timer, "fuzz".into(), NOW);
        inst.restore(&rows, NOW);
        let out = inst.on_exit(NOW);
        assert!(out.len() <= rows.len(), "more rows out than restored");
        // counts saturate (a state file can hold anything), on both sides alike
        assert_eq!(
            total_count(&rows),
            total_count(&out),
            "counts lost or invented in restore ({max_message_bytes:?})"
        );
    }
}

fn through_plugin(data: &[u8]) {
    let path = folder().join("rows.state");
    std::fs::write(&path, data).expect("write state file");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("0600");
    let p = path.to_str().expect("utf-8 path");
    let props = [
        ("match", "*"),
        ("log_level", "off"),
        ("aggregate_state_file", p),
    ];
    let inst = plugin()
        .instance(&props)
        .expect("a bad state file never stops start-up");
    let faults = inst.faults();
    drop(inst);
    linked::end_run();
    assert!(faults.is_empty(), "{faults:?}");
    let _ = std::fs::remove_file(&path);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        pure(text);
    }
    through_plugin(data);
});
