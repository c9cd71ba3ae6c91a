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

/// `$name = value` lines of the text, as definitions (char ranges of the value).
struct Lines(Vec<(String, Definition)>);

impl Lines {
    fn of(chars: &[char]) -> Lines {
        let mut defs = Vec::new();
        let mut start = 0;
        for (i, c) in chars
            .iter()
            .enumerate()
            .chain(std::iter::once((chars.len(), &'\n')))
        {
            if *c != '\n' {
                continue;
            }
            let line: String = chars[start..i].iter().collect();
            if let Some((name, _)) = line.strip_prefix('$').and_then(|l| l.split_once('=')) {
                let eq = start + line.find('=').unwrap_or(0);
                let name = name.trim().to_ascii_lowercase();
                defs.push((
                    name,
                    Definition {
                        start: eq + 1,
                        end: i,
                        kind: Change::Assign,
                    },
                ));
            }
            start = i + 1;
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

fn evaluate(chars: &[char], defs: &Lines) -> (String, usize) {
    let mut budget = Budget::for_script(chars.len());
    let mut ev = Evaluator::new(chars, defs, &mut budget);
    let v = ev.eval_range(0, chars.len());
    let runs = ev.take_runs();
    let limit = (chars.len() * 32).clamp(1 << 16, 16 << 20) + MAX_BYTES;
    let run_bytes: usize = runs.iter().map(|r| r.code.len()).sum();
    assert!(run_bytes <= limit, "runs of {run_bytes} bytes");
    for r in &runs {
        for l in &r.layers {
            assert!(LAYERS.contains(l), "unknown layer {l}");
        }
    }
    let text = match &v {
        Some((v, layers)) => {
            for l in layers {
                assert!(LAYERS.contains(l), "unknown layer {l}");
            }
            to_text(v)
        }
        None => String::new(),
    };
    assert!(text.len() <= limit, "a value of {} bytes", text.len());
    (text, runs.len())
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let chars: Vec<char> = text.chars().collect();
    let defs = Lines::of(&chars);
    let first = evaluate(&chars, &defs);
    let again = evaluate(&chars, &defs);
    assert_eq!(first, again, "evaluation is not deterministic");
});
