//! Detecting: the analytic's verdict on an event view, the PowerShell reader of mode
//! extended (its constant evaluator and its control flow), and script blocks put back
//! together.
pub mod constant;
pub mod flow;
pub mod pwsh;
pub mod reassembly;
pub mod verdict;
