//! The Fluent Bit ABI of the plugin, and the only `unsafe` code of the plugin: the exported
//! `filter_pssession_plugin` registration struct, its callbacks, the host functions it calls
//! (looked up with `dlsym` in the running Fluent Bit), and the panic boundary that keeps
//! every Rust panic on this side of the C boundary.
//!
//! Layouts follow Fluent Bit's own headers (`flb_filter.h`, `flb_config_map.h`,
//! `flb_kv.h`, `mk_list.h`) of 3.2 to 5.1; see the README for how each was checked.
#![allow(non_camel_case_types)]

mod doors;
pub mod layout;
mod metrics;
mod state_file;

use doors::{Door, EmitterHost};
use layout::{ConfigFields, Placement};
use pssession_core::aggregate::{self, Row};
use pssession_core::config::{self, Config, PropertyType, PROPERTIES};
use pssession_core::filter::{LateFlag, Outcome};
use pssession_core::instance::{FilterInstance, RowDoor, RowSink};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// `FLB_FILTER_MODIFIED`: the chunk was rewritten into `out_buf`.
pub const FLB_FILTER_MODIFIED: c_int = 1;
/// `FLB_FILTER_NOTOUCH`: the chunk goes on unchanged.
pub const FLB_FILTER_NOTOUCH: c_int = 2;
/// `FLB_FILTER_LOGS`: the plugin filters log events.
pub const FLB_FILTER_LOGS: c_int = 1;

/// Log levels of `flb_log.h`.
pub const FLB_LOG_ERROR: c_int = 1;
pub const FLB_LOG_WARN: c_int = 2;
pub const FLB_LOG_INFO: c_int = 3;
pub const FLB_LOG_DEBUG: c_int = 4;

/// Config map types of `flb_config_map.h`.
pub const FLB_CONFIG_MAP_STR: c_int = 0;
pub const FLB_CONFIG_MAP_INT: c_int = 2;
/// Config map flag: the property may be given several times.
pub const FLB_CONFIG_MAP_MULT: c_int = 1;

/// The name Fluent Bit knows the filter by (`filter_<name>_plugin`, `flb-filter_<name>.so`).
pub const PLUGIN_NAME: &CStr = c"pssession";
const PLUGIN_DESCRIPTION: &CStr =
    c"Flag interactive remote PowerShell sessions (Enter-PSSession, T1021.006) in 4104 events";

/// `struct mk_list` (monkey): a node of an intrusive doubly linked list.
#[repr(C)]
pub struct mk_list {
    pub prev: *mut mk_list,
    pub next: *mut mk_list,
}

/// `struct flb_kv`: one property as Fluent Bit stores it (`key`, `val` are `flb_sds_t`).
#[repr(C)]
pub struct flb_kv {
    pub key: *mut c_char,
    pub val: *mut c_char,
    pub _head: mk_list,
}

/// Opaque `struct flb_filter_instance`; see [`InstanceHead`] for the part the plugin reads.
pub struct flb_filter_instance {
    _opaque: [u8; 0],
}

/// Opaque `struct flb_config`.
pub struct flb_config {
    _opaque: [u8; 0],
}

/// Opaque `struct flb_input_instance`.
pub struct flb_input_instance {
    _opaque: [u8; 0],
}

/// Opaque `struct flb_config_map` (its layout depends on the Fluent Bit version; see
/// [`ConfigMapEntry`]).
pub struct flb_config_map {
    _opaque: [u8; 0],
}

/// `struct flb_filter_plugin` as in Fluent Bit 3.2 to 5.1 (`include/fluent-bit/flb_filter.h`).
/// Fluent Bit 2.2 to 3.1 lack `cb_notification`; they copy a prefix of this struct, which
/// leaves them a NULL-initialised `_head` they overwrite anyway.
#[repr(C)]
pub struct flb_filter_plugin {
    pub event_type: c_int,
    pub flags: c_int,
    pub name: *const c_char,
    pub description: *const c_char,
    pub config_map: *mut flb_config_map,
    pub cb_pre_run:
        Option<extern "C" fn(*mut flb_filter_instance, *mut flb_config, *mut c_void) -> c_int>,
    pub cb_init:
        Option<extern "C" fn(*mut flb_filter_instance, *mut flb_config, *mut c_void) -> c_int>,
    #[allow(clippy::type_complexity)]
    pub cb_filter: Option<
        extern "C" fn(
            *const c_void,
            usize,
            *const c_char,
            c_int,
            *mut *mut c_void,
            *mut usize,
            *mut flb_filter_instance,
            *mut flb_input_instance,
            *mut c_void,
            *mut flb_config,
        ) -> c_int,
    >,
    pub cb_exit: Option<extern "C" fn(*mut c_void, *mut flb_config) -> c_int>,
    pub cb_notification:
        Option<extern "C" fn(*mut flb_filter_instance, *mut flb_config, *mut c_void) -> c_int>,
    pub _head: mk_list,
}

/// The registration Fluent Bit looks up by name and copies when it loads the plugin.
/// `config_map` is set when the library is loaded (see [`select_config_map`]), before
/// Fluent Bit reads it.
#[no_mangle]
pub static mut filter_pssession_plugin: flb_filter_plugin = flb_filter_plugin {
    event_type: FLB_FILTER_LOGS,
    flags: 0,
    name: PLUGIN_NAME.as_ptr(),
    description: PLUGIN_DESCRIPTION.as_ptr(),
    config_map: std::ptr::null_mut(),
    cb_pre_run: None,
    cb_init: Some(cb_init),
    cb_filter: Some(cb_filter),
    cb_exit: Some(cb_exit),
    cb_notification: None,
    _head: mk_list {
        prev: std::ptr::null_mut(),
        next: std::ptr::null_mut(),
    },
};

/// The first fields of `struct flb_filter_instance`, identical in every version since 2.0.
#[repr(C)]
pub struct InstanceHead {
    pub event_type: c_int,
    pub id: c_int,
    pub log_level: c_int,
    pub log_suppress_interval: c_int,
    pub name: [c_char; 32],
    pub alias: *mut c_char,
    pub match_: *mut c_char,
}

/// One entry of a plugin's config map, `struct flb_config_map`. `VALUE` is the size of the
/// embedded `struct flb_config_map_val`: 32 bytes up to Fluent Bit 5.0.2, 40 from 5.0.3 on
/// (a `raw` field was added), so the array stride differs and is chosen at load time.
#[repr(C)]
pub struct ConfigMapEntry<const VALUE: usize> {
    pub type_: c_int,
    pub name: *const c_char,
    pub def_value: *const c_char,
    pub flags: c_int,
    pub set_property: c_int,
    pub offset: usize,
    pub desc: *const c_char,
    pub value: [u8; VALUE],
    pub _head: mk_list,
}

/// `flb_config_map_val` size before and after Fluent Bit 5.0.3.
pub const CONFIG_MAP_VALUE_LEGACY: usize = 32;
pub const CONFIG_MAP_VALUE_CURRENT: usize = 40;
/// Host symbols that exist exactly in the versions with the 40-byte `flb_config_map_val`.
pub const CURRENT_LAYOUT_MARKERS: [&CStr; 2] = [
    c"flb_config_map_get_raw",
    c"flb_config_map_translate_dynamic",
];

fn host_symbol(name: &CStr) -> *mut c_void {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name has no preconditions.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}

fn build_config_map<const VALUE: usize>() -> *mut flb_config_map {
    let mut entries: Vec<ConfigMapEntry<VALUE>> = Vec::with_capacity(PROPERTIES.len() + 1);
    let leak = |s: &str| -> *const c_char {
        CString::new(s)
            .map(|c| c.into_raw() as *const c_char)
            .unwrap_or(std::ptr::null())
    };
    let empty = || mk_list {
        prev: std::ptr::null_mut(),
        next: std::ptr::null_mut(),
    };
    for p in PROPERTIES {
        entries.push(ConfigMapEntry {
            type_: match p.ty {
                PropertyType::Str => FLB_CONFIG_MAP_STR,
                PropertyType::Int => FLB_CONFIG_MAP_INT,
            },
            name: leak(p.name),
            def_value: p.default.map(leak).unwrap_or(std::ptr::null()),
            flags: if p.multiple { FLB_CONFIG_MAP_MULT } else { 0 },
            set_property: 0,
            offset: 0,
            desc: leak(p.description),
            value: [0; VALUE],
            _head: empty(),
        });
    }
    entries.push(ConfigMapEntry {
        type_: 0,
        name: std::ptr::null(),
        def_value: std::ptr::null(),
        flags: 0,
        set_property: 0,
        offset: 0,
        desc: std::ptr::null(),
        value: [0; VALUE],
        _head: empty(),
    });
    Box::leak(entries.into_boxed_slice()).as_mut_ptr() as *mut flb_config_map
}

/// Runs when the library is loaded (before Fluent Bit looks up and copies the
/// registration): builds the config map in the layout of the running Fluent Bit.
extern "C" fn select_config_map() {
    let _ = catch_unwind(|| {
        let current = CURRENT_LAYOUT_MARKERS
            .iter()
            .any(|s| !host_symbol(s).is_null());
        let map = if current {
            build_config_map::<CONFIG_MAP_VALUE_CURRENT>()
        } else {
            build_config_map::<CONFIG_MAP_VALUE_LEGACY>()
        };
        // SAFETY: runs once, in the loader's constructor pass, before any other code of
        // this library and before the host reads the registration.
        unsafe {
            (*std::ptr::addr_of_mut!(filter_pssession_plugin)).config_map = map;
        }
    });
}

#[used]
#[link_section = ".init_array"]
static SELECT_CONFIG_MAP: extern "C" fn() = select_config_map;

type GetPropertyFn = unsafe extern "C" fn(*const c_char, *mut flb_filter_instance) -> *const c_char;
type SetContextFn = unsafe extern "C" fn(*mut flb_filter_instance, *mut c_void);
type FilterNameFn = unsafe extern "C" fn(*mut flb_filter_instance) -> *const c_char;
type LogPrintFn = unsafe extern "C" fn(c_int, *const c_char, c_int, *const c_char, ...);

/// The host functions the plugin calls, resolved in the running Fluent Bit.
#[derive(Clone, Copy)]
struct Host {
    get_property: GetPropertyFn,
    set_context: SetContextFn,
    filter_name: FilterNameFn,
    log_print: LogPrintFn,
}

impl Host {
    fn resolve() -> Result<Host, &'static str> {
        Ok(Host {
            get_property: resolve(c"flb_filter_get_property")?,
            set_context: resolve(c"flb_filter_set_context")?,
            filter_name: resolve(c"flb_filter_name")?,
            log_print: resolve(c"flb_log_print")?,
        })
    }
}

/// The host function `name` as the function pointer type `F`, or Err(its name) when this
/// Fluent Bit does not export it.
///
/// The caller names `F` as the function's prototype in Fluent Bit's headers; that
/// agreement is what makes calling it sound.
fn resolve<F: Copy>(name: &'static CStr) -> Result<F, &'static str> {
    const { assert!(std::mem::size_of::<F>() == std::mem::size_of::<*mut c_void>()) };
    let p = host_symbol(name);
    if p.is_null() {
        return Err(name.to_str().unwrap_or("?"));
    }
    // SAFETY: F is a function pointer type of pointer size (asserted above) and `p` is the
    // address of the host function of that prototype.
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) })
}

/// Writes through the host's logger as `[filter:pssession:<instance>] message`, if the
/// instance's log level lets it through.
fn log(host: &Host, ins: *mut flb_filter_instance, level: c_int, msg: &str) {
    if ins.is_null() {
        return;
    }
    // SAFETY: `ins` is the live instance Fluent Bit passed to this callback; the head of
    // the struct is stable across versions.
    let (set_level, name) = unsafe {
        let head = &*(ins as *const InstanceHead);
        let name = (host.filter_name)(ins);
        let name = if name.is_null() {
            "?".into()
        } else {
            CStr::from_ptr(name).to_string_lossy()
        };
        (head.log_level, name)
    };
    if level > set_level {
        return;
    }
    // Fluent Bit's log line holds ~4 KB; keep well inside it.
    let mut text = format!("[filter:pssession:{name}] {msg}");
    if text.len() > 3000 {
        let mut cut = 3000;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    let text = CString::new(text.replace('\0', "\\0")).unwrap_or_default();
    // SAFETY: flb_log_print(type, file, line, fmt, ...) with a "%s" format and one C string.
    unsafe {
        (host.log_print)(level, std::ptr::null(), 0, c"%s".as_ptr(), text.as_ptr());
    }
}

/// Every value given for a property, in order. Fluent Bit's `flb_filter_get_property`
/// returns only the first; for repeatable properties the instance's property list is read
/// directly, once its position in the instance is confirmed (see [`find_property_list`]).
fn property_values(host: &Host, ins: *mut flb_filter_instance, name: &str) -> Vec<String> {
    let Ok(key) = CString::new(name) else {
        return Vec::new();
    };
    // SAFETY: host function with a NUL-terminated key and the live instance.
    let first = unsafe { (host.get_property)(key.as_ptr(), ins) };
    if first.is_null() {
        return Vec::new();
    }
    let multiple = config::find_property(name).is_some_and(|p| p.multiple);
    if multiple {
        if let Some(list) = find_property_list(ins, first, &key) {
            return list;
        }
    }
    // SAFETY: Fluent Bit returned a valid C string owned by the instance.
    vec![unsafe { CStr::from_ptr(first) }
        .to_string_lossy()
        .into_owned()]
}

/// Walks the instance's `properties` list for every value of `key`, in the instance layout
/// whose `p` is this plugin. Accepted only if the list is a well-formed ring and its first
/// value for `key` is the very pointer `flb_filter_get_property` returned.
fn find_property_list(
    ins: *mut flb_filter_instance,
    first: *const c_char,
    key: &CStr,
) -> Option<Vec<String>> {
    const MAX_NODES: usize = 100_000;
    let offsets = layout::filter_instance_offsets(ins)?;
    // SAFETY: `properties` of the instance's verified layout, an `mk_list` head inside it.
    let head = unsafe { (ins as *mut u8).add(offsets.properties) } as *mut mk_list;
    let mut values = Vec::new();
    let mut first_seen: Option<*const c_char> = None;
    let (mut prev, mut node) = (head, next_node(head)?);
    for _ in 0..MAX_NODES {
        if prev_node(node)? != prev {
            return None;
        }
        if node == head {
            return (first_seen == Some(first)).then_some(values);
        }
        if let Some((k, v)) = kv_of(node) {
            if k.to_bytes().eq_ignore_ascii_case(key.to_bytes()) {
                first_seen.get_or_insert(v.as_ptr());
                values.push(v.to_string_lossy().into_owned());
            }
        }
        (prev, node) = (node, next_node(node)?);
    }
    None
}

/// `node->next`, when not NULL.
fn next_node(node: *mut mk_list) -> Option<*mut mk_list> {
    // SAFETY: `node` is the list head or a node reached from it through checked links.
    let next = unsafe { (*node).next };
    (!next.is_null()).then_some(next)
}

/// `node->prev`, when not NULL.
fn prev_node(node: *mut mk_list) -> Option<*mut mk_list> {
    // SAFETY: as for next_node.
    let prev = unsafe { (*node).prev };
    (!prev.is_null()).then_some(prev)
}

/// The key and value of the `flb_kv` holding `node` (its `_head`), when both are set.
fn kv_of<'a>(node: *mut mk_list) -> Option<(&'a CStr, &'a CStr)> {
    // SAFETY: a node of the properties list is the `_head` of a `struct flb_kv`, whose
    // key and value are NUL-terminated sds strings that live as long as the instance.
    unsafe {
        let kv = (node as *mut u8).sub(std::mem::offset_of!(flb_kv, _head)) as *const flb_kv;
        let (k, v) = ((*kv).key, (*kv).val);
        (!k.is_null() && !v.is_null()).then(|| (CStr::from_ptr(k), CStr::from_ptr(v)))
    }
}

/// Per-instance state handed to Fluent Bit as the filter context. Read-only after init
/// except for atomics and the core's mutexes, so the callback may run on several threads
/// at once (and the timer on its scheduler's thread).
struct Context {
    host: Host,
    ins: *mut flb_filter_instance,
    config: *mut flb_config,
    fields: ConfigFields,
    filter: FilterInstance,
    door: Door,
    /// The interval timer and the short tick, while they run.
    timers: std::sync::Mutex<Vec<doors::Timer>>,
    /// Alert copies and late flags waiting for the timer's thread.
    copies: std::sync::Mutex<CopyQueue>,
    /// The thread `cb_init` ran on: for a filter, the engine's.
    engine_thread: libc::pthread_t,
    internal_errors: AtomicU64,
    /// Alert copies Fluent Bit accepted (under `alert_tag`).
    alerts_delivered: AtomicU64,
    /// The series on Fluent Bit's metrics endpoint, where this Fluent Bit allows them.
    metrics: Option<metrics::Metrics>,
    /// Unix second of the last rate-limited error line.
    last_error_log: AtomicU64,
    errors_since_log: AtomicU64,
    last_early_log: AtomicU64,
    last_refused_log: AtomicU64,
    /// Script blocks released by a bound, as last logged.
    bound_releases_logged: AtomicU64,
}

// SAFETY: the raw pointers are Fluent Bit's instance, config and input handles, only used
// through Fluent Bit functions that Fluent Bit itself calls from filter callbacks on any
// thread; everything else is immutable, atomic or behind a mutex.
unsafe impl Sync for Context {}
// SAFETY: as above; Fluent Bit frees the context (cb_exit) on another thread than the one
// that made it (cb_init), which owns nothing thread-bound.
unsafe impl Send for Context {}

/// Records made in the filter callback (alert copies, flagged script blocks) waiting to
/// be handed to Fluent Bit from the timer, oldest first, with what became of the others.
#[derive(Default)]
struct CopyQueue {
    waiting: std::collections::VecDeque<(String, Vec<u8>)>,
    bytes: usize,
    delivered: u64,
    /// Refused because the queue was full (the emitter refusing for a long time).
    dropped: u64,
}

/// Most bytes of records waiting in a [`CopyQueue`].
const COPY_QUEUE_MAX_BYTES: usize = 64 << 20;

/// At most one rate-limited line per this many seconds and instance.
const LOG_INTERVAL_SECS: u64 = 10;

/// The longest gap between timer ticks: how soon rows leave once the engine starts to
/// stop (it waits at least a second before it checks whether anything is left to flush).
const TICK_MS: u64 = 250;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// True at most once per interval (per `last`), counting calls in between in `skipped`.
fn rate_limited(last: &AtomicU64, skipped: Option<&AtomicU64>) -> Option<u64> {
    let now = unix_now() as u64;
    let prev = last.load(Ordering::Relaxed);
    let due = prev == 0 || now >= prev + LOG_INTERVAL_SECS;
    if due
        && last
            .compare_exchange(prev, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        Some(skipped.map_or(0, |s| s.swap(0, Ordering::Relaxed)))
    } else {
        if let Some(s) = skipped {
            s.fetch_add(1, Ordering::Relaxed);
        }
        None
    }
}

impl Context {
    fn log(&self, level: c_int, msg: &str) {
        log(&self.host, self.ins, level, msg);
    }

    /// Logs an internal error at most once per interval, counting the ones it swallows.
    fn error_rate_limited(&self, msg: &str) {
        self.internal_errors.fetch_add(1, Ordering::Relaxed);
        if let Some(skipped) = rate_limited(&self.last_error_log, Some(&self.errors_since_log)) {
            let tail = if skipped > 0 {
                format!(" ({skipped} similar errors not logged)")
            } else {
                String::new()
            };
            self.log(FLB_LOG_ERROR, &format!("{msg}{tail}"));
        }
    }

    fn shutting_down(&self) -> bool {
        self.fields.is_shutting_down(self.config)
    }

    /// Whether records handed to Fluent Bit now will be flushed: always while it runs;
    /// once it stops, only where its grace period waits for new chunks (4.0.3 and later).
    /// Otherwise they wait for the exit (the state file, or the log).
    fn may_deliver(&self) -> bool {
        self.fields.grace_flushes_new_chunks || !self.shutting_down()
    }

    /// Whether this is the engine's thread, where the emitter input lives.
    fn on_engine_thread(&self) -> bool {
        // SAFETY: pthread_self / pthread_equal have no preconditions.
        unsafe { libc::pthread_equal(self.engine_thread, libc::pthread_self()) != 0 }
    }

    /// Delivers rows through the door, oldest first; the first one refused and every row
    /// after it wait for the next tick (or, at exit, the state file or the log).
    fn deliver_rows(&self, rows: Vec<Row>) {
        let Some(tag) = self.filter.config().aggregate.as_ref().map(|a| &a.tag) else {
            return;
        };
        let now = unix_now();
        let taken = rows
            .iter()
            .take_while(|r| self.door.deliver(tag, &self.filter.row_record(r, now)))
            .count();
        let mut rows = rows;
        let waiting = rows.split_off(taken);
        self.filter.delivered(self.door.row_door(), &rows);
        if !waiting.is_empty() && rate_limited(&self.last_refused_log, None).is_some() {
            self.log(
                FLB_LOG_DEBUG,
                &format!(
                    "{} aggregate rows wait: the {} refused them for now (paused or full)",
                    waiting.len(),
                    self.door.name()
                ),
            );
        }
        self.filter.requeue(waiting);
    }

    /// Sends records made in the filter callback (`source` is the chunk's input) or in
    /// the timer (`source` None): at once where the door allows, else through the queue.
    fn send_copy(&self, tag: &str, record: &[u8], in_filter: bool) {
        let here = !in_filter || self.door.takes_from_filter() || self.on_engine_thread();
        if here && self.may_deliver() && self.door.deliver(tag, record) {
            self.lock_copies().delivered += 1;
            self.count_alert(tag);
            return;
        }
        let mut q = self.lock_copies();
        if q.bytes + record.len() > COPY_QUEUE_MAX_BYTES {
            q.dropped += 1;
            drop(q);
            self.error_rate_limited(
                "an alert copy was dropped: Fluent Bit has refused records for a long time",
            );
            return;
        }
        q.bytes += record.len();
        q.waiting.push_back((tag.to_string(), record.to_vec()));
    }

    /// Counts a record Fluent Bit accepted when it went out under `alert_tag`.
    fn count_alert(&self, tag: &str) {
        if self.filter.config().alert_tag.as_deref() == Some(tag) {
            self.alerts_delivered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sets the series on Fluent Bit's metrics endpoint from the counters.
    fn publish_metrics(&self) {
        if let Some(m) = &self.metrics {
            m.publish(|w| self.metric_value(w));
        }
    }

    /// The value of one series, from the counters (each series reads one monotonic count,
    /// or a gauge).
    fn metric_value(&self, w: metrics::What) -> u64 {
        use metrics::{RowOutcome, What};
        let c = &self.filter.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let rows = |d: RowDoor| c.door(d).0;
        match w {
            What::Records => load(&c.records),
            What::Events => load(&c.candidates),
            What::Flagged(None) => load(&c.flagged),
            What::Flagged(Some(t)) => load(&c.flagged_by_transport[t.index()]),
            What::Excluded => load(&c.excluded),
            What::AlertsEmitted => load(&self.alerts_delivered),
            What::Rows(RowOutcome::Delivered) => {
                rows(RowDoor::Emitter) + rows(RowDoor::Reinjected) + rows(RowDoor::Appended)
            }
            What::Rows(RowOutcome::Saved) => rows(RowDoor::StateFile),
            What::Rows(RowOutcome::Logged) => rows(RowDoor::Log),
            What::Rows(RowOutcome::Early) => load(&c.rows_early),
            What::AggregateKeys => self.filter.aggregate_keys() as u64,
            What::OpenBlocks => self.filter.detector.open_blocks() as u64,
            What::InternalErrors => load(&self.internal_errors),
            What::ChunksModified => load(&c.chunks_modified),
        }
    }

    fn lock_copies(&self) -> std::sync::MutexGuard<'_, CopyQueue> {
        self.copies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands waiting copies to Fluent Bit, oldest first, until one is refused.
    fn deliver_copies(&self) {
        if !self.may_deliver() {
            return;
        }
        let mut q = self.lock_copies();
        while let Some((tag, rec)) = q.waiting.front() {
            if !self.door.deliver(tag, rec) {
                break;
            }
            self.count_alert(tag);
            q.bytes -= rec.len();
            q.delivered += 1;
            q.waiting.pop_front();
        }
    }

    /// Emits script blocks flagged as they stood, under the tag their last part came with
    /// (and a copy under `alert_tag`).
    fn emit_late(&self, late: &[LateFlag], in_filter: bool) {
        for l in late {
            self.send_copy(&l.tag, &l.record, in_filter);
            if let Some(alert) = &self.filter.config().alert_tag {
                self.send_copy(alert, &l.record, in_filter);
            }
        }
    }

    fn log_row(&self, level: c_int, why: &str, r: &Row) {
        let json = aggregate::rows_to_state(std::slice::from_ref(r));
        self.log(level, &format!("{why}: {}", json.trim_end()));
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

extern "C" fn cb_init(
    ins: *mut flb_filter_instance,
    config: *mut flb_config,
    _data: *mut c_void,
) -> c_int {
    let result = catch_unwind(AssertUnwindSafe(|| init(ins, config)));
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(())) => -1,
        Err(p) => {
            eprintln!(
                "[filter:pssession] initialisation failed: {}",
                panic_text(&*p)
            );
            -1
        }
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut c_char, buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    if ok && end > 0 {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "unknown".into()
    }
}

fn instance_name(host: &Host, ins: *mut flb_filter_instance) -> String {
    // SAFETY: host function on the live instance; returns a C string it owns.
    unsafe {
        let n = (host.filter_name)(ins);
        if n.is_null() {
            "pssession".into()
        } else {
            CStr::from_ptr(n).to_string_lossy().into_owned()
        }
    }
}

/// Where this instance runs, from the verified layouts (a processor whose layout is not
/// known is reported as such).
fn find_placement(ins: *mut flb_filter_instance, config: *mut flb_config) -> Placement {
    match layout::filter_instance_offsets(ins) {
        Some(fi) => layout::placement(ins, config, fi, layout::processor_offsets()),
        None => Placement::UnknownProcessor("the filter instance layout is not known"),
    }
}

fn placement_name(p: &Placement) -> &'static str {
    match p {
        Placement::Filter => "filter",
        Placement::InputProcessor { .. } => "input processor",
        Placement::OutputProcessor { .. } => "output processor",
        Placement::UnknownProcessor(_) => "processor of unknown parent",
    }
}

/// What start-up works with: the host's functions, the instance and config Fluent Bit
/// passed to `cb_init`, and the config fields this release lets the plugin read.
struct Site<'a> {
    host: &'a Host,
    ins: *mut flb_filter_instance,
    config: *mut flb_config,
    fields: &'a ConfigFields,
}

/// Why a placement gives no door.
enum NoDoor {
    /// A property is wrong: start-up stops with this line.
    StartUp(String),
    /// None can open here (why): rows are appended to chunks, and `alert_tag` is refused.
    Unavailable(String),
}

/// The door this placement gives, or why there is none.
fn open_door(site: &Site<'_>, placement: &Placement, cfg: &Config) -> Result<Door, NoDoor> {
    match *placement {
        Placement::Filter => {
            let eh = EmitterHost::resolve().map_err(|m| {
                NoDoor::Unavailable(format!("this Fluent Bit does not export '{m}'"))
            })?;
            let name =
                cfg.emitter.name.clone().unwrap_or_else(|| {
                    format!("emitter_for_{}", instance_name(site.host, site.ins))
                });
            match doors::create_emitter(eh, site.config, site.fields, &name, cfg) {
                Ok(em) => Ok(Door::Emitter { host: eh, ins: em }),
                Err(doors::EmitterError::Property(line)) => Err(NoDoor::StartUp(line)),
                Err(doors::EmitterError::Unavailable(why)) => Err(NoDoor::Unavailable(why)),
            }
        }
        Placement::InputProcessor { input, stage } => {
            let append: doors::SkipStagesFn =
                resolve(c"flb_input_log_append_skip_processor_stages").map_err(|m| {
                    NoDoor::Unavailable(format!("this Fluent Bit does not export '{m}'"))
                })?;
            Ok(Door::Reinject {
                input: input as *mut flb_input_instance,
                stage,
                append,
            })
        }
        Placement::OutputProcessor { .. } => Err(NoDoor::Unavailable(
            "an output processor's records go only to its output".into(),
        )),
        Placement::UnknownProcessor(why) => Err(NoDoor::Unavailable(why.into())),
    }
}

/// The one start-up line for `alert_tag` where no door can carry a copy under another tag.
fn alert_tag_refusal(placement: &Placement, why: &str) -> String {
    let instead = match placement {
        Placement::OutputProcessor { .. } => {
            "put pssession in the pipeline's filters or in the processors of the input, or \
             route alerts with rewrite_tag on $event['kind'] there"
        }
        _ => "route alerts with rewrite_tag on $event['kind'] instead",
    };
    format!(
        "property 'alert_tag': a copy under another tag cannot be made as a {} ({why}); {instead}",
        placement_name(placement)
    )
}

fn init(ins: *mut flb_filter_instance, config: *mut flb_config) -> Result<(), ()> {
    let host = match Host::resolve() {
        Ok(h) => h,
        Err(missing) => {
            eprintln!(
                "[filter:pssession] this Fluent Bit does not export '{missing}'; cannot start"
            );
            return Err(());
        }
    };
    if ins.is_null() {
        return Err(());
    }
    let fail = |msg: &str| {
        log(&host, ins, FLB_LOG_ERROR, msg);
        Err(())
    };
    let cfg = match Config::from_properties(|name| property_values(&host, ins, name)) {
        Ok(c) => c,
        Err(e) => return fail(&e.to_string()),
    };
    let state_file = cfg.aggregate.as_ref().and_then(|a| a.state_file.clone());
    if let Some(path) = &state_file {
        if let Err(why) = state_file::check_location(path) {
            return fail(&format!("property 'aggregate_state_file': {why}"));
        }
    }
    let fields = ConfigFields::of_host();
    let placement = find_placement(ins, config);
    let site = Site {
        host: &host,
        ins,
        config,
        fields: &fields,
    };
    let door = match choose_door(&site, &placement, &cfg) {
        Ok(d) => d,
        Err(line) => return fail(&line),
    };
    warn_about_stops(&site, &cfg);
    start(host, ins, config, fields, placement, cfg, door)
}

/// The door for this placement; `Door::Chunk` (with a line saying why) where none opens,
/// or Err(the start-up error) where the configuration needs one that cannot open.
fn choose_door(site: &Site<'_>, placement: &Placement, cfg: &Config) -> Result<Door, String> {
    if cfg.aggregate.is_none() && cfg.alert_tag.is_none() {
        return Ok(Door::Chunk);
    }
    match open_door(site, placement, cfg) {
        Ok(d) => Ok(d),
        Err(NoDoor::StartUp(line)) => Err(line),
        Err(NoDoor::Unavailable(why)) if cfg.alert_tag.is_some() => {
            Err(alert_tag_refusal(placement, &why))
        }
        Err(NoDoor::Unavailable(why)) => {
            let level = match placement {
                Placement::OutputProcessor { .. } => FLB_LOG_INFO,
                _ => FLB_LOG_WARN,
            };
            let line = format!(
                "aggregate rows will be appended to the chunks this {} processes, under their \
                 tag, when a flush is due ({why})",
                placement_name(placement)
            );
            log(site.host, site.ins, level, &line);
            Ok(Door::Chunk)
        }
    }
}

/// Warns where this Fluent Bit would keep rows from leaving at a stop.
fn warn_about_stops(site: &Site<'_>, cfg: &Config) {
    if cfg.aggregate.is_none() {
        return;
    }
    if site.fields.is_shutting_down.is_none() {
        log(
            site.host,
            site.ins,
            FLB_LOG_WARN,
            "this Fluent Bit does not say where its shutdown flag is (service_configs 'flush' \
             is not at the known offset): rows still counted at shutdown will go to the \
             aggregate_state_file or the log",
        );
    }
    if let Some(g @ 0) = site.fields.grace(site.config) {
        let line = format!(
            "service grace is {g}: at a stop Fluent Bit will not flush the rows this filter \
             hands over then; set grace to 1 or more"
        );
        log(site.host, site.ins, FLB_LOG_WARN, &line);
    }
}

/// Builds the context, restores saved rows, starts the timer and hands the context to
/// Fluent Bit.
fn start(
    host: Host,
    ins: *mut flb_filter_instance,
    config: *mut flb_config,
    fields: ConfigFields,
    placement: Placement,
    cfg: Config,
    door: Door,
) -> Result<(), ()> {
    let sink = match door {
        Door::Chunk => RowSink::AppendToChunk,
        _ => RowSink::Timer,
    };
    let summary = start_summary(&cfg, &placement, &door);
    let state_file = cfg.aggregate.as_ref().and_then(|a| a.state_file.clone());
    let interval_ms = cfg
        .aggregate
        .as_ref()
        .filter(|_| sink == RowSink::Timer)
        .map(|a| a.flush_interval_ms);
    let tick = sink == RowSink::Timer;
    let now = unix_now();
    let metrics = open_metrics(&host, ins, config, &placement, &cfg);
    let ctx = Box::new(Context {
        host,
        ins,
        config,
        fields,
        filter: FilterInstance::new(cfg, sink, hostname(), now),
        door,
        timers: std::sync::Mutex::new(Vec::new()),
        copies: std::sync::Mutex::new(CopyQueue::default()),
        // SAFETY: pthread_self has no preconditions.
        engine_thread: unsafe { libc::pthread_self() },
        internal_errors: AtomicU64::new(0),
        alerts_delivered: AtomicU64::new(0),
        metrics,
        last_error_log: AtomicU64::new(0),
        errors_since_log: AtomicU64::new(0),
        last_early_log: AtomicU64::new(0),
        last_refused_log: AtomicU64::new(0),
        bound_releases_logged: AtomicU64::new(0),
    });
    if let Some(path) = &state_file {
        restore_state(&ctx, path, now);
    }
    ctx.publish_metrics();
    let raw = Box::into_raw(ctx);
    // SAFETY: `raw` stays valid until cb_exit, which stops the timer first.
    let ctx = unsafe { &*raw };
    let wanted = [
        (interval_ms, on_interval as doors::TimerCallback),
        (tick.then_some(TICK_MS), on_tick),
    ];
    for (ms, cb) in wanted {
        let Some(ms) = ms else { continue };
        match doors::Timer::create(ms, cb, raw as *mut c_void) {
            Ok(t) => ctx.timers.lock().unwrap_or_else(|p| p.into_inner()).push(t),
            Err(why) => {
                ctx.log(FLB_LOG_ERROR, &format!("could not create a timer: {why}"));
                for t in ctx
                    .timers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .drain(..)
                {
                    t.release();
                }
                // SAFETY: reclaim the context we just leaked; the timers that held it are gone.
                drop(unsafe { Box::from_raw(raw) });
                return Err(());
            }
        }
    }
    // SAFETY: host function storing our context in the live instance.
    unsafe { (host.set_context)(ins, raw as *mut c_void) };
    ctx.log(FLB_LOG_INFO, &format!("started: {summary}"));
    Ok(())
}

/// The instance's series on Fluent Bit's metrics endpoint, or None with one warning saying
/// why this Fluent Bit runs the plugin without them.
fn open_metrics(
    host: &Host,
    ins: *mut flb_filter_instance,
    config: *mut flb_config,
    placement: &Placement,
    cfg: &Config,
) -> Option<metrics::Metrics> {
    let name = instance_name(host, ins);
    let parent = parent_name(placement);
    let extended = cfg.mode == config::Mode::Extended;
    metrics::Metrics::open(ins, config, &name, &parent, extended)
        .map_err(|why| {
            log(
                host,
                ins,
                FLB_LOG_WARN,
                &format!("running without metrics: {why}"),
            )
        })
        .ok()
}

/// The name (or alias) of the input or output a processor belongs to; empty for a
/// pipeline filter, or where this Fluent Bit does not say.
fn parent_name(placement: &Placement) -> String {
    type NameFn = unsafe extern "C" fn(*mut c_void) -> *const c_char;
    let (getter, ins) = match placement {
        Placement::InputProcessor { input, .. } => (c"flb_input_name", *input),
        Placement::OutputProcessor { output } => (c"flb_output_name", *output),
        _ => return String::new(),
    };
    let Ok(f) = resolve::<NameFn>(getter) else {
        return String::new();
    };
    // SAFETY: `ins` is the live input or output instance the placement check followed to
    // (checked against this instance and this config); the name is NUL-terminated and
    // lives as long as the instance, and is copied at once.
    let p = unsafe { f(ins) };
    if p.is_null() {
        return String::new();
    }
    // SAFETY: as above.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn start_summary(cfg: &Config, placement: &Placement, door: &Door) -> String {
    format!(
        "mode={:?} schema={:?} risk_score={} exclude_user={} exclude_computer={} namespace={} \
         aggregate={} alert_tag={} placement={} own records={}",
        cfg.mode,
        cfg.schema,
        cfg.risk_score,
        cfg.exclude_user.len(),
        cfg.exclude_computer.len(),
        cfg.namespace,
        match &cfg.aggregate {
            None => "off".to_string(),
            Some(a) => format!("{:?}/{}ms/{}", a.mode, a.flush_interval_ms, a.tag),
        },
        cfg.alert_tag.as_deref().unwrap_or("none"),
        placement_name(placement),
        if cfg.aggregate.is_some() || cfg.alert_tag.is_some() {
            door.name()
        } else {
            "none"
        },
    )
    .to_lowercase()
}

/// Reads rows saved at the last stop back into the aggregate, then removes the file.
fn restore_state(ctx: &Context, path: &str, now: f64) {
    let text = match state_file::load(path) {
        Ok(state_file::Loaded::Absent) => return,
        Ok(state_file::Loaded::Text(t)) => t,
        Ok(state_file::Loaded::Refused(why)) => {
            ctx.log(
                FLB_LOG_WARN,
                &format!("aggregate_state_file {path} {why}: not read, left as it is"),
            );
            return;
        }
        Err(e) => {
            ctx.log(
                FLB_LOG_WARN,
                &format!("cannot read aggregate_state_file {path}: {e}"),
            );
            return;
        }
    };
    match aggregate::rows_from_state(&text, now) {
        Ok(rows) => {
            ctx.filter.restore(&rows, now);
            if let Err(e) = state_file::remove(path) {
                ctx.log(FLB_LOG_WARN, &format!("cannot remove {path}: {e}"));
            }
            let n = aggregate::total_count(&rows);
            ctx.log(
                FLB_LOG_INFO,
                &format!(
                    "restored {} aggregate rows ({n} records) from {path}",
                    rows.len()
                ),
            );
        }
        Err(e) => {
            let bad = format!("{path}.corrupt");
            let _ = std::fs::rename(path, &bad);
            ctx.log(
                FLB_LOG_WARN,
                &format!("aggregate_state_file {path}: {e}; moved aside to {bad}"),
            );
        }
    }
}

/// Runs `f` on the context a timer was registered with, behind the panic boundary.
fn on_context(data: *mut c_void, what: &str, f: impl FnOnce(&Context)) {
    if data.is_null() {
        return;
    }
    // SAFETY: `data` is the Context registered with the timer, freed in cb_exit only after
    // the timer can no longer fire.
    let ctx = unsafe { &*(data as *const Context) };
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(ctx))) {
        ctx.error_rate_limited(&format!(
            "internal error in the {what}: {}",
            panic_text(&*p)
        ));
    }
    publish_metrics(ctx);
}

/// [`Context::publish_metrics`] behind the panic boundary.
fn publish_metrics(ctx: &Context) {
    if ctx.metrics.is_none() {
        return;
    }
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| ctx.publish_metrics())) {
        ctx.error_rate_limited(&format!(
            "internal error publishing metrics: {}",
            panic_text(&*p)
        ));
    }
}

/// The interval timer: the window's rows leave.
extern "C" fn on_interval(_config: *mut flb_config, data: *mut c_void) {
    on_context(data, "flush timer", |ctx| {
        if !ctx.may_deliver() {
            return;
        }
        let rows = ctx.filter.on_interval(unix_now());
        if !rows.is_empty() {
            ctx.deliver_rows(rows);
        }
    });
}

/// The short tick: waiting copies and rows are handed over again, timed-out script
/// blocks are judged, and once the engine is stopping every row leaves while it still
/// flushes.
extern "C" fn on_tick(_config: *mut flb_config, data: *mut c_void) {
    on_context(data, "tick", |ctx| {
        let now = unix_now();
        ctx.deliver_copies();
        let late = ctx.filter.expire_blocks(now);
        ctx.emit_late(&late, false);
        if !ctx.may_deliver() {
            return; // the rows wait for the exit: the state file, or the log
        }
        let rows = ctx.filter.tick(now, ctx.shutting_down());
        if !rows.is_empty() {
            ctx.deliver_rows(rows);
        }
    });
}

/// A chunk's tag as text (lossy).
fn tag_text<'a>(tag: *const c_char, tag_len: c_int) -> std::borrow::Cow<'a, str> {
    if tag.is_null() || tag_len <= 0 {
        return std::borrow::Cow::Borrowed("");
    }
    // SAFETY: Fluent Bit passes the tag's tag_len bytes, valid for this call.
    String::from_utf8_lossy(unsafe {
        std::slice::from_raw_parts(tag as *const u8, tag_len as usize)
    })
}

#[allow(clippy::too_many_arguments)]
extern "C" fn cb_filter(
    data: *const c_void,
    bytes: usize,
    tag: *const c_char,
    tag_len: c_int,
    out_buf: *mut *mut c_void,
    out_size: *mut usize,
    _f_ins: *mut flb_filter_instance,
    i_ins: *mut flb_input_instance,
    context: *mut c_void,
    _config: *mut flb_config,
) -> c_int {
    if data.is_null() || bytes == 0 || context.is_null() || out_buf.is_null() || out_size.is_null()
    {
        return FLB_FILTER_NOTOUCH;
    }
    // SAFETY: `context` is the Box<Context> made in init and freed only in exit, after
    // Fluent Bit stopped calling the filter.
    let ctx = unsafe { &*(context as *const Context) };
    if ctx.door.is_own_input(i_ins) {
        // Our own rows and alert copies coming back through a broad Match.
        return FLB_FILTER_NOTOUCH;
    }
    // SAFETY: Fluent Bit passes a readable chunk of `bytes` bytes, valid for this call.
    let chunk = unsafe { std::slice::from_raw_parts(data as *const u8, bytes) };
    let tag = tag_text(tag, tag_len);
    let ret = match catch_unwind(AssertUnwindSafe(|| filter_chunk(ctx, chunk, &tag))) {
        Ok(Some(out)) => hand_back(ctx, out, out_buf, out_size),
        Ok(None) => FLB_FILTER_NOTOUCH,
        Err(p) => {
            ctx.error_rate_limited(&format!(
                "internal error, chunk of {bytes} bytes passed on unchanged: {}",
                panic_text(&*p)
            ));
            FLB_FILTER_NOTOUCH
        }
    };
    publish_metrics(ctx);
    ret
}

/// Filters one chunk and sends what it produced for other streams; returns the chunk to
/// hand back, if it changed.
fn filter_chunk(ctx: &Context, chunk: &[u8], tag: &str) -> Option<Vec<u8>> {
    let shutting_down = ctx.filter.sink == RowSink::AppendToChunk && ctx.shutting_down();
    let actions = ctx
        .filter
        .process_tagged(chunk, tag, unix_now(), shutting_down);
    if let Some(e) = &actions.result.error {
        ctx.error_rate_limited(&format!(
            "chunk of {} bytes is not valid msgpack ({e}); the bytes from there on were passed \
             on unchanged",
            chunk.len()
        ));
    }
    let output = match (actions.appended, actions.result.outcome) {
        (Some(a), _) => Some(a),
        (None, Outcome::Modified(b)) => Some(b),
        (None, Outcome::NoTouch) => None,
    };
    if let (Some(alert), Some(out)) = (&ctx.filter.config().alert_tag, &output) {
        for range in &actions.alert_copies {
            ctx.send_copy(alert, &out[range.clone()], true);
        }
    }
    ctx.emit_late(&actions.late, true);
    log_bounds(ctx);
    output
}

/// Warns (rate-limited) when memory bounds pushed script blocks or rows out early.
fn log_bounds(ctx: &Context) {
    if let Some(st) = ctx.filter.detector.reassembly_state() {
        let (open, bytes, bound) = (st.open_blocks, st.bytes, st.bound_releases);
        let logged = ctx.bound_releases_logged.load(Ordering::Relaxed);
        if bound > logged
            && ctx
                .bound_releases_logged
                .compare_exchange(logged, bound, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            ctx.log(
                FLB_LOG_WARN,
                &format!(
                    "{} script blocks judged before completion because reassemble_max_blocks or \
                     reassemble_max_bytes was reached ({open} open, {bytes} bytes)",
                    bound - logged
                ),
            );
        }
    }
    let early = ctx.filter.counters.rows_early.load(Ordering::Relaxed);
    if early > 0 && rate_limited(&ctx.last_early_log, None).is_some() {
        ctx.log(
            FLB_LOG_WARN,
            &format!("{early} aggregate rows emitted early so far (max_keys or max_message_bytes reached)"),
        );
    }
}

/// Copies the output chunk into a malloc'd buffer Fluent Bit frees with free().
fn hand_back(
    ctx: &Context,
    out: Vec<u8>,
    out_buf: *mut *mut c_void,
    out_size: *mut usize,
) -> c_int {
    if out.is_empty() {
        // never: the filter drops no record; an empty Vec has no allocation to hand over
        ctx.error_rate_limited("internal error: an empty chunk out; passed on unchanged");
        return FLB_FILTER_NOTOUCH;
    }
    // The chunk goes to Fluent Bit in the Vec's own allocation, which Fluent Bit frees with
    // free(): no second copy of a chunk of up to megabytes (and no fresh pages to fault in).
    let mut out = std::mem::ManuallyDrop::new(out);
    // SAFETY: out_buf and out_size are Fluent Bit's, checked non-null by the caller. The
    // plugin sets no #[global_allocator], so the Vec was allocated by std's System
    // allocator, which on Unix is malloc / posix_memalign / realloc: memory free() takes.
    // Ownership passes to Fluent Bit here; the Vec is never dropped on this side.
    unsafe {
        *out_buf = out.as_mut_ptr() as *mut c_void;
        *out_size = out.len();
    }
    FLB_FILTER_MODIFIED
}

extern "C" fn cb_exit(context: *mut c_void, _config: *mut flb_config) -> c_int {
    if context.is_null() {
        return 0;
    }
    let r = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the Box made in init; Fluent Bit calls exit once, after the last filter.
        let ctx = unsafe { Box::from_raw(context as *mut Context) };
        let timers = std::mem::take(&mut *ctx.timers.lock().unwrap_or_else(|p| p.into_inner()));
        for t in timers {
            if !t.release() {
                ctx.log(
                    FLB_LOG_DEBUG,
                    "timer left to its input thread's scheduler, which is gone",
                );
            }
        }
        log_open_blocks(&ctx);
        let rows = ctx.filter.on_exit(unix_now());
        keep_rows_at_exit(&ctx, rows);
        let waiting = ctx.lock_copies().waiting.len();
        if waiting > 0 {
            ctx.log(
                FLB_LOG_ERROR,
                &format!(
                    "{waiting} alert copies or flagged script blocks could not be handed to \
                     Fluent Bit before it stopped (their originals went on flagged)"
                ),
            );
        }
        ctx.log(FLB_LOG_INFO, &exit_summary(&ctx));
        // the rows saved or logged just now: for whatever reads the instance's metrics
        // before Fluent Bit destroys them with it
        publish_metrics(&ctx);
    }));
    if r.is_err() {
        eprintln!("[filter:pssession] error while releasing the filter context");
    }
    0
}

/// Open script blocks judged at exit: a match is logged (nothing can be routed then).
fn log_open_blocks(ctx: &Context) {
    for l in ctx.filter.drain_blocks(unix_now()) {
        let n = &l.flagged.normalized;
        ctx.log(
            FLB_LOG_WARN,
            &format!(
                "script block {} from {} (user {}) was incomplete at shutdown and matches the \
                 analytic: {}",
                n.reassembly.as_ref().map_or("?", |r| r.block_id.as_str()),
                n.computer,
                n.user,
                l.flagged.message.chars().take(500).collect::<String>()
            ),
        );
    }
}

/// Rows no door took before exit: the engine no longer routes records now, so they go to
/// the state file for the next start, or else to the log.
fn keep_rows_at_exit(ctx: &Context, rows: Vec<Row>) {
    if rows.is_empty() {
        return;
    }
    let path = ctx
        .filter
        .config()
        .aggregate
        .as_ref()
        .and_then(|a| a.state_file.clone());
    if let Some(path) = path {
        match state_file::save(&path, &aggregate::rows_to_state(&rows)) {
            Ok(()) => {
                ctx.filter.delivered(RowDoor::StateFile, &rows);
                ctx.log(
                    FLB_LOG_INFO,
                    &format!(
                        "saved {} aggregate rows to {path} for the next start",
                        rows.len()
                    ),
                );
                return;
            }
            Err(e) => ctx.log(FLB_LOG_ERROR, &format!("cannot write {path}: {e}")),
        }
    }
    for r in &rows {
        ctx.log_row(FLB_LOG_WARN, "aggregate row at shutdown", r);
    }
    ctx.filter.delivered(RowDoor::Log, &rows);
}

/// The exit line: what was read and flagged, and which door every aggregate row took.
fn exit_summary(ctx: &Context) -> String {
    let c = &ctx.filter.counters;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let doors: Vec<String> = RowDoor::ALL
        .iter()
        .map(|d| {
            let (rows, records) = c.door(*d);
            format!("{} {rows} ({records})", d.name())
        })
        .collect();
    let (restored_rows, restored) = c.restored.get();
    let q = ctx.lock_copies();
    let copies = format!(
        "copies: {} delivered, {} not delivered, {} dropped",
        q.delivered,
        q.waiting.len(),
        q.dropped
    );
    drop(q);
    format!(
        "stopping: {} records read, {} PowerShell 4104 events, {} flagged, {} excluded by tuning, \
         {} already enriched, {} chunks modified; aggregate rows (records) by door: {}; \
         {restored_rows} rows ({restored}) restored, {} early; {copies}; {} internal errors",
        load(&c.records),
        load(&c.candidates),
        load(&c.flagged),
        load(&c.excluded),
        load(&c.own),
        load(&c.chunks_modified),
        doors.join(", "),
        load(&c.rows_early),
        load(&ctx.internal_errors),
    )
}
