//! Invariants every fuzz target of a whole chunk checks: the filter never panics (libFuzzer
//! reports a panic as a crash), and what it returns is either "untouched" or a chunk in
//! which every record is still there, in order, unflagged ones byte for byte, flagged ones
//! with their header unchanged and every original key and value kept.
#![allow(dead_code)]

use pssession_core::filter::{ChunkResult, Outcome};
use pssession_oracle::{keeps_original, values};

/// An input chunk, read once by the oracle for every check made of it.
pub struct Input<'a> {
    data: &'a [u8],
    records: Vec<pssession_oracle::Value<'a>>,
    end: usize,
}

impl<'a> Input<'a> {
    pub fn read(data: &'a [u8]) -> Input<'a> {
        let (records, end) = values(data);
        Input { data, records, end }
    }

    /// Checks one chunk result against the input.
    pub fn check(&self, res: &ChunkResult, what: &str) {
        check_read(self.data, &self.records, self.end, res, what)
    }
}

/// Checks one chunk result against its input.
pub fn check(input: &[u8], res: &ChunkResult, what: &str) {
    Input::read(input).check(res, what)
}

fn check_read(
    input: &[u8],
    ins: &[pssession_oracle::Value<'_>],
    in_end: usize,
    res: &ChunkResult,
    what: &str,
) {
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
    let (outs, out_end) = values(out);
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
                a.raw == b.raw
                    || matches!((a.body(), b.body()), (Some(x), Some(y)) if keeps_original(x, y)),
                "{what}: flagged record lost an original key or value"
            );
        } else {
            assert_eq!(a.raw, b.raw, "{what}: unflagged record changed");
        }
    }
    assert_eq!(seen, res.flagged.len(), "{what}: flagged ranges");
}
