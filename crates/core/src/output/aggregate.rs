//! The analytic's `stats count min(_time) as firstTime max(_time) as lastTime by EventCode
//! Message ComputerName User`, kept live: rows per group-by key, flushed as records every
//! interval (tumbling windows, or running totals), bounded in keys and in stored Message
//! bytes (the least recently updated row is emitted early, never dropped).

use crate::analytic as a;
use crate::config::{Config, Schema};
use crate::enrich::{self, Node, Normalized};
use crate::msgpack;
use crate::shapes::Shape;
use crate::timefmt;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub use crate::config::AggregateMode;

/// The group-by values of the analytic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub event_code: i64,
    pub message: String,
    pub computer: String,
    pub user: String,
}

/// One row of the aggregate.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: Arc<Key>,
    pub count: u64,
    pub first_time: f64,
    pub last_time: f64,
    /// Wall-clock start of the window (or of the running total) and the emission time.
    pub window_start: f64,
    pub window_end: f64,
    /// Why it was emitted: `interval`, `max_keys`, `max_message_bytes`, `shutdown`.
    pub reason: &'static str,
}

#[derive(Debug)]
struct Slot {
    count: u64,
    first_time: f64,
    last_time: f64,
    seq: u64,
    dirty: bool,
}

/// Rows of one filter instance.
#[derive(Debug)]
pub struct Aggregate {
    mode: AggregateMode,
    max_keys: usize,
    max_message_bytes: usize,
    rows: HashMap<Arc<Key>, Slot>,
    /// Least recently updated first.
    by_age: BTreeMap<u64, Arc<Key>>,
    seq: u64,
    message_bytes: usize,
    window_start: f64,
    /// Rows emitted before their flush because a bound was hit.
    pub early_emissions: u64,
}

impl Aggregate {
    pub fn new(mode: AggregateMode, max_keys: usize, max_message_bytes: usize, now: f64) -> Self {
        Aggregate {
            mode,
            max_keys: max_keys.max(1),
            max_message_bytes,
            rows: HashMap::new(),
            by_age: BTreeMap::new(),
            seq: 0,
            message_bytes: 0,
            window_start: now,
            early_emissions: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Counts one flagged event. Returns rows that had to be emitted early to stay within
    /// the bounds (the caller emits them now).
    pub fn add(&mut self, key: Key, time: f64, now: f64) -> Vec<Row> {
        self.seq += 1;
        let seq = self.seq;
        if let Some(slot) = self.rows.get_mut(&key) {
            if let Some(k) = self.by_age.remove(&slot.seq) {
                self.by_age.insert(seq, k);
            }
            // a restored count can already be at the top: saturate, never wrap or panic
            slot.count = slot.count.saturating_add(1);
            slot.first_time = slot.first_time.min(time);
            slot.last_time = slot.last_time.max(time);
            slot.seq = seq;
            slot.dirty = true;
            return Vec::new();
        }
        let mut early = Vec::new();
        let size = key.message.len();
        while !self.rows.is_empty()
            && (self.rows.len() >= self.max_keys
                || self.message_bytes + size > self.max_message_bytes)
        {
            let reason = if self.rows.len() >= self.max_keys {
                "max_keys"
            } else {
                "max_message_bytes"
            };
            if let Some(row) = self.evict_oldest(now, reason) {
                early.push(row);
            }
        }
        let key = Arc::new(key);
        self.message_bytes += size;
        self.rows.insert(
            key.clone(),
            Slot {
                count: 1,
                first_time: time,
                last_time: time,
                seq,
                dirty: true,
            },
        );
        self.by_age.insert(seq, key);
        if self.message_bytes > self.max_message_bytes {
            // A single Message larger than the whole cap: emit its row at once.
            if let Some(row) = self.evict_oldest(now, "max_message_bytes") {
                early.push(row);
            }
        }
        self.early_emissions += early.len() as u64;
        early
    }

    fn evict_oldest(&mut self, now: f64, reason: &'static str) -> Option<Row> {
        let (_, key) = self.by_age.pop_first()?;
        let slot = self.rows.remove(&key)?;
        self.message_bytes -= key.message.len();
        Some(Row {
            key,
            count: slot.count,
            first_time: slot.first_time,
            last_time: slot.last_time,
            window_start: self.window_start,
            window_end: now,
            reason,
        })
    }

    /// The rows due at a flush: in tumbling mode every row (and the window restarts), in
    /// cumulative mode the rows updated since the last flush (their totals keep running).
    pub fn flush(&mut self, now: f64, reason: &'static str) -> Vec<Row> {
        let mut out: Vec<Row> = Vec::new();
        let window_start = self.window_start;
        let emit = |key: &Arc<Key>, s: &Slot| Row {
            key: key.clone(),
            count: s.count,
            first_time: s.first_time,
            last_time: s.last_time,
            window_start,
            window_end: now,
            reason,
        };
        match self.mode {
            AggregateMode::Tumbling => {
                for key in self.by_age.values() {
                    if let Some(s) = self.rows.get(key) {
                        out.push(emit(key, s));
                    }
                }
                self.rows.clear();
                self.by_age.clear();
                self.message_bytes = 0;
                self.window_start = now;
            }
            AggregateMode::Cumulative => {
                for key in self.by_age.values() {
                    if let Some(s) = self.rows.get_mut(key) {
                        if s.dirty || reason == "shutdown" {
                            out.push(emit(key, s));
                            s.dirty = false;
                        }
                    }
                }
            }
        }
        out
    }

    /// Puts back a row restored from a state file (its count merges into any live row of
    /// the same key). Returns rows the bounds force out at once.
    pub fn restore(&mut self, row: &Row, now: f64) -> Vec<Row> {
        let mut early = self.add((*row.key).clone(), row.first_time, now);
        // a state file is read, not trusted: absurd counts saturate, never wrap
        let rest = row.count.saturating_sub(1);
        let merge = |count: &mut u64, last_time: &mut f64| {
            *count = count.saturating_add(rest);
            *last_time = last_time.max(row.last_time);
        };
        if let Some(s) = self.rows.get_mut(&*row.key) {
            merge(&mut s.count, &mut s.last_time);
        } else if let Some(e) = early.iter_mut().rev().find(|e| e.key == row.key) {
            // a row over the Message bound on its own left at once: with its whole count
            merge(&mut e.count, &mut e.last_time);
        }
        self.window_start = self.window_start.min(row.window_start);
        early
    }
}

/// The records these rows count (saturating: counts read from a state file can be
/// anything).
pub fn total_count(rows: &[Row]) -> u64 {
    rows.iter().fold(0u64, |n, r| n.saturating_add(r.count))
}

/// Rows as JSON lines, for the state file kept across restarts and reloads.
pub fn rows_to_state(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows {
        let v = serde_json::json!({
            "EventCode": r.key.event_code,
            "Message": r.key.message,
            "ComputerName": r.key.computer,
            "User": r.key.user,
            "count": r.count,
            "firstTime": r.first_time,
            "lastTime": r.last_time,
            "window_start": r.window_start,
        });
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}

/// Reads rows written by [`rows_to_state`]. Err names the first bad line.
pub fn rows_from_state(text: &str, now: f64) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || format!("line {}: not a saved aggregate row", i + 1);
        let v: serde_json::Value = serde_json::from_str(line).map_err(|_| bad())?;
        let s = |k: &str| v[k].as_str().map(str::to_string).ok_or_else(bad);
        let f = |k: &str| v[k].as_f64().ok_or_else(bad);
        rows.push(Row {
            key: Arc::new(Key {
                event_code: v["EventCode"].as_i64().ok_or_else(bad)?,
                message: s("Message")?,
                computer: s("ComputerName")?,
                user: s("User")?,
            }),
            count: v["count"].as_u64().filter(|c| *c > 0).ok_or_else(bad)?,
            first_time: f("firstTime")?,
            last_time: f("lastTime")?,
            window_start: f("window_start")?,
            window_end: now,
            reason: "restored",
        });
    }
    Ok(rows)
}

/// Writes one row as a record body (msgpack map) in the schema of `cfg`: the group-by
/// values, count, firstTime / lastTime (ctime text and epoch), the window, and the
/// schema's rule, ATT&CK and risk fields.
pub fn write_row(cfg: &Config, row: &Row, mode: AggregateMode, host: &str, out: &mut Vec<u8>) {
    let k = &row.key;
    let norm = Normalized {
        event_code: k.event_code,
        computer: k.computer.clone(),
        user: k.user.clone(),
        time: row.last_time,
        time_source: "aggregate",
        shape: Shape::Other,
        reassembly: None,
        extended: None,
    };
    let mut entries: Vec<(String, Node)> = vec![
        ("EventCode".into(), Node::Int(k.event_code)),
        ("Message".into(), Node::Str(k.message.clone())),
        ("ComputerName".into(), Node::Str(k.computer.clone())),
        ("User".into(), Node::Str(k.user.clone())),
        (
            "count".into(),
            Node::Int(row.count.min(i64::MAX as u64) as i64),
        ),
        (
            "firstTime".into(),
            Node::Str(timefmt::ctime(row.first_time)),
        ),
        ("lastTime".into(), Node::Str(timefmt::ctime(row.last_time))),
        ("firstTime_epoch".into(), Node::Float(row.first_time)),
        ("lastTime_epoch".into(), Node::Float(row.last_time)),
        ("window_start".into(), Node::Float(row.window_start)),
        ("window_end".into(), Node::Float(row.window_end)),
        (
            "aggregate_mode".into(),
            Node::Str(match mode {
                AggregateMode::Tumbling => "tumbling".into(),
                AggregateMode::Cumulative => "cumulative".into(),
            }),
        ),
        ("emit_reason".into(), Node::Str(row.reason.into())),
        ("aggregator_host".into(), Node::Str(host.into())),
    ];
    if cfg.schema == Schema::Splunk {
        entries.push(("search_name".into(), Node::Str(a::SEARCH_NAME.into())));
    }
    // The schema's rule, ATT&CK and risk fields, as on a flagged record; the row's own
    // group-by names win over any of the same name.
    for (name, node) in enrich::additions(cfg, &norm) {
        if !entries.iter().any(|(k, _)| *k == name) {
            let name = if name.starts_with('\0') {
                cfg.namespace.clone()
            } else {
                name
            };
            entries.push((name, node));
        }
    }
    enrich::write_node(out, &Node::Map(entries));
}

/// Appends a record `[[time, {}], body]` to a chunk.
pub fn push_record(out: &mut Vec<u8>, time: f64, body: &[u8]) {
    let secs = time.floor().max(0.0);
    let nanos = ((time - secs) * 1e9).round().clamp(0.0, 999_999_999.0) as u32;
    msgpack::write_array_len(out, 2);
    msgpack::write_array_len(out, 2);
    // EventTime: ext type 0, 8 bytes (fixext8 = 0xd7).
    out.push(0xd7);
    out.push(0);
    out.extend_from_slice(&(secs as u32).to_be_bytes());
    out.extend_from_slice(&nanos.to_be_bytes());
    msgpack::write_map_len(out, 0);
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: &str) -> Key {
        Key {
            event_code: 4104,
            message: format!("Enter-PSSession -ComputerName {c}"),
            computer: c.into(),
            user: "u".into(),
        }
    }

    fn restored(k: Key, count: u64) -> Row {
        Row {
            key: Arc::new(k),
            count,
            first_time: 100.0,
            last_time: 105.0,
            window_start: 90.0,
            window_end: 110.0,
            reason: "restored",
        }
    }

    #[test]
    fn a_saturated_restored_count_stays_saturated_when_its_key_comes_again() {
        let mut agg = Aggregate::new(AggregateMode::Tumbling, 10, 1 << 20, 100.0);
        assert!(agg.restore(&restored(key("a"), u64::MAX), 110.0).is_empty());
        assert!(agg.restore(&restored(key("a"), u64::MAX), 110.0).is_empty());
        assert!(agg.add(key("a"), 107.0, 110.0).is_empty());
        let rows = agg.flush(120.0, "interval");
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].count, rows[0].last_time), (u64::MAX, 107.0));
    }

    #[test]
    fn a_restored_row_over_the_message_bound_leaves_at_once_with_its_whole_count() {
        let mut agg = Aggregate::new(AggregateMode::Tumbling, 10, 8, 100.0);
        let early = agg.restore(&restored(key("a"), 7), 110.0);
        assert_eq!(early.len(), 1);
        assert_eq!((early[0].count, early[0].reason), (7, "max_message_bytes"));
        assert_eq!(early[0].last_time, 105.0);
        assert!(agg.is_empty());
    }

    #[test]
    fn tumbling_counts_and_resets() {
        let mut agg = Aggregate::new(AggregateMode::Tumbling, 10, 1 << 20, 100.0);
        for t in [105.0, 101.0, 109.0] {
            assert!(agg.add(key("a"), t, 110.0).is_empty());
        }
        agg.add(key("b"), 103.0, 110.0);
        let rows = agg.flush(160.0, "interval");
        assert_eq!(rows.len(), 2);
        let a = rows.iter().find(|r| r.key.computer == "a").unwrap();
        assert_eq!((a.count, a.first_time, a.last_time), (3, 101.0, 109.0));
        assert_eq!((a.window_start, a.window_end), (100.0, 160.0));
        assert!(agg.is_empty());
        assert!(agg.flush(220.0, "interval").is_empty());
    }

    #[test]
    fn cumulative_keeps_totals_and_emits_updated_rows() {
        let mut agg = Aggregate::new(AggregateMode::Cumulative, 10, 1 << 20, 0.0);
        agg.add(key("a"), 1.0, 1.0);
        agg.add(key("b"), 2.0, 2.0);
        assert_eq!(agg.flush(60.0, "interval").len(), 2);
        agg.add(key("a"), 70.0, 70.0);
        let rows = agg.flush(120.0, "interval");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].count, 2);
        assert_eq!(rows[0].window_start, 0.0);
        assert_eq!(agg.flush(180.0, "shutdown").len(), 2);
    }

    #[test]
    fn bounds_emit_the_least_recently_updated_row_early() {
        let mut agg = Aggregate::new(AggregateMode::Tumbling, 2, 1 << 20, 0.0);
        agg.add(key("a"), 1.0, 1.0);
        agg.add(key("b"), 2.0, 2.0);
        agg.add(key("a"), 3.0, 3.0); // a is now the most recent
        let early = agg.add(key("c"), 4.0, 4.0);
        assert_eq!(early.len(), 1);
        assert_eq!(early[0].key.computer, "b");
        assert_eq!(early[0].reason, "max_keys");
        assert_eq!(agg.early_emissions, 1);
        let total: u64 = early.iter().map(|r| r.count).sum::<u64>()
            + agg
                .flush(5.0, "interval")
                .iter()
                .map(|r| r.count)
                .sum::<u64>();
        assert_eq!(total, 4, "no count lost");

        let msg_len = key("a").message.len();
        let mut agg = Aggregate::new(AggregateMode::Tumbling, 100, msg_len * 2, 0.0);
        agg.add(key("a"), 1.0, 1.0);
        agg.add(key("b"), 1.0, 1.0);
        let early = agg.add(key("c"), 1.0, 1.0);
        assert_eq!(early.len(), 1);
        assert_eq!(early[0].reason, "max_message_bytes");
        let mut huge = key("d");
        huge.message = "x".repeat(msg_len * 3);
        let early = agg.add(huge, 1.0, 1.0);
        assert!(
            early.iter().any(|r| r.key.computer == "d"),
            "oversized row emitted at once"
        );
    }

    /// Found by the state_file fuzz target: serde_json's default float parser can be off
    /// by one unit in the last place on long digit strings; the state file's times must
    /// come back exactly (serde_json's `float_roundtrip`).
    #[test]
    fn state_times_round_trip_to_the_bit() {
        let line = r#"{"EventCode":4104,"Message":"etsn x","ComputerName":"ws01","User":"u","count":1,"firstTime":170000000022222222222222222222222222222222222222.0,"lastTime":1700000004104,"window_start":1699999940.04104}"#;
        let rows = rows_from_state(line, 1.7e9).unwrap();
        let again = rows_from_state(&rows_to_state(&rows), 1.7e9).unwrap();
        let bits = |r: &Row| [r.first_time, r.last_time, r.window_start].map(f64::to_bits);
        assert_eq!(bits(&rows[0]), bits(&again[0]));
    }

    #[test]
    fn state_round_trip() {
        let mut agg = Aggregate::new(AggregateMode::Tumbling, 10, 1 << 20, 0.0);
        agg.add(key("a"), 1.0, 1.0);
        agg.add(key("a"), 5.0, 5.0);
        let rows = agg.flush(10.0, "shutdown");
        let text = rows_to_state(&rows);
        let back = rows_from_state(&text, 20.0).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(
            (back[0].count, back[0].first_time, back[0].last_time),
            (2, 1.0, 5.0)
        );
        let mut agg = Aggregate::new(AggregateMode::Tumbling, 10, 1 << 20, 20.0);
        agg.add(key("a"), 30.0, 30.0);
        assert!(agg.restore(&back[0], 20.0).is_empty());
        let rows = agg.flush(60.0, "interval");
        assert_eq!(
            (rows[0].count, rows[0].first_time, rows[0].last_time),
            (3, 1.0, 30.0)
        );
        assert_eq!(rows[0].window_start, 0.0);
        assert!(rows_from_state("{\"x\":1}\n", 0.0)
            .unwrap_err()
            .starts_with("line 1"));
    }

    #[test]
    fn row_fields_and_ctime() {
        let row = Row {
            key: Arc::new(key("ws01")),
            count: 3,
            first_time: 1_709_633_472.7,
            last_time: 1_709_633_500.0,
            window_start: 1_709_633_400.0,
            window_end: 1_709_633_520.0,
            reason: "interval",
        };
        for schema in [Schema::Ecs, Schema::Splunk] {
            let cfg = Config {
                schema,
                ..Config::default()
            };
            let mut out = Vec::new();
            write_row(&cfg, &row, AggregateMode::Tumbling, "fb01", &mut out);
            let v = rmpv::decode::read_value(&mut &out[..]).unwrap();
            let get = |k: &str| {
                v.as_map()
                    .unwrap()
                    .iter()
                    .find(|(kk, _)| kk.as_str() == Some(k))
                    .map(|(_, v)| v.clone())
            };
            assert_eq!(get("count").unwrap().as_u64(), Some(3));
            assert_eq!(
                get("firstTime").unwrap().as_str(),
                Some("2024-03-05T10:11:12")
            );
            assert_eq!(
                get("lastTime").unwrap().as_str(),
                Some("2024-03-05T10:11:40")
            );
            assert_eq!(
                get("firstTime_epoch").unwrap().as_f64(),
                Some(1_709_633_472.7)
            );
            assert_eq!(get("ComputerName").unwrap().as_str(), Some("ws01"));
            match schema {
                Schema::Ecs => {
                    assert!(get("rule").is_some() && get("threat").is_some());
                }
                Schema::Splunk => {
                    assert_eq!(get("rule_id").unwrap().as_str(), Some(a::RULE_ID));
                    assert_eq!(get("risk_object").unwrap().as_str(), Some("ws01"));
                }
            }
        }
    }
}
