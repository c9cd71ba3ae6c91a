//! The labelled corpus of PowerShell scripts (tests/data/corpus/remote_sessions.jsonl):
//! `mode extended` reaches precision and recall >= 0.95 on it, and `mode exact` agrees with
//! the reference analytic's literal search on every script. Runs the same command the
//! README's table comes from (`make eval`).

use std::process::Command;

#[test]
fn extended_meets_its_targets_and_exact_matches_the_analytic() {
    let out = Command::new(env!("CARGO_BIN_EXE_pssession-eval"))
        .args(["tests/data/corpus/remote_sessions.jsonl", "--check"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("disagrees with the analytic's literal search on 0 of"),
        "{text}"
    );
    let scripts: usize = text.split_whitespace().next().unwrap().parse().unwrap();
    assert!(scripts >= 150, "{scripts} scripts");
}
