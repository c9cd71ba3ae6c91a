//! One filter instance's whole behaviour, pure: a chunk in -> the chunk that goes on, the
//! alert copies and late flags to emit; a timer tick or the exit -> the rows to deliver.
//! Rows wait in an outbox until the host says which door took them (delivered, saved to
//! the state file, or logged), and every row is accounted for by that door.

use super::aggregate::{self, Aggregate, Key, Row};
use super::config::Config;
use super::filter::{ChunkResult, ChunkStats, Detector, Flagged, LateFlag, Outcome};
use crate::mirrored::{Mirrored, MirroredGuard};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

/// How aggregate rows leave the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowSink {
    /// The host delivers them on an engine timer (through an emitter input, or re-injected
    /// into the parent input of a processor): see [`FilterInstance::tick`].
    Timer,
    /// Appended to the chunk being filtered, when due (an output processor, or a host
    /// without the emitter or the timer).
    AppendToChunk,
}

/// The ways a row leaves an instance; each is counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowDoor {
    /// Accepted by Fluent Bit through the emitter input.
    Emitter,
    /// Accepted by Fluent Bit re-injected into the processor's parent input.
    Reinjected,
    /// Appended to a chunk going down the pipeline.
    Appended,
    /// Written to `aggregate_state_file` for the next start.
    StateFile,
    /// Written to Fluent Bit's log at exit.
    Log,
}

impl RowDoor {
    pub const ALL: [RowDoor; 5] = [
        RowDoor::Emitter,
        RowDoor::Reinjected,
        RowDoor::Appended,
        RowDoor::StateFile,
        RowDoor::Log,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RowDoor::Emitter => "emitter",
            RowDoor::Reinjected => "re-injected",
            RowDoor::Appended => "appended",
            RowDoor::StateFile => "state file",
            RowDoor::Log => "log",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Rows and the flagged records they count (the sum of their `count`s).
#[derive(Debug, Default)]
pub struct RowTally {
    pub rows: AtomicU64,
    pub records: AtomicU64,
}

impl RowTally {
    fn add(&self, rows: &[Row]) {
        self.rows.fetch_add(rows.len() as u64, Ordering::Relaxed);
        let n = crate::aggregate::total_count(rows);
        self.records.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> (u64, u64) {
        (
            self.rows.load(Ordering::Relaxed),
            self.records.load(Ordering::Relaxed),
        )
    }
}

/// Everything one chunk produced.
#[derive(Debug)]
pub struct ChunkActions {
    pub result: ChunkResult,
    /// The chunk to hand back when rows were appended to it (`AppendToChunk`); takes the
    /// place of `result.outcome`'s buffer.
    pub appended: Option<Vec<u8>>,
    /// Byte ranges, in the output chunk, of the flagged records to copy under `alert_tag`.
    pub alert_copies: Vec<Range<usize>>,
    /// Script blocks flagged as they stood, to emit under their own tag (`Timer` sink).
    pub late: Vec<LateFlag>,
}

/// Counters kept across chunks and threads.
#[derive(Debug, Default)]
pub struct Counters {
    pub records: AtomicU64,
    pub candidates: AtomicU64,
    pub flagged: AtomicU64,
    pub excluded: AtomicU64,
    /// Records this instance (or another) already enriched, passed on unjudged.
    pub own: AtomicU64,
    pub chunks_modified: AtomicU64,
    /// Flagged records of `mode extended` by transport ([`Transport::index`]).
    ///
    /// [`Transport::index`]: crate::pwsh::Transport::index
    pub flagged_by_transport: [AtomicU64; 5],
    /// Rows pushed out of the aggregate by max_keys or max_message_bytes.
    pub rows_early: AtomicU64,
    /// Rows read back from the state file at start-up.
    pub restored: RowTally,
    /// Rows by the door they left through, indexed by [`RowDoor`].
    doors: [RowTally; 5],
}

impl Counters {
    /// Rows and records that left through `door`.
    pub fn door(&self, door: RowDoor) -> (u64, u64) {
        self.doors[door.index()].get()
    }

    /// Records counted by every row that left, whatever the door.
    pub fn records_out(&self) -> u64 {
        RowDoor::ALL.iter().map(|d| self.door(*d).1).sum()
    }
}

struct AggState {
    agg: Aggregate,
    /// Rows out of the aggregate that no door has taken yet, oldest first.
    outbox: Vec<Row>,
    /// Next interval flush (epoch ms).
    next_flush_ms: u64,
}

/// A filter instance, shared by every thread that calls the filter.
pub struct FilterInstance {
    pub detector: Detector,
    pub counters: Counters,
    pub sink: RowSink,
    pub host: String,
    agg: Option<Mirrored<AggState>>,
}

impl FilterInstance {
    pub fn new(config: Config, sink: RowSink, host: String, now: f64) -> FilterInstance {
        let agg = config.aggregate.as_ref().map(|a| {
            Mirrored::new(
                AggState {
                    agg: Aggregate::new(a.mode, a.max_keys, a.max_message_bytes, now),
                    outbox: Vec::new(),
                    next_flush_ms: (now * 1000.0) as u64 + a.flush_interval_ms,
                },
                |st| st.agg.len(),
            )
        });
        FilterInstance {
            detector: Detector::new(config),
            counters: Counters::default(),
            sink,
            host,
            agg,
        }
    }

    /// Rows the aggregate keeps now (0 without an aggregate), without taking its lock.
    pub fn aggregate_keys(&self) -> usize {
        self.agg.as_ref().map_or(0, Mirrored::get)
    }

    pub fn config(&self) -> &Config {
        &self.detector.config
    }

    fn lock(&self) -> Option<MirroredGuard<'_, AggState>> {
        self.agg.as_ref().map(Mirrored::lock)
    }

    fn add_stats(&self, st: &ChunkStats) {
        let c = &self.counters;
        c.records.fetch_add(st.records, Ordering::Relaxed);
        c.candidates.fetch_add(st.candidates, Ordering::Relaxed);
        c.flagged.fetch_add(st.flagged, Ordering::Relaxed);
        c.excluded.fetch_add(st.excluded, Ordering::Relaxed);
        c.own.fetch_add(st.own, Ordering::Relaxed);
        for (n, c) in st.flagged_by_transport.iter().zip(&c.flagged_by_transport) {
            if *n > 0 {
                c.fetch_add(*n, Ordering::Relaxed);
            }
        }
    }

    /// Counts flagged records in the aggregate; rows pushed out by its bounds wait in the
    /// outbox.
    fn count_flagged<'f>(&self, flagged: impl Iterator<Item = &'f Flagged>, now: f64) {
        let mut flagged = flagged.peekable();
        if flagged.peek().is_none() {
            return; // the unflagged path takes no lock
        }
        if let Some(mut st) = self.lock() {
            let before = st.outbox.len();
            for f in flagged {
                let n = &f.normalized;
                let key = Key {
                    event_code: n.event_code,
                    message: f.message.clone(),
                    computer: n.computer.clone(),
                    user: n.user.clone(),
                };
                let early = st.agg.add(key, n.time, now);
                st.outbox.extend(early);
            }
            let early = (st.outbox.len() - before) as u64;
            self.counters.rows_early.fetch_add(early, Ordering::Relaxed);
        }
    }

    /// Filters one chunk and works out what to emit. `shutting_down`: the engine stopped
    /// ingestion, so every row leaves by the next door rather than at its interval.
    pub fn process_tagged(
        &self,
        chunk: &[u8],
        tag: &str,
        now: f64,
        shutting_down: bool,
    ) -> ChunkActions {
        let mut result = self.detector.filter_chunk_at(chunk, tag, now);
        self.add_stats(&result.stats);
        let alert_copies = if self.config().alert_tag.is_some() {
            result.flagged.iter().map(|f| f.out_range.clone()).collect()
        } else {
            Vec::new()
        };
        let flagged = result.flagged.iter();
        self.count_flagged(flagged.chain(result.late.iter().map(|l| &l.flagged)), now);
        let mut late = std::mem::take(&mut result.late);
        let mut appended = None;
        if self.sink == RowSink::AppendToChunk {
            let due = self.take_due(now, shutting_down);
            if !due.is_empty() || !late.is_empty() {
                appended = Some(self.append_to(chunk, &result, &due, &mut late, now));
                self.delivered(RowDoor::Appended, &due);
            }
        }
        if appended.is_some() || matches!(result.outcome, Outcome::Modified(_)) {
            self.counters
                .chunks_modified
                .fetch_add(1, Ordering::Relaxed);
        }
        ChunkActions {
            result,
            appended,
            alert_copies,
            late,
        }
    }

    /// The chunk that goes on with late flags and rows appended after its last whole
    /// record, before any bytes that are not records (which end the chunk as they came).
    fn append_to(
        &self,
        chunk: &[u8],
        result: &ChunkResult,
        rows: &[Row],
        late: &mut Vec<LateFlag>,
        now: f64,
    ) -> Vec<u8> {
        let mut out = match &result.outcome {
            Outcome::NoTouch => chunk.to_vec(),
            Outcome::Modified(b) => b.clone(),
        };
        let tail = out.split_off(out.len() - (chunk.len() - result.records_end));
        for l in late.drain(..) {
            out.extend_from_slice(&l.record);
        }
        out.extend(self.rows_as_records(rows, now));
        out.extend_from_slice(&tail);
        out
    }

    /// Rows waiting in the outbox, then the window's rows if its interval is due (or every
    /// row when shutting down). They are the caller's to deliver; what no door takes goes
    /// back with [`requeue`](Self::requeue).
    fn take_due(&self, now: f64, shutting_down: bool) -> Vec<Row> {
        let Some(mut st) = self.lock() else {
            return Vec::new();
        };
        let now_ms = (now * 1000.0) as u64;
        let mut due = std::mem::take(&mut st.outbox);
        if shutting_down {
            due.extend(st.agg.flush(now, "shutdown"));
        } else if now_ms >= st.next_flush_ms {
            due.extend(st.agg.flush(now, "interval"));
            let interval = self
                .config()
                .aggregate
                .as_ref()
                .map_or(60_000, |a| a.flush_interval_ms);
            st.next_flush_ms = now_ms + interval;
        }
        due
    }

    /// The rows to deliver at the interval timer (`Timer` sink): those waiting, and the
    /// window's.
    pub fn on_interval(&self, now: f64) -> Vec<Row> {
        let Some(mut st) = self.lock() else {
            return Vec::new();
        };
        let mut due = std::mem::take(&mut st.outbox);
        due.extend(st.agg.flush(now, "interval"));
        due
    }

    /// The rows to deliver at a short tick (`Timer` sink): those waiting for a door, and
    /// every row once the engine is stopping.
    pub fn tick(&self, now: f64, shutting_down: bool) -> Vec<Row> {
        let Some(mut st) = self.lock() else {
            return Vec::new();
        };
        let mut due = std::mem::take(&mut st.outbox);
        if shutting_down {
            due.extend(st.agg.flush(now, "shutdown"));
        }
        due
    }

    /// Puts back rows no door took, ahead of any that waited less.
    pub fn requeue(&self, rows: Vec<Row>) {
        if rows.is_empty() {
            return;
        }
        if let Some(mut st) = self.lock() {
            let newer = std::mem::replace(&mut st.outbox, rows);
            st.outbox.extend(newer);
        }
    }

    /// Records that `rows` left through `door`.
    pub fn delivered(&self, door: RowDoor, rows: &[Row]) {
        self.counters.doors[door.index()].add(rows);
    }

    /// Script blocks whose timeout passed, judged as they stood (at a timer tick): the
    /// flagged ones to emit (their rows are counted).
    pub fn expire_blocks(&self, now: f64) -> Vec<LateFlag> {
        let (late, stats) = self.detector.expire_blocks(now);
        self.add_stats(&stats);
        self.count_flagged(late.iter().map(|l| &l.flagged), now);
        late
    }

    /// Every open script block at shutdown, judged as it stands.
    pub fn drain_blocks(&self, now: f64) -> Vec<LateFlag> {
        let (late, stats) = self.detector.drain_blocks();
        self.add_stats(&stats);
        self.count_flagged(late.iter().map(|l| &l.flagged), now);
        late
    }

    /// Every row not yet delivered, at shutdown or reload.
    pub fn on_exit(&self, now: f64) -> Vec<Row> {
        self.take_due(now, true)
    }

    /// Rows read back from the state file: counted again in the aggregate (any that its
    /// bounds force out wait in the outbox).
    pub fn restore(&self, rows: &[Row], now: f64) {
        self.counters.restored.add(rows);
        if let Some(mut st) = self.lock() {
            let before = st.outbox.len();
            for r in rows {
                let early = st.agg.restore(r, now);
                st.outbox.extend(early);
            }
            let early = (st.outbox.len() - before) as u64;
            self.counters.rows_early.fetch_add(early, Ordering::Relaxed);
        }
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

    fn records(rows: &[Row]) -> u64 {
        rows.iter().map(|r| r.count).sum()
    }

    #[test]
    fn fallback_sink_appends_rows_when_due() {
        let mut cfg = Config::default();
        cfg.aggregate.as_mut().unwrap().flush_interval_ms = 10_000;
        let inst = FilterInstance::new(cfg, RowSink::AppendToChunk, "fb".into(), 1000.0);
        let c = chunk(&[positive("a"), positive("a")]);
        let act = inst.process_tagged(&c, "t", 1001.0, false);
        assert!(act.appended.is_none(), "not due yet");
        let act = inst.process_tagged(&chunk(&[serde_json::json!({"x": 1})]), "t", 1011.0, false);
        let out = decode_chunk(act.appended.as_ref().unwrap()).unwrap();
        assert_eq!(out.len(), 2, "the record and one row");
        assert_eq!(out[1].body["count"], 2);
        assert_eq!(out[1].body["ComputerName"], "a");
        assert_eq!(inst.counters.door(RowDoor::Appended), (1, 2));
    }

    #[test]
    fn shutting_down_appends_every_row_at_once() {
        let inst = FilterInstance::new(Config::default(), RowSink::AppendToChunk, "fb".into(), 0.0);
        inst.process_tagged(&chunk(&[positive("a")]), "t", 1.0, false);
        let act = inst.process_tagged(&chunk(&[serde_json::json!({"x": 1})]), "t", 2.0, true);
        let out = decode_chunk(act.appended.as_ref().unwrap()).unwrap();
        assert_eq!(out[1].body["emit_reason"], "shutdown");
        assert!(inst.on_exit(3.0).is_empty());
    }

    #[test]
    fn appended_rows_go_before_an_undecodable_tail() {
        let mut cfg = Config::default();
        cfg.aggregate.as_mut().unwrap().flush_interval_ms = 1000;
        let inst = FilterInstance::new(cfg, RowSink::AppendToChunk, "fb".into(), 0.0);
        inst.process_tagged(&chunk(&[positive("a")]), "t", 0.5, false);
        let mut c = chunk(&[serde_json::json!({"x": 1})]);
        c.extend_from_slice(&[0x92, 0xc1]);
        let act = inst.process_tagged(&c, "t", 2.0, false);
        let out = act.appended.unwrap();
        assert!(out.ends_with(&[0x92, 0xc1]), "the tail stays last");
        let recs: Vec<_> = crate::chunk::Records::new(&out)
            .take_while(|r| r.is_ok())
            .collect();
        assert_eq!(recs.len(), 2, "the record, then the row, both readable");
    }

    #[test]
    fn timer_sink_delivers_at_the_interval() {
        let inst = FilterInstance::new(Config::default(), RowSink::Timer, "fb".into(), 0.0);
        let act = inst.process_tagged(
            &chunk(&[positive("a"), positive("b"), positive("a")]),
            "t",
            1.0,
            false,
        );
        assert!(act.appended.is_none());
        assert!(
            inst.tick(30.0, false).is_empty(),
            "a tick only delivers what waits"
        );
        let rows = inst.on_interval(60.0);
        assert_eq!(records(&rows), 3);
        assert!(inst.on_interval(120.0).is_empty());
    }

    #[test]
    fn rows_no_door_took_wait_in_order_for_the_next() {
        let mut cfg = Config::default();
        cfg.aggregate.as_mut().unwrap().flush_interval_ms = 1000;
        let inst = FilterInstance::new(cfg, RowSink::Timer, "fb".into(), 0.0);
        inst.process_tagged(&chunk(&[positive("a")]), "t", 0.1, false);
        let first = inst.on_interval(1.0);
        assert_eq!(first.len(), 1);
        inst.requeue(first);
        inst.process_tagged(&chunk(&[positive("b")]), "t", 1.5, false);
        let rows = inst.on_interval(2.0);
        let hosts: Vec<_> = rows.iter().map(|r| r.key.computer.as_str()).collect();
        assert_eq!(hosts, ["a", "b"], "the older row first");
        inst.delivered(RowDoor::Emitter, &rows);
        assert_eq!(inst.counters.door(RowDoor::Emitter), (2, 2));
        assert_eq!(inst.counters.records_out(), 2);
    }

    #[test]
    fn shutdown_takes_the_outbox_and_the_window() {
        let mut cfg = Config::default();
        cfg.aggregate.as_mut().unwrap().max_keys = 1;
        let inst = FilterInstance::new(cfg, RowSink::Timer, "fb".into(), 0.0);
        inst.process_tagged(&chunk(&[positive("a"), positive("b")]), "t", 1.0, false);
        assert_eq!(inst.counters.rows_early.load(Ordering::Relaxed), 1);
        let rows = inst.tick(2.0, true);
        assert_eq!(records(&rows), 2, "the early row and the live one");
        assert!(rows.iter().any(|r| r.reason == "shutdown"));
        assert!(inst.on_exit(3.0).is_empty());
    }

    #[test]
    fn restored_rows_are_counted_in() {
        let inst = FilterInstance::new(Config::default(), RowSink::Timer, "fb".into(), 0.0);
        inst.process_tagged(&chunk(&[positive("a")]), "t", 1.0, false);
        let rows = inst.on_exit(2.0);
        let next = FilterInstance::new(Config::default(), RowSink::Timer, "fb".into(), 5.0);
        next.restore(&rows, 5.0);
        assert_eq!(next.counters.restored.get(), (1, 1));
        assert_eq!(records(&next.on_exit(6.0)), 1);
    }
}
