//! The plugin under an emulated Fluent Bit 3.2 to 5.0.2, whose `struct flb_config_map` is 8
//! bytes shorter: the plugin must lay its config map out for that host, or Fluent Bit would
//! read garbage property names.

mod common;
flb_filter_pssession::export_host_symbols!(legacy);

use common::*;
use flb_filter_pssession::chunk_io::Layout;
use flb_filter_pssession::core::config::PROPERTIES;
use flb_filter_pssession::host_emulator::{EmuError, HostLayout};
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
    let em = flb_filter_pssession::host_emulator::emitted("emitter_for_legacy_agg");
    assert_eq!(em.iter().filter(|e| e.tag == "a.ps").count(), 1);
    assert_eq!(
        em.iter().filter(|e| e.tag == "pssession.aggregate").count(),
        1
    );
}
