//! PowerShell's expression grammar, as far as constant evaluation needs it: statements,
//! pipelines, the binary operators by precedence, unary operators and casts, members and
//! indexes, and the literals (strings with their expansions, here-strings, numbers,
//! arrays, hashtables, script blocks). Parsing and evaluating are one pass.

use super::commands::{self, CmdArg};
use super::{dotnet, Evaluator, Value, ELEMENT_BYTES};

/// Binary operators from the loosest to the tightest (PowerShell's about_Operator_Precedence).
const LEVELS: &[&[&str]] = &[
    &["and", "or", "xor"],
    &[
        "eq",
        "ne",
        "gt",
        "ge",
        "lt",
        "le",
        "ieq",
        "ine",
        "ceq",
        "cne",
        "like",
        "notlike",
        "ilike",
        "clike",
        "match",
        "notmatch",
        "imatch",
        "cmatch",
        "replace",
        "ireplace",
        "creplace",
        "split",
        "isplit",
        "csplit",
        "join",
        "contains",
        "notcontains",
        "in",
        "notin",
        "is",
        "isnot",
        "as",
    ],
    &["band", "bor", "bxor", "shl", "shr"],
    &["+", "-"],
    &["*", "/", "%"],
    &["f"],
];

/// Statement keywords: constant evaluation stops at them (the reader handles control flow).
const KEYWORDS: &[&str] = &[
    "if", "elseif", "else", "foreach", "for", "while", "do", "until", "switch", "function",
    "filter", "workflow", "param", "begin", "process", "end", "try", "catch", "finally", "trap",
    "exit", "throw", "break", "continue", "class", "enum", "using", "data",
];

pub(super) fn is_dash(c: char) -> bool {
    matches!(c, '-' | '\u{2013}' | '\u{2014}' | '\u{2015}')
}

pub(super) fn is_squote(c: char) -> bool {
    matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}')
}

pub(super) fn is_dquote(c: char) -> bool {
    matches!(c, '"' | '\u{201C}' | '\u{201D}' | '\u{201E}')
}

/// A position in some source text, and where that text sits in the code (variables are
/// looked up as defined before `base`).
pub(super) struct Parser<'s> {
    s: &'s [char],
    i: usize,
    base: usize,
    /// Inside method arguments: a comma separates arguments instead of making an array.
    no_comma: bool,
}

impl<'s> Parser<'s> {
    pub(super) fn new(s: &'s [char], base: usize) -> Self {
        Parser {
            s,
            i: 0,
            base,
            no_comma: false,
        }
    }

    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn at(&self, k: usize) -> Option<char> {
        self.s.get(self.i + k).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        hit
    }

    /// Skips blanks, line continuations and comments, not newlines.
    fn ws(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                '\n' => return,
                '`' if matches!(self.at(1), Some('\n') | Some('\r')) => self.i += 2,
                '<' if self.at(1) == Some('#') => {
                    self.i += 2;
                    while self.i < self.s.len()
                        && !(self.peek() == Some('#') && self.at(1) == Some('>'))
                    {
                        self.i += 1;
                    }
                    self.i = (self.i + 2).min(self.s.len());
                }
                '#' => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.i += 1;
                    }
                }
                c if c.is_whitespace() => self.i += 1,
                _ => return,
            }
        }
    }

    /// Skips blanks and newlines.
    fn ws_nl(&mut self) {
        loop {
            self.ws();
            if !self.eat('\n') {
                return;
            }
        }
    }

    /// `.Key = value`, `[key] = value` or `.Add(key, value)`: the key and the value.
    pub(super) fn member_assignment(&mut self, ev: &mut Evaluator) -> Option<(String, Value)> {
        // `.Add(key, value)`
        let add = self
            .s
            .get(self.i..self.i + 5)
            .is_some_and(|w| w.iter().collect::<String>().eq_ignore_ascii_case(".add("));
        if add {
            self.i += 5;
            let mut args = ev.nest(|ev| self.method_args(ev))?;
            if args.len() != 2 {
                return None;
            }
            let v = args.pop()?;
            return Some((dotnet::to_str(&args[0]), v));
        }
        let key = if self.eat('.') {
            match self.peek()? {
                c if is_squote(c) => self.single_quoted()?,
                c if is_dquote(c) => self.double_quoted(ev, false)?,
                _ => self.bare_word_until(&['=', '.', '[']),
            }
        } else if self.eat('[') {
            let k = ev.nest(|ev| self.group(ev, ']'))?;
            dotnet::to_str(&k)
        } else {
            return None;
        };
        self.ws();
        self.eat('=').then_some(())?;
        self.ws_nl();
        let from = self.i;
        // a value not known here is kept as its source, like a hashtable entry's
        let v = self.pipeline(ev).unwrap_or_else(|| {
            let src: String = self.s[from..].iter().collect();
            Value::Opaque(src.trim().to_string())
        });
        Some((key, v))
    }

    /// One command argument that must span the whole text.
    pub(super) fn whole_argument(&mut self, ev: &mut Evaluator) -> Option<Value> {
        self.ws();
        let v = self.argument(ev)?;
        self.ws_nl();
        (self.i == self.s.len()).then_some(v)
    }

    /// One pipeline that must span the whole text.
    pub(super) fn whole_pipeline(&mut self, ev: &mut Evaluator) -> Option<Value> {
        let v = self.pipeline(ev)?;
        self.ws_nl();
        (self.i == self.s.len()).then_some(v)
    }

    /// Where the parser is.
    pub(super) fn offset(&self) -> usize {
        self.i
    }

    /// One operand of the call operator: a primary expression with its members and indexes.
    pub(super) fn operand(&mut self, ev: &mut Evaluator) -> Option<Value> {
        self.ws();
        if self.peek() == Some('[') {
            let name = self.type_literal()?;
            return self.postfix_on(ev, Value::Type(name));
        }
        self.postfix(ev)
    }

    /// The statements to the end of the text, as one value.
    pub(super) fn statements_value(&mut self, ev: &mut Evaluator) -> Option<Value> {
        let out = self.statements(ev, None)?;
        Some(collapse(out))
    }

    /// Statements up to `close` (consumed) or the end: what they output.
    fn statements(&mut self, ev: &mut Evaluator, close: Option<char>) -> Option<Vec<Value>> {
        let mut out = Vec::new();
        loop {
            while {
                self.ws();
                self.eat('\n') || self.eat(';')
            } {}
            match self.peek() {
                None if close.is_none() => return Some(out),
                None => return None,
                Some(c) if Some(c) == close => {
                    self.i += 1;
                    return Some(out);
                }
                _ => {}
            }
            if !ev.step() {
                return None;
            }
            if let Some(v) = self.statement(ev)? {
                unroll_into(v, &mut out);
            }
        }
    }

    /// One statement: an assignment (kept as a local), `[array]::Reverse($v)`, `return`, or
    /// a pipeline (its output).
    fn statement(&mut self, ev: &mut Evaluator) -> Option<Option<Value>> {
        let start = self.i;
        if self.eat('$') {
            let name = self.variable_name();
            self.ws();
            if self.peek() == Some('=') && self.at(1) != Some('=') {
                self.i += 1;
                self.ws_nl();
                let v = self.pipeline(ev)?;
                ev.locals.push((name.to_ascii_lowercase(), v));
                return Some(None);
            }
            self.i = start;
        }
        if self.starts_with_ignore_case("[array]::reverse(") {
            self.i += "[array]::reverse(".len();
            self.ws();
            self.eat('$').then_some(())?;
            let name = self.variable_name().to_ascii_lowercase();
            self.ws();
            self.eat(')').then_some(())?;
            let v = ev.variable(&name, self.base)?;
            ev.layer("reverse");
            ev.locals.push((name, dotnet::reversed(v)?));
            return Some(None);
        }
        if self.word_ahead().eq_ignore_ascii_case("return") {
            self.i += "return".len();
            self.ws();
            if matches!(
                self.peek(),
                None | Some('\n') | Some(';') | Some('}') | Some(')')
            ) {
                return Some(None);
            }
        }
        self.pipeline(ev).map(Some)
    }

    fn starts_with_ignore_case(&self, p: &str) -> bool {
        let mut k = self.i;
        for pc in p.chars() {
            match self.s.get(k) {
                Some(c) if c.to_ascii_lowercase() == pc => k += 1,
                _ => return false,
            }
        }
        true
    }

    /// The bare word at the cursor (not consumed).
    fn word_ahead(&self) -> String {
        self.s[self.i..]
            .iter()
            .take_while(|c| c.is_alphanumeric() || matches!(c, '-' | '_'))
            .collect()
    }

    /// A pipeline: an expression or command, then `| command` stages.
    fn pipeline(&mut self, ev: &mut Evaluator) -> Option<Value> {
        self.ws();
        let mut v = if self.peek().is_some_and(|c| c.is_alphabetic() || c == '_') {
            self.command(ev, None)?
        } else {
            self.expr(ev)?
        };
        loop {
            self.ws();
            if self.peek() == Some('|') && self.at(1) != Some('|') {
                self.i += 1;
                self.ws_nl();
                v = self.command(ev, Some(v))?;
            } else {
                return Some(v);
            }
        }
    }

    /// A command name and its arguments (to the end of the pipeline stage), run on `input`.
    fn command(&mut self, ev: &mut Evaluator, input: Option<Value>) -> Option<Value> {
        let name = self.bare_word();
        // after a `|`, `foreach` is ForEach-Object's alias, not the keyword
        let keyword = input.is_none() && KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(&name));
        if name.is_empty() || keyword {
            return None;
        }
        let mut args = Vec::new();
        loop {
            self.ws();
            match self.peek() {
                None | Some('\n' | ';' | '|' | ')' | '}') => break,
                Some(c) if is_dash(c) && self.at(1).is_some_and(|n| n.is_alphabetic()) => {
                    self.i += 1;
                    let p = self.bare_word_until(&[':']);
                    let value = if self.eat(':') {
                        Some(self.argument(ev)?)
                    } else {
                        None
                    };
                    args.push(CmdArg::Param(p, value));
                }
                Some(_) => {
                    let v = self.argument(ev)?;
                    args.push(CmdArg::Value(v));
                }
            }
            if !ev.step() || args.len() > 64 {
                return None;
            }
        }
        commands::run(ev, &name, args, input, self.base)
    }

    /// One command argument: an expression (with commas making an array) or a bare word.
    fn argument(&mut self, ev: &mut Evaluator) -> Option<Value> {
        let mut items = vec![self.argument_item(ev)?];
        loop {
            let save = self.i;
            self.ws();
            if self.eat(',') {
                self.ws_nl();
                items.push(self.argument_item(ev)?);
                if !ev.produce(ELEMENT_BYTES) {
                    return None;
                }
            } else {
                self.i = save;
                break;
            }
        }
        Some(if items.len() == 1 {
            items.pop().unwrap_or(Value::Null)
        } else {
            Value::Array(items)
        })
    }

    fn argument_item(&mut self, ev: &mut Evaluator) -> Option<Value> {
        self.ws();
        match self.peek()? {
            c if is_squote(c) || is_dquote(c) || matches!(c, '$' | '(' | '@' | '[' | '{') => {
                let saved = std::mem::replace(&mut self.no_comma, true);
                let v = self.unary(ev);
                self.no_comma = saved;
                v
            }
            c if c.is_ascii_digit() => self.number(),
            _ => {
                let w = self.bare_word_until(&[',']);
                (!w.is_empty()).then_some(Value::Str(w))
            }
        }
    }

    /// A bare word: to white space or a special character; backtick escapes removed.
    fn bare_word(&mut self) -> String {
        self.bare_word_until(&[])
    }

    fn bare_word_until(&mut self, stop: &[char]) -> String {
        let mut w = String::new();
        while let Some(c) = self.peek() {
            if c == '`' {
                match self.at(1) {
                    None | Some('\n' | '\r') => break,
                    Some(n) => {
                        w.push(word_escape(n));
                        self.i += 2;
                        continue;
                    }
                }
            }
            if c.is_whitespace()
                || matches!(c, ';' | '|' | '(' | ')' | '{' | '}' | ',' | '&')
                || is_squote(c)
                || is_dquote(c)
                || stop.contains(&c)
            {
                break;
            }
            w.push(c);
            self.i += 1;
        }
        w
    }

    /// An expression (no commands).
    fn expr(&mut self, ev: &mut Evaluator) -> Option<Value> {
        self.binary(ev, 0)
    }

    /// The binary operator at the cursor, lowercase, and its length.
    fn peek_op(&self) -> Option<(String, usize)> {
        let c = self.peek()?;
        if is_dash(c) && self.at(1).is_some_and(|n| n.is_ascii_alphabetic()) {
            let name: String = self.s[self.i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            let len = name.len() + 1;
            return Some((name.to_ascii_lowercase(), len));
        }
        match c {
            '+' | '*' | '/' | '%' => Some((c.to_string(), 1)),
            c if is_dash(c) && self.at(1) != Some('-') && self.at(1) != Some('=') => {
                Some(("-".into(), 1))
            }
            _ => None,
        }
    }

    /// Operators of `LEVELS[level]` and tighter, left to right.
    fn binary(&mut self, ev: &mut Evaluator, level: usize) -> Option<Value> {
        if level == LEVELS.len() {
            return self.range(ev);
        }
        let mut lhs = self.binary(ev, level + 1)?;
        loop {
            let save = self.i;
            self.ws();
            match self.peek_op() {
                Some((op, len)) if LEVELS[level].contains(&op.as_str()) => {
                    self.i += len;
                    self.ws_nl();
                    let rhs = self.binary(ev, level + 1)?;
                    lhs = dotnet::binary(ev, &op, lhs, rhs)?;
                }
                _ => {
                    self.i = save;
                    return Some(lhs);
                }
            }
        }
    }

    /// `a..b`.
    fn range(&mut self, ev: &mut Evaluator) -> Option<Value> {
        let lhs = self.not(ev)?;
        let save = self.i;
        self.ws();
        if self.peek() == Some('.') && self.at(1) == Some('.') {
            self.i += 2;
            self.ws_nl();
            let rhs = self.not(ev)?;
            return dotnet::range(ev, &lhs, &rhs);
        }
        self.i = save;
        Some(lhs)
    }

    /// `-not x`, `!x`.
    fn not(&mut self, ev: &mut Evaluator) -> Option<Value> {
        self.ws();
        if self.eat('!') || self.eat_word_op("not") {
            let v = self.not(ev)?;
            return Some(Value::Bool(!dotnet::truthy(&v)));
        }
        self.comma(ev)
    }

    /// `a, b, c`: an array (not inside method arguments).
    fn comma(&mut self, ev: &mut Evaluator) -> Option<Value> {
        let first = self.unary(ev)?;
        if self.no_comma {
            return Some(first);
        }
        let mut items = vec![first];
        loop {
            let save = self.i;
            self.ws();
            if self.peek() == Some(',') {
                self.i += 1;
                self.ws_nl();
                items.push(self.unary(ev)?);
                if !ev.produce(ELEMENT_BYTES) {
                    return None;
                }
            } else {
                self.i = save;
                break;
            }
        }
        Some(collapse_array(items))
    }

    /// `-name` as a whole operator word at the cursor (consumed when it is).
    fn eat_word_op(&mut self, name: &str) -> bool {
        if !self.peek().is_some_and(is_dash) {
            return false;
        }
        let w: String = self.s[self.i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        if w.eq_ignore_ascii_case(name) {
            self.i += 1 + w.len();
            return true;
        }
        false
    }

    /// Unary operators, casts, then a postfix expression.
    fn unary(&mut self, ev: &mut Evaluator) -> Option<Value> {
        self.ws();
        if !ev.step() {
            return None;
        }
        let deeper = |p: &mut Self, ev: &mut Evaluator| ev.nest(|ev| p.unary(ev));
        if self.eat_word_op("join") {
            let v = deeper(self, ev)?;
            return dotnet::join(ev, &v, "");
        }
        if self.eat_word_op("split") {
            let v = deeper(self, ev)?;
            return dotnet::split_whitespace(&v);
        }
        if self.eat_word_op("bnot") {
            let v = deeper(self, ev)?;
            return Some(Value::Int(!dotnet::to_int(&v)?));
        }
        match self.peek()? {
            c if is_dash(c) && !self.at(1).is_some_and(|n| n.is_alphabetic()) => {
                self.i += 1;
                let v = deeper(self, ev)?;
                Some(Value::Int(dotnet::to_int(&v)?.checked_neg()?))
            }
            '+' => {
                self.i += 1;
                deeper(self, ev)
            }
            ',' => {
                self.i += 1;
                let v = deeper(self, ev)?;
                Some(Value::Array(vec![v]))
            }
            '[' => self.type_or_cast(ev),
            _ => self.postfix(ev),
        }
    }

    /// `[type]::Member`, `[type] value` (a cast), or the type itself.
    fn type_or_cast(&mut self, ev: &mut Evaluator) -> Option<Value> {
        let name = self.type_literal()?;
        if self.peek() == Some(':') && self.at(1) == Some(':') {
            return self.postfix_on(ev, Value::Type(name));
        }
        let save = self.i;
        self.ws();
        let castable = match self.peek() {
            None => false,
            Some(c) if is_dash(c) => !self.at(1).is_some_and(|n| n.is_alphabetic()),
            Some(c) => !matches!(c, ')' | ']' | '}' | ',' | ';' | '|' | '\n' | '=' | '.'),
        };
        if !castable {
            self.i = save;
            return self.postfix_on(ev, Value::Type(name));
        }
        let v = ev.nest(|ev| self.unary(ev))?;
        dotnet::cast(ev, &name, v)
    }

    /// `[name]` (nested brackets for `[char[]]`): the normalised type name.
    fn type_literal(&mut self) -> Option<String> {
        self.eat('[').then_some(())?;
        let mut depth = 1;
        let mut name = String::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(dotnet::type_name(&name));
                    }
                }
                _ => {}
            }
            if !c.is_whitespace() && c != '`' {
                name.push(c);
            }
            if name.len() > 256 {
                return None;
            }
        }
        None
    }

    /// A primary expression and its indexes, members and method calls.
    fn postfix(&mut self, ev: &mut Evaluator) -> Option<Value> {
        let v = self.primary(ev)?;
        self.postfix_on(ev, v)
    }

    fn postfix_on(&mut self, ev: &mut Evaluator, mut v: Value) -> Option<Value> {
        loop {
            if !ev.step() {
                return None;
            }
            match (self.peek(), self.at(1)) {
                (Some('['), _) => {
                    self.i += 1;
                    let idx = ev.nest(|ev| self.group(ev, ']'))?;
                    v = dotnet::index(ev, v, &idx)?;
                }
                (Some(':'), Some(':')) => {
                    self.i += 2;
                    v = self.member(ev, v, true)?;
                }
                (Some('.'), Some(n)) if n != '.' && !n.is_whitespace() => {
                    self.i += 1;
                    v = self.member(ev, v, false)?;
                }
                _ => return Some(v),
            }
        }
    }

    /// `.Name`, `.'Name'`, `.(expr)`, then `(args)` for a method call.
    fn member(&mut self, ev: &mut Evaluator, on: Value, is_static: bool) -> Option<Value> {
        let name = match self.peek()? {
            c if is_squote(c) || is_dquote(c) || c == '(' || c == '$' => {
                let v = ev.nest(|ev| self.primary(ev))?;
                dotnet::to_str(&v)
            }
            _ => {
                let mut w = String::new();
                while let Some(c) = self.peek() {
                    if c == '`' && self.at(1).is_some_and(|n| n.is_alphanumeric()) {
                        self.i += 1;
                        continue;
                    }
                    if !(c.is_alphanumeric() || c == '_') {
                        break;
                    }
                    w.push(c);
                    self.i += 1;
                }
                w
            }
        };
        if name.is_empty() {
            return None;
        }
        let args = if self.peek() == Some('(') {
            self.i += 1;
            Some(ev.nest(|ev| self.method_args(ev))?)
        } else {
            None
        };
        dotnet::member(ev, on, &name, args, is_static, self.base)
    }

    /// Method arguments to `)`: comma-separated expressions.
    fn method_args(&mut self, ev: &mut Evaluator) -> Option<Vec<Value>> {
        let saved = std::mem::replace(&mut self.no_comma, true);
        let mut args = Vec::new();
        self.ws_nl();
        if self.eat(')') {
            self.no_comma = saved;
            return Some(args);
        }
        let r = loop {
            let Some(v) = self.expr(ev) else { break None };
            args.push(v);
            self.ws_nl();
            if self.eat(',') {
                self.ws_nl();
                continue;
            }
            break self.eat(')').then_some(());
        };
        self.no_comma = saved;
        r.map(|_| args)
    }

    /// The statements of a group to `close`, as one value.
    fn group(&mut self, ev: &mut Evaluator, close: char) -> Option<Value> {
        let saved = std::mem::replace(&mut self.no_comma, false);
        let out = self.statements(ev, Some(close));
        self.no_comma = saved;
        Some(collapse(out?))
    }

    /// Literals, variables, groups, hashtables and script blocks.
    fn primary(&mut self, ev: &mut Evaluator) -> Option<Value> {
        self.ws();
        let c = self.peek()?;
        match c {
            c if is_squote(c) => self.single_quoted().map(Value::Str),
            c if is_dquote(c) => self.double_quoted(ev, false).map(Value::Str),
            '@' => self.at_form(ev),
            '$' if self.at(1) == Some('(') => {
                self.i += 2;
                ev.nest(|ev| self.group(ev, ')'))
            }
            '$' => {
                self.i += 1;
                let name = self.variable_name();
                ev.variable(&name, self.base)
            }
            '(' => {
                self.i += 1;
                let saved = std::mem::replace(&mut self.no_comma, false);
                let v = ev.nest(|ev| {
                    self.ws_nl();
                    let v = self.pipeline(ev)?;
                    self.ws_nl();
                    self.eat(')').then_some(v)
                });
                self.no_comma = saved;
                v
            }
            '{' => self.block().map(Value::Block),
            c if c.is_ascii_digit() => self.number(),
            '.' if self.at(1).is_some_and(|d| d.is_ascii_digit()) => self.number(),
            _ => None,
        }
    }

    /// `@(...)`, `@{...}` and here-strings.
    fn at_form(&mut self, ev: &mut Evaluator) -> Option<Value> {
        match self.at(1)? {
            '(' => {
                self.i += 2;
                let saved = std::mem::replace(&mut self.no_comma, false);
                let out = ev.nest(|ev| self.statements(ev, Some(')')));
                self.no_comma = saved;
                Some(Value::Array(out?))
            }
            '{' => {
                self.i += 2;
                ev.nest(|ev| self.hashtable(ev))
            }
            q if is_squote(q) || is_dquote(q) => {
                self.i += 2;
                while self.peek().is_some_and(|c| c != '\n') {
                    self.i += 1;
                }
                self.i += 1;
                if is_squote(q) {
                    self.here_single().map(Value::Str)
                } else {
                    self.double_quoted(ev, true).map(Value::Str)
                }
            }
            _ => None,
        }
    }

    /// The body of `@{ key = value; ... }` (after `@{`).
    fn hashtable(&mut self, ev: &mut Evaluator) -> Option<Value> {
        let mut entries: Vec<(String, Value)> = Vec::new();
        loop {
            while {
                self.ws();
                self.eat('\n') || self.eat(';')
            } {}
            if self.eat('}') {
                return Some(Value::Hash(entries));
            }
            let key = match self.peek()? {
                c if is_squote(c) => self.single_quoted()?,
                c if is_dquote(c) => self.double_quoted(ev, false)?,
                // a key computed at run time: `@{ ('Co'+'mputerName') = ... }`
                '(' => {
                    self.i += 1;
                    dotnet::to_str(&self.group(ev, ')')?)
                }
                _ => self.bare_word_until(&['=']),
            };
            self.ws();
            self.eat('=').then_some(())?;
            self.ws_nl();
            let saved = std::mem::replace(&mut self.no_comma, false);
            let from = self.i;
            let v = match self.pipeline(ev) {
                Some(v) => v,
                // a value not known here (a session, a credential): kept as its source
                None => {
                    self.i = from;
                    self.skip_entry();
                    let src: String = self.s[from..self.i].iter().collect();
                    Value::Opaque(src.trim().to_string())
                }
            };
            self.no_comma = saved;
            entries.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
            entries.push((key, v));
            if !ev.step() || entries.len() > 4096 {
                return None;
            }
        }
    }

    /// Skips a hashtable entry's value: to the `;`, newline or `}` that ends it, groups and
    /// strings included.
    fn skip_entry(&mut self) {
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            match c {
                '(' | '{' | '[' => depth += 1,
                ')' | ']' => depth = depth.saturating_sub(1),
                '}' if depth == 0 => return,
                '}' => depth -= 1,
                ';' | '\n' if depth == 0 => return,
                c if is_squote(c) || is_dquote(c) => {
                    self.i += 1;
                    while self.peek().is_some_and(|d| d != c) {
                        self.i += 1;
                    }
                }
                _ => {}
            }
            // past the closing quote, or the end when the string runs out
            self.i = (self.i + 1).min(self.s.len());
        }
    }

    /// A script block's text (after the brace's match), quotes and comments respected.
    fn block(&mut self) -> Option<String> {
        let from = self.i + 1;
        let mut depth = 0usize;
        let mut k = self.i;
        while k < self.s.len() {
            let c = self.s[k];
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        self.i = k + 1;
                        return Some(self.s[from..k].iter().collect());
                    }
                }
                c if is_squote(c) || is_dquote(c) => {
                    let quote = c;
                    k += 1;
                    while k < self.s.len() && self.s[k] != quote {
                        k += 1 + usize::from(self.s[k] == '`');
                    }
                }
                '#' => {
                    while k < self.s.len() && self.s[k] != '\n' {
                        k += 1;
                    }
                }
                _ => {}
            }
            k += 1;
        }
        None
    }

    /// A number: decimal or `0x` hex, an optional `kb`/`mb`/`gb` multiplier, integral only.
    fn number(&mut self) -> Option<Value> {
        let digits = |p: &mut Self, radix: u32| {
            let mut d = String::new();
            while let Some(c) = p.peek().filter(|c| c.is_digit(radix)) {
                d.push(c);
                p.i += 1;
            }
            d
        };
        let n = if self.peek() == Some('0') && matches!(self.at(1), Some('x' | 'X')) {
            self.i += 2;
            i64::from_str_radix(&digits(self, 16), 16).ok()?
        } else {
            let whole = digits(self, 10);
            if self.peek() == Some('.') && self.at(1).is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
                let frac = digits(self, 10);
                if frac.chars().any(|c| c != '0') {
                    return None;
                }
            }
            whole.parse::<i64>().ok()?
        };
        let mult = match (self.peek().map(|c| c.to_ascii_lowercase()), self.at(1)) {
            (Some('k'), Some('b' | 'B')) => 1 << 10,
            (Some('m'), Some('b' | 'B')) => 1 << 20,
            (Some('g'), Some('b' | 'B')) => 1 << 30,
            _ => 1,
        };
        if mult > 1 {
            self.i += 2;
        } else if matches!(self.peek(), Some('l' | 'L' | 'd' | 'D')) {
            self.i += 1;
        }
        n.checked_mul(mult).map(Value::Int)
    }

    /// A variable name after `$`: `${any}`, `scope:name`, `_`, `?`.
    fn variable_name(&mut self) -> String {
        let mut name = String::new();
        if self.eat('{') {
            while let Some(c) = self.peek() {
                self.i += 1;
                if c == '}' {
                    break;
                }
                if c == '`' {
                    if let Some(n) = self.peek() {
                        name.push(n);
                        self.i += 1;
                    }
                    continue;
                }
                name.push(c);
            }
            return name;
        }
        while let Some(c) = self.peek() {
            let scope_colon =
                c == ':' && self.at(1).is_some_and(|n| n.is_alphanumeric() || n == '_');
            if !(c.is_alphanumeric() || c == '_' || c == '?' || scope_colon) {
                break;
            }
            name.push(c);
            self.i += 1;
            if c == '?' {
                break;
            }
        }
        name
    }

    /// A single-quoted string (any of the quote characters PowerShell accepts; a doubled
    /// quote is one).
    fn single_quoted(&mut self) -> Option<String> {
        self.i += 1;
        let mut text = String::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            if is_squote(c) {
                if self.peek().is_some_and(is_squote) {
                    text.push(c);
                    self.i += 1;
                    continue;
                }
                return Some(text);
            }
            text.push(c);
        }
        None
    }

    /// The body of `@' ... '@` (after its first line).
    fn here_single(&mut self) -> Option<String> {
        let from = self.i;
        while self.i < self.s.len() {
            if self.s[self.i] == '\n'
                && self.at(1).is_some_and(is_squote)
                && self.at(2) == Some('@')
            {
                let text: String = self.s[from..self.i].iter().collect();
                self.i += 3;
                return Some(text.trim_end_matches('\r').to_string());
            }
            self.i += 1;
        }
        None
    }

    /// A double-quoted string or `@" "@` body: backtick escapes, `""`, and `$var` /
    /// `${var}` / `$( )` expanded.
    fn double_quoted(&mut self, ev: &mut Evaluator, here: bool) -> Option<String> {
        if !here {
            self.i += 1;
        }
        let mut text = String::new();
        loop {
            let c = self.peek()?;
            let closes = if here {
                c == '\n' && self.at(1).is_some_and(is_dquote) && self.at(2) == Some('@')
            } else {
                is_dquote(c)
            };
            if closes {
                if !here && self.at(1).is_some_and(is_dquote) {
                    text.push(c);
                    self.i += 2;
                    continue;
                }
                self.i += if here { 3 } else { 1 };
                if here && text.ends_with('\r') {
                    text.pop();
                }
                return ev.produce(text.len()).then_some(text);
            }
            match c {
                '`' if !here || self.at(1).is_some() => {
                    self.i += 1;
                    let e = self.peek()?;
                    self.i += 1;
                    text.push(escape(e));
                }
                '$' if self.at(1) == Some('(') => {
                    self.i += 2;
                    let v = ev.nest(|ev| self.group(ev, ')'))?;
                    text.push_str(&dotnet::to_str(&v));
                }
                '$' if self
                    .at(1)
                    .is_some_and(|n| n.is_alphanumeric() || matches!(n, '_' | '{' | '?')) =>
                {
                    self.i += 1;
                    let name = self.variable_name();
                    let v = ev.variable(&name, self.base)?;
                    text.push_str(&dotnet::to_str(&v));
                }
                _ => {
                    text.push(c);
                    self.i += 1;
                }
            }
            if text.len() > super::MAX_BYTES {
                return None;
            }
        }
    }
}

/// A backtick escape in a bare word: the control characters of `0 `a `b `f `n `r `t `v;
/// `e is ESC only in PowerShell 7 and a plain e in 5.1, read as 5.1 (the reading that
/// keeps a command name). Anything else is itself.
pub fn word_escape(e: char) -> char {
    match e {
        'e' => 'e',
        other => escape(other),
    }
}

/// A backtick escape in a double-quoted string.
fn escape(e: char) -> char {
    match e {
        '0' => '\0',
        'a' => '\u{7}',
        'b' => '\u{8}',
        'e' => '\u{1b}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\u{b}',
        other => other,
    }
}

/// Statement output as one value: nothing, one value, or an array.
fn collapse(mut out: Vec<Value>) -> Value {
    match out.len() {
        0 => Value::Null,
        1 => out.pop().unwrap_or(Value::Null),
        _ => Value::Array(out),
    }
}

fn collapse_array(mut items: Vec<Value>) -> Value {
    if items.len() == 1 {
        items.pop().unwrap_or(Value::Null)
    } else {
        Value::Array(items)
    }
}

/// A statement's output goes out element by element.
fn unroll_into(v: Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(items) => out.extend(items),
        Value::Null => {}
        other => out.push(other),
    }
}

/// Evaluates a script block's body with `$_` bound to `item` (ForEach-Object).
pub(super) fn run_block(
    ev: &mut Evaluator,
    body: &str,
    item: Value,
    base: usize,
) -> Option<Vec<Value>> {
    let chars: Vec<char> = body.chars().collect();
    let depth = ev.locals.len();
    ev.locals.push(("_".into(), item.clone()));
    ev.locals.push(("psitem".into(), item));
    let out = ev.nest(|ev| Parser::new(&chars, base).statements(ev, None));
    ev.locals.truncate(depth);
    out
}
