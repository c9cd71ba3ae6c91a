//! The plugin under an emulated Fluent Bit 3.2.10, whose `struct flb_config_map` is 8 bytes
//! shorter (as up to 5.0.2) and whose processors lack conditions and profiles: the plugin
//! must lay its config map out for that host, or Fluent Bit would read garbage property
//! names, and read its processor parent in that release's layout.

mod common;
pssession_host_emulator::export_host_symbols!(legacy);

use common::*;
use pssession_core::chunk_io::Layout;
use pssession_core::config::PROPERTIES;
use pssession_host_emulator::{EmuError, HostLayout};
use serde_json::json;

#[test]
fn config_map_uses_the_legacy_stride() {
    assert_eq!(HostLayout::of_this_process(), HostLayout::Legacy);
    let p = plugin();
    let names: Vec<&str> = p.config_map.iter().map(|m| m.name.as_str()).collect();
    let want: Vec<&str> = PROPERTIES.iter().map(|p| p.name).collect();
    assert_eq!(names, want);
}

#[test]
fn filters_and_rejects_unknown_properties_on_legacy_hosts() {
    let p = plugin();
    match p.instance(&[("match", "*"), ("nonsense", "1")]) {
        Err(EmuError::Init(l)) => {
            assert!(l[0].contains("unknown configuration property 'nonsense'"))
        }
        other => panic!("{:?}", other.err()),
    }
    let inst = p
        .instance(&[
            ("match", "*"),
            ("exclude_user", "^x$"),
            ("exclude_user", "bob"),
        ])
        .unwrap();
    let body = json!({"EventCode": "4104", "User": "bob", "ComputerName": "ws9",
                      "Message": "enter-pssession -computername dc"});
    let chunk = chunk_of(&[body], 1.7e9, Layout::CURRENT);
    assert!(
        !inst.filter(&chunk, "t").modified(),
        "second exclude_user value applies"
    );
}

#[test]
fn emitter_and_timer_work_on_legacy_hosts() {
    let inst = plugin()
        .instance(&[
            ("match", "*"),
            ("alias", "legacy_agg"),
            ("alert_tag", "a.ps"),
        ])
        .unwrap();
    let pos = json!({"EventID": 4104, "Hostname": "old01", "ScriptBlockText": "Enter-PSSession -ComputerName x"});
    inst.filter(&chunk_of(&[pos], 1.7e9, Layout::CURRENT), "win");
    inst.fire_timers();
    let em = pssession_host_emulator::emitted("emitter_for_legacy_agg");
    assert_eq!(em.iter().filter(|e| e.tag == "a.ps").count(), 1);
    assert_eq!(
        em.iter().filter(|e| e.tag == "pssession.aggregate").count(),
        1
    );
}

#[test]
fn processors_are_recognised_in_the_3_2_layouts() {
    use pssession_host_emulator::Placement;
    let inst = plugin()
        .instance_in(
            Placement::InputProcessor {
                threaded: false,
                stage: 1,
            },
            &[("alias", "legacy_proc"), ("alert_tag", "a.legacy")],
        )
        .unwrap();
    let pos = json!({"EventID": 4104, "Hostname": "old02", "ScriptBlockText": "Enter-PSSession -ComputerName y"});
    inst.filter(&chunk_of(&[pos], 1.7e9, Layout::CURRENT), "win");
    let input = inst.parent_input_name().unwrap();
    let copies = pssession_host_emulator::emitted(&input);
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].stage, Some(2), "re-injected after its stage");
    assert!(inst.faults().is_empty(), "{:?}", inst.faults());
    match plugin().instance_in(Placement::OutputProcessor, &[("alert_tag", "a")]) {
        Err(EmuError::Init(l)) => assert!(l.join("\n").contains("output processor"), "{l:?}"),
        other => panic!("{:?}", other.err()),
    }
}

/// 3.2 to 4.0.2 do not flush chunks made during the grace period: at a stop the plugin
/// hands nothing over (the emulator records a fault if it does) and keeps the rows for the
/// state file.
#[test]
fn at_a_stop_rows_wait_for_the_state_file_on_releases_that_would_drop_them() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("rows.state");
    let mut inst = plugin()
        .instance(&[
            ("match", "*"),
            ("alias", "legacy_stop"),
            ("alert_tag", "a.stop"),
            ("aggregate_state_file", state.to_str().unwrap()),
        ])
        .unwrap();
    let pos = json!({"EventID": 4104, "Hostname": "old03", "ScriptBlockText": "Enter-PSSession -ComputerName z"});
    inst.filter(
        &chunk_of(&[pos.clone(), pos], 1.7e9, Layout::CURRENT),
        "win",
    );
    inst.stop_ingestion();
    inst.grace();
    let faults = inst.faults();
    drop(inst);
    assert!(faults.is_empty(), "{faults:?}");
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(saved.contains("\"count\":2"), "{saved}");
}
