//! Build script of the plugin package: its tests and benches host the plugin through the
//! emulator and export their symbols to the libraries they load, as the `fluent-bit`
//! binary does; the plugin itself links with `-Bsymbolic`.

fn main() {
    for kind in ["tests", "benches"] {
        println!("cargo:rustc-link-arg-{kind}=-Wl,--export-dynamic");
    }
    // The plugin's references to its own registration bind inside the plugin, even when the
    // host happens to export a symbol of the same name (a test binary linking this crate
    // as an rlib does): the load-time constructor must fill in the plugin's own copy.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic");
    println!("cargo:rerun-if-changed=build.rs");
}
