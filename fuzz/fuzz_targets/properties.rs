//! Arbitrary property lines (`name value`, as a classic config section holds them) into
//! the property parser: the pure `Config::from_properties`, then Fluent Bit's start-up of
//! the real registration through the host emulator (config-map check, `cb_init`).
//!
//! Checks: the parser never panics; every refusal names a property that was given, and the
//! parser's own refusals stop start-up naming their property; the plugin never starts what
//! the parser refuses; a started instance filters a positive record and stops cleanly.
#![no_main]

pssession_host_emulator::export_host_symbols!();

mod linked;

use libfuzzer_sys::fuzz_target;
use linked::plugin;
use pssession_core::chunk_io::{json_to_msgpack, push_record, Layout};
use pssession_core::config::{find_property, Config};
use std::sync::OnceLock;

/// A chunk holding one record the analytic flags.
fn positive() -> &'static [u8] {
    static C: OnceLock<Vec<u8>> = OnceLock::new();
    C.get_or_init(|| {
        let body = serde_json_value();
        let mut c = Vec::new();
        push_record(&mut c, &json_to_msgpack(&body), 1.7e9, Layout::CURRENT);
        c
    })
}

fn serde_json_value() -> serde_json::Value {
    serde_json::json!({
        "EventID": 4104,
        "Channel": "Microsoft-Windows-PowerShell/Operational",
        "Hostname": "ws01", "AccountName": "alice",
        "ScriptBlockText": "Enter-PSSession -ComputerName dc01",
    })
}

/// The input's lines as (name, value): up to the first space, tab or `=`, then the rest.
/// Only names the plugin declares are kept (Fluent Bit rejects the others before cb_init),
/// and file paths are left out (the state file is the `state_file` target's).
fn lines(data: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(data);
    text.lines()
        .take(64)
        .filter_map(|l| {
            let l = l.trim_start();
            let at = l.find([' ', '\t', '=']).unwrap_or(l.len());
            let (k, v) = (l[..at].to_ascii_lowercase(), l[at..].get(1..).unwrap_or(""));
            // a value reaches the plugin as a C string, so it ends at a NUL
            let v = v.split('\0').next().unwrap_or("");
            (find_property(&k).is_some() && k != "aggregate_state_file")
                .then(|| (k, v.trim().to_string()))
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let props = lines(data);
    let pure = Config::from_properties(|name| {
        props
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    });
    if let Err(e) = &pure {
        assert!(
            find_property(&e.property).is_some(),
            "error names no property: {e}"
        );
    }
    // log_level error: a refusal is reported with the lines the plugin logged
    let mut all: Vec<(&str, &str)> = vec![("match", "*"), ("log_level", "error")];
    all.extend(props.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    match plugin().instance(&all) {
        Ok(inst) => {
            assert!(
                pure.is_ok(),
                "the plugin started what the parser refused: {pure:?}"
            );
            let _ = inst.filter(positive(), "fuzz");
            let faults = inst.faults();
            drop(inst);
            assert!(faults.is_empty(), "{faults:?}");
        }
        Err(e) => {
            // Fluent Bit's own checks come first (a property set twice, a value of the
            // wrong type); every refusal names a property that was given.
            let text = e.to_string();
            assert!(
                props.iter().any(|(k, _)| text.contains(k.as_str())),
                "a refusal that names no property given: {text}"
            );
            let repeated = props.iter().any(|(k, _)| {
                let multiple = find_property(k).is_some_and(|p| p.multiple);
                !multiple && props.iter().filter(|(n, _)| n == k).count() > 1
            });
            if let (Err(pe), false) = (&pure, repeated) {
                assert!(
                    text.contains(&pe.property),
                    "start-up refused without naming '{}': {text}",
                    pe.property
                );
            }
        }
    }
    linked::end_run();
});
