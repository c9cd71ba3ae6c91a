//! Invariants every fuzz target of a whole chunk checks: the filter never panics (libFuzzer
//! reports a panic as a crash), and what it returns is either "untouched" or a chunk in
//! which every record is still there, in order, unflagged ones byte for byte, flagged ones
//! with their header unchanged and every original key and value kept.
#![allow(dead_code)]

use flb_filter_pssession::core::chunk::{RecordRef, Records};
use flb_filter_pssession::core::filter::{ChunkResult, Outcome};
use flb_filter_pssession::core::msgpack::MapEntries;

/// The records that decode, and the offset where the undecodable tail starts (the end of
/// the last good record), if any.
pub fn split(chunk: &[u8]) -> (Vec<RecordRef<'_>>, usize) {
    let mut ok = Vec::new();
    let mut end = 0;
    for r in Records::new(chunk) {
        match r {
            Ok(r) => {
                end = r.offset + r.raw.len();
                ok.push(r);
            }
            Err(_) => break,
        }
    }
    (ok, end)
}

/// Whether `out` (a map) keeps every entry of `orig` (a map) in its place: the same key
/// bytes, and the same value bytes or, where both are maps, a merge that keeps them.
pub fn keeps(orig: &[u8], out: &[u8]) -> bool {
    let (Some(a), Some(b)) = (MapEntries::new(orig), MapEntries::new(out)) else {
        return false;
    };
    if b.len() < a.len() {
        return false;
    }
    let mut b = b;
    for ea in a {
        let Some(eb) = b.next() else { return false };
        if ea.raw[..ea.key_len] != eb.raw[..eb.key_len] {
            return false;
        }
        if ea.value != eb.value && !keeps(ea.value, eb.value) {
            return false;
        }
    }
    true
}

/// Checks one chunk result against its input.
pub fn check(input: &[u8], res: &ChunkResult, what: &str) {
    let (ins, in_end) = split(input);
    assert_eq!(
        res.stats.records,
        ins.len() as u64,
        "{what}: records counted"
    );
    assert!(
        res.stats.flagged as usize >= res.flagged.len(),
        "{what}: flagged count"
    );
    let out = match &res.outcome {
        Outcome::NoTouch => {
            assert!(res.flagged.is_empty(), "{what}: flagged but NoTouch");
            return;
        }
        Outcome::Modified(out) => out,
    };
    assert!(
        !res.flagged.is_empty(),
        "{what}: Modified with nothing flagged"
    );
    let (outs, out_end) = split(out);
    assert_eq!(outs.len(), ins.len(), "{what}: record count changed");
    assert_eq!(
        &out[out_end..],
        &input[in_end..],
        "{what}: undecodable tail not passed on verbatim"
    );
    let mut seen = 0;
    for (a, b) in ins.iter().zip(&outs) {
        let range = b.offset..b.offset + b.raw.len();
        if res.flagged.iter().any(|f| f.out_range == range) {
            seen += 1;
            assert_eq!(a.header(), b.header(), "{what}: header of a flagged record");
            assert!(
                a.raw == b.raw || keeps(a.body(), b.body()),
                "{what}: flagged record lost an original key or value"
            );
        } else {
            assert_eq!(a.raw, b.raw, "{what}: unflagged record changed");
        }
    }
    assert_eq!(seen, res.flagged.len(), "{what}: flagged ranges");
}
