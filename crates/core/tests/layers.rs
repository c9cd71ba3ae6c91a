//! The core's data flows one way: the wire, then reading a record, then detecting, then
//! output; `analytic`, `config` and `mirrored` sit below them all, `filter`, `instance` and `chunk_io`
//! above. No module may name one of a later layer (what it hands on lives in its layer or
//! below). Read from the source, so a new upward `use` fails here.

use std::path::Path;

/// (layer, module names) from the bottom up.
const LAYERS: &[(&str, &[&str])] = &[
    ("base", &["analytic", "config", "mirrored"]),
    ("wire", &["wire", "msgpack", "chunk"]),
    (
        "read",
        &[
            "read",
            "shapes",
            "xml_event",
            "linux",
            "timefmt",
            "script_block",
        ],
    ),
    (
        "detect",
        &[
            "detect",
            "verdict",
            "reassembly",
            "pwsh",
            "constant",
            "flow",
        ],
    ),
    ("output", &["output", "enrich", "aggregate"]),
    ("driver", &["filter", "instance", "chunk_io"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

/// The code of a file without its `#[cfg(test)]` module (tests may use anything).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[test]
fn no_module_uses_a_later_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    let mut files = Vec::new();
    for entry in walk(&src) {
        let rel = entry
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        // layer/module.rs, or layer/module/mod.rs and its submodules (layer/module/x.rs)
        let parts: Vec<&str> = rel
            .trim_end_matches(".rs")
            .trim_end_matches("/mod")
            .split('/')
            .collect();
        let module = parts[parts.len().min(2) - 1].to_string();
        if module == "lib" {
            continue;
        }
        files.push((entry, module));
    }
    for (path, module) in files {
        let own = layer_of(&module).unwrap_or_else(|| panic!("{module} is in no layer"));
        let text = code(&path);
        for (i, _) in text.match_indices("crate::") {
            let name: String = text[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if let Some(l) = layer_of(&name) {
                assert!(
                    l <= own,
                    "{module} ({}) uses crate::{name} ({})",
                    LAYERS[own].0,
                    LAYERS[l].0
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} uses seen: is the source where expected?"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}
