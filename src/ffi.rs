//! The Fluent Bit ABI of the plugin, and the only `unsafe` code of the plugin: the exported
//! `filter_pssession_plugin` registration struct, its callbacks, the host functions it calls
//! (looked up with `dlsym` in the running Fluent Bit), and the panic boundary that keeps
//! every Rust panic on this side of the C boundary.
//!
//! Layouts follow Fluent Bit's own headers (`flb_filter.h`, `flb_config_map.h`,
//! `flb_kv.h`, `mk_list.h`) of 3.2 to 5.1; see the README for how each was checked.
#![allow(non_camel_case_types)]

use crate::core::config::{self, Config, PropertyType, PROPERTIES};
use crate::core::filter::{ChunkStats, Detector, Outcome};
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

/// Byte offsets of `p` (the plugin) and `properties` in `struct flb_filter_instance`, with
/// `FLB_HAVE_REGEX` (every release build) and without it. Only used after validation.
const INSTANCE_PROPERTY_OFFSETS: [(usize, usize); 2] = [(96, 104), (88, 96)];

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
    fn resolve() -> Result<Host, String> {
        fn get(name: &CStr) -> Result<*mut c_void, String> {
            let p = host_symbol(name);
            if p.is_null() {
                Err(name.to_string_lossy().into_owned())
            } else {
                Ok(p)
            }
        }
        // SAFETY: each symbol is a function of Fluent Bit with exactly this prototype
        // (flb_filter.h, flb_log.h).
        unsafe {
            Ok(Host {
                get_property: std::mem::transmute::<*mut c_void, GetPropertyFn>(get(
                    c"flb_filter_get_property",
                )?),
                set_context: std::mem::transmute::<*mut c_void, SetContextFn>(get(
                    c"flb_filter_set_context",
                )?),
                filter_name: std::mem::transmute::<*mut c_void, FilterNameFn>(get(
                    c"flb_filter_name",
                )?),
                log_print: std::mem::transmute::<*mut c_void, LogPrintFn>(get(c"flb_log_print")?),
            })
        }
    }
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
        if let Some(list) = find_property_list(host, ins, first, &key) {
            return list;
        }
    }
    // SAFETY: Fluent Bit returned a valid C string owned by the instance.
    vec![unsafe { CStr::from_ptr(first) }
        .to_string_lossy()
        .into_owned()]
}

/// Walks the instance's `properties` list for every value of `key`, at each candidate
/// offset. A candidate is accepted only if `ins->p` there is this plugin (its `name`
/// pointer is ours), the list is a well-formed ring, and its first value for `key` is the
/// very pointer `flb_filter_get_property` returned.
fn find_property_list(
    _host: &Host,
    ins: *mut flb_filter_instance,
    first: *const c_char,
    key: &CStr,
) -> Option<Vec<String>> {
    const MAX_NODES: usize = 100_000;
    for (p_off, props_off) in INSTANCE_PROPERTY_OFFSETS {
        // SAFETY: the offsets are within struct flb_filter_instance in every version and
        // both build variants; what is read there is only dereferenced after checks.
        unsafe {
            let base = ins as *const u8;
            let plugin = *(base.add(p_off) as *const *const flb_filter_plugin);
            if plugin.is_null() || (*plugin).name != PLUGIN_NAME.as_ptr() {
                continue;
            }
            let head = base.add(props_off) as *mut mk_list;
            let mut node = (*head).next;
            let mut prev = head;
            let mut values = Vec::new();
            let mut first_seen: Option<*const c_char> = None;
            let mut ok = false;
            for _ in 0..MAX_NODES {
                if node.is_null() || (*node).prev != prev {
                    break;
                }
                if node == head {
                    ok = true;
                    break;
                }
                let kv = (node as *mut u8).sub(std::mem::offset_of!(flb_kv, _head)) as *mut flb_kv;
                if !(*kv).key.is_null()
                    && !(*kv).val.is_null()
                    && CStr::from_ptr((*kv).key)
                        .to_bytes()
                        .eq_ignore_ascii_case(key.to_bytes())
                {
                    first_seen.get_or_insert((*kv).val);
                    values.push(CStr::from_ptr((*kv).val).to_string_lossy().into_owned());
                }
                prev = node;
                node = (*node).next;
            }
            if ok && first_seen == Some(first) {
                return Some(values);
            }
        }
    }
    None
}

/// Per-instance state handed to Fluent Bit as the filter context. Read-only after init
/// except for the atomic counters, so the callback may run on several threads at once.
struct Context {
    host: Host,
    ins: *mut flb_filter_instance,
    detector: Detector,
    records: AtomicU64,
    candidates: AtomicU64,
    flagged: AtomicU64,
    excluded: AtomicU64,
    chunks_modified: AtomicU64,
    internal_errors: AtomicU64,
    /// Unix second of the last rate-limited error line.
    last_error_log: AtomicU64,
    errors_since_log: AtomicU64,
}

// SAFETY: `ins` is only used to read the log level and the instance name, which Fluent Bit
// does not change while the filter runs; everything else is immutable or atomic.
unsafe impl Sync for Context {}
unsafe impl Send for Context {}

/// At most one internal-error line per this many seconds and instance.
const ERROR_LOG_INTERVAL_SECS: u64 = 10;

impl Context {
    fn add(&self, s: &ChunkStats) {
        self.records.fetch_add(s.records, Ordering::Relaxed);
        self.candidates.fetch_add(s.candidates, Ordering::Relaxed);
        self.flagged.fetch_add(s.flagged, Ordering::Relaxed);
        self.excluded.fetch_add(s.excluded, Ordering::Relaxed);
    }

    /// Logs an internal error at most once per interval, counting the ones it swallows.
    fn error_rate_limited(&self, msg: &str) {
        self.internal_errors.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let last = self.last_error_log.load(Ordering::Relaxed);
        let due = last == 0 || now >= last + ERROR_LOG_INTERVAL_SECS;
        if due
            && self
                .last_error_log
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let skipped = self.errors_since_log.swap(0, Ordering::Relaxed);
            let tail = if skipped > 0 {
                format!(" ({skipped} similar errors not logged)")
            } else {
                String::new()
            };
            log(&self.host, self.ins, FLB_LOG_ERROR, &format!("{msg}{tail}"));
        } else {
            self.errors_since_log.fetch_add(1, Ordering::Relaxed);
        }
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
    _config: *mut flb_config,
    _data: *mut c_void,
) -> c_int {
    let result = catch_unwind(AssertUnwindSafe(|| init(ins)));
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

fn init(ins: *mut flb_filter_instance) -> Result<(), ()> {
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
    let cfg = Config::from_properties(|name| property_values(&host, ins, name));
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            log(&host, ins, FLB_LOG_ERROR, &e.to_string());
            return Err(());
        }
    };
    let summary = format!(
        "mode={:?} schema={:?} risk_score={} exclude_user={} exclude_computer={} namespace={}",
        cfg.mode,
        cfg.schema,
        cfg.risk_score,
        cfg.exclude_user.len(),
        cfg.exclude_computer.len(),
        cfg.namespace
    )
    .to_lowercase();
    let ctx = Box::new(Context {
        host,
        ins,
        detector: Detector::new(cfg),
        records: AtomicU64::new(0),
        candidates: AtomicU64::new(0),
        flagged: AtomicU64::new(0),
        excluded: AtomicU64::new(0),
        chunks_modified: AtomicU64::new(0),
        internal_errors: AtomicU64::new(0),
        last_error_log: AtomicU64::new(0),
        errors_since_log: AtomicU64::new(0),
    });
    let raw = Box::into_raw(ctx);
    // SAFETY: host function storing our context in the live instance.
    unsafe { (host.set_context)(ins, raw as *mut c_void) };
    log(&host, ins, FLB_LOG_INFO, &format!("started: {summary}"));
    Ok(())
}

#[allow(clippy::too_many_arguments)]
extern "C" fn cb_filter(
    data: *const c_void,
    bytes: usize,
    _tag: *const c_char,
    _tag_len: c_int,
    out_buf: *mut *mut c_void,
    out_size: *mut usize,
    _f_ins: *mut flb_filter_instance,
    _i_ins: *mut flb_input_instance,
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
    // SAFETY: Fluent Bit passes a readable chunk of `bytes` bytes, valid for this call.
    let chunk = unsafe { std::slice::from_raw_parts(data as *const u8, bytes) };
    let result = catch_unwind(AssertUnwindSafe(|| ctx.detector.filter_chunk(chunk)));
    let result = match result {
        Ok(r) => r,
        Err(p) => {
            ctx.error_rate_limited(&format!(
                "internal error, chunk of {bytes} bytes passed on unchanged: {}",
                panic_text(&*p)
            ));
            return FLB_FILTER_NOTOUCH;
        }
    };
    ctx.add(&result.stats);
    if let Some(e) = result.error {
        ctx.error_rate_limited(&format!(
            "chunk of {bytes} bytes is not valid msgpack ({e}); the bytes from there on were \
             passed on unchanged"
        ));
    }
    match result.outcome {
        Outcome::NoTouch => FLB_FILTER_NOTOUCH,
        Outcome::Modified(buf) => {
            // Fluent Bit releases the buffer with free(): allocate it with malloc.
            // SAFETY: malloc of a non-zero size; the copy stays within both buffers.
            unsafe {
                let p = libc::malloc(buf.len().max(1)) as *mut u8;
                if p.is_null() {
                    ctx.error_rate_limited(&format!(
                        "out of memory for a {} byte chunk; passed on unchanged",
                        buf.len()
                    ));
                    return FLB_FILTER_NOTOUCH;
                }
                std::ptr::copy_nonoverlapping(buf.as_ptr(), p, buf.len());
                *out_buf = p as *mut c_void;
                *out_size = buf.len();
            }
            ctx.chunks_modified.fetch_add(1, Ordering::Relaxed);
            FLB_FILTER_MODIFIED
        }
    }
}

extern "C" fn cb_exit(context: *mut c_void, _config: *mut flb_config) -> c_int {
    if context.is_null() {
        return 0;
    }
    let r = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the Box made in init; Fluent Bit calls exit once, after the last filter.
        let ctx = unsafe { Box::from_raw(context as *mut Context) };
        log(
            &ctx.host,
            ctx.ins,
            FLB_LOG_INFO,
            &format!(
                "stopping: {} records read, {} PowerShell 4104 events, {} flagged, {} excluded \
                 by tuning, {} chunks modified, {} internal errors",
                ctx.records.load(Ordering::Relaxed),
                ctx.candidates.load(Ordering::Relaxed),
                ctx.flagged.load(Ordering::Relaxed),
                ctx.excluded.load(Ordering::Relaxed),
                ctx.chunks_modified.load(Ordering::Relaxed),
                ctx.internal_errors.load(Ordering::Relaxed),
            ),
        );
    }));
    if r.is_err() {
        eprintln!("[filter:pssession] error while releasing the filter context");
    }
    0
}
