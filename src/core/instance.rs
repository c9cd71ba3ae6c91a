//! One filter instance's whole behaviour, pure: a chunk in -> the chunk that goes on, the
//! alert copies and aggregate rows to emit; a timer tick or the exit -> rows. The FFI layer
//! only carries these to and from Fluent Bit.

use super::aggregate::{self, Aggregate, Key, Row};
use super::config::Config;
use super::filter::{ChunkResult, ChunkStats, Detector, Flagged, LateFlag, Outcome};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Where aggregate rows go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowSink {
    /// An emitter input, on a timer driven by the engine.
    Emitter,
    /// Appended to the chunk being filtered (the host lacks the emitter or the timer).
    AppendToChunk,
}

/// Everything one chunk produced.
#[derive(Debug)]
pub struct ChunkActions {
    pub result: ChunkResult,
    /// The chunk to hand back when rows were appended to it (fallback sink); takes the
    /// place of `result.outcome`'s buffer.
    pub appended: Option<Vec<u8>>,
    /// Byte ranges, in the output chunk, of the flagged records to copy under `alert_tag`.
    pub alert_copies: Vec<Range<usize>>,
    /// Rows to emit now through the emitter (early emissions).
    pub rows: Vec<Row>,
    /// Script blocks flagged as they stood, to emit under their own tag (emitter sink).
    pub late: Vec<LateFlag>,
}

/// Counters kept across chunks and threads.
#[derive(Debug, Default)]
pub struct Counters {
    pub records: AtomicU64,
    pub candidates: AtomicU64,
    pub flagged: AtomicU64,
    pub excluded: AtomicU64,
    pub chunks_modified: AtomicU64,
    pub rows_emitted: AtomicU64,
    pub rows_early: AtomicU64,
}

struct AggState {
    agg: Aggregate,
    /// Next flush, in the fallback sink (epoch ms).
    next_flush_ms: u64,
}

/// A filter instance, shared by every thread that calls the filter.
pub struct FilterInstance {
    pub detector: Detector,
    pub counters: Counters,
    pub sink: RowSink,
    pub host: String,
    agg: Option<Mutex<AggState>>,
}

impl FilterInstance {
    pub fn new(config: Config, sink: RowSink, host: String, now: f64) -> FilterInstance {
        let agg = config.aggregate.as_ref().map(|a| {
            Mutex::new(AggState {
                agg: Aggregate::new(a.mode, a.max_keys, a.max_message_bytes, now),
                next_flush_ms: (now * 1000.0) as u64 + a.flush_interval_ms,
            })
        });
        FilterInstance {
            detector: Detector::new(config),
            counters: Counters::default(),
            sink,
            host,
            agg,
        }
    }

    pub fn config(&self) -> &Config {
        &self.detector.config
    }

    fn lock(&self) -> Option<std::sync::MutexGuard<'_, AggState>> {
        // A panic while holding the lock cannot leave the rows inconsistent in a way
        // that matters more than losing them; keep counting.
        self.agg
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn add_stats(&self, st: &ChunkStats) {
        let c = &self.counters;
        c.records.fetch_add(st.records, Ordering::Relaxed);
        c.candidates.fetch_add(st.candidates, Ordering::Relaxed);
        c.flagged.fetch_add(st.flagged, Ordering::Relaxed);
        c.excluded.fetch_add(st.excluded, Ordering::Relaxed);
    }

    /// Counts flagged records in the aggregate; returns rows pushed out by its bounds.
    fn count_flagged<'f>(&self, flagged: impl Iterator<Item = &'f Flagged>, now: f64) -> Vec<Row> {
        let mut rows = Vec::new();
        let mut flagged = flagged.peekable();
        if flagged.peek().is_none() {
            return rows; // the unflagged path takes no lock
        }
        if let Some(mut st) = self.lock() {
            for f in flagged {
                let n = &f.normalized;
                let key = Key {
                    event_code: n.event_code,
                    message: f.message.clone(),
                    computer: n.computer.clone(),
                    user: n.user.clone(),
                };
                rows.extend(st.agg.add(key, n.time, now));
            }
        }
        self.counters
            .rows_early
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        rows
    }

    /// Filters one chunk and works out what to emit.
    pub fn process(&self, chunk: &[u8], now: f64) -> ChunkActions {
        self.process_tagged(chunk, "", now)
    }

    /// [`process`](Self::process) for a chunk with its tag (late flags are emitted under the
    /// tag their last part came with).
    pub fn process_tagged(&self, chunk: &[u8], tag: &str, now: f64) -> ChunkActions {
        let mut result = self.detector.filter_chunk_at(chunk, tag, now);
        self.add_stats(&result.stats);
        let c = &self.counters;
        let alert_copies = if self.config().alert_tag.is_some() {
            result.flagged.iter().map(|f| f.out_range.clone()).collect()
        } else {
            Vec::new()
        };
        let flagged = result.flagged.iter();
        let mut rows =
            self.count_flagged(flagged.chain(result.late.iter().map(|l| &l.flagged)), now);
        let mut due = Vec::new();
        if self.sink == RowSink::AppendToChunk {
            if let Some(mut st) = self.lock() {
                let now_ms = (now * 1000.0) as u64;
                if now_ms >= st.next_flush_ms {
                    due = st.agg.flush(now, "interval");
                    let interval = self
                        .config()
                        .aggregate
                        .as_ref()
                        .map_or(60_000, |a| a.flush_interval_ms);
                    st.next_flush_ms = now_ms + interval;
                }
            }
        }
        let mut appended = None;
        let mut late = std::mem::take(&mut result.late);
        if self.sink == RowSink::AppendToChunk {
            due.splice(0..0, rows.drain(..));
            if !due.is_empty() || !late.is_empty() {
                let mut out = match &result.outcome {
                    Outcome::NoTouch => chunk.to_vec(),
                    Outcome::Modified(b) => b.clone(),
                };
                // New records go after the last whole record, before any bytes that are not
                // records (which end the chunk as they came).
                let tail = out.split_off(out.len() - (chunk.len() - result.records_end));
                for l in late.drain(..) {
                    out.extend_from_slice(&l.record);
                }
                out.extend(self.rows_as_records(&due, now));
                out.extend_from_slice(&tail);
                c.rows_emitted
                    .fetch_add(due.len() as u64, Ordering::Relaxed);
                appended = Some(out);
            }
        }
        if appended.is_some() || matches!(result.outcome, Outcome::Modified(_)) {
            c.chunks_modified.fetch_add(1, Ordering::Relaxed);
        }
        ChunkActions {
            result,
            appended,
            alert_copies,
            rows,
            late,
        }
    }

    /// The rows due at a timer tick.
    pub fn on_timer(&self, now: f64) -> Vec<Row> {
        self.lock()
            .map(|mut st| st.agg.flush(now, "interval"))
            .unwrap_or_default()
    }

    /// Script blocks whose timeout passed, judged as they stood (at a timer tick): the
    /// flagged ones to emit, and rows their counting pushed out.
    pub fn expire_blocks(&self, now: f64) -> (Vec<LateFlag>, Vec<Row>) {
        let (late, stats) = self.detector.expire_blocks(now);
        self.add_stats(&stats);
        let rows = self.count_flagged(late.iter().map(|l| &l.flagged), now);
        (late, rows)
    }

    /// Every open script block at shutdown, judged as it stands.
    pub fn drain_blocks(&self, now: f64) -> Vec<LateFlag> {
        let (late, stats) = self.detector.drain_blocks();
        self.add_stats(&stats);
        self.count_flagged(late.iter().map(|l| &l.flagged), now);
        late
    }

    /// Every row not yet emitted, at shutdown or reload.
    pub fn on_exit(&self, now: f64) -> Vec<Row> {
        self.lock()
            .map(|mut st| st.agg.flush(now, "shutdown"))
            .unwrap_or_default()
    }

    /// Puts rows back (restored from a state file, or that could not be emitted).
    pub fn restore(&self, rows: &[Row], now: f64) -> Vec<Row> {
        let mut early = Vec::new();
        if let Some(mut st) = self.lock() {
            for r in rows {
                early.extend(st.agg.restore(r, now));
            }
        }
        early
    }

    /// Rows as records of a chunk (`[[now, {}], row]` each), in the schema in use.
    pub fn rows_as_records(&self, rows: &[Row], now: f64) -> Vec<u8> {
        let mut out = Vec::new();
        for r in rows {
            out.extend(self.row_record(r, now));
        }
        out
    }

    /// One row as one record.
    pub fn row_record(&self, row: &Row, now: f64) -> Vec<u8> {
        let mode = self
            .config()
            .aggregate
            .as_ref()
            .map_or(aggregate::AggregateMode::Tumbling, |a| a.mode);
        let mut body = Vec::new();
        aggregate::write_row(self.config(), row, mode, &self.host, &mut body);
        let mut rec = Vec::with_capacity(body.len() + 16);
        aggregate::push_record(&mut rec, now, &body);
        rec
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk_io::{decode_chunk, json_to_msgpack, push_record, Layout};

    fn chunk(bodies: &[serde_json::Value]) -> Vec<u8> {
        let mut c = Vec::new();
        for b in bodies {
            push_record(&mut c, &json_to_msgpack(b), 100.0, Layout::CURRENT);
        }
        c
    }

    fn positive(host: &str) -> serde_json::Value {
        serde_json::json!({"EventID": 4104, "Hostname": host,
            "ScriptBlockText": "Enter-PSSession -ComputerName dc01"})
    }

    #[test]
    fn fallback_sink_appends_rows_when_due() {
        let mut cfg = Config::default();
        cfg.aggregate.as_mut().unwrap().flush_interval_ms = 10_000;
        let inst = FilterInstance::new(cfg, RowSink::AppendToChunk, "fb".into(), 1000.0);
        let c = chunk(&[positive("a"), positive("a")]);
        let act = inst.process(&c, 1001.0);
        assert!(act.appended.is_none(), "not due yet");
        let act = inst.process(&chunk(&[serde_json::json!({"x": 1})]), 1011.0);
        let out = decode_chunk(act.appended.as_ref().unwrap()).unwrap();
        assert_eq!(out.len(), 2, "the record and one row");
        assert_eq!(out[1].body["count"], 2);
        assert_eq!(out[1].body["ComputerName"], "a");
    }

    #[test]
    fn appended_rows_go_before_an_undecodable_tail() {
        let mut cfg = Config::default();
        cfg.aggregate.as_mut().unwrap().flush_interval_ms = 1000;
        let inst = FilterInstance::new(cfg, RowSink::AppendToChunk, "fb".into(), 0.0);
        inst.process(&chunk(&[positive("a")]), 0.5);
        let mut c = chunk(&[serde_json::json!({"x": 1})]);
        c.extend_from_slice(&[0x92, 0xc1]);
        let act = inst.process(&c, 2.0);
        let out = act.appended.unwrap();
        assert!(out.ends_with(&[0x92, 0xc1]), "the tail stays last");
        let recs: Vec<_> = crate::core::chunk::Records::new(&out)
            .take_while(|r| r.is_ok())
            .collect();
        assert_eq!(recs.len(), 2, "the record, then the row, both readable");
    }

    #[test]
    fn emitter_sink_counts_for_the_timer() {
        let inst = FilterInstance::new(Config::default(), RowSink::Emitter, "fb".into(), 0.0);
        let act = inst.process(&chunk(&[positive("a"), positive("b"), positive("a")]), 1.0);
        assert!(act.appended.is_none() && act.rows.is_empty());
        let rows = inst.on_timer(60.0);
        assert_eq!(rows.iter().map(|r| r.count).sum::<u64>(), 3);
        assert!(inst.on_timer(120.0).is_empty());
    }
}
