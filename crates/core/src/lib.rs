//! pssession-core: everything the filter decides and writes, pure: no `unsafe`, no I/O,
//! no FFI. Data flows one way: the wire (`msgpack`, `chunk`) -> reading a record
//! (`shapes`, `xml_event`, `linux`, `timefmt`) -> detecting (`verdict`, `pwsh`,
//! `reassembly`) -> output (`enrich`, `aggregate`), driven per chunk by `filter` and per
//! instance by `instance`; `config` holds the properties, `analytic` the reference's
//! metadata, `chunk_io` JSON <-> Fluent Bit chunks for the tools and tests.
#![forbid(unsafe_code)]

pub mod aggregate;
pub mod analytic;
pub mod chunk;
pub mod chunk_io;
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
