//! The plugin linked into a fuzz binary, hosted by the emulator (the binary exports the
//! host functions with `export_host_symbols!()`), and the clean-up after each input.
#![allow(dead_code)]

use flb_filter_pssession::ffi::filter_pssession_plugin;
use pssession_host_emulator::{self as host_emulator, headers, Emitted, Plugin};
use std::ptr::addr_of;
use std::sync::OnceLock;

/// The registration linked into this binary, checked as Fluent Bit's loader checks it.
pub fn plugin() -> &'static Plugin {
    static P: OnceLock<Plugin> = OnceLock::new();
    P.get_or_init(|| {
        let reg = addr_of!(filter_pssession_plugin) as *const headers::flb_filter_plugin;
        // SAFETY: the registration is a static of the plugin linked into this binary, laid
        // out by the same headers the emulator's copy of them describes.
        unsafe { Plugin::linked(reg, "pssession") }.expect("registration accepted")
    })
}

/// Ends an input's run: what the emulator recorded for it (records emitted and lost, log
/// lines) leaves the process, so a run frees what it allocates and LeakSanitizer's
/// per-run check stays quiet and cheap. Returns the emitted and the lost records.
pub fn end_run() -> (Vec<Emitted>, Vec<Emitted>) {
    host_emulator::clear_logs();
    host_emulator::take_all_emitted()
}
