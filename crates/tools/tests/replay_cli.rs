//! pssession-replay driven as a user would: the built binary, real files, exit codes.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pssession-replay"))
}

/// The repository root (samples, fluent-bit-conf and ../shared/data are relative to it).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(args: &[&str]) -> Output {
    bin().args(args).current_dir(root()).output().unwrap()
}

fn lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pssession-replay-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// `../shared/data`, as in the plugin's tests: SKIPPED on a user's clone, a failure in CI.
fn shared() -> Option<PathBuf> {
    let p = root().join("../shared/data");
    if p.is_dir() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "../shared/data not found, and CI is set: CI always has it"
    );
    eprintln!("SKIPPED: ../shared/data not found");
    None
}

#[test]
fn samples_flagged_records_then_rows_then_summary() {
    let o = run(&["samples/demo.jsonl"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = lines(&o);
    let flagged: Vec<_> = out
        .iter()
        .filter(|v| v.get("pssession").is_some() && v.get("count").is_none())
        .collect();
    let rows: Vec<_> = out.iter().filter(|v| v.get("count").is_some()).collect();
    assert_eq!(flagged.len(), 6);
    assert_eq!(rows.len(), 6);
    let first_row = out.iter().position(|v| v.get("count").is_some()).unwrap();
    assert_eq!(first_row, 6, "rows come after the records");
    let e = stderr(&o);
    assert!(e.contains("24 records, 6 flagged, 6 aggregate rows"), "{e}");
    assert!(
        e.contains("records by shape:") && e.contains("winlogbeat"),
        "{e}"
    );
    assert!(e.contains("JUMP01.fabrikam.local"), "{e}");
    assert!(e.contains("time span: 2024-04-02T"), "{e}");
}

#[test]
fn all_output_file_and_json_summary() {
    let out = tmp("all.jsonl");
    let o = run(&[
        "--all",
        "-o",
        out.to_str().unwrap(),
        "--format",
        "json",
        "samples/demo.jsonl",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(written.lines().count(), 24 + 6);
    let summary: Value = serde_json::from_str(stderr(&o).lines().last().unwrap()).unwrap();
    assert_eq!(summary["records"], 24);
    assert_eq!(summary["flagged"], 6);
    assert_eq!(summary["files"][0]["format"], "jsonl");
}

#[test]
fn fail_on_match_exit_codes() {
    let o = run(&["--fail-on-match", "samples/demo.jsonl"]);
    assert_eq!(o.status.code(), Some(1));
    let quiet = tmp("quiet.jsonl");
    std::fs::write(&quiet, "{\"EventID\": 4624, \"Channel\": \"Security\"}\n").unwrap();
    let o = run(&["--fail-on-match", quiet.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn properties_from_cli_and_config_files() {
    let o = run(&[
        "-p",
        "schema=splunk",
        "-p",
        "exclude_computer=(?i)^jump",
        "samples/demo.jsonl",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let flagged: Vec<_> = lines(&o)
        .into_iter()
        .filter(|v| v.get("count").is_none())
        .collect();
    assert_eq!(flagged.len(), 5, "JUMP01 excluded");
    assert!(flagged.iter().all(|v| v.get("risk_object").is_some()));

    let classic = tmp("pssession.conf");
    std::fs::write(&classic, "[INPUT]\n    Name dummy\n[FILTER]\n    Name pssession\n    Match win.*\n    Schema splunk\n    Exclude_User (?i)svc_backup\n    Exclude_User ci_runner\n").unwrap();
    let o = run(&["-c", classic.to_str().unwrap(), "samples/demo.jsonl"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let flagged: Vec<_> = lines(&o)
        .into_iter()
        .filter(|v| v.get("count").is_none())
        .collect();
    assert_eq!(
        flagged.len(),
        4,
        "two users excluded by the repeated property"
    );

    let yaml = tmp("pssession.yaml");
    std::fs::write(&yaml, "pipeline:\n  filters:\n    - name: pssession\n      match: '*'\n      namespace: det\n      aggregate: off\n").unwrap();
    let o = run(&["-c", yaml.to_str().unwrap(), "samples/demo.jsonl"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = lines(&o);
    assert_eq!(out.len(), 6, "no rows with aggregate off");
    assert!(out.iter().all(|v| v.get("det").is_some()));
    // -p overrides the file
    let o = run(&[
        "-c",
        yaml.to_str().unwrap(),
        "-p",
        "namespace=other",
        "samples/demo.jsonl",
    ]);
    assert!(lines(&o).iter().all(|v| v.get("other").is_some()));
}

#[test]
fn stdin_msgpack_and_text_inputs() {
    let demo = std::fs::read(root().join("samples/demo.jsonl")).unwrap();
    let mut child = bin()
        .arg("-")
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&demo).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("<stdin>"));
    assert_eq!(lines(&o).len(), 12);

    // Fluent Bit msgpack records, with their own timestamps
    let mut chunk = Vec::new();
    for l in String::from_utf8(demo).unwrap().lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        pssession_core::chunk_io::push_record(
            &mut chunk,
            &pssession_core::chunk_io::json_to_msgpack(&v),
            1_700_000_000.0,
            pssession_core::chunk_io::Layout::CURRENT,
        );
    }
    let mp = tmp("demo.msgpack");
    std::fs::write(&mp, &chunk).unwrap();
    let o = run(&["--format", "json", mp.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s: Value = serde_json::from_str(stderr(&o).lines().last().unwrap()).unwrap();
    assert_eq!(
        (s["records"].as_u64(), s["flagged"].as_u64()),
        (Some(24), Some(6))
    );
    assert_eq!(s["files"][0]["format"], "msgpack");

    let txt = tmp("syslog.log");
    std::fs::write(
        &txt,
        "Mar  5 10:11:12 web01 sshd[1]: Accepted publickey\nMar  5 10:11:13 web01 cron[2]: job\n",
    )
    .unwrap();
    let o = run(&["--format", "json", txt.to_str().unwrap()]);
    let s: Value = serde_json::from_str(stderr(&o).lines().last().unwrap()).unwrap();
    assert_eq!(
        (s["records"].as_u64(), s["flagged"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(s["files"][0]["format"], "text");
}

#[test]
fn real_evtx_and_nxlog_data_raise_nothing() {
    let Some(data) = shared() else { return };
    let o = run(&[
        "--fail-on-match",
        "--format",
        "json",
        data.join("evtx").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s: Value = serde_json::from_str(stderr(&o).lines().last().unwrap()).unwrap();
    assert!(s["records"].as_u64().unwrap() >= 500);
    assert_eq!(s["flagged"], 0);
    assert_eq!(s["shapes"]["winevtlog"].as_u64(), s["records"].as_u64());
    // one NXLog capture, unzipped
    let zip = data.join("otrf/empire_psremoting_stager.zip");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    let jsonl = tmp("empire.json");
    std::io::copy(
        &mut archive.by_index(0).unwrap(),
        &mut std::fs::File::create(&jsonl).unwrap(),
    )
    .unwrap();
    let o = run(&[
        "--fail-on-match",
        "--format",
        "json",
        jsonl.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s: Value = serde_json::from_str(stderr(&o).lines().last().unwrap()).unwrap();
    assert_eq!(s["records"], 2744);
    assert_eq!(s["flagged"], 0);
}

fn assert_input_error(o: &Output, want: &[&str]) {
    assert_eq!(o.status.code(), Some(2), "{}", stderr(o));
    let e = stderr(o);
    for w in want {
        assert!(e.contains(w), "stderr lacks {w:?}: {e}");
    }
}

#[test]
fn errors_name_the_file_and_the_place() {
    assert_input_error(
        &run(&["no/such/file.jsonl"]),
        &["no/such/file.jsonl", "No such file"],
    );
    let bad = tmp("bad.jsonl");
    std::fs::write(&bad, "{\"a\":1}\n{\"b\":2}\n{oops\n").unwrap();
    assert_input_error(
        &run(&[bad.to_str().unwrap()]),
        &["bad.jsonl: line 3: not JSON"],
    );
    let evtx = tmp("broken.evtx");
    std::fs::write(&evtx, b"ElfFile\0garbage that is not an event log").unwrap();
    assert_input_error(
        &run(&[evtx.to_str().unwrap()]),
        &["broken.evtx", "not a readable EVTX file"],
    );
    let mp = tmp("broken.msgpack");
    std::fs::write(&mp, [0x92, 0x92, 0xd7, 0x00, 1, 2]).unwrap();
    assert_input_error(
        &run(&[mp.to_str().unwrap()]),
        &["broken.msgpack: byte 4: not a msgpack record"],
    );
    assert_input_error(
        &run(&["-p", "risk_score=lots", "samples/demo.jsonl"]),
        &["property 'risk_score'"],
    );
    assert_input_error(
        &run(&["-p", "colour=blue", "samples/demo.jsonl"]),
        &["unknown configuration property 'colour'"],
    );
    assert_input_error(
        &run(&["-p", "novalue", "samples/demo.jsonl"]),
        &["-p novalue: expected KEY=VALUE"],
    );
    let nofilter = tmp("nofilter.conf");
    std::fs::write(&nofilter, "[INPUT]\n    Name dummy\n").unwrap();
    assert_input_error(
        &run(&["-c", nofilter.to_str().unwrap(), "samples/demo.jsonl"]),
        &["nofilter.conf", "no filter section"],
    );
    let badyaml = tmp("bad.yaml");
    std::fs::write(&badyaml, "pipeline:\n  filters: [\n").unwrap();
    assert_input_error(
        &run(&["-c", badyaml.to_str().unwrap(), "samples/demo.jsonl"]),
        &["bad.yaml", "not valid YAML"],
    );
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(2), "usage error");
    assert!(Path::new(env!("CARGO_BIN_EXE_pssession-replay")).exists());
}
