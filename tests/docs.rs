//! The README documents every property with its default, and the example configs use only
//! properties that exist.

use pssession_core::config::PROPERTIES;
use std::path::PathBuf;

fn read(rel: &str) -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

#[test]
fn readme_documents_every_property_with_its_default() {
    let readme = read("README.md");
    for p in PROPERTIES {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", p.name)))
            .unwrap_or_else(|| panic!("README has no table row for property {}", p.name));
        let want = match p.default {
            Some(d) => format!("`{d}`"),
            None => "none".to_string(),
        };
        assert!(
            row.contains(&want),
            "README row for {} lacks default {want}: {row}",
            p.name
        );
    }
}

#[test]
fn example_configs_use_known_properties() {
    for f in [
        "central.conf",
        "central.yaml",
        "demo.yaml",
        "alerts.conf",
        "alerts.yaml",
        "fleet/agent.yaml",
        "linux-systemd.yaml",
        "linux-syslog.conf",
        "placements/filter.yaml",
        "placements/input-processor.yaml",
        "placements/output-processor.yaml",
        "placements/batch.yaml",
        "metrics.yaml",
    ] {
        let text = read(&format!("fluent-bit-conf/{f}"));
        let mut in_pssession = false;
        let mut section_indent = 0;
        for line in text.lines() {
            let t = line.trim();
            let indent = line.len() - line.trim_start().len();
            if t.starts_with('[')
                || t.starts_with("- name:")
                || (!t.is_empty() && indent <= section_indent && !t.starts_with('#'))
            {
                in_pssession = false;
            }
            if t.eq_ignore_ascii_case("name pssession")
                || t.split_whitespace().collect::<Vec<_>>() == ["Name", "pssession"]
                || t == "- name: pssession"
            {
                in_pssession = true;
                section_indent = if t.starts_with('-') { indent } else { 0 };
                continue;
            }
            if !in_pssession || t.is_empty() || t.starts_with('#') || t.starts_with("- ") {
                continue;
            }
            let key = t
                .split(|c: char| c == ':' || c.is_whitespace())
                .next()
                .unwrap();
            let known = PROPERTIES.iter().any(|p| p.name.eq_ignore_ascii_case(key))
                || ["match", "match_regex", "alias", "log_level"]
                    .contains(&key.to_lowercase().as_str());
            assert!(known, "{f}: unknown pssession property {key}");
        }
    }
}
