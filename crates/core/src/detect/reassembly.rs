//! Script-block reassembly: Windows and Linux split a long script into several 4104 events
//! ("Creating Scriptblock text (n of m)") sharing a ScriptBlock ID. The parts are collected
//! per (computer, ScriptBlock ID) so the whole script can be judged once, when its last part
//! arrives, or as it stands when `reassemble_timeout` passes or a memory bound is hit.

use std::collections::{BTreeMap, HashMap};

pub use crate::read::script_block::PartInfo;

/// How a flagged record's script was put together from several events.
#[derive(Debug, Clone, PartialEq)]
pub struct Reassembled {
    pub block_id: String,
    /// Parts that made the judged script, and how many the block has.
    pub parts: u32,
    pub total: u32,
    /// `complete`, `timeout` or `bound`.
    pub how: &'static str,
}

/// Why a block was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Every part arrived.
    Complete,
    /// `reassemble_timeout` passed first.
    Timeout,
    /// A memory bound (bytes or open blocks) forced it out.
    Bound,
}

impl Completion {
    pub fn name(&self) -> &'static str {
        match self {
            Completion::Complete => "complete",
            Completion::Timeout => "timeout",
            Completion::Bound => "bound",
        }
    }
}

/// A block judged as it stands (timeout or bound): its script so far and the last part's
/// record, to be flagged in place of the record that would have completed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Released {
    pub computer: String,
    pub block_id: String,
    pub script: Vec<u8>,
    pub parts: u32,
    pub total: u32,
    pub why: Completion,
    /// Tag and whole record (msgpack) of the last part that arrived.
    pub tag: String,
    pub record: Vec<u8>,
}

#[derive(Debug)]
struct Block {
    total: u32,
    parts: BTreeMap<u32, Vec<u8>>,
    first_seen: f64,
    seq: u64,
    bytes: usize,
    tag: String,
    record: Vec<u8>,
}

/// What adding a part did.
#[derive(Debug, Clone, PartialEq)]
pub enum Fed {
    /// Still waiting for parts.
    Pending,
    /// This part completed the block: the whole script, in order.
    Complete { script: Vec<u8>, parts: u32 },
}

/// The open blocks of one filter instance.
#[derive(Debug)]
pub struct Reassembler {
    blocks: HashMap<(String, String), Block>,
    /// Oldest first (by first part seen).
    order: BTreeMap<u64, (String, String)>,
    seq: u64,
    bytes: usize,
    pub max_bytes: usize,
    pub max_blocks: usize,
    pub timeout_secs: f64,
    /// Blocks judged before completion, by cause.
    pub timeouts: u64,
    pub bound_releases: u64,
}

impl Reassembler {
    pub fn new(max_bytes: usize, max_blocks: usize, timeout_secs: f64) -> Self {
        Reassembler {
            blocks: HashMap::new(),
            order: BTreeMap::new(),
            seq: 0,
            bytes: 0,
            max_bytes,
            max_blocks: max_blocks.max(1),
            timeout_secs,
            timeouts: 0,
            bound_releases: 0,
        }
    }

    pub fn open_blocks(&self) -> usize {
        self.blocks.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds one part. Also returns blocks the bounds forced out (oldest first).
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        computer: &str,
        part: &PartInfo,
        text: &[u8],
        tag: &str,
        record: &[u8],
        now: f64,
    ) -> (Fed, Vec<Released>) {
        let key = (computer.to_string(), part.block_id.clone());
        let mut released = Vec::new();
        if !self.blocks.contains_key(&key) {
            while self.blocks.len() >= self.max_blocks {
                match self.release_oldest(Completion::Bound) {
                    Some(r) => released.push(r),
                    None => break,
                }
            }
            self.seq += 1;
            self.order.insert(self.seq, key.clone());
            self.blocks.insert(
                key.clone(),
                Block {
                    total: part.total,
                    parts: BTreeMap::new(),
                    first_seen: now,
                    seq: self.seq,
                    bytes: 0,
                    tag: String::new(),
                    record: Vec::new(),
                },
            );
        }
        let Some(block) = self.blocks.get_mut(&key) else {
            return (Fed::Pending, released);
        };
        let before = block.bytes;
        block
            .parts
            .entry(part.number)
            .or_insert_with(|| text.to_vec());
        block.tag = tag.to_string();
        block.record = record.to_vec();
        block.bytes = block.parts.values().map(Vec::len).sum::<usize>() + block.record.len();
        self.bytes = self.bytes + block.bytes - before;
        let complete = block.parts.len() as u32 >= block.total
            && (1..=block.total).all(|n| block.parts.contains_key(&n));
        if complete {
            let b = self.remove(&key);
            let parts = b.parts.len() as u32;
            return (
                Fed::Complete {
                    script: b.parts.into_values().flatten().collect(),
                    parts,
                },
                released,
            );
        }
        // Over the byte bound: release oldest blocks (possibly this one) as they stand.
        while self.bytes > self.max_bytes {
            match self.release_oldest(Completion::Bound) {
                Some(r) => released.push(r),
                None => break,
            }
        }
        (Fed::Pending, released)
    }

    fn remove(&mut self, key: &(String, String)) -> Block {
        let b = self.blocks.remove(key).unwrap_or(Block {
            total: 0,
            parts: BTreeMap::new(),
            first_seen: 0.0,
            seq: 0,
            bytes: 0,
            tag: String::new(),
            record: Vec::new(),
        });
        self.order.remove(&b.seq);
        self.bytes -= b.bytes;
        b
    }

    fn release_oldest(&mut self, why: Completion) -> Option<Released> {
        let (_, key) = self.order.first_key_value().map(|(s, k)| (*s, k.clone()))?;
        Some(self.release(&key, why))
    }

    fn release(&mut self, key: &(String, String), why: Completion) -> Released {
        let b = self.remove(key);
        match why {
            Completion::Timeout => self.timeouts += 1,
            Completion::Bound => self.bound_releases += 1,
            Completion::Complete => {}
        }
        Released {
            computer: key.0.clone(),
            block_id: key.1.clone(),
            parts: b.parts.len() as u32,
            total: b.total,
            script: b.parts.into_values().flatten().collect(),
            why,
            tag: b.tag,
            record: b.record,
        }
    }

    /// Blocks open longer than the timeout, judged as they stand.
    pub fn expire(&mut self, now: f64) -> Vec<Released> {
        let due: Vec<(String, String)> = self
            .order
            .values()
            .filter(|k| {
                self.blocks
                    .get(*k)
                    .is_some_and(|b| now - b.first_seen >= self.timeout_secs)
            })
            .cloned()
            .collect();
        due.iter()
            .map(|k| self.release(k, Completion::Timeout))
            .collect()
    }

    /// Every open block, at shutdown.
    pub fn drain(&mut self) -> Vec<Released> {
        let keys: Vec<_> = self.order.values().cloned().collect();
        keys.iter()
            .map(|k| self.release(k, Completion::Timeout))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(n: u32, m: u32, id: &str) -> PartInfo {
        PartInfo {
            number: n,
            total: m,
            block_id: id.into(),
        }
    }

    #[test]
    fn out_of_order_parts_complete_the_block_once() {
        let mut r = Reassembler::new(1 << 20, 10, 30.0);
        assert_eq!(
            r.add("h", &part(3, 3, "b"), b"C", "t", b"r3", 0.0).0,
            Fed::Pending
        );
        assert_eq!(
            r.add("h", &part(1, 3, "b"), b"A", "t", b"r1", 0.0).0,
            Fed::Pending
        );
        // another host's block with the same id stays apart
        assert_eq!(
            r.add("g", &part(2, 3, "b"), b"x", "t", b"g2", 0.0).0,
            Fed::Pending
        );
        let (fed, _) = r.add("h", &part(2, 3, "b"), b"B", "t", b"r2", 0.0);
        assert_eq!(
            fed,
            Fed::Complete {
                script: b"ABC".to_vec(),
                parts: 3
            }
        );
        assert_eq!(r.open_blocks(), 1);
    }

    #[test]
    fn timeout_and_bounds_release_as_they_stand() {
        let mut r = Reassembler::new(1 << 20, 2, 30.0);
        r.add("h", &part(1, 2, "a"), b"A1", "t", b"ra", 0.0);
        r.add("h", &part(1, 2, "b"), b"B1", "t", b"rb", 10.0);
        let (_, released) = r.add("h", &part(1, 2, "c"), b"C1", "t", b"rc", 11.0);
        assert_eq!(released.len(), 1);
        assert_eq!(
            (released[0].block_id.as_str(), released[0].why),
            ("a", Completion::Bound)
        );
        assert_eq!(released[0].record, b"ra");
        let expired = r.expire(45.0);
        assert_eq!(expired.len(), 2, "b and c are 35 and 34 s old");
        assert_eq!(expired[0].script, b"B1");
        assert_eq!(r.bytes(), 0);
        let mut r = Reassembler::new(10, 100, 30.0);
        let (_, released) = r.add("h", &part(1, 2, "big"), &[b'x'; 50], "t", b"r", 0.0);
        assert_eq!(
            released.len(),
            1,
            "a block over the byte bound is judged at once"
        );
    }
}
