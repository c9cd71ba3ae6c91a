//! The tools host the plugin: they export their symbols to the libraries they load, as the
//! `fluent-bit` binary does, so the plugin finds the host functions they define with
//! `export_host_symbols!`.

fn main() {
    for kind in ["bins", "tests"] {
        println!("cargo:rustc-link-arg-{kind}=-Wl,--export-dynamic");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
