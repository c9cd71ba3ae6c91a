//! The .NET side of constant evaluation: PowerShell's operators on values, conversions and
//! casts, indexes, and the members and static methods obfuscated scripts use (string
//! methods, `[Convert]`, `[Text.Encoding]`, `[regex]`, `[scriptblock]::Create`, streams
//! that inflate, `$ExecutionContext.InvokeCommand`).

use super::commands;
use super::{Encoding, Evaluator, Value};
use base64::Engine;
use std::collections::HashMap;
use std::io::Read;

/// A type name as written inside `[ ]`, normalised: lowercase, `System.` dropped, common
/// synonyms folded.
pub(super) fn type_name(raw: &str) -> String {
    let t = raw.to_ascii_lowercase();
    let t = t.strip_prefix("system.").unwrap_or(&t);
    match t {
        "int32" | "int16" | "short" | "uint16" | "uint32" | "uint64" | "int64" | "long" => "int",
        "text.regularexpressions.regex" => "regex",
        "management.automation.scriptblock" => "scriptblock",
        "object[]" => "array",
        "text.encoding" => "text.encoding",
        other => other,
    }
    .to_string()
}

/// Roughly how many bytes a value holds (for the budget when it is copied).
pub(super) fn size_of(v: &Value) -> usize {
    match v {
        Value::Str(s) | Value::Block(s) | Value::Reader(s) | Value::Command(s) => s.len(),
        Value::Bytes { data, .. } | Value::Stream { data, .. } => data.len(),
        Value::Array(items) => items.iter().map(size_of).sum::<usize>() + items.len(),
        Value::Hash(e) => e.iter().map(|(k, v)| k.len() + size_of(v)).sum(),
        _ => 8,
    }
}

/// The value as PowerShell turns it into text.
pub(super) fn to_str(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Int(n) => n.to_string(),
        Value::Char(c) => c.to_string(),
        Value::Str(s) | Value::Block(s) | Value::Command(s) | Value::Type(s) => s.clone(),
        Value::Array(items) => items.iter().map(to_str).collect::<Vec<_>>().join(" "),
        Value::Bytes { data, .. } => data
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        Value::Hash(_) => "System.Collections.Hashtable".into(),
        Value::Encoding(_) => "System.Text.Encoding".into(),
        Value::Stream { .. } => "System.IO.Stream".into(),
        Value::Reader(_) => "System.IO.StreamReader".into(),
        Value::Object(name) => (*name).into(),
        Value::Opaque(src) => src.clone(),
    }
}

/// PowerShell's truth.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Int(n) => *n != 0,
        Value::Char(c) => *c != '\0',
        Value::Str(s) => !s.is_empty(),
        Value::Array(items) => match items.as_slice() {
            [] => false,
            [one] => truthy(one),
            _ => true,
        },
        _ => true,
    }
}

/// A number from a value: ints, chars (their code), booleans, and strings of decimal or
/// `0x` hex digits.
pub(super) fn to_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        Value::Char(c) => Some(*c as i64),
        Value::Bool(b) => Some(i64::from(*b)),
        Value::Null => Some(0),
        Value::Str(s) => {
            let t = s.trim();
            let (neg, t) = t.strip_prefix('-').map_or((false, t), |r| (true, r));
            let n = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                Some(h) => i64::from_str_radix(h, 16).ok()?,
                None => t.parse::<i64>().ok()?,
            };
            Some(if neg { -n } else { n })
        }
        _ => None,
    }
}

/// The elements of a value seen as a list (a scalar is a list of one).
fn items(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items.clone(),
        Value::Bytes { data, .. } => data.iter().map(|b| Value::Int(i64::from(*b))).collect(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// A copy with its order reversed (`[array]::Reverse`).
pub(super) fn reversed(v: Value) -> Option<Value> {
    match v {
        Value::Array(mut items) => {
            items.reverse();
            Some(Value::Array(items))
        }
        Value::Bytes { mut data, base64 } => {
            data.reverse();
            Some(Value::Bytes { data, base64 })
        }
        _ => None,
    }
}

/// `a..b` (at most a million elements).
pub(super) fn range(ev: &mut Evaluator, a: &Value, b: &Value) -> Option<Value> {
    let (a, b) = (to_int(a)?, to_int(b)?);
    let n = a.abs_diff(b).checked_add(1)?;
    if n > 1_000_000 || !ev.budget.step(n as usize / 8 + 1) {
        return None;
    }
    let out: Vec<Value> = if a <= b {
        (a..=b).map(Value::Int).collect()
    } else {
        (b..=a).rev().map(Value::Int).collect()
    };
    Some(Value::Array(out))
}

/// `-join`: the elements as text, with `sep` between.
pub(super) fn join(ev: &mut Evaluator, v: &Value, sep: &str) -> Option<Value> {
    let s = items(v).iter().map(to_str).collect::<Vec<_>>().join(sep);
    ev.produce(s.len()).then_some(Value::Str(s))
}

/// Unary `-split`: on runs of white space.
pub(super) fn split_whitespace(v: &Value) -> Option<Value> {
    let s = to_str(v);
    Some(Value::Array(
        s.split_whitespace().map(|p| Value::Str(p.into())).collect(),
    ))
}

/// The regexes one script's evaluation has compiled, by pattern and case, and how many
/// more it may compile. Compiling is the one cost that grows with neither the script's
/// length nor the text built: a six-character `\w{15}` takes about 5 ms to compile, so
/// 3,000 distinct ones in a 60 KB script took 27 s before this bound. A pattern already
/// compiled is free again (loops and repeated layers reuse their regexes).
#[derive(Debug, Clone)]
pub(super) struct Regexes {
    compiled: HashMap<(String, bool), Option<regex::Regex>>,
    left: usize,
}

/// Fewest and most distinct regexes one script may compile: one more per 256 bytes of
/// script between the two (obfuscators use a handful per layer).
const MIN_REGEXES: usize = 8;
const MAX_REGEXES: usize = 32;
/// Most memory one compiled regex may take, and its search cache as much again: with
/// [`MAX_REGEXES`], at most 32 MB for one script.
const REGEX_BYTES: usize = 1 << 19;

impl Regexes {
    pub(super) fn for_script(len: usize) -> Regexes {
        Regexes {
            compiled: HashMap::new(),
            left: (len / 256).clamp(MIN_REGEXES, MAX_REGEXES),
        }
    }
}

/// A regex as PowerShell's operators build it (case-insensitive unless `c`-prefixed),
/// within the regex crate's size limits and the script's allowance of compiles; `None`
/// when it does not compile or the allowance is spent.
fn regex(ev: &mut Evaluator, pattern: &str, case_sensitive: bool) -> Option<regex::Regex> {
    let cache = &mut ev.budget.regexes;
    let key = (pattern.to_string(), case_sensitive);
    if let Some(re) = cache.compiled.get(&key) {
        return re.clone();
    }
    cache.left = cache.left.checked_sub(1)?;
    let build = |p: &str| {
        regex::RegexBuilder::new(p)
            .case_insensitive(!case_sensitive)
            .size_limit(REGEX_BYTES)
            .dfa_size_limit(REGEX_BYTES)
            .build()
            .ok()
    };
    let re = build(pattern).or_else(|| build(&literal_braces(pattern)));
    cache.compiled.insert(key, re.clone());
    re
}

/// .NET reads a `{` that starts no `{n}`, `{n,}` or `{n,m}` quantifier as a literal brace
/// (`-split '{'`); the regex crate refuses it. Escapes those braces.
fn literal_braces(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            out.push(c);
            if let Some(n) = chars.get(i + 1) {
                out.push(*n);
            }
            i += 2;
            continue;
        }
        let quantifier = c == '{' && {
            let rest: String = chars[i + 1..].iter().take_while(|c| **c != '}').collect();
            let closed = chars.len() > i + 1 + rest.len();
            let (a, b) = rest.split_once(',').unwrap_or((&rest, "0"));
            closed
                && !a.is_empty()
                && a.chars().all(|c| c.is_ascii_digit())
                && b.chars().all(|c| c.is_ascii_digit())
        };
        if (c == '{' && !quantifier)
            || (c == '}' && !out.ends_with(|d: char| d.is_ascii_digit() || d == ','))
        {
            out.push('\\');
        }
        out.push(c);
        i += 1;
    }
    out
}

/// A binary operator on two values.
pub(super) fn binary(ev: &mut Evaluator, op: &str, l: Value, r: Value) -> Option<Value> {
    match op {
        "+" => add(ev, l, r),
        "-" | "/" | "%" | "band" | "bor" | "bxor" | "shl" | "shr" => arith(ev, op, &l, &r),
        "*" => multiply(ev, l, &r),
        "f" => format(ev, &to_str(&l), &items(&r)),
        "join" => join(ev, &l, &to_str(&r)),
        "split" | "isplit" | "csplit" => split(ev, &l, &r, op == "csplit"),
        "replace" | "ireplace" | "creplace" => replace_op(ev, &l, &r, op == "creplace"),
        "and" => Some(Value::Bool(truthy(&l) && truthy(&r))),
        "or" => Some(Value::Bool(truthy(&l) || truthy(&r))),
        "xor" => Some(Value::Bool(truthy(&l) != truthy(&r))),
        "as" => match r {
            Value::Type(t) => Some(cast(ev, &t, l).unwrap_or(Value::Null)),
            _ => None,
        },
        _ => compare(ev, op, &l, &r),
    }
}

fn add(ev: &mut Evaluator, l: Value, r: Value) -> Option<Value> {
    match l {
        Value::Str(mut s) => {
            let rs = to_str(&r);
            ev.layer("concat");
            ev.produced(rs.len())?;
            s.push_str(&rs);
            Some(Value::Str(s))
        }
        Value::Array(mut a) => {
            let more = items(&r);
            ev.produced(more.len().saturating_mul(super::ELEMENT_BYTES))?;
            a.extend(more);
            Some(Value::Array(a))
        }
        Value::Hash(mut h) => match r {
            Value::Hash(more) => {
                h.extend(more);
                Some(Value::Hash(h))
            }
            _ => None,
        },
        Value::Null => Some(r),
        // a char on the left concatenates ($ShellId[1]+$ShellId[13]+'x' is 'iex')
        Value::Char(c) => {
            let s = format!("{c}{}", to_str(&r));
            ev.layer("concat");
            ev.produced(s.len())?;
            Some(Value::Str(s))
        }
        _ => Some(Value::Int(to_int(&l)?.checked_add(to_int(&r)?)?)),
    }
}

impl Evaluator<'_> {
    /// `produce` as an Option, for `?`.
    fn produced(&mut self, n: usize) -> Option<()> {
        self.produce(n).then_some(())
    }
}

fn arith(ev: &mut Evaluator, op: &str, l: &Value, r: &Value) -> Option<Value> {
    if op == "bxor" {
        ev.layer("bxor");
    }
    let (a, b) = (to_int(l)?, to_int(r)?);
    let n = match op {
        "-" => a.checked_sub(b)?,
        "/" => (b != 0 && a % b == 0).then(|| a / b)?,
        "%" => a.checked_rem(b)?,
        "band" => a & b,
        "bor" => a | b,
        "bxor" => a ^ b,
        "shl" => a.checked_shl(u32::try_from(b).ok()?)?,
        "shr" => a.checked_shr(u32::try_from(b).ok()?)?,
        _ => return None,
    };
    Some(Value::Int(n))
}

fn multiply(ev: &mut Evaluator, l: Value, r: &Value) -> Option<Value> {
    let n = to_int(r)?;
    let times = usize::try_from(n).ok()?;
    match l {
        Value::Str(s) => {
            ev.produced(s.len().checked_mul(times)?)?;
            Some(Value::Str(s.repeat(times)))
        }
        Value::Array(a) => {
            ev.produced(a.len().checked_mul(times)?)?;
            Some(Value::Array(
                std::iter::repeat_n(a, times).flatten().collect(),
            ))
        }
        other => Some(Value::Int(to_int(&other)?.checked_mul(n)?)),
    }
}

/// Comparison operators on scalars.
fn compare(ev: &mut Evaluator, op: &str, l: &Value, r: &Value) -> Option<Value> {
    let cs = op.starts_with('c');
    let op = op.trim_start_matches(['i', 'c']);
    let text_eq = |a: &Value, b: &Value| {
        let (a, b) = (to_str(a), to_str(b));
        if cs {
            a == b
        } else {
            a.eq_ignore_ascii_case(&b)
        }
    };
    let b = match op {
        "eq" | "ne" => {
            let eq = match (to_int(l), to_int(r), l) {
                (Some(a), Some(b), Value::Int(_)) => a == b,
                _ => text_eq(l, r),
            };
            eq == (op == "eq")
        }
        "like" | "notlike" => {
            let hit = super::commands::glob_match(
                &to_str(r).to_ascii_lowercase(),
                &to_str(l).to_ascii_lowercase(),
            );
            hit == (op == "like")
        }
        "match" | "notmatch" => {
            let re = regex(ev, &to_str(r), cs)?;
            re.is_match(&to_str(l)) == (op == "match")
        }
        "contains" | "notcontains" => items(l).iter().any(|x| text_eq(x, r)) == (op == "contains"),
        "in" | "notin" => items(r).iter().any(|x| text_eq(x, l)) == (op == "in"),
        "gt" | "ge" | "lt" | "le" => {
            let (a, b) = (to_int(l)?, to_int(r)?);
            match op {
                "gt" => a > b,
                "ge" => a >= b,
                "lt" => a < b,
                _ => a <= b,
            }
        }
        _ => return None,
    };
    Some(Value::Bool(b))
}

/// `fmt -f args`: `{n}`, `{n,align}`, `{n:X}` and `{{ }}`.
pub(super) fn format(ev: &mut Evaluator, fmt: &str, args: &[Value]) -> Option<Value> {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut spec = String::new();
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                    spec.push(c);
                }
                out.push_str(&format_item(&spec, args)?);
            }
            '}' => return None,
            c => out.push(c),
        }
        if out.len() > super::MAX_BYTES {
            return None;
        }
    }
    ev.layer("format-operator");
    ev.produced(out.len())?;
    Some(Value::Str(out))
}

/// One `{index[,align][:format]}`.
fn format_item(spec: &str, args: &[Value]) -> Option<String> {
    let (head, fmt) = spec.split_once(':').unwrap_or((spec, ""));
    let (idx, align) = head.split_once(',').unwrap_or((head, ""));
    let v = args.get(idx.trim().parse::<usize>().ok()?)?;
    let mut s = match (fmt.chars().next(), v) {
        (Some('x'), _) => format!("{:x}", to_int(v)?),
        (Some('X'), _) => format!("{:X}", to_int(v)?),
        (Some('d' | 'D'), _) => {
            let w: usize = fmt[1..].parse().unwrap_or(0);
            format!("{:0w$}", to_int(v)?, w = w.min(64))
        }
        _ => to_str(v),
    };
    if let Ok(w) = align.trim().parse::<i64>() {
        let w = w.clamp(-256, 256);
        let pad = (w.unsigned_abs() as usize).saturating_sub(s.chars().count());
        if w > 0 {
            s = " ".repeat(pad) + &s;
        } else {
            s.push_str(&" ".repeat(pad));
        }
    }
    Some(s)
}

/// `-split pattern` (a regex, or the array `pattern, max`).
fn split(ev: &mut Evaluator, l: &Value, r: &Value, cs: bool) -> Option<Value> {
    let pattern = to_str(items(r).first()?);
    let re = regex(ev, &pattern, cs)?;
    let mut out = Vec::new();
    for x in items(l) {
        let s = to_str(&x);
        ev.budget.step(s.len() / 16 + 1);
        out.extend(re.split(&s).map(|p| Value::Str(p.to_string())));
    }
    ev.produced(out.len())?;
    Some(Value::Array(out))
}

/// `re.replace_all(s, with)` (`$1`, `${name}` expanded), built match by match within the
/// budget: a replacement that would outgrow it is unknown before it is built.
fn replace_within(ev: &mut Evaluator, re: &regex::Regex, s: &str, with: &str) -> Option<String> {
    let room = ev.budget.built_room();
    let mut out = String::new();
    let mut last = 0;
    for caps in re.captures_iter(s) {
        let m = caps.get(0)?;
        out.push_str(&s[last..m.start()]);
        caps.expand(with, &mut out);
        last = m.end();
        if out.len() > room || !ev.step() {
            // what it would build is past the budget: spend it, the value is unknown
            let _ = ev.produced(room.saturating_add(1));
            return None;
        }
    }
    out.push_str(&s[last..]);
    ev.produced(out.len())?;
    Some(out)
}

/// `-replace pattern, replacement` on a string or each element of an array.
fn replace_op(ev: &mut Evaluator, l: &Value, r: &Value, cs: bool) -> Option<Value> {
    let r = items(r);
    let pattern = to_str(r.first()?);
    let with = r.get(1).map(to_str).unwrap_or_default();
    let re = regex(ev, &pattern, cs)?;
    let one = |ev: &mut Evaluator, s: String| replace_within(ev, &re, &s, &with).map(Value::Str);
    ev.layer("replace");
    match l {
        Value::Array(a) => a
            .iter()
            .map(|x| one(ev, to_str(x)))
            .collect::<Option<Vec<_>>>()
            .map(Value::Array),
        other => one(ev, to_str(other)),
    }
}

/// `[type] value`.
pub(super) fn cast(ev: &mut Evaluator, t: &str, v: Value) -> Option<Value> {
    let char_of = |v: &Value| match v {
        Value::Char(c) => Some(*c),
        Value::Str(s) if s.chars().count() == 1 => s.chars().next(),
        other => char::from_u32(u32::try_from(to_int(other)?).ok()?),
    };
    match t {
        "string" => Some(Value::Str(to_str(&v))),
        "char" => {
            ev.layer("char-codes");
            char_of(&v).map(Value::Char)
        }
        "char[]" => {
            let out = match &v {
                Value::Str(s) => s.chars().map(Value::Char).collect(),
                other => items(other)
                    .iter()
                    .map(|x| char_of(x).map(Value::Char))
                    .collect::<Option<Vec<_>>>()?,
            };
            ev.layer("char-codes");
            Some(Value::Array(out))
        }
        "int" => Some(Value::Int(to_int(&v)?)),
        "byte" => Some(Value::Int(u8::try_from(to_int(&v)?).ok()?.into())),
        "byte[]" => items(&v)
            .iter()
            .map(|x| u8::try_from(to_int(x)?).ok())
            .collect::<Option<Vec<u8>>>()
            .map(|data| Value::Bytes {
                data,
                base64: false,
            }),
        "string[]" => Some(Value::Array(
            items(&v).iter().map(|x| Value::Str(to_str(x))).collect(),
        )),
        "array" => Some(Value::Array(items(&v))),
        "bool" => Some(Value::Bool(truthy(&v))),
        "object" | "psobject" | "regex" => Some(v),
        "io.memorystream" => memory_stream(v),
        _ => None,
    }
}

fn memory_stream(v: Value) -> Option<Value> {
    match v {
        Value::Bytes { data, base64 } => Some(Value::Stream { data, base64 }),
        Value::Array(a) if a.len() == 1 => memory_stream(a.into_iter().next()?),
        _ => None,
    }
}

/// `value[index]`: one index or a list of them; negative ones count from the end.
pub(super) fn index(ev: &mut Evaluator, v: Value, idx: &Value) -> Option<Value> {
    if let Value::Hash(entries) = &v {
        let key = to_str(idx);
        return entry_value(entries, &key);
    }
    let elems: Vec<Value> = match &v {
        Value::Str(s) => s.chars().map(Value::Char).collect(),
        Value::Array(_) | Value::Bytes { .. } => items(&v),
        _ => return None,
    };
    let pick = |i: i64| -> Value {
        let n = elems.len() as i64;
        let k = if i < 0 { n + i } else { i };
        if (0..n).contains(&k) {
            elems[k as usize].clone()
        } else {
            Value::Null
        }
    };
    if matches!(v, Value::Str(_)) {
        ev.layer("substring-index");
    }
    match idx {
        Value::Array(list) => {
            ev.budget.step(list.len());
            list.iter()
                .map(|i| to_int(i).map(pick))
                .collect::<Option<Vec<_>>>()
                .map(Value::Array)
        }
        single => Some(pick(to_int(single)?)),
    }
}

/// A hashtable's entry. An entry whose value is not known is not a `$null`: unknown too
/// (`Ok(None)` is a missing key).
fn hash_get(entries: &[(String, Value)], key: &str) -> Option<Value> {
    entries
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.clone())
}

/// An entry's value for expressions: unknown when it is opaque, `$null` when missing.
fn entry_value(entries: &[(String, Value)], key: &str) -> Option<Value> {
    match hash_get(entries, key) {
        Some(Value::Opaque(_)) => None,
        Some(v) => Some(v),
        None => Some(Value::Null),
    }
}

/// A member or method: `on.name` / `on.name(args)`, or `[type]::name(args)`.
pub(super) fn member(
    ev: &mut Evaluator,
    on: Value,
    name: &str,
    args: Option<Vec<Value>>,
    is_static: bool,
    base: usize,
) -> Option<Value> {
    let m = name.to_ascii_lowercase();
    if is_static {
        let Value::Type(t) = &on else { return None };
        return static_member(ev, t, &m, args.unwrap_or_default());
    }
    match on {
        Value::Str(s) => string_member(ev, s, &m, args),
        Value::Char(c) if m == "tostring" => Some(Value::Str(c.to_string())),
        Value::Int(n) if m == "tostring" => Some(Value::Str(n.to_string())),
        Value::Array(a) => array_member(ev, a, &m, name, args, base),
        Value::Bytes { data, .. } if matches!(m.as_str(), "count" | "length") => {
            Some(Value::Int(data.len() as i64))
        }
        Value::Hash(h) => hash_member(h, &m, args),
        Value::Block(code) => block_member(ev, code, &m),
        Value::Command(c) => command_member(c, &m),
        Value::Encoding(e) => encoding_member(ev, e, &m, args?),
        Value::Reader(text) if matches!(m.as_str(), "readtoend" | "readline") => {
            let t = if m == "readline" {
                text.lines().next().unwrap_or("").to_string()
            } else {
                text
            };
            Some(Value::Str(t))
        }
        Value::Object(o) => object_member(ev, o, &m, args),
        _ => None,
    }
}

fn string_member(
    ev: &mut Evaluator,
    s: String,
    m: &str,
    args: Option<Vec<Value>>,
) -> Option<Value> {
    let a = args.unwrap_or_default();
    let arg_int = |k: usize| a.get(k).and_then(to_int);
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    let out = match m {
        "length" => return Some(Value::Int(n as i64)),
        "count" => return Some(Value::Int(1)),
        "value" | "tostring" | "trim" if a.is_empty() => {
            return Some(Value::Str(if m == "trim" { s.trim().into() } else { s }))
        }
        "tolower" | "tolowerinvariant" => s.to_lowercase(),
        "toupper" | "toupperinvariant" => s.to_uppercase(),
        "replace" => {
            let (from, to) = (to_str(a.first()?), a.get(1).map(to_str).unwrap_or_default());
            if from.is_empty() {
                return None;
            }
            ev.layer("replace");
            s.replace(&from, &to)
        }
        "substring" => {
            let start = usize::try_from(arg_int(0)?).ok()?;
            let len = match a.get(1) {
                Some(l) => usize::try_from(to_int(l)?).ok()?,
                None => n.checked_sub(start)?,
            };
            ev.layer("substring-index");
            chars.get(start..start.checked_add(len)?)?.iter().collect()
        }
        "chars" => {
            return chars
                .get(usize::try_from(arg_int(0)?).ok()?)
                .map(|c| Value::Char(*c))
        }
        "tochararray" => return Some(Value::Array(chars.into_iter().map(Value::Char).collect())),
        "split" => {
            let seps: Vec<char> = a
                .iter()
                .flat_map(|x| to_str(x).chars().collect::<Vec<_>>())
                .collect();
            let parts: Vec<Value> = if seps.is_empty() {
                s.split(char::is_whitespace)
                    .map(|p| Value::Str(p.into()))
                    .collect()
            } else {
                s.split(|c| seps.contains(&c))
                    .map(|p| Value::Str(p.into()))
                    .collect()
            };
            return Some(Value::Array(parts));
        }
        "trim" | "trimstart" | "trimend" => {
            let set: Vec<char> = a
                .iter()
                .flat_map(|x| to_str(x).chars().collect::<Vec<_>>())
                .collect();
            let f = |c: char| set.contains(&c);
            match m {
                "trim" => s.trim_matches(f).into(),
                "trimstart" => s.trim_start_matches(f).into(),
                _ => s.trim_end_matches(f).into(),
            }
        }
        "insert" => {
            let at = usize::try_from(arg_int(0)?).ok()?;
            let mut c = chars.clone();
            c.splice(at.min(n)..at.min(n), to_str(a.get(1)?).chars());
            c.into_iter().collect()
        }
        "remove" => {
            let from = usize::try_from(arg_int(0)?).ok()?;
            let len = a
                .get(1)
                .and_then(to_int)
                .map_or(n.saturating_sub(from), |l| l.max(0) as usize);
            let mut c = chars.clone();
            c.drain(from.min(n)..from.saturating_add(len).min(n));
            c.into_iter().collect()
        }
        "normalize" => s,
        "startswith" | "endswith" | "contains" => {
            let p = to_str(a.first()?);
            let hit = match m {
                "startswith" => s.starts_with(&p),
                "endswith" => s.ends_with(&p),
                _ => s.contains(&p),
            };
            return Some(Value::Bool(hit));
        }
        "indexof" => {
            let p = to_str(a.first()?);
            let at = s.find(&p).map_or(-1, |b| s[..b].chars().count() as i64);
            return Some(Value::Int(at));
        }
        _ => return None,
    };
    ev.produced(out.len())?;
    Some(Value::Str(out))
}

fn array_member(
    ev: &mut Evaluator,
    a: Vec<Value>,
    m: &str,
    name: &str,
    args: Option<Vec<Value>>,
    base: usize,
) -> Option<Value> {
    match m {
        "count" | "length" => Some(Value::Int(a.len() as i64)),
        // member enumeration: the member of each element
        _ => {
            ev.budget.step(a.len());
            let out = a
                .into_iter()
                .map(|x| member(ev, x, name, args.clone(), false, base))
                .collect::<Option<Vec<_>>>()?;
            Some(Value::Array(out))
        }
    }
}

fn hash_member(h: Vec<(String, Value)>, m: &str, args: Option<Vec<Value>>) -> Option<Value> {
    match (m, args) {
        ("keys", None) => Some(Value::Array(
            h.iter().map(|(k, _)| Value::Str(k.clone())).collect(),
        )),
        ("values", None) if !h.iter().any(|(_, v)| matches!(v, Value::Opaque(_))) => {
            Some(Value::Array(h.into_iter().map(|(_, v)| v).collect()))
        }
        ("count", None) => Some(Value::Int(h.len() as i64)),
        ("item", Some(a)) => entry_value(&h, &to_str(a.first()?)),
        ("containskey", Some(a)) => Some(Value::Bool(hash_get(&h, &to_str(a.first()?)).is_some())),
        (_, None) => entry_value(&h, m),
        _ => None,
    }
}

fn block_member(ev: &mut Evaluator, code: String, m: &str) -> Option<Value> {
    match m {
        "invoke" | "invokereturnasis" | "invokewithcontext" => {
            ev.runs(code, "scriptblock-invoke");
            Some(Value::Null)
        }
        "tostring" => Some(Value::Str(code)),
        _ => None,
    }
}

fn command_member(c: String, m: &str) -> Option<Value> {
    match m {
        "name" | "tostring" => Some(Value::Str(c)),
        "definition" | "resolvedcommandname" | "referencedcommand" | "resolvedcommand" => Some(
            Value::Command(commands::alias_target(&c).unwrap_or(&c).to_string()),
        ),
        _ => None,
    }
}

fn encoding_member(ev: &mut Evaluator, e: Encoding, m: &str, args: Vec<Value>) -> Option<Value> {
    match m {
        "getstring" => {
            let (data, base64) = match args.first()? {
                Value::Bytes { data, base64 } => (data.clone(), *base64),
                other => (
                    items(other)
                        .iter()
                        .map(|x| u8::try_from(to_int(x)?).ok())
                        .collect::<Option<Vec<u8>>>()?,
                    false,
                ),
            };
            let (from, len) = match (args.get(1).and_then(to_int), args.get(2).and_then(to_int)) {
                (Some(f), Some(l)) => (usize::try_from(f).ok()?, usize::try_from(l).ok()?),
                _ => (0, data.len()),
            };
            let s = e.decode(data.get(from..from.checked_add(len)?)?);
            if base64 {
                ev.layer(e.layer());
            }
            ev.decoded(s.len())?;
            Some(Value::Str(s))
        }
        "getbytes" => {
            let s = to_str(args.first()?);
            let data = match e {
                Encoding::Utf16Le => s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect(),
                _ => s.into_bytes(),
            };
            Some(Value::Bytes {
                data,
                base64: false,
            })
        }
        _ => None,
    }
}

/// `$ExecutionContext`, its `SessionState` and `InvokeCommand`, and enum values.
fn object_member(
    ev: &mut Evaluator,
    o: &'static str,
    m: &str,
    args: Option<Vec<Value>>,
) -> Option<Value> {
    match (o, m, args) {
        ("executioncontext" | "sessionstate", "invokecommand", None) => {
            Some(Value::Object("invokecommand"))
        }
        ("executioncontext", "sessionstate", None) => Some(Value::Object("sessionstate")),
        ("invokecommand", "getcommand" | "getcmdlet" | "getcmdletbytypename", Some(a)) => {
            ev.layer("execution-context");
            let name = commands::resolve_command_pattern(&to_str(a.first()?))?;
            Some(Value::Command(name))
        }
        ("invokecommand", "getcommandname" | "getcmdlets" | "getcommands", Some(a)) => {
            ev.layer("execution-context");
            let names = commands::matching_commands(&to_str(a.first()?));
            let mut out: Vec<Value> = names.into_iter().map(|n| Value::Str(n.into())).collect();
            Some(if out.len() == 1 {
                out.pop()?
            } else {
                Value::Array(out)
            })
        }
        ("invokecommand", "newscriptblock", Some(a)) => {
            ev.layer("scriptblock-create");
            Some(Value::Block(to_str(a.first()?)))
        }
        ("invokecommand", "expandstring", Some(a)) => {
            ev.layer("execution-context");
            let text = to_str(a.first()?);
            for code in subexpressions(&text) {
                ev.runs(code, "expand-string");
            }
            Some(Value::Str(text))
        }
        ("invokecommand", "invokescript", Some(a)) => {
            ev.layer("execution-context");
            ev.runs(to_str(a.first()?), "invoke-script");
            Some(Value::Null)
        }
        _ => None,
    }
}

/// The code of each `$( ... )` in a string `ExpandString` expands (the outer ones).
fn subexpressions(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < chars.len() {
        if chars[i] == '$' && chars[i + 1] == '(' && (i == 0 || chars[i - 1] != '`') {
            let mut depth = 0usize;
            let mut j = i + 1;
            while j < chars.len() {
                match chars[j] {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            out.push(chars[i + 2..j.min(chars.len())].iter().collect());
            i = j;
        }
        i += 1;
    }
    out
}

/// `[type]::member` and `[type]::method(args)`.
fn static_member(ev: &mut Evaluator, t: &str, m: &str, a: Vec<Value>) -> Option<Value> {
    let arg = |k: usize| a.get(k).map(to_str);
    match (t, m) {
        ("convert", "frombase64string") => from_base64(ev, &arg(0)?),
        ("convert", "toint16" | "toint32" | "toint64" | "tobyte" | "touint16" | "touint32") => {
            let s = arg(0)?;
            let radix = a.get(1).and_then(to_int).unwrap_or(10);
            let n = match radix {
                2 | 8 | 16 => {
                    ev.layer(if radix == 16 {
                        "hex"
                    } else if radix == 8 {
                        "octal"
                    } else {
                        "binary"
                    });
                    let t = s.trim();
                    let t = if radix == 16 {
                        t.trim_start_matches("0x").trim_start_matches("0X")
                    } else {
                        t
                    };
                    i64::from_str_radix(t, radix as u32).ok()?
                }
                _ => to_int(a.first()?)?,
            };
            Some(Value::Int(n))
        }
        ("convert", "tochar") => Some(Value::Char(char::from_u32(
            u32::try_from(to_int(a.first()?)?).ok()?,
        )?)),
        ("convert", "tostring") => Some(Value::Str(arg(0)?)),
        ("text.encoding", enc) => encoding(enc, &a).map(Value::Encoding),
        ("string", "join") => {
            let sep = arg(0)?;
            let rest = if a.len() == 2 {
                a[1].clone()
            } else {
                Value::Array(a[1..].to_vec())
            };
            ev.layer("join");
            join(ev, &rest, &sep)
        }
        ("string", "concat") => {
            let all = if a.len() == 1 {
                items(&a[0])
            } else {
                a.clone()
            };
            join(ev, &Value::Array(all), "")
        }
        ("string", "format") => format(ev, &arg(0)?, &a[1..]),
        ("string", "empty") => Some(Value::Str(String::new())),
        ("string", "new") => Some(Value::Str(items(a.first()?).iter().map(to_str).collect())),
        ("char", "convertfromutf32") => Some(Value::Str(
            char::from_u32(u32::try_from(to_int(a.first()?)?).ok()?)?.to_string(),
        )),
        ("char", "tolower") => Some(Value::Str(arg(0)?.to_lowercase())),
        ("char", "toupper") => Some(Value::Str(arg(0)?.to_uppercase())),
        ("int" | "byte", "parse") => Some(Value::Int(to_int(&Value::Str(arg(0)?))?)),
        ("regex", "matches") => regex_matches(ev, &arg(0)?, &arg(1)?, a.get(2)),
        ("regex", "replace") => {
            let re = regex(ev, &arg(1)?, false)?;
            ev.layer("replace");
            let with = arg(2).unwrap_or_default();
            replace_within(ev, &re, &arg(0)?, &with).map(Value::Str)
        }
        ("regex", "split") => split(ev, a.first()?, a.get(1)?, false),
        ("scriptblock", "create") => {
            ev.layer("scriptblock-create");
            Some(Value::Block(arg(0)?))
        }
        ("io.compression.compressionmode", "decompress") => Some(Value::Object("decompress")),
        ("environment", "getenvironmentvariable") => {
            commands::automatic_variable(&format!("env:{}", arg(0)?.to_ascii_lowercase()))
        }
        (t, "new") => new_object(ev, t, a),
        _ => None,
    }
}

/// `[Text.Encoding]::Name` or `GetEncoding(name or code page)`.
fn encoding(m: &str, a: &[Value]) -> Option<Encoding> {
    let name = match m {
        "getencoding" => to_str(a.first()?).to_ascii_lowercase(),
        other => other.to_string(),
    };
    Some(match name.as_str() {
        "unicode" | "utf-16" | "utf-16le" | "1200" => Encoding::Utf16Le,
        "bigendianunicode" | "utf-16be" | "1201" => Encoding::Utf16Be,
        "utf8" | "utf-8" | "65001" | "default" => Encoding::Utf8,
        "ascii" | "us-ascii" | "20127" => Encoding::Ascii,
        "utf32" | "utf-32" | "12000" => Encoding::Utf32,
        _ => return None,
    })
}

/// `[Convert]::FromBase64String` (white space ignored, as .NET does).
fn from_base64(ev: &mut Evaluator, s: &str) -> Option<Value> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    ev.budget.step(clean.len() / 16 + 1);
    let data = base64::engine::general_purpose::STANDARD
        .decode(clean)
        .ok()?;
    ev.decoded(data.len())?;
    Some(Value::Bytes { data, base64: true })
}

/// `[regex]::Matches(text, pattern[, options])`: the matched texts, right to left when
/// asked (`RightToLeft`, 64).
fn regex_matches(
    ev: &mut Evaluator,
    text: &str,
    pattern: &str,
    options: Option<&Value>,
) -> Option<Value> {
    let opts = options
        .map(|o| to_str(o).to_ascii_lowercase())
        .unwrap_or_default();
    let rtl = opts.contains("righttoleft") || options.and_then(to_int).is_some_and(|n| n & 64 != 0);
    let re = regex(ev, pattern, !opts.contains("ignorecase"))?;
    ev.budget.step(text.len() / 8 + 1);
    let mut out: Vec<Value> = re
        .find_iter(text)
        .map(|m| Value::Str(m.as_str().into()))
        .collect();
    if rtl {
        ev.layer("reverse");
        out.reverse();
    }
    ev.produced(out.len())?;
    Some(Value::Array(out))
}

/// `New-Object type args` / `[type]::new(args)`: streams that read and inflate, encodings,
/// strings from chars.
pub(super) fn new_object(ev: &mut Evaluator, t: &str, args: Vec<Value>) -> Option<Value> {
    let args = if args.len() == 1 && matches!(args[0], Value::Array(_)) && t != "string" {
        items(&args[0])
    } else {
        args
    };
    match t {
        "io.memorystream" => memory_stream(args.into_iter().next()?),
        "io.compression.deflatestream" | "io.compression.gzipstream" => {
            let Some(Value::Stream { data, base64 }) = args.first() else {
                return None;
            };
            if !matches!(
                args.get(1),
                Some(Value::Object("decompress")) | Some(Value::Int(0))
            ) && !args
                .get(1)
                .is_some_and(|m| to_str(m).eq_ignore_ascii_case("decompress"))
            {
                return None;
            }
            if *base64 {
                ev.layer("base64");
            }
            let gzip = t.ends_with("gzipstream");
            ev.layer(if gzip { "gzip" } else { "deflate" });
            let out = inflate(ev, data, gzip)?;
            Some(Value::Stream {
                data: out,
                base64: false,
            })
        }
        "io.streamreader" => {
            let Some(Value::Stream { data, .. }) = args.first() else {
                return None;
            };
            let enc = match args.get(1) {
                Some(Value::Encoding(e)) => *e,
                _ => Encoding::Utf8,
            };
            let data = data.strip_prefix(&[0xEF, 0xBB, 0xBF][..]).unwrap_or(data);
            Some(Value::Reader(enc.decode(data)))
        }
        "text.unicodeencoding" => Some(Value::Encoding(Encoding::Utf16Le)),
        "text.utf8encoding" => Some(Value::Encoding(Encoding::Utf8)),
        "text.asciiencoding" => Some(Value::Encoding(Encoding::Ascii)),
        "string" => {
            let s: String = args.iter().flat_map(items).map(|v| to_str(&v)).collect();
            ev.produced(s.len())?;
            Some(Value::Str(s))
        }
        _ => None,
    }
}

/// Inflates raw deflate or gzip data, within what is left of the byte budget.
fn inflate(ev: &mut Evaluator, data: &[u8], gzip: bool) -> Option<Vec<u8>> {
    let limit = ev.budget.decodable() as u64;
    let mut out = Vec::new();
    let read = if gzip {
        flate2::read::GzDecoder::new(data)
            .take(limit + 1)
            .read_to_end(&mut out)
    } else {
        flate2::read::DeflateDecoder::new(data)
            .take(limit + 1)
            .read_to_end(&mut out)
    };
    read.ok()?;
    ev.decoded(out.len())?;
    ev.budget.step(out.len() / 16 + data.len() / 16 + 1);
    Some(out)
}
