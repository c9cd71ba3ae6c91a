//! pssession-core: everything the filter decides and writes, pure: no `unsafe`, no I/O,
//! no FFI. Data flows one way: the wire (`msgpack`, `chunk`) -> reading a record
//! (`shapes`, `xml_event`, `linux`, `timefmt`) -> detecting (`verdict`, `pwsh`,
//! `reassembly`) -> output (`enrich`, `aggregate`), driven per chunk by `filter` and per
//! instance by `instance`; `config` holds the properties, `analytic` the reference's
//! metadata, `mirrored` a lock's one number kept in an atomic (for metrics), `chunk_io`
//! JSON <-> Fluent Bit chunks for the tools and tests.
#![forbid(unsafe_code)]

pub mod detect;
pub mod output;
pub mod read;
pub mod wire;

pub mod analytic;
pub mod chunk_io;
pub mod config;
pub mod filter;
pub mod instance;
pub mod mirrored;

// Each module under its short name too: `pssession_core::shapes` is `read::shapes`.
pub use detect::{pwsh, reassembly, verdict};
pub use output::{aggregate, enrich};
pub use read::{linux, script_block, shapes, timefmt, xml_event};
pub use wire::{chunk, msgpack};
