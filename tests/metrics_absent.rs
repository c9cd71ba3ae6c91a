//! A Fluent Bit that does not export cmetrics' functions: the plugin says so once, at
//! start-up, and filters as it always does, without metrics.

mod common;
pssession_host_emulator::export_host_symbols!(no_metrics);

use common::*;
use pssession_core::chunk_io::Layout;
use serde_json::json;

#[test]
fn without_cmetrics_the_plugin_warns_once_and_filters() {
    let inst = plugin()
        .instance(&[("match", "*"), ("alias", "nometrics"), ("aggregate", "off")])
        .unwrap();
    let pos = json!({"EventID": 4104, "Hostname": "ws01",
        "ScriptBlockText": "Enter-PSSession -ComputerName x"});
    for _ in 0..3 {
        let call = inst.filter(
            &chunk_of(std::slice::from_ref(&pos), 1.7e9, Layout::CURRENT),
            "win",
        );
        assert!(call.modified());
    }
    let warnings: Vec<_> = inst
        .logs()
        .into_iter()
        .filter(|l| l.text.contains("without metrics"))
        .collect();
    assert_eq!(warnings.len(), 1, "{:?}", inst.logs());
    assert_eq!(warnings[0].level, 2, "a warning");
    assert!(
        warnings[0]
            .text
            .contains("does not export cmt_counter_create"),
        "{warnings:?}"
    );
    assert!(
        inst.metrics().iter().all(|s| !s.name.contains("pssession")),
        "no series of ours"
    );
    assert!(inst.faults().is_empty(), "{:?}", inst.faults());
}
