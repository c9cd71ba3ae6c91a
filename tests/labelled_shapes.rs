//! Every labelled record of every shape, through the built plugin via the host emulator, in
//! both record layouts and all three timestamp forms: flagged exactly when labelled, with
//! the normalised values and enrichment expected; unflagged records byte-identical.

mod common;
pssession_host_emulator::export_host_symbols!();

use common::*;
use flb_filter_pssession::ffi::{FLB_FILTER_MODIFIED, FLB_FILTER_NOTOUCH};
use pssession_core::chunk_io::Layout;
use serde_json::Value;

const SHAPES: [&str; 6] = ["winevtlog", "nxlog", "winlogbeat", "xml", "splunk", "linux"];
const FB_TIME: f64 = 1_800_000_000.5;

fn cases(shape: &str) -> Vec<Value> {
    let v = jsonl(&format!("tests/data/labelled/{shape}.jsonl"));
    assert!(v.len() >= 10, "{shape}: too few labelled cases");
    v
}

fn check_flagged(case: &Value, out: &Value, original: &Value, fb_time: f64, ns: &str) {
    let id = case["id"].as_str().unwrap();
    let exp = &case["expect"];
    assert_keeps(out, original, id);
    let n = &out[ns];
    assert_eq!(n["EventCode"], 4104, "{id}");
    assert_eq!(n["ComputerName"], exp["computer"], "{id}: computer");
    assert_eq!(n["User"], exp["user"], "{id}: user");
    let want_time = exp["time"].as_f64().unwrap_or(fb_time);
    let got_time = n["time"].as_f64().unwrap();
    assert!(
        (got_time - want_time).abs() < 1e-6,
        "{id}: time {got_time} vs {want_time}"
    );
    if exp["time"].is_null() {
        assert_eq!(n["time_source"], "fluentbit", "{id}");
    }
    assert_eq!(n["rule_id"], "a4e8f3a4-48b2-11ec-bcfc-3e22fbd008af");
}

#[test]
fn every_labelled_record_in_every_layout() {
    let plugin = plugin();
    let inst = plugin.instance(&[("match", "*")]).unwrap();
    let mut flagged_total = 0;
    for shape in SHAPES {
        for case in cases(shape) {
            let id = case["id"].as_str().unwrap().to_string();
            let record = &case["record"];
            let want = case["expect"]["flagged"].as_bool().unwrap();
            for layout in Layout::all() {
                let chunk = chunk_of(std::slice::from_ref(record), FB_TIME, layout);
                let call = inst.filter(&chunk, "win.ps");
                if !want {
                    assert_eq!(call.code, FLB_FILTER_NOTOUCH, "{id} {layout:?}: flagged");
                    assert_eq!(call.chunk, chunk, "{id}");
                    continue;
                }
                assert_eq!(
                    call.code, FLB_FILTER_MODIFIED,
                    "{id} {layout:?}: not flagged"
                );
                let recs = decode(&call.chunk);
                assert_eq!(recs.len(), 1, "{id}");
                let src = decode(&chunk);
                assert_eq!(recs[0].time, src[0].time, "{id}: timestamp changed");
                // the header (timestamp, metadata) is byte-identical
                let hdr_len = src[0].raw.len() - flb_body_len(&src[0].raw);
                assert_eq!(recs[0].raw[..hdr_len], src[0].raw[..hdr_len], "{id}");
                check_flagged(
                    &case,
                    &recs[0].body,
                    record,
                    src[0].time.unwrap(),
                    "pssession",
                );
                // ECS enrichment
                let out = &recs[0].body;
                if record.get("event").is_none() {
                    assert_eq!(out["event"]["kind"], "alert", "{id}");
                }
                assert_eq!(out["event"]["risk_score"], 45.0, "{id}");
                assert_eq!(out["threat"]["framework"], "MITRE ATT&CK");
                assert_eq!(out["threat"]["technique"]["id"][0], "T1021");
                assert_eq!(
                    out["threat"]["technique"]["subtechnique"]["id"][0],
                    "T1021.006"
                );
                assert_eq!(out["threat"]["tactic"]["name"][0], "Lateral Movement");
                assert_eq!(
                    out["rule"]["name"],
                    "Interactive Session on Remote Endpoint with PowerShell"
                );
                assert_eq!(
                    out["pssession"]["risk_message"],
                    format!(
                        "An interactive session was opened on a remote endpoint from {}",
                        case["expect"]["computer"].as_str().unwrap()
                    )
                );
            }
            if want {
                flagged_total += 1;
            }
        }
    }
    assert!(flagged_total >= 40, "only {flagged_total} positives");
}

/// Length of the body of a record `[header, body]` given as whole bytes.
fn flb_body_len(raw: &[u8]) -> usize {
    use pssession_core::chunk::Records;
    let r = Records::new(raw).next().unwrap().unwrap();
    r.body().len()
}

#[test]
fn splunk_schema_on_every_positive() {
    let plugin = plugin();
    let inst = plugin
        .instance(&[
            ("match", "*"),
            ("schema", "splunk"),
            ("namespace", "detect"),
        ])
        .unwrap();
    for shape in SHAPES {
        for case in cases(shape) {
            if case["expect"]["flagged"] != true {
                continue;
            }
            let id = case["id"].as_str().unwrap();
            let chunk = chunk_of(
                std::slice::from_ref(&case["record"]),
                FB_TIME,
                Layout::CURRENT,
            );
            let call = inst.filter(&chunk, "t");
            assert!(call.modified(), "{id}");
            let out = &decode(&call.chunk)[0].body;
            check_flagged(&case, out, &case["record"], FB_TIME, "detect");
            let computer = case["expect"]["computer"].as_str().unwrap();
            assert_eq!(out["risk_object"], computer, "{id}");
            assert_eq!(out["risk_object_type"], "system");
            assert_eq!(out["risk_score"], 45);
            assert_eq!(out["impact"], 90);
            assert_eq!(out["confidence"], 50);
            assert_eq!(
                out["search_name"],
                "ESCU - Interactive Session on Remote Endpoint with PowerShell - Rule"
            );
            assert_eq!(
                out["annotations"]["mitre_attack"],
                serde_json::json!(["T1021", "T1021.006"])
            );
            assert_eq!(
                out["analytic_story"][0],
                "Active Directory Lateral Movement"
            );
            assert_eq!(out["kill_chain_phase"][0], "Lateral Movement");
            assert!(
                out.get("threat").is_none(),
                "{id}: ECS fields in splunk schema"
            );
        }
    }
}

#[test]
fn mixed_chunk_keeps_order_and_untouched_bytes() {
    let plugin = plugin();
    let inst = plugin.instance(&[("match", "*")]).unwrap();
    let mut bodies = Vec::new();
    let mut labels = Vec::new();
    for shape in SHAPES {
        for case in cases(shape) {
            bodies.push(case["record"].clone());
            labels.push(case["expect"]["flagged"].as_bool().unwrap());
        }
    }
    for layout in Layout::all() {
        let chunk = chunk_of(&bodies, FB_TIME, layout);
        let src = decode(&chunk);
        let call = inst.filter(&chunk, "t");
        assert!(call.modified());
        let out = decode(&call.chunk);
        assert_eq!(out.len(), src.len(), "record count changed");
        for (i, (o, s)) in out.iter().zip(&src).enumerate() {
            if labels[i] {
                assert!(o.body.get("pssession").is_some(), "record {i} not enriched");
                assert_eq!(o.time, s.time);
            } else {
                assert_eq!(o.raw, s.raw, "record {i} not byte-identical");
            }
        }
    }
}

#[test]
fn tuning_exclusions_and_risk_override() {
    let plugin = plugin();
    let inst = plugin
        .instance(&[
            ("match", "*"),
            ("exclude_user", "(?i)svc_backup$"),
            ("exclude_user", "^NOBODY$"),
            ("exclude_computer", "(?i)^jump\\d+"),
            ("risk_score", "80"),
        ])
        .unwrap();
    let mut excluded = 0;
    for shape in SHAPES {
        for case in cases(shape) {
            if case["expect"]["flagged"] != true {
                continue;
            }
            let user = case["expect"]["user"].as_str().unwrap();
            let computer = case["expect"]["computer"].as_str().unwrap();
            let should_exclude = user.to_lowercase().ends_with("svc_backup")
                || computer.to_lowercase().starts_with("jump")
                    && computer[4..].starts_with(|c: char| c.is_ascii_digit());
            let chunk = chunk_of(
                std::slice::from_ref(&case["record"]),
                FB_TIME,
                Layout::CURRENT,
            );
            let call = inst.filter(&chunk, "t");
            assert_eq!(call.modified(), !should_exclude, "{}", case["id"]);
            if should_exclude {
                excluded += 1;
            } else {
                let out = &decode(&call.chunk)[0].body;
                if case["record"].get("event").is_none() {
                    assert_eq!(out["event"]["risk_score"], 80.0);
                    assert_eq!(out["event"]["severity"], 80);
                }
            }
        }
    }
    assert!(
        excluded >= 2,
        "the labelled data should exercise the exclusions"
    );
}
