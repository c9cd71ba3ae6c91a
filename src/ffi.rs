//! The Fluent Bit ABI of the plugin, and the only `unsafe` code of the plugin: the exported
//! `filter_pssession_plugin` registration struct, its callbacks, the host functions it calls
//! (looked up with `dlsym` in the running Fluent Bit), and the panic boundary that keeps
//! every Rust panic on this side of the C boundary.
//!
//! Layouts follow Fluent Bit's own headers (`flb_filter.h`, `flb_config_map.h`,
//! `flb_kv.h`, `mk_list.h`) of 3.2 to 5.1; see the README for how each was checked.
#![allow(non_camel_case_types)]

use crate::core::aggregate::{self, Row};
use crate::core::config::{self, Config, PropertyType, PROPERTIES};
use crate::core::filter::{LateFlag, Outcome};
use crate::core::instance::{FilterInstance, RowSink};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
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
        if let Some(list) = find_property_list(ins, first, &key) {
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

type InputNameExistsFn = unsafe extern "C" fn(*const c_char, *mut flb_config) -> c_int;
type InputNewFn = unsafe extern "C" fn(
    *mut flb_config,
    *const c_char,
    *mut c_void,
    c_int,
) -> *mut flb_input_instance;
type InputSetPropertyFn =
    unsafe extern "C" fn(*mut flb_input_instance, *const c_char, *const c_char) -> c_int;
type InputInstanceInitFn = unsafe extern "C" fn(*mut flb_input_instance, *mut flb_config) -> c_int;
type EmitterAddRecordFn = unsafe extern "C" fn(
    *const c_char,
    c_int,
    *const c_char,
    usize,
    *mut flb_input_instance,
    *mut flb_input_instance,
) -> c_int;
type StorageInputCreateFn = unsafe extern "C" fn(*mut c_void, *mut flb_input_instance) -> c_int;
type InputInstanceExitFn = unsafe extern "C" fn(*mut flb_input_instance, *mut flb_config);
type InputInstanceDestroyFn = unsafe extern "C" fn(*mut flb_input_instance);
type SchedCtxGetFn = unsafe extern "C" fn() -> *mut c_void;
type TimerCallback = extern "C" fn(*mut flb_config, *mut c_void);
type TimerCbCreateFn = unsafe extern "C" fn(
    *mut c_void,
    c_int,
    c_int,
    TimerCallback,
    *mut c_void,
    *mut *mut c_void,
) -> c_int;
type TimerCbDestroyFn = unsafe extern "C" fn(*mut c_void) -> c_int;

/// `FLB_SCHED_TIMER_CB_PERM` of flb_scheduler.h: a permanent callback timer.
const FLB_SCHED_TIMER_CB_PERM: c_int = 4;

/// The host functions behind an emitter input (`rewrite_tag`'s pattern) and an engine
/// timer (`log_to_metrics`'s pattern). Optional: a Fluent Bit built without `in_emitter`
/// lacks them, and the filter then appends rows to the chunks it filters.
#[derive(Clone, Copy)]
struct EmitterHost {
    name_exists: InputNameExistsFn,
    input_new: InputNewFn,
    set_property: InputSetPropertyFn,
    instance_init: InputInstanceInitFn,
    instance_exit: InputInstanceExitFn,
    instance_destroy: InputInstanceDestroyFn,
    storage_input_create: StorageInputCreateFn,
    add_record: EmitterAddRecordFn,
    sched_get: SchedCtxGetFn,
    timer_create: TimerCbCreateFn,
    timer_destroy: TimerCbDestroyFn,
}

impl EmitterHost {
    /// Ok(host), or Err(the first missing symbol).
    fn resolve() -> Result<EmitterHost, &'static str> {
        fn get(name: &'static CStr) -> Result<*mut c_void, &'static str> {
            let p = host_symbol(name);
            if p.is_null() {
                Err(name.to_str().unwrap_or("?"))
            } else {
                Ok(p)
            }
        }
        // SAFETY: each symbol is the Fluent Bit function of this prototype (flb_input.h,
        // in_emitter's emitter.c, flb_scheduler.h), unchanged from 3.2 to 5.1.
        unsafe {
            Ok(EmitterHost {
                name_exists: std::mem::transmute::<*mut c_void, InputNameExistsFn>(get(
                    c"flb_input_name_exists",
                )?),
                input_new: std::mem::transmute::<*mut c_void, InputNewFn>(get(c"flb_input_new")?),
                set_property: std::mem::transmute::<*mut c_void, InputSetPropertyFn>(get(
                    c"flb_input_set_property",
                )?),
                instance_init: std::mem::transmute::<*mut c_void, InputInstanceInitFn>(get(
                    c"flb_input_instance_init",
                )?),
                instance_exit: std::mem::transmute::<*mut c_void, InputInstanceExitFn>(get(
                    c"flb_input_instance_exit",
                )?),
                instance_destroy: std::mem::transmute::<*mut c_void, InputInstanceDestroyFn>(get(
                    c"flb_input_instance_destroy",
                )?),
                storage_input_create: std::mem::transmute::<*mut c_void, StorageInputCreateFn>(
                    get(c"flb_storage_input_create")?,
                ),
                add_record: std::mem::transmute::<*mut c_void, EmitterAddRecordFn>(get(
                    c"in_emitter_add_record",
                )?),
                sched_get: std::mem::transmute::<*mut c_void, SchedCtxGetFn>(get(
                    c"flb_sched_ctx_get",
                )?),
                timer_create: std::mem::transmute::<*mut c_void, TimerCbCreateFn>(get(
                    c"flb_sched_timer_cb_create",
                )?),
                timer_destroy: std::mem::transmute::<*mut c_void, TimerCbDestroyFn>(get(
                    c"flb_sched_timer_cb_destroy",
                )?),
            })
        }
    }
}

/// Byte offsets used to find `config->cio` (the chunk I/O context every input's storage
/// hangs from). `struct flb_config` changes size between releases, but the block
/// `void *cio; char *storage_path; void *storage_input_plugin; char *storage_sync;
/// int storage_metrics, storage_checksum, storage_max_chunks_up, storage_del_bad_chunks;`
/// and `struct cio_ctx` (chunkio) are the same in 3.2 to 5.1.
mod cio_probe {
    /// Where `cio` may sit in `struct flb_config` (1032 in 3.2.10, 1192 in 5.1.1).
    pub(super) const SCAN: std::ops::Range<usize> = 256..2048;
    pub(super) const CFG_METRICS: usize = 32;
    pub(super) const CFG_CHECKSUM: usize = 36;
    pub(super) const CFG_MAX_CHUNKS_UP: usize = 40;
    pub(super) const CFG_DEL_BAD_CHUNKS: usize = 44;
    pub(super) const CIO_PAGE_SIZE: usize = 0;
    pub(super) const CIO_LOG_LEVEL: usize = 24;
    pub(super) const CIO_MAX_CHUNKS_UP: usize = 104;
    pub(super) const CIO_STREAMS: usize = 112;
    pub(super) const CIO_SIZE: usize = 136;
}

/// Whether `len` bytes at `p` are mapped memory (mincore fails with ENOMEM otherwise), so
/// reading them cannot fault.
fn is_mapped(p: usize, len: usize) -> bool {
    // SAFETY: sysconf and mincore only inspect the address space.
    unsafe {
        let page = libc::sysconf(libc::_SC_PAGESIZE).max(4096) as usize;
        let start = p & !(page - 1);
        let end = p.saturating_add(len);
        let pages = end.saturating_sub(start).div_ceil(page);
        let mut vec = vec![0u8; pages.max(1)];
        libc::mincore(start as *mut c_void, end - start, vec.as_mut_ptr()) == 0
    }
}

/// Finds `config->cio`: the one pointer in the scanned window whose neighbours are the
/// storage settings (flags 0/1, a sane max_chunks_up) and whose target is a live
/// `struct cio_ctx` (this machine's page size, a valid log level, the same
/// max_chunks_up as the config, a well-formed stream list). Every read is checked to be
/// mapped first. None when no such pointer is found (the emitter is then not used).
fn find_cio(config: *mut flb_config) -> Option<*mut c_void> {
    use cio_probe::*;
    if config.is_null() || !is_mapped(config as usize, SCAN.end + 48) {
        return None;
    }
    // SAFETY: reads within the checked range of `config`, and of candidate targets only
    // after is_mapped says they are readable.
    unsafe {
        let base = config as *const u8;
        let page_size = libc::sysconf(libc::_SC_PAGESIZE) as i32;
        let int_at = |off: usize| (base.add(off) as *const i32).read_unaligned();
        let mut found = None;
        for off in SCAN.step_by(8) {
            let flag = |d: usize| matches!(int_at(off + d), 0 | 1);
            let max_up = int_at(off + CFG_MAX_CHUNKS_UP);
            if !(flag(CFG_METRICS)
                && flag(CFG_CHECKSUM)
                && flag(CFG_DEL_BAD_CHUNKS)
                && (1..=1 << 20).contains(&max_up))
            {
                continue;
            }
            let p = (base.add(off) as *const usize).read_unaligned();
            if p == 0 || p % 8 != 0 || !is_mapped(p, CIO_SIZE) {
                continue;
            }
            let cio = p as *const u8;
            let ok = (cio.add(CIO_PAGE_SIZE) as *const i32).read() == page_size
                && (0..=6).contains(&(cio.add(CIO_LOG_LEVEL) as *const i32).read())
                && (cio.add(CIO_MAX_CHUNKS_UP) as *const usize).read() == max_up as usize;
            if !ok {
                continue;
            }
            let streams = cio.add(CIO_STREAMS) as *const mk_list;
            let next = (*streams).next;
            if next.is_null()
                || !is_mapped(next as usize, 16)
                || !std::ptr::eq((*next).prev, streams)
            {
                continue;
            }
            if found.is_some() {
                return None; // ambiguous: trust neither
            }
            found = Some(p as *mut c_void);
        }
        found
    }
}

/// The emitter input this instance created.
struct Emitter {
    host: EmitterHost,
    ins: *mut flb_input_instance,
}

/// Per-instance state handed to Fluent Bit as the filter context. Read-only after init
/// except for atomics and the aggregate's mutex, so the callback may run on several
/// threads at once (and the timer on the engine's).
struct Context {
    host: Host,
    ins: *mut flb_filter_instance,
    filter: FilterInstance,
    emitter: Option<Emitter>,
    timer: AtomicPtr<c_void>,
    /// The input of the last chunk seen: the emitter needs a source input.
    last_input: AtomicPtr<flb_input_instance>,
    internal_errors: AtomicU64,
    rows_failed: AtomicU64,
    /// Unix second of the last rate-limited error line.
    last_error_log: AtomicU64,
    errors_since_log: AtomicU64,
    last_early_log: AtomicU64,
    /// Script blocks released by a bound, as last logged.
    bound_releases_logged: AtomicU64,
}

// SAFETY: `ins` and the emitter are only used through Fluent Bit functions that Fluent Bit
// itself calls from filter callbacks on any thread; everything else is immutable, atomic
// or behind a mutex.
unsafe impl Sync for Context {}
unsafe impl Send for Context {}

/// At most one rate-limited line per this many seconds and instance.
const LOG_INTERVAL_SECS: u64 = 10;

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
    /// Logs an internal error at most once per interval, counting the ones it swallows.
    fn error_rate_limited(&self, msg: &str) {
        self.internal_errors.fetch_add(1, Ordering::Relaxed);
        if let Some(skipped) = rate_limited(&self.last_error_log, Some(&self.errors_since_log)) {
            let tail = if skipped > 0 {
                format!(" ({skipped} similar errors not logged)")
            } else {
                String::new()
            };
            log(&self.host, self.ins, FLB_LOG_ERROR, &format!("{msg}{tail}"));
        }
    }

    /// Emits records through the emitter under `tag`. False when the emitter refused them.
    fn emit(&self, tag: &str, records: &[u8], source: *mut flb_input_instance) -> bool {
        let Some(em) = &self.emitter else {
            return false;
        };
        if source.is_null() {
            return false;
        }
        let Ok(ctag) = CString::new(tag) else {
            return false;
        };
        // SAFETY: in_emitter_add_record(tag, tag_len, buf, size, emitter, source input),
        // with a valid msgpack buffer that the emitter copies.
        let ret = unsafe {
            (em.host.add_record)(
                ctag.as_ptr(),
                tag.len() as c_int,
                records.as_ptr() as *const c_char,
                records.len(),
                em.ins,
                source,
            )
        };
        ret == 0
    }

    /// Emits aggregate rows under the aggregate tag; a row the emitter refuses goes to the
    /// log rather than being lost silently.
    fn emit_rows(&self, rows: &[Row], source: *mut flb_input_instance) {
        let Some(tag) = self
            .filter
            .config()
            .aggregate
            .as_ref()
            .map(|a| a.tag.clone())
        else {
            return;
        };
        let now = unix_now();
        for r in rows {
            let rec = self.filter.row_record(r, now);
            if self.emit(&tag, &rec, source) {
                self.filter
                    .counters
                    .rows_emitted
                    .fetch_add(1, Ordering::Relaxed);
            } else {
                self.rows_failed.fetch_add(1, Ordering::Relaxed);
                self.log_row(FLB_LOG_ERROR, "aggregate row could not be emitted", r);
            }
        }
    }

    /// Emits script blocks flagged as they stood, under the tag their last part came with
    /// (and a copy under `alert_tag`).
    fn emit_late(&self, late: &[LateFlag], source: *mut flb_input_instance) {
        for l in late {
            if !self.emit(&l.tag, &l.record, source) {
                self.error_rate_limited("a flagged script block could not be emitted");
            }
            if let Some(alert) = &self.filter.config().alert_tag {
                if !self.emit(alert, &l.record, source) {
                    self.error_rate_limited("an alert copy could not be emitted");
                }
            }
        }
    }

    fn log_row(&self, level: c_int, why: &str, r: &Row) {
        let json = aggregate::rows_to_state(std::slice::from_ref(r));
        log(
            &self.host,
            self.ins,
            level,
            &format!("{why}: {}", json.trim_end()),
        );
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

/// Creates and initialises the emitter input, as `rewrite_tag` does.
fn create_emitter(
    host: &Host,
    ins: *mut flb_filter_instance,
    config: *mut flb_config,
    eh: EmitterHost,
    cfg: &Config,
) -> Result<Emitter, String> {
    let name = cfg
        .emitter
        .name
        .clone()
        .unwrap_or_else(|| format!("emitter_for_{}", instance_name(host, ins)));
    let cname = CString::new(name.clone()).map_err(|_| "emitter_name has a NUL byte")?;
    // SAFETY: Fluent Bit's input API with the config pointer it passed to cb_init and
    // NUL-terminated strings; the new instance is owned by Fluent Bit.
    unsafe {
        if (eh.name_exists)(cname.as_ptr(), config) != 0 {
            return Err(format!(
                "property 'emitter_name': emitter_name '{name}' already exists"
            ));
        }
        let em = (eh.input_new)(config, c"emitter".as_ptr(), std::ptr::null_mut(), 0);
        if em.is_null() {
            return Err("cannot create the emitter input instance".into());
        }
        for (k, v) in [
            ("alias", name.as_str()),
            ("mem_buf_limit", cfg.emitter.mem_buf_limit.as_str()),
            ("storage.type", cfg.emitter.storage_type.as_str()),
        ] {
            let (ck, cv) = (
                CString::new(k).unwrap_or_default(),
                CString::new(v).unwrap_or_default(),
            );
            if (eh.set_property)(em, ck.as_ptr(), cv.as_ptr()) != 0 {
                return Err(format!("cannot set '{k}' of the emitter to '{v}'"));
            }
        }
        if (eh.instance_init)(em, config) != 0 {
            (eh.instance_exit)(em, config);
            (eh.instance_destroy)(em);
            return Err(format!("cannot initialize emitter instance '{name}'"));
        }
        // Storage is created for the configured inputs before filters start; an input
        // made now needs its own, as rewrite_tag does with flb_storage_input_create.
        let created = match find_cio(config) {
            Some(cio) => (eh.storage_input_create)(cio, em) == 0,
            None => false,
        };
        if !created {
            (eh.instance_exit)(em, config);
            (eh.instance_destroy)(em);
            return Err(format!(
                "cannot create storage for emitter '{name}' (the chunk I/O context of this \
                 Fluent Bit was not found)"
            ));
        }
        Ok(Emitter { host: eh, ins: em })
    }
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
    let cfg = match Config::from_properties(|name| property_values(&host, ins, name)) {
        Ok(c) => c,
        Err(e) => {
            log(&host, ins, FLB_LOG_ERROR, &e.to_string());
            return Err(());
        }
    };
    let needs_emitter = cfg.aggregate.is_some() || cfg.alert_tag.is_some();
    let mut emitter = None;
    let mut fallback_reason = None;
    if needs_emitter {
        match EmitterHost::resolve() {
            Ok(eh) => match create_emitter(&host, ins, config, eh, &cfg) {
                Ok(em) => emitter = Some(em),
                Err(e) if e.starts_with("property") => {
                    log(&host, ins, FLB_LOG_ERROR, &e);
                    return Err(());
                }
                Err(e) => fallback_reason = Some(e),
            },
            Err(missing) => {
                fallback_reason = Some(format!("this Fluent Bit does not export '{missing}'"))
            }
        }
    }
    if let Some(why) = &fallback_reason {
        if cfg.alert_tag.is_some() {
            log(
                &host,
                ins,
                FLB_LOG_ERROR,
                &format!(
                    "property 'alert_tag': needs an emitter input, which is unavailable ({why}); \
                     route alerts with rewrite_tag on $event['kind'] instead"
                ),
            );
            return Err(());
        }
        log(
            &host,
            ins,
            FLB_LOG_WARN,
            &format!(
                "no emitter ({why}): aggregate rows will be appended to the chunks this filter \
                 processes, under their tag, when a flush is due"
            ),
        );
    }
    let sink = if emitter.is_some() {
        RowSink::Emitter
    } else {
        RowSink::AppendToChunk
    };
    let summary = format!(
        "mode={:?} schema={:?} risk_score={} exclude_user={} exclude_computer={} namespace={} \
         aggregate={} alert_tag={}",
        cfg.mode,
        cfg.schema,
        cfg.risk_score,
        cfg.exclude_user.len(),
        cfg.exclude_computer.len(),
        cfg.namespace,
        match &cfg.aggregate {
            None => "off".to_string(),
            Some(a) => format!(
                "{:?}/{}ms/{} via {}",
                a.mode,
                a.flush_interval_ms,
                a.tag,
                if sink == RowSink::Emitter {
                    "emitter"
                } else {
                    "chunk"
                }
            ),
        },
        cfg.alert_tag.as_deref().unwrap_or("none"),
    )
    .to_lowercase();
    let state_file = cfg.aggregate.as_ref().and_then(|a| a.state_file.clone());
    let interval_ms = cfg.aggregate.as_ref().map(|a| a.flush_interval_ms);
    let now = unix_now();
    let ctx = Box::new(Context {
        host,
        ins,
        filter: FilterInstance::new(cfg, sink, hostname(), now),
        emitter,
        timer: AtomicPtr::new(std::ptr::null_mut()),
        last_input: AtomicPtr::new(std::ptr::null_mut()),
        internal_errors: AtomicU64::new(0),
        rows_failed: AtomicU64::new(0),
        last_error_log: AtomicU64::new(0),
        errors_since_log: AtomicU64::new(0),
        last_early_log: AtomicU64::new(0),
        bound_releases_logged: AtomicU64::new(0),
    });
    if let Some(path) = &state_file {
        restore_state(&ctx, path, now);
    }
    let raw = Box::into_raw(ctx);
    // SAFETY: `raw` stays valid until cb_exit; the timer is destroyed there first.
    let ctx = unsafe { &*raw };
    if let (Some(em), Some(ms)) = (&ctx.emitter, interval_ms) {
        let mut timer: *mut c_void = std::ptr::null_mut();
        // SAFETY: flb_sched_ctx_get / flb_sched_timer_cb_create as log_to_metrics uses them;
        // the callback and its data outlive the timer.
        let ret = unsafe {
            let sched = (em.host.sched_get)();
            if sched.is_null() {
                -1
            } else {
                (em.host.timer_create)(
                    sched,
                    FLB_SCHED_TIMER_CB_PERM,
                    ms.min(i32::MAX as u64) as c_int,
                    on_timer,
                    raw as *mut c_void,
                    &mut timer,
                )
            }
        };
        if ret < 0 {
            log(
                &host,
                ins,
                FLB_LOG_ERROR,
                "could not create the aggregate flush timer",
            );
            // SAFETY: reclaim the context we just leaked; nothing else holds it yet.
            drop(unsafe { Box::from_raw(raw) });
            return Err(());
        }
        ctx.timer.store(timer, Ordering::Release);
    }
    // SAFETY: host function storing our context in the live instance.
    unsafe { (host.set_context)(ins, raw as *mut c_void) };
    log(&host, ins, FLB_LOG_INFO, &format!("started: {summary}"));
    Ok(())
}

/// Reads rows saved at the last stop back into the aggregate, then removes the file.
fn restore_state(ctx: &Context, path: &str, now: f64) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            log(
                &ctx.host,
                ctx.ins,
                FLB_LOG_WARN,
                &format!("cannot read aggregate_state_file {path}: {e}"),
            );
            return;
        }
    };
    match aggregate::rows_from_state(&text, now) {
        Ok(rows) => {
            let early = ctx.filter.restore(&rows, now);
            for r in &early {
                ctx.log_row(FLB_LOG_WARN, "restored aggregate row over the bounds", r);
            }
            let _ = std::fs::remove_file(path);
            log(
                &ctx.host,
                ctx.ins,
                FLB_LOG_INFO,
                &format!("restored {} aggregate rows from {path}", rows.len()),
            );
        }
        Err(e) => {
            let bad = format!("{path}.corrupt");
            let _ = std::fs::rename(path, &bad);
            log(
                &ctx.host,
                ctx.ins,
                FLB_LOG_WARN,
                &format!("aggregate_state_file {path}: {e}; moved aside to {bad}"),
            );
        }
    }
}

/// The engine's timer: emits the rows of the interval.
extern "C" fn on_timer(_config: *mut flb_config, data: *mut c_void) {
    if data.is_null() {
        return;
    }
    // SAFETY: `data` is the Context registered with the timer, destroyed in cb_exit only
    // after the timer.
    let ctx = unsafe { &*(data as *const Context) };
    let r = catch_unwind(AssertUnwindSafe(|| {
        let source = ctx.last_input.load(Ordering::Acquire);
        let now = unix_now();
        let (late, early) = ctx.filter.expire_blocks(now);
        ctx.emit_late(&late, source);
        let mut rows = early;
        rows.extend(ctx.filter.on_timer(now));
        if rows.is_empty() {
            return;
        }
        if source.is_null() {
            // No chunk seen yet (rows restored from a state file): keep them.
            ctx.filter.restore(&rows, now);
            return;
        }
        ctx.emit_rows(&rows, source);
    }));
    if let Err(p) = r {
        ctx.error_rate_limited(&format!(
            "internal error in the flush timer: {}",
            panic_text(&*p)
        ));
    }
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
    if let Some(em) = &ctx.emitter {
        if i_ins == em.ins {
            // Our own rows and alert copies coming back through a broad Match.
            return FLB_FILTER_NOTOUCH;
        }
    }
    if !i_ins.is_null() {
        ctx.last_input.store(i_ins, Ordering::Release);
    }
    // SAFETY: Fluent Bit passes a readable chunk of `bytes` bytes, valid for this call.
    let chunk = unsafe { std::slice::from_raw_parts(data as *const u8, bytes) };
    let tag = if tag.is_null() || tag_len <= 0 {
        std::borrow::Cow::Borrowed("")
    } else {
        // SAFETY: Fluent Bit passes the tag's tag_len bytes, valid for this call.
        String::from_utf8_lossy(unsafe {
            std::slice::from_raw_parts(tag as *const u8, tag_len as usize)
        })
    };
    let actions = catch_unwind(AssertUnwindSafe(|| {
        ctx.filter.process_tagged(chunk, &tag, unix_now())
    }));
    let actions = match actions {
        Ok(a) => a,
        Err(p) => {
            ctx.error_rate_limited(&format!(
                "internal error, chunk of {bytes} bytes passed on unchanged: {}",
                panic_text(&*p)
            ));
            return FLB_FILTER_NOTOUCH;
        }
    };
    if let Some(e) = actions.result.error {
        ctx.error_rate_limited(&format!(
            "chunk of {bytes} bytes is not valid msgpack ({e}); the bytes from there on were \
             passed on unchanged"
        ));
    }
    let output: Option<&[u8]> = match (&actions.appended, &actions.result.outcome) {
        (Some(a), _) => Some(a),
        (None, Outcome::Modified(b)) => Some(b),
        (None, Outcome::NoTouch) => None,
    };
    if let (Some(tag), Some(out)) = (&ctx.filter.config().alert_tag, output) {
        for range in &actions.alert_copies {
            if !ctx.emit(tag, &out[range.clone()], i_ins) {
                ctx.error_rate_limited("an alert copy could not be emitted");
            }
        }
    }
    ctx.emit_late(&actions.late, i_ins);
    if let Some((open, bytes, _, bound)) = ctx.filter.detector.reassembly_state() {
        let logged = ctx.bound_releases_logged.load(Ordering::Relaxed);
        if bound > logged
            && ctx
                .bound_releases_logged
                .compare_exchange(logged, bound, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            log(
                &ctx.host,
                ctx.ins,
                FLB_LOG_WARN,
                &format!(
                    "{} script blocks judged before completion because reassemble_max_blocks or \
                     reassemble_max_bytes was reached ({open} open, {bytes} bytes)",
                    bound - logged
                ),
            );
        }
    }
    if !actions.rows.is_empty() {
        ctx.emit_rows(&actions.rows, i_ins);
        if rate_limited(&ctx.last_early_log, None).is_some() {
            log(
                &ctx.host,
                ctx.ins,
                FLB_LOG_WARN,
                &format!(
                    "{} aggregate rows emitted early so far (max_keys or max_message_bytes reached)",
                    ctx.filter.counters.rows_early.load(Ordering::Relaxed)
                ),
            );
        }
    }
    let Some(out) = output else {
        return FLB_FILTER_NOTOUCH;
    };
    // Fluent Bit releases the buffer with free(): allocate it with malloc.
    // SAFETY: malloc of a non-zero size; the copy stays within both buffers.
    unsafe {
        let p = libc::malloc(out.len().max(1)) as *mut u8;
        if p.is_null() {
            ctx.error_rate_limited(&format!(
                "out of memory for a {} byte chunk; passed on unchanged",
                out.len()
            ));
            return FLB_FILTER_NOTOUCH;
        }
        std::ptr::copy_nonoverlapping(out.as_ptr(), p, out.len());
        *out_buf = p as *mut c_void;
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
        let timer = ctx.timer.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if let (Some(em), false) = (&ctx.emitter, timer.is_null()) {
            // SAFETY: the timer we created; destroyed once, before the context goes.
            unsafe { (em.host.timer_destroy)(timer) };
        }
        // The engine no longer routes records at this point: open script blocks are judged
        // and a match is logged; what is still counted goes to the state file, or the log.
        for l in ctx.filter.drain_blocks(unix_now()) {
            let n = &l.flagged.normalized;
            log(
                &ctx.host,
                ctx.ins,
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
        let rows = ctx.filter.on_exit(unix_now());
        let state_file = ctx
            .filter
            .config()
            .aggregate
            .as_ref()
            .and_then(|a| a.state_file.clone());
        if !rows.is_empty() {
            match &state_file {
                Some(path) => {
                    let tmp = format!("{path}.tmp");
                    let saved = std::fs::write(&tmp, aggregate::rows_to_state(&rows))
                        .and_then(|()| std::fs::rename(&tmp, path));
                    match saved {
                        Ok(()) => log(
                            &ctx.host,
                            ctx.ins,
                            FLB_LOG_INFO,
                            &format!(
                                "saved {} aggregate rows to {path} for the next start",
                                rows.len()
                            ),
                        ),
                        Err(e) => {
                            log(
                                &ctx.host,
                                ctx.ins,
                                FLB_LOG_ERROR,
                                &format!("cannot write {path}: {e}"),
                            );
                            for r in &rows {
                                ctx.log_row(FLB_LOG_WARN, "aggregate row at shutdown", r);
                            }
                        }
                    }
                }
                None => {
                    for r in &rows {
                        ctx.log_row(FLB_LOG_WARN, "aggregate row at shutdown", r);
                    }
                }
            }
        }
        let c = &ctx.filter.counters;
        log(
            &ctx.host,
            ctx.ins,
            FLB_LOG_INFO,
            &format!(
                "stopping: {} records read, {} PowerShell 4104 events, {} flagged, {} excluded \
                 by tuning, {} chunks modified, {} aggregate rows emitted ({} early, {} failed), \
                 {} internal errors",
                c.records.load(Ordering::Relaxed),
                c.candidates.load(Ordering::Relaxed),
                c.flagged.load(Ordering::Relaxed),
                c.excluded.load(Ordering::Relaxed),
                c.chunks_modified.load(Ordering::Relaxed),
                c.rows_emitted.load(Ordering::Relaxed),
                c.rows_early.load(Ordering::Relaxed),
                ctx.rows_failed.load(Ordering::Relaxed),
                ctx.internal_errors.load(Ordering::Relaxed),
            ),
        );
    }));
    if r.is_err() {
        eprintln!("[filter:pssession] error while releasing the filter context");
    }
    0
}
