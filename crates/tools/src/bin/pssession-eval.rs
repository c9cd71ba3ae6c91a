//! pssession-eval: precision and recall of `mode exact` and `mode extended` on a labelled
//! corpus of PowerShell scripts, measured through the built plugin (the host emulator
//! loads the `.so`), and a check that `mode exact` agrees with the reference analytic's
//! literal search on every script.
//!
//! Usage: pssession-eval [CORPUS.jsonl] [--markdown] [--check]
//! Each corpus line: {"id", "label": "remote"|"local"|"none", "category", "script"}, and
//! `"scored": false` on scripts Windows PowerShell 5.1 and PowerShell 7 read differently:
//! those are run and counted per label, never in precision or recall.

use pssession_core::chunk_io::{self, Layout};
use pssession_host_emulator::{self as host_emulator, Instance, Plugin};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::ExitCode;

pssession_host_emulator::export_host_symbols!();

/// The computer every script runs on (its own name is a local target).
const COMPUTER: &str = "WS01.corp.contoso.com";

#[derive(Default, Clone, Copy)]
struct Counts {
    tp: u64,
    fp: u64,
    fn_: u64,
    tn: u64,
}

impl Counts {
    fn add(&mut self, truth: bool, predicted: bool) {
        match (truth, predicted) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (true, false) => self.fn_ += 1,
            (false, false) => self.tn += 1,
        }
    }
    fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
}

/// `P / R` for a table cell; `-` where nothing was flagged or nothing was positive.
fn precision_recall(c: &Counts) -> String {
    let p = if c.tp + c.fp == 0 {
        "-".to_string()
    } else {
        format!("{:.2}", c.precision())
    };
    let r = if c.tp + c.fn_ == 0 {
        "-".to_string()
    } else {
        format!("{:.2}", c.recall())
    };
    format!("{p} / {r}")
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

fn record(script: &str) -> Value {
    json!({
        "EventID": 4104,
        "Channel": "Microsoft-Windows-PowerShell/Operational",
        "Hostname": COMPUTER, "Domain": "CORP", "AccountName": "analyst",
        "MessageNumber": "1", "MessageTotal": "1",
        "ScriptBlockId": "00000000-0000-0000-0000-000000000001",
        "ScriptBlockText": script,
        "Message": format!("Creating Scriptblock text (1 of 1):\r\n{script}\r\n\r\nScriptBlock ID: 00000000-0000-0000-0000-000000000001\r\nPath: "),
    })
}

/// Whether the record came out flagged as lateral movement.
fn flagged_remote(inst: &Instance<'_>, script: &str) -> bool {
    flagged_evidence(inst, script).is_some()
}

/// The `pssession` fields of the record when it came out flagged as lateral movement.
fn flagged_evidence(inst: &Instance<'_>, script: &str) -> Option<Value> {
    let mut chunk = Vec::new();
    chunk_io::push_record(
        &mut chunk,
        &chunk_io::json_to_msgpack(&record(script)),
        1.7e9,
        Layout::CURRENT,
    );
    let call = inst.filter(&chunk, "eval");
    if !call.modified() {
        return None;
    }
    let out = chunk_io::decode_chunk(&call.chunk).unwrap_or_default();
    let ns = &out.first()?.body["pssession"];
    (ns["lateral_movement"].as_str() != Some("false")).then(|| ns.clone())
}

/// A command line compared loosely: any case, quotes dropped, white space collapsed.
fn loose(cmd: &str) -> String {
    cmd.to_ascii_lowercase()
        .replace(['\'', '"'], "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The reference analytic's search, written independently of the plugin.
fn analytic(script: &str) -> bool {
    let msg = format!("Creating Scriptblock text (1 of 1):\r\n{script}\r\n\r\nScriptBlock ID: 00000000-0000-0000-0000-000000000001\r\nPath: ")
        .to_ascii_lowercase();
    msg.contains("enter-pssession") && msg.contains("-computername")
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pssession-eval: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let markdown = args.iter().any(|a| a == "--markdown");
    let check = args.iter().any(|a| a == "--check");
    let path = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "tests/data/corpus/remote_sessions.jsonl".into());
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let plugin = host_emulator::find_built_plugin()
        .ok_or("plugin not built".to_string())
        .and_then(|p| host_emulator::stage_plugin(&p).map_err(|e| e.to_string()))
        .and_then(|p| Plugin::load(&p).map_err(|e| e.to_string()))?;
    let base = [("match", "*"), ("aggregate", "off"), ("log_level", "error")];
    let start = |mode| {
        plugin
            .instance(&[base.as_slice(), &[("mode", mode)]].concat())
            .map_err(|e| format!("the plugin did not start:\n{e}"))
    };
    let (exact, extended) = (start("exact")?, start("extended")?);
    let mut tally = Tally::default();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).map_err(|e| format!("{path}: line {}: {e}", n + 1))?;
        tally.add(&v, &exact, &extended);
    }
    tally.print(markdown, &path);
    let (cx, total) = (tally.extended, tally.total());
    if check
        && (!tally.disagreements.is_empty()
            || cx.recall() < 0.95
            || cx.precision() < 0.95
            || total < 150)
    {
        eprintln!("pssession-eval: targets not met (extended precision and recall >= 0.95, exact identical to the analytic, >= 150 scripts)");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Both modes' results over the corpus so far.
#[derive(Default)]
struct Tally {
    exact: Counts,
    extended: Counts,
    /// label -> (scripts, flagged by exact, flagged by extended)
    per_label: BTreeMap<String, (u64, u64, u64)>,
    /// Scripts 5.1 and 7 read differently: run, never scored.
    unscored: u64,
    /// category -> (exact, extended) over the scored scripts of that category
    per_category: BTreeMap<String, (Counts, Counts)>,
    /// Scripts where `mode exact` and the analytic's search differ.
    disagreements: Vec<String>,
    /// Scripts `mode extended` gets wrong.
    misses: Vec<String>,
    /// Flagged positives labelled with their command: (checked, whose command_line matches).
    evidence: (u64, u64),
    /// The flagged positives whose command_line differs from the labelled command.
    evidence_misses: Vec<String>,
}

impl Tally {
    fn add(&mut self, v: &Value, exact: &Instance<'_>, extended: &Instance<'_>) {
        let script = v["script"].as_str().unwrap_or("");
        let id = v["id"].as_str().unwrap_or("?");
        let label = v["label"].as_str().unwrap_or("none").to_string();
        let truth = label == "remote";
        let scored = v["scored"].as_bool() != Some(false);
        let e = flagged_remote(exact, script);
        let evidence = flagged_evidence(extended, script);
        let x = evidence.is_some();
        let want = v["expect_command"]
            .as_str()
            .filter(|c| !c.is_empty() && truth);
        if let (Some(want), Some(ns)) = (want, &evidence) {
            let got = ns["command_line"].as_str().unwrap_or("");
            self.evidence.0 += 1;
            if loose(got) == loose(want) {
                self.evidence.1 += 1;
            } else {
                self.evidence_misses
                    .push(format!("{id}: {got:?}, labelled {want:?}"));
            }
        }
        if e != analytic(script) {
            self.disagreements.push(id.to_string());
        }
        if x != truth && scored {
            let said = if x { "remote" } else { "not remote" };
            self.misses
                .push(format!("{id} ({label}, extended said {said})"));
        }
        let entry = self.per_label.entry(label.clone()).or_default();
        entry.0 += 1;
        entry.1 += e as u64;
        entry.2 += x as u64;
        if !scored {
            self.unscored += 1;
            return;
        }
        self.exact.add(truth, e);
        self.extended.add(truth, x);
        let category = v["category"].as_str().unwrap_or("-").to_string();
        let per = self.per_category.entry(category).or_default();
        per.0.add(truth, e);
        per.1.add(truth, x);
    }

    fn total(&self) -> u64 {
        let c = self.exact;
        c.tp + c.fp + c.fn_ + c.tn
    }

    fn print(&self, markdown: bool, path: &str) {
        let total = self.total();
        if markdown {
            println!("| mode | precision | recall | TP | FP | FN | TN |");
            println!("|---|---|---|---|---|---|---|");
        } else {
            println!("{total} scripts from {path}");
        }
        for (name, c) in [("exact", self.exact), ("extended", self.extended)] {
            let (p, r) = (c.precision(), c.recall());
            let (tp, fp, fn_, tn) = (c.tp, c.fp, c.fn_, c.tn);
            if markdown {
                println!("| `{name}` | {p:.3} | {r:.3} | {tp} | {fp} | {fn_} | {tn} |");
            } else {
                println!(
                    "{name:>9}: precision {p:.3} recall {r:.3} (TP {tp} FP {fp} FN {fn_} TN {tn})"
                );
            }
        }
        if markdown {
            println!();
            println!("| label | scripts | flagged by `exact` | flagged by `extended` |");
            println!("|---|---|---|---|");
            for (l, (n, e, x)) in &self.per_label {
                println!("| {l} | {n} | {e} | {x} |");
            }
            println!();
            println!("| category | scripts | `exact` P / R | `extended` P / R |");
            println!("|---|---|---|---|");
            for (k, (e, x)) in &self.per_category {
                let n = e.tp + e.fp + e.fn_ + e.tn;
                println!(
                    "| {k} | {n} | {} | {} |",
                    precision_recall(e),
                    precision_recall(x)
                );
            }
        } else {
            for m in &self.misses {
                println!("  extended wrong on {m}");
            }
            for m in &self.evidence_misses {
                println!("  command_line differs on {m}");
            }
        }
        if self.evidence.0 > 0 {
            println!(
                "\nextended's command_line matches the labelled command on {} of {} flagged positives",
                self.evidence.1, self.evidence.0
            );
        }
        if self.unscored > 0 {
            println!(
                "\n{} scripts that PowerShell 5.1 and 7 read differently are listed per label, not scored",
                self.unscored
            );
        }
        let d = &self.disagreements;
        let which = if d.is_empty() {
            String::new()
        } else {
            format!(": {d:?}")
        };
        println!(
            "\nexact mode disagrees with the analytic's literal search on {} of {} scripts{which}",
            d.len(),
            total + self.unscored
        );
    }
}
