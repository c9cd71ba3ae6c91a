//! Build script: binaries that host the plugin (tests, benches, the replay CLI) export their
//! symbols to dynamically loaded libraries, as the `fluent-bit` binary does, so the plugin
//! finds the host functions they define with `export_host_symbols!`.

fn main() {
    for kind in ["bins", "tests", "benches"] {
        println!("cargo:rustc-link-arg-{kind}=-Wl,--export-dynamic");
    }
    // The plugin's references to its own registration bind inside the plugin, even when the
    // host happens to export a symbol of the same name (a test binary linking this crate
    // as an rlib does): the load-time constructor must fill in the plugin's own copy.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic");
    println!("cargo:rerun-if-changed=build.rs");
}
