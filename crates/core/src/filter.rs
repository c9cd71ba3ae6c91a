//! One chunk through the filter: split into records, judge each, and, only if something is
//! flagged, write a new chunk in which every other record is the original bytes.

use super::chunk::{read_header, RecordRef, Records};
use super::config::Config;
use super::enrich::{self, Normalized};
use super::msgpack::DecodeError;
use super::reassembly::{Completion, Fed, Reassembler, Released};
use super::shapes::EventView;
use super::shapes::Scan;
use super::verdict::{Rules, Verdict};
use crate::mirrored::{Mirrored, MirroredGuard};
use crate::reassembly::Reassembled;
use crate::verdict::ExtendedFinding;
use std::borrow::Cow;

/// How script-block reassembly stands: what is held, and what was judged early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyState {
    /// Blocks waiting for parts, and the bytes they hold.
    pub open_blocks: usize,
    pub bytes: usize,
    /// Blocks judged as they stood because `reassemble_timeout` passed.
    pub timeouts: u64,
    /// Blocks judged as they stood because a memory bound was hit.
    pub bound_releases: u64,
}

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
    /// Records already enriched by a pssession filter (an alert copy or an aggregate row
    /// coming back through a broad Match): passed on unjudged.
    pub own: u64,
    /// Flagged records of `mode extended` by the transport of their first session that
    /// counts (indexed by [`Transport::index`](crate::pwsh::Transport::index)); a flagged
    /// verdict always has one.
    pub flagged_by_transport: [u64; 5],
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

/// The filter of one instance: configuration, compiled rules, and the open script blocks
/// when reassembly is on. Shared by every thread that calls it.
pub struct Detector {
    pub config: Config,
    rules: Rules,
    reassembler: Option<Mirrored<Reassembler>>,
}

/// A flagged record that is not in the chunk being filtered: a script block judged as it
/// stood (timeout or memory bound), flagged on a copy of its last part.
#[derive(Debug, Clone, PartialEq)]
pub struct LateFlag {
    /// The tag the last part came with.
    pub tag: String,
    /// The enriched copy of the last part (a whole record).
    pub record: Vec<u8>,
    pub flagged: Flagged,
}

/// What filtering a chunk produced.
#[derive(Debug)]
pub struct ChunkResult {
    pub outcome: Outcome,
    pub stats: ChunkStats,
    /// The flagged records, in order.
    pub flagged: Vec<Flagged>,
    /// Script blocks judged as they stood, to emit on their own.
    pub late: Vec<LateFlag>,
    /// Set when the chunk was not valid msgpack from this offset on; those bytes were
    /// passed on verbatim.
    pub error: Option<DecodeError>,
    /// Where the bytes that are not whole records begin (the end of the chunk when all
    /// of it is records): anything appended to the chunk goes before them.
    pub records_end: usize,
}

impl Detector {
    pub fn new(config: Config) -> Detector {
        let reassembler = config.reassembly.as_ref().map(|r| {
            Mirrored::new(
                Reassembler::new(r.max_bytes, r.max_blocks, r.timeout_secs),
                Reassembler::open_blocks,
            )
        });
        Detector {
            config,
            rules: Rules::new(),
            reassembler,
        }
    }

    fn lock(&self) -> Option<MirroredGuard<'_, Reassembler>> {
        self.reassembler.as_ref().map(Mirrored::lock)
    }

    /// Script blocks waiting for parts, without taking the reassembler's lock.
    pub fn open_blocks(&self) -> usize {
        self.reassembler.as_ref().map_or(0, Mirrored::get)
    }

    /// The record's normalised values, for a flagged verdict.
    fn flagged(
        &self,
        view: &EventView<'_>,
        rec: &RecordRef<'_>,
        message: String,
        reassembly: Option<Reassembled>,
        extended: Option<ExtendedFinding>,
    ) -> Flagged {
        let (time, time_source) = match view.time {
            Some(t) => (t.secs, t.field),
            None => (rec.timestamp.as_f64().unwrap_or(0.0), "fluentbit"),
        };
        Flagged {
            message,
            out_range: 0..0,
            normalized: Normalized {
                event_code: view.event_code.unwrap_or_default(),
                computer: text_or_unknown(view.computer.as_deref()),
                user: text_or_unknown(view.user.as_deref()),
                time,
                time_source,
                shape: view.shape,
                reassembly,
                extended,
            },
        }
    }

    /// Judges one record. None when it is not flagged (excluded ones are counted). With
    /// reassembly on, a part of a multi-part script block is held until its block is
    /// whole; blocks released unfinished on the way are judged into `late`.
    pub fn judge_record(
        &self,
        rec: &RecordRef<'_>,
        tag: &str,
        now: f64,
        stats: &mut ChunkStats,
        late: &mut Vec<LateFlag>,
    ) -> Option<Flagged> {
        if !rec.is_event() {
            return None;
        }
        let scan = Scan::new(rec.body(), &self.config.fields)?;
        self.judge_scanned(rec, scan, tag, now, stats, late)
    }

    /// [`judge_record`](Self::judge_record) for a body already scanned.
    fn judge_scanned<'a>(
        &self,
        rec: &RecordRef<'a>,
        mut scan: Scan<'a, '_>,
        tag: &str,
        now: f64,
        stats: &mut ChunkStats,
        late: &mut Vec<LateFlag>,
    ) -> Option<Flagged> {
        if scan.event_code() != Some(super::analytic::EVENT_CODE) {
            return None;
        }
        let view = scan.view();
        if !Rules::is_powershell_4104(&view) {
            return None;
        }
        if is_enriched(rec.body(), &self.config.namespace) {
            stats.own += 1;
            return None;
        }
        stats.candidates += 1;
        if let (Some(mut reasm), Some(part)) = (self.lock(), view.part.as_ref()) {
            if part.total > 1 {
                let computer = text_or_unknown(view.computer.as_deref());
                let text = view.part_text().unwrap_or_default();
                let (fed, released) = reasm.add(&computer, part, text, tag, rec.raw, now);
                drop(reasm);
                self.judge_released(released, stats, late);
                return match fed {
                    Fed::Pending => None,
                    Fed::Complete { script, parts } => {
                        let info = Reassembled {
                            block_id: part.block_id.clone(),
                            parts,
                            total: part.total,
                            how: Completion::Complete.name(),
                        };
                        let (v, ext) = self.rules.judge_script(
                            Some(&script),
                            Some(&script),
                            &view,
                            &self.config,
                        );
                        self.count(v, ext.as_ref(), stats)
                            .then(|| self.flagged(&view, rec, lossy(&script), Some(info), ext))
                    }
                };
            }
        }
        let text = view.script_text().map(lossy).unwrap_or_default();
        let (v, ext) =
            self.rules
                .judge_script(view.script_text(), view.part_text(), &view, &self.config);
        self.count(v, ext.as_ref(), stats)
            .then(|| self.flagged(&view, rec, text, None, ext))
    }

    /// Counts a verdict (and, in `mode extended`, the transport it read); true when
    /// flagged.
    fn count(&self, v: Verdict, ext: Option<&ExtendedFinding>, stats: &mut ChunkStats) -> bool {
        match v {
            Verdict::NoMatch => false,
            Verdict::Excluded => {
                stats.excluded += 1;
                false
            }
            Verdict::Flagged => {
                stats.flagged += 1;
                if let Some(s) = ext.and_then(|e| e.relevant().next()) {
                    stats.flagged_by_transport[s.transport.index()] += 1;
                }
                true
            }
        }
    }

    /// Judges blocks released unfinished; a match is flagged on a copy of the last part.
    fn judge_released(
        &self,
        released: Vec<Released>,
        stats: &mut ChunkStats,
        late: &mut Vec<LateFlag>,
    ) {
        for r in released {
            let Some(Ok(rec)) = Records::new(&r.record).next() else {
                continue;
            };
            let Some(scan) = Scan::new(rec.body(), &self.config.fields) else {
                continue;
            };
            let view = scan.view();
            let (v, ext) =
                self.rules
                    .judge_script(Some(&r.script), Some(&r.script), &view, &self.config);
            if !self.count(v, ext.as_ref(), stats) {
                continue;
            }
            let info = Reassembled {
                block_id: r.block_id.clone(),
                parts: r.parts,
                total: r.total,
                how: r.why.name(),
            };
            let f = self.flagged(&view, &rec, lossy(&r.script), Some(info), ext);
            let mut record = Vec::new();
            self.write_flagged(&rec, &f, &mut record);
            late.push(LateFlag {
                tag: r.tag,
                record,
                flagged: f,
            });
        }
    }

    /// Script blocks open longer than `reassemble_timeout`, judged as they stand.
    pub fn expire_blocks(&self, now: f64) -> (Vec<LateFlag>, ChunkStats) {
        let mut stats = ChunkStats::default();
        let mut late = Vec::new();
        let released = match self.lock() {
            Some(mut r) if r.open_blocks() > 0 => r.expire(now),
            _ => return (late, stats),
        };
        self.judge_released(released, &mut stats, &mut late);
        (late, stats)
    }

    /// Every open script block, judged as it stands (at shutdown).
    pub fn drain_blocks(&self) -> (Vec<LateFlag>, ChunkStats) {
        let mut stats = ChunkStats::default();
        let mut late = Vec::new();
        let released = self.lock().map(|mut r| r.drain()).unwrap_or_default();
        self.judge_released(released, &mut stats, &mut late);
        (late, stats)
    }

    /// Open blocks, bytes held, blocks judged by timeout and by bound.
    pub fn reassembly_state(&self) -> Option<ReassemblyState> {
        self.lock().map(|r| ReassemblyState {
            open_blocks: r.open_blocks(),
            bytes: r.bytes(),
            timeouts: r.timeouts,
            bound_releases: r.bound_releases,
        })
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
        self.filter_chunk_at(chunk, "", 0.0)
    }

    /// [`filter_chunk`](Self::filter_chunk) for a chunk of `tag` at time `now` (both used
    /// by reassembly: the tag to emit late flags under, the clock of the timeout).
    pub fn filter_chunk_at(&self, chunk: &[u8], tag: &str, now: f64) -> ChunkResult {
        let mut stats = ChunkStats::default();
        let mut out: Option<Vec<u8>> = None;
        let mut copied_to = 0usize;
        let mut error = None;
        let mut flagged = Vec::new();
        let (mut late, expired_stats) = self.expire_blocks(now);
        stats.flagged += expired_stats.flagged;
        stats.excluded += expired_stats.excluded;
        stats.flagged_by_transport = expired_stats.flagged_by_transport;
        let mut pos = 0;
        let mut records_end = chunk.len();
        while pos < chunk.len() {
            // One pass per record: the body's field scan also finds where the record ends.
            let mut judged = None;
            let mut rec = None;
            if let Some((format, timestamp, body_start)) = read_header(chunk, pos) {
                // most records: another event, settled by their first EventID
                if let Some(len) =
                    Scan::other_event_length(&chunk[body_start..], &self.config.fields)
                {
                    stats.records += 1;
                    pos = body_start + len;
                    continue;
                }
                if let Some((scan, len)) = Scan::measured(&chunk[body_start..], &self.config.fields)
                {
                    let r = RecordRef {
                        raw: &chunk[pos..body_start + len],
                        offset: pos,
                        format,
                        timestamp,
                        body_start: body_start - pos,
                    };
                    stats.records += 1;
                    if r.is_event() {
                        judged = self.judge_scanned(&r, scan, tag, now, &mut stats, &mut late);
                    }
                    rec = Some(r);
                }
            }
            let rec = match rec {
                Some(r) => r,
                // Not a record with a map body: skip it whole (or stop at invalid bytes).
                None => match Records::new(&chunk[pos..]).next() {
                    Some(Ok(r)) => {
                        stats.records += 1;
                        let r = RecordRef { offset: pos, ..r };
                        if let Some(f) = self.judge_record(&r, tag, now, &mut stats, &mut late) {
                            judged = Some(f);
                        }
                        r
                    }
                    Some(Err(mut e)) => {
                        e.offset += pos;
                        error = Some(e);
                        records_end = pos;
                        break;
                    }
                    None => break,
                },
            };
            pos = rec.offset + rec.raw.len();
            if let Some(mut f) = judged {
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
            late,
            error,
            records_end,
        }
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether a record body already carries this rule's enrichment: its namespace map holds
/// the analytic's `rule_id`. Such a record is an alert copy or an aggregate row of this
/// plugin that came back through a broad Match (or from another agent); judging it again
/// would count it twice.
fn is_enriched(body: &[u8], namespace: &str) -> bool {
    use super::msgpack::{first_token, map_get, Token};
    map_get(body, namespace.as_bytes())
        .and_then(|ns| map_get(ns, b"rule_id"))
        .and_then(first_token)
        .is_some_and(|t| t == Token::Str(super::analytic::RULE_ID.as_bytes()))
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

    #[test]
    fn an_enriched_record_is_not_judged_again() {
        let d = Detector::new(Config::default());
        let once = d.filter_chunk_at(&positive(), "t", 0.0);
        let Outcome::Modified(out) = once.outcome else {
            panic!("the positive is flagged")
        };
        let twice = d.filter_chunk_at(&out, "t", 0.0);
        assert_eq!(twice.outcome, Outcome::NoTouch);
        assert_eq!((twice.stats.flagged, twice.stats.own), (0, 1));
        let cfg = Config {
            namespace: "other".into(),
            ..Default::default()
        };
        let elsewhere = Detector::new(cfg).filter_chunk_at(&out, "t", 0.0);
        assert_eq!(
            elsewhere.stats.flagged, 1,
            "another namespace is another filter's"
        );
    }
}
