//! The live aggregate and alert routing through the built .so, with the emulator playing
//! Fluent Bit's emitter input and engine timer.

mod common;
pssession_host_emulator::export_host_symbols!();

use common::*;
use pssession_core::chunk_io::{decode_chunk, Layout};
use pssession_host_emulator::{emitted, input_handle, input_properties, EmuError};
use serde_json::{json, Value};
use std::collections::HashMap;

fn positive(host: &str, user: &str) -> Value {
    json!({"EventID": 4104, "Channel": "Microsoft-Windows-PowerShell/Operational",
           "Hostname": host, "AccountName": user,
           "ScriptBlockText": format!("Enter-PSSession -ComputerName {host}-target"),
           "EventTime": "2024-03-05 10:11:12"})
}

/// Rows emitted through an emitter, decoded.
fn rows(emitter: &str, tag: &str) -> Vec<Value> {
    emitted(emitter)
        .into_iter()
        .filter(|e| e.tag == tag)
        .flat_map(|e| decode_chunk(&e.data).unwrap())
        .map(|r| r.body)
        .collect()
}

fn counts(rows: &[Value]) -> HashMap<String, u64> {
    let mut m = HashMap::new();
    for r in rows {
        *m.entry(r["ComputerName"].as_str().unwrap().to_string())
            .or_default() += r["count"].as_u64().unwrap();
    }
    m
}

#[test]
fn counts_are_exact_with_four_threads_and_the_timer_flushes_them() {
    let inst = plugin()
        .instance(&[("match", "*"), ("alias", "agg4"), ("flush_interval", "1h")])
        .unwrap();
    assert_eq!(
        inst.timer_intervals(),
        vec![3_600_000, 250],
        "the interval, and the short tick that sees a stop coming"
    );
    let chunk = chunk_of(
        &[
            positive("ws01", "alice"),
            json!({"EventID": 4624}),
            positive("ws02", "bob"),
        ],
        1.7e9,
        Layout::CURRENT,
    );
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..250 {
                    assert!(inst.filter(&chunk, "win").modified());
                }
            });
        }
    });
    assert!(
        rows("emitter_for_agg4", "pssession.aggregate").is_empty(),
        "nothing before the timer"
    );
    assert_eq!(inst.fire_timers(), 2, "the interval timer and the tick");
    let r = rows("emitter_for_agg4", "pssession.aggregate");
    assert_eq!(r.len(), 2);
    let c = counts(&r);
    assert_eq!((c["ws01"], c["ws02"]), (1000, 1000));
    let ws01 = r.iter().find(|x| x["ComputerName"] == "ws01").unwrap();
    assert_eq!(ws01["User"], "alice");
    assert_eq!(ws01["EventCode"], 4104);
    assert_eq!(ws01["Message"], "Enter-PSSession -ComputerName ws01-target");
    assert_eq!(ws01["firstTime"], "2024-03-05T10:11:12");
    assert_eq!(ws01["lastTime"], "2024-03-05T10:11:12");
    assert_eq!(ws01["firstTime_epoch"], 1_709_633_472.0);
    assert_eq!(ws01["rule"]["id"], "a4e8f3a4-48b2-11ec-bcfc-3e22fbd008af");
    assert_eq!(
        ws01["threat"]["technique"]["subtechnique"]["id"][0],
        "T1021.006"
    );
    assert_eq!(ws01["emit_reason"], "interval");
    assert!(ws01["window_end"].as_f64() >= ws01["window_start"].as_f64());
    // tumbling: the next tick has nothing new
    inst.fire_timers();
    assert_eq!(rows("emitter_for_agg4", "pssession.aggregate").len(), 2);
}

#[test]
fn timer_flushes_with_no_new_traffic_and_rows_follow_the_schema() {
    let inst = plugin()
        .instance(&[
            ("match", "*"),
            ("alias", "aggsplunk"),
            ("schema", "splunk"),
            ("aggregate_tag", "ps.rows"),
            ("emitter_name", "ps_emitter"),
            ("emitter_mem_buf_limit", "5M"),
        ])
        .unwrap();
    let props = input_properties("ps_emitter").unwrap();
    assert!(
        props.contains(&("mem_buf_limit".into(), "5M".into())),
        "{props:?}"
    );
    assert!(props.contains(&("storage.type".into(), "memory".into())));
    inst.filter(
        &chunk_of(&[positive("ws09", "carol")], 1.7e9, Layout::CURRENT),
        "win",
    );
    // no traffic after this point: the engine's timer alone brings the row out
    inst.fire_timers();
    let r = rows("ps_emitter", "ps.rows");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["count"], 1);
    assert_eq!(r[0]["rule_id"], "a4e8f3a4-48b2-11ec-bcfc-3e22fbd008af");
    assert_eq!(
        r[0]["search_name"],
        "ESCU - Interactive Session on Remote Endpoint with PowerShell - Rule"
    );
    assert_eq!(r[0]["risk_object"], "ws09");
    assert_eq!(r[0]["risk_score"], 45);
    assert_eq!(
        r[0]["annotations"]["mitre_attack"],
        json!(["T1021", "T1021.006"])
    );
    assert!(r[0].get("threat").is_none());
}

#[test]
fn max_keys_emits_early_instead_of_dropping() {
    let inst = plugin()
        .instance(&[("match", "*"), ("alias", "aggbound"), ("max_keys", "2")])
        .unwrap();
    let bodies: Vec<Value> = (0..5).map(|i| positive(&format!("h{i}"), "u")).collect();
    inst.filter(&chunk_of(&bodies, 1.7e9, Layout::CURRENT), "win");
    assert!(
        rows("emitter_for_aggbound", "pssession.aggregate").is_empty(),
        "rows leave on the engine's thread, not the filter's"
    );
    inst.fire_timers();
    let all = rows("emitter_for_aggbound", "pssession.aggregate");
    let early: Vec<_> = all
        .iter()
        .filter(|r| r["emit_reason"] == "max_keys")
        .collect();
    assert_eq!(early.len(), 3, "three rows pushed out by the bound");
    assert_eq!(counts(&all).values().sum::<u64>(), 5, "no count lost");
    assert!(inst.logs().iter().any(|l| l.text.contains("emitted early")));
}

#[test]
fn final_flush_at_exit_is_kept_in_the_state_file_and_restored() {
    let dir = std::env::temp_dir().join(format!("pssession-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("agg.state");
    let state_s = state.to_str().unwrap();
    {
        let inst = plugin()
            .instance(&[
                ("match", "*"),
                ("alias", "aggexit1"),
                ("aggregate_state_file", state_s),
            ])
            .unwrap();
        inst.filter(
            &chunk_of(
                &[positive("ws05", "dave"), positive("ws05", "dave")],
                1.7e9,
                Layout::CURRENT,
            ),
            "win",
        );
    } // exit: nothing can be routed any more, so the rows go to the file
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(saved.contains("\"count\":2"), "{saved}");
    let inst = plugin()
        .instance(&[
            ("match", "*"),
            ("alias", "aggexit2"),
            ("aggregate_state_file", state_s),
        ])
        .unwrap();
    assert!(!state.exists(), "the file is consumed at start");
    assert!(inst
        .logs()
        .iter()
        .any(|l| l.text.contains("restored 1 aggregate rows")));
    inst.filter(
        &chunk_of(&[positive("ws05", "dave")], 1.7e9, Layout::CURRENT),
        "win",
    );
    inst.fire_timers();
    let r = rows("emitter_for_aggexit2", "pssession.aggregate");
    assert_eq!(counts(&r)["ws05"], 3, "restored counts merge with new ones");
}

#[test]
fn without_a_state_file_rows_at_exit_are_logged() {
    {
        let inst = plugin()
            .instance(&[("match", "*"), ("alias", "aggexitlog")])
            .unwrap();
        inst.filter(
            &chunk_of(&[positive("ws06", "erin")], 1.7e9, Layout::CURRENT),
            "win",
        );
    }
    let lines = pssession_host_emulator::logs_containing(
        "[filter:pssession:aggexitlog] aggregate row at shutdown",
    );
    assert_eq!(lines.len(), 1);
    assert!(lines[0].text.contains("\"ComputerName\":\"ws06\""));
}

#[test]
fn two_instances_keep_separate_rows() {
    let a = plugin()
        .instance(&[("match", "*"), ("alias", "sep_a")])
        .unwrap();
    let b = plugin()
        .instance(&[("match", "*"), ("alias", "sep_b")])
        .unwrap();
    a.filter(
        &chunk_of(
            &[positive("x1", "u"), positive("x1", "u")],
            1.7e9,
            Layout::CURRENT,
        ),
        "win",
    );
    b.filter(
        &chunk_of(&[positive("x1", "u")], 1.7e9, Layout::CURRENT),
        "win",
    );
    a.fire_timers();
    b.fire_timers();
    assert_eq!(
        counts(&rows("emitter_for_sep_a", "pssession.aggregate"))["x1"],
        2
    );
    assert_eq!(
        counts(&rows("emitter_for_sep_b", "pssession.aggregate"))["x1"],
        1
    );
}

#[test]
fn alert_tag_copies_flagged_records_and_own_emissions_are_not_refiltered() {
    let inst = plugin()
        .instance(&[
            ("match", "*"),
            ("alias", "alerts1"),
            ("alert_tag", "alerts.ps"),
            ("aggregate", "off"),
        ])
        .unwrap();
    assert_eq!(
        inst.timer_intervals(),
        vec![250],
        "with aggregate off only the tick that hands copies over"
    );
    let chunk = chunk_of(
        &[json!({"EventID": 1}), positive("ws07", "frank")],
        1.7e9,
        Layout::CURRENT,
    );
    let call = inst.filter(&chunk, "win");
    let out = decode_chunk(&call.chunk).unwrap();
    assert_eq!(out.len(), 2, "the original stream keeps both records");
    let copies = emitted("emitter_for_alerts1");
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].tag, "alerts.ps");
    assert_eq!(
        copies[0].data, out[1].raw,
        "the copy is the enriched record"
    );
    // the copy comes back through a broad Match: passed on untouched, not copied again
    let handle = input_handle("emitter_for_alerts1").unwrap();
    let again = inst.filter_from(&copies[0].data, "alerts.ps", handle);
    assert!(!again.modified());
    assert_eq!(emitted("emitter_for_alerts1").len(), 1);
}

#[test]
fn copies_made_on_an_input_thread_wait_for_the_engine_thread() {
    let inst = plugin()
        .instance(&[
            ("match", "*"),
            ("alias", "alerts_thr"),
            ("alert_tag", "alerts.t"),
        ])
        .unwrap();
    let chunk = chunk_of(&[positive("ws08", "gina")], 1.7e9, Layout::CURRENT);
    std::thread::scope(|s| {
        s.spawn(|| assert!(inst.filter(&chunk, "win").modified()));
    });
    assert!(
        emitted("emitter_for_alerts_thr").is_empty(),
        "the emitter belongs to the engine thread: a threaded input's filter queues"
    );
    inst.fire_timers();
    let copies = emitted("emitter_for_alerts_thr");
    assert_eq!(copies.iter().filter(|c| c.tag == "alerts.t").count(), 1);
}

#[test]
fn emitter_name_clash_and_bad_values_stop_start_up() {
    let _first = plugin()
        .instance(&[("match", "*"), ("emitter_name", "shared_em")])
        .unwrap();
    match plugin().instance(&[("match", "*"), ("emitter_name", "shared_em")]) {
        Err(EmuError::Init(l)) => assert!(
            l.join("\n")
                .contains("emitter_name 'shared_em' already exists"),
            "{l:?}"
        ),
        other => panic!("{:?}", other.err()),
    }
    for (k, v) in [
        ("flush_interval", "0s"),
        ("max_keys", "-1"),
        ("aggregate_mode", "hopping"),
        ("emitter_storage.type", "tape"),
    ] {
        match plugin().instance(&[("match", "*"), (k, v)]) {
            Err(EmuError::Init(l)) => {
                assert!(l.join("\n").contains(&format!("property '{k}'")), "{l:?}")
            }
            other => panic!("{k}: {:?}", other.err()),
        }
    }
}

/// Rows of several agents (or several windows) merge into the rows one instance would have
/// made over all the events: sum of counts, min of firstTime, max of lastTime per key. This
/// is the merge fluent-bit-conf/fleet/README.md describes for a central SIEM.
#[test]
fn rows_of_a_fleet_merge_into_the_rows_of_one_instance() {
    let events: Vec<Value> = (0..60)
        .map(|i| {
            let mut e = positive(&format!("ws{}", i % 3), "u");
            e["EventTime"] = json!(format!("2024-03-05 10:{:02}:00", i % 60));
            e
        })
        .collect();
    let one = plugin()
        .instance(&[("match", "*"), ("alias", "fleet_all")])
        .unwrap();
    one.filter(&chunk_of(&events, 1.7e9, Layout::CURRENT), "win");
    one.fire_timers();
    let (a, b) = (
        plugin()
            .instance(&[("match", "*"), ("alias", "fleet_a")])
            .unwrap(),
        plugin()
            .instance(&[("match", "*"), ("alias", "fleet_b")])
            .unwrap(),
    );
    a.filter(&chunk_of(&events[..25], 1.7e9, Layout::CURRENT), "win");
    b.filter(&chunk_of(&events[25..40], 1.7e9, Layout::CURRENT), "win");
    a.fire_timers(); // a second window of agent a:
    a.filter(&chunk_of(&events[40..], 1.7e9, Layout::CURRENT), "win");
    a.fire_timers();
    b.fire_timers();
    let mut merged: HashMap<String, (u64, f64, f64)> = HashMap::new();
    for r in rows("emitter_for_fleet_a", "pssession.aggregate")
        .into_iter()
        .chain(rows("emitter_for_fleet_b", "pssession.aggregate"))
    {
        let e = merged
            .entry(r["ComputerName"].as_str().unwrap().to_string())
            .or_insert((0, f64::MAX, f64::MIN));
        e.0 += r["count"].as_u64().unwrap();
        e.1 = e.1.min(r["firstTime_epoch"].as_f64().unwrap());
        e.2 = e.2.max(r["lastTime_epoch"].as_f64().unwrap());
    }
    let whole = rows("emitter_for_fleet_all", "pssession.aggregate");
    assert_eq!(whole.len(), 3);
    for r in whole {
        let m = merged[r["ComputerName"].as_str().unwrap()];
        assert_eq!(m.0, r["count"].as_u64().unwrap());
        assert_eq!(m.1, r["firstTime_epoch"].as_f64().unwrap());
        assert_eq!(m.2, r["lastTime_epoch"].as_f64().unwrap());
    }
}
