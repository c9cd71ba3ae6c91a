//! The pure core: everything the filter decides and writes, with no FFI and no raw
//! pointers (forbid(unsafe_code) is set on this module in lib.rs).

pub mod aggregate;
pub mod analytic;
pub mod chunk;
pub mod config;
pub mod enrich;
pub mod filter;
pub mod instance;
pub mod linux;
pub mod msgpack;
pub mod pwsh;
pub mod reassembly;
pub mod shapes;
pub mod timefmt;
pub mod verdict;
pub mod xml_event;
