//! Fluent Bit chunks to and from JSON, for the tools and tests that feed the plugin: a JSON
//! record body becomes a msgpack record in either layout with any timestamp form, and a
//! chunk the plugin returns is read back as JSON lines.

use crate::chunk::{RecordFormat, Records, Timestamp};

/// How the record header is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeForm {
    /// Integer seconds.
    Int,
    /// Float seconds.
    Float,
    /// The EventTime extension (type 0).
    EventTime,
}

/// Record layout and timestamp form of the chunks to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub format: RecordFormat,
    pub time: TimeForm,
}

impl Layout {
    /// Fluent Bit >= 2.1: `[[EventTime, {}], body]`, with the map headers its encoder
    /// writes (see `push_as_fluent_bit_encodes`).
    pub const CURRENT: Layout = Layout {
        format: RecordFormat::WithMetadata,
        time: TimeForm::EventTime,
    };

    /// Every combination the plugin must accept.
    pub fn all() -> Vec<Layout> {
        let mut v = Vec::new();
        for format in [RecordFormat::WithMetadata, RecordFormat::Legacy] {
            for time in [TimeForm::Int, TimeForm::Float, TimeForm::EventTime] {
                v.push(Layout { format, time });
            }
        }
        v
    }
}

/// Converts JSON to a msgpack value (integers stay integers, floats stay floats).
pub fn json_to_msgpack(v: &serde_json::Value) -> rmpv::Value {
    use serde_json::Value as J;
    match v {
        J::Null => rmpv::Value::Nil,
        J::Bool(b) => rmpv::Value::Boolean(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                rmpv::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                rmpv::Value::from(u)
            } else {
                rmpv::Value::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        J::String(s) => rmpv::Value::from(s.as_str()),
        J::Array(a) => rmpv::Value::Array(a.iter().map(json_to_msgpack).collect()),
        J::Object(o) => rmpv::Value::Map(
            o.iter()
                .map(|(k, v)| (rmpv::Value::from(k.as_str()), json_to_msgpack(v)))
                .collect(),
        ),
    }
}

/// Converts a msgpack value to JSON (binary as lossy text, extensions as their bytes).
pub fn msgpack_to_json(v: &rmpv::Value) -> serde_json::Value {
    use rmpv::Value as M;
    use serde_json::Value as J;
    match v {
        M::Nil => J::Null,
        M::Boolean(b) => J::Bool(*b),
        M::Integer(i) => {
            if let Some(x) = i.as_i64() {
                J::from(x)
            } else {
                J::from(i.as_u64().unwrap_or(0))
            }
        }
        M::F32(f) => serde_json::Number::from_f64(*f as f64).map_or(J::Null, J::Number),
        M::F64(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        M::String(s) => J::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        M::Binary(b) => J::String(String::from_utf8_lossy(b).into_owned()),
        M::Array(a) => J::Array(a.iter().map(msgpack_to_json).collect()),
        M::Map(m) => {
            let mut o = serde_json::Map::new();
            for (k, v) in m {
                let key = match k {
                    M::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                    other => msgpack_to_json(other).to_string(),
                };
                o.insert(key, msgpack_to_json(v));
            }
            J::Object(o)
        }
        M::Ext(_, data) => J::Array(data.iter().map(|b| J::from(*b)).collect()),
    }
}

/// Appends one record with the given body and time (epoch seconds) to a chunk.
pub fn push_record(chunk: &mut Vec<u8>, body: &rmpv::Value, secs: f64, layout: Layout) {
    let whole = secs.floor().max(0.0);
    let ts = match layout.time {
        TimeForm::Int => rmpv::Value::from(whole as i64),
        TimeForm::Float => rmpv::Value::F64(secs),
        TimeForm::EventTime => {
            let nanos = ((secs - whole) * 1e9).round().clamp(0.0, 999_999_999.0) as u32;
            let mut data = (whole as u32).to_be_bytes().to_vec();
            data.extend_from_slice(&nanos.to_be_bytes());
            rmpv::Value::Ext(0, data)
        }
    };
    // Writing into a Vec cannot fail.
    if layout == Layout::CURRENT {
        push_as_fluent_bit_encodes(chunk, &ts, body);
        return;
    }
    let header = match layout.format {
        RecordFormat::WithMetadata => rmpv::Value::Array(vec![ts, rmpv::Value::Map(vec![])]),
        _ => ts,
    };
    let rec = rmpv::Value::Array(vec![header, body.clone()]);
    let _ = rmpv::encode::write_value(chunk, &rec);
}

/// `[[ts, {}], body]` byte for byte as Fluent Bit's log event encoder writes it (seen in a
/// chunk from 5.1.1's `out_file`): the metadata map and the body's own map header are
/// map32 (`df` and four length bytes, as `flb_mp_map_header_init` reserves them), whatever
/// their size; values inside the body are written compactly.
fn push_as_fluent_bit_encodes(chunk: &mut Vec<u8>, ts: &rmpv::Value, body: &rmpv::Value) {
    chunk.extend([0x92, 0x92]);
    let _ = rmpv::encode::write_value(chunk, ts);
    chunk.extend([0xdf, 0, 0, 0, 0]);
    match body {
        rmpv::Value::Map(entries) => {
            chunk.push(0xdf);
            chunk.extend((entries.len() as u32).to_be_bytes());
            for (k, v) in entries {
                let _ = rmpv::encode::write_value(chunk, k);
                let _ = rmpv::encode::write_value(chunk, v);
            }
        }
        other => {
            let _ = rmpv::encode::write_value(chunk, other);
        }
    }
}

/// One record read back from a chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRecord {
    /// Seconds since the epoch, when the header holds a time.
    pub time: Option<f64>,
    pub body: serde_json::Value,
    /// The record's bytes exactly as in the chunk.
    pub raw: Vec<u8>,
}

/// Reads every record of a chunk. Err gives the offset where the chunk stops being msgpack.
pub fn decode_chunk(chunk: &[u8]) -> Result<Vec<DecodedRecord>, usize> {
    let mut out = Vec::new();
    for r in Records::new(chunk) {
        let r = r.map_err(|e| e.offset)?;
        // rmpv decodes recursively: past this depth the body is reported as null rather
        // than risking the stack (the record's bytes stay in `raw`).
        let body = rmpv::decode::read_value_with_max_depth(&mut &r.body()[..], 256)
            .map(|v| msgpack_to_json(&v))
            .unwrap_or(serde_json::Value::Null);
        out.push(DecodedRecord {
            time: match r.timestamp {
                Timestamp::Time { .. } => r.timestamp.as_f64(),
                _ => None,
            },
            body,
            raw: r.raw.to_vec(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_layout() {
        let body = serde_json::json!({"a": 1, "b": [1.5, "x", null], "c": {"d": true}});
        for layout in Layout::all() {
            let mut chunk = Vec::new();
            push_record(
                &mut chunk,
                &json_to_msgpack(&body),
                1_700_000_000.25,
                layout,
            );
            let recs = decode_chunk(&chunk).unwrap();
            assert_eq!(recs.len(), 1);
            assert_eq!(recs[0].body, body);
            let want = if layout.time == TimeForm::Int {
                1_700_000_000.0
            } else {
                1_700_000_000.25
            };
            assert_eq!(recs[0].time, Some(want), "{layout:?}");
        }
    }
}
