//! Reads PowerShell the way PowerShell does, as far as `mode extended` needs: a linear,
//! non-recursive tokenizer (comments, strings and here-strings, backtick escapes and line
//! continuations, statement separators, groups), a command finder, and the parameter
//! binding of `Enter-PSSession` (prefixes, aliases, `-Name:value`, dash look-alikes,
//! positional ComputerName). Code hidden in `Invoke-Expression` strings, `powershell
//! -Command` / `-EncodedCommand` arguments and `$( )` inside double-quoted strings is
//! queued and read the same way, a bounded number of times.

use crate::detect::constant::{self, Budget, Change, Definition, Definitions, Evaluator, Value};
mod lexer;
mod nest;

pub use lexer::{next_code, tokenize, Lexed, Sep, Tok, Token};

use crate::detect::flow;
use base64::Engine;
use nest::Nest;
use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};

/// `s` starts with the ASCII `prefix`, ignoring ASCII case (no lowercase copy: the reader
/// asks this of every word).
fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// An argument of a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Param {
        name: String,
        value: Option<String>,
    },
    Literal(String),
    Variable(String),
    /// A parenthesised or other expression, with its source text.
    Expr(String),
}

/// One command invocation found in the code.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// The command name as written (module qualifier and backticks removed), or for the
    /// call operator the name it resolves to when that is a constant.
    pub name: String,
    pub args: Vec<Arg>,
    /// Whether it receives pipeline input (it follows a `|`).
    pub piped: bool,
    /// The invocation before it in its pipeline, if that one was read.
    pub piped_from: Option<usize>,
    /// Invoked with `&` or `.`.
    pub call_operator: bool,
    /// Written module-qualified (`Microsoft.PowerShell.Core\Enter-PSSession`).
    pub qualified: bool,
    /// `$var = <this>`: the variable it is assigned to.
    pub assigned_to: Option<String>,
    /// Index of its first token.
    pub token: usize,
    /// Char offset where it starts.
    pub start: usize,
    /// Its source text.
    pub text: String,
    /// The layers peeled to find the command's name (`format-operator`, `get-command`, ...).
    pub layers: Vec<&'static str>,
    /// The pipeline stage before it when that is an expression (char range): what a piped
    /// `Invoke-Expression` runs.
    pub piped_input: Option<(usize, usize)>,
}

/// What runs a deferred piece of code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// `function NAME { }`: runs when NAME is called.
    Function(String),
    /// `$v = { }`: runs when `& $v`, `. $v` or `$v.Invoke()` runs.
    Variable(String),
    /// A block kept in a hashtable or array (`$v = @{ a = { } }`): runs only when the
    /// script picks it, and is then read as code of its own.
    Selected,
}

/// A piece of code (token range) that runs only when its trigger fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferred {
    pub from: usize,
    pub to: usize,
    pub trigger: Trigger,
    /// A function's declared parameters, in order: name (lowercase, no `$`) and whether
    /// it is a `[switch]`.
    pub params: Vec<(String, bool)>,
}

/// A variable's value, as far as a constant reading tells.
#[derive(Debug, Clone, PartialEq)]
pub enum Assigned {
    Literal(String),
    Expr(String),
    Command(usize),
}

/// Everything read from one piece of code.
#[derive(Debug, Default)]
pub struct Reading {
    pub invocations: Vec<Invocation>,
    /// (variable, token index, value), in order.
    pub assignments: Vec<(String, usize, Assigned)>,
    pub deferred: Vec<Deferred>,
    /// Names called as commands, and `$variables` invoked, anywhere.
    pub calls: std::collections::HashSet<String>,
    /// Token ranges `[from, to)` that never run (see [`flow`](crate::detect::flow)).
    pub dead: Vec<(usize, usize)>,
    /// Code a call operator runs (a script block built from constants), with its layers
    /// and the token of the call.
    pub code_strings: Vec<(String, Vec<&'static str>, usize)>,
    /// Every `$v = ...` (and `[array]::Reverse($v)`) by variable (lowercase), in source
    /// order: the source range of its value, for constant evaluation.
    pub definitions: std::collections::HashMap<String, Vec<Definition>>,
    /// Statements that are expressions and may run code (`.Invoke()`, `InvokeScript`):
    /// first token and char range.
    pub expression_statements: Vec<(usize, usize, usize)>,
    /// Loops whose variable takes each item of a collection in turn.
    pub loops: Vec<Loop>,
}

/// `foreach ($v in <items>) { ... }`, or `<items> | ForEach-Object { ... $_ ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loop {
    /// The loop variable (lowercase, no `$`): `_` for ForEach-Object.
    pub var: String,
    /// The body's tokens (its `{` and `}`).
    pub from: usize,
    pub to: usize,
    /// The items' source (byte range).
    pub items: (usize, usize),
}

impl Definitions for Reading {
    fn definition(&self, name: &str, before: usize) -> Option<Definition> {
        let defs = self.definitions.get(name)?;
        let k = defs.partition_point(|d| d.start < before);
        k.checked_sub(1).map(|k| defs[k])
    }
}

impl Reading {
    fn define(&mut self, var: String, d: Definition) {
        self.definitions.entry(var).or_default().push(d);
    }
}

/// Reads the commands `interesting` accepts (nested groups included), assignments,
/// function and script-block bodies, and dead code. Linear: each group's end is found
/// once, and an invocation's arguments skip over nested groups in one step. Names built
/// at run time (`& ('{1}{0}' -f ...)`) are evaluated as constants, within `budget`.
pub fn read(
    text: &str,
    tokens: &[Token],
    interesting: &dyn Fn(&str) -> bool,
    budget: &mut Budget,
) -> Reading {
    let mut reader = Reader {
        text,
        tokens,
        close: group_ends(tokens),
        interesting,
        budget,
        r: Reading::default(),
        expect_cmd: true,
        piped: false,
        depth: 0,
        pending_assign: None,
        pipeline_prev: None,
        stage_start: 0,
        prev_stage: None,
        runs_code_at: words_that_run_code(text),
        stage_stack: Vec::new(),
        param_close: None,
    };
    for i in 0..tokens.len() {
        if reader.expect_cmd && !reader.piped {
            reader.note_expression_statement(i);
        }
        if let Some(command) = reader.step(i) {
            reader.record(i, command);
        }
    }
    let dead = flow::dead_code(text, tokens, &reader.close, &reader.r, reader.budget);
    reader.r.dead = dead;
    reader.r
}

/// Most enclosing groups whose pipeline stage is remembered (deeper ones lose their
/// piped input, nothing else).
const MAX_GROUP_DEPTH: usize = 4096;

/// Where `invoke` and `create` (any case) start in the code: the expression statements
/// worth evaluating hold one. One pass, so checking each statement costs a binary search.
fn words_that_run_code(text: &str) -> Vec<usize> {
    let b = text.as_bytes();
    let word_at = |i: usize, w: &[u8]| {
        b.get(i..i + w.len())
            .is_some_and(|x| x.eq_ignore_ascii_case(w))
    };
    memchr::memchr2_iter(b'i', b'I', b)
        .chain(memchr::memchr2_iter(b'c', b'C', b))
        .filter(|&i| word_at(i, b"invoke") || word_at(i, b"create"))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}
/// For each opening token, the index of the token that closes it (`tokens.len()` when
/// unclosed).
fn group_ends(tokens: &[Token]) -> Vec<usize> {
    let mut close = vec![tokens.len(); tokens.len()];
    let mut stack = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        match t.tok {
            Tok::Open | Tok::OpenBlock => stack.push(i),
            Tok::Close => {
                if let Some(o) = stack.pop() {
                    close[o] = i;
                }
            }
            _ => {}
        }
    }
    close
}

/// A command found at a token: its name, its first argument token, whether it was
/// invoked with `&` or `.`, and the layers peeled to name it.
struct Found {
    name: String,
    from: usize,
    call_op: bool,
    layers: Vec<&'static str>,
}

/// The state of one left-to-right pass of [`read`] over the tokens.
struct Reader<'a> {
    text: &'a str,
    tokens: &'a [Token],
    close: Vec<usize>,
    interesting: &'a dyn Fn(&str) -> bool,
    budget: &'a mut Budget,
    r: Reading,
    /// The next word is in command position.
    expect_cmd: bool,
    /// The current command follows a `|`.
    piped: bool,
    /// Nesting depth of groups and blocks.
    depth: usize,
    /// `$v =` waiting for the command or block that gives its value.
    pending_assign: Option<String>,
    /// The invocation before the current one in this pipeline.
    pipeline_prev: Option<usize>,
    /// First token of the current pipeline stage.
    stage_start: usize,
    /// The stage before the current one (token range), when the current one is piped.
    prev_stage: Option<(usize, usize)>,
    /// Where the words that run code (`invoke`, `create`) start, in order.
    runs_code_at: Vec<usize>,
    /// The stage state of the enclosing groups.
    stage_stack: Vec<(usize, Option<(usize, usize)>)>,
    /// Where the last `param(` block closes.
    param_close: Option<usize>,
}

impl Reader<'_> {
    fn text(&self, s: usize, e: usize) -> String {
        let n = self.text.len();
        self.text.get(s.min(n)..e.min(n)).unwrap_or("").to_string()
    }

    fn tok(&self, i: usize) -> Option<&Tok> {
        self.tokens.get(i).map(|t| &t.tok)
    }

    fn word(&self, i: usize) -> Option<&str> {
        match self.tok(i) {
            Some(Tok::Word(w)) => Some(w.as_str()),
            _ => None,
        }
    }

    /// The char offset where the token at or after `i` ends the statement it is in: the
    /// first separator (other than `|`) or unmatched close at this level.
    fn statement_end(&self, from: usize) -> usize {
        let mut j = from;
        let mut end = self.tokens.get(from).map_or(self.text.len(), |t| t.start);
        while j < self.tokens.len() {
            match self.tokens[j].tok {
                Tok::Open | Tok::OpenBlock => {
                    let k = self.close[j];
                    end = self.tokens.get(k).map_or(self.text.len(), |t| t.end);
                    j = k + 1;
                    continue;
                }
                Tok::Sep(Sep::Pipe) => {}
                Tok::Sep(_) | Tok::Close => break,
                _ => {}
            }
            end = self.tokens[j].end;
            j += 1;
        }
        end
    }

    /// A statement that is an expression (a variable, a type, a group) and may run code:
    /// kept for constant evaluation (`[scriptblock]::Create(..).Invoke()`,
    /// `$ExecutionContext.InvokeCommand.InvokeScript(..)`).
    fn note_expression_statement(&mut self, i: usize) {
        let expression = match self.tok(i) {
            Some(Tok::Var(_) | Tok::Open) => true,
            Some(Tok::Word(w)) => w.starts_with('['),
            _ => false,
        };
        if !expression {
            return;
        }
        let (start, end) = (self.tokens[i].start, self.statement_end(i));
        let k = self.runs_code_at.partition_point(|&p| p < start);
        if self.runs_code_at.get(k).is_some_and(|&p| p < end) {
            self.r.expression_statements.push((i, start, end));
        }
    }

    /// `[array]::Reverse($v)` reverses `$v` in place: a definition of its own.
    fn note_reverse(&mut self, i: usize, w: &str) {
        if !w.eq_ignore_ascii_case("[array]::reverse") {
            return;
        }
        if let (Some(Tok::Open), Some(Tok::Var(v))) = (self.tok(i + 1), self.tok(i + 2)) {
            let at = self.tokens[i].start;
            let d = Definition {
                start: at,
                end: at,
                kind: Change::Reverse,
            };
            self.r.define(v.as_str().to_ascii_lowercase(), d);
        }
    }

    /// Updates the state for token `i`; the command it starts, if any.
    fn step(&mut self, i: usize) -> Option<Found> {
        match &self.tokens[i].tok {
            Tok::Sep(sp) => {
                self.expect_cmd = true;
                self.piped = *sp == Sep::Pipe;
                self.prev_stage = self.piped.then_some((self.stage_start, i));
                if !self.piped {
                    self.pipeline_prev = None;
                }
                self.stage_start = i + 1;
                self.pending_assign = None;
            }
            Tok::Open | Tok::OpenBlock => self.open(i),
            Tok::Close => {
                self.depth = self.depth.saturating_sub(1);
                // statements follow a param( ) block
                self.expect_cmd = self.param_close == Some(i);
                if let Some((start, prev)) = self.stage_stack.pop() {
                    self.stage_start = start;
                    self.prev_stage = prev;
                }
            }
            Tok::Assign => self.assign(i),
            Tok::Call if self.expect_cmd => return self.call_operator(i),
            Tok::Word(w) if self.expect_cmd && w == "." => return self.call_operator(i),
            Tok::Word(w) if self.expect_cmd && w.starts_with('[') => {
                let w = w.clone();
                self.note_reverse(i, &w);
                self.expect_cmd = false;
            }
            Tok::Word(w) if self.expect_cmd => return Some(self.command_word(i, w.to_string())),
            Tok::Var(v) => {
                // $v.Invoke() / $v.InvokeReturnAsIs() runs a script block
                if self
                    .word(i + 1)
                    .is_some_and(|w| starts_with_ignore_case(w, ".invoke"))
                {
                    self.r.calls.insert(format!("${}", v.to_ascii_lowercase()));
                }
                if self.expect_cmd {
                    self.note_hashtable_add(i);
                }
                self.expect_cmd = false;
            }
            _ => self.expect_cmd = false,
        }
        None
    }

    /// `(` or `{`: a new statement context; `$v = { ... }` defers the block to `$v`.
    fn open(&mut self, i: usize) {
        self.depth += 1;
        let after_param = i
            .checked_sub(1)
            .and_then(|p| self.word(p))
            .is_some_and(|w| w.eq_ignore_ascii_case("param"));
        if after_param && self.tokens[i].tok == Tok::Open {
            self.param_close = Some(self.close[i]);
        }
        self.expect_cmd = true;
        self.piped = false;
        self.pipeline_prev = None;
        if self.stage_stack.len() < MAX_GROUP_DEPTH {
            self.stage_stack.push((self.stage_start, self.prev_stage));
        }
        self.stage_start = i + 1;
        self.prev_stage = None;
        if let (Some(v), Tok::OpenBlock) = (self.pending_assign.take(), &self.tokens[i].tok) {
            // `${function:Name} = { ... }` defines a function
            let trigger = match v.strip_prefix("function:") {
                Some(f) => Trigger::Function(command_key(unscoped(f))),
                None => Trigger::Variable(v),
            };
            let params = self.param_block(i).map(|l| self.declared_params(l));
            self.r.deferred.push(Deferred {
                from: i,
                to: self.close[i],
                trigger,
                params: params.unwrap_or_default(),
            });
        }
    }

    /// The script blocks inside the hashtable or array opened at token `open` run only
    /// when the script picks one.
    fn defer_selected_blocks(&mut self, open: usize) {
        let end = self.close[open].min(self.tokens.len());
        let mut k = open + 1;
        while k < end {
            if self.tokens[k].tok == Tok::OpenBlock {
                self.r.deferred.push(Deferred {
                    from: k,
                    to: self.close[k],
                    trigger: Trigger::Selected,
                    params: Vec::new(),
                });
                k = self.close[k];
            }
            k += 1;
        }
    }

    /// `$v.Key = value` / `$v['Key'] = value` (at the `=`, token `i`): a definition that
    /// sets one entry of `$v`.
    fn note_member_assignment(&mut self, i: usize) {
        let (Some(var), Some(member)) = (i.checked_sub(2), i.checked_sub(1)) else {
            return;
        };
        let (Some(Tok::Var(v)), Some(Tok::Word(m))) = (self.tok(var), self.tok(member)) else {
            return;
        };
        if !(m.starts_with('.') || m.starts_with('['))
            || self.tokens[member].start != self.tokens[var].end
        {
            return;
        }
        let d = Definition {
            start: self.tokens[member].start,
            end: self.statement_end(i + 1),
            kind: Change::Member,
        };
        self.r.define(v.as_str().to_ascii_lowercase(), d);
    }

    /// A loop at token `i`: the `foreach ($v in ...)` statement, or `ForEach-Object` (`%`,
    /// `foreach`) with its block right after it, fed by the pipeline stage before.
    fn note_loop(&mut self, i: usize) {
        if self.piped {
            let block = self.next_code(i);
            let stage = self.prev_stage;
            if let (Some(Tok::OpenBlock), Some((s, e))) = (self.tok(block), stage) {
                let items = (self.tokens[s].start, self.tokens[e].start);
                let to = self.close[block];
                let var = "_".to_string();
                self.r.loops.push(Loop {
                    var,
                    from: block,
                    to,
                    items,
                });
            }
            return;
        }
        let (Some(Tok::Open), Some(Tok::Var(v))) = (self.tok(i + 1), self.tok(i + 2)) else {
            return;
        };
        let close = self.close[i + 1];
        let body = self.next_code(close);
        let is_in = self
            .word(i + 3)
            .is_some_and(|w| w.eq_ignore_ascii_case("in"));
        if !is_in || i + 4 >= close || self.tok(body) != Some(&Tok::OpenBlock) {
            return;
        }
        let items = (self.tokens[i + 4].start, self.tokens[close].start);
        let var = v.to_ascii_lowercase().to_string();
        let to = self.close[body];
        self.r.loops.push(Loop {
            var,
            from: body,
            to,
            items,
        });
    }

    /// `Set-Variable x value` (`sv`, `New-Variable`, `-Name`/`-Value` in any order) at
    /// token `i`: a definition of `$x` whose value is the argument's source.
    fn note_set_variable(&mut self, i: usize) {
        let (mut name, mut value) = (None, None);
        let mut k = i + 1;
        while k < self.tokens.len() {
            let slot = match &self.tokens[k].tok {
                Tok::Sep(_) | Tok::Close => break,
                Tok::Param(p) if p.value.is_some() => {
                    k += 1;
                    continue;
                }
                Tok::Param(p) => {
                    let n = p.name.to_ascii_lowercase().to_string();
                    k += 1;
                    match n.as_str() {
                        _ if "name".starts_with(n.as_str()) => Some(0),
                        _ if "value".starts_with(n.as_str()) => Some(1),
                        "force" | "passthru" | "whatif" | "confirm" => continue,
                        _ => None, // -Scope, -Option, -Description ...: skip their value
                    }
                }
                _ => [name.is_none(), value.is_none()]
                    .iter()
                    .position(|&free| free),
            };
            let end = self.argument_end(k);
            match slot {
                Some(0) => name = self.literal_text(k),
                Some(1) => value = Some((self.tokens[k].start, self.tokens[end].end)),
                _ => {}
            }
            k = end + 1;
        }
        if let (Some(n), Some((start, end))) = (name, value) {
            let d = Definition {
                start,
                end,
                kind: Change::Argument,
            };
            self.r.define(n.to_ascii_lowercase(), d);
        }
    }

    /// The last token of the command argument starting at token `k`: a group to its
    /// close, then members, indexes and calls written right after it.
    fn argument_end(&self, k: usize) -> usize {
        let last = self.tokens.len().saturating_sub(1);
        let mut end = match self.tok(k) {
            Some(Tok::Open | Tok::OpenBlock) => self.close[k].min(last),
            _ => k.min(last),
        };
        while let Some(t) = self.tokens.get(end + 1) {
            let attached = t.start == self.tokens[end].end;
            match &t.tok {
                Tok::Word(w) if attached && (w.starts_with('.') || w.starts_with('[')) => end += 1,
                Tok::Open if attached => end = self.close[end + 1].min(last),
                _ => break,
            }
        }
        end
    }

    /// The text of a bare word or a plain string at token `k`.
    fn literal_text(&self, k: usize) -> Option<String> {
        match self.tok(k)? {
            Tok::Word(w) => Some(w.to_string()),
            Tok::Str { text, expandable } if !expandable || !text.contains('$') => {
                Some(text.to_string())
            }
            _ => None,
        }
    }

    /// A statement `$v.Add(key, value)` at token `i`: a definition that adds one entry to
    /// the hashtable in `$v`.
    fn note_hashtable_add(&mut self, i: usize) {
        let (Some(Tok::Var(v)), Some(m), Some(Tok::Open)) =
            (self.tok(i), self.word(i + 1), self.tok(i + 2))
        else {
            return;
        };
        let adjacent = self.tokens[i + 1].start == self.tokens[i].end
            && self.tokens[i + 2].start == self.tokens[i + 1].end;
        if !adjacent || !m.eq_ignore_ascii_case(".add") {
            return;
        }
        let end = self.close[i + 2].min(self.tokens.len() - 1);
        let d = Definition {
            start: self.tokens[i + 1].start,
            end: self.tokens[end].end,
            kind: Change::Member,
        };
        self.r.define(v.as_str().to_ascii_lowercase(), d);
    }

    /// `$v = value`: its source range is kept for constant evaluation; a constant value is
    /// also recorded at once, anything else waits for the command or block that follows.
    fn assign(&mut self, i: usize) {
        self.expect_cmd = true;
        self.piped = false;
        self.note_member_assignment(i);
        let Some(Tok::Var(v)) = i.checked_sub(1).and_then(|p| self.tok(p)) else {
            return;
        };
        let v = v.as_str().to_ascii_lowercase();
        if let Some(first) = self.tokens.get(i + 1) {
            let d = Definition {
                start: first.start,
                end: self.statement_end(i + 1),
                kind: Change::Assign,
            };
            self.r.define(v.clone(), d);
            if self.text.as_bytes().get(first.start) == Some(&b'@') && first.tok == Tok::Open {
                self.defer_selected_blocks(i + 1);
            }
        }
        // a constant value ends the statement right after it
        let ends = matches!(self.tok(i + 2), None | Some(Tok::Sep(_)) | Some(Tok::Close));
        // ... and is not piped on
        let alone = ends && self.tok(i + 2) != Some(&Tok::Sep(Sep::Pipe));
        match self.tok(i + 1) {
            Some(Tok::Str { text, expandable }) if ends => {
                let val = if *expandable && text.contains('$') {
                    Assigned::Expr(text.to_string())
                } else {
                    Assigned::Literal(text.to_string())
                };
                self.r.assignments.push((v, i, val));
            }
            // `$me = hostname` runs the command: this computer's name
            Some(Tok::Word(w)) if alone && is_own_name_expr(w) => {
                self.r
                    .assignments
                    .push((v, i, Assigned::Expr(w.to_string())));
            }
            Some(Tok::Word(w)) if ends && !(self.interesting)(&command_key(w)) => {
                let val = Assigned::Literal(w.to_string());
                self.r.assignments.push((v, i, val));
            }
            // `$me = $env:COMPUTERNAME`: kept as written, for the local-name test
            Some(Tok::Var(x)) if alone => {
                let val = Assigned::Expr(format!("${x}"));
                self.r.assignments.push((v, i, val));
            }
            Some(Tok::Open) => {
                let e = self
                    .tokens
                    .get(self.close[i + 1])
                    .map_or(self.text.len(), |t| t.end);
                let val = Assigned::Expr(self.text(self.tokens[i + 1].start, e));
                self.r.assignments.push((v.clone(), i, val));
                self.pending_assign = Some(v);
            }
            _ => self.pending_assign = Some(v),
        }
    }

    /// `& X` or `. X`: X is what runs.
    fn call_operator(&mut self, i: usize) -> Option<Found> {
        if let Some(Tok::Var(v)) = self.tok(i + 1) {
            self.r.calls.insert(format!("${}", v.to_ascii_lowercase()));
        }
        self.expect_cmd = false;
        self.callee(i + 1)
    }

    /// What `& X` / `. X` calls: a word or string, or the constant value of a variable or
    /// group (a name, a command object, or a script block, whose code is kept to read).
    fn callee(&mut self, at: usize) -> Option<Found> {
        let found = |name: String, from: usize, layers: Vec<&'static str>| Found {
            name,
            from,
            call_op: true,
            layers,
        };
        match &self.tokens.get(at)?.tok {
            Tok::Word(w) => return Some(found(w.to_string(), at + 1, Vec::new())),
            Tok::Str { .. } | Tok::Var(_) | Tok::Open => {}
            _ => return None,
        }
        let start = self.tokens[at].start;
        let limit = self.statement_end(at);
        let mut ev = Evaluator::new(self.text, &self.r, self.budget);
        let operand = ev.eval_operand(start, limit);
        let runs = ev.take_runs();
        // the arguments start at the first token after the operand
        let next = match &operand {
            Some((_, end)) => (at + 1..self.tokens.len())
                .find(|&j| self.tokens[j].start >= *end)
                .unwrap_or(self.tokens.len()),
            None if self.tokens[at].tok == Tok::Open => self.close[at] + 1,
            None => at + 1,
        };
        let evaluated = operand.map(|(v, _)| v);
        self.r
            .code_strings
            .extend(runs.into_iter().map(|r| (r.code, r.layers, at)));
        let literal_block = |r: &Reading, v: &str| {
            r.definition(&v.to_ascii_lowercase(), start)
                .is_some_and(|d| self.text.as_bytes().get(d.start) == Some(&b'{'))
        };
        match (evaluated, &self.tokens[at].tok) {
            (Some((Value::Block(code), layers)), Tok::Var(v)) if !literal_block(&self.r, v) => {
                self.r.code_strings.push((code, layers, at));
                None
            }
            (Some((Value::Block(code), layers)), Tok::Open) => {
                self.r.code_strings.push((code, layers, at));
                None
            }
            (Some((Value::Str(n) | Value::Command(n), layers)), _) => Some(found(n, next, layers)),
            (Some((Value::Char(c), layers)), _) => Some(found(c.to_string(), next, layers)),
            (_, Tok::Var(v)) => Some(found(
                format!("${}", v.to_ascii_lowercase()),
                next,
                Vec::new(),
            )),
            _ => None,
        }
    }

    /// A word in command position: notes function definitions and top-level exits.
    fn command_word(&mut self, i: usize, w: String) -> Found {
        let key = command_key(&w);
        self.r.calls.insert(key.clone());
        if matches!(key.as_str(), "function" | "filter" | "workflow") {
            self.function_definition(i);
        }
        if matches!(key.as_str(), "set-variable" | "sv" | "new-variable" | "nv") {
            self.note_set_variable(i);
        }
        if matches!(key.as_str(), "foreach" | "foreach-object" | "%") {
            self.note_loop(i);
        }
        self.expect_cmd = false;
        Found {
            name: w,
            from: i + 1,
            call_op: false,
            layers: Vec::new(),
        }
    }

    /// `function NAME { param(...) ... }` or `function NAME (...) { ... }` at token `i`:
    /// its body runs when NAME is called, with the parameters it declares.
    fn function_definition(&mut self, i: usize) {
        let Some(name) = self
            .word(i + 1)
            .map(|w| unscoped(&command_key(w)).to_string())
        else {
            return;
        };
        let (body, list) = match self.tok(i + 2) {
            Some(Tok::OpenBlock) => (i + 2, self.param_block(i + 2)),
            Some(Tok::Open) => (self.next_code(self.close[i + 2]), Some(i + 2)),
            _ => return,
        };
        if self.tok(body) != Some(&Tok::OpenBlock) {
            return;
        }
        let params = list.map(|l| self.declared_params(l)).unwrap_or_default();
        self.r.deferred.push(Deferred {
            from: body,
            to: self.close[body],
            trigger: Trigger::Function(name),
            params,
        });
    }

    /// The `param(` list at the start of the body opened at token `body`, after any
    /// attributes (`[CmdletBinding()]`): the token of its `(`.
    fn param_block(&self, body: usize) -> Option<usize> {
        let mut k = self.next_code(body);
        for _ in 0..16 {
            let w = self.word(k)?;
            if w.eq_ignore_ascii_case("param") {
                return (self.tok(k + 1) == Some(&Tok::Open)).then_some(k + 1);
            }
            if !(w.starts_with('[') || w.starts_with(']')) {
                return None;
            }
            k = match self.tok(k + 1) {
                Some(Tok::Open) => self.next_code(self.close[k + 1]),
                _ => self.next_code(k),
            };
        }
        None
    }

    /// The next token after `i` that is not a newline.
    fn next_code(&self, i: usize) -> usize {
        next_code(self.tokens, i)
    }

    /// The parameters declared in the list opened at token `open` (`($a, [switch]$b =
    /// ...)`): each declaration's variable, skipping attributes' arguments and defaults.
    fn declared_params(&self, open: usize) -> Vec<(String, bool)> {
        let end = self.close[open].min(self.tokens.len());
        let mut params = Vec::new();
        let (mut declaring, mut switch) = (true, false);
        let mut k = open + 1;
        while k < end && params.len() < MAX_ARGS {
            match &self.tokens[k].tok {
                Tok::Open | Tok::OpenBlock => k = self.close[k],
                Tok::Var(v) if declaring => {
                    params.push((v.to_ascii_lowercase().to_string(), switch));
                    declaring = false;
                }
                Tok::Word(w) if declaring => {
                    let w = w.to_ascii_lowercase();
                    switch |= w.contains("[switch]");
                    // `[switch]$Force` reads as one word
                    let var = w.rfind(']').and_then(|e| w[e + 1..].strip_prefix('$'));
                    if let Some(v) = var.filter(|v| !v.is_empty()) {
                        params.push((v.to_string(), switch));
                        declaring = false;
                    }
                }
                Tok::Other if self.text.as_bytes().get(self.tokens[k].start) == Some(&b',') => {
                    (declaring, switch) = (true, false);
                }
                _ => {}
            }
            k += 1;
        }
        params
    }

    /// Keeps the invocation at token `i` when it is one `interesting` accepts.
    fn record(&mut self, i: usize, found: Found) {
        if !(self.interesting)(&command_key(&found.name)) {
            self.pipeline_prev = None;
            self.pending_assign = None;
            return;
        }
        let text = |s: usize, e: usize| self.text(s, e);
        let start = self.tokens[i].start;
        let (piped, call_op) = (self.piped, found.call_op);
        let mut inv = collect(
            &text,
            self.tokens,
            &self.close,
            start,
            found.from,
            found.name,
            piped,
            call_op,
        );
        inv.piped_from = if piped { self.pipeline_prev } else { None };
        inv.piped_input = self
            .prev_stage
            .filter(|_| piped)
            .and_then(|(s, e)| Some((self.tokens.get(s)?.start, self.tokens.get(e)?.start)));
        inv.assigned_to = self.pending_assign.take();
        inv.token = i;
        inv.layers = found.layers;
        let index = self.r.invocations.len();
        self.pipeline_prev = Some(index);
        if let Some(v) = &inv.assigned_to {
            self.r
                .assignments
                .push((v.clone(), i, Assigned::Command(index)));
        }
        self.r.invocations.push(inv);
    }
}

/// A command name as PowerShell resolves it: module qualifier dropped, any case.
pub fn command_key(name: &str) -> String {
    name.rsplit('\\').next().unwrap_or("").to_ascii_lowercase()
}

/// Most arguments read for one invocation (Enter-PSSession takes a handful).
const MAX_ARGS: usize = 256;

/// The arguments from token `from` to the end of the statement.
#[allow(clippy::too_many_arguments)]
fn collect(
    text: &dyn Fn(usize, usize) -> String,
    tokens: &[Token],
    close: &[usize],
    start: usize,
    from: usize,
    name: String,
    piped: bool,
    call_operator: bool,
) -> Invocation {
    let mut args = Vec::new();
    // where each argument starts, and whether a comma follows the last one
    let mut starts: Vec<usize> = Vec::new();
    let mut comma = false;
    let mut j = from;
    let mut end = tokens.get(from.saturating_sub(1)).map_or(start, |t| t.end);
    while j < tokens.len() && args.len() < MAX_ARGS {
        let t = &tokens[j];
        let before = args.len();
        // `.Member`, `[index]` or `(args)` right after an argument belong to it
        let postfix = match &t.tok {
            Tok::Word(w) => w.starts_with('.') || w.starts_with('['),
            Tok::Open => {
                matches!(tokens.get(j.wrapping_sub(1)).map(|p| &p.tok), Some(Tok::Word(w)) if w.starts_with('.'))
            }
            _ => false,
        };
        if postfix && t.start == end && !matches!(args.last(), None | Some(Arg::Param { .. })) {
            let e = match t.tok {
                Tok::Open => tokens.get(close[j]).map_or(t.end, |c| c.end),
                _ => t.end,
            };
            if let (Some(first), Some(last)) = (starts.last().copied(), args.last_mut()) {
                *last = Arg::Expr(text(first, e));
            }
            end = e;
            j = if t.tok == Tok::Open {
                close[j] + 1
            } else {
                j + 1
            };
            continue;
        }
        match &t.tok {
            Tok::Sep(_) | Tok::Close => break,
            Tok::Open | Tok::OpenBlock => {
                let k = close[j];
                let e = tokens.get(k).map_or(t.end, |t| t.end);
                args.push(Arg::Expr(text(t.start, e)));
                join_array(&mut args, &mut starts, &mut comma, t.start, e, text);
                end = e;
                j = k + 1;
                continue;
            }
            Tok::Param(p) => args.push(Arg::Param {
                name: p.name.to_string(),
                value: p.value.as_ref().map(|v| v.to_string()),
            }),
            Tok::Word(w) => args.push(Arg::Literal(w.to_string())),
            Tok::Str {
                text: st,
                expandable,
            } => {
                if *expandable && st.contains('$') {
                    args.push(Arg::Expr(text(t.start, t.end)));
                } else {
                    args.push(Arg::Literal(st.to_string()));
                }
            }
            Tok::Var(v) => args.push(Arg::Variable(v.to_string())),
            Tok::Other => comma = text(t.start, t.end) == ",",
            _ => {}
        }
        if args.len() > before {
            join_array(&mut args, &mut starts, &mut comma, t.start, t.end, text);
        }
        end = t.end;
        j += 1;
    }
    let qualified = name.contains('\\');
    let name = name.rsplit('\\').next().unwrap_or("").to_string();
    Invocation {
        name,
        args,
        piped,
        piped_from: None,
        call_operator,
        qualified,
        assigned_to: None,
        token: 0,
        start,
        text: text(start, end),
        layers: Vec::new(),
        piped_input: None,
    }
}

/// After an argument was pushed (spanning `start..end`): when a comma came before it, it
/// and the argument before it are one array argument (`-ComputerName a,b`).
fn join_array(
    args: &mut Vec<Arg>,
    starts: &mut Vec<usize>,
    comma: &mut bool,
    start: usize,
    end: usize,
    text: &dyn Fn(usize, usize) -> String,
) {
    let n = args.len();
    let joinable = *comma
        && n >= 2
        && starts.len() == n - 1
        && !matches!(args[n - 2], Arg::Param { .. })
        && !matches!(args[n - 1], Arg::Param { .. });
    *comma = false;
    if joinable {
        let first = starts[n - 2];
        args.truncate(n - 2);
        args.push(Arg::Expr(text(first, end)));
        starts.truncate(n - 2);
        starts.push(first);
    } else {
        starts.push(start);
    }
}

/// How a session reaches its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// WinRM to a computer name.
    WinRm,
    /// WinRM to a connection URI.
    WinRmUri,
    /// PowerShell remoting over SSH (-HostName).
    Ssh,
    /// An existing PSSession (-Session, -Id, -InstanceId, -Name, or piped in).
    Session,
    /// PowerShell Direct into a local Hyper-V VM or container.
    Vm,
}

impl Transport {
    /// Every transport, in the order of [`index`](Self::index).
    pub const ALL: [Transport; 5] = [
        Transport::WinRm,
        Transport::WinRmUri,
        Transport::Ssh,
        Transport::Session,
        Transport::Vm,
    ];

    /// Its position in [`ALL`](Self::ALL).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(&self) -> &'static str {
        match self {
            Transport::WinRm => "winrm",
            Transport::WinRmUri => "winrm-uri",
            Transport::Ssh => "ssh",
            Transport::Session => "session",
            Transport::Vm => "vm",
        }
    }
}

/// What the session's target is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A literal name, address or URI.
    Literal(String),
    /// A variable (`$target`); its value is not known here.
    Variable(String),
    /// An expression (`(Get-Content hosts.txt)[0]`).
    Expression(String),
    /// None given: a session piped in, or PowerShell prompts for it.
    Implicit,
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Literal(_) => "literal",
            Target::Variable(_) => "variable",
            Target::Expression(_) => "expression",
            Target::Implicit => "implicit",
        }
    }

    pub fn text(&self) -> String {
        match self {
            Target::Literal(s) | Target::Expression(s) => s.clone(),
            Target::Variable(v) => format!("${v}"),
            Target::Implicit => "(pipeline or prompt)".into(),
        }
    }
}

/// One `Enter-PSSession` that would run.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub transport: Transport,
    pub target: Target,
    /// Loopback, the computer itself, or a local VM/container: not lateral movement.
    pub local: bool,
    /// Which readings fired (e.g. `named:ComputerName`, `positional`, `alias:etsn`).
    pub readings: Vec<String>,
    pub text: String,
    /// The command as it runs, deobfuscated: `Enter-PSSession -ComputerName web01`.
    pub command_line: String,
    /// The layers peeled to reach it (`format-operator`, `base64-utf16le`, `deflate`, ...).
    pub layers: Vec<String>,
}

/// Parameters of Enter-PSSession (PowerShell 7.4) and the common parameters: name, aliases,
/// whether it is a switch.
const PARAMS: &[(&str, &[&str], bool)] = &[
    ("ComputerName", &["Cn"], false),
    ("EnableNetworkAccess", &[], true),
    ("Credential", &[], false),
    ("ConfigurationName", &[], false),
    ("Port", &[], false),
    ("UseSSL", &[], true),
    ("ApplicationName", &[], false),
    ("SessionOption", &[], false),
    ("Authentication", &[], false),
    ("CertificateThumbprint", &[], false),
    ("HostName", &[], false),
    ("UserName", &[], false),
    ("KeyFilePath", &["IdentityFilePath"], false),
    ("SSHTransport", &[], true),
    ("Subsystem", &[], false),
    ("SSHConnectionTimeout", &[], false),
    ("Options", &[], false),
    ("Session", &[], false),
    ("ConnectionUri", &["URI", "CU"], false),
    ("AllowRedirection", &[], true),
    ("InstanceId", &[], false),
    ("Id", &[], false),
    ("Name", &[], false),
    ("VMId", &["VMGuid"], false),
    ("VMName", &[], false),
    ("ContainerId", &[], false),
    ("RunAsAdministrator", &[], true),
    ("Verbose", &["vb"], true),
    ("Debug", &["db"], true),
    ("ErrorAction", &["ea"], false),
    ("WarningAction", &["wa"], false),
    ("InformationAction", &["infa"], false),
    ("ProgressAction", &["proga"], false),
    ("ErrorVariable", &["ev"], false),
    ("WarningVariable", &["wv"], false),
    ("InformationVariable", &["iv"], false),
    ("OutVariable", &["ov"], false),
    ("OutBuffer", &["ob"], false),
    ("PipelineVariable", &["pv"], false),
];

/// Resolves a written parameter name as PowerShell binds it: an exact name or alias, else
/// the one parameter it is a prefix of. Err when ambiguous or unknown (the command fails).
fn resolve_param(written: &str) -> Result<(&'static str, bool), ()> {
    let w = written.to_ascii_lowercase();
    for (name, aliases, switch) in PARAMS {
        if name.eq_ignore_ascii_case(&w) || aliases.iter().any(|a| a.eq_ignore_ascii_case(&w)) {
            return Ok((name, *switch));
        }
    }
    let mut found = None;
    for (name, aliases, switch) in PARAMS {
        let hit = name.to_ascii_lowercase().starts_with(&w)
            || aliases
                .iter()
                .any(|a| a.to_ascii_lowercase().starts_with(&w));
        if hit {
            if found.is_some() {
                return Err(());
            }
            found = Some((*name, *switch));
        }
    }
    found.ok_or(())
}

/// Whether a target names this very computer.
fn is_local_name(target: &str, own_computer: Option<&str>) -> bool {
    let t = target
        .trim()
        .trim_matches(|c| c == '[' || c == ']')
        .to_ascii_lowercase();
    if matches!(t.as_str(), "." | "localhost" | "::1" | "0:0:0:0:0:0:0:1") || t.starts_with("127.")
    {
        return true;
    }
    if let Some(own) = own_computer {
        let own = own.to_ascii_lowercase();
        let short = own.split('.').next().unwrap_or("");
        return t == own || (!short.is_empty() && t == short);
    }
    false
}

/// The host of a WinRM URI (`http[s]://host[:port]/...`).
fn uri_host(uri: &str) -> &str {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let hostport = rest.split(['/', '?']).next().unwrap_or("");
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    hostport.split(':').next().unwrap_or("")
}

fn target_of(arg: &Arg) -> Target {
    match arg {
        Arg::Literal(s) => Target::Literal(s.clone()),
        Arg::Variable(v) => Target::Variable(v.clone()),
        Arg::Expr(e) => Target::Expression(e.clone()),
        Arg::Param { name, .. } => Target::Expression(format!("-{name}")),
    }
}

fn value_arg(value: &str) -> Arg {
    if let Some(v) = value.strip_prefix('$') {
        Arg::Variable(v.to_string())
    } else {
        Arg::Literal(value.to_string())
    }
}

/// What an Enter-PSSession (or New-PSSession) binds to, before locality is decided.
struct Bound {
    transport: Transport,
    target: Target,
    readings: Vec<String>,
}

/// Binds a session cmdlet's arguments as PowerShell does. None when PowerShell would not
/// run it: an ambiguous or unknown parameter, a parameter missing its value, or `-?`.
fn bind_args(inv: &Invocation) -> Option<Bound> {
    let mut p = bind_params(&inv.args)?;
    let (transport, target_arg, how) = pick_target(&p, inv.piped);
    p.readings.push(how);
    Some(Bound {
        transport,
        target: target_arg.as_ref().map_or(Target::Implicit, target_of),
        readings: p.readings,
    })
}

/// Arguments bound to parameters by name, and the positional rest.
struct Params {
    named: Vec<(&'static str, Option<Arg>)>,
    positional: Vec<Arg>,
    readings: Vec<String>,
}

impl Params {
    fn get(&self, n: &str) -> Option<Arg> {
        self.named
            .iter()
            .find(|(p, _)| *p == n)
            .and_then(|(_, v)| v.clone())
    }

    fn has(&self, n: &str) -> bool {
        self.named.iter().any(|(p, _)| *p == n)
    }
}

/// The parameters an argument list names (resolved to their full names).
fn given_params(args: &[Arg]) -> Vec<&'static str> {
    args.iter()
        .filter_map(|a| match a {
            Arg::Param { name, .. } => resolve_param(name).ok().map(|(p, _)| p),
            _ => None,
        })
        .collect()
}

/// A splatted or default `-name value` as arguments (a switch set to `$true` is the
/// switch alone, one set to `$false` is left out).
fn push_named(args: &mut Vec<Arg>, name: &str, v: Value) {
    let switch = resolve_param(name).is_ok_and(|(_, s)| s);
    let param = Arg::Param {
        name: name.to_string(),
        value: None,
    };
    match (&v, switch) {
        (Value::Bool(false), true) => {}
        (Value::Bool(true), true) => args.push(param),
        _ => {
            args.push(param);
            args.push(value_as_arg(v));
        }
    }
}

/// A value as an argument: text as a literal, an array as its source (so it still fails
/// to bind to a single-valued parameter), an unknown value as what the script wrote.
fn value_as_arg(v: Value) -> Arg {
    match v {
        Value::Opaque(src) => match src.strip_prefix('$') {
            Some(n)
                if n.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == ':') =>
            {
                Arg::Variable(n.to_string())
            }
            _ => Arg::Expr(src),
        },
        Value::Array(items) => Arg::Expr(format!(
            "@({})",
            items
                .iter()
                .map(|i| format!("'{}'", constant::to_text(i).replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(",")
        )),
        other => Arg::Literal(constant::to_text(&other)),
    }
}

/// The parameters that name a session's target.
const TARGETS: &[&str] = &[
    "ComputerName",
    "HostName",
    "ConnectionUri",
    "Session",
    "Id",
    "InstanceId",
    "Name",
    "VMId",
    "VMName",
    "ContainerId",
];

/// Binds named parameters (prefixes and aliases resolved, `-p:value` and `-p value`).
/// None when PowerShell would refuse the command line.
fn bind_params(args: &[Arg]) -> Option<Params> {
    let mut p = Params {
        named: Vec::new(),
        positional: Vec::new(),
        readings: Vec::new(),
    };
    let mut k = 0;
    while k < args.len() {
        match &args[k] {
            Arg::Literal(l) if l == "-?" => return None,
            Arg::Param { name, .. } if name == "?" => return None,
            Arg::Param { name, value } => {
                let (param, switch) = resolve_param(name).ok()?;
                if !param.eq_ignore_ascii_case(name) {
                    p.readings.push(format!("prefix-or-alias:-{name}"));
                }
                if value.as_deref() == Some("") {
                    // `-Name: value`: the colon binds the next argument, even to a switch
                    k += 1;
                    let a = match args.get(k) {
                        None | Some(Arg::Param { .. }) => return None,
                        Some(a) => a.clone(),
                    };
                    let off = matches!(&a, Arg::Variable(v) if v.eq_ignore_ascii_case("false"));
                    if !switch {
                        p.named.push((param, Some(a)));
                    } else if !off {
                        p.named.push((param, None));
                    }
                } else if switch {
                    p.named.push((param, None));
                } else if let Some(v) = value {
                    p.readings.push("colon-value".into());
                    p.named.push((param, Some(value_arg(v))));
                } else {
                    k += 1;
                    match args.get(k) {
                        None | Some(Arg::Param { .. }) => return None,
                        Some(a) => p.named.push((param, Some(a.clone()))),
                    }
                }
            }
            other => p.positional.push(other.clone()),
        }
        k += 1;
    }
    // at most two positions (the target, and in PowerShell 7 the credential)
    // two targets are two parameter sets: PowerShell cannot resolve which
    let named_targets = p.named.iter().filter(|(n, _)| TARGETS.contains(n)).count();
    if named_targets > 1 || p.positional.len() > 2 || (named_targets > 0 && p.positional.len() > 1)
    {
        return None;
    }
    Some(p)
}

/// The parameter set PowerShell picks: its transport, the argument naming the target,
/// and how it was read.
fn pick_target(p: &Params, piped: bool) -> (Transport, Option<Arg>, String) {
    if let Some(v) = ["VMName", "VMId", "ContainerId"].iter().find(|n| p.has(n)) {
        return (Transport::Vm, p.get(v), format!("named:{v}"));
    }
    let named = [
        ("HostName", Transport::Ssh),
        ("ConnectionUri", Transport::WinRmUri),
        ("Session", Transport::Session),
        ("Id", Transport::Session),
        ("InstanceId", Transport::Session),
        ("Name", Transport::Session),
        ("ComputerName", Transport::WinRm),
    ];
    if let Some((n, t)) = named.into_iter().find(|(n, _)| p.has(n)) {
        return (t, p.get(n), format!("named:{n}"));
    }
    if let Some(arg) = p.positional.first().cloned() {
        // Position 0 is ComputerName, or HostName when only SSH parameters are given; a
        // variable may hold a PSSession instead.
        let ssh = ["UserName", "KeyFilePath", "SSHTransport", "Subsystem"]
            .iter()
            .any(|n| p.has(n));
        let t = match (&arg, ssh) {
            (_, true) => Transport::Ssh,
            (Arg::Variable(_), false) => Transport::Session,
            _ => Transport::WinRm,
        };
        return (t, Some(arg), "positional".into());
    }
    if piped {
        (Transport::Session, None, "pipeline-input".into())
    } else {
        (Transport::WinRm, None, "prompted".into())
    }
}

/// Whether an expression evaluates to this computer's own name: `$env:COMPUTERNAME`
/// (alone or with a `.domain` suffix), `[System.Net.Dns]::GetHostName()`, `(hostname)`.
fn is_own_name_expr(expr: &str) -> bool {
    let mut e = expr.trim().to_ascii_lowercase();
    // one pair of outer parentheses or quotes at a time
    while e.len() >= 2
        && ((e.starts_with('(') && e.ends_with(')'))
            || (e.starts_with('"') && e.ends_with('"'))
            || (e.starts_with('\'') && e.ends_with('\'')))
    {
        e = e[1..e.len() - 1].trim().to_string();
    }
    for var in ["$env:computername", "${env:computername}"] {
        if let Some(rest) = e.strip_prefix(var) {
            return rest.is_empty() || rest.starts_with('.');
        }
    }
    matches!(
        e.as_str(),
        "[system.net.dns]::gethostname()"
            | "[net.dns]::gethostname()"
            | "hostname"
            | "hostname.exe"
    )
}

/// Longest `command_line` kept, in bytes.
const COMMAND_LINE_MAX: usize = 1024;

/// `s` cut to at most `max` bytes, at a character boundary.
fn truncate_chars(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Context for resolving one piece of code's variables and sessions.
struct Resolver<'r> {
    reading: &'r Reading,
    own: Option<&'r str>,
    text: &'r str,
    budget: std::cell::RefCell<&'r mut Budget>,
    /// Per token, whether it can run (see [`running_tokens`]).
    running: Vec<bool>,
    /// The script's functions named Enter-PSSession: their definition tokens by scope (the
    /// enclosing function's body, or (0, MAX) for the whole piece).
    shadows: OnceCell<HashMap<(usize, usize), Vec<usize>>>,
    /// Each variable's assignments (indices into `reading.assignments`, in order).
    assigned: std::collections::HashMap<String, Vec<usize>>,
    /// The invocations of Remove-PSSession, and of Remove-Item and its aliases.
    removals: Vec<usize>,
    item_removals: Vec<usize>,
    /// The functions around each token (items: indices into `reading.deferred`).
    functions: OnceCell<Nest>,
    /// The loops around each token (items: indices into `reading.loops`).
    loops: OnceCell<Nest>,
    /// Each command's invocations (indices into `reading.invocations`), by lowercase name.
    calls_by_name: OnceCell<HashMap<String, Vec<usize>>>,
    /// The tokens of the Remove-Item calls that run, by the item they remove
    /// (`alias:etsn`, `function:enter-pssession`).
    removed_items: OnceCell<HashMap<String, Vec<usize>>>,
    /// Remove-PSSession calls that run, by the variable they close (see
    /// `index_closed_sessions`).
    closed_sessions: OnceCell<HashMap<String, Vec<usize>>>,
    /// New-PSSession calls that name their session, by the name (see `sessions_by_name`).
    named_sessions: OnceCell<HashMap<String, Vec<usize>>>,
    /// Parameters bound at calls and loop values already worked out, by (body token,
    /// parameter).
    bound: std::cell::RefCell<HashMap<(usize, usize), Option<Target>>>,
}

/// The functions named Enter-PSSession (see `shadowing_functions`): their definition
/// tokens, in order, by scope (the enclosing function's body, or (0, MAX) for the piece).
fn shadows_by_scope(reading: &Reading, functions: &Nest) -> HashMap<(usize, usize), Vec<usize>> {
    let mut by: HashMap<(usize, usize), Vec<usize>> = HashMap::new();
    for (def, from, to) in shadowing_functions(reading, functions) {
        by.entry((from, to)).or_default().push(def);
    }
    by.values_mut().for_each(|d| d.sort_unstable());
    by
}

/// The spans of the functions and script blocks in variables a piece defines (each a
/// scope of its own, called with arguments), for [`Nest`].
fn function_spans(reading: &Reading) -> Nest {
    let spans = reading.deferred.iter().enumerate().filter_map(|(k, d)| {
        let callable = matches!(d.trigger, Trigger::Function(_) | Trigger::Variable(_));
        callable.then_some((d.from, d.to, k))
    });
    Nest::new(spans.filter(|&(from, to, _)| from < to).collect())
}

/// The New-PSSession invocations that name their session (`-Name x`), by the name
/// (lowercase), in token order.
fn sessions_by_name(reading: &Reading) -> HashMap<String, Vec<usize>> {
    let mut by: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, inv) in reading.invocations.iter().enumerate() {
        if !is_new_pssession(&inv.name) {
            continue;
        }
        for (k, a) in inv.args.iter().enumerate() {
            let Arg::Param { name: p, value } = a else {
                continue;
            };
            if !p.eq_ignore_ascii_case("name") {
                continue;
            }
            let v = value.clone().or_else(|| match inv.args.get(k + 1) {
                Some(Arg::Literal(l)) => Some(l.clone()),
                _ => None,
            });
            if let Some(v) = v {
                by.entry(v.to_ascii_lowercase()).or_default().push(i);
            }
        }
    }
    for list in by.values_mut() {
        list.sort_by_key(|&i| reading.invocations[i].token);
        list.dedup();
    }
    by
}

/// Each command's invocations, by lowercase name.
fn invocations_by_name(reading: &Reading) -> HashMap<String, Vec<usize>> {
    let mut by: HashMap<String, Vec<usize>> = HashMap::new();
    for (k, inv) in reading.invocations.iter().enumerate() {
        by.entry(command_key(&inv.name)).or_default().push(k);
    }
    by
}

/// Per token, whether it can run: not in a dead range, and not inside a function or script
/// block that nothing runs. One pass over the ranges (a difference array), so asking is
/// constant time however many blocks and invocations a piece has.
fn running_tokens(reading: &Reading, n: usize) -> Vec<bool> {
    let mut diff = vec![0i64; n + 2];
    let mut off = |from: usize, to: usize| {
        let (from, to) = (from.min(n), to.min(n));
        if from < to {
            diff[from] += 1;
            diff[to] -= 1;
        }
    };
    for &(from, to) in &reading.dead {
        off(from, to);
    }
    for d in &reading.deferred {
        let fires = match &d.trigger {
            Trigger::Function(name) => reading.calls.contains(name),
            Trigger::Variable(v) => reading.calls.contains(&format!("${v}")),
            Trigger::Selected => false,
        };
        if !fires {
            // strictly inside the block
            off(d.from + 1, d.to);
        }
    }
    let mut depth = 0i64;
    (0..n)
        .map(|i| {
            depth += diff[i];
            depth == 0
        })
        .collect()
}

/// Each variable's assignments, as indices into `reading.assignments` (in order).
fn assignments_by_variable(reading: &Reading) -> std::collections::HashMap<String, Vec<usize>> {
    let mut by: std::collections::HashMap<String, Vec<usize>> = Default::default();
    for (k, (v, _, _)) in reading.assignments.iter().enumerate() {
        by.entry(v.clone()).or_default().push(k);
    }
    by
}

/// The invocations of the commands `names`.
fn invocations_of(reading: &Reading, names: &[&str]) -> Vec<usize> {
    (0..reading.invocations.len())
        .filter(|&k| names.contains(&command_key(&reading.invocations[k].name).as_str()))
        .collect()
}

/// The functions named Enter-PSSession and the scope each lives in; a Pester `Mock
/// Enter-PSSession` replaces the cmdlet for the whole test script, whatever the order.
fn shadowing_functions(reading: &Reading, functions: &Nest) -> Vec<(usize, usize, usize)> {
    let mocked = reading.invocations.iter().any(|m| {
        command_key(&m.name) == "mock"
            && matches!(m.args.first(), Some(Arg::Literal(n)) if command_key(n) == "enter-pssession")
    });
    if mocked {
        return vec![(0, 0, usize::MAX)];
    }
    reading
        .deferred
        .iter()
        .filter(|d| matches!(&d.trigger, Trigger::Function(f) if f == "enter-pssession"))
        .map(|d| {
            let scope = functions
                .around(d.from)
                .next()
                .and_then(|k| reading.deferred.get(k));
            scope.map_or((d.from, 0, usize::MAX), |o| (d.from, o.from, o.to))
        })
        .collect()
}

impl Resolver<'_> {
    /// Runs `f` with an evaluator of this piece's code and variables.
    fn evaluate<T>(&self, f: impl FnOnce(&mut Evaluator) -> T) -> T {
        let mut budget = self.budget.borrow_mut();
        let mut ev = Evaluator::new(self.text, self.reading, &mut budget);
        f(&mut ev)
    }

    /// The last value assigned to `$var` before token `before`.
    fn value_of(&self, var: &str, before: usize) -> Option<&Assigned> {
        self.assignment_of(var, before).map(|(_, a)| a)
    }

    /// The last assignment to `$var` before token `before`: its token and value.
    fn assignment_of(&self, var: &str, before: usize) -> Option<(usize, &Assigned)> {
        let list = self.assigned.get(&var.to_ascii_lowercase())?;
        let all = &self.reading.assignments;
        let k = list.partition_point(|&i| all[i].1 < before);
        let (_, at, a) = &all[list[k.checked_sub(1)?]];
        Some((*at, a))
    }

    /// A session made by New-PSSession (piped in, or through a variable), bound.
    fn new_session(&self, idx: usize) -> Option<(Bound, bool)> {
        let inv = self.reading.invocations.get(idx)?;
        if !is_new_pssession(&inv.name) {
            return None;
        }
        // New-PSSession's -Name names the new session; it is no target
        let mut inv = inv.clone();
        if let Some(k) = inv
            .args
            .iter()
            .position(|a| matches!(a, Arg::Param { name, .. } if name.eq_ignore_ascii_case("name")))
        {
            let with_value = matches!(&inv.args[k], Arg::Param { value: None, .. });
            inv.args
                .drain(k..(k + 1 + usize::from(with_value)).min(inv.args.len()));
        }
        let b = bind_args(&inv)?;
        let local = self.is_local(&b, inv.token);
        Some((b, local))
    }

    /// Whether invoking `inv` runs the Enter-PSSession cmdlet, as PowerShell resolves its
    /// name there: a module-qualified name is the cmdlet; an alias (as last set before the
    /// call) comes before a function, and a function the script defined before the call
    /// comes before the cmdlet.
    fn opens_session(
        &self,
        inv: &Invocation,
        aliases: &HashSet<String>,
        changes: &AliasChanges,
    ) -> bool {
        let n = command_key(&inv.name);
        if inv.qualified {
            return n == "enter-pssession";
        }
        let changed = changes.last_before(&n, inv.token).map(|c| c.to_session);
        let cmdlet = match changed {
            Some(to_session) => to_session,
            None => aliases.contains(&n),
        };
        // `Remove-Item Alias:\etsn`: the alias is gone
        let alias_gone = n != "enter-pssession" && self.item_removed("alias", &n, 0, inv.token);
        let cmdlet = cmdlet && !alias_gone;
        cmdlet && !self.shadowed(inv.token)
    }

    /// Whether a function or filter named Enter-PSSession that the script defined is in
    /// force at token `at`: defined before it, in its scope (one defined inside another
    /// function lives only there), and not removed since (`Remove-Item
    /// Function:\Enter-PSSession`).
    fn shadowed(&self, at: usize) -> bool {
        // the latest definition before `at` in each scope around it decides that scope: a
        // removal after it removes the earlier ones too
        let in_scope = |scope: (usize, usize)| {
            let Some(defs) = self.shadows().get(&scope) else {
                return false;
            };
            let n = defs.partition_point(|&d| d < at);
            let latest = n.checked_sub(1).map(|k| defs[k]);
            // (0, 0, MAX) is a mock: in force everywhere, from the start
            let mock = scope == (0, usize::MAX) && defs.first() == Some(&0);
            match (latest, mock) {
                (Some(def), _) => !self.function_removed(def, at),
                (None, true) => !self.function_removed(0, at),
                (None, false) => false,
            }
        };
        let enclosing = self.functions().around(at).filter_map(|k| {
            let d = self.reading.deferred.get(k)?;
            Some((d.from, d.to))
        });
        in_scope((0, usize::MAX)) || {
            let mut e = enclosing;
            e.any(in_scope)
        }
    }

    /// Whether `Remove-Item Function:\Enter-PSSession` ran between tokens `from` and `to`.
    fn function_removed(&self, from: usize, to: usize) -> bool {
        self.item_removed("function", "enter-pssession", from, to)
    }

    /// Whether `Remove-Item <drive>:\<name>` (or `del`, `rm`, ...) ran at or after token
    /// `from` and before `to`.
    fn item_removed(&self, drive: &str, name: &str, from: usize, to: usize) -> bool {
        let Some(at) = self.removed_items().get(&format!("{drive}:{name}")) else {
            return false;
        };
        let k = at.partition_point(|&t| t < from);
        at.get(k).is_some_and(|&t| t < to)
    }

    /// The Remove-Item calls that run, by the item they remove (`alias:etsn`).
    fn removed_items_index(&self) -> HashMap<String, Vec<usize>> {
        let mut index: HashMap<String, Vec<usize>> = HashMap::new();
        for &k in &self.item_removals {
            let r = &self.reading.invocations[k];
            if !self.runs(r.token) {
                continue;
            }
            for a in &r.args {
                let Arg::Literal(p) = a else { continue };
                let p = p.to_ascii_lowercase().replace('/', "\\");
                if let Some((drive, rest)) = p.split_once(':') {
                    let key = format!("{drive}:{}", rest.trim_start_matches('\\'));
                    index.entry(key).or_default().push(r.token);
                }
            }
        }
        index.values_mut().for_each(|t| t.sort_unstable());
        index
    }

    /// Whether `Remove-PSSession` closed the session in `$v` after it was set and before
    /// token `at` (by the variable, or all sessions through `Get-PSSession |`).
    fn removed_before(&self, v: &str, at: usize) -> bool {
        let v = v.to_ascii_lowercase();
        let set_at = self.assignment_of(&v, at).map_or(0, |(t, _)| t);
        let between = |tokens: &Vec<usize>| {
            let k = tokens.partition_point(|&t| t <= set_at);
            tokens.get(k).is_some_and(|&t| t < at)
        };
        let closed = self.closed_sessions();
        closed.get(&v).is_some_and(between) || closed.get("").is_some_and(between)
    }

    /// The Remove-PSSession calls that run, by the variable they close (lowercase), and
    /// under "" those that close every session (`Get-PSSession | Remove-PSSession`).
    fn closed_sessions_index(&self) -> HashMap<String, Vec<usize>> {
        let mut index: HashMap<String, Vec<usize>> = HashMap::new();
        for &k in &self.removals {
            let r = &self.reading.invocations[k];
            if !self.runs(r.token) {
                continue;
            }
            let piped = r
                .piped_input
                .and_then(|(s, e)| self.text.get(s..e))
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            let mut closes: Vec<String> = r
                .args
                .iter()
                .filter_map(|a| match a {
                    Arg::Variable(x) => Some(x.to_ascii_lowercase()),
                    _ => None,
                })
                .collect();
            closes.extend(piped.strip_prefix('$').map(String::from));
            let every = piped.starts_with("get-pssession") || piped.starts_with("gsn");
            if r.args.is_empty() && every {
                closes.push(String::new());
            }
            for v in closes {
                index.entry(v).or_default().push(r.token);
            }
        }
        index.values_mut().for_each(|t| t.sort_unstable());
        index
    }

    /// A target given as an expression (or a variable set from one) whose value is a
    /// constant becomes that literal. None when the value is an array, which a
    /// single-valued parameter refuses (the command fails).
    fn evaluate_target(&self, b: &mut Bound, inv: &Invocation) -> Option<()> {
        if let Target::Variable(v) = &b.target {
            let positional = b.readings.iter().any(|r| r == "positional");
            let session = b.transport == Transport::Session;
            if self.value_of(v, inv.token).is_none() && (positional || !session) {
                let bound = self.parameter_value(v, inv);
                if let Some(target) = bound.or_else(|| self.loop_value(v, inv)) {
                    b.readings.push(format!("parameter:${v}"));
                    // a string given positionally binds to ComputerName, not Session
                    if session {
                        b.transport = Transport::WinRm;
                    }
                    b.target = target;
                    return Some(());
                }
            }
        }
        let src = match (&b.transport, &b.target) {
            (Transport::Session, _) => return Some(()),
            (_, Target::Expression(e)) if !is_own_name_expr(e) => e.clone(),
            (_, Target::Variable(v))
                if !matches!(self.value_of(v, inv.token), Some(Assigned::Literal(_))) =>
            {
                if v.eq_ignore_ascii_case("env:COMPUTERNAME") {
                    return Some(());
                }
                format!("${{{v}}}")
            }
            _ => return Some(()),
        };
        let value = self.evaluate(|ev| ev.eval_argument(&src, inv.start));
        let text = match value.map(|(v, _)| v) {
            // an array, even of one, does not bind to a single-valued parameter
            Some(Value::Array(_)) => return None,
            Some(Value::Str(s)) => Some(s),
            Some(v @ (Value::Char(_) | Value::Int(_))) => Some(constant::to_text(&v)),
            _ => None,
        };
        if let Some(t) = text {
            b.readings.push("evaluated-target".into());
            b.target = Target::Literal(t);
        }
        Some(())
    }

    /// The innermost function whose body holds token `at`.
    fn enclosing_function(&self, at: usize) -> Option<&Deferred> {
        let k = self.functions().around(at).next()?;
        self.reading.deferred.get(k)
    }

    /// The calls of function `f` that run, outside its own body (a proxy named
    /// Enter-PSSession is also reached through its alias etsn).
    fn calls_of(&self, f: &Deferred) -> Vec<&Invocation> {
        // a script block in `$v` is called as `& $v` (or `. $v`)
        let name = match &f.trigger {
            Trigger::Function(n) => n.clone(),
            Trigger::Variable(v) => format!("${v}"),
            Trigger::Selected => String::new(),
        };
        let name = name.as_str();
        let proxy = matches!(&f.trigger, Trigger::Function(n) if n == "enter-pssession");
        let names: &[&str] = if proxy { &[name, "etsn"] } else { &[name] };
        let calls = names
            .iter()
            .flat_map(|n| self.calls_by_name().get(*n).into_iter().flatten())
            .map(|&k| &self.reading.invocations[k])
            .filter(|c| {
                let qualified_alias = c.qualified && command_key(&c.name) == "etsn";
                let inside = (f.from..=f.to).contains(&c.token);
                !qualified_alias && !inside && self.runs(c.token)
            });
        calls.take(MAX_ARGS).collect()
    }

    /// `$v` as a parameter of the function `inv` is in, bound at the calls of that function
    /// that run: the first remote value, else (every call giving a constant) the first
    /// value. None when the function does not declare `$v` or is never called.
    fn parameter_value(&self, v: &str, inv: &Invocation) -> Option<Target> {
        let f = self.enclosing_function(inv.token)?;
        let k = f
            .params
            .iter()
            .position(|(p, _)| p.eq_ignore_ascii_case(v))?;
        if let Some(known) = self.bound.borrow().get(&(f.from, k)) {
            return known.clone();
        }
        let found = self.bind_parameter(f, k);
        self.bound.borrow_mut().insert((f.from, k), found.clone());
        found
    }

    /// Function `f`'s `k`th parameter as its calls bind it (see `parameter_value`).
    fn bind_parameter(&self, f: &Deferred, k: usize) -> Option<Target> {
        let values: Vec<Option<Target>> = self
            .calls_of(f)
            .into_iter()
            .map(|c| self.call_argument(c, &f.params, k))
            .collect();
        // a call with a remote value opens a remote session, whatever the others give
        let known = values.iter().flatten();
        let remote = |t: &&Target| matches!(t, Target::Literal(x) if !is_local_name(x, self.own));
        if let Some(r) = known.clone().find(remote) {
            return Some(r.clone());
        }
        let all_known = values.iter().all(Option::is_some);
        known.clone().next().filter(|_| all_known).cloned()
    }

    /// `$v` as the variable of the innermost loop around `inv` over constant items: the
    /// first remote item, else (every item constant) the first.
    fn loop_value(&self, v: &str, inv: &Invocation) -> Option<Target> {
        let k = self
            .loops()
            .around(inv.token)
            .find(|&k| self.reading.loops[k].var.eq_ignore_ascii_case(v))?;
        let l = &self.reading.loops[k];
        if let Some(known) = self.bound.borrow().get(&(l.from, usize::MAX)) {
            return known.clone();
        }
        let found = self.loop_items_target(l);
        self.bound
            .borrow_mut()
            .insert((l.from, usize::MAX), found.clone());
        found
    }

    /// The target a loop's constant items give its variable (see `loop_value`).
    fn loop_items_target(&self, l: &Loop) -> Option<Target> {
        let items = match self
            .evaluate(|ev| ev.eval_pipeline(l.items.0, l.items.1))?
            .0
        {
            Value::Array(items) => items,
            one => vec![one],
        };
        let texts: Vec<Option<String>> = items
            .iter()
            .take(MAX_ARGS)
            .map(|i| match i {
                Value::Str(s) => Some(s.clone()),
                Value::Int(_) | Value::Char(_) => Some(constant::to_text(i)),
                _ => None,
            })
            .collect();
        let known = texts.iter().flatten();
        if let Some(r) = known.clone().find(|t| !is_local_name(t, self.own)) {
            return Some(Target::Literal(r.clone()));
        }
        let all_known = texts.iter().all(Option::is_some);
        known
            .clone()
            .next()
            .filter(|_| all_known)
            .map(|t| Target::Literal(t.clone()))
    }

    /// The constant value call `c` gives the function's `k`th parameter.
    fn call_argument(&self, c: &Invocation, params: &[(String, bool)], k: usize) -> Option<Target> {
        let bound = bound_arguments(c, params)?;
        match bound.get(k)? {
            Given::Value(a) => self.constant_argument(a, c.start),
            Given::Colon(v) => Some(Target::Literal(v.clone())),
            Given::Switch | Given::Unbound => None,
        }
    }

    /// `@PSBoundParameters` inside a function: the parameters a call that runs gives it
    /// (one with a remote constant value first), as named arguments, constants evaluated.
    fn bound_parameters(&self, inv: &Invocation) -> Option<Vec<Arg>> {
        let f = self.enclosing_function(inv.token)?;
        let calls = self.calls_of(f);
        let expanded = |c: &Invocation| -> Option<Vec<Arg>> {
            let bound = bound_arguments(c, &f.params)?;
            let mut args = Vec::new();
            for ((name, _), b) in f.params.iter().zip(bound) {
                let value = match b {
                    Given::Unbound => continue,
                    Given::Switch => None,
                    Given::Colon(v) => Some(Arg::Literal(v)),
                    Given::Value(a) => Some(match self.constant_argument(a, c.start) {
                        Some(Target::Literal(l)) => Arg::Literal(l),
                        _ => a.clone(),
                    }),
                };
                args.push(Arg::Param {
                    name: name.clone(),
                    value: None,
                });
                args.extend(value);
            }
            Some(args)
        };
        let all: Vec<Vec<Arg>> = calls.iter().filter_map(|c| expanded(c)).collect();
        let remote = all.iter().position(|args| {
            args.iter()
                .any(|a| matches!(a, Arg::Literal(l) if !is_local_name(l, self.own)))
        });
        let pick = remote.unwrap_or(0);
        all.into_iter().nth(pick)
    }

    /// A call argument as a target: a literal, a variable or expression whose value is a
    /// string or a number, or this computer's own name (`$env:COMPUTERNAME`, ...).
    fn constant_argument(&self, a: &Arg, at: usize) -> Option<Target> {
        let src = match a {
            Arg::Literal(l) => return Some(Target::Literal(l.clone())),
            Arg::Variable(v) if v.eq_ignore_ascii_case("env:COMPUTERNAME") => {
                return Some(Target::Variable(v.clone()))
            }
            Arg::Expr(e) if is_own_name_expr(e) => return Some(Target::Expression(e.clone())),
            Arg::Variable(v) => format!("${{{v}}}"),
            Arg::Expr(e) => e.clone(),
            Arg::Param { .. } => return None,
        };
        match self.evaluate(|ev| ev.eval_argument(&src, at))?.0 {
            Value::Str(s) => Some(Target::Literal(s)),
            v @ (Value::Char(_) | Value::Int(_)) => Some(Target::Literal(constant::to_text(&v))),
            _ => None,
        }
    }

    /// The last New-PSSession before token `before` that names its session `name`.
    fn session_named(&self, name: &str, before: usize) -> Option<usize> {
        let named = self.named_sessions().get(&name.to_ascii_lowercase())?;
        let invs = &self.reading.invocations;
        let n = named.partition_point(|&i| invs[i].token < before);
        named.get(n.checked_sub(1)?).copied()
    }

    fn is_local(&self, b: &Bound, at: usize) -> bool {
        match (&b.transport, &b.target) {
            (Transport::Vm, _) => true,
            (Transport::WinRmUri, Target::Literal(u)) => is_local_name(uri_host(u), self.own),
            (Transport::WinRm | Transport::Ssh, Target::Literal(t)) => {
                is_local_name(t.rsplit('@').next().unwrap_or(t), self.own)
            }
            (_, Target::Expression(e)) => is_own_name_expr(e),
            (_, Target::Variable(v)) => self.variable_is_local(v, at, 0),
            _ => false,
        }
    }

    /// Whether `$v`, as set before token `at`, holds this computer (following `$b = $a`
    /// up to 8 variables back) or a session New-PSSession opened to it.
    fn variable_is_local(&self, v: &str, at: usize, depth: usize) -> bool {
        if v.eq_ignore_ascii_case("env:COMPUTERNAME") {
            return true;
        }
        match self.assignment_of(v, at) {
            Some((_, Assigned::Literal(l))) => is_local_name(l, self.own),
            Some((set_at, Assigned::Expr(e))) => {
                let other = e.strip_prefix('$').filter(|x| {
                    x.chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == ':')
                });
                is_own_name_expr(e)
                    || (depth < 8
                        && other.is_some_and(|x| self.variable_is_local(x, set_at, depth + 1)))
            }
            Some((_, Assigned::Command(i))) => self.new_session(*i).is_some_and(|(_, l)| l),
            None => false,
        }
    }

    /// Strings piped into Enter-PSSession bind to ComputerName by value: the first remote
    /// one (else the first) becomes the target. Whether it is local; None when nothing
    /// constant is piped.
    fn piped_computer_names(&self, b: &mut Bound, inv: &Invocation) -> Option<bool> {
        if b.transport != Transport::Session || b.target != Target::Implicit {
            return None;
        }
        let (s, e) = inv.piped_input?;
        let names: Vec<String> = match self.evaluate(|ev| ev.eval_pipeline(s, e))?.0 {
            Value::Str(x) => vec![x],
            Value::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    Value::Str(x) => Some(x),
                    _ => None,
                })
                .collect::<Option<_>>()?,
            _ => return None,
        };
        let first = names
            .iter()
            .find(|n| !is_local_name(n, self.own))
            .or(names.first())?;
        b.transport = Transport::WinRm;
        b.target = Target::Literal(first.clone());
        b.readings.push("pipeline:ComputerName".into());
        Some(is_local_name(first, self.own))
    }

    /// Binds an Enter-PSSession invocation and decides whether it stays local.
    fn session(&self, inv: &Invocation, reading: &str) -> Option<Session> {
        let (expanded, layers) = self.expand_splats(inv);
        let inv = &expanded;
        let mut b = bind_args(inv)?;
        b.readings.insert(0, reading.to_string());
        self.evaluate_target(&mut b, inv)?;
        if let (Transport::Session, Target::Variable(v)) = (&b.transport, &b.target) {
            if self.removed_before(v, inv.token) {
                return None;
            }
        }
        let mut local = self.is_local(&b, inv.token);
        // A session piped in or held in a variable: where New-PSSession opened it.
        let source = match (&b.transport, &b.target) {
            (Transport::Session, Target::Implicit) => inv.piped_from,
            (Transport::Session, Target::Variable(v)) => match self.value_of(v, inv.token) {
                Some(Assigned::Command(i)) => Some(*i),
                _ => None,
            },
            (Transport::Session, Target::Literal(name))
                if b.readings.iter().any(|r| r == "named:Name") =>
            {
                self.session_named(name, inv.token)
            }
            _ => None,
        };
        if let Some((nb, nl)) = source.and_then(|i| self.new_session(i)) {
            b.readings.push("session-from:New-PSSession".into());
            local = nl;
            b.target = nb.target;
            if nb.transport == Transport::Vm {
                b.transport = Transport::Vm;
            }
        } else if let Some(l) = self.piped_computer_names(&mut b, inv) {
            local = l;
        }
        if let (Target::Variable(v), false) = (&b.target, local) {
            if let Some(Assigned::Literal(l)) = self.value_of(v, inv.token) {
                b.readings.push(format!("variable:${v}"));
                b.target = Target::Literal(l.clone());
            }
        }
        let bound = b
            .readings
            .iter()
            .any(|r| r.starts_with("parameter:") || r == "pipeline:ComputerName")
            .then(|| b.target.text());
        Some(Session {
            command_line: self.command_line(inv, b.transport, bound.as_deref()),
            transport: b.transport,
            target: b.target,
            local,
            readings: b.readings,
            text: inv.text.clone(),
            layers: layers.into_iter().map(String::from).collect(),
        })
    }

    /// Splatted arguments (`@params` of a hashtable or array, built in the script) in place
    /// of the splat, the ones given explicitly winning (PowerShell 7.1; 5.1 refuses the
    /// repeat); then `$PSDefaultParameterValues` for Enter-PSSession's parameters not given.
    fn expand_splats(&self, inv: &Invocation) -> (Invocation, Vec<&'static str>) {
        let mut out = inv.clone();
        let mut layers = Vec::new();
        let explicit = given_params(&inv.args);
        out.args.clear();
        for a in &inv.args {
            let splat = match a {
                Arg::Literal(w) => w.strip_prefix('@').filter(|n| {
                    !n.is_empty() && n.chars().all(|c| c.is_alphanumeric() || c == '_')
                }),
                _ => None,
            };
            let Some(name) = splat else {
                out.args.push(a.clone());
                continue;
            };
            if name.eq_ignore_ascii_case("PSBoundParameters") {
                match self.bound_parameters(inv) {
                    Some(args) => {
                        layers.push("splatting");
                        out.args.extend(args);
                    }
                    None => out.args.push(a.clone()),
                }
                continue;
            }
            let value = self.evaluate(|ev| ev.eval_text(&format!("${{{name}}}"), inv.start));
            match value.map(|(v, _)| v) {
                Some(Value::Hash(entries)) => {
                    layers.push("splatting");
                    for (k, v) in entries {
                        let given = resolve_param(&k).is_ok_and(|(p, _)| explicit.contains(&p));
                        if !given {
                            push_named(&mut out.args, &k, v);
                        }
                    }
                }
                Some(Value::Array(items)) => {
                    layers.push("splatting");
                    out.args.extend(items.into_iter().map(value_as_arg));
                }
                // `@('x')` evaluates to its one element; a scalar splats as one argument
                Some(v @ (Value::Str(_) | Value::Int(_) | Value::Char(_))) => {
                    layers.push("splatting");
                    out.args.push(value_as_arg(v));
                }
                _ => out.args.push(a.clone()),
            }
        }
        if self.add_default_parameters(&mut out) {
            layers.push("default-parameter-values");
        }
        (out, layers)
    }

    /// `$PSDefaultParameterValues['Enter-PSSession:Param'] = value` (command part may be a
    /// wildcard) for each parameter the invocation does not give. Whether any was added.
    fn add_default_parameters(&self, inv: &mut Invocation) -> bool {
        let value = self.evaluate(|ev| ev.eval_text("$PSDefaultParameterValues", inv.start));
        let Some((Value::Hash(entries), _)) = value else {
            return false;
        };
        let given = given_params(&inv.args);
        let mut added = false;
        for (k, v) in entries {
            let Some((cmd, param)) = k.split_once(':') else {
                continue;
            };
            let applies = constant::glob_match(&cmd.trim().to_ascii_lowercase(), "enter-pssession");
            let new = resolve_param(param.trim()).is_ok_and(|(p, _)| !given.contains(&p));
            if applies && new {
                push_named(&mut inv.args, param.trim(), v);
                added = true;
            }
        }
        added
    }

    /// The invocation as it runs: `Enter-PSSession`, the target's parameter first, every
    /// parameter by its full name, positional arguments under the parameter they bind to,
    /// and values that are constants evaluated; at most 1 KB.
    /// `bound`: the target's value when it came from the calls of the function around
    /// (a parameter of that function), shown in place of the parameter.
    fn command_line(&self, inv: &Invocation, transport: Transport, bound: Option<&str>) -> String {
        let Some(p) = bind_params(&inv.args) else {
            return truncate_chars(format!("Enter-PSSession {}", inv.text), COMMAND_LINE_MAX);
        };
        let target_param = match transport {
            Transport::WinRm => "ComputerName",
            Transport::WinRmUri => "ConnectionUri",
            Transport::Ssh => "HostName",
            Transport::Session => "Session",
            Transport::Vm => "VMName",
        };
        let mut parts: Vec<(&str, Option<&Arg>)> = Vec::new();
        let positional_names = [target_param, "Credential"];
        for (k, a) in p.positional.iter().enumerate() {
            parts.push((positional_names[k.min(1)], Some(a)));
        }
        parts.extend(p.named.iter().map(|(n, a)| (*n, a.as_ref())));
        if bound.is_some() && !parts.iter().any(|(n, _)| *n == target_param) {
            parts.push((target_param, None));
        }
        parts.sort_by_key(|(n, _)| !TARGETS.contains(n));
        let mut line = String::from("Enter-PSSession");
        for (name, arg) in parts {
            line.push_str(" -");
            line.push_str(name);
            match (arg, bound) {
                (_, Some(value)) if name == target_param => {
                    line.push(' ');
                    line.push_str(value);
                }
                (Some(a), _) => {
                    line.push(' ');
                    line.push_str(&self.shown_value(a, inv.start));
                }
                (None, _) => {}
            }
            if line.len() > COMMAND_LINE_MAX {
                break;
            }
        }
        truncate_chars(line, COMMAND_LINE_MAX)
    }

    /// An argument as the command line shows it: its constant value when known, else as
    /// written.
    fn shown_value(&self, a: &Arg, at: usize) -> String {
        let src = match a {
            Arg::Literal(l) => return l.clone(),
            Arg::Param { name, .. } => return format!("-{name}"),
            Arg::Variable(v) => format!("${{{v}}}"),
            Arg::Expr(e) => e.clone(),
        };
        let written = || match a {
            Arg::Variable(v) => format!("${v}"),
            _ => src.clone(),
        };
        match self.evaluate(|ev| ev.eval_text(&src, at)).map(|(v, _)| v) {
            Some(v @ (Value::Str(_) | Value::Int(_) | Value::Char(_))) => constant::to_text(&v),
            _ => written(),
        }
    }

    /// Whether code at token `at` can run: not after a top-level return, and not inside a
    /// function or script block that nothing runs.
    fn runs(&self, at: usize) -> bool {
        self.running.get(at).copied().unwrap_or(true)
    }
}

/// New-PSSession, by its name or its alias.
fn is_new_pssession(name: &str) -> bool {
    matches!(command_key(name).as_str(), "new-pssession" | "nsn")
}

fn norm(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// (alias, command) of a Set-Alias / New-Alias invocation; `value` gives an argument's
/// text (a literal, or the constant value of a variable or expression).
fn alias_definition(
    inv: &Invocation,
    value: &mut dyn FnMut(&Arg) -> Option<String>,
) -> Option<(String, String)> {
    let mut pos = Vec::new();
    let (mut aname, mut avalue) = (None, None);
    let mut k = 0;
    while k < inv.args.len() {
        match &inv.args[k] {
            Arg::Param { name, value: v } => {
                let v = v.clone().or_else(|| {
                    let next = inv
                        .args
                        .get(k + 1)
                        .filter(|a| !matches!(a, Arg::Param { .. }))?;
                    k += 1;
                    value(next)
                });
                let p = name.to_ascii_lowercase();
                if "name".starts_with(&p) {
                    aname = v;
                } else if "value".starts_with(&p) {
                    avalue = v;
                }
            }
            other => pos.extend(value(other)),
        }
        k += 1;
    }
    let a = aname.or_else(|| pos.first().cloned())?;
    let v = avalue.or_else(|| pos.get(1).cloned())?;
    Some((norm(&a), command_key(&v)))
}

/// Most pieces of code read for one script (the script, strings run by
/// Invoke-Expression, encoded commands, subexpressions).
const MAX_PIECES: usize = 64;

/// Most sessions kept for one script (a script calling Enter-PSSession a million times
/// would otherwise make a record of a million targets).
pub const MAX_SESSIONS: usize = 64;

/// Keeps `s` among the first [`MAX_SESSIONS`] sessions; when full, a remote session
/// still takes the last place while every kept one is local, so lateral movement is
/// never lost to a flood of local ones.
fn keep_session(kept: &mut Vec<Session>, s: Session) {
    if kept.len() < MAX_SESSIONS {
        kept.push(s);
    } else if !s.local && kept.iter().all(|k| k.local) {
        if let Some(last) = kept.last_mut() {
            *last = s;
        }
    }
}

/// Code a `powershell` / `pwsh` command line runs: `-Command ...` or `-EncodedCommand b64`.
/// `value` gives an argument's text (a literal's, or a variable's or expression's value
/// when known).
fn powershell_args(
    args: &[Arg],
    value: &mut dyn FnMut(&Arg) -> Option<String>,
) -> Option<(String, &'static str)> {
    let mut text = |a: &Arg| match a {
        Arg::Param { .. } => None,
        other => value(other),
    };
    let mut k = 0;
    while k < args.len() {
        let (flag, value) = match &args[k] {
            Arg::Param { name, value } => (name.to_ascii_lowercase(), value.clone()),
            Arg::Literal(l) if l.starts_with('-') || l.starts_with('/') => {
                (l[1..].to_ascii_lowercase(), None)
            }
            _ => {
                k += 1;
                continue;
            }
        };
        if (flag.len() >= 2 && "encodedcommand".starts_with(&flag)) || flag == "e" || flag == "ec" {
            let b64 = value
                .clone()
                .or_else(|| args.get(k + 1).and_then(&mut text))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()?;
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            return Some((String::from_utf16_lossy(&units), "encoded-command"));
        }
        if !flag.is_empty() && "command".starts_with(&flag) {
            let rest: Vec<String> = args[k + 1..].iter().filter_map(&mut text).collect();
            return Some((rest.join(" "), "powershell-command"));
        }
        k += 1;
    }
    None
}

fn is_powershell(name: &str) -> bool {
    let n = command_key(name);
    let n = n.rsplit(['/', '\\']).next().unwrap_or(&n).to_string();
    matches!(n.trim_end_matches(".exe"), "powershell" | "pwsh")
}

/// A piece of code to read: its text, how it comes to run (`via`, empty for the script
/// itself), and the layers peeled to reach it.
struct Piece {
    code: String,
    via: &'static str,
    layers: Vec<&'static str>,
}

/// The `Enter-PSSession` invocations a script would run.
pub fn sessions(script: &str, own_computer: Option<&str>) -> Vec<Session> {
    let mut out = Vec::new();
    let mut queue = vec![Piece {
        code: script.to_string(),
        via: "",
        layers: Vec::new(),
    }];
    let mut aliases: HashSet<String> = ["enter-pssession", "etsn"].map(String::from).into();
    let mut budget = Budget::for_script(script.len());
    let read_budget = script.len().saturating_mul(4).max(1 << 16);
    let mut read_bytes = 0usize;
    let mut pieces = 0usize;
    while let Some(piece) = queue.pop() {
        pieces += 1;
        read_bytes += piece.code.len();
        if pieces > MAX_PIECES || read_bytes > read_budget || budget.spent() {
            break;
        }
        let found = read_piece(&piece, own_computer, &mut aliases, &mut budget);
        for mut s in found.sessions {
            if !piece.via.is_empty() {
                s.readings.push(format!("via:{}", piece.via));
            }
            keep_session(&mut out, s);
        }
        queue.extend(found.runs);
    }
    out
}

/// What reading one piece found: sessions, and more code that runs.
struct PieceFindings {
    sessions: Vec<Session>,
    runs: Vec<Piece>,
}

impl<'r> Resolver<'r> {
    /// The resolver of one piece: its reading and the indexes every session asks.
    fn new(
        reading: &'r Reading,
        lexed: &'r Lexed,
        own: Option<&'r str>,
        budget: &'r mut Budget,
    ) -> Resolver<'r> {
        Resolver {
            reading,
            own,
            text: &lexed.text,
            budget: std::cell::RefCell::new(budget),
            running: running_tokens(reading, lexed.tokens.len()),
            assigned: assignments_by_variable(reading),
            removals: invocations_of(reading, &["remove-pssession", "rsn"]),
            item_removals: invocations_of(
                reading,
                &["remove-item", "ri", "rm", "del", "erase", "rd", "rmdir"],
            ),
            shadows: OnceCell::new(),
            functions: OnceCell::new(),
            loops: OnceCell::new(),
            calls_by_name: OnceCell::new(),
            removed_items: OnceCell::new(),
            named_sessions: OnceCell::new(),
            closed_sessions: OnceCell::new(),
            bound: std::cell::RefCell::new(HashMap::new()),
        }
    }

    // The indexes, each built the first time a session asks (most pieces open none).

    fn functions(&self) -> &Nest {
        self.functions.get_or_init(|| function_spans(self.reading))
    }

    fn shadows(&self) -> &HashMap<(usize, usize), Vec<usize>> {
        self.shadows
            .get_or_init(|| shadows_by_scope(self.reading, self.functions()))
    }

    fn loops(&self) -> &Nest {
        self.loops.get_or_init(|| {
            let loops = self.reading.loops.iter().enumerate();
            let spans = loops
                .filter(|(_, l)| l.from < l.to)
                .map(|(k, l)| (l.from, l.to, k));
            Nest::new(spans.collect())
        })
    }

    fn calls_by_name(&self) -> &HashMap<String, Vec<usize>> {
        self.calls_by_name
            .get_or_init(|| invocations_by_name(self.reading))
    }

    fn named_sessions(&self) -> &HashMap<String, Vec<usize>> {
        self.named_sessions
            .get_or_init(|| sessions_by_name(self.reading))
    }

    fn removed_items(&self) -> &HashMap<String, Vec<usize>> {
        self.removed_items
            .get_or_init(|| self.removed_items_index())
    }

    fn closed_sessions(&self) -> &HashMap<String, Vec<usize>> {
        self.closed_sessions
            .get_or_init(|| self.closed_sessions_index())
    }
}

/// Reads one piece: its aliases, its invocations that run, the code they run.
fn read_piece(
    piece: &Piece,
    own_computer: Option<&str>,
    aliases: &mut HashSet<String>,
    budget: &mut Budget,
) -> PieceFindings {
    let lexed = tokenize(&piece.code);
    let mut runs: Vec<Piece> = lexed
        .nested
        .iter()
        .map(|n| piece.then(n.clone(), "subexpression-in-string", &[]))
        .collect();
    // Aliases first (a script defines them before it uses them), then the commands.
    let changes = alias_changes(&lexed, aliases, budget);
    // calls of the script's own functions, to bind their parameters
    let functions = defined_functions(&lexed.tokens);
    let interesting = |k: &str| {
        matches!(
            k,
            "invoke-expression"
                | "iex"
                | "new-pssession"
                | "nsn"
                | "start-process"
                | "saps"
                | "cmd"
                | "cmd.exe"
                | "start"
                | "invoke-command"
                | "icm"
                | "remove-pssession"
                | "rsn"
                | "mock"
                | "remove-item"
                | "ri"
                | "rm"
                | "del"
                | "erase"
                | "rd"
                | "rmdir"
        ) || is_powershell(k)
            || aliases.contains(k)
            || functions.contains(k)
            || changes.by_alias.contains_key(k)
            // `& $block args`: its arguments bind the block's parameters
            || k.starts_with('$')
    };
    let reading = read(&lexed.text, &lexed.tokens, &interesting, budget);
    let resolver = Resolver::new(&reading, &lexed, own_computer, budget);
    for (code, layers, at) in &reading.code_strings {
        if resolver.runs(*at) {
            runs.push(piece.then(code.clone(), "scriptblock-create", layers));
        }
    }
    runs.extend(expression_statement_runs(&resolver, piece));
    let mut sessions = Vec::new();
    for inv in reading
        .invocations
        .iter()
        .filter(|i| resolver.runs(i.token))
    {
        match invocation_effect(&resolver, inv, aliases, &changes) {
            Effect::Runs(code) => {
                runs.extend(code.into_iter().map(|(c, via, layers)| {
                    piece.then(c, via, &[&inv.layers[..], &layers].concat())
                }))
            }
            Effect::Session(mut s) => {
                let own = std::mem::take(&mut s.layers);
                s.layers = piece
                    .layers
                    .iter()
                    .chain(&inv.layers)
                    .map(|l| l.to_string())
                    .chain(own)
                    .collect();
                keep_session(&mut sessions, s);
            }
            Effect::Nothing => {}
        }
    }
    PieceFindings { sessions, runs }
}

impl Piece {
    /// Code this piece runs, through `via`, after peeling `more` layers.
    fn then(&self, code: String, via: &'static str, more: &[&'static str]) -> Piece {
        let mut layers = self.layers.clone();
        for l in more.iter().chain(std::iter::once(&via)) {
            if !layers.contains(l) && layers.len() < constant::MAX_DEPTH {
                layers.push(l);
            }
        }
        Piece { code, via, layers }
    }
}

/// The code that expression statements run (`[scriptblock]::Create(..).Invoke()`,
/// `$ExecutionContext.InvokeCommand.InvokeScript(..)`).
fn expression_statement_runs(resolver: &Resolver, piece: &Piece) -> Vec<Piece> {
    let mut runs = Vec::new();
    for &(token, start, end) in &resolver.reading.expression_statements {
        if !resolver.runs(token) {
            continue;
        }
        let found = resolver.evaluate(|ev| {
            let _ = ev.eval_range(start, end);
            ev.take_runs()
        });
        // a pipeline into Invoke-Expression is the reader's own invocation
        for r in found
            .into_iter()
            .filter(|r| r.layers.last() != Some(&"invoke-expression"))
        {
            let via = r.layers.last().copied().unwrap_or("expression");
            runs.push(piece.then(r.code, via, &r.layers));
        }
    }
    runs
}

/// What a call gives one parameter of a function the script defines.
#[derive(Debug, Clone, PartialEq)]
enum Given<'a> {
    Unbound,
    /// A `[switch]` named in the call.
    Switch,
    /// `-Name:value`.
    Colon(String),
    Value(&'a Arg),
}

/// Binds call `c`'s arguments to a function's declared `params` as PowerShell binds a
/// simple function's: by name or an unambiguous prefix, then by position among the
/// parameters not named ([switch]es take no position). None when a name matches no
/// parameter, or several.
fn bound_arguments<'a>(c: &'a Invocation, params: &[(String, bool)]) -> Option<Vec<Given<'a>>> {
    let mut given = vec![Given::Unbound; params.len()];
    let mut positional = Vec::new();
    let mut args = c.args.iter();
    while let Some(a) = args.next() {
        let Arg::Param { name, value } = a else {
            positional.push(a);
            continue;
        };
        let n = name.to_ascii_lowercase();
        let hits: Vec<usize> = (0..params.len())
            .filter(|&i| params[i].0.starts_with(&n))
            .collect();
        let exact = hits.iter().find(|&&i| params[i].0 == n).copied();
        let i = exact.or((hits.len() == 1).then(|| hits[0]))?;
        given[i] = match (value, params[i].1) {
            (Some(v), _) => Given::Colon(v.clone()),
            (None, true) => Given::Switch,
            (None, false) => Given::Value(args.next()?),
        };
    }
    let mut positional = positional.into_iter();
    for (g, (_, switch)) in given.iter_mut().zip(params) {
        if *g == Given::Unbound && !switch {
            match positional.next() {
                Some(a) => *g = Given::Value(a),
                None => break,
            }
        }
    }
    Some(given)
}

/// The command `name` stands for at token `at`: through the aliases the script set before
/// (`Set-Alias x Invoke-Expression`), up to 8 deep; else `name` itself.
fn aliased_command(name: &str, at: usize, changes: &AliasChanges) -> String {
    let mut name = name.to_string();
    for _ in 0..8 {
        match changes.last_before(&name, at) {
            Some(c) if c.target != name => name = c.target.clone(),
            _ => break,
        }
    }
    name
}

/// A name without its scope (`global:`, `script:`, `local:`, `private:`).
fn unscoped(name: &str) -> &str {
    ["global:", "script:", "local:", "private:"]
        .iter()
        .find_map(|s| name.strip_prefix(s))
        .unwrap_or(name)
}

/// The names of the functions and filters the code defines (lowercase).
fn defined_functions(tokens: &[Token]) -> HashSet<String> {
    let word = |i: usize| match tokens.get(i).map(|t| &t.tok) {
        Some(Tok::Word(w)) => Some(command_key(w)),
        _ => None,
    };
    (0..tokens.len())
        .filter(|&i| matches!(word(i).as_deref(), Some("function" | "filter")))
        .filter_map(|i| word(i + 1).map(|w| unscoped(&w).to_string()))
        .collect()
}

/// One `Set-Alias` / `New-Alias` of the piece: where, the alias, and whether it now
/// stands for a name that opens a session.
struct AliasChange {
    token: usize,
    alias: String,
    /// The command it now stands for (lowercase, module qualifier removed).
    target: String,
    to_session: bool,
}

/// A piece's alias changes, in order, and where each alias's changes are.
struct AliasChanges {
    list: Vec<AliasChange>,
    /// Per alias, the indices of its changes in `list` (in order).
    by_alias: HashMap<String, Vec<usize>>,
}

impl AliasChanges {
    /// The last change of `alias` before token `at`.
    fn last_before(&self, alias: &str, at: usize) -> Option<&AliasChange> {
        let ks = self.by_alias.get(alias)?;
        let n = ks.partition_point(|&k| self.list[k].token < at);
        ks.get(n.checked_sub(1)?).map(|&k| &self.list[k])
    }
}

/// The aliases the code defines or re-points (`Set-Alias x etsn`, `sal etsn Get-Date`),
/// values evaluated; the ones that now open a session are added to `aliases` too.
fn alias_changes(
    lexed: &Lexed,
    aliases: &mut HashSet<String>,
    budget: &mut Budget,
) -> AliasChanges {
    let alias_cmd = |k: &str| matches!(k, "set-alias" | "new-alias" | "sal" | "nal");
    let defs = read(&lexed.text, &lexed.tokens, &alias_cmd, budget);
    let mut changes = Vec::new();
    for inv in &defs.invocations {
        let mut ev = Evaluator::new(&lexed.text, &defs, budget);
        let mut layers = Vec::new();
        let mut value = |a: &Arg| argument_value(&mut ev, a, inv.start, &mut layers);
        let Some((alias, target)) = alias_definition(inv, &mut value) else {
            continue;
        };
        let to_session = aliases.contains(&target);
        if to_session {
            aliases.insert(alias.clone());
        }
        changes.push(AliasChange {
            token: inv.token,
            alias,
            target: command_key(&target),
            to_session,
        });
    }
    changes.sort_by_key(|c| c.token);
    let mut by_alias: HashMap<String, Vec<usize>> = HashMap::new();
    for (k, c) in changes.iter().enumerate() {
        by_alias.entry(c.alias.clone()).or_default().push(k);
    }
    AliasChanges {
        list: changes,
        by_alias,
    }
}

/// Code to run: text, how it runs, the layers peeled to reach it.
type Run = (String, &'static str, Vec<&'static str>);

/// What one invocation that runs does, as far as sessions go.
enum Effect {
    /// It runs more code.
    Runs(Vec<Run>),
    /// It opens a session.
    Session(Session),
    Nothing,
}

fn invocation_effect(
    resolver: &Resolver,
    inv: &Invocation,
    aliases: &HashSet<String>,
    changes: &AliasChanges,
) -> Effect {
    let name = aliased_command(&command_key(&inv.name), inv.token, changes);
    let runs = |c: Option<(String, &'static str)>| {
        Effect::Runs(c.into_iter().map(|(c, via)| (c, via, Vec::new())).collect())
    };
    match name.as_str() {
        "invoke-expression" | "iex" => Effect::Runs(resolver.evaluate(|ev| iex_payloads(ev, inv))),
        "invoke-command" | "icm" => Effect::Runs(local_script_block(resolver, inv)),
        "start-process" | "saps" | "start" => runs(start_process_payload(resolver, inv)),
        "cmd" | "cmd.exe" => runs(cmd_payload(resolver, inv)),
        "new-pssession" => Effect::Nothing,
        n if is_powershell(n) => resolver.evaluate(|ev| {
            let mut layers = Vec::new();
            let mut value = |a: &Arg| argument_value(ev, a, inv.start, &mut layers);
            let code = powershell_args(&inv.args, &mut value);
            Effect::Runs(
                code.into_iter()
                    .map(|(c, via)| (c, via, layers.clone()))
                    .collect(),
            )
        }),
        _ if resolver.opens_session(inv, aliases, changes) => {
            let written = command_key(&inv.name);
            let reading = match (written.as_str(), inv.call_operator) {
                (_, true) => "call-operator",
                ("enter-pssession", false) => "command",
                ("etsn", false) => "alias:etsn",
                _ => "script-alias",
            };
            resolver
                .session(inv, reading)
                .map_or(Effect::Nothing, Effect::Session)
        }
        _ => Effect::Nothing,
    }
}

/// The code `Invoke-Expression` runs: its argument or its piped input, when constant.
fn iex_payloads(ev: &mut Evaluator, inv: &Invocation) -> Vec<Run> {
    let at = inv.start;
    let mut out = Vec::new();
    let take = |v: Option<constant::Evaluated>, out: &mut Vec<Run>| {
        if let Some((v, layers)) = v.filter(|(v, _)| *v != Value::Null) {
            out.push((constant::to_text(&v), "invoke-expression", layers));
        }
    };
    for arg in &inv.args {
        let v = match arg {
            Arg::Literal(s) => Some((Value::Str(s.clone()), Vec::new())),
            Arg::Expr(e) => ev.eval_text(e, at),
            Arg::Variable(v) => ev.eval_text(&format!("${{{v}}}"), at),
            Arg::Param { .. } => None,
        };
        take(v, &mut out);
    }
    if let Some((s, e)) = inv.piped_input {
        let v = ev.eval_range(s, e);
        take(v, &mut out);
    }
    for r in ev.take_runs() {
        out.push((r.code, "invoke-expression", r.layers));
    }
    out
}

/// `Invoke-Command -ScriptBlock $sb` with no remote target runs the block here: the code
/// of a block built from constants (literal `{ }` blocks are read in place already).
fn local_script_block(resolver: &Resolver, inv: &Invocation) -> Vec<Run> {
    let remote = [
        "computername",
        "cn",
        "session",
        "connectionuri",
        "uri",
        "hostname",
        "vmname",
        "vmid",
        "containerid",
    ];
    let mut block = None;
    let mut k = 0;
    while k < inv.args.len() {
        match &inv.args[k] {
            Arg::Param { name, .. } if remote.iter().any(|r| r.eq_ignore_ascii_case(name)) => {
                return Vec::new()
            }
            Arg::Param { name, value: None }
                if "scriptblock".starts_with(&name.to_ascii_lowercase())
                    || name.eq_ignore_ascii_case("sb") =>
            {
                block = inv.args.get(k + 1).cloned();
                k += 1;
            }
            a @ (Arg::Variable(_) | Arg::Expr(_)) if block.is_none() => block = Some(a.clone()),
            _ => {}
        }
        k += 1;
    }
    let src = match block {
        Some(Arg::Variable(v)) => format!("${{{v}}}"),
        Some(Arg::Expr(e)) if !e.starts_with('{') => e,
        _ => return Vec::new(),
    };
    let at = inv.start;
    match resolver.evaluate(|ev| ev.eval_text(&src, at)) {
        Some((Value::Block(code), layers)) if !is_literal_block_variable(resolver, &src, at) => {
            vec![(code, "invoke-command", layers)]
        }
        _ => Vec::new(),
    }
}

/// Whether `src` is `${v}` holding a literal `{ }` block (read in place already).
fn is_literal_block_variable(resolver: &Resolver, src: &str, at: usize) -> bool {
    let Some(v) = src.strip_prefix("${").and_then(|s| s.strip_suffix('}')) else {
        return false;
    };
    resolver
        .reading
        .definition(&v.to_ascii_lowercase(), at)
        .is_some_and(|d| resolver.text.as_bytes().get(d.start) == Some(&b'{'))
}

/// `Start-Process powershell -ArgumentList ...`: the code the child PowerShell runs.
/// `cmd /c "powershell ..."` (or `/k`, `/r`): the PowerShell command line cmd starts, to
/// read as code. Only a line that starts PowerShell: cmd's own commands are not read.
fn cmd_payload(resolver: &Resolver, inv: &Invocation) -> Option<(String, &'static str)> {
    let at = inv.args.iter().position(|a| {
        matches!(a, Arg::Literal(l) if ["/c", "/k", "/r"].iter().any(|s| l.eq_ignore_ascii_case(s)))
    })?;
    let rest = &inv.args[at + 1..];
    let words: Vec<String> = rest
        .iter()
        .map(|a| match a {
            Arg::Param { name, value } => match value {
                Some(v) => format!("-{name}:{v}"),
                None => format!("-{name}"),
            },
            _ => {
                let w = resolver
                    .evaluate(|ev| argument_value(ev, a, inv.start, &mut Vec::new()))
                    .unwrap_or_default();
                // one argument stays one word of the command line; cmd strips the
                // quotes of a whole line given as one
                if rest.len() > 1 && w.contains(' ') && !w.starts_with('"') {
                    format!("\"{w}\"")
                } else {
                    w
                }
            }
        })
        .collect();
    let line = words.join(" ");
    let first = line.trim_start().trim_start_matches(['"', '\'']);
    let program = first.split([' ', '"', '\'']).next().unwrap_or("");
    is_powershell(program).then_some((line, "cmd-command"))
}

fn start_process_payload(resolver: &Resolver, inv: &Invocation) -> Option<(String, &'static str)> {
    let file = inv.args.iter().find_map(|a| match a {
        Arg::Literal(l) => Some(l.clone()),
        _ => None,
    });
    if !file.as_deref().is_some_and(is_powershell) {
        return None;
    }
    let mut args = Vec::new();
    let mut in_list = false;
    for a in &inv.args {
        match a {
            Arg::Param { name, .. } => {
                in_list = "argumentlist".starts_with(&name.to_ascii_lowercase())
                    || name.eq_ignore_ascii_case("args");
            }
            Arg::Literal(l) if in_list => args.push(Arg::Literal(l.clone())),
            // an array of arguments: each its own
            Arg::Expr(_) | Arg::Variable(_) if in_list => {
                let src = match a {
                    Arg::Variable(v) => format!("${{{v}}}"),
                    Arg::Expr(e) => e.clone(),
                    _ => continue,
                };
                if let Some((v, _)) = resolver.evaluate(|ev| ev.eval_text(&src, inv.start)) {
                    let items = match v {
                        Value::Array(items) => items,
                        one => vec![one],
                    };
                    args.extend(items.iter().map(|i| Arg::Literal(constant::to_text(i))));
                }
            }
            _ => {}
        }
    }
    powershell_args(&args, &mut |a: &Arg| match a {
        Arg::Literal(s) | Arg::Expr(s) => Some(s.clone()),
        _ => None,
    })
}

/// An argument's text: a literal as written; a variable's or expression's constant value
/// (an expression falls back to its source text), noting the layers peeled.
fn argument_value(
    ev: &mut Evaluator,
    a: &Arg,
    at: usize,
    layers: &mut Vec<&'static str>,
) -> Option<String> {
    let evaluated = match a {
        Arg::Literal(s) => return Some(s.clone()),
        Arg::Param { .. } => return None,
        Arg::Variable(v) => ev.eval_text(&format!("${{{v}}}"), at),
        Arg::Expr(e) => ev.eval_text(e, at),
    };
    match (evaluated, a) {
        (Some((v, more)), _) if v != Value::Null => {
            layers.extend(more);
            Some(constant::to_text(&v))
        }
        (_, Arg::Expr(e)) => Some(e.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(script: &str) -> Vec<Session> {
        sessions(script, Some("WS01.corp.contoso.com"))
            .into_iter()
            .filter(|s| !s.local)
            .collect()
    }

    #[test]
    fn finds_the_sessions_the_literal_rule_misses() {
        for s in [
            "etsn -cn web01",
            "Enter-PSSession web01",
            "Ent`er-PSSession -ComputerName web01",
            "Enter-PSSession -ConnectionUri https://web01:5986/wsman",
            "Enter-PSSession -HostName lnx02 -UserName root",
            "$s = New-PSSession db01; Enter-PSSession -Session $s",
            "New-PSSession web01 | Enter-PSSession",
            "Microsoft.PowerShell.Core\\Enter-PSSession -Comp web01",
            "& 'Enter-PSSession' -cn web01",
            "enter-pssession \u{2013}ComputerName web01",
            "Enter-PSSession -ComputerName:web01",
            "Enter-PSSession `\n  -ComputerName web01",
            "iex 'Enter-PSSession -cn web01'",
            "Set-Alias go Enter-PSSession; go web01",
            "Write-Host \"$(Enter-PSSession web01)\"",
            "Enter-PSSession -ComputerName $target",
            "Enter-PSSession (Get-Content hosts.txt)[0]",
        ] {
            assert_eq!(remote(s).len(), 1, "{s}");
        }
        let enc = base64::engine::general_purpose::STANDARD.encode(
            "Enter-PSSession web01"
                .encode_utf16()
                .flat_map(|u| u.to_le_bytes())
                .collect::<Vec<u8>>(),
        );
        assert_eq!(remote(&format!("powershell -enc {enc}")).len(), 1);
    }

    #[test]
    fn drops_what_opens_nothing_remote() {
        for s in [
            "# Enter-PSSession -ComputerName old",
            "<# Enter-PSSession -ComputerName old #> Get-Date",
            "Get-Help Enter-PSSession; Test-Connection -ComputerName gw",
            "Write-Host 'Enter-PSSession -ComputerName x'",
            "Enter-PSSession -ComputerName localhost",
            "Enter-PSSession -cn ws01",
            "Enter-PSSession 127.0.0.1",
            "Enter-PSSession -ComputerName $env:COMPUTERNAME",
            "Enter-PSSession -VMName dev-vm",
            "Enter-PSSession -C web01",
            "Invoke-Command -ComputerName x { Get-Date }",
            "Enter-PSSessionLog -ComputerName x",
        ] {
            assert!(remote(s).is_empty(), "{s}: {:?}", remote(s));
        }
        let local = sessions("Enter-PSSession -VMName dev", None);
        assert_eq!(local[0].transport, Transport::Vm);
        assert!(local[0].local);
    }

    #[test]
    fn reports_transport_and_target() {
        let s = &remote("Enter-PSSession -Uri http://fs01:5985/wsman")[0];
        assert_eq!(s.transport, Transport::WinRmUri);
        assert_eq!(s.target, Target::Literal("http://fs01:5985/wsman".into()));
        let s = &remote("etsn -cn $h")[0];
        assert_eq!(s.target, Target::Variable("h".into()));
        assert!(s.readings.contains(&"alias:etsn".to_string()));
    }

    /// Release-mode timing of 1 MB and 8 MB scripts (run with --ignored --nocapture).
    #[test]
    #[ignore]
    fn timing_of_large_scripts() {
        for mb in [1usize, 8] {
            let script = format!(
                "{}\r\nEnter-PSSession -ComputerName dc01",
                "Get-Date # filler line\r\n".repeat(mb * (1 << 20) / 24)
            );
            let t = std::time::Instant::now();
            assert_eq!(remote(&script).len(), 1);
            let secs = t.elapsed().as_secs_f64();
            eprintln!("{mb} MB: {:.3}s, {:.1} MB/s", secs, mb as f64 / secs);
        }
    }

    #[test]
    /// 100 000 nested parentheses and a 1 MB line are read without recursion or
    /// backtracking (the speed is measured by the ignored `timing_of_large_scripts`).
    fn deep_nesting_and_long_text_are_read_whole() {
        let deep = format!(
            "{}Enter-PSSession web01{}",
            "(".repeat(100_000),
            ")".repeat(100_000)
        );
        assert_eq!(remote(&deep).len(), 1);
        let long = "a".repeat(1 << 20) + " ; Enter-PSSession web01";
        assert_eq!(remote(&long).len(), 1);
    }
}
