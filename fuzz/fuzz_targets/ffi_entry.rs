//! The real C entry point: arbitrary bytes as a chunk through `cb_filter` of the
//! `filter_pssession_plugin` registration, called in-process with the host functions of
//! the emulator exported from this binary (`--export-dynamic`, see build.rs), exactly as
//! Fluent Bit calls it. Two instances: the defaults (aggregate on; no chunk I/O context
//! here, so rows fall back to being appended to chunks) and `reassemble on`,
//! `schema splunk`, `aggregate off`.
//!
//! Checks: the return code is NOTOUCH with no buffer, or MODIFIED with a malloc'd buffer
//! that holds every input record in order (unflagged ones byte for byte, flagged ones
//! keeping their header and every original key and value), followed by the undecodable
//! tail of the input as it was; for the default instance, the buffer starts with exactly
//! what the pure detector makes of the chunk.
#![no_main]

mod common;

pssession_host_emulator::export_host_symbols!();

use flb_filter_pssession::ffi::{
    filter_pssession_plugin, flb_config, flb_filter_instance, flb_input_instance, FLB_FILTER_LOGS,
    FLB_FILTER_MODIFIED, FLB_FILTER_NOTOUCH, FLB_LOG_ERROR,
};
use libfuzzer_sys::fuzz_target;
use pssession_core::config::Config;
use pssession_core::filter::{Detector, Outcome};
use pssession_host_emulator::headers::{flb_kv, mk_list};
use pssession_host_emulator::EmuFilterInstance;
use std::ffi::{c_char, c_void};
use std::ptr::{addr_of_mut, null_mut};
use std::sync::OnceLock;

/// `flb_sds_t`: a 16-byte header (len, alloc) before the NUL-terminated bytes. Leaked: the
/// instances live as long as the process.
fn sds(s: &str) -> *mut c_char {
    let mut v = Vec::with_capacity(17 + s.len());
    v.extend_from_slice(&(s.len() as u64).to_ne_bytes());
    v.extend_from_slice(&(s.len() as u64).to_ne_bytes());
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    let p = Box::leak(v.into_boxed_slice()).as_mut_ptr();
    // SAFETY: within the leaked buffer.
    unsafe { p.add(16) as *mut c_char }
}

struct Started {
    ins: usize,
    ctx: usize,
    config: usize,
}

/// Builds a filter instance laid out as Fluent Bit's, with these properties, and runs
/// `cb_init` on it.
fn start(id: i32, props: &[(&str, &str)]) -> Started {
    let plugin = addr_of_mut!(filter_pssession_plugin);
    let mut name = [0 as c_char; 32];
    for (i, b) in format!("pssession.{id}").bytes().enumerate() {
        name[i] = b as c_char;
    }
    let ins = Box::leak(Box::new(EmuFilterInstance {
        event_type: FLB_FILTER_LOGS,
        id,
        log_level: FLB_LOG_ERROR,
        log_suppress_interval: 0,
        name,
        alias: null_mut(),
        match_: c"*".as_ptr() as *mut c_char,
        match_regex: null_mut(),
        parent_processor: null_mut(),
        context: null_mut(),
        data: null_mut(),
        p: plugin as *mut pssession_host_emulator::headers::flb_filter_plugin,
        properties: mk_list {
            prev: null_mut(),
            next: null_mut(),
        },
        config_map: null_mut(),
        _head: mk_list {
            prev: null_mut(),
            next: null_mut(),
        },
        cmt: null_mut(),
        cmt_records: null_mut(),
        cmt_bytes: null_mut(),
        cmt_add_records: null_mut(),
        cmt_drop_records: null_mut(),
        cmt_drop_bytes: null_mut(),
        metrics: null_mut(),
        notification_channel: -1,
        config: null_mut(),
    }));
    let head: *mut mk_list = &mut ins.properties;
    ins.properties.prev = head;
    ins.properties.next = head;
    for (k, v) in props {
        let kv = Box::leak(Box::new(flb_kv {
            key: sds(k),
            val: sds(v),
            _head: mk_list {
                prev: null_mut(),
                next: null_mut(),
            },
        }));
        // SAFETY: mk_list_add on the ring built above.
        unsafe {
            let node: *mut mk_list = &mut kv._head;
            let last = (*head).prev;
            (*node).prev = last;
            (*node).next = head;
            (*last).next = node;
            (*head).prev = node;
        }
    }
    // An opaque flb_config with no chunk I/O context in it.
    let config = Box::leak(Box::new([0u64; 512])) as *mut [u64; 512] as *mut flb_config;
    let ins_ptr = ins as *mut EmuFilterInstance as *mut flb_filter_instance;
    // SAFETY: reading the registration's callback pointer.
    let cb_init = unsafe { (*plugin).cb_init }.expect("cb_init");
    let ret = cb_init(ins_ptr, config, null_mut());
    assert_eq!(ret, 0, "cb_init failed for {props:?}");
    assert!(!ins.context.is_null(), "cb_init set no context");
    Started {
        ins: ins_ptr as usize,
        ctx: ins.context as usize,
        config: config as usize,
    }
}

struct Fixture {
    default: Started,
    reassembling: Started,
    detector: Detector,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture {
        default: start(0, &[]),
        reassembling: start(
            1,
            &[
                ("reassemble", "on"),
                ("schema", "splunk"),
                ("aggregate", "off"),
                ("exclude_user", "^nobody$"),
                ("exclude_user", "(?i)svc_"),
            ],
        ),
        detector: Detector::new(Config::default()),
    })
}

/// Calls cb_filter as flb_filter_do does; the returned buffer is copied, then free()d.
fn call(s: &Started, data: &[u8]) -> Option<Vec<u8>> {
    static SOURCE: u64 = 0;
    let mut out_buf: *mut c_void = null_mut();
    let mut out_size = 0usize;
    // SAFETY: reading the registration's callback pointer.
    let cb = unsafe { (*addr_of_mut!(filter_pssession_plugin)).cb_filter }.expect("cb_filter");
    let code = cb(
        data.as_ptr() as *const c_void,
        data.len(),
        c"fuzz.tag".as_ptr(),
        8,
        &mut out_buf,
        &mut out_size,
        s.ins as *mut flb_filter_instance,
        &SOURCE as *const u64 as *mut flb_input_instance,
        s.ctx as *mut c_void,
        s.config as *mut flb_config,
    );
    match code {
        FLB_FILTER_NOTOUCH => {
            assert!(
                out_buf.is_null(),
                "NOTOUCH with a buffer: Fluent Bit would leak it"
            );
            None
        }
        FLB_FILTER_MODIFIED => {
            assert!(!out_buf.is_null(), "MODIFIED without a buffer");
            // SAFETY: the plugin hands over out_size bytes at out_buf, malloc'd.
            let out =
                unsafe { std::slice::from_raw_parts(out_buf as *const u8, out_size) }.to_vec();
            // SAFETY: Fluent Bit frees it with free(); so do we.
            unsafe { libc::free(out_buf) };
            Some(out)
        }
        other => panic!("cb_filter returned {other}"),
    }
}

/// Every input record is in `out`, in order: unflagged byte for byte, flagged ones with
/// their header and every original entry; then the input's undecodable tail.
fn check_structure(input: &[u8], out: &[u8], what: &str) {
    let (ins, in_end) = pssession_oracle::values(input);
    let (outs, _) = pssession_oracle::values(out);
    assert!(outs.len() >= ins.len(), "{what}: records lost");
    for (a, b) in ins.iter().zip(&outs) {
        if a.raw != b.raw {
            assert_eq!(a.header(), b.header(), "{what}: header changed");
            assert!(
                matches!((a.body(), b.body()), (Some(x), Some(y)) if pssession_oracle::keeps_original(x, y)),
                "{what}: original entry lost"
            );
        }
    }
    if in_end < input.len() {
        let after = ins.last().map_or(0, |_| {
            let last = &outs[ins.len() - 1];
            last.offset + last.raw.len()
        });
        assert!(
            out[after..].starts_with(&input[in_end..]),
            "{what}: undecodable tail not kept"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let want = f.detector.filter_chunk(data);
    match call(&f.default, data) {
        None => assert_eq!(
            want.outcome,
            Outcome::NoTouch,
            "flagged by the core, not the ABI"
        ),
        Some(out) => {
            let expected: &[u8] = match &want.outcome {
                Outcome::NoTouch => data,
                Outcome::Modified(b) => b,
            };
            // Rows appended when a flush is due come after the chunk.
            assert!(
                out.starts_with(expected),
                "ABI output differs from the core's"
            );
            check_structure(data, &out, "default");
        }
    }
    if let Some(out) = call(&f.reassembling, data) {
        check_structure(data, &out, "reassemble");
    }
});
