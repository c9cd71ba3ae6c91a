//! The plugin as Fluent Bit sees it (host emulator playing Fluent Bit >= 5.0.3): its
//! registration, start-up errors, logging, per-instance state, threads, lifecycle and
//! hostile chunks.

mod common;
pssession_host_emulator::export_host_symbols!();

use common::*;
use flb_filter_pssession::ffi::FLB_FILTER_NOTOUCH;
use pssession_core::chunk_io::Layout;
use pssession_host_emulator::{EmuError, HostLayout};
use serde_json::{json, Value};

fn positive(host: &str) -> Value {
    json!({"EventID": 4104, "Channel": "Microsoft-Windows-PowerShell/Operational",
           "Hostname": host, "Domain": "CONTOSO", "AccountName": "alice",
           "ScriptBlockText": "Enter-PSSession -ComputerName dc01"})
}

fn negative() -> Value {
    json!({"EventID": 4624, "Channel": "Security", "Hostname": "dc01"})
}

fn init_error(props: &[(&str, &str)]) -> String {
    match plugin().instance(props) {
        Err(EmuError::Init(lines)) => lines.join("\n"),
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("{props:?} was accepted"),
    }
}

#[test]
fn registration_matches_fluent_bit() {
    let p = plugin();
    assert_eq!(p.name, "pssession");
    assert_eq!(HostLayout::of_this_process(), HostLayout::Current);
    let names: Vec<&str> = p.config_map.iter().map(|m| m.name.as_str()).collect();
    for want in [
        "mode",
        "schema",
        "exclude_user",
        "exclude_computer",
        "risk_score",
        "namespace",
    ] {
        assert!(names.contains(&want), "config map lacks {want}: {names:?}");
    }
    let ex = p
        .config_map
        .iter()
        .find(|m| m.name == "exclude_user")
        .unwrap();
    assert!(ex.multiple);
    let rs = p
        .config_map
        .iter()
        .find(|m| m.name == "risk_score")
        .unwrap();
    assert_eq!(rs.default.as_deref(), Some("45"));
    assert!(p.config_map.iter().all(|m| !m.description.is_empty()));
}

#[test]
fn configuration_errors_stop_start_up_naming_the_property() {
    let e = init_error(&[("match", "*"), ("exclud_user", "x")]);
    assert!(
        e.contains("unknown configuration property 'exclud_user'"),
        "{e}"
    );
    let e = init_error(&[("match", "*"), ("schema", "ecs"), ("schema", "splunk")]);
    assert!(e.contains("'schema' is set 2 times"), "{e}");
    let cases: &[(&str, &str, &str)] = &[
        ("exclude_user", "([a-z]", "invalid regular expression"),
        ("exclude_computer", "*", "invalid regular expression"),
        ("schema", "cim", "unknown schema 'cim'"),
        ("mode", "fuzzy", "unknown mode 'fuzzy'"),
        ("risk_score", "-5", "expected an integer from 0 to 1000"),
        ("risk_score", "lots", "expected an integer from 0 to 1000"),
        ("risk_score", "", "empty value"),
        ("namespace", "  ", "empty value"),
        ("event_code_key", "$a[b]", "record accessor"),
    ];
    for (k, v, why) in cases {
        let e = init_error(&[("match", "*"), (k, v)]);
        assert!(
            e.contains(&format!("property '{k}'")) && e.contains(why),
            "{k}={v:?}: {e}"
        );
        assert!(e.contains("[filter:pssession:pssession."), "{e}");
        assert!(e.contains("Failed initialize filter"), "{e}");
    }
    let long = "x".repeat(5000);
    let e = init_error(&[("match", "*"), ("namespace", &long)]);
    assert!(e.contains("property 'namespace'"), "{e}");
    let e = init_error(&[]);
    assert!(e.contains("NO match rule"), "{e}");
}

#[test]
fn logs_through_the_host_with_the_instance_name() {
    let inst = plugin()
        .instance(&[("match", "*"), ("alias", "ps_alerts")])
        .unwrap();
    assert_eq!(inst.name(), "ps_alerts");
    let logs = inst.logs();
    assert!(
        logs.iter()
            .any(|l| l.text.starts_with("[filter:pssession:ps_alerts] started")),
        "{logs:?}"
    );
    drop(inst);
    let logs = pssession_host_emulator::logs_containing("[filter:pssession:ps_alerts] stopping");
    assert_eq!(logs.len(), 1, "exit summary logged once");
    let quiet = plugin()
        .instance(&[("match", "*"), ("alias", "quiet"), ("log_level", "error")])
        .unwrap();
    assert!(quiet.logs().is_empty(), "info lines must respect log_level");
}

#[test]
fn instances_share_nothing() {
    let ecs = plugin().instance(&[("match", "*")]).unwrap();
    let spl = plugin()
        .instance(&[
            ("match", "*"),
            ("schema", "splunk"),
            ("exclude_computer", "^ws01$"),
        ])
        .unwrap();
    let chunk = chunk_of(
        &[positive("ws01"), positive("ws02")],
        1.7e9,
        Layout::CURRENT,
    );
    let a = decode(&ecs.filter(&chunk, "t").chunk);
    let b = decode(&spl.filter(&chunk, "t").chunk);
    assert!(a[0].body.get("threat").is_some() && a[1].body.get("threat").is_some());
    assert!(
        b[0].body.get("risk_score").is_none(),
        "excluded in the splunk instance only"
    );
    assert_eq!(b[1].body["risk_object"], "ws02");
}

#[test]
fn four_threads_at_once_give_exact_results() {
    let inst = plugin()
        .instance(&[("match", "*"), ("alias", "threads")])
        .unwrap();
    let chunk = chunk_of(
        &[negative(), positive("ws01"), negative(), positive("ws02")],
        1.7e9,
        Layout::CURRENT,
    );
    let expected = inst.filter(&chunk, "t").chunk;
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..500 {
                    let c = inst.filter(&chunk, "t");
                    assert_eq!(c.chunk, expected);
                }
            });
        }
    });
    drop(inst);
    let summary = pssession_host_emulator::logs_containing("[filter:pssession:threads] stopping");
    assert!(
        summary[0].text.contains("8004 records read"),
        "{}",
        summary[0].text
    );
    assert!(
        summary[0].text.contains("4002 flagged"),
        "{}",
        summary[0].text
    );
}

#[test]
fn init_filter_exit_cycles_like_hot_reload() {
    let chunk = chunk_of(&[positive("ws01")], 1.7e9, Layout::CURRENT);
    for i in 0..100 {
        let alias = format!("reload{i}");
        let inst = plugin()
            .instance(&[("match", "*"), ("alias", &alias)])
            .unwrap();
        assert!(inst.filter(&chunk, "t").modified());
    }
}

#[test]
fn hostile_chunks_pass_through_untouched() {
    let inst = plugin().instance(&[("match", "*")]).unwrap();
    let good = chunk_of(&[negative()], 1.7e9, Layout::CURRENT);
    let mut cases: Vec<Vec<u8>> = vec![
        vec![0xc1],                         // reserved marker
        vec![0xdf, 0xff, 0xff, 0xff, 0xff], // map32 with no entries
        vec![0x92, 0x01],                   // truncated record
        b"not msgpack at all".to_vec(),
        [good.clone(), vec![0x92]].concat(), // trailing garbage
        vec![0x91; 100_000],                 // deep nesting
        vec![0xa3, b'a'],                    // truncated string
    ];
    // non-map bodies and odd headers
    for body in [json!("text"), json!([1, 2]), json!(null), json!(4104)] {
        cases.push(chunk_of(&[body], 1.7e9, Layout::CURRENT));
    }
    // wrong types where ids and text are expected
    cases.push(chunk_of(
        &[
            json!({"EventID": "DROP TABLE", "Channel": 7, "ScriptBlockText": ["Enter-PSSession"]}),
            json!({"EventID": u64::MAX, "Message": {"x": 1}}),
            json!({"EventID": -4104, "Message": "Enter-PSSession -ComputerName x"}),
            json!({"EventID": 4104.5, "Message": "Enter-PSSession -ComputerName x"}),
        ],
        1.7e9,
        Layout::CURRENT,
    ));
    for (i, c) in cases.iter().enumerate() {
        let call = inst.filter(c, "t");
        assert_eq!(call.code, FLB_FILTER_NOTOUCH, "case {i}");
        assert_eq!(&call.chunk, c, "case {i}");
    }
}

#[test]
fn flagged_records_before_garbage_are_enriched_and_the_rest_kept() {
    let inst = plugin().instance(&[("match", "*")]).unwrap();
    let mut chunk = chunk_of(&[positive("ws01")], 1.7e9, Layout::CURRENT);
    chunk.extend_from_slice(&[0x92, 0xc1, 0x00]);
    let call = inst.filter(&chunk, "t");
    assert!(call.modified());
    assert!(call.chunk.ends_with(&[0x92, 0xc1, 0x00]));
    let first = pssession_core::chunk_io::decode_chunk(&call.chunk).unwrap_err();
    assert!(first > 0);
    assert!(inst
        .logs()
        .iter()
        .any(|l| l.text.contains("not valid msgpack")));
}

#[test]
fn huge_and_odd_fields() {
    let inst = plugin().instance(&[("match", "*")]).unwrap();
    let big = format!("{}Enter-PSSession -ComputerName x", "A".repeat(10 << 20));
    let mut many = serde_json::Map::new();
    for i in 0..100_000 {
        many.insert(format!("k{i}"), json!(i));
    }
    many.insert("EventID".into(), json!(4104));
    many.insert(
        "ScriptBlockText".into(),
        json!("Enter-PSSession -ComputerName y"),
    );
    let chunk = chunk_of(
        &[
            json!({"EventID": 4104, "Message": big}),
            Value::Object(many),
        ],
        1.7e9,
        Layout::CURRENT,
    );
    let call = inst.filter(&chunk, "t");
    let out = decode(&call.chunk);
    assert_eq!(out.len(), 2);
    assert!(out[0].body.get("pssession").is_some());
    assert!(out[1].body.get("pssession").is_some());
    assert_eq!(
        out[1].body.as_object().unwrap().len(),
        100_002 + 4,
        "originals + event, threat, rule, pssession"
    );
    // invalid UTF-8 and NUL bytes in the text: judged on bytes, kept as bytes
    let mut body = Vec::new();
    rmp::encode::write_map_len(&mut body, 3).unwrap();
    rmp::encode::write_str(&mut body, "EventID").unwrap();
    rmp::encode::write_uint(&mut body, 4104).unwrap();
    rmp::encode::write_str(&mut body, "Hostname").unwrap();
    body.extend_from_slice(&[0xa3, 0xff, 0x00, b'h']); // fixstr, invalid UTF-8 and a NUL
    rmp::encode::write_str(&mut body, "ScriptBlockText").unwrap();
    rmp::encode::write_bin(&mut body, b"\x00Enter-PSSession\xff -ComputerName").unwrap();
    let mut rec = vec![
        0x92, 0x92, 0xd7, 0x00, 0x65, 0x53, 0xf1, 0x00, 0, 0, 0, 0, 0x80,
    ];
    rec.extend_from_slice(&body);
    let call = inst.filter(&rec, "t");
    assert!(call.modified());
    let out = decode(&call.chunk);
    assert_eq!(out[0].body["pssession"]["ComputerName"], "\u{fffd}\u{0}h");
}
