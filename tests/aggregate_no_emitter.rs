//! A Fluent Bit without the emitter input or the engine timer: the plugin warns at start-up
//! and appends aggregate rows to the chunks it filters when a flush is due; `alert_tag`,
//! which cannot work without an emitter, stops start-up with a clear error.

mod common;
pssession_host_emulator::export_host_symbols!(no_emitter);

use common::*;
use pssession_core::chunk_io::{decode_chunk, Layout};
use pssession_host_emulator::EmuError;
use serde_json::json;

#[test]
fn rows_are_appended_to_the_chunk_when_due() {
    let inst = plugin()
        .instance(&[("match", "*"), ("alias", "noem"), ("flush_interval", "1s")])
        .unwrap();
    assert!(
        inst.logs().iter().any(|l| l.level == 2
            && l.text
                .contains("aggregate rows will be appended to the chunks")
            && l.text
                .contains("(this Fluent Bit does not export 'flb_input_name_exists')")),
        "{:?}",
        inst.logs()
    );
    let pos = json!({"EventID": 4104, "Hostname": "ws01", "ScriptBlockText": "Enter-PSSession -ComputerName x"});
    let first = inst.filter(
        &chunk_of(&[pos.clone(), pos], 1.7e9, Layout::CURRENT),
        "win",
    );
    assert_eq!(decode_chunk(&first.chunk).unwrap().len(), 2, "not due yet");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let plain = chunk_of(&[json!({"EventID": 1})], 1.7e9, Layout::CURRENT);
    let call = inst.filter(&plain, "win");
    assert!(call.modified());
    let out = decode_chunk(&call.chunk).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(
        out[0].raw,
        decode_chunk(&plain).unwrap()[0].raw,
        "the original record first, untouched"
    );
    assert_eq!(out[1].body["count"], 2);
    assert_eq!(out[1].body["ComputerName"], "ws01");
}

#[test]
fn alert_tag_needs_an_emitter() {
    match plugin().instance(&[("match", "*"), ("alert_tag", "alerts")]) {
        Err(EmuError::Init(l)) => assert!(l.join("\n").contains("property 'alert_tag'"), "{l:?}"),
        other => panic!("{:?}", other.err()),
    }
}
