//! Independent checks of what the filter hands back, for the tests and the fuzz targets:
//! a msgpack walk of its own (on `rmp`'s marker reader, iterative, so any depth is fine)
//! that shares no code with the core's reader it is checking.

use rmp::Marker;

/// Length in bytes of the msgpack value at the start of `buf`, or None when it is cut
/// short or not msgpack.
pub fn value_len(buf: &[u8]) -> Option<usize> {
    let mut pos = 0usize;
    let mut pending: u64 = 1;
    while pending > 0 {
        pending -= 1;
        let marker = Marker::from_u8(*buf.get(pos)?);
        pos += 1;
        let (skip, more) = match marker {
            Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
                (0, 0)
            }
            Marker::U8 | Marker::I8 => (1, 0),
            Marker::U16 | Marker::I16 => (2, 0),
            Marker::U32 | Marker::I32 | Marker::F32 => (4, 0),
            Marker::U64 | Marker::I64 | Marker::F64 => (8, 0),
            Marker::FixStr(n) => (n as u64, 0),
            Marker::Str8 | Marker::Bin8 => (len(buf, &mut pos, 1)?, 0),
            Marker::Str16 | Marker::Bin16 => (len(buf, &mut pos, 2)?, 0),
            Marker::Str32 | Marker::Bin32 => (len(buf, &mut pos, 4)?, 0),
            Marker::FixArray(n) => (0, n as u64),
            Marker::Array16 => (0, len(buf, &mut pos, 2)?),
            Marker::Array32 => (0, len(buf, &mut pos, 4)?),
            Marker::FixMap(n) => (0, 2 * n as u64),
            Marker::Map16 => (0, 2 * len(buf, &mut pos, 2)?),
            Marker::Map32 => (0, 2 * len(buf, &mut pos, 4)?),
            Marker::FixExt1 => (2, 0),
            Marker::FixExt2 => (3, 0),
            Marker::FixExt4 => (5, 0),
            Marker::FixExt8 => (9, 0),
            Marker::FixExt16 => (17, 0),
            Marker::Ext8 => (len(buf, &mut pos, 1)? + 1, 0),
            Marker::Ext16 => (len(buf, &mut pos, 2)? + 1, 0),
            Marker::Ext32 => (len(buf, &mut pos, 4)? + 1, 0),
            Marker::Reserved => return None,
        };
        pos = pos.checked_add(usize::try_from(skip).ok()?)?;
        pending = pending.checked_add(more)?;
        // every value still owed needs at least one more byte
        if pos > buf.len() || pending > (buf.len() - pos) as u64 {
            return None;
        }
    }
    Some(pos)
}

/// A big-endian length of `n` bytes at `pos`, which it moves past.
fn len(buf: &[u8], pos: &mut usize, n: usize) -> Option<u64> {
    let bytes = buf.get(*pos..*pos + n)?;
    *pos += n;
    Some(bytes.iter().fold(0u64, |acc, b| acc << 8 | *b as u64))
}

/// One msgpack value of a chunk, where it starts, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value<'a> {
    pub offset: usize,
    pub raw: &'a [u8],
}

impl<'a> Value<'a> {
    /// `[header, body]` of a record (any 2-element array), or None.
    pub fn parts(&self) -> Option<(&'a [u8], &'a [u8])> {
        let raw = self.raw;
        let first = match Marker::from_u8(*raw.first()?) {
            Marker::FixArray(2) => 1,
            Marker::Array16 if raw.get(1..3)? == [0, 2] => 3,
            Marker::Array32 if raw.get(1..5)? == [0, 0, 0, 2] => 5,
            _ => return None,
        };
        let h = value_len(&raw[first..])?;
        let b = value_len(&raw[first + h..])?;
        Some((&raw[first..first + h], &raw[first + h..first + h + b]))
    }

    pub fn header(&self) -> Option<&'a [u8]> {
        self.parts().map(|p| p.0)
    }

    pub fn body(&self) -> Option<&'a [u8]> {
        self.parts().map(|p| p.1)
    }
}

/// The whole msgpack values at the start of a chunk, and where the bytes that are not
/// (an undecodable tail) begin.
pub fn values(chunk: &[u8]) -> (Vec<Value<'_>>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < chunk.len() {
        let Some(n) = value_len(&chunk[pos..]) else {
            break;
        };
        out.push(Value {
            offset: pos,
            raw: &chunk[pos..pos + n],
        });
        pos += n;
    }
    (out, pos)
}

/// The (key, value) byte slices of a map, or None when it is not one.
pub fn map_entries(map: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let (mut pos, n) = match Marker::from_u8(*map.first()?) {
        Marker::FixMap(n) => (1, n as u64),
        Marker::Map16 => {
            let mut p = 1;
            let n = len(map, &mut p, 2)?;
            (p, n)
        }
        Marker::Map32 => {
            let mut p = 1;
            let n = len(map, &mut p, 4)?;
            (p, n)
        }
        _ => return None,
    };
    let mut out = Vec::new();
    for _ in 0..n {
        let k = value_len(&map[pos..])?;
        let v = value_len(&map[pos + k..])?;
        out.push((&map[pos..pos + k], &map[pos + k..pos + k + v]));
        pos += k + v;
    }
    Some(out)
}

/// Whether map `out` keeps every entry of map `orig`, in order: the same key, and the same
/// value bytes or, where both are maps, a map that keeps that one's entries (the filter
/// merges its fields into maps the record already has; new keys may follow).
pub fn keeps_original(orig: &[u8], out: &[u8]) -> bool {
    let (Some(a), Some(b)) = (map_entries(orig), map_entries(out)) else {
        return false;
    };
    a.len() <= b.len()
        && a.iter()
            .zip(&b)
            .all(|((ka, va), (kb, vb))| ka == kb && (va == vb || keeps_original(va, vb)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value as V;

    fn enc(v: &V) -> Vec<u8> {
        let mut b = Vec::new();
        rmpv::encode::write_value(&mut b, v).unwrap();
        b
    }

    #[test]
    fn walks_what_rmpv_writes_and_stops_at_a_cut() {
        let rec = V::Array(vec![
            V::Array(vec![V::from(1), V::Map(vec![])]),
            V::Map(vec![
                (V::from("k"), V::Binary(vec![1; 300])),
                (V::from("e"), V::Ext(1, vec![1, 2])),
            ]),
        ]);
        let mut chunk = enc(&rec);
        let one = chunk.len();
        chunk.extend(enc(&rec));
        chunk.extend([0x92, 0xc1]);
        let (vs, end) = values(&chunk);
        assert_eq!((vs.len(), end), (2, 2 * one));
        assert!(vs[0].body().is_some() && vs[0].header().is_some());
        assert_eq!(
            value_len(&[0xdd, 0xff, 0xff, 0xff, 0xff]),
            None,
            "array longer than bytes"
        );
    }

    #[test]
    fn deep_nesting_is_walked_without_recursion() {
        let mut b = vec![0x91; 1_000_000];
        b.push(0xc0);
        assert_eq!(value_len(&b), Some(b.len()));
    }

    #[test]
    fn keeps_original_accepts_merges_and_rejects_losses() {
        let orig = enc(&V::Map(vec![
            (V::from("a"), V::from(1)),
            (V::from("m"), V::Map(vec![(V::from("x"), V::from(1))])),
        ]));
        let merged = enc(&V::Map(vec![
            (V::from("a"), V::from(1)),
            (
                V::from("m"),
                V::Map(vec![(V::from("x"), V::from(1)), (V::from("y"), V::from(2))]),
            ),
            (V::from("new"), V::from(3)),
        ]));
        let changed = enc(&V::Map(vec![
            (V::from("a"), V::from(2)),
            (V::from("m"), V::Map(vec![])),
        ]));
        assert!(keeps_original(&orig, &merged));
        assert!(!keeps_original(&orig, &changed));
    }
}
