//! Which code of a piece never runs, as PowerShell's control flow decides from the script's
//! own constants: the rest of a block after an unconditional `throw`, `return`, `exit`,
//! `break` or `continue` (a `trap { continue }` makes `throw` resume); the script after a
//! call to a function that exits; `if`/`elseif`/`else`, `while`, `for`, `foreach` and
//! `switch` on constant conditions; `ForEach-Object` over nothing; and script blocks kept in
//! a hashtable or array, which run only when the script picks one (read then on its own).

use super::constant::{truthy, Budget, Evaluator, Value};
use super::pwsh::{command_key, next_code, Reading, Sep, Tok, Token};
use std::collections::HashSet;

/// Token ranges `[from, to)` that never run.
pub type DeadRanges = Vec<(usize, usize)>;

/// The dead ranges of one piece, read after the reader's pass (so every definition is
/// known, each used as of its position).
pub fn dead_code(
    text: &str,
    tokens: &[Token],
    close: &[usize],
    reading: &Reading,
    budget: &mut Budget,
) -> DeadRanges {
    let mut f = Flow {
        text,
        tokens,
        close,
        reading,
        budget,
        dead: Vec::new(),
        exiting: HashSet::new(),
        throwing: HashSet::new(),
        trap_continues: trap_continues(tokens, close),
        stop_on_error: false,
        certain: HashSet::new(),
    };
    f.walk();
    f.dead
}

/// Whether the code has a `trap { ... continue ... }`: a `throw` then resumes after itself.
fn trap_continues(tokens: &[Token], close: &[usize]) -> bool {
    (0..tokens.len()).any(|i| {
        is_word(tokens, i, "trap")
            && matches!(tokens.get(i + 1).map(|t| &t.tok), Some(Tok::OpenBlock))
            && (i + 2..close[i + 1].min(tokens.len())).any(|k| is_word(tokens, k, "continue"))
    })
}

/// `-ErrorAction` or one of its prefixes and its alias `-EA`.
fn is_error_action(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "ea" || (n.len() >= 6 && "erroraction".starts_with(&n))
}

/// Text no numeric conversion accepts: not blank, and not a single digit in it.
fn no_number(text: &str) -> bool {
    !text.trim().is_empty() && !text.bytes().any(|b| b.is_ascii_digit())
}

/// What follows a numeric cast at the start of `word` (`[int]abc` -> `abc`).
fn numeric_cast_prefix(word: &str) -> Option<&str> {
    let end = word.find(']')? + 1;
    is_numeric_cast(&word[..end]).then(|| &word[end..])
}

/// A cast to a numeric type (`[int]`, `[long]`, `[double]`, ...).
fn is_numeric_cast(word: &str) -> bool {
    let Some(t) = word.strip_prefix('[').and_then(|w| w.strip_suffix(']')) else {
        return false;
    };
    let t = t.trim().to_ascii_lowercase();
    let t = t.strip_prefix("system.").unwrap_or(&t);
    matches!(
        t,
        "int"
            | "int16"
            | "int32"
            | "int64"
            | "long"
            | "short"
            | "byte"
            | "sbyte"
            | "uint16"
            | "uint32"
            | "uint64"
            | "double"
            | "single"
            | "float"
            | "decimal"
    )
}

fn is_word(tokens: &[Token], i: usize, w: &str) -> bool {
    matches!(tokens.get(i).map(|t| &t.tok), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
}

/// What an open token opened.
#[derive(Clone, PartialEq)]
enum Group {
    Paren,
    Block,
    /// A function's body: its name.
    Function(String),
}

struct Flow<'a> {
    text: &'a str,
    tokens: &'a [Token],
    close: &'a [usize],
    reading: &'a Reading,
    budget: &'a mut Budget,
    dead: DeadRanges,
    /// Functions whose body exits unconditionally.
    exiting: HashSet<String>,
    /// Functions whose body throws unconditionally (no `try` around the `throw`).
    throwing: HashSet<String>,
    trap_continues: bool,
    /// `$ErrorActionPreference = 'Stop'` was set at script level before: errors end the
    /// script.
    stop_on_error: bool,
    /// Statement blocks that run whenever the code around them runs (`try`, `finally`, the
    /// branch a constant condition takes): an exit inside one leaves the enclosing scope.
    certain: HashSet<usize>,
}

impl Flow<'_> {
    fn tok(&self, i: usize) -> Option<&Tok> {
        self.tokens.get(i).map(|t| &t.tok)
    }

    fn word(&self, i: usize) -> Option<String> {
        match self.tok(i) {
            Some(Tok::Word(w)) => Some(command_key(w)),
            _ => None,
        }
    }

    /// Whether token `i` starts a statement.
    fn statement_start(&self, i: usize) -> bool {
        match i.checked_sub(1).and_then(|p| self.tok(p)) {
            None => true,
            Some(Tok::Sep(s)) => *s != Sep::Pipe,
            Some(Tok::OpenBlock) => true,
            _ => false,
        }
    }

    /// Whether the block opened at token `open` is a `try` block.
    fn is_try_block(&self, open: usize) -> bool {
        open.checked_sub(1)
            .and_then(|k| self.word(k))
            .is_some_and(|w| w == "try")
    }

    /// The next token after `i` that is not a newline.
    fn next_code(&self, i: usize) -> usize {
        next_code(self.tokens, i)
    }

    /// The constant truth of the group at token `open` (`( cond )`), when known.
    fn truth(&mut self, open: usize) -> Option<bool> {
        self.truth_value(open).map(|v| truthy(&v))
    }

    /// The value of tokens `from..to` (char range), when constant.
    fn value(&mut self, from: usize, to: usize) -> Option<Value> {
        let s = self.tokens.get(from)?.start;
        let e = self.tokens.get(to.checked_sub(1)?)?.end;
        if e <= s {
            return None;
        }
        let mut ev = Evaluator::new(self.text, self.reading, self.budget);
        ev.eval_pipeline(s, e).map(|(v, _)| v)
    }

    /// The char span of the group opened at token `open`.
    fn span(&self, open: usize) -> Option<(usize, usize)> {
        let s = self.tokens.get(open)?.start;
        let e = self.tokens.get(self.close[open])?.end;
        Some((s, e))
    }

    /// The whole block opened at `open` never runs.
    fn kill_block(&mut self, open: usize) {
        if matches!(self.tok(open), Some(Tok::OpenBlock)) {
            self.dead.push((open, self.close[open] + 1));
        }
    }

    fn walk(&mut self) {
        let mut stack: Vec<(usize, Group)> = Vec::new();
        for i in 0..self.tokens.len() {
            match self.tok(i) {
                Some(Tok::Open) => stack.push((i, Group::Paren)),
                Some(Tok::OpenBlock) => {
                    let prev = i.checked_sub(1).and_then(|k| self.word(k));
                    if matches!(prev.as_deref(), Some("try" | "finally")) {
                        self.certain.insert(i);
                    }
                    let function = i
                        .checked_sub(2)
                        .and_then(|k| self.word(k))
                        .filter(|k| matches!(k.as_str(), "function" | "filter"))
                        .and_then(|_| self.word(i - 1));
                    stack.push((i, function.map_or(Group::Block, Group::Function)));
                }
                Some(Tok::Close) => {
                    stack.pop();
                }
                Some(Tok::Word(_)) if self.statement_start(i) => self.statement(i, &stack),
                Some(Tok::Assign) => self.assignment(i, &stack),
                Some(Tok::Word(_)) => self.pipeline_stage(i),
                _ => {}
            }
        }
    }

    /// A statement starting with a word at token `i`, inside `stack`.
    fn statement(&mut self, i: usize, stack: &[(usize, Group)]) {
        let Some(key) = self.word(i) else { return };
        let end = self.tokens.len();
        let block = stack.iter().rev().find(|(_, g)| *g != Group::Paren);
        match key.as_str() {
            "throw" if self.trap_continues => {}
            "throw" | "return" | "exit" => self.leave(i, &key, stack),
            "write-error" if !self.trap_continues && self.stops(i) => self.leave(i, "throw", stack),
            "break" | "continue" => match block {
                Some((open, _)) => self.dead.push((i + 1, self.close[*open])),
                // outside any loop, at the top of the script: the script stops
                None => self.dead.push((i + 1, end)),
            },
            "if" => self.if_chain(i),
            "while" => {
                let cond = i + 1;
                if matches!(self.tok(cond), Some(Tok::Open)) && self.truth(cond) == Some(false) {
                    let body = self.next_code(self.close[cond]);
                    self.kill_block(body);
                }
            }
            "for" => self.for_loop(i),
            "foreach" => self.foreach_loop(i),
            "switch" => self.switch(i),
            // a call of a function that surely exits (or throws) does so here too
            name if self.exiting.contains(name) => self.leave(i, "exit", stack),
            name if self.throwing.contains(name) && !self.trap_continues => {
                self.leave(i, "throw", stack)
            }
            _ => {}
        }
    }

    /// Whether the error the statement at token `i` writes is terminating: an
    /// `-ErrorAction Stop` (`-EA`) of its own, or the script's preference.
    fn stops(&self, i: usize) -> bool {
        let mut k = i + 1;
        while let Some(t) = self.tok(k) {
            match t {
                Tok::Sep(_) | Tok::Close => break,
                Tok::Param(p) if is_error_action(&p.name) => {
                    let value = match &p.value {
                        Some(v) => Some(v.to_string()),
                        None => self.literal(k + 1),
                    };
                    return value.is_some_and(|v| v.eq_ignore_ascii_case("stop"));
                }
                _ => k += 1,
            }
        }
        self.stop_on_error
    }

    /// Whether a value ends before token `k` (a separator, a close or the end).
    fn value_ends(&self, k: usize) -> bool {
        matches!(self.tok(k), None | Some(Tok::Sep(_) | Tok::Close))
    }

    /// The text of a bare word or a plain string at token `i`.
    fn literal(&self, i: usize) -> Option<String> {
        match self.tok(i)? {
            Tok::Word(w) | Tok::Str { text: w, .. } => Some(w.to_string()),
            _ => None,
        }
    }

    /// An assignment at token `i`: `$ErrorActionPreference = 'Stop'` at script level makes
    /// later errors end the script; inside `try`, a constant numeric cast of a string with
    /// no digit at all (`$n = [int]'abc'`) throws, so the rest of the `try` never runs.
    fn assignment(&mut self, i: usize, stack: &[(usize, Group)]) {
        let target = i.checked_sub(1).and_then(|k| self.tok(k));
        if let Some(Tok::Var(v)) = target {
            if v.eq_ignore_ascii_case("erroractionpreference")
                && stack.is_empty()
                && self.value_ends(i + 2)
            {
                self.stop_on_error = self
                    .literal(i + 1)
                    .is_some_and(|v| v.eq_ignore_ascii_case("stop"));
            }
        }
        let in_try = stack
            .iter()
            .rev()
            .find(|(_, g)| *g != Group::Paren)
            .is_some_and(|(open, _)| self.is_try_block(*open));
        // the reader keeps `[int]'abc'` as one word, quotes removed
        let failing = match (self.tok(i + 1), self.tok(i + 2)) {
            (Some(Tok::Word(w)), Some(Tok::Str { text, .. })) if is_numeric_cast(w) => {
                no_number(text) && self.value_ends(i + 3)
            }
            (Some(Tok::Word(w)), _) => {
                numeric_cast_prefix(w).is_some_and(no_number) && self.value_ends(i + 2)
            }
            _ => false,
        };
        if in_try && failing && !self.trap_continues {
            self.leave(i, "throw", stack);
        }
    }

    /// `throw`, `return` or `exit` at token `i`: the rest of each enclosing block never
    /// runs, outwards as long as the block surely runs (an `if` branch is no scope of its
    /// own), up to the function (whose callers an `exit` ends too), a `try` (for a
    /// `throw`), or the end of the script.
    fn leave(&mut self, i: usize, key: &str, stack: &[(usize, Group)]) {
        for (open, g) in stack.iter().rev() {
            if *g == Group::Paren {
                continue;
            }
            self.dead.push((i + 1, self.close[*open]));
            if let Group::Function(name) = g {
                match key {
                    "exit" => self.exiting.insert(command_key(name)),
                    "throw" => self.throwing.insert(command_key(name)),
                    _ => false,
                };
                return;
            }
            let in_try = self.is_try_block(*open);
            if (key == "throw" && in_try) || !self.certain.contains(open) {
                return;
            }
        }
        self.dead.push((i + 1, self.tokens.len()));
    }

    /// `if (c) {..} elseif (c) {..} else {..}`: branches after a constant true condition,
    /// and those of constant false conditions, never run. Stops at the first condition
    /// that is not constant.
    fn if_chain(&mut self, at: usize) {
        let mut cond = at + 1;
        let mut taken = false;
        loop {
            if !matches!(self.tok(cond), Some(Tok::Open)) {
                return;
            }
            let body = self.next_code(self.close[cond]);
            if !matches!(self.tok(body), Some(Tok::OpenBlock)) {
                return;
            }
            if taken {
                self.kill_block(body);
            } else {
                match self.truth(cond) {
                    Some(true) => {
                        taken = true;
                        self.certain.insert(body);
                    }
                    Some(false) => self.kill_block(body),
                    None => return,
                }
            }
            let next = self.next_code(self.close[body]);
            match self.word(next).as_deref() {
                Some("elseif") => cond = next + 1,
                Some("else") => {
                    let body = self.next_code(next);
                    if taken {
                        self.kill_block(body);
                    } else {
                        // every condition before was constant and false
                        self.certain.insert(body);
                    }
                    return;
                }
                _ => return,
            }
        }
    }

    /// `for (init; cond; step) {..}` with a condition false from the start.
    fn for_loop(&mut self, at: usize) {
        let open = at + 1;
        if !matches!(self.tok(open), Some(Tok::Open)) {
            return;
        }
        let inner: Vec<usize> = (open + 1..self.close[open])
            .filter(|&k| matches!(self.tok(k), Some(Tok::Sep(Sep::Semicolon))))
            .collect();
        let [first, second, ..] = inner[..] else {
            return;
        };
        let body = self.next_code(self.close[open]);
        if let Some(v) = self.value(first + 1, second) {
            if !truthy(&v) {
                self.kill_block(body);
            }
        }
    }

    /// `foreach ($x in <collection>) {..}` over nothing.
    fn foreach_loop(&mut self, at: usize) {
        let open = at + 1;
        if !matches!(self.tok(open), Some(Tok::Open)) {
            return;
        }
        let Some(in_at) = (open + 1..self.close[open]).find(|&k| is_word(self.tokens, k, "in"))
        else {
            return;
        };
        let body = self.next_code(self.close[open]);
        if let Some(v) = self.value(in_at + 1, self.close[open]) {
            if is_empty(&v) {
                self.kill_block(body);
            }
        }
    }

    /// `switch (value) { label {..} ... default {..} }` on a constant value with constant
    /// labels: the cases that do not match never run (nor `default` when one does).
    fn switch(&mut self, at: usize) {
        let open = at + 1;
        if !matches!(self.tok(open), Some(Tok::Open)) {
            return;
        }
        let body = self.next_code(self.close[open]);
        if !matches!(self.tok(body), Some(Tok::OpenBlock)) {
            return;
        }
        let Some(value) = self.truth_value(open) else {
            return;
        };
        let subjects: Vec<String> = match &value {
            Value::Array(items) => items.iter().map(super::constant::to_text).collect(),
            one => vec![super::constant::to_text(one)],
        };
        let mut cases: Vec<(Option<String>, usize)> = Vec::new();
        let mut k = body + 1;
        while k < self.close[body] {
            let label = match self.tok(k) {
                Some(Tok::Sep(_)) => {
                    k += 1;
                    continue;
                }
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("default") => None,
                Some(Tok::Word(w)) => Some(w.to_string()),
                Some(Tok::Str { text, expandable }) if !(*expandable && text.contains('$')) => {
                    Some(text.to_string())
                }
                _ => return,
            };
            let block = self.next_code(k);
            if !matches!(self.tok(block), Some(Tok::OpenBlock)) {
                return;
            }
            cases.push((label, block));
            k = self.close[block] + 1;
        }
        // the switch's own body runs whenever the switch does
        self.certain.insert(body);
        let matches = |l: &str| subjects.iter().any(|s| s.eq_ignore_ascii_case(l));
        let any = cases.iter().any(|(l, _)| l.as_deref().is_some_and(matches));
        for (label, block) in cases {
            let runs = match label {
                Some(l) => matches(&l),
                None => !any,
            };
            if runs {
                self.certain.insert(block);
            } else {
                self.kill_block(block);
            }
        }
    }

    /// The value of the group at `open`, when constant.
    fn truth_value(&mut self, open: usize) -> Option<Value> {
        let (s, e) = self.span(open)?;
        let mut ev = Evaluator::new(self.text, self.reading, self.budget);
        ev.eval_range(s, e).map(|(v, _)| v)
    }

    /// `<empty> | ForEach-Object { .. }`: the block never runs.
    fn pipeline_stage(&mut self, i: usize) {
        let is_foreach = self
            .word(i)
            .is_some_and(|k| matches!(k.as_str(), "foreach-object" | "%" | "foreach"));
        let piped = matches!(
            i.checked_sub(1).and_then(|p| self.tok(p)),
            Some(Tok::Sep(Sep::Pipe))
        );
        if !is_foreach || !piped || !matches!(self.tok(i + 1), Some(Tok::OpenBlock)) {
            return;
        }
        let pipe = i - 1;
        let start = self.stage_start(pipe);
        if let Some(v) = self.value(start, pipe) {
            if matches!(&v, Value::Array(items) if items.is_empty()) {
                self.kill_block(i + 1);
            }
        }
    }

    /// The first token of the pipeline stage that ends at token `end` (exclusive): back
    /// over whole groups to a separator or an unmatched open.
    fn stage_start(&self, end: usize) -> usize {
        let mut depth = 0usize;
        let mut k = end;
        while k > 0 {
            match self.tok(k - 1) {
                Some(Tok::Close) => depth += 1,
                Some(Tok::Open | Tok::OpenBlock) if depth > 0 => depth -= 1,
                Some(Tok::Open | Tok::OpenBlock | Tok::Sep(_)) if depth == 0 => return k,
                _ => {}
            }
            k -= 1;
        }
        k
    }
}

/// A collection `foreach` runs zero times over.
fn is_empty(v: &Value) -> bool {
    matches!(v, Value::Null) || matches!(v, Value::Array(items) if items.is_empty())
}
