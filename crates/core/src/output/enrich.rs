//! Enrichment of a flagged record: the analytic's ATT&CK and risk fields in the chosen schema
//! plus the normalised group-by values, merged into the original body so that every original
//! key and value stays exactly as it was (original bytes are copied, never re-encoded).

use crate::analytic as a;
use crate::config::{Config, Schema};
use crate::msgpack::{self, MapEntries};
use crate::reassembly::Reassembled;
use crate::shapes::Shape;
use crate::timefmt;
use crate::verdict::ExtendedFinding;

/// A value to add to a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Str(String),
    Int(i64),
    Float(f64),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

fn s(v: &str) -> Node {
    Node::Str(v.to_string())
}

fn strs(v: &[&str]) -> Node {
    Node::List(v.iter().map(|x| s(x)).collect())
}

fn map(entries: Vec<(&str, Node)>) -> Node {
    Node::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// The values the analytic groups by, normalised from whatever shape the record had.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    pub event_code: i64,
    pub computer: String,
    pub user: String,
    /// Event time in epoch seconds.
    pub time: f64,
    /// The field the time came from (`fluentbit` for the record's Fluent Bit timestamp).
    pub time_source: &'static str,
    pub shape: Shape,
    /// Set when the record stands for a script block reassembled from several events.
    pub reassembly: Option<Reassembled>,
    /// mode extended: the sessions the script opens.
    pub extended: Option<ExtendedFinding>,
}

/// The fields a flagged record gains, keyed at the top level of the record.
pub fn additions(cfg: &Config, n: &Normalized) -> Vec<(String, Node)> {
    let risk_message = a::risk_message(&n.computer);
    let lateral = n.extended.as_ref().is_none_or(|e| e.lateral);
    let risk = n.extended.as_ref().map_or(cfg.risk_score, |e| e.risk_score);
    let observable = observable(&n.computer);
    let mut out = match cfg.schema {
        Schema::Ecs => ecs_fields(risk),
        Schema::Splunk => splunk_fields(n, risk, &risk_message, &observable),
    };
    if !lateral {
        // A local session is reported, never as lateral movement.
        out.retain(|(k, _)| !matches!(*k, "threat" | "kill_chain_phase"));
        for (k, v) in out.iter_mut() {
            if *k == "annotations" {
                *v = map(vec![("analytic_story", strs(&[a::ANALYTIC_STORY]))]);
            }
        }
    }
    let dest = n
        .extended
        .as_ref()
        .and_then(|e| e.relevant().next().map(|s| s.target.text()));
    if let Some(d) = &dest {
        match cfg.schema {
            Schema::Ecs => out.push(("destination", map(vec![("address", s(d))]))),
            Schema::Splunk => out.push(("dest", s(d))),
        }
    }
    let ns = namespace_map(cfg, n, &risk_message, observable);
    out.push((NAMESPACE_PLACEHOLDER, ns));
    out.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The analytic's observable: the computer, as the victim endpoint.
fn observable(computer: &str) -> Node {
    map(vec![
        ("name", s(a::OBSERVABLE_FIELD)),
        ("type", s(a::OBSERVABLE_TYPE)),
        ("role", strs(&[a::OBSERVABLE_ROLE])),
        ("value", s(computer)),
    ])
}

/// The ECS fields: `event`, `threat`, `rule`.
fn ecs_fields(risk: i64) -> Vec<(&'static str, Node)> {
    vec![
        (
            "event",
            map(vec![
                ("kind", s("alert")),
                ("category", strs(&["intrusion_detection"])),
                ("type", strs(&["info"])),
                ("risk_score", Node::Float(risk as f64)),
                ("risk_score_norm", Node::Float(risk.min(100) as f64)),
                ("severity", Node::Int(risk)),
            ]),
        ),
        (
            "threat",
            map(vec![
                ("framework", s(a::FRAMEWORK)),
                (
                    "tactic",
                    map(vec![
                        ("id", strs(&[a::TACTIC_ID])),
                        ("name", strs(&[a::TACTIC_NAME])),
                        ("reference", strs(&[a::TACTIC_REFERENCE])),
                    ]),
                ),
                (
                    "technique",
                    map(vec![
                        ("id", strs(&[a::TECHNIQUE_ID])),
                        ("name", strs(&[a::TECHNIQUE_NAME])),
                        ("reference", strs(&[a::TECHNIQUE_REFERENCE])),
                        (
                            "subtechnique",
                            map(vec![
                                ("id", strs(&[a::SUBTECHNIQUE_ID])),
                                ("name", strs(&[a::SUBTECHNIQUE_NAME])),
                                ("reference", strs(&[a::SUBTECHNIQUE_REFERENCE])),
                            ]),
                        ),
                    ]),
                ),
            ]),
        ),
        (
            "rule",
            map(vec![
                ("id", s(a::RULE_ID)),
                ("uuid", s(a::RULE_ID)),
                ("name", s(a::RULE_NAME)),
                ("description", s(a::RULE_DESCRIPTION)),
                ("category", s(a::RULE_TYPE)),
                ("version", s(&a::RULE_VERSION.to_string())),
                ("author", strs(&[a::RULE_AUTHOR])),
                ("ruleset", s("Splunk ESCU")),
                ("reference", s(a::REFERENCES[1])),
            ]),
        ),
    ]
}

/// The Splunk risk-based-alerting fields.
fn splunk_fields(
    n: &Normalized,
    risk: i64,
    risk_message: &str,
    observable: &Node,
) -> Vec<(&'static str, Node)> {
    vec![
        ("search_name", s(a::SEARCH_NAME)),
        ("rule_id", s(a::RULE_ID)),
        ("rule_name", s(a::RULE_NAME)),
        ("rule_description", s(a::RULE_DESCRIPTION)),
        ("detection_type", s(a::RULE_TYPE)),
        ("analytic_story", strs(&[a::ANALYTIC_STORY])),
        ("kill_chain_phase", strs(&[a::KILL_CHAIN_PHASE])),
        ("risk_score", Node::Int(risk)),
        ("risk_message", s(risk_message)),
        ("risk_object", s(&n.computer)),
        ("risk_object_type", s("system")),
        ("risk_object_field", s(a::OBSERVABLE_FIELD)),
        ("impact", Node::Int(a::IMPACT)),
        ("confidence", Node::Int(a::CONFIDENCE)),
        ("rule_references", strs(&a::REFERENCES)),
        (
            "annotations",
            map(vec![
                ("mitre_attack", strs(&[a::TECHNIQUE_ID, a::SUBTECHNIQUE_ID])),
                ("mitre_tactic_id", strs(&[a::TACTIC_ID])),
                ("mitre_tactic", strs(&[a::TACTIC_NAME])),
                (
                    "mitre_technique",
                    strs(&[a::TECHNIQUE_NAME, a::SUBTECHNIQUE_NAME]),
                ),
                ("analytic_story", strs(&[a::ANALYTIC_STORY])),
                ("kill_chain_phases", strs(&[a::KILL_CHAIN_PHASE])),
                ("observable", Node::List(vec![observable.clone()])),
            ]),
        ),
    ]
}

/// The map under `namespace`: the normalised values, what mode extended read, how the
/// script was reassembled, and (ECS) the analytic fields ECS has no place for.
fn namespace_map(cfg: &Config, n: &Normalized, risk_message: &str, observable: Node) -> Node {
    let mut entries: Vec<(String, Node)> = vec![
        ("EventCode".into(), Node::Int(n.event_code)),
        ("ComputerName".into(), s(&n.computer)),
        ("User".into(), s(&n.user)),
        ("time".into(), Node::Float(n.time)),
        ("time_text".into(), s(&timefmt::rfc3339(n.time))),
        ("time_source".into(), s(n.time_source)),
        ("shape".into(), s(n.shape.name())),
        ("mode".into(), s("exact")),
        ("rule_id".into(), s(a::RULE_ID)),
    ];
    if let Some(e) = &n.extended {
        extended_entries(e, &mut entries);
    }
    if let Some(r) = &n.reassembly {
        for (k, v) in [
            ("script_block_id", s(&r.block_id)),
            ("parts", Node::Int(r.parts as i64)),
            ("parts_total", Node::Int(r.total as i64)),
            ("reassembly", s(r.how)),
        ] {
            entries.push((k.to_string(), v));
        }
    }
    if cfg.schema == Schema::Ecs {
        // ECS has no place for these; keep them beside the normalised values.
        for (k, v) in [
            ("type", s(a::RULE_TYPE)),
            ("risk_message", s(risk_message)),
            ("analytic_story", strs(&[a::ANALYTIC_STORY])),
            ("kill_chain_phase", strs(&[a::KILL_CHAIN_PHASE])),
            ("impact", Node::Int(a::IMPACT)),
            ("confidence", Node::Int(a::CONFIDENCE)),
            ("observable", observable),
            ("references", strs(&a::REFERENCES)),
        ] {
            entries.push((k.to_string(), v));
        }
    }
    Node::Map(entries)
}

/// What mode extended read: the mode, lateral movement, the targets and the first one's
/// transport, command text, deobfuscated command line, layers peeled and readings.
fn extended_entries(e: &ExtendedFinding, entries: &mut Vec<(String, Node)>) {
    let first = e.relevant().next();
    let targets: Vec<Node> = e
        .relevant()
        .map(|x| {
            map(vec![
                ("value", s(&x.target.text())),
                ("kind", s(x.target.kind())),
                ("transport", s(x.transport.name())),
                ("local", s(if x.local { "true" } else { "false" })),
            ])
        })
        .collect();
    entries.push(("mode".into(), s("extended")));
    entries.retain(|(k, v)| !(k == "mode" && *v == s("exact")));
    entries.push((
        "lateral_movement".into(),
        s(if e.lateral { "true" } else { "false" }),
    ));
    entries.push(("targets".into(), Node::List(targets)));
    if let Some(f) = first {
        entries.push(("transport".into(), s(f.transport.name())));
        let cmd: String = f.text.chars().take(1024).collect();
        entries.push(("command".into(), s(&cmd)));
        entries.push(("command_line".into(), s(&f.command_line)));
        entries.push((
            "layers".into(),
            Node::List(f.layers.iter().map(|l| s(l)).collect()),
        ));
        entries.push((
            "reading".into(),
            Node::List(f.readings.iter().map(|r| s(r)).collect()),
        ));
    }
    if !e.lateral {
        entries.push(("category".into(), s("local-session")));
    }
}

/// Writes one node as msgpack.
pub fn write_node(out: &mut Vec<u8>, node: &Node) {
    match node {
        Node::Str(v) => msgpack::write_str(out, v),
        Node::Int(v) => msgpack::write_int(out, *v),
        Node::Float(v) => msgpack::write_f64(out, *v),
        Node::List(items) => {
            msgpack::write_array_len(out, items.len() as u32);
            for i in items {
                write_node(out, i);
            }
        }
        Node::Map(entries) => {
            msgpack::write_map_len(out, entries.len() as u32);
            for (k, v) in entries {
                msgpack::write_str(out, k);
                write_node(out, v);
            }
        }
    }
}

/// The placeholder key [`additions`] uses for the namespace map; [`merge_into_map`] gives it
/// the configured name (made unique against the record's keys).
const NAMESPACE_PLACEHOLDER: &str = "\0namespace";

/// Writes `original` (a msgpack map, whole) with `additions` merged in:
/// - every original entry is kept, byte for byte, in its place;
/// - an addition whose key exists with a map value on both sides is merged into it,
///   recursively; any other existing key keeps its original value (ours is dropped);
/// - the remaining additions are appended.
///
/// Returns false (writing nothing) when `original` is not a map.
pub fn merge_into_map(
    original: &[u8],
    additions: &[(String, Node)],
    namespace: &str,
    out: &mut Vec<u8>,
) -> bool {
    let Some(entries) = MapEntries::new(original) else {
        return false;
    };
    let n_original = entries.len();
    let entries: Vec<_> = entries.collect();
    if entries.len() as u32 != n_original {
        return false; // malformed map: leave it alone
    }
    let namespace_key = free_key(namespace, &entries);
    let key_of = |k: &str| -> String {
        if k == NAMESPACE_PLACEHOLDER {
            namespace_key.clone()
        } else {
            k.to_string()
        }
    };
    let mut consumed = vec![false; additions.len()];
    for e in &entries {
        if let Some(name) = e.name {
            for (i, (k, _)) in additions.iter().enumerate() {
                if !consumed[i] && key_of(k).as_bytes() == name {
                    consumed[i] = true;
                    break;
                }
            }
        }
    }
    let appended = consumed.iter().filter(|c| !**c).count() as u32;
    msgpack::write_map_len(out, n_original + appended);
    let mut merged = vec![false; additions.len()];
    for e in &entries {
        let target = e.name.and_then(|name| {
            additions
                .iter()
                .enumerate()
                .find(|(i, (k, _))| !merged[*i] && key_of(k).as_bytes() == name)
                .map(|(i, (_, v))| (i, v))
        });
        match target {
            Some((i, Node::Map(sub))) => {
                merged[i] = true;
                let mark = out.len();
                out.extend_from_slice(&e.raw[..e.key_len]);
                if !merge_into_map(e.value, sub, namespace, out) {
                    out.truncate(mark);
                    out.extend_from_slice(e.raw);
                }
            }
            Some((i, _)) => {
                merged[i] = true;
                out.extend_from_slice(e.raw);
            }
            None => out.extend_from_slice(e.raw),
        }
    }
    for (i, (k, v)) in additions.iter().enumerate() {
        if !consumed[i] {
            msgpack::write_str(out, &key_of(k));
            write_node(out, v);
        }
    }
    true
}

/// `namespace`, with `_` prepended until no key of the record has that name.
fn free_key(namespace: &str, entries: &[msgpack::MapEntry<'_>]) -> String {
    let mut key = namespace.to_string();
    while entries.iter().any(|e| e.name == Some(key.as_bytes())) {
        key.insert(0, '_');
    }
    key
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

    fn dec(b: &[u8]) -> Value {
        rmpv::decode::read_value(&mut &b[..]).unwrap()
    }

    fn get<'v>(v: &'v Value, k: &str) -> Option<&'v Value> {
        v.as_map()?
            .iter()
            .find(|(kk, _)| kk.as_str() == Some(k))
            .map(|(_, v)| v)
    }

    fn norm() -> Normalized {
        Normalized {
            event_code: 4104,
            computer: "ws01".into(),
            user: "CONTOSO\\alice".into(),
            time: 1_709_633_472.0,
            time_source: "TimeCreated",
            shape: Shape::Winevtlog,
            reassembly: None,
            extended: None,
        }
    }

    #[test]
    fn merge_keeps_originals_and_merges_maps() {
        let original = Value::Map(vec![
            ("msg".into(), "x".into()),
            (
                "event".into(),
                Value::Map(vec![
                    ("kind".into(), "event".into()),
                    ("code".into(), "4104".into()),
                ]),
            ),
            ("pssession".into(), 1.into()),
        ]);
        let mut out = Vec::new();
        assert!(merge_into_map(
            &enc(&original),
            &additions(&Config::default(), &norm()),
            "pssession",
            &mut out
        ));
        let v = dec(&out);
        assert_eq!(get(&v, "msg").unwrap().as_str(), Some("x"));
        let event = get(&v, "event").unwrap();
        assert_eq!(
            get(event, "kind").unwrap().as_str(),
            Some("event"),
            "original kept"
        );
        assert_eq!(get(event, "code").unwrap().as_str(), Some("4104"));
        assert_eq!(get(event, "risk_score").unwrap().as_f64(), Some(45.0));
        assert_eq!(get(&v, "pssession").unwrap().as_i64(), Some(1));
        let ns = get(&v, "_pssession").unwrap();
        assert_eq!(get(ns, "ComputerName").unwrap().as_str(), Some("ws01"));
        assert_eq!(
            get(ns, "risk_message").unwrap().as_str(),
            Some("An interactive session was opened on a remote endpoint from ws01")
        );
        let tech = get(get(&v, "threat").unwrap(), "technique").unwrap();
        let sub = get(tech, "subtechnique").unwrap();
        assert_eq!(
            get(sub, "id").unwrap().as_array().unwrap()[0].as_str(),
            Some("T1021.006")
        );
        // the original entries are byte-identical prefixes of the output
        let orig_msg = enc(&Value::Map(vec![("msg".into(), "x".into())]));
        assert_eq!(&out[1..1 + orig_msg.len() - 1], &orig_msg[1..]);
    }

    #[test]
    fn splunk_schema_fields() {
        let cfg = Config {
            schema: Schema::Splunk,
            risk_score: 70,
            ..Config::default()
        };
        let mut out = Vec::new();
        let original = enc(&Value::Map(vec![("risk_score".into(), "mine".into())]));
        assert!(merge_into_map(
            &original,
            &additions(&cfg, &norm()),
            "pssession",
            &mut out
        ));
        let v = dec(&out);
        assert_eq!(get(&v, "risk_score").unwrap().as_str(), Some("mine"));
        assert_eq!(get(&v, "risk_object").unwrap().as_str(), Some("ws01"));
        assert_eq!(
            get(&v, "risk_object_type").unwrap().as_str(),
            Some("system")
        );
        let ann = get(&v, "annotations").unwrap();
        let mitre: Vec<_> = get(ann, "mitre_attack")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        assert_eq!(mitre, ["T1021", "T1021.006"]);
        assert_eq!(
            get(&v, "search_name").unwrap().as_str(),
            Some(a::SEARCH_NAME)
        );
    }

    #[test]
    fn non_maps_are_not_merged() {
        let mut out = Vec::new();
        assert!(!merge_into_map(&enc(&Value::from("s")), &[], "p", &mut out));
        assert!(out.is_empty());
    }
}
