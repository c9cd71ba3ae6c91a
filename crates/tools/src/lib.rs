//! pssession-tools: the command-line tools around the plugin (`pssession-replay`,
//! `pssession-eval`), which load the built `.so` through the host emulator.

pub mod replay;
