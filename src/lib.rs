//! flb-pssession: a Fluent Bit filter that flags interactive remote PowerShell sessions
//! (`Enter-PSSession`, ATT&CK T1021.006) in script-block events (Event ID 4104).
//!
//! The crate has three rooms, and data flows one way through them:
//! - [`core`]: pure Rust under forbid(unsafe_code): msgpack chunk -> record shapes -> one event view ->
//!   verdict -> enrichment -> the rewritten chunk.
//! - [`ffi`]: the plugin's only raw-pointer code: the `filter_pssession_plugin` registration
//!   struct Fluent Bit loads, its callbacks, the host functions it calls, and the panic
//!   boundary.
//! - [`host_emulator`]: loads the built `.so` the way Fluent Bit does and plays the host,
//!   for the tests and the replay CLI. It is never called by the plugin itself.
//! - [`replay`]: saved logs -> record bodies, for the replay CLI.
//! - [`chunk_io`]: JSON <-> Fluent Bit chunks, for the tools and tests that feed the plugin.

#[forbid(unsafe_code)]
pub mod chunk_io;
#[forbid(unsafe_code)]
pub mod core;
pub mod ffi;
pub mod host_emulator;
#[forbid(unsafe_code)]
pub mod replay;
