//! Zero-copy msgpack reading: one token at a time, values skipped without recursion or
//! allocation, so hostile nesting or sizes cost time linear in the bytes and nothing more.

use rmp::Marker;
use std::fmt;

/// Why bytes could not be read as msgpack, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError {
    /// Offset (in the buffer given to the cursor) where reading failed.
    pub offset: usize,
    pub kind: DecodeErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The buffer ends inside a value.
    Truncated,
    /// A byte that is not a msgpack marker (0xc1).
    ReservedMarker,
    /// A container announces more elements than the remaining bytes could hold.
    ImpossibleLength,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            DecodeErrorKind::Truncated => "truncated msgpack value",
            DecodeErrorKind::ReservedMarker => "invalid msgpack marker 0xc1",
            DecodeErrorKind::ImpossibleLength => "msgpack container longer than its buffer",
        };
        write!(f, "{what} at byte {}", self.offset)
    }
}

impl std::error::Error for DecodeError {}

/// One msgpack token. Containers give only their length: their elements follow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Token<'a> {
    Nil,
    Bool(bool),
    /// Any integer that fits i64.
    Int(i64),
    /// Unsigned integers above i64::MAX.
    BigUint(u64),
    Float(f64),
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Ext(i8, &'a [u8]),
    Array(u32),
    Map(u32),
}

/// The whole length of every scalar whose marker byte alone tells it (positive and
/// negative fixints, nil, booleans, fixed-width numbers, fixstrs); 0 for the rest.
static MARKER_LEN: [u8; 256] = marker_lengths();

const fn marker_lengths() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        t[b] = match b {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 1,
            0xa0..=0xbf => 1 + (b & 0x1f) as u8,
            0xcc | 0xd0 => 2,
            0xcd | 0xd1 => 3,
            0xca | 0xce | 0xd2 => 5,
            0xcb | 0xcf | 0xd3 => 9,
            _ => 0,
        };
        b += 1;
    }
    t
}

/// The whole length of the scalar at `buf[pos]` (see [`Cursor::scalar_len`]): one table
/// look for most markers, the length bytes for str8/16/32. It may reach past the buffer;
/// callers check the end.
#[inline(always)]
fn scalar_len_at(buf: &[u8], pos: usize) -> Option<usize> {
    let b = *buf.get(pos)?;
    let n = MARKER_LEN[b as usize];
    if n != 0 {
        return Some(n as usize);
    }
    let at = |i: usize| buf.get(pos + i).copied();
    Some(match b {
        0xd9 => 2 + at(1)? as usize,
        0xda => 3 + u16::from_be_bytes([at(1)?, at(2)?]) as usize,
        0xdb => 5 + u32::from_be_bytes([at(1)?, at(2)?, at(3)?, at(4)?]) as usize,
        _ => return None,
    })
}

/// A read position in a msgpack buffer.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    pub fn at(buf: &'a [u8], pos: usize) -> Self {
        Cursor { buf, pos }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn buf(&self) -> &'a [u8] {
        self.buf
    }

    pub fn is_at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn err(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            offset: self.pos,
            kind,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| self.err(DecodeErrorKind::Truncated))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn len8(&mut self) -> Result<usize, DecodeError> {
        Ok(self.be::<1>()?[0] as usize)
    }
    fn len16(&mut self) -> Result<usize, DecodeError> {
        Ok(u16::from_be_bytes(self.be()?) as usize)
    }
    fn len32(&mut self) -> Result<usize, DecodeError> {
        Ok(u32::from_be_bytes(self.be()?) as usize)
    }

    /// Reads the next token. On error the cursor position is unspecified.
    /// Longer than most functions on purpose: one short arm per msgpack marker family,
    /// the format's own table, which reads best in one place.
    pub fn next_token(&mut self) -> Result<Token<'a>, DecodeError> {
        let start = self.pos;
        let byte = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.err(DecodeErrorKind::Truncated))?;
        self.pos += 1;
        let tok = match Marker::from_u8(byte) {
            Marker::FixPos(v) => Token::Int(v as i64),
            Marker::FixNeg(v) => Token::Int(v as i64),
            Marker::Null => Token::Nil,
            Marker::True => Token::Bool(true),
            Marker::False => Token::Bool(false),
            Marker::U8 => Token::Int(self.be::<1>()?[0] as i64),
            Marker::U16 => Token::Int(u16::from_be_bytes(self.be()?) as i64),
            Marker::U32 => Token::Int(u32::from_be_bytes(self.be()?) as i64),
            Marker::U64 => {
                let v = u64::from_be_bytes(self.be()?);
                match i64::try_from(v) {
                    Ok(i) => Token::Int(i),
                    Err(_) => Token::BigUint(v),
                }
            }
            Marker::I8 => Token::Int(i8::from_be_bytes(self.be()?) as i64),
            Marker::I16 => Token::Int(i16::from_be_bytes(self.be()?) as i64),
            Marker::I32 => Token::Int(i32::from_be_bytes(self.be()?) as i64),
            Marker::I64 => Token::Int(i64::from_be_bytes(self.be()?)),
            Marker::F32 => Token::Float(f32::from_be_bytes(self.be()?) as f64),
            Marker::F64 => Token::Float(f64::from_be_bytes(self.be()?)),
            Marker::FixStr(n) => Token::Str(self.take(n as usize)?),
            Marker::Str8 => {
                let n = self.len8()?;
                Token::Str(self.take(n)?)
            }
            Marker::Str16 => {
                let n = self.len16()?;
                Token::Str(self.take(n)?)
            }
            Marker::Str32 => {
                let n = self.len32()?;
                Token::Str(self.take(n)?)
            }
            Marker::Bin8 => {
                let n = self.len8()?;
                Token::Bin(self.take(n)?)
            }
            Marker::Bin16 => {
                let n = self.len16()?;
                Token::Bin(self.take(n)?)
            }
            Marker::Bin32 => {
                let n = self.len32()?;
                Token::Bin(self.take(n)?)
            }
            Marker::FixArray(n) => Token::Array(n as u32),
            Marker::Array16 => Token::Array(self.len16()? as u32),
            Marker::Array32 => Token::Array(self.len32()? as u32),
            Marker::FixMap(n) => Token::Map(n as u32),
            Marker::Map16 => Token::Map(self.len16()? as u32),
            Marker::Map32 => Token::Map(self.len32()? as u32),
            Marker::FixExt1 => self.ext(1)?,
            Marker::FixExt2 => self.ext(2)?,
            Marker::FixExt4 => self.ext(4)?,
            Marker::FixExt8 => self.ext(8)?,
            Marker::FixExt16 => self.ext(16)?,
            Marker::Ext8 => {
                let n = self.len8()?;
                self.ext(n)?
            }
            Marker::Ext16 => {
                let n = self.len16()?;
                self.ext(n)?
            }
            Marker::Ext32 => {
                let n = self.len32()?;
                self.ext(n)?
            }
            Marker::Reserved => {
                self.pos = start;
                return Err(self.err(DecodeErrorKind::ReservedMarker));
            }
        };
        Ok(tok)
    }

    fn ext(&mut self, n: usize) -> Result<Token<'a>, DecodeError> {
        let ty = self.be::<1>()?[0] as i8;
        Ok(Token::Ext(ty, self.take(n)?))
    }

    /// Skips one whole value (containers included) without recursion. Each element takes at
    /// least one byte, so a container claiming more elements than bytes left is rejected at
    /// once instead of looping.
    pub fn skip_value(&mut self) -> Result<(), DecodeError> {
        // Most values of a log record, and most elements of its containers, are one scalar
        // whose length the marker byte tells: those are stepped over without decoding.
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            if let Some(len) = self.scalar_len() {
                self.pos = self
                    .pos
                    .checked_add(len)
                    .filter(|&e| e <= self.buf.len())
                    .ok_or_else(|| self.err(DecodeErrorKind::Truncated))?;
                continue;
            }
            match self.next_token()? {
                Token::Array(n) => pending += n as u64,
                Token::Map(n) => pending += 2 * n as u64,
                _ => {}
            }
            if pending > self.remaining() as u64 {
                return Err(self.err(DecodeErrorKind::ImpossibleLength));
            }
        }
        Ok(())
    }

    /// The whole length of the scalar at the cursor (marker included), when the value there
    /// is a nil, bool, number or string; None for containers, binaries, extensions and
    /// anything the slow path must look at.
    #[inline]
    fn scalar_len(&self) -> Option<usize> {
        scalar_len_at(self.buf, self.pos)
    }

    /// Skips one value and returns the bytes it occupied.
    pub fn value_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        self.skip_value()?;
        Ok(&self.buf[start..self.pos])
    }
}

/// A decoded scalar read from a value's bytes; containers report only their kind.
pub fn first_token(value: &[u8]) -> Option<Token<'_>> {
    Cursor::new(value).next_token().ok()
}

/// Iterates the entries of a msgpack map given as its whole bytes, as (key, value) byte
/// slices. Stops (returning None) at the first malformed entry.
pub struct MapEntries<'a> {
    cur: Cursor<'a>,
    left: u32,
    failed: bool,
}

impl<'a> MapEntries<'a> {
    /// None when `value` is not a map.
    pub fn new(value: &'a [u8]) -> Option<Self> {
        let mut cur = Cursor::new(value);
        match cur.next_token().ok()? {
            Token::Map(n) => Some(MapEntries {
                cur,
                left: n,
                failed: false,
            }),
            _ => None,
        }
    }

    pub fn len(&self) -> u32 {
        self.left
    }

    pub fn is_empty(&self) -> bool {
        self.left == 0
    }

    /// Bytes read so far (the whole map once every entry was read).
    pub fn position(&self) -> usize {
        self.cur.pos()
    }

    /// Whether an entry could not be read.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Skips every entry left without reading it (keys and values are mostly scalars,
    /// stepped over by their marker; anything else goes through `skip_value`); marks the
    /// map failed when it is cut short or malformed.
    pub fn skip_rest(&mut self) {
        let buf = self.cur.buf;
        let mut pos = self.cur.pos;
        let mut values = 2 * u64::from(self.left);
        self.left = 0;
        while values > 0 {
            values -= 1;
            // a marker that tells the whole length (at most 32 bytes: no overflow)
            if let Some(&b) = buf.get(pos) {
                let n = MARKER_LEN[b as usize] as usize;
                if n != 0 && pos + n <= buf.len() {
                    pos += n;
                    continue;
                }
            }
            let scalar_end = scalar_len_at(buf, pos).and_then(|n| pos.checked_add(n));
            match scalar_end.filter(|&e| e <= buf.len()) {
                Some(end) => pos = end,
                None => {
                    let mut c = Cursor::at(buf, pos);
                    if c.skip_value().is_err() {
                        self.failed = true;
                        break;
                    }
                    pos = c.pos;
                }
            }
        }
        self.cur.pos = pos;
    }

    /// The common entry read without the general token reader: a fixstr or str8 key and a
    /// value whose marker tells its length. None (nothing consumed) for anything else.
    #[inline(always)]
    fn next_plain(&mut self) -> Option<MapEntry<'a>> {
        let buf = self.cur.buf;
        let start = self.cur.pos;
        let (name_at, key_end, end) = plain_entry_bounds(buf, start)?;
        self.cur.pos = end;
        Some(MapEntry {
            name: Some(&buf[name_at..key_end]),
            raw: &buf[start..end],
            key_len: key_end - start,
            value: &buf[key_end..end],
        })
    }
}

/// Where the entry at `start` has its name, its key's end and its own end, when it is the
/// common kind: a fixstr or str8 key and a value whose marker tells its length, all inside
/// `buf`. None for any other entry.
#[inline(always)]
fn plain_entry_bounds(buf: &[u8], start: usize) -> Option<(usize, usize, usize)> {
    let (name_at, name_len) = match *buf.get(start)? {
        b @ 0xa0..=0xbf => (start + 1, (b & 0x1f) as usize),
        0xd9 => (start + 2, *buf.get(start + 1)? as usize),
        _ => return None,
    };
    // a key's claimed length is at most 255 past a position inside the buffer; a value's
    // may be 4 GB, which can overflow a 32-bit usize
    let key_end = name_at + name_len;
    let end = key_end.checked_add(scalar_len_at(buf, key_end)?)?;
    (end <= buf.len()).then_some((name_at, key_end, end))
}

impl<'a> Iterator for MapEntries<'a> {
    /// (key token bytes as a string if the key is a str/bin, whole key bytes, value bytes)
    type Item = MapEntry<'a>;

    /// The common entry (see `next_plain`) inlined into the caller's loop; the rest out
    /// of line.
    #[inline(always)]
    fn next(&mut self) -> Option<MapEntry<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        match self.next_plain() {
            Some(e) => Some(e),
            None => self.next_general(),
        }
    }
}

impl<'a> MapEntries<'a> {
    /// The next entry whose name `wanted` accepts. Entries with a fixstr or str8 key it
    /// refuses and a scalar value are stepped over without being built (most keys of a record, for a
    /// reader that wants a few names); any other entry is returned as `next` gives it.
    #[inline(always)]
    pub fn next_wanted(&mut self, wanted: impl Fn(&[u8]) -> bool) -> Option<MapEntry<'a>> {
        while self.left > 0 {
            let buf = self.cur.buf;
            match plain_entry_bounds(buf, self.cur.pos) {
                Some((name_at, key_end, end)) if !wanted(&buf[name_at..key_end]) => {
                    self.left -= 1;
                    self.cur.pos = end;
                }
                _ => break,
            }
        }
        self.next()
    }

    /// An entry `next_plain` does not read: any key, any value.
    #[inline(never)]
    fn next_general(&mut self) -> Option<MapEntry<'a>> {
        let key_start = self.cur.pos();
        let key_name = match self.cur.next_token() {
            Ok(Token::Str(s)) | Ok(Token::Bin(s)) => Some(s),
            Ok(Token::Array(_)) | Ok(Token::Map(_)) => {
                // A container as a key: rewind and skip it whole.
                self.cur = Cursor::at(self.cur.buf(), key_start);
                if self.cur.skip_value().is_err() {
                    self.left = 0;
                    self.failed = true;
                    return None;
                }
                None
            }
            Ok(_) => None,
            Err(_) => {
                self.left = 0;
                self.failed = true;
                return None;
            }
        };
        let key_end = self.cur.pos();
        match self.cur.value_bytes() {
            Ok(value) => Some(MapEntry {
                name: key_name,
                raw: &self.cur.buf()[key_start..self.cur.pos()],
                key_len: key_end - key_start,
                value,
            }),
            Err(_) => {
                self.left = 0;
                self.failed = true;
                None
            }
        }
    }
}

/// One map entry, borrowed from the buffer.
#[derive(Debug, Clone, Copy)]
pub struct MapEntry<'a> {
    /// The key's text when it is a str or bin.
    pub name: Option<&'a [u8]>,
    /// Key and value bytes together, exactly as in the buffer.
    pub raw: &'a [u8],
    /// Length of the key within `raw`.
    pub key_len: usize,
    /// The value's bytes.
    pub value: &'a [u8],
}

/// Looks a key up in a map given as its whole bytes (first match wins).
pub fn map_get<'a>(map: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    MapEntries::new(map)?
        .find(|e| e.name == Some(key))
        .map(|e| e.value)
}

/// Iterates the elements of a msgpack array given as its whole bytes.
pub fn array_elements(value: &[u8]) -> Option<impl Iterator<Item = &[u8]>> {
    let mut cur = Cursor::new(value);
    let n = match cur.next_token().ok()? {
        Token::Array(n) => n,
        _ => return None,
    };
    let mut left = n;
    Some(std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        left -= 1;
        cur.value_bytes().ok()
    }))
}

/// Writes a map header for `n` entries in the smallest form.
pub fn write_map_len(out: &mut Vec<u8>, n: u32) {
    // Writing to a Vec cannot fail.
    let _ = rmp::encode::write_map_len(out, n);
}

pub fn write_array_len(out: &mut Vec<u8>, n: u32) {
    let _ = rmp::encode::write_array_len(out, n);
}

pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let _ = rmp::encode::write_str(out, s);
}

pub fn write_int(out: &mut Vec<u8>, v: i64) {
    let _ = rmp::encode::write_sint(out, v);
}

pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    let _ = rmp::encode::write_f64(out, v);
}

pub fn write_bool(out: &mut Vec<u8>, v: bool) {
    let _ = rmp::encode::write_bool(out, v);
}

pub fn write_nil(out: &mut Vec<u8>) {
    let _ = rmp::encode::write_nil(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &rmpv::Value) -> Vec<u8> {
        let mut b = Vec::new();
        rmpv::encode::write_value(&mut b, v).unwrap();
        b
    }

    #[test]
    fn skips_nested_values_and_reports_truncation() {
        let v = rmpv::Value::Map(vec![(
            "a".into(),
            rmpv::Value::Array(vec![1.into(), "x".into(), rmpv::Value::Nil]),
        )]);
        let b = enc(&v);
        let mut c = Cursor::new(&b);
        c.skip_value().unwrap();
        assert!(c.is_at_end());
        let mut c = Cursor::new(&b[..b.len() - 1]);
        let kind = c.skip_value().unwrap_err().kind;
        assert!(matches!(
            kind,
            DecodeErrorKind::Truncated | DecodeErrorKind::ImpossibleLength
        ));
        let mut c = Cursor::new(&b"\xa5abc"[..]);
        assert_eq!(c.skip_value().unwrap_err().kind, DecodeErrorKind::Truncated);
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        let depth = 100_000;
        let mut b = vec![0x91u8; depth];
        b.push(0xc0);
        let mut c = Cursor::new(&b);
        c.skip_value().unwrap();
        assert!(c.is_at_end());
    }

    #[test]
    fn impossible_lengths_fail_fast() {
        // map32 claiming 2^32-1 entries in 5 bytes.
        let b = [0xdf, 0xff, 0xff, 0xff, 0xff];
        let e = Cursor::new(&b).skip_value().unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::ImpossibleLength);
    }

    #[test]
    fn map_get_finds_keys() {
        let v = rmpv::Value::Map(vec![("k".into(), 7.into()), ("s".into(), "v".into())]);
        let b = enc(&v);
        assert_eq!(first_token(map_get(&b, b"k").unwrap()), Some(Token::Int(7)));
        assert_eq!(map_get(&b, b"zz"), None);
    }

    #[test]
    fn big_unsigned_ints_are_kept() {
        let b = enc(&rmpv::Value::from(u64::MAX));
        assert_eq!(first_token(&b), Some(Token::BigUint(u64::MAX)));
    }

    /// Any msgpack value, scalars most often (as in log records).
    fn any_value() -> impl proptest::strategy::Strategy<Value = rmpv::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            any_key(),
            any::<i64>().prop_map(rmpv::Value::from),
            any::<u64>().prop_map(rmpv::Value::from),
            // every integer width, from fixint to 32 bits
            (-70_000i64..70_000).prop_map(rmpv::Value::from),
            (-40i64..300).prop_map(rmpv::Value::from),
            any::<f64>().prop_map(rmpv::Value::F64),
            any::<f32>().prop_map(rmpv::Value::F32),
            any::<bool>().prop_map(rmpv::Value::Boolean),
            Just(rmpv::Value::Nil),
            "[ -~]{0,300}".prop_map(rmpv::Value::from),
            proptest::collection::vec(any::<u8>(), 0..4).prop_map(rmpv::Value::Binary),
            (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..9))
                .prop_map(|(t, d)| rmpv::Value::Ext(t, d)),
        ];
        leaf.prop_recursive(2, 16, 4, |inner| {
            prop_oneof![
                4 => inner.clone(),
                1 => proptest::collection::vec(inner.clone(), 0..4).prop_map(rmpv::Value::Array),
                1 => proptest::collection::vec((inner.clone(), inner), 0..4)
                    .prop_map(rmpv::Value::Map),
            ]
        })
    }

    /// A key: mostly a name the walk wants or not, sometimes any value.
    fn any_key() -> impl proptest::strategy::Strategy<Value = rmpv::Value> {
        use proptest::prelude::*;
        prop_oneof![
            3 => Just(rmpv::Value::from("EventID")),
            3 => Just(rmpv::Value::from("Channel")),
            3 => "[a-zA-Z_]{0,40}".prop_map(rmpv::Value::from),
            1 => any::<i64>().prop_map(rmpv::Value::from),
        ]
    }

    /// (name, raw) of each entry, and where the walk ended and whether it failed.
    type Walk = (Vec<(Option<Vec<u8>>, Vec<u8>)>, usize, bool);

    fn walk(map: &[u8], mut step: impl FnMut(&mut MapEntries<'_>) -> Option<()>) -> Walk {
        let mut m = MapEntries::new(map).unwrap();
        while step(&mut m).is_some() {}
        (Vec::new(), m.position(), m.failed())
    }

    proptest::proptest! {
        /// The shortcuts (`next_wanted`, `skip_rest`, the scalar table in `skip_value`)
        /// read every map, whole and cut at every byte, as the general reader does.
        #[test]
        fn shortcuts_read_maps_as_the_general_reader(
            entries in proptest::collection::vec(
                (proptest::prop_oneof![9 => any_key(), 1 => any_value()], any_value()),
                0..12,
            ),
            skip_from in 0usize..12,
        ) {
            let whole = enc(&rmpv::Value::Map(entries));
            for cut in 1..=whole.len() {
                let map = &whole[..cut];
                if let Err(e) = same_walks(map, skip_from, cut == whole.len()) {
                    return Err(proptest::test_runner::TestCaseError::fail(format!(
                        "cut at {cut} of {}: {e}",
                        whole.len()
                    )));
                }
            }
        }
    }

    /// The general reader's walk of `map` against each shortcut's.
    fn same_walks(map: &[u8], skip_from: usize, whole: bool) -> Result<(), String> {
        let wanted = |n: &[u8]| n == b"EventID" || n.len() == 7;
        let keep = |e: MapEntry<'_>| (e.name.map(<[u8]>::to_vec), e.raw.to_vec());
        // where a walk stops inside a malformed map is nobody's business: callers drop it
        let end = |w: &Walk| (w.2, if w.2 { 0 } else { w.1 });
        let mut general = Vec::new();
        let g = walk(map, |m| {
            let e = m.next()?;
            if e.name.is_none_or(wanted) {
                general.push(keep(e));
            }
            Some(())
        });
        let mut quick = Vec::new();
        let q = walk(map, |m| {
            let e = m.next_wanted(wanted)?;
            if e.name.is_none_or(wanted) {
                quick.push(keep(e));
            }
            Some(())
        });
        if general != quick || end(&g) != end(&q) {
            return Err(format!(
                "next_wanted: {quick:?} {:?}, not {general:?} {:?}",
                end(&q),
                end(&g)
            ));
        }
        let mut read = 0;
        let s = walk(map, |m| {
            if read == skip_from {
                m.skip_rest();
                return None;
            }
            read += 1;
            m.next().map(|_| ())
        });
        if end(&s) != end(&g) {
            return Err(format!(
                "skip_rest after {skip_from}: {:?}, not {:?}",
                end(&s),
                end(&g)
            ));
        }
        if whole {
            // an independent decoder: rmpv's entries, encoded again, are the walk's bytes
            let Ok(rmpv::Value::Map(decoded)) = rmpv::decode::read_value(&mut &map[..]) else {
                return Err("rmpv does not read the map".into());
            };
            let mut all = Vec::new();
            walk(map, |m| m.next().map(|e| all.push(e.raw.to_vec())));
            let theirs: Vec<Vec<u8>> = decoded
                .iter()
                .map(|(k, v)| [enc(k), enc(v)].concat())
                .collect();
            if all != theirs {
                return Err(format!("entries {all:?}, rmpv {theirs:?}"));
            }
        }
        let mut c = Cursor::new(map);
        let skipped = c.skip_value().is_ok();
        if skipped != (!g.2 && whole) || (skipped && c.pos() != g.1) {
            return Err(format!(
                "skip_value: {skipped} at {}, walk {:?}",
                c.pos(),
                end(&g)
            ));
        }
        Ok(())
    }
}
