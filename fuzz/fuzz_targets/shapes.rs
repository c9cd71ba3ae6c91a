//! Arbitrary bytes as a record body into the shape reader: never panics, and a view is
//! produced for every map.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pssession_core::config::{FieldOverrides, FieldPath};
use pssession_core::shapes::Scan;
use std::sync::OnceLock;

fn overrides() -> &'static FieldOverrides {
    static O: OnceLock<FieldOverrides> = OnceLock::new();
    O.get_or_init(|| FieldOverrides {
        event_code: Some(FieldPath(vec!["ev".into(), "code".into()])),
        computer: Some(FieldPath(vec!["host".into()])),
        message: Some(FieldPath(vec!["msg".into()])),
        time: Some(FieldPath(vec!["ts".into(), "t".into()])),
        ..FieldOverrides::default()
    })
}

fn run(body: &[u8], o: &FieldOverrides) {
    if let Some(mut scan) = Scan::new(body, o) {
        let code = scan.event_code();
        let view = scan.view();
        if o.is_empty() {
            assert_eq!(
                view.event_code, code,
                "event code differs between scan and view"
            );
        }
        let _ = view.part_text();
        let _ = view.script_text();
        if let Some(t) = view.time {
            let _ = t.secs.is_finite();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    run(data, &FieldOverrides::default());
    run(data, overrides());
});
