//! Bounded constant evaluation of PowerShell expressions, for mode extended: what a script
//! computes from its own constants (concatenation, `-f`, `-join`, `-replace`, reversal, char
//! codes, base64, deflate, `-bxor`, `Get-Command`, ...) without running anything. Every
//! evaluation draws on one [`Budget`] in steps, bytes and depth; running out means
//! "unknown", never a hang or a crash.

mod commands;
mod dotnet;
mod parse;

pub use commands::{glob_match, resolve_command_pattern};
pub use dotnet::truthy;
pub use parse::word_escape;

use std::collections::HashMap;

/// What an expression evaluates to, as far as constant evaluation goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Char(char),
    Str(String),
    Array(Vec<Value>),
    /// A `byte[]`; `base64` when it came from `[Convert]::FromBase64String`.
    Bytes {
        data: Vec<u8>,
        base64: bool,
    },
    /// A hashtable, or an object read through its properties (keys compared ignoring case).
    Hash(Vec<(String, Value)>),
    /// A script block: its source text.
    Block(String),
    /// A command object (`Get-Command`, `GetCmdlet`): its name.
    Command(String),
    /// A type literal (`[Convert]`), lowercase, without `System.`.
    Type(String),
    /// A text encoding (`[Text.Encoding]::Unicode`).
    Encoding(Encoding),
    /// A readable stream over bytes (MemoryStream, DeflateStream, GZipStream).
    Stream {
        data: Vec<u8>,
        base64: bool,
    },
    /// A StreamReader's text.
    Reader(String),
    /// `$ExecutionContext` and its `InvokeCommand`, and enum values such as `Decompress`.
    Object(&'static str),
    /// A value constant evaluation does not know (a hashtable entry's value), kept as its
    /// source text so a splat can still pass it on.
    Opaque(String),
}

/// The text encodings a script can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf16Le,
    Utf16Be,
    Utf8,
    Ascii,
    Utf32,
}

impl Encoding {
    /// Decodes bytes as .NET's `GetString` does (invalid sequences become U+FFFD).
    pub fn decode(self, b: &[u8]) -> String {
        match self {
            Encoding::Utf16Le | Encoding::Utf16Be => {
                let units: Vec<u16> = b
                    .chunks_exact(2)
                    .map(|c| match self {
                        Encoding::Utf16Le => u16::from_le_bytes([c[0], c[1]]),
                        _ => u16::from_be_bytes([c[0], c[1]]),
                    })
                    .collect();
                String::from_utf16_lossy(&units)
            }
            Encoding::Utf8 => String::from_utf8_lossy(b).into_owned(),
            Encoding::Ascii => b
                .iter()
                .map(|&c| if c < 0x80 { c as char } else { '?' })
                .collect(),
            Encoding::Utf32 => b
                .chunks_exact(4)
                .map(|c| {
                    char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .unwrap_or('\u{FFFD}')
                })
                .collect(),
        }
    }

    /// The layer name a base64 payload decoded with it gets.
    fn layer(self) -> &'static str {
        match self {
            Encoding::Utf16Le => "base64-utf16le",
            Encoding::Utf16Be => "base64-utf16be",
            Encoding::Utf8 => "base64-utf8",
            Encoding::Ascii => "base64-ascii",
            Encoding::Utf32 => "base64-utf32",
        }
    }
}

/// Budget for all the evaluation done on one script: steps (parse and value operations),
/// bytes decoded (base64, inflated, text from bytes), bytes of any text built, nesting
/// depth, and the regexes compiled.
#[derive(Debug, Clone)]
pub struct Budget {
    steps: usize,
    decoded: usize,
    bytes: usize,
    max_depth: usize,
    regexes: dotnet::Regexes,
}

/// Most nested layers (parentheses, variables defined from variables, decoded payloads).
pub const MAX_DEPTH: usize = 64;
/// Most bytes evaluation may decode for one script, whatever its size.
pub const MAX_BYTES: usize = 1 << 20;
/// Most bytes of text evaluation may build for one script (every concatenation, format
/// and replacement counts, intermediate ones too).
const MAX_BUILT: usize = 16 << 20;
/// What one array element written out in the script counts for against the built bytes
/// (about its size in memory), so a list of millions of numbers stays bounded too.
const ELEMENT_BYTES: usize = std::mem::size_of::<Value>();

impl Budget {
    /// The budget for a script of `len` bytes: decoded and decompressed output at most 4x
    /// the script and 1 MB, text built at most 32x and 16 MB, steps linear in the script,
    /// 64 nested layers.
    pub fn for_script(len: usize) -> Budget {
        Budget {
            steps: len.saturating_mul(16).saturating_add(200_000),
            decoded: len.saturating_mul(4).clamp(4096, MAX_BYTES),
            bytes: len.saturating_mul(32).clamp(1 << 16, MAX_BUILT),
            max_depth: MAX_DEPTH,
            regexes: dotnet::Regexes::for_script(len),
        }
    }

    /// Takes `n` steps; false once the budget is spent.
    fn step(&mut self, n: usize) -> bool {
        self.steps = self.steps.saturating_sub(n);
        self.steps > 0
    }

    /// Accounts for `n` bytes of built text; false once the budget is spent.
    fn produce(&mut self, n: usize) -> bool {
        take(&mut self.bytes, n)
    }

    /// Accounts for `n` bytes of decoded output; false once the budget is spent.
    fn decode(&mut self, n: usize) -> bool {
        take(&mut self.decoded, n) && take(&mut self.bytes, n)
    }

    /// How many bytes of text may still be built.
    fn built_room(&self) -> usize {
        self.bytes
    }

    /// What may still be decoded.
    fn decodable(&self) -> usize {
        self.decoded.min(self.bytes)
    }

    /// Whether nothing is left.
    pub fn spent(&self) -> bool {
        self.steps == 0 || self.bytes == 0 || self.decoded == 0
    }
}

/// Takes `n` from `left`; when there is not that much, empties it and says so.
fn take(left: &mut usize, n: usize) -> bool {
    if n > *left {
        *left = 0;
        return false;
    }
    *left -= n;
    true
}

/// Where a variable was last set before a use: the source range of its value (byte
/// offsets into the code being read), or how it changed its earlier value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Definition {
    pub start: usize,
    pub end: usize,
    pub kind: Change,
}

/// How a definition gives a variable its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `$v = <value>`: the range is the value.
    Assign,
    /// `[array]::Reverse($v)`: the earlier value reversed.
    Reverse,
    /// `Set-Variable v <argument>` (`sv`, `New-Variable`): the range is the argument, read
    /// as a command argument (a bare word is a string).
    Argument,
    /// `$v.Key = <value>`, `$v['Key'] = <value>` or `$v.Add(key, value)`: the range starts
    /// at the member; the earlier value (a hashtable) with that entry set.
    Member,
}

/// The script's own variable definitions, looked up by name (lowercase) and position.
pub trait Definitions {
    /// `$name`'s last definition that starts before char offset `before`.
    fn definition(&self, name: &str, before: usize) -> Option<Definition>;
}

/// No definitions: only constants and automatic variables.
pub struct NoDefinitions;

impl Definitions for NoDefinitions {
    fn definition(&self, _: &str, _: usize) -> Option<Definition> {
        None
    }
}

/// Code an evaluation found would run (`.Invoke()` on a script block, `InvokeScript`,
/// a pipeline into `iex`), with the layers peeled to reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct Runs {
    pub code: String,
    pub layers: Vec<&'static str>,
}

/// A value and the layers peeled to get it.
pub type Evaluated = (Value, Vec<&'static str>);

/// Evaluates expressions of one piece of code.
pub struct Evaluator<'a> {
    /// The code being read; positions are byte offsets into it.
    code: &'a str,
    defs: &'a dyn Definitions,
    budget: &'a mut Budget,
    depth: usize,
    /// Layers peeled by the current evaluation.
    layers: Vec<&'static str>,
    /// Code found to run.
    runs: Vec<Runs>,
    /// `$_`, block-local assignments: innermost last.
    locals: Vec<(String, Value)>,
    /// Variables already evaluated at a definition: (name, definition start).
    memo: HashMap<(String, usize), Option<Evaluated>>,
}

impl<'a> Evaluator<'a> {
    /// An evaluator for `code` (whose variables `defs` knows), drawing on `budget`.
    pub fn new(code: &'a str, defs: &'a dyn Definitions, budget: &'a mut Budget) -> Self {
        Evaluator {
            code,
            defs,
            budget,
            depth: 0,
            layers: Vec::new(),
            runs: Vec::new(),
            locals: Vec::new(),
            memo: HashMap::new(),
        }
    }

    /// The value of `code[start..end]` (an expression or pipeline), with variables as
    /// defined before `start`; and the layers peeled to get it.
    pub fn eval_range(&mut self, start: usize, end: usize) -> Option<Evaluated> {
        let chars = self.chars_of(start, end)?;
        self.eval_chars(&chars, start)
    }

    /// The characters of `code[start..end]` (byte offsets at character boundaries), the
    /// copy paid for in steps.
    fn chars_of(&mut self, start: usize, end: usize) -> Option<Vec<char>> {
        let text = self.code.get(start..end.min(self.code.len()))?;
        self.budget
            .step(text.len() / 16 + 1)
            .then(|| text.chars().collect())
    }

    /// The value of one pipeline at `code[start..end]`, as it is (an empty array stays one,
    /// where a statement's output would be nothing).
    pub fn eval_pipeline(&mut self, start: usize, end: usize) -> Option<Evaluated> {
        let chars = self.chars_of(start, end)?;
        let outer = std::mem::take(&mut self.layers);
        let v = parse::Parser::new(&chars, start).whole_pipeline(self);
        let layers = std::mem::replace(&mut self.layers, outer);
        v.map(|v| (v, layers))
    }

    /// The value of `src` read as a command argument (bare words are strings, commas make
    /// an array), with variables as defined before `at`.
    pub fn eval_argument(&mut self, src: &str, at: usize) -> Option<Evaluated> {
        let chars: Vec<char> = src.chars().collect();
        let outer = std::mem::take(&mut self.layers);
        let mut p = parse::Parser::new(&chars, at);
        let v = p.whole_argument(self);
        let layers = std::mem::replace(&mut self.layers, outer);
        v.map(|v| (v, layers))
    }

    /// The value of the operand starting at `start` (a primary expression with its members
    /// and indexes, as `&` takes it), read no further than `limit`; and where it ends.
    pub fn eval_operand(&mut self, start: usize, limit: usize) -> Option<(Evaluated, usize)> {
        let chars = self.chars_of(start, limit)?;
        let outer = std::mem::take(&mut self.layers);
        let mut p = parse::Parser::new(&chars, start);
        let v = p.operand(self);
        let layers = std::mem::replace(&mut self.layers, outer);
        let bytes: usize = chars[..p.offset().min(chars.len())]
            .iter()
            .map(|c| c.len_utf8())
            .sum();
        v.map(|v| ((v, layers), start + bytes))
    }

    /// The value of `src` (text not in the code), with variables as defined before `at`.
    pub fn eval_text(&mut self, src: &str, at: usize) -> Option<Evaluated> {
        let chars: Vec<char> = src.chars().collect();
        self.eval_chars(&chars, at)
    }

    fn eval_chars(&mut self, src: &[char], at: usize) -> Option<Evaluated> {
        let outer = std::mem::take(&mut self.layers);
        let v = parse::Parser::new(src, at).statements_value(self);
        let layers = std::mem::replace(&mut self.layers, outer);
        v.map(|v| (v, layers))
    }

    /// The code found to run so far (taken).
    pub fn take_runs(&mut self) -> Vec<Runs> {
        std::mem::take(&mut self.runs)
    }

    /// Notes a peeled layer once per evaluation.
    fn layer(&mut self, name: &'static str) {
        if !self.layers.contains(&name) && self.layers.len() < MAX_DEPTH {
            self.layers.push(name);
        }
    }

    /// Notes code that would run.
    fn runs(&mut self, code: String, via: &'static str) {
        let mut layers = self.layers.clone();
        layers.push(via);
        if self.budget.produce(code.len()) && self.runs.len() < MAX_DEPTH {
            self.runs.push(Runs { code, layers });
        }
    }

    /// One step of work; false when the budget is spent.
    fn step(&mut self) -> bool {
        self.budget.step(1)
    }

    /// Accounts for decoded output (`produce` too).
    fn decoded(&mut self, n: usize) -> Option<()> {
        (self.budget.step(n / 64 + 1) && self.budget.decode(n)).then_some(())
    }

    /// Accounts for a produced string or byte array.
    fn produce(&mut self, n: usize) -> bool {
        self.budget.step(n / 64 + 1) && self.budget.produce(n)
    }

    /// A nested evaluation (a group, a variable's definition, a block body) within depth.
    fn nest<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        if self.depth >= self.budget.max_depth || !self.step() {
            return None;
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    /// `$name` as seen from char offset `at` of the code.
    fn variable(&mut self, name: &str, at: usize) -> Option<Value> {
        let key = name.to_ascii_lowercase();
        let key = key
            .strip_prefix("script:")
            .or_else(|| key.strip_prefix("global:"))
            .or_else(|| key.strip_prefix("local:"))
            .or_else(|| key.strip_prefix("private:"))
            .unwrap_or(&key)
            .to_string();
        if let Some((_, v)) = self.locals.iter().rev().find(|(n, _)| *n == key) {
            return Some(v.clone());
        }
        if let Some(d) = self.defs.definition(&key, at) {
            return self.defined(&key, d);
        }
        commands::automatic_variable(&key)
    }

    /// The value a definition gives a variable (each definition evaluated once).
    fn defined(&mut self, key: &str, d: Definition) -> Option<Value> {
        let memo_key = (key.to_string(), d.start);
        if let Some(hit) = self.memo.get(&memo_key).cloned() {
            let (v, layers) = hit?;
            self.budget.step(1 + dotnet::size_of(&v) / 64);
            layers.into_iter().for_each(|l| self.layer(l));
            return Some(v);
        }
        self.memo.insert(memo_key.clone(), None);
        let outer = std::mem::take(&mut self.layers);
        let saved_locals = std::mem::take(&mut self.locals);
        let v = self.nest(|ev| {
            let src = ev.chars_of(d.start, d.end)?;
            match d.kind {
                Change::Reverse => dotnet::reversed(ev.variable(key, d.start)?),
                Change::Assign => parse::Parser::new(&src, d.start).statements_value(ev),
                Change::Argument => parse::Parser::new(&src, d.start).whole_argument(ev),
                Change::Member => {
                    let Value::Hash(mut entries) = ev.variable(key, d.start)? else {
                        return None;
                    };
                    let (k, v) = parse::Parser::new(&src, d.start).member_assignment(ev)?;
                    entries.retain(|(e, _)| !e.eq_ignore_ascii_case(&k));
                    entries.push((k, v));
                    Some(Value::Hash(entries))
                }
            }
        });
        self.locals = saved_locals;
        let layers = std::mem::replace(&mut self.layers, outer);
        layers.iter().for_each(|l| self.layer(l));
        self.memo
            .insert(memo_key, v.clone().map(|v| (v, layers.clone())));
        v
    }
}

/// A value as PowerShell turns it into a string (arrays joined with spaces).
pub fn to_text(v: &Value) -> String {
    dotnet::to_str(v)
}

#[cfg(test)]
mod tests;
