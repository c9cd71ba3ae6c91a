//! The `ffi_entry` target hosts the plugin in-process, as `fluent-bit` does: the host
//! functions it defines with `export_host_symbols!()` must be in the dynamic symbol table
//! so the plugin's `dlsym(RTLD_DEFAULT, ...)` finds them.
fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic");
    println!("cargo:rerun-if-changed=build.rs");
}
