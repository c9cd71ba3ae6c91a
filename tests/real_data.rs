//! The real Windows event logs in `../shared/data` (EVTX and NXLog JSON; none of them an
//! Enter-PSSession -ComputerName script block) pass the plugin byte-identical, in the shapes
//! collectors give them: NXLog JSON as captured, and each EVTX event both as Splunk's
//! XmlWinEventLog document and as Fluent Bit winevtlog fields. Skips visibly without the
//! folder.

mod common;
pssession_host_emulator::export_host_symbols!();

use common::*;
use flb_filter_pssession::ffi::FLB_FILTER_NOTOUCH;
use pssession_core::chunk_io::Layout;
use pssession_host_emulator::logs_containing;
use serde_json::{json, Value};
use std::io::Read;

/// Feeds records in chunks of 200 and checks each chunk goes on unchanged.
fn assert_untouched(alias: &str, bodies: &[Value]) -> String {
    let inst = plugin()
        .instance(&[("match", "*"), ("alias", alias)])
        .unwrap();
    for (n, part) in bodies.chunks(200).enumerate() {
        let layout = Layout::all()[n % 6];
        let chunk = chunk_of(part, 1.6e9, layout);
        let call = inst.filter(&chunk, "win");
        assert_eq!(call.code, FLB_FILTER_NOTOUCH, "{alias}: chunk {n} touched");
        assert_eq!(call.chunk, chunk);
    }
    drop(inst);
    logs_containing(&format!("[filter:pssession:{alias}] stopping"))
        .pop()
        .map(|l| l.text)
        .unwrap_or_default()
}

fn count_4104(summary: &str) -> u64 {
    let i = summary.find(" PowerShell 4104 events").unwrap();
    summary[..i].rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn nxlog_captures_pass_untouched() {
    let Some(dir) = shared_data() else { return };
    let mut total_4104 = 0;
    for entry in std::fs::read_dir(dir.join("otrf")).unwrap() {
        let path = entry.unwrap().path();
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        let mut bodies = Vec::new();
        for i in 0..zip.len() {
            let mut text = String::new();
            zip.by_index(i).unwrap().read_to_string(&mut text).unwrap();
            bodies.extend(
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok()),
            );
        }
        assert!(bodies.len() > 1000, "{}", path.display());
        let alias = format!("otrf-{}", path.file_stem().unwrap().to_string_lossy());
        let summary = assert_untouched(&alias, &bodies);
        assert!(
            summary.contains(&format!("{} records read", bodies.len())),
            "{summary}"
        );
        assert!(summary.contains(" 0 flagged"), "{summary}");
        total_4104 += count_4104(&summary);
    }
    assert!(
        total_4104 > 0,
        "the captures hold real 4104 events that must be judged"
    );
}

/// The EVTX events as (XmlWinEventLog record, winevtlog-shaped record).
fn evtx_records(path: &std::path::Path) -> Vec<(Value, Value)> {
    let Ok(mut parser) = evtx::EvtxParser::from_path(path) else {
        return Vec::new(); // an empty or damaged file: nothing to replay
    };
    let mut xml_records = Vec::new();
    for r in parser.records() {
        let Ok(r) = r else { continue };
        xml_records.push(r.data);
    }
    let mut parser = evtx::EvtxParser::from_path(path).unwrap();
    let json_records: Vec<Value> = parser
        .records_json_value()
        .filter_map(|r| r.ok().map(|r| r.data))
        .collect();
    xml_records
        .into_iter()
        .zip(json_records)
        .map(|(xml, j)| {
            let sys = &j["Event"]["System"];
            let inserts: Vec<Value> = match &j["Event"]["EventData"] {
                Value::Object(m) => m.values().cloned().collect(),
                _ => Vec::new(),
            };
            let id = match &sys["EventID"] {
                Value::Object(o) => o.get("#text").cloned().unwrap_or(Value::Null),
                v => v.clone(),
            };
            let winevtlog = json!({
                "ProviderName": sys["Provider"]["#attributes"]["Name"],
                "EventID": id,
                "Channel": sys["Channel"],
                "Computer": sys["Computer"],
                "UserID": sys["Security"]["#attributes"]["UserID"],
                "TimeCreated": sys["TimeCreated"]["#attributes"]["SystemTime"],
                "Message": "",
                "StringInserts": inserts,
            });
            let splunk = json!({
                "source": format!("XmlWinEventLog:{}", sys["Channel"].as_str().unwrap_or("")),
                "sourcetype": "XmlWinEventLog",
                "_raw": xml,
            });
            (splunk, winevtlog)
        })
        .collect()
}

#[test]
fn evtx_logs_pass_untouched_in_two_shapes() {
    let Some(dir) = shared_data() else { return };
    let (mut xml_all, mut win_all) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir.join("evtx")).unwrap() {
        for (x, w) in evtx_records(&entry.unwrap().path()) {
            xml_all.push(x);
            win_all.push(w);
        }
    }
    assert!(xml_all.len() > 400, "only {} EVTX events", xml_all.len());
    let xml_summary = assert_untouched("evtx-xml", &xml_all);
    let win_summary = assert_untouched("evtx-winevtlog", &win_all);
    for s in [&xml_summary, &win_summary] {
        assert!(s.contains(" 0 flagged"), "{s}");
    }
    // every real PowerShell 4104 script block reaches the verdict, in both shapes
    let want = win_all
        .iter()
        .filter(|w| {
            (w["EventID"] == 4104 || w["EventID"] == "4104")
                && w["Channel"] == "Microsoft-Windows-PowerShell/Operational"
        })
        .count() as u64;
    let want_xml = xml_all
        .iter()
        .filter(|x| {
            let raw = x["_raw"].as_str().unwrap_or("");
            raw.contains("<EventID>4104</EventID>")
                && raw.contains("<Channel>Microsoft-Windows-PowerShell/Operational</Channel>")
        })
        .count() as u64;
    assert!(want >= 100, "{want}");
    assert_eq!(
        want, want_xml,
        "the two readings of the EVTX files disagree"
    );
    assert_eq!(count_4104(&xml_summary), want, "{xml_summary}");
    assert_eq!(count_4104(&win_summary), want, "{win_summary}");
}
