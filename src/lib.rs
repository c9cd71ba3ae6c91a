//! flb-pssession: a Fluent Bit filter plugin that flags interactive remote PowerShell
//! sessions (`Enter-PSSession`, ATT&CK T1021.006) in script-block events (Event ID 4104).
//!
//! This crate is the plugin's FFI and nothing else: the `filter_pssession_plugin`
//! registration struct Fluent Bit loads, its callbacks, the host functions it calls, the
//! panic boundary, and the few files it writes (the aggregate state file). Everything the
//! filter decides and writes is in the pure `pssession-core` crate.

pub mod ffi;
