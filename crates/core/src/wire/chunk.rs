//! Splits a Fluent Bit log chunk into records and reads each record's header (timestamp,
//! metadata) without decoding its body.
//!
//! A record is `[[timestamp, metadata], body]` (Fluent Bit >= 2.1) or `[timestamp, body]`;
//! the timestamp is an integer, a float, or the EventTime extension (type 0: seconds and
//! nanoseconds, big-endian u32 each). Group markers (timestamp -1 / -2) and any record of
//! another form are passed on as they are.

use crate::msgpack::{Cursor, DecodeError, Token};

/// The record's Fluent Bit timestamp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Timestamp {
    /// Seconds and nanoseconds since the epoch.
    Time { secs: i64, nanos: u32 },
    /// A group start (-1) or end (-2) marker (OpenTelemetry groups).
    GroupMarker(i64),
    /// Anything else in the timestamp position.
    Unknown,
}

impl Timestamp {
    pub fn from_token(tok: Token<'_>) -> Timestamp {
        match tok {
            Token::Int(i) if i < 0 => Timestamp::GroupMarker(i),
            Token::Int(i) => Timestamp::Time { secs: i, nanos: 0 },
            Token::Float(f) if f.is_finite() && f >= 0.0 => {
                let secs = f.floor();
                Timestamp::Time {
                    secs: secs as i64,
                    nanos: ((f - secs) * 1e9).round().min(999_999_999.0) as u32,
                }
            }
            Token::Ext(0, data) if data.len() == 8 => Timestamp::Time {
                secs: u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as i64,
                nanos: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            },
            _ => Timestamp::Unknown,
        }
    }

    /// Seconds since the epoch as a float, when this is a time.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Timestamp::Time { secs, nanos } => Some(secs as f64 + nanos as f64 / 1e9),
            _ => None,
        }
    }
}

/// Which of the two record layouts a record uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFormat {
    /// `[[timestamp, metadata], body]`
    WithMetadata,
    /// `[timestamp, body]`
    Legacy,
    /// Any other msgpack value: not a record we read.
    Other,
}

/// One record of a chunk, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    /// The whole record, exactly as in the chunk.
    pub raw: &'a [u8],
    /// Offset of the record in the chunk.
    pub offset: usize,
    pub format: RecordFormat,
    pub timestamp: Timestamp,
    /// Offset of the body within `raw` (everything before it is the header).
    pub body_start: usize,
}

impl<'a> RecordRef<'a> {
    pub fn body(&self) -> &'a [u8] {
        &self.raw[self.body_start..]
    }

    pub fn header(&self) -> &'a [u8] {
        &self.raw[..self.body_start]
    }

    /// Whether this record is an ordinary log event (not a group marker, not unknown).
    pub fn is_event(&self) -> bool {
        self.format != RecordFormat::Other && matches!(self.timestamp, Timestamp::Time { .. })
    }
}

/// Iterates the records of a chunk. After an error the iterator yields it once and stops:
/// the caller passes the rest of the chunk on verbatim.
pub struct Records<'a> {
    cur: Cursor<'a>,
    failed: bool,
}

impl<'a> Records<'a> {
    pub fn new(chunk: &'a [u8]) -> Self {
        Records {
            cur: Cursor::new(chunk),
            failed: false,
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordRef<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.cur.is_at_end() {
            return None;
        }
        let start = self.cur.pos();
        let chunk = self.cur.buf();
        let result = self.cur.skip_value().map(|()| {
            let raw = &chunk[start..self.cur.pos()];
            read_record(raw, start)
        });
        if result.is_err() {
            self.failed = true;
        }
        Some(result)
    }
}

/// Reads a record's header at `pos`: its layout, timestamp and where its body starts.
/// None when the value there is not a record (the caller then skips it whole).
pub fn read_header(chunk: &[u8], pos: usize) -> Option<(RecordFormat, Timestamp, usize)> {
    common_header(chunk, pos).or_else(|| any_header(chunk, pos))
}

/// The header Fluent Bit 2.1 and later write for nearly every record, `[[EventTime, {}], `,
/// read from its bytes without the token reader. Fluent Bit's encoder writes the empty
/// metadata map as a map32 (`df 00 00 00 00`); a fixmap or map16 is read as well.
#[inline]
fn common_header(chunk: &[u8], pos: usize) -> Option<(RecordFormat, Timestamp, usize)> {
    let &[0x92, 0x92, 0xd7, 0x00, s0, s1, s2, s3, n0, n1, n2, n3, ref meta @ ..] =
        chunk.get(pos..)?
    else {
        return None;
    };
    let meta_len = match meta {
        [0x80, ..] => 1,
        [0xde, 0, 0, ..] => 3,
        [0xdf, 0, 0, 0, 0, ..] => 5,
        _ => return None,
    };
    let timestamp = Timestamp::Time {
        secs: i64::from(u32::from_be_bytes([s0, s1, s2, s3])),
        nanos: u32::from_be_bytes([n0, n1, n2, n3]),
    };
    Some((RecordFormat::WithMetadata, timestamp, pos + 12 + meta_len))
}

/// [`read_header`] for any header.
fn any_header(chunk: &[u8], pos: usize) -> Option<(RecordFormat, Timestamp, usize)> {
    let mut c = Cursor::at(chunk, pos);
    if c.next_token() != Ok(Token::Array(2)) {
        return None;
    }
    let (format, timestamp) = match c.next_token().ok()? {
        Token::Array(2) => {
            let ts = match c.next_token().ok()? {
                // a container is no timestamp (and reading on would misplace the body)
                Token::Array(_) | Token::Map(_) => return None,
                t => Timestamp::from_token(t),
            };
            c.skip_value().ok()?;
            (RecordFormat::WithMetadata, ts)
        }
        Token::Array(_) | Token::Map(_) => return None,
        t => (RecordFormat::Legacy, Timestamp::from_token(t)),
    };
    Some((format, timestamp, c.pos()))
}

/// Reads the header of one whole, well-formed msgpack value.
fn read_record(raw: &[u8], offset: usize) -> RecordRef<'_> {
    let other = RecordRef {
        raw,
        offset,
        format: RecordFormat::Other,
        timestamp: Timestamp::Unknown,
        body_start: raw.len(),
    };
    let mut c = Cursor::new(raw);
    if c.next_token() != Ok(Token::Array(2)) {
        return other;
    }
    let (format, timestamp) = match c.next_token() {
        Ok(Token::Array(2)) => {
            let ts = match c.next_token() {
                // a container is no timestamp (and reading on would misplace the body)
                Ok(Token::Array(_)) | Ok(Token::Map(_)) | Err(_) => return other,
                Ok(t) => Timestamp::from_token(t),
            };
            // metadata: any value (a map in practice)
            if c.skip_value().is_err() {
                return other;
            }
            (RecordFormat::WithMetadata, ts)
        }
        Ok(Token::Array(_)) | Ok(Token::Map(_)) => return other,
        Ok(t) => (RecordFormat::Legacy, Timestamp::from_token(t)),
        Err(_) => return other,
    };
    RecordRef {
        raw,
        offset,
        format,
        timestamp,
        body_start: c.pos(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value;

    fn enc(v: &Value) -> Vec<u8> {
        let mut b = Vec::new();
        rmpv::encode::write_value(&mut b, v).unwrap();
        b
    }

    fn body() -> Value {
        Value::Map(vec![("k".into(), "v".into())])
    }

    #[test]
    fn reads_all_timestamp_forms_and_both_layouts() {
        let event_time = Value::Ext(0, vec![0, 0, 0, 10, 0, 0, 0, 5]);
        let recs = [
            Value::Array(vec![Value::from(10), body()]),
            Value::Array(vec![Value::from(10.5), body()]),
            Value::Array(vec![
                Value::Array(vec![event_time, Value::Map(vec![])]),
                body(),
            ]),
        ];
        let mut chunk = Vec::new();
        for r in &recs {
            chunk.extend(enc(r));
        }
        let got: Vec<_> = Records::new(&chunk).map(|r| r.unwrap()).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].timestamp, Timestamp::Time { secs: 10, nanos: 0 });
        assert_eq!(got[0].format, RecordFormat::Legacy);
        assert_eq!(
            got[1].timestamp,
            Timestamp::Time {
                secs: 10,
                nanos: 500_000_000
            }
        );
        assert_eq!(got[2].timestamp, Timestamp::Time { secs: 10, nanos: 5 });
        assert_eq!(got[2].format, RecordFormat::WithMetadata);
        for g in &got {
            assert_eq!(g.body(), enc(&body()).as_slice());
        }
    }

    #[test]
    fn truncated_chunk_yields_error_once() {
        let mut chunk = enc(&Value::Array(vec![Value::from(1), body()]));
        let n = chunk.len();
        chunk.extend_from_slice(&enc(&Value::Array(vec![Value::from(1), body()]))[..n - 2]);
        let got: Vec<_> = Records::new(&chunk).collect();
        assert_eq!(got.len(), 2);
        assert!(got[0].is_ok());
        assert!(got[1].as_ref().unwrap_err().offset >= n);
    }

    #[test]
    fn group_markers_are_not_events() {
        let rec = enc(&Value::Array(vec![
            Value::Array(vec![Value::from(-1), Value::Map(vec![])]),
            body(),
        ]));
        let r = Records::new(&rec).next().unwrap().unwrap();
        assert_eq!(r.timestamp, Timestamp::GroupMarker(-1));
        assert!(!r.is_event());
    }

    #[test]
    fn a_header_whose_time_is_a_container_is_no_record() {
        // [[[1, {}], {}], {"EventID": 4104}]: the "time" of the header is an array
        let raw = [0x92, 0x92, 0x92, 0x01, 0x80, 0x80, 0x81, 0xa1, b'k', 0x01];
        let r = read_record(&raw, 0);
        assert!(!r.is_event(), "{r:?}");
        assert!(read_header(&raw, 0).is_none());
    }

    /// The 13-byte shortcut reads the common header exactly as the token reader does.
    #[test]
    fn the_common_header_reads_as_any_header() {
        let times = [(0u32, 0u32), (1_700_000_000, 999_999_999), (u32::MAX, 5)];
        let metas: [&[u8]; 3] = [&[0x80], &[0xde, 0, 0], &[0xdf, 0, 0, 0, 0]];
        for ((secs, nanos), meta) in times.into_iter().flat_map(|t| metas.map(|m| (t, m))) {
            let mut raw = vec![0x92, 0x92, 0xd7, 0x00];
            raw.extend(secs.to_be_bytes());
            raw.extend(nanos.to_be_bytes());
            raw.extend(meta);
            raw.extend([0x81, 0xa1, b'a', 0x01]);
            let common = common_header(&raw, 0);
            assert!(common.is_some());
            assert_eq!(common, any_header(&raw, 0));
            // cut short, it is left to the token reader (which refuses it too)
            for cut in 0..12 + meta.len() {
                assert_eq!(common_header(&raw[..cut], 0), None);
                assert_eq!(read_header(&raw[..cut], 0), None);
            }
        }
        // metadata that is not empty: the token reader's
        let mut raw = vec![
            0x92, 0x92, 0xd7, 0x00, 0, 0, 0, 1, 0, 0, 0, 0, 0x81, 0xa1, b'k', 1,
        ];
        raw.extend([0x80]);
        assert_eq!(common_header(&raw, 0), None);
        assert_eq!(read_header(&raw, 0).map(|h| h.2), Some(16));
    }
}
