//! The plugin's series on Fluent Bit's metrics endpoint, through the built .so with the
//! emulator playing cmetrics: every series at 0 from start-up, and after a run of the
//! labelled records (every shape), values equal to what came out, counted with the
//! independent oracle decoder; as a filter and as each kind of processor, in both modes,
//! and from 0 again after a reload.

mod common;
pssession_host_emulator::export_host_symbols!();

use common::*;
use pssession_core::chunk_io::Layout;
use pssession_host_emulator::{emitted, Instance, Placement};
use serde_json::Value;

const NS: &str = "pssession";

fn metric_name(what: &str) -> String {
    format!("fluentbit_filter_pssession_{what}")
}

/// The value of one series of the instance; panics when it does not exist.
fn value(inst: &Instance<'_>, what: &str, labels: &[(&str, &str)]) -> u64 {
    let name = inst.name();
    let mut all = vec![("name", name.as_str())];
    all.extend_from_slice(labels);
    inst.metric(&metric_name(what), &all)
        .unwrap_or_else(|| panic!("no series {what} {all:?}: {:#?}", inst.metrics())) as u64
}

/// Every record body of the labelled cases, in chunks of 7.
fn labelled_chunks() -> Vec<Vec<u8>> {
    let mut bodies: Vec<Value> = Vec::new();
    for shape in ["winevtlog", "nxlog", "winlogbeat", "xml", "splunk", "linux"] {
        for case in jsonl(&format!("tests/data/labelled/{shape}.jsonl")) {
            bodies.push(case["record"].clone());
        }
    }
    bodies
        .chunks(7)
        .enumerate()
        .map(|(i, c)| chunk_of(c, 1.7e9 + i as f64, Layout::CURRENT))
        .collect()
}

/// Records in a chunk, and those carrying the plugin's namespace key, by the oracle.
fn oracle_counts(chunk: &[u8]) -> (u64, u64) {
    let (values, _) = pssession_oracle::values(chunk);
    let mut flagged = 0;
    for v in &values {
        let body = v.body().expect("a record");
        let entries = pssession_oracle::map_entries(body).unwrap_or_default();
        if entries.iter().any(|(k, _)| key_is(k, NS)) {
            flagged += 1;
        }
    }
    (values.len() as u64, flagged)
}

/// Whether a msgpack string is `name`.
fn key_is(k: &[u8], name: &str) -> bool {
    k.len() == name.len() + 1 && k[0] == 0xa0 | name.len() as u8 && &k[1..] == name.as_bytes()
}

#[test]
fn every_series_shows_at_zero_from_start_up() {
    for (mode, flagged_series) in [("exact", 1), ("extended", 5)] {
        let inst = plugin()
            .instance(&[("match", "*"), ("mode", mode), ("reassemble", "on")])
            .unwrap();
        let ours: Vec<_> = inst
            .metrics()
            .into_iter()
            .filter(|s| s.name.starts_with("fluentbit_filter_pssession_"))
            .collect();
        assert_eq!(ours.len(), 12 + flagged_series, "{mode}: {ours:#?}");
        for s in &ours {
            assert_eq!(s.value, 0.0, "{mode}: {s:?}");
            assert_eq!(s.labels[0], ("name".into(), inst.name()), "{s:?}");
            assert_eq!(
                s.labels[1],
                ("parent".into(), String::new()),
                "a pipeline filter"
            );
            assert!(!s.help.is_empty(), "{s:?}");
        }
        let gauges: Vec<_> = ours.iter().filter(|s| s.gauge).map(|s| &s.name).collect();
        assert_eq!(
            gauges,
            [
                &metric_name("aggregate_keys"),
                &metric_name("reassembly_open_blocks")
            ]
        );
        assert!(inst.faults().is_empty(), "{:?}", inst.faults());
    }
}

/// Runs the labelled chunks through `inst`; returns (records in, flagged out, chunks
/// modified), counted from the chunks themselves.
fn run_labelled(inst: &Instance<'_>) -> (u64, u64, u64) {
    let (mut records, mut flagged, mut modified) = (0, 0, 0);
    for chunk in labelled_chunks() {
        records += oracle_counts(&chunk).0;
        let out = inst.filter(&chunk, "win");
        flagged += oracle_counts(&out.chunk).1;
        modified += out.modified() as u64;
    }
    (records, flagged, modified)
}

#[test]
fn values_match_what_came_out_in_every_placement() {
    let placements = [
        Placement::Filter,
        Placement::InputProcessor {
            threaded: false,
            stage: 0,
        },
        Placement::InputProcessor {
            threaded: true,
            stage: 0,
        },
        Placement::OutputProcessor,
    ];
    for placement in placements {
        let inst = plugin()
            .instance_in(placement, &[("match", "*"), ("aggregate", "off")])
            .unwrap();
        let (records, flagged, modified) = run_labelled(&inst);
        assert!(flagged > 20, "the labelled cases hold positives");
        let exact = [("mode", "exact"), ("transport", "")];
        assert_eq!(value(&inst, "records_total", &[]), records, "{placement:?}");
        assert_eq!(
            value(&inst, "flagged_total", &exact),
            flagged,
            "{placement:?}"
        );
        assert_eq!(
            value(&inst, "chunks_modified_total", &[]),
            modified,
            "{placement:?}"
        );
        let events = value(&inst, "events_total", &[]);
        assert!(
            events >= flagged && events <= records,
            "{placement:?}: {events}"
        );
        assert_eq!(value(&inst, "internal_errors_total", &[]), 0);
        assert!(
            inst.faults().is_empty(),
            "{placement:?}: {:?}",
            inst.faults()
        );
    }
}

#[test]
fn extended_mode_counts_each_flagged_record_under_one_transport() {
    let inst = plugin()
        .instance(&[("match", "*"), ("mode", "extended"), ("aggregate", "off")])
        .unwrap();
    let (_, flagged, _) = run_labelled(&inst);
    let by_transport: Vec<u64> = ["winrm", "winrm-uri", "ssh", "session", "vm"]
        .iter()
        .map(|t| {
            value(
                &inst,
                "flagged_total",
                &[("mode", "extended"), ("transport", t)],
            )
        })
        .collect();
    assert_eq!(
        by_transport.iter().sum::<u64>(),
        flagged,
        "{by_transport:?}"
    );
    assert!(
        by_transport[0] > 0,
        "WinRM to a computer name is the common case"
    );
    assert!(inst.faults().is_empty(), "{:?}", inst.faults());
}

#[test]
fn alerts_exclusions_and_aggregate_rows_are_counted_as_they_leave() {
    let inst = plugin()
        .instance(&[
            ("match", "*"),
            ("alias", "metrics_rows"),
            ("alert_tag", "alerts.m"),
            ("exclude_user", "(?i).*svc.*"),
            ("max_keys", "2"),
        ])
        .unwrap();
    let (_, flagged, _) = run_labelled(&inst);
    assert!(value(&inst, "aggregate_keys", &[]) <= 2);
    let early = value(&inst, "aggregate_rows_total", &[("outcome", "early")]);
    assert!(early > 0, "max_keys 2 pushes rows out early");
    inst.fire_timers();
    let copies = emitted("emitter_for_metrics_rows");
    let alerts = copies.iter().filter(|e| e.tag == "alerts.m");
    let alert_records: u64 = alerts.map(|e| oracle_counts(&e.data).0).sum();
    assert_eq!(alert_records, flagged, "one copy per flagged record");
    assert_eq!(value(&inst, "alerts_emitted_total", &[]), alert_records);
    let rows: u64 = copies
        .iter()
        .filter(|e| e.tag == "pssession.aggregate")
        .map(|e| oracle_counts(&e.data).0)
        .sum();
    assert_eq!(
        value(&inst, "aggregate_rows_total", &[("outcome", "delivered")]),
        rows
    );
    assert!(
        value(&inst, "excluded_total", &[]) > 0,
        "a labelled service account"
    );
    assert!(inst.faults().is_empty(), "{:?}", inst.faults());
}

#[test]
fn open_script_blocks_show_on_the_gauge() {
    let inst = plugin()
        .instance(&[("match", "*"), ("reassemble", "on"), ("aggregate", "off")])
        .unwrap();
    let part = serde_json::json!({"EventID": 4104, "Channel": "Microsoft-Windows-PowerShell/Operational",
        "Hostname": "ws1", "MessageNumber": 1, "MessageTotal": 3,
        "ScriptBlockId": "0d1f6a5c-0000-4000-8000-000000000001",
        "ScriptBlockText": "Enter-PSSession -Comp"});
    inst.filter(&chunk_of(&[part], 1.7e9, Layout::CURRENT), "win");
    assert_eq!(value(&inst, "reassembly_open_blocks", &[]), 1);
}

#[test]
fn a_reloaded_instance_starts_again_from_zero() {
    let props = [
        ("match", "*"),
        ("alias", "metrics_reload"),
        ("aggregate", "off"),
    ];
    let first = plugin().instance(&props).unwrap();
    let (records, _, _) = run_labelled(&first);
    assert_eq!(value(&first, "records_total", &[]), records);
    drop(first);
    let second = plugin().instance(&props).unwrap();
    assert_eq!(second.name(), "metrics_reload");
    assert_eq!(value(&second, "records_total", &[]), 0);
}

#[test]
fn processors_of_different_inputs_keep_apart_on_the_merged_endpoint() {
    // Fluent Bit names processors' filter instances from a list they are not kept in, so
    // two processors may share a name; the exporter merges every instance's series, and a
    // series with the same labels overwrites another. `parent` keeps them apart.
    let placement = Placement::InputProcessor {
        threaded: false,
        stage: 0,
    };
    let props = [("alias", "ps"), ("aggregate", "off")];
    let a = plugin().instance_in(placement, &props).unwrap();
    let b = plugin().instance_in(placement, &props).unwrap();
    let (records_a, _, _) = run_labelled(&a);
    let parents: Vec<String> = [&a, &b]
        .iter()
        .map(|i| {
            let s = i.metrics();
            let r = s
                .iter()
                .find(|s| s.name == metric_name("records_total"))
                .unwrap();
            r.labels[1].1.clone()
        })
        .collect();
    assert!(
        parents[0].starts_with("tail.") && parents[0] != parents[1],
        "{parents:?}"
    );
    let (merged, lost) = pssession_host_emulator::cmetrics::scrape_all();
    assert!(
        lost.iter().all(|s| !s.name.contains("pssession_")),
        "series of ours overwritten in the merge: {lost:#?}"
    );
    let records: Vec<f64> = merged
        .iter()
        .filter(|s| s.name == metric_name("records_total"))
        .filter(|s| parents.iter().any(|p| s.labels[1].1 == *p))
        .map(|s| s.value)
        .collect();
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(records.contains(&(records_a as f64)) && records.contains(&0.0));
}
