//! The C header in `include/` is what cbindgen makes of `src/ffi.rs` (that file alone, so
//! nothing else the crate makes public leaks into the ABI) today, and it compiles
//! cleanly as C (`gcc -Wall -Werror`) in a translation unit that uses the registration.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generate() -> String {
    let config = cbindgen::Config::from_file(root().join("cbindgen.toml")).unwrap();
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_src(root().join("src/ffi.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen failed")
        .write(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn header_is_current() {
    let path = root().join("include/flb_filter_pssession.h");
    let fresh = generate();
    if std::env::var_os("UPDATE_HEADER").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/flb_filter_pssession.h is stale: run `make header` (UPDATE_HEADER=1 cargo test --test c_header)"
    );
    for want in [
        "struct flb_filter_plugin {",
        "extern struct flb_filter_plugin filter_pssession_plugin;",
        "cb_filter",
    ] {
        assert!(fresh.contains(want), "header lacks {want}");
    }
}

#[test]
fn header_compiles_with_gcc_wall_werror() {
    let dir = std::env::temp_dir().join(format!("pssession-header-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = dir.join("use_header.c");
    std::fs::copy(
        root().join("include/flb_filter_pssession.h"),
        dir.join("flb_filter_pssession.h"),
    )
    .unwrap();
    std::fs::write(
        &c,
        r#"#include "flb_filter_pssession.h"
#include <stddef.h>
#include <stdio.h>
/* struct flb_filter_plugin of Fluent Bit 3.2 to 5.1 on LP64, field by field */
_Static_assert(offsetof(struct flb_filter_plugin, name) == 8, "name");
_Static_assert(offsetof(struct flb_filter_plugin, config_map) == 24, "config_map");
_Static_assert(offsetof(struct flb_filter_plugin, cb_pre_run) == 32, "cb_pre_run");
_Static_assert(offsetof(struct flb_filter_plugin, cb_filter) == 48, "cb_filter");
_Static_assert(offsetof(struct flb_filter_plugin, cb_notification) == 64, "cb_notification");
_Static_assert(offsetof(struct flb_filter_plugin, _head) == 72, "_head");
_Static_assert(sizeof(struct flb_filter_plugin) == 88, "size");
int main(void) {
    const struct flb_filter_plugin *p = &filter_pssession_plugin;
    printf("%s %d %zu\n", p->name, p->event_type, sizeof(struct flb_filter_plugin));
    return p->cb_filter == NULL;
}
"#,
    )
    .unwrap();
    let out = Command::new("gcc")
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fsyntax-only",
            "-I",
        ])
        .arg(&dir)
        .arg(&c)
        .output()
        .expect("gcc not found");
    assert!(
        out.status.success(),
        "gcc rejected the header:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
