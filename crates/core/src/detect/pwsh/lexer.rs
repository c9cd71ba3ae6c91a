//! PowerShell's tokenizer, as far as `mode extended` needs: one linear pass over the bytes
//! of the script (positions are byte offsets; characters beyond ASCII are decoded only
//! where PowerShell gives them a meaning: dashes, typographic quotes, Unicode white space).
//! Comments, strings and here-strings, backtick escapes and line continuations, statement
//! separators and groups. Never fails: unterminated strings and comments run to the end.

use compact_str::CompactString;

/// A token's text: kept inline when short (most words and names are), so tokenizing a
/// plain script allocates almost nothing.
pub type Text = CompactString;

/// How a statement or pipeline ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sep {
    Semicolon,
    Newline,
    Pipe,
    AndAnd,
    OrOr,
}

/// One token, with the span (in bytes) it came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A bare word (command names, unquoted arguments), backtick escapes removed.
    Word(Text),
    /// `-Name` or `-Name:value` (any of the dash look-alikes); boxed, so every token
    /// stays small.
    Param(Box<Param>),
    /// A string literal's content; `expandable` for double-quoted ones.
    Str {
        text: Text,
        expandable: bool,
    },
    /// `$name`, `${name}`, `$env:NAME`.
    Var(Text),
    /// `(`, `$(`, `@(`, `@{`.
    Open,
    /// `{`: a script block (runs only when something runs it, unless it is a
    /// statement's body).
    OpenBlock,
    /// `)` or `}`.
    Close,
    Sep(Sep),
    /// `&` or `.` in command position.
    Call,
    /// `=` and the assignment operators: what follows is a pipeline.
    Assign,
    /// Anything else (commas, other operators).
    Other,
}

/// A parameter token: its name, and the value given after a colon.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: Text,
    pub value: Option<Text>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    /// Byte offsets into the code.
    pub start: usize,
    pub end: usize,
}

/// The tokens of one piece of code, the code itself, and the code found inside it that
/// must be read too (`$( )` in double-quoted strings).
pub struct Lexed {
    pub text: String,
    pub tokens: Vec<Token>,
    pub nested: Vec<String>,
}

pub(super) fn is_dash(c: char) -> bool {
    matches!(c, '-' | '\u{2013}' | '\u{2014}' | '\u{2015}')
}

pub(super) fn is_dquote(c: char) -> bool {
    matches!(c, '"' | '\u{201C}' | '\u{201D}' | '\u{201E}')
}

pub(super) fn is_squote(c: char) -> bool {
    matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}')
}

fn ends_word(c: char) -> bool {
    c.is_whitespace() || matches!(c, ';' | '|' | '&' | '(' | ')' | '{' | '}' | ',')
}

/// ASCII bytes that end a bare word's plain run (specials, quotes, the backtick, white
/// space); any byte >= 0x80 ends it too, to be looked at as a character.
const PLAIN_WORD: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = b'!';
    while b < 0x80 {
        t[b as usize] = !matches!(
            b,
            b';' | b'|' | b'&' | b'(' | b')' | b'{' | b'}' | b',' | b'`' | b'\'' | b'"' | 0x7f
        );
        b += 1;
    }
    t
};

fn plain_word_byte(b: u8) -> bool {
    PLAIN_WORD[b as usize]
}

/// The first token after `i` that is not a newline (`tokens.len()` past the end).
pub fn next_code(tokens: &[Token], mut i: usize) -> usize {
    i += 1;
    while matches!(tokens.get(i).map(|t| &t.tok), Some(Tok::Sep(Sep::Newline))) {
        i += 1;
    }
    i
}

/// Tokenizes PowerShell source in one pass over its bytes.
pub fn tokenize(src: &str) -> Lexed {
    let mut lx = Lexer {
        s: src,
        b: src.as_bytes(),
        i: 0,
        out: Vec::with_capacity(src.len() / 6 + 4),
        nested: Vec::new(),
    };
    while lx.i < lx.b.len() {
        lx.next_token();
    }
    Lexed {
        text: src.to_string(),
        tokens: lx.out,
        nested: lx.nested,
    }
}

/// The tokenizer's state: where it is, and what it has found.
struct Lexer<'s> {
    s: &'s str,
    b: &'s [u8],
    i: usize,
    out: Vec<Token>,
    nested: Vec<String>,
}

impl Lexer<'_> {
    /// The character at byte `i` and its length, if any.
    fn ch(&self, i: usize) -> Option<(char, usize)> {
        let b = *self.b.get(i)?;
        if b < 0x80 {
            return Some((b as char, 1));
        }
        let c = self.s.get(i..)?.chars().next()?;
        Some((c, c.len_utf8()))
    }

    fn at(&self, i: usize) -> Option<char> {
        self.ch(i).map(|(c, _)| c)
    }

    fn push(&mut self, tok: Tok, start: usize, end: usize) {
        let end = end.min(self.b.len());
        self.out.push(Token { tok, start, end });
    }

    /// One token at `self.i`, or the white space, comment or line continuation there.
    /// Longer than most functions on purpose: it is the lexer's dispatch table, one short
    /// arm per leading character; every longer form has a method of its own below.
    fn next_token(&mut self) {
        let start = self.i;
        // the commonest starts first: a word of plain letters, and blanks
        match self.b[start] {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'[' | b']' | b':' | b'+' | b'*' => {
                let (w, next) = read_word(self.s, start);
                self.i = next.max(start + 1);
                self.push(Tok::Word(w), start, self.i);
                return;
            }
            b' ' | b'\t' | b'\r' => {
                self.i += 1;
                while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\r')) {
                    self.i += 1;
                }
                return;
            }
            _ => {}
        }
        let Some((c, len)) = self.ch(self.i) else {
            self.i += 1;
            return;
        };
        let one = |lx: &mut Self, tok: Tok, n: usize| {
            lx.push(tok, start, start + n);
            lx.i = start + n;
        };
        match c {
            '\n' => one(self, Tok::Sep(Sep::Newline), 1),
            ' ' | '\t' | '\r' => {
                self.i += 1;
                while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\r')) {
                    self.i += 1;
                }
            }
            '#' => {
                self.i =
                    memchr::memchr(b'\n', &self.b[self.i..]).map_or(self.b.len(), |k| self.i + k)
            }
            '<' if self.b.get(self.i + 1) == Some(&b'#') => {
                let from = self.i + 2;
                self.i = memchr::memmem::find(&self.b[from.min(self.b.len())..], b"#>")
                    .map_or(self.b.len(), |k| from + k + 2);
            }
            '`' if matches!(self.b.get(self.i + 1), Some(b'\n' | b'\r')) => {
                self.i += 2;
                if self.b.get(self.i - 1) == Some(&b'\r') && self.b.get(self.i) == Some(&b'\n') {
                    self.i += 1;
                }
            }
            ';' => one(self, Tok::Sep(Sep::Semicolon), 1),
            '|' if self.b.get(self.i + 1) == Some(&b'|') => one(self, Tok::Sep(Sep::OrOr), 2),
            '|' => one(self, Tok::Sep(Sep::Pipe), 1),
            '&' if self.b.get(self.i + 1) == Some(&b'&') => one(self, Tok::Sep(Sep::AndAnd), 2),
            '&' => one(self, Tok::Call, 1),
            '(' => one(self, Tok::Open, 1),
            '{' => one(self, Tok::OpenBlock, 1),
            ')' | '}' => one(self, Tok::Close, 1),
            '$' if self.b.get(self.i + 1) == Some(&b'(') => one(self, Tok::Open, 2),
            '@' if matches!(self.b.get(self.i + 1), Some(b'(' | b'{')) => one(self, Tok::Open, 2),
            '@' if self.here_string_opens() => self.here_string(start),
            '=' => one(self, Tok::Assign, 1),
            ',' => one(self, Tok::Other, 1),
            '$' => self.variable(start),
            '.' if self.at(self.i + 1).is_none_or(char::is_whitespace) => {
                // the dot-source operator in command position, the current computer as an
                // argument
                one(self, Tok::Word(Text::const_new(".")), 1)
            }
            q if is_squote(q) => self.single_quoted(start, len),
            q if is_dquote(q) => self.double_quoted(start, len),
            c if c.is_whitespace() => self.i += len,
            c if is_dash(c)
                && self
                    .at(self.i + len)
                    .is_some_and(|n| n.is_alphabetic() || n == '`') =>
            {
                self.parameter(start, len)
            }
            _ => {
                let (w, next) = read_word(self.s, self.i);
                self.i = next.max(self.i + len);
                self.push(Tok::Word(w), start, self.i);
            }
        }
    }

    /// `@'` or `@"` followed by a line break.
    fn here_string_opens(&self) -> bool {
        match self.ch(self.i + 1) {
            Some((q, qlen)) if is_squote(q) || is_dquote(q) => {
                matches!(self.b.get(self.i + 1 + qlen), Some(b'\n' | b'\r'))
            }
            _ => false,
        }
    }

    /// A here-string (@' '@ or @" "@): to a line that starts with the quote and '@'.
    fn here_string(&mut self, start: usize) {
        let expandable = self.at(self.i + 1).is_some_and(is_dquote);
        let from = self.i + 2;
        let body_start = memchr::memchr(b'\n', &self.b[from.min(self.b.len())..])
            .map_or(self.b.len(), |k| from + k + 1);
        let mut end = self.b.len();
        let mut after = self.b.len();
        let mut k = body_start.saturating_sub(1);
        while let Some(off) = memchr::memchr(b'\n', &self.b[k.min(self.b.len())..]) {
            let nl = k + off;
            if let Some((q, qlen)) = self.ch(nl + 1) {
                if (is_squote(q) || is_dquote(q)) && self.b.get(nl + 1 + qlen) == Some(&b'@') {
                    end = nl;
                    after = nl + 1 + qlen + 1;
                    break;
                }
            }
            k = nl + 1;
        }
        let text = Text::from(self.s.get(body_start.min(end)..end).unwrap_or(""));
        if expandable {
            collect_subexpressions(&text, &mut self.nested);
        }
        self.i = after;
        self.push(Tok::Str { text, expandable }, start, after);
    }

    /// A single-quoted string: no escapes, a doubled quote is a quote.
    fn single_quoted(&mut self, start: usize, qlen: usize) {
        let mut text = Text::default();
        self.i += qlen;
        loop {
            // the plain run up to the next quote-ish byte
            let run = self.b[self.i..]
                .iter()
                .position(|&b| b == b'\'' || b >= 0x80)
                .map_or(self.b.len(), |k| self.i + k);
            text.push_str(&self.s[self.i..run]);
            self.i = run;
            let Some((c, len)) = self.ch(self.i) else {
                break;
            };
            if is_squote(c) {
                if self.closes(is_squote, c, len, &mut text) {
                    break;
                }
                continue;
            }
            text.push(c);
            self.i += len;
        }
        self.push(
            Tok::Str {
                text,
                expandable: false,
            },
            start,
            self.i,
        );
    }

    /// At a quote of the string's kind: a doubled quote is one quote of the text (false);
    /// a single one ends the string (true). Moves past it either way.
    fn closes(&mut self, is_quote: fn(char) -> bool, c: char, len: usize, text: &mut Text) -> bool {
        if let Some((n, nlen)) = self.ch(self.i + len).filter(|(n, _)| is_quote(*n)) {
            let _ = n;
            text.push(c);
            self.i += len + nlen;
            return false;
        }
        self.i += len;
        true
    }

    /// A double-quoted string: backtick escapes, "" is a quote, and each unescaped
    /// `$( )` kept as code to read too.
    fn double_quoted(&mut self, start: usize, qlen: usize) {
        let mut text = Text::default();
        self.i += qlen;
        loop {
            let run = self.b[self.i..]
                .iter()
                .position(|&b| matches!(b, b'"' | b'`' | b'$') || b >= 0x80)
                .map_or(self.b.len(), |k| self.i + k);
            text.push_str(&self.s[self.i..run]);
            self.i = run;
            let Some((c, len)) = self.ch(self.i) else {
                break;
            };
            match c {
                '`' => {
                    if let Some((nx, nlen)) = self.ch(self.i + 1) {
                        text.push(match nx {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            '0' => '\0',
                            other => other,
                        });
                        self.i += 1 + nlen;
                    } else {
                        self.i += 1;
                    }
                }
                '$' if self.b.get(self.i + 1) == Some(&b'(') => self.subexpression(&mut text),
                q if is_dquote(q) => {
                    if self.closes(is_dquote, q, len, &mut text) {
                        break;
                    }
                }
                other => {
                    text.push(other);
                    self.i += len;
                }
            }
        }
        self.push(
            Tok::Str {
                text,
                expandable: true,
            },
            start,
            self.i,
        );
    }

    /// An unescaped `$( ... )` in a double-quoted string: code that runs when the string
    /// is made. Kept in the text and queued to read.
    fn subexpression(&mut self, text: &mut Text) {
        let from = self.i + 2;
        let mut depth = 0usize;
        let mut j = self.i + 1;
        while j < self.b.len() {
            match self.b[j] {
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        let inner = &self.s[from.min(j)..j.min(self.b.len())];
        text.push_str("$(");
        text.push_str(inner);
        text.push(')');
        self.nested.push(inner.to_string());
        self.i = (j + 1).min(self.b.len());
    }

    /// A variable: `$name`, `$scope:name`, `${any name}`.
    fn variable(&mut self, start: usize) {
        self.i += 1;
        let name = if self.b.get(self.i) == Some(&b'{') {
            let from = self.i + 1;
            let to = memchr::memchr(b'}', &self.b[from.min(self.b.len())..])
                .map_or(self.b.len(), |k| from + k);
            self.i = (to + 1).min(self.b.len());
            Text::from(self.s.get(from.min(to)..to).unwrap_or(""))
        } else {
            let from = self.i;
            while let Some((c, len)) = self.ch(self.i) {
                if !(c.is_alphanumeric() || matches!(c, '_' | ':' | '?' | '^' | '$')) {
                    break;
                }
                self.i += len;
            }
            Text::from(&self.s[from..self.i])
        };
        self.push(Tok::Var(name), start, self.i);
    }

    /// A parameter, `-Name` or `-Name:value` (any dash PowerShell accepts).
    fn parameter(&mut self, start: usize, dash_len: usize) {
        self.i += dash_len;
        let run = self.b[self.i..]
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-'))
            .map_or(self.b.len(), |k| self.i + k);
        let mut name = Text::from(&self.s[self.i..run]);
        self.i = run;
        while let Some((ch, len)) = self.ch(self.i) {
            // PowerShell keeps a backtick inside a parameter name as part of the name
            // (so `-Co`mputerName` names no parameter and the command fails).
            if ch == '`' {
                match self.ch(self.i + 1) {
                    Some((nx, nlen)) if !matches!(nx, '\n' | '\r') => {
                        name.push('`');
                        name.push(nx);
                        self.i += 1 + nlen;
                        continue;
                    }
                    _ => break,
                }
            }
            if ends_word(ch) || ch == ':' || is_squote(ch) || is_dquote(ch) {
                break;
            }
            name.push(ch);
            self.i += len;
        }
        let mut value = None;
        if self.b.get(self.i) == Some(&b':') {
            self.i += 1;
            let (v, next) = read_word(self.s, self.i);
            value = Some(v);
            self.i = next;
        }
        self.push(Tok::Param(Box::new(Param { name, value })), start, self.i);
    }
}

/// A generic word from byte `i`: up to white space or a special character; backtick
/// escapes applied, quoted pieces inside it joined (`a"b"c` is `abc`). The word and where
/// it ends.
pub(super) fn read_word(s: &str, mut i: usize) -> (Text, usize) {
    let b = s.as_bytes();
    let n = b.len();
    // the common case: one plain run ending at white space or a special character
    let run = b[i.min(n)..]
        .iter()
        .position(|&c| !plain_word_byte(c))
        .map_or(n, |k| i + k);
    if b.get(run).is_none_or(|&c| c < 0x80 && ends_word(c as char)) {
        return (Text::from(&s[i.min(n)..run]), run);
    }
    let mut w = Text::default();
    while i < n {
        // the plain ASCII run in one step
        let run = b[i..]
            .iter()
            .position(|&c| !plain_word_byte(c))
            .map_or(n, |k| i + k);
        if run > i {
            w.push_str(&s[i..run]);
            i = run;
            continue;
        }
        let Some(ch) = s.get(i..).and_then(|r| r.chars().next()) else {
            break;
        };
        if ch == '`' {
            match s.get(i + 1..).and_then(|r| r.chars().next()) {
                Some('\n') | Some('\r') | None => break,
                Some(nx) => {
                    w.push(crate::detect::constant::word_escape(nx));
                    i += 1 + nx.len_utf8();
                    continue;
                }
            }
        }
        if is_squote(ch) || is_dquote(ch) {
            let single = is_squote(ch);
            i += ch.len_utf8();
            while let Some(c) = s.get(i..).and_then(|r| r.chars().next()) {
                if (single && is_squote(c)) || (!single && is_dquote(c)) {
                    break;
                }
                w.push(c);
                i += c.len_utf8();
            }
            if let Some(c) = s.get(i..).and_then(|r| r.chars().next()) {
                i += c.len_utf8();
            }
            continue;
        }
        if ends_word(ch) {
            break;
        }
        w.push(ch);
        i += ch.len_utf8();
    }
    (w, i.min(n))
}

/// `$( ... )` inside an expandable here-string is code: queue its text.
fn collect_subexpressions(text: &str, nested: &mut Vec<String>) {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(off) = text[i..].find("$(") {
        let start = i + off + 2;
        let mut depth = 1usize;
        let mut j = start;
        while j < b.len() && depth > 0 {
            match b[j] {
                b'(' => depth += 1,
                b')' => depth -= 1,
                _ => {}
            }
            j += 1;
        }
        let end = if depth == 0 { j - 1 } else { j };
        nested.push(text[start..end].to_string());
        i = j.max(start);
        if i >= text.len() {
            break;
        }
    }
}
