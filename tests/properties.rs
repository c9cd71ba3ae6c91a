//! Property tests (proptest) through the built plugin via the host emulator: for any valid
//! chunk, in either record layout and any timestamp form,
//! - the records out are the records in, in order (same count, same headers);
//! - every unflagged record is byte-identical;
//! - a flagged record keeps every original key and value (maps may have gained keys);
//! - labelled positives stay flagged and labelled negatives untouched whatever unrelated
//!   keys are added to them (including keys the enrichment itself writes);
//! - records are judged independently: filtering a concatenation gives the concatenation
//!   of the results.
//!
//! Case counts are kept small so the file runs in a few seconds in a debug build.

mod common;
pssession_host_emulator::export_host_symbols!();

use common::*;
use flb_filter_pssession::ffi::FLB_FILTER_NOTOUCH;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use pssession_core::chunk_io::{self, Layout};
use pssession_host_emulator::Instance;
use rmpv::Value as M;
use serde_json::Value;

/// One instance per test, dropped (cb_exit) at its end, so that valgrind
/// (scripts/valgrind.sh) sees everything released; likewise no static test data.
fn instance() -> Instance<'static> {
    plugin().instance(&[("match", "*")]).unwrap()
}

fn runner() -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases: 96,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })
}

/// Labelled records: (body, expected flagged).
fn labelled() -> Vec<(Value, bool)> {
    let mut v = Vec::new();
    for shape in ["winevtlog", "nxlog", "winlogbeat", "xml", "splunk", "linux"] {
        for case in jsonl(&format!("tests/data/labelled/{shape}.jsonl")) {
            let flagged = case["expect"]["flagged"].as_bool().unwrap();
            v.push((case["record"].clone(), flagged));
        }
    }
    v
}

fn layout_strategy() -> impl Strategy<Value = Layout> {
    (0..Layout::all().len()).prop_map(|i| Layout::all()[i])
}

/// Any msgpack value: every scalar type (NaN and infinities included), text with any
/// Unicode and NUL bytes, binary, extensions, nested arrays and maps with any keys.
fn any_value() -> impl Strategy<Value = M> {
    let leaf = prop_oneof![
        Just(M::Nil),
        any::<bool>().prop_map(M::Boolean),
        any::<i64>().prop_map(M::from),
        any::<u64>().prop_map(M::from),
        any::<f64>().prop_map(M::F64),
        any::<f32>().prop_map(M::F32),
        ".{0,40}".prop_map(M::from),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(M::Binary),
        (any::<i8>(), prop::collection::vec(any::<u8>(), 0..12)).prop_map(|(t, d)| M::Ext(t, d)),
        // values a reader looks for
        prop_oneof![
            Just(M::from(4104)),
            Just(M::from("4104")),
            Just(M::from("Enter-PSSession -ComputerName dc01")),
            Just(M::from("Microsoft-Windows-PowerShell/Operational")),
            Just(M::from(
                "<Event><System><EventID>4104</EventID></System></Event>"
            )),
        ],
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(M::Array),
            prop::collection::vec((key(), inner), 0..6).prop_map(M::Map),
        ]
    })
}

/// Map keys: arbitrary text, the names the shapes read, and the names the enrichment adds.
fn key() -> impl Strategy<Value = M> {
    prop_oneof![
        3 => ".{0,16}".prop_map(M::from),
        2 => prop::sample::select(vec![
            "EventID", "EventCode", "Channel", "Computer", "Hostname", "Message", "message",
            "ScriptBlockText", "StringInserts", "winlog", "event_id", "log", "_raw", "ident",
            "SYSLOG_IDENTIFIER", "MESSAGE", "TimeCreated", "@timestamp", "event", "threat",
            "rule", "pssession", "_pssession", "kind",
        ])
        .prop_map(M::from),
        1 => any::<i64>().prop_map(M::from),
    ]
}

fn any_map() -> impl Strategy<Value = M> {
    prop::collection::vec((key(), any_value()), 0..12).prop_map(M::Map)
}

fn chunk_of_values(bodies: &[M], layouts: &[Layout]) -> Vec<u8> {
    let mut c = Vec::new();
    for (i, b) in bodies.iter().enumerate() {
        chunk_io::push_record(
            &mut c,
            b,
            1.7e9 + i as f64 * 0.25,
            layouts[i % layouts.len()],
        );
    }
    c
}

/// The core property: same records, same order; unflagged byte-identical; flagged keep
/// header and every original key and value. Returns which records were flagged.
fn check(inst: &Instance<'_>, input: &[u8]) -> Result<Vec<bool>, TestCaseError> {
    let call = inst.filter(input, "prop");
    let ins = decode(input);
    if call.code == FLB_FILTER_NOTOUCH {
        prop_assert_eq!(&call.chunk, input);
        return Ok(vec![false; ins.len()]);
    }
    let outs = decode(&call.chunk);
    prop_assert_eq!(outs.len(), ins.len(), "record count");
    let mut flagged = Vec::new();
    for (i, (a, b)) in ins.iter().zip(&outs).enumerate() {
        prop_assert_eq!(a.time, b.time, "record {} time", i);
        if a.raw == b.raw {
            flagged.push(false);
            continue;
        }
        flagged.push(true);
        let body_len = pssession_core::chunk::Records::new(&a.raw)
            .next()
            .unwrap()
            .unwrap()
            .body()
            .len();
        let hdr = a.raw.len() - body_len;
        prop_assert_eq!(&a.raw[..hdr], &b.raw[..hdr], "record {} header", i);
        assert_keeps(&b.body, &a.body, &format!("record {i}"));
        prop_assert!(
            b.body.as_object().map_or(0, |o| o.len()) > a.body.as_object().map_or(0, |o| o.len())
                || a.body.as_object().is_some_and(|o| o.contains_key("event")),
            "record {} flagged without gaining keys",
            i
        );
    }
    prop_assert!(flagged.iter().any(|f| *f), "MODIFIED but nothing changed");
    Ok(flagged)
}

/// Adds keys to a labelled record without changing what it means: prefixed names, or names
/// the enrichment writes (any value) that the record does not have yet.
fn extra_keys() -> impl Strategy<Value = Vec<(String, M)>> {
    prop::collection::vec(
        (
            prop_oneof![
                "x-.{0,12}",
                prop::sample::select(vec![
                    "threat",
                    "rule",
                    "pssession",
                    "_pssession",
                    "risk_score",
                    "annotations",
                    "search_name",
                ])
                .prop_map(String::from),
            ],
            any_value(),
        ),
        0..6,
    )
}

fn mutate(record: &Value, extra: &[(String, M)]) -> M {
    let mut m = chunk_io::json_to_msgpack(record);
    if let M::Map(entries) = &mut m {
        for (k, v) in extra {
            if !entries.iter().any(|(ek, _)| ek.as_str() == Some(k)) {
                entries.push((M::from(k.as_str()), v.clone()));
            }
        }
    }
    m
}

#[test]
fn arbitrary_maps_keep_records_and_order() {
    let inst = instance();
    let strategy = (
        prop::collection::vec(any_map(), 1..8),
        prop::collection::vec(layout_strategy(), 1..4),
    );
    runner()
        .run(&strategy, |(bodies, layouts)| {
            check(&inst, &chunk_of_values(&bodies, &layouts))?;
            Ok(())
        })
        .unwrap();
}

#[test]
fn labelled_records_with_extra_keys() {
    let inst = instance();
    let all = labelled();
    let strategy = (
        prop::collection::vec((0usize..1000, extra_keys()), 1..6),
        prop::collection::vec(any_map(), 0..3),
        prop::collection::vec(layout_strategy(), 1..4),
    );
    runner()
        .run(&strategy, |(picks, noise, layouts)| {
            let mut bodies = Vec::new();
            let mut expect = Vec::new();
            for (i, extra) in &picks {
                let (rec, flagged) = &all[i % all.len()];
                bodies.push(mutate(rec, extra));
                expect.push(Some(*flagged));
            }
            for n in noise {
                bodies.push(n);
                expect.push(None);
            }
            let flagged = check(&inst, &chunk_of_values(&bodies, &layouts))?;
            for (i, (want, got)) in expect.iter().zip(&flagged).enumerate() {
                if let Some(want) = want {
                    prop_assert_eq!(want, got, "labelled record {} of the chunk", i);
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn records_are_judged_independently() {
    let inst = instance();
    let all = labelled();
    let strategy = (
        prop::collection::vec((0usize..1000, any_map()), 1..4),
        prop::collection::vec((0usize..1000, any_map()), 1..4),
        layout_strategy(),
    );
    runner()
        .run(&strategy, |(a, b, layout)| {
            let mk = |v: &[(usize, M)]| {
                let bodies: Vec<M> = v
                    .iter()
                    .flat_map(|(i, m)| {
                        [chunk_io::json_to_msgpack(&all[i % all.len()].0), m.clone()]
                    })
                    .collect();
                chunk_of_values(&bodies, &[layout])
            };
            let (ca, cb) = (mk(&a), mk(&b));
            let joined = inst
                .filter(&[ca.clone(), cb.clone()].concat(), "prop")
                .chunk;
            let apart = [
                inst.filter(&ca, "prop").chunk,
                inst.filter(&cb, "prop").chunk,
            ]
            .concat();
            prop_assert_eq!(joined, apart);
            Ok(())
        })
        .unwrap();
}
