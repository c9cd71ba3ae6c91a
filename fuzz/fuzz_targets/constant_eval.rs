//! Arbitrary text into mode extended's constant evaluator, as a piece of code whose own
//! `$name = ...` lines are its variable definitions (so definitions, the memo and the
//! budget are exercised together). libFuzzer's -timeout catches blow-ups.
//!
//! Checks: never a panic; the same text evaluates to the same value twice; what it builds
//! stays within the budget (decoded output 4x the text and 1 MB, built text 32x and 16 MB);
//! code found to run is bounded the same way; every layer named is one of the known ones.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pssession_core::detect::constant::{
    to_text, Budget, Change, Definition, Definitions, Evaluator, MAX_BYTES,
};

/// `$name = value` lines of the text, as definitions (byte ranges of the value).
struct Lines(Vec<(String, Definition)>);

impl Lines {
    fn of(text: &str) -> Lines {
        let mut defs = Vec::new();
        let mut start = 0;
        for line in text.split_inclusive('\n') {
            let end = start + line.trim_end_matches('\n').len();
            if let Some((name, _)) = line.strip_prefix('$').and_then(|l| l.split_once('=')) {
                let eq = start + line.find('=').unwrap_or(0);
                let name = name.trim().to_ascii_lowercase();
                let kind = Change::Assign;
                defs.push((
                    name,
                    Definition {
                        start: eq + 1,
                        end,
                        kind,
                    },
                ));
            }
            start += line.len();
        }
        Lines(defs)
    }
}

impl Definitions for Lines {
    fn definition(&self, name: &str, before: usize) -> Option<Definition> {
        self.0
            .iter()
            .rev()
            .find(|(n, d)| n == name && d.start < before)
            .map(|(_, d)| *d)
    }
}

const LAYERS: &[&str] = &[
    "concat",
    "bxor",
    "format-operator",
    "join",
    "replace",
    "reverse",
    "char-codes",
    "substring-index",
    "hex",
    "octal",
    "binary",
    "base64",
    "base64-utf16le",
    "base64-utf16be",
    "base64-utf8",
    "base64-ascii",
    "base64-utf32",
    "deflate",
    "gzip",
    "get-command",
    "get-alias",
    "execution-context",
    "scriptblock-create",
    "scriptblock-invoke",
    "invoke-script",
    "invoke-expression",
    "expand-string",
];

fn evaluate(text: &str, defs: &Lines) -> (String, usize) {
    let mut budget = Budget::for_script(text.len());
    let mut ev = Evaluator::new(text, defs, &mut budget);
    let v = ev.eval_range(0, text.len());
    let runs = ev.take_runs();
    let limit = (text.len() * 32).clamp(1 << 16, 16 << 20) + MAX_BYTES;
    let run_bytes: usize = runs.iter().map(|r| r.code.len()).sum();
    assert!(run_bytes <= limit, "runs of {run_bytes} bytes");
    for r in &runs {
        for l in &r.layers {
            assert!(LAYERS.contains(l), "unknown layer {l}");
        }
    }
    let value = match &v {
        Some((v, layers)) => {
            for l in layers {
                assert!(LAYERS.contains(l), "unknown layer {l}");
            }
            to_text(v)
        }
        None => String::new(),
    };
    assert!(value.len() <= limit, "a value of {} bytes", value.len());
    (value, runs.len())
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let defs = Lines::of(&text);
    let first = evaluate(&text, &defs);
    let again = evaluate(&text, &defs);
    assert_eq!(first, again, "evaluation is not deterministic");
});
