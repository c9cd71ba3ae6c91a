//! Output: the enrichment written into flagged records, and the aggregate's rows.
pub mod aggregate;
pub mod enrich;
