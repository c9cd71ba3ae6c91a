//! The wire: msgpack as Fluent Bit writes it, and chunks of records.
pub mod chunk;
pub mod msgpack;
