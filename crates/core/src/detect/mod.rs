//! Detecting: the analytic's verdict on an event view, the PowerShell reader of mode
//! extended, and script blocks put back together.
pub mod constant;
pub mod pwsh;
pub mod reassembly;
pub mod verdict;
