//! One chunk through the filter: split into records, judge each, and, only if something is
//! flagged, write a new chunk in which every other record is the original bytes.

use super::chunk::{RecordRef, Records};
use super::config::Config;
use super::enrich::{self, Normalized};
use super::msgpack::DecodeError;
use super::shapes::Scan;
use super::verdict::{Rules, Verdict};
use std::borrow::Cow;

/// The result of filtering one chunk.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Nothing flagged: the chunk goes on as it is (FLB_FILTER_NOTOUCH).
    NoTouch,
    /// The rewritten chunk (FLB_FILTER_MODIFIED): same records, same order.
    Modified(Vec<u8>),
}

/// Counts from one chunk.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChunkStats {
    pub records: u64,
    /// Records that passed the `powershell` / EventCode=4104 gate.
    pub candidates: u64,
    pub flagged: u64,
    /// Matched the analytic but suppressed by an exclusion.
    pub excluded: u64,
}

/// A flagged record, ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct Flagged {
    pub normalized: Normalized,
    /// The text the analytic searched (its `Message` group-by value).
    pub message: String,
    /// Where the written record sits in the output chunk.
    pub out_range: std::ops::Range<usize>,
}

/// The filter of one instance: configuration and compiled rules. Immutable, shared by every
/// thread that calls it.
pub struct Detector {
    pub config: Config,
    rules: Rules,
}

/// What filtering a chunk produced.
#[derive(Debug)]
pub struct ChunkResult {
    pub outcome: Outcome,
    pub stats: ChunkStats,
    /// The flagged records, in order.
    pub flagged: Vec<Flagged>,
    /// Set when the chunk was not valid msgpack from this offset on; those bytes were
    /// passed on verbatim.
    pub error: Option<DecodeError>,
}

impl Detector {
    pub fn new(config: Config) -> Detector {
        Detector {
            config,
            rules: Rules::new(),
        }
    }

    /// Judges one record. None when it is not flagged (excluded ones are counted).
    pub fn judge_record(&self, rec: &RecordRef<'_>, stats: &mut ChunkStats) -> Option<Flagged> {
        if !rec.is_event() {
            return None;
        }
        let mut scan = Scan::new(rec.body(), &self.config.fields)?;
        if scan.event_code() != Some(super::analytic::EVENT_CODE) {
            return None;
        }
        let view = scan.view();
        if !Rules::is_powershell_4104(&view) {
            return None;
        }
        stats.candidates += 1;
        match self.rules.judge(&view, &self.config) {
            Verdict::NoMatch => None,
            Verdict::Excluded => {
                stats.excluded += 1;
                None
            }
            Verdict::Flagged => {
                stats.flagged += 1;
                let (time, time_source) = match view.time {
                    Some(t) => (t.secs, t.field),
                    None => (rec.timestamp.as_f64().unwrap_or(0.0), "fluentbit"),
                };
                Some(Flagged {
                    message: text_or_unknown(view.script_text()),
                    out_range: 0..0,
                    normalized: Normalized {
                        event_code: view.event_code.unwrap_or_default(),
                        computer: text_or_unknown(view.computer.as_deref()),
                        user: text_or_unknown(view.user.as_deref()),
                        time,
                        time_source,
                        shape: view.shape,
                    },
                })
            }
        }
    }

    /// Writes a flagged record: its header bytes unchanged, its body with the enrichment.
    pub fn write_flagged(&self, rec: &RecordRef<'_>, f: &Flagged, out: &mut Vec<u8>) {
        let mark = out.len();
        out.extend_from_slice(rec.header());
        let adds = enrich::additions(&self.config, &f.normalized);
        if !enrich::merge_into_map(rec.body(), &adds, &self.config.namespace, out) {
            out.truncate(mark);
            out.extend_from_slice(rec.raw);
        }
    }

    /// Filters one chunk. Untouched records are copied as raw bytes; a chunk with no flagged
    /// record is not copied at all. Bytes that are not valid msgpack are passed on as they
    /// are, after the records before them.
    pub fn filter_chunk(&self, chunk: &[u8]) -> ChunkResult {
        let mut stats = ChunkStats::default();
        let mut out: Option<Vec<u8>> = None;
        let mut copied_to = 0usize;
        let mut error = None;
        let mut flagged = Vec::new();
        for rec in Records::new(chunk) {
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            };
            stats.records += 1;
            if let Some(mut f) = self.judge_record(&rec, &mut stats) {
                let buf = out.get_or_insert_with(|| Vec::with_capacity(chunk.len() + 4096));
                buf.extend_from_slice(&chunk[copied_to..rec.offset]);
                let start = buf.len();
                self.write_flagged(&rec, &f, buf);
                f.out_range = start..buf.len();
                flagged.push(f);
                copied_to = rec.offset + rec.raw.len();
            }
        }
        let outcome = match out {
            None => Outcome::NoTouch,
            Some(mut buf) => {
                buf.extend_from_slice(&chunk[copied_to..]);
                Outcome::Modified(buf)
            }
        };
        ChunkResult {
            outcome,
            stats,
            flagged,
            error,
        }
    }
}

fn text_or_unknown(t: Option<&[u8]>) -> String {
    match t {
        Some(b) => match String::from_utf8_lossy(b) {
            Cow::Borrowed(s) => s.to_string(),
            Cow::Owned(s) => s,
        },
        None => super::analytic::UNKNOWN.to_string(),
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

    fn rec(body: Vec<(&str, Value)>) -> Vec<u8> {
        enc(&Value::Array(vec![
            Value::Array(vec![Value::from(1_700_000_000), Value::Map(vec![])]),
            Value::Map(body.into_iter().map(|(k, v)| (k.into(), v)).collect()),
        ]))
    }

    fn positive() -> Vec<u8> {
        rec(vec![
            ("EventID", 4104.into()),
            ("Channel", "Microsoft-Windows-PowerShell/Operational".into()),
            ("Hostname", "ws01".into()),
            (
                "ScriptBlockText",
                "Enter-PSSession -ComputerName dc01".into(),
            ),
        ])
    }

    fn negative() -> Vec<u8> {
        rec(vec![
            ("EventID", 4624.into()),
            ("Channel", "Security".into()),
        ])
    }

    #[test]
    fn no_flag_no_touch() {
        let d = Detector::new(Config::default());
        let mut chunk = negative();
        chunk.extend(negative());
        let r = d.filter_chunk(&chunk);
        assert_eq!(r.outcome, Outcome::NoTouch);
        assert_eq!(r.stats.records, 2);
    }

    #[test]
    fn flagged_record_rewritten_others_byte_identical() {
        let d = Detector::new(Config::default());
        let (n, p) = (negative(), positive());
        let chunk = [n.clone(), p.clone(), n.clone()].concat();
        let r = d.filter_chunk(&chunk);
        let Outcome::Modified(out) = r.outcome else {
            panic!("expected a modified chunk")
        };
        assert_eq!(r.stats.flagged, 1);
        assert_eq!(&out[..n.len()], n.as_slice());
        assert_eq!(&out[out.len() - n.len()..], n.as_slice());
        let recs: Vec<_> = Records::new(&out).map(|r| r.unwrap()).collect();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[1].header(), &p[..recs[1].header().len()]);
    }

    #[test]
    fn garbage_tail_is_kept_after_flagged_records() {
        let d = Detector::new(Config::default());
        let mut chunk = positive();
        chunk.extend_from_slice(&[0x92, 0xc1, 0xff]);
        let r = d.filter_chunk(&chunk);
        assert!(r.error.is_some());
        let Outcome::Modified(out) = r.outcome else {
            panic!("expected a modified chunk")
        };
        assert!(out.ends_with(&[0x92, 0xc1, 0xff]));
    }
}
