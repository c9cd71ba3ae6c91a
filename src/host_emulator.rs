//! Host emulator: loads the built plugin `.so` exactly as Fluent Bit does (`dlopen`, the
//! `filter_<name>_plugin` symbol derived from the file name, a copy of the registration
//! struct), creates instances with Fluent Bit's own memory layout, checks properties
//! against the plugin's config map, and calls `cb_init` / `cb_filter` / `cb_exit` with
//! real msgpack chunks. The host functions the plugin calls are implemented here with
//! Fluent Bit's semantics; a binary that hosts the plugin exports them under their C names
//! with [`export_host_symbols!`](crate::export_host_symbols) and links with
//! `--export-dynamic` (see `build.rs`), as the `fluent-bit` binary does.
//!
//! Used by the tests and the replay CLI; the plugin never calls into this module.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use crate::ffi::{
    flb_config, flb_filter_instance, flb_filter_plugin, flb_kv, mk_list, ConfigMapEntry,
    CONFIG_MAP_VALUE_CURRENT, CONFIG_MAP_VALUE_LEGACY, CURRENT_LAYOUT_MARKERS, FLB_CONFIG_MAP_MULT,
    FLB_FILTER_LOGS, FLB_FILTER_MODIFIED, FLB_FILTER_NOTOUCH, FLB_LOG_DEBUG, FLB_LOG_ERROR,
    FLB_LOG_INFO, FLB_LOG_WARN,
};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};

/// `struct flb_filter_instance` of Fluent Bit 3.2 to 5.1 built with FLB_HAVE_REGEX and
/// FLB_HAVE_METRICS (the release configuration), field for field.
#[repr(C)]
pub struct EmuFilterInstance {
    pub event_type: c_int,
    pub id: c_int,
    pub log_level: c_int,
    pub log_suppress_interval: c_int,
    pub name: [c_char; 32],
    pub alias: *mut c_char,
    pub match_: *mut c_char,
    pub match_regex: *mut c_void,
    pub parent_processor: *mut c_void,
    pub context: *mut c_void,
    pub data: *mut c_void,
    pub p: *mut flb_filter_plugin,
    pub properties: mk_list,
    pub config_map: *mut mk_list,
    pub _head: mk_list,
    pub cmt: *mut c_void,
    pub cmt_records: *mut c_void,
    pub cmt_bytes: *mut c_void,
    pub cmt_add_records: *mut c_void,
    pub cmt_drop_records: *mut c_void,
    pub cmt_drop_bytes: *mut c_void,
    pub metrics: *mut c_void,
    pub notification_channel: c_int,
    pub config: *mut c_void,
}

const _: () = {
    assert!(std::mem::offset_of!(EmuFilterInstance, log_level) == 8);
    assert!(std::mem::offset_of!(EmuFilterInstance, p) == 96);
    assert!(std::mem::offset_of!(EmuFilterInstance, properties) == 104);
    assert!(std::mem::offset_of!(EmuFilterInstance, context) == 80);
};

/// A line the plugin logged through `flb_log_print`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: c_int,
    pub text: String,
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            FLB_LOG_ERROR => "error",
            FLB_LOG_WARN => "warn",
            FLB_LOG_INFO => "info",
            FLB_LOG_DEBUG => "debug",
            _ => "trace",
        };
        write!(f, "[{level}] {}", self.text)
    }
}

static LOGS: Mutex<Vec<LogLine>> = Mutex::new(Vec::new());
static ECHO_LOGS: AtomicI32 = AtomicI32::new(0);
static NEXT_ID: AtomicI32 = AtomicI32::new(0);

/// Echo every line the plugin logs to stderr as it happens (the replay CLI does).
pub fn echo_logs(on: bool) {
    ECHO_LOGS.store(on as i32, Ordering::Relaxed);
}

fn record_log(line: LogLine) {
    if ECHO_LOGS.load(Ordering::Relaxed) != 0 {
        eprintln!("{line}");
    }
    if let Ok(mut l) = LOGS.lock() {
        if l.len() > 100_000 {
            l.drain(..50_000);
        }
        l.push(line);
    }
}

/// Every logged line that mentions `needle` (an instance name, say).
pub fn logs_containing(needle: &str) -> Vec<LogLine> {
    LOGS.lock()
        .map(|l| {
            l.iter()
                .filter(|x| x.text.contains(needle))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Error of the emulator, worded as Fluent Bit would report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmuError {
    /// The plugin could not be loaded.
    Load(String),
    /// Start-up failed; the lines are what the host and the plugin logged.
    Init(Vec<String>),
}

impl fmt::Display for EmuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmuError::Load(m) => write!(f, "[plugin] {m}"),
            EmuError::Init(lines) => write!(f, "{}", lines.join("\n")),
        }
    }
}

impl std::error::Error for EmuError {}

/// The Fluent Bit version family being emulated, as the plugin can tell it from the host's
/// exported symbols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostLayout {
    /// 3.2 to 5.0.2: 32-byte `flb_config_map_val`.
    Legacy,
    /// 5.0.3 and later: 40-byte `flb_config_map_val`.
    Current,
}

impl HostLayout {
    /// What this process exports.
    pub fn of_this_process() -> HostLayout {
        let current = CURRENT_LAYOUT_MARKERS
            .iter()
            // SAFETY: dlsym on the global scope with a NUL-terminated name.
            .any(|s| !unsafe { libc::dlsym(libc::RTLD_DEFAULT, s.as_ptr()) }.is_null());
        if current {
            HostLayout::Current
        } else {
            HostLayout::Legacy
        }
    }
}

/// One entry of the plugin's config map as the host reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    pub type_: c_int,
    pub name: String,
    pub default: Option<String>,
    pub multiple: bool,
    pub description: String,
}

/// A loaded plugin: the library and the host's copy of its registration.
pub struct Plugin {
    _lib: libloading::Library,
    reg: Box<flb_filter_plugin>,
    pub name: String,
    pub path: PathBuf,
    pub config_map: Vec<MapEntry>,
}

// SAFETY: the registration copy is immutable after load; the library handle is Send+Sync.
unsafe impl Sync for Plugin {}
unsafe impl Send for Plugin {}

impl Plugin {
    /// Loads `flb-filter_<name>.so` the way `flb_plugin_load` does.
    pub fn load(path: &Path) -> Result<Plugin, EmuError> {
        let base = path
            .file_name()
            .and_then(|b| b.to_str())
            .ok_or_else(|| EmuError::Load(format!("invalid plugin path {}", path.display())))?;
        let name = base
            .strip_prefix("flb-filter_")
            .and_then(|b| b.strip_suffix(".so"))
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                EmuError::Load(format!(
                    "{base}: a filter plugin file must be named flb-filter_<name>.so"
                ))
            })?
            .to_string();
        // SAFETY: dlopen(path, RTLD_LAZY) as Fluent Bit does; the library's constructors
        // run here, as they do in Fluent Bit.
        let lib = unsafe { libloading::os::unix::Library::open(Some(path), libc::RTLD_LAZY) }
            .map_err(|e| EmuError::Load(format!("dlopen() {e}")))?;
        let symbol = format!("filter_{name}_plugin");
        // SAFETY: looking up a data symbol; it is only read as the registration struct.
        let reg = unsafe {
            let sym: libloading::os::unix::Symbol<*const flb_filter_plugin> = lib
                .get(symbol.as_bytes())
                .map_err(|_| EmuError::Load(format!("symbol '{symbol}' not found in {base}")))?;
            let p = *sym;
            if p.is_null() {
                return Err(EmuError::Load(format!("symbol '{symbol}' is NULL")));
            }
            // flb_plugin_load: memcpy(filter, symbol, sizeof(struct flb_filter_plugin))
            Box::new(std::ptr::read(p))
        };
        let reg_name = if reg.name.is_null() {
            String::new()
        } else {
            // SAFETY: a C string of the plugin's registration.
            unsafe { CStr::from_ptr(reg.name) }
                .to_string_lossy()
                .into_owned()
        };
        if reg_name != name {
            return Err(EmuError::Load(format!(
                "registration name '{reg_name}' does not match file name '{name}'"
            )));
        }
        if reg.event_type & FLB_FILTER_LOGS == 0 {
            return Err(EmuError::Load("plugin does not filter logs".into()));
        }
        if reg.cb_filter.is_none() || reg.cb_init.is_none() {
            return Err(EmuError::Load("plugin lacks cb_init or cb_filter".into()));
        }
        let config_map =
            read_config_map(reg.config_map as *const u8, HostLayout::of_this_process());
        Ok(Plugin {
            _lib: lib.into(),
            reg,
            name,
            path: path.to_path_buf(),
            config_map,
        })
    }

    /// Creates an instance and runs Fluent Bit's start-up on it: instance properties,
    /// `Match` check, config-map property check, then `cb_init`.
    pub fn instance(&self, properties: &[(&str, &str)]) -> Result<Instance<'_>, EmuError> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut ffi = Box::new(EmuFilterInstance {
            event_type: FLB_FILTER_LOGS,
            id,
            log_level: -1,
            log_suppress_interval: 0,
            name: [0; 32],
            alias: std::ptr::null_mut(),
            match_: std::ptr::null_mut(),
            match_regex: std::ptr::null_mut(),
            parent_processor: std::ptr::null_mut(),
            context: std::ptr::null_mut(),
            data: std::ptr::null_mut(),
            p: &*self.reg as *const flb_filter_plugin as *mut flb_filter_plugin,
            properties: mk_list {
                prev: std::ptr::null_mut(),
                next: std::ptr::null_mut(),
            },
            config_map: std::ptr::null_mut(),
            _head: mk_list {
                prev: std::ptr::null_mut(),
                next: std::ptr::null_mut(),
            },
            cmt: std::ptr::null_mut(),
            cmt_records: std::ptr::null_mut(),
            cmt_bytes: std::ptr::null_mut(),
            cmt_add_records: std::ptr::null_mut(),
            cmt_drop_records: std::ptr::null_mut(),
            cmt_drop_bytes: std::ptr::null_mut(),
            metrics: std::ptr::null_mut(),
            notification_channel: -1,
            config: std::ptr::null_mut(),
        });
        let head: *mut mk_list = &mut ffi.properties;
        ffi.properties.prev = head;
        ffi.properties.next = head;
        // flb_filter_new: "<plugin>.<id>"
        let inst_name = format!("{}.{}", self.name, id);
        for (i, b) in inst_name.bytes().take(31).enumerate() {
            ffi.name[i] = b as c_char;
        }
        let mut inst = Instance {
            plugin: self,
            ffi,
            strings: Vec::new(),
            initialized: false,
            config: EmuConfig::new(HostLayout::of_this_process()),
        };
        let mut errors = Vec::new();
        // flb_filter_set_property: core properties first, the rest into the list.
        for (k, v) in properties {
            let key = k.to_ascii_lowercase();
            match key.as_str() {
                "match" => inst.ffi.match_ = inst.keep(v),
                "alias" => inst.ffi.alias = inst.keep(v),
                "log_level" => match log_level_of(v) {
                    Some(l) => inst.ffi.log_level = l,
                    None => errors.push(format!("[config] invalid log_level '{v}'")),
                },
                "match_regex" | "log_suppress_interval" => {}
                _ => inst.push_kv(k, v),
            }
        }
        if !errors.is_empty() {
            return Err(EmuError::Init(errors));
        }
        // flb_filter_init
        if inst.ffi.match_.is_null() {
            return Err(EmuError::Init(vec![format!(
                "[filter] NO match rule for {inst_name} filter instance, unloading."
            )]));
        }
        if inst.ffi.log_level == -1 {
            inst.ffi.log_level = FLB_LOG_INFO;
        }
        if let Err(e) = inst.property_check() {
            return Err(EmuError::Init(vec![
                e,
                format!("try the command: fluent-bit -F {} -h", self.name),
            ]));
        }
        let name_for_logs = inst.name().to_string();
        let before = logs_containing(&format!(":{name_for_logs}]")).len();
        let cb_init = self
            .reg
            .cb_init
            .ok_or_else(|| EmuError::Load("no cb_init".into()))?;
        let ret = cb_init(
            inst.ins_ptr(),
            inst.config.as_ptr() as *mut flb_config,
            std::ptr::null_mut(),
        );
        if ret != 0 {
            let mut lines: Vec<String> = logs_containing(&format!(":{name_for_logs}]"))
                .into_iter()
                .skip(before)
                .map(|l| l.to_string())
                .collect();
            lines.push(format!("Failed initialize filter {inst_name}"));
            return Err(EmuError::Init(lines));
        }
        inst.initialized = true;
        Ok(inst)
    }
}

/// `helper_map_options` of flb_config_map.c: "a, b, and c."
fn allowed_properties(map: &[MapEntry]) -> String {
    let mut s = String::from("The following properties are allowed: ");
    for (i, m) in map.iter().enumerate() {
        if i + 1 < map.len() {
            s.push_str(&format!("{}, ", m.name));
        } else if map.len() == 1 {
            s.push_str(&format!("{}.", m.name));
        } else {
            s.push_str(&format!("and {}.", m.name));
        }
    }
    s
}

fn log_level_of(v: &str) -> Option<c_int> {
    Some(match v.to_ascii_lowercase().as_str() {
        "off" => 0,
        "error" => FLB_LOG_ERROR,
        "warn" | "warning" => FLB_LOG_WARN,
        "info" => FLB_LOG_INFO,
        "debug" => FLB_LOG_DEBUG,
        "trace" => 5,
        _ => return None,
    })
}

/// Reads a config map array with the stride of the emulated host, as
/// `flb_config_map_create` does (until the entry whose name is NULL).
fn read_config_map(map: *const u8, layout: HostLayout) -> Vec<MapEntry> {
    fn read<const V: usize>(map: *const u8) -> Vec<MapEntry> {
        let mut out = Vec::new();
        if map.is_null() {
            return out;
        }
        let mut m = map as *const ConfigMapEntry<V>;
        // SAFETY: the plugin's array is terminated by an entry with a NULL name.
        unsafe {
            while !(*m).name.is_null() && out.len() < 10_000 {
                let s = |p: *const c_char| {
                    (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
                };
                out.push(MapEntry {
                    type_: (*m).type_,
                    name: s((*m).name).unwrap_or_default(),
                    default: s((*m).def_value),
                    multiple: (*m).flags & FLB_CONFIG_MAP_MULT != 0,
                    description: s((*m).desc).unwrap_or_default(),
                });
                m = m.add(1);
            }
        }
        out
    }
    match layout {
        HostLayout::Legacy => read::<CONFIG_MAP_VALUE_LEGACY>(map),
        HostLayout::Current => read::<CONFIG_MAP_VALUE_CURRENT>(map),
    }
}

/// Stand-in for `struct flb_config`: opaque to the plugin except for the chunk I/O block
/// (`void *cio; ...; int storage_max_chunks_up; ...`) that inputs created at run time
/// need, laid out at the offset of the emulated version (1192 in 5.1.1, 1032 in 3.2.10),
/// pointing to a `struct cio_ctx` with chunkio's layout.
pub struct EmuConfig {
    bytes: Box<[u64; 512]>,
    cio: Box<[u64; 17]>,
}

impl EmuConfig {
    fn new(layout: HostLayout) -> EmuConfig {
        let off = match layout {
            HostLayout::Current => 1192,
            HostLayout::Legacy => 1032,
        };
        let mut cio = Box::new([0u64; 17]);
        let page = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }) as u64; // SAFETY: no preconditions
        cio[0] = page | ((-1i32 as u32 as u64) << 32); // page_size, realloc_size_hint
        cio[3] = 3; // options.log_level
        cio[13] = 128; // max_chunks_up
        let streams = &mut cio[14] as *mut u64 as u64;
        cio[14] = streams; // streams.prev = &streams
        cio[15] = streams; // streams.next = &streams
        let mut bytes = Box::new([0u64; 512]);
        let w = off / 8;
        bytes[w] = &*cio as *const [u64; 17] as u64; // cio
        bytes[w + 4] = 1; // storage_metrics = 1, storage_checksum = 0
        bytes[w + 5] = 128; // storage_max_chunks_up = 128, storage_del_bad_chunks = 0
        VALID_CIO
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(&*cio as *const [u64; 17] as usize);
        EmuConfig { bytes, cio }
    }

    fn as_ptr(&self) -> *const u8 {
        self.bytes.as_ptr() as *const u8
    }
}

impl Drop for EmuConfig {
    fn drop(&mut self) {
        let p = &*self.cio as *const [u64; 17] as usize;
        VALID_CIO
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|c| *c != p);
    }
}

static VALID_CIO: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// A started filter instance. Dropping it runs `cb_exit` and releases the instance, as
/// Fluent Bit does at shutdown or reload.
pub struct Instance<'p> {
    plugin: &'p Plugin,
    ffi: Box<EmuFilterInstance>,
    /// C strings owned by the instance (sds buffers, alias, match) and kv nodes, freed on drop.
    strings: Vec<*mut c_void>,
    initialized: bool,
    /// Stand-in for `struct flb_config` (opaque to the plugin).
    config: EmuConfig,
}

// SAFETY: after start-up the instance is only read (by the host functions), and Fluent Bit
// itself calls a filter from several threads at once; the plugin must cope, and the tests
// check that it does.
unsafe impl Sync for Instance<'_> {}
unsafe impl Send for Instance<'_> {}

/// What one call of the filter callback returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterCall {
    /// FLB_FILTER_MODIFIED or FLB_FILTER_NOTOUCH.
    pub code: c_int,
    /// The chunk that goes on down the pipeline: the plugin's buffer (copied, then freed
    /// with `free()` as Fluent Bit does) or the original bytes.
    pub chunk: Vec<u8>,
}

impl FilterCall {
    pub fn modified(&self) -> bool {
        self.code == FLB_FILTER_MODIFIED
    }
}

impl<'p> Instance<'p> {
    fn ins_ptr(&self) -> *mut flb_filter_instance {
        &*self.ffi as *const EmuFilterInstance as *mut flb_filter_instance
    }

    /// The instance name Fluent Bit gives it (`pssession.N`) or its alias.
    pub fn name(&self) -> String {
        let p = if self.ffi.alias.is_null() {
            self.ffi.name.as_ptr()
        } else {
            self.ffi.alias
        };
        // SAFETY: both are NUL-terminated strings owned by the instance.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    /// Runs this instance's timers once, as the engine does when they expire. Returns how
    /// many ran.
    pub fn fire_timers(&self) -> usize {
        let due: Vec<(extern "C" fn(*mut c_void, *mut c_void), usize)> = TIMERS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|t| t.data == self.ffi.context as usize)
            .map(|t| (t.cb, t.data))
            .collect();
        for (cb, data) in &due {
            cb(self.config.as_ptr() as *mut c_void, *data as *mut c_void);
        }
        due.len()
    }

    /// The intervals (ms) of this instance's live timers.
    pub fn timer_intervals(&self) -> Vec<i32> {
        TIMERS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|t| t.data == self.ffi.context as usize)
            .map(|t| t.ms)
            .collect()
    }

    /// The input instance handle the emulator passes as the chunk's source input.
    pub fn source_input(&self) -> *mut c_void {
        static SOURCE: u64 = 0;
        &SOURCE as *const u64 as *mut c_void
    }

    /// Lines this instance logged.
    pub fn logs(&self) -> Vec<LogLine> {
        logs_containing(&format!(":{}]", self.name()))
    }

    fn keep(&mut self, s: &str) -> *mut c_char {
        let p = CString::new(s.replace('\0', ""))
            .unwrap_or_default()
            .into_raw();
        // Freed through CString::from_raw in drop: tag with a marker in a side list.
        self.strings.push(p as *mut c_void);
        p
    }

    fn push_kv(&mut self, k: &str, v: &str) {
        let kv = Box::into_raw(Box::new(flb_kv {
            key: sds_new(k),
            val: sds_new(v),
            _head: mk_list {
                prev: std::ptr::null_mut(),
                next: std::ptr::null_mut(),
            },
        }));
        // SAFETY: mk_list_add: append the node before the head of the ring.
        unsafe {
            let head: *mut mk_list = &mut self.ffi.properties;
            let node: *mut mk_list = &mut (*kv)._head;
            let last = (*head).prev;
            (*node).prev = last;
            (*node).next = head;
            (*last).next = node;
            (*head).prev = node;
        }
    }

    fn kvs(&self) -> Vec<*mut flb_kv> {
        let mut out = Vec::new();
        let head = &self.ffi.properties as *const mk_list as *mut mk_list;
        // SAFETY: a ring built by push_kv.
        unsafe {
            let mut node = (*head).next;
            while node != head {
                out.push((node as *mut u8).sub(std::mem::offset_of!(flb_kv, _head)) as *mut flb_kv);
                node = (*node).next;
            }
        }
        out
    }

    /// `flb_config_map_properties_check`: every property must be in the map; one that is
    /// not flagged multiple may be set once.
    fn property_check(&self) -> Result<(), String> {
        let map = &self.plugin.config_map;
        let plugin = &self.plugin.name;
        let keys: Vec<String> = self
            .kvs()
            .iter()
            // SAFETY: keys are sds strings made by push_kv.
            .map(|kv| {
                unsafe { CStr::from_ptr((**kv).key) }
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        for k in &keys {
            if k.eq_ignore_ascii_case("active") || k.eq_ignore_ascii_case("condition") {
                continue;
            }
            let Some(m) = map.iter().find(|m| m.name.eq_ignore_ascii_case(k)) else {
                return Err(format!(
                    "[config] {plugin}: unknown configuration property '{k}'. {}",
                    allowed_properties(map)
                ));
            };
            let count = keys.iter().filter(|x| *x == k).count();
            if !m.multiple && count > 1 {
                return Err(format!(
                    "[config] {plugin}: configuration property '{k}' is set {count} times"
                ));
            }
        }
        Ok(())
    }

    /// Calls `cb_filter` and releases any returned buffer, returning the callback's code and
    /// the output size: the bare cost of the filter, for benchmarks.
    pub fn filter_discard(&self, chunk: &[u8]) -> (c_int, usize) {
        let Some(cb) = self.plugin.reg.cb_filter else {
            return (FLB_FILTER_NOTOUCH, 0);
        };
        let mut out_buf: *mut c_void = std::ptr::null_mut();
        let mut out_size: usize = 0;
        let code = cb(
            chunk.as_ptr() as *const c_void,
            chunk.len(),
            c"bench".as_ptr(),
            5,
            &mut out_buf,
            &mut out_size,
            self.ins_ptr(),
            self.source_input() as *mut crate::ffi::flb_input_instance,
            self.ffi.context,
            self.config.as_ptr() as *mut flb_config,
        );
        // SAFETY: free(NULL) is a no-op; otherwise the plugin's malloc'd buffer.
        unsafe { libc::free(out_buf) };
        (code, out_size)
    }

    /// Calls `cb_filter` as `flb_filter_do` does and returns what goes on.
    pub fn filter(&self, chunk: &[u8], tag: &str) -> FilterCall {
        self.filter_from(chunk, tag, self.source_input())
    }

    /// [`filter`](Self::filter) with a chosen source input (e.g. the plugin's own emitter).
    pub fn filter_from(&self, chunk: &[u8], tag: &str, source: *mut c_void) -> FilterCall {
        let cb = match self.plugin.reg.cb_filter {
            Some(cb) => cb,
            None => {
                return FilterCall {
                    code: FLB_FILTER_NOTOUCH,
                    chunk: chunk.to_vec(),
                }
            }
        };
        let mut out_buf: *mut c_void = std::ptr::null_mut();
        let mut out_size: usize = 0;
        let ctag = CString::new(tag.replace('\0', "")).unwrap_or_default();
        let code = cb(
            chunk.as_ptr() as *const c_void,
            chunk.len(),
            ctag.as_ptr(),
            tag.len() as c_int,
            &mut out_buf,
            &mut out_size,
            self.ins_ptr(),
            source as *mut crate::ffi::flb_input_instance,
            self.ffi.context,
            self.config.as_ptr() as *mut flb_config,
        );
        match code {
            FLB_FILTER_MODIFIED => {
                let out = if out_buf.is_null() || out_size == 0 {
                    Vec::new()
                } else {
                    // SAFETY: the plugin hands over out_size bytes at out_buf.
                    unsafe { std::slice::from_raw_parts(out_buf as *const u8, out_size) }.to_vec()
                };
                // SAFETY: Fluent Bit frees the buffer with free(); so do we.
                unsafe { libc::free(out_buf) };
                FilterCall { code, chunk: out }
            }
            _ => {
                assert!(
                    out_buf.is_null(),
                    "plugin returned {code} but set out_buf: Fluent Bit would leak it"
                );
                FilterCall {
                    code,
                    chunk: chunk.to_vec(),
                }
            }
        }
    }
}

impl Drop for Instance<'_> {
    fn drop(&mut self) {
        // flb_filter_instance_exit: cb_exit only when a context was set.
        if self.initialized && !self.ffi.context.is_null() {
            if let Some(cb_exit) = self.plugin.reg.cb_exit {
                cb_exit(self.ffi.context, self.config.as_ptr() as *mut flb_config);
            }
        }
        for kv in self.kvs() {
            // SAFETY: made by push_kv; released once.
            unsafe {
                sds_free((*kv).key);
                sds_free((*kv).val);
                drop(Box::from_raw(kv));
            }
        }
        for s in self.strings.drain(..) {
            // SAFETY: made by CString::into_raw in keep().
            unsafe { drop(CString::from_raw(s as *mut c_char)) };
        }
    }
}

/// `flb_sds_create`: a 16-byte header (len, alloc) before the NUL-terminated bytes.
fn sds_new(s: &str) -> *mut c_char {
    let bytes = s.as_bytes();
    // SAFETY: malloc'd buffer large enough for header, bytes and NUL.
    unsafe {
        let p = libc::malloc(16 + bytes.len() + 1) as *mut u8;
        assert!(!p.is_null(), "out of memory");
        (p as *mut u64).write_unaligned(bytes.len() as u64);
        (p.add(8) as *mut u64).write_unaligned(bytes.len() as u64);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.add(16), bytes.len());
        *p.add(16 + bytes.len()) = 0;
        p.add(16) as *mut c_char
    }
}

fn sds_len(s: *const c_char) -> usize {
    // SAFETY: `s` was made by sds_new.
    unsafe { ((s as *const u8).sub(16) as *const u64).read_unaligned() as usize }
}

fn sds_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: `s` was made by sds_new.
        unsafe { libc::free((s as *mut u8).sub(16) as *mut c_void) };
    }
}

/// The host functions, with Fluent Bit's semantics. Exported under their C names by
/// [`export_host_symbols!`](crate::export_host_symbols).
pub mod host {
    use super::*;

    /// `flb_filter_get_property` -> `flb_kv_get_key_value`: first property whose key has
    /// the same length and matches case-insensitively.
    pub extern "C" fn filter_get_property(
        key: *const c_char,
        ins: *mut flb_filter_instance,
    ) -> *const c_char {
        if key.is_null() || ins.is_null() {
            return std::ptr::null();
        }
        // SAFETY: `ins` is an EmuFilterInstance made by Plugin::instance; key is a C string.
        unsafe {
            let key = CStr::from_ptr(key).to_bytes();
            if key.is_empty() {
                return std::ptr::null();
            }
            let ins = &*(ins as *const EmuFilterInstance);
            let head = &ins.properties as *const mk_list as *mut mk_list;
            let mut node = (*head).next;
            while node != head {
                let kv = (node as *mut u8).sub(std::mem::offset_of!(flb_kv, _head)) as *mut flb_kv;
                if sds_len((*kv).key) == key.len()
                    && CStr::from_ptr((*kv).key)
                        .to_bytes()
                        .eq_ignore_ascii_case(key)
                {
                    return (*kv).val;
                }
                node = (*node).next;
            }
        }
        std::ptr::null()
    }

    /// `flb_filter_set_context`.
    pub extern "C" fn filter_set_context(ins: *mut flb_filter_instance, ctx: *mut c_void) {
        if !ins.is_null() {
            // SAFETY: `ins` is an EmuFilterInstance.
            unsafe { (*(ins as *mut EmuFilterInstance)).context = ctx };
        }
    }

    /// `flb_filter_name`: the alias if set, else the numbered name.
    pub extern "C" fn filter_name(ins: *mut flb_filter_instance) -> *const c_char {
        if ins.is_null() {
            return std::ptr::null();
        }
        // SAFETY: `ins` is an EmuFilterInstance.
        unsafe {
            let ins = &*(ins as *const EmuFilterInstance);
            if ins.alias.is_null() {
                ins.name.as_ptr()
            } else {
                ins.alias
            }
        }
    }

    /// `flb_log_print(type, file, line, fmt, ...)`. Stable Rust cannot define a variadic
    /// function; on the x86-64 and AArch64 Linux ABIs a variadic call with one pointer
    /// argument reaches a function declared with that argument unchanged. Only the `%s`
    /// format the plugin uses is interpreted; any other format is recorded as it is.
    pub extern "C" fn log_print(
        level: c_int,
        _file: *const c_char,
        _line: c_int,
        fmt: *const c_char,
        arg: *const c_char,
    ) {
        if fmt.is_null() {
            return;
        }
        // SAFETY: C strings from the caller.
        let text = unsafe {
            let f = CStr::from_ptr(fmt).to_string_lossy().into_owned();
            if f == "%s" && !arg.is_null() {
                CStr::from_ptr(arg).to_string_lossy().into_owned()
            } else {
                format!("(unformatted) {f}")
            }
        };
        record_log(LogLine { level, text });
    }

    /// `flb_input_name_exists`: whether an input has this name or alias.
    pub extern "C" fn input_name_exists(name: *const c_char, _config: *mut c_void) -> c_int {
        if name.is_null() {
            return 0;
        }
        // SAFETY: a C string from the caller.
        let name = unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned();
        let inputs = INPUTS.lock().unwrap_or_else(|p| p.into_inner());
        inputs
            .iter()
            .any(|i| i.alias.as_deref() == Some(&name) || i.name == name) as c_int
    }

    /// `flb_input_new(config, plugin, data, public_only)`: only the `emitter` plugin exists
    /// here (it is private, so `public_only` must be false, as for rewrite_tag).
    pub extern "C" fn input_new(
        _config: *mut c_void,
        plugin: *const c_char,
        _data: *mut c_void,
        public_only: c_int,
    ) -> *mut c_void {
        if plugin.is_null() {
            return std::ptr::null_mut();
        }
        // SAFETY: a C string from the caller.
        let plugin = unsafe { CStr::from_ptr(plugin) }
            .to_string_lossy()
            .into_owned();
        if plugin != "emitter" || public_only != 0 {
            return std::ptr::null_mut();
        }
        let mut inputs = INPUTS.lock().unwrap_or_else(|p| p.into_inner());
        let id = inputs.len();
        let handle = Box::into_raw(Box::new(id as u64)) as *mut c_void;
        inputs.push(EmuInput {
            handle: handle as usize,
            name: format!("emitter.{id}"),
            alias: None,
            properties: Vec::new(),
            initialized: false,
            storage: false,
        });
        handle
    }

    /// `flb_input_set_property`: the core input properties the plugin may set.
    pub extern "C" fn input_set_property(
        ins: *mut c_void,
        k: *const c_char,
        v: *const c_char,
    ) -> c_int {
        if k.is_null() || v.is_null() {
            return -1;
        }
        // SAFETY: C strings from the caller.
        let (k, v) = unsafe {
            (
                CStr::from_ptr(k).to_string_lossy().into_owned(),
                CStr::from_ptr(v).to_string_lossy().into_owned(),
            )
        };
        let mut inputs = INPUTS.lock().unwrap_or_else(|p| p.into_inner());
        let Some(i) = inputs.iter_mut().find(|i| i.handle == ins as usize) else {
            return -1;
        };
        let ok = match k.as_str() {
            "alias" => {
                i.alias = Some(v.clone());
                true
            }
            "mem_buf_limit" => v
                .trim_end_matches(['B', 'b'])
                .trim_end_matches(['K', 'k', 'M', 'm', 'G', 'g'])
                .parse::<u64>()
                .is_ok(),
            "storage.type" => v == "memory" || v == "filesystem",
            _ => false,
        };
        if !ok {
            return -1;
        }
        i.properties.push((k, v));
        0
    }

    /// `flb_storage_input_create(cio, ins)`: only the host's own chunk I/O context works
    /// (any other pointer would crash the real Fluent Bit).
    pub extern "C" fn storage_input_create(cio: *mut c_void, ins: *mut c_void) -> c_int {
        let valid = VALID_CIO
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(cio as usize));
        assert!(
            valid,
            "flb_storage_input_create called with a pointer that is not config->cio"
        );
        let mut inputs = INPUTS.lock().unwrap_or_else(|p| p.into_inner());
        match inputs.iter_mut().find(|i| i.handle == ins as usize) {
            Some(i) => {
                i.storage = true;
                0
            }
            None => -1,
        }
    }

    /// `flb_input_instance_exit`.
    pub extern "C" fn input_instance_exit(ins: *mut c_void, _config: *mut c_void) {
        let mut inputs = INPUTS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = inputs.iter_mut().find(|i| i.handle == ins as usize) {
            i.initialized = false;
        }
    }

    /// `flb_input_instance_destroy`.
    pub extern "C" fn input_instance_destroy(ins: *mut c_void) {
        let mut inputs = INPUTS.lock().unwrap_or_else(|p| p.into_inner());
        let before = inputs.len();
        inputs.retain(|i| i.handle != ins as usize);
        if inputs.len() < before {
            // SAFETY: the handle made by Box::into_raw in input_new, released once.
            drop(unsafe { Box::from_raw(ins as *mut u64) });
        }
    }

    /// `flb_input_instance_init`.
    pub extern "C" fn input_instance_init(ins: *mut c_void, _config: *mut c_void) -> c_int {
        let mut inputs = INPUTS.lock().unwrap_or_else(|p| p.into_inner());
        match inputs.iter_mut().find(|i| i.handle == ins as usize) {
            Some(i) => {
                i.initialized = true;
                0
            }
            None => -1,
        }
    }

    /// `in_emitter_add_record(tag, tag_len, buf, size, emitter, source input)`: rejects a
    /// record sent by the emitter to itself, checks the buffer is msgpack records, and
    /// keeps (tag, bytes) for [`emitted`](super::emitted).
    pub extern "C" fn emitter_add_record(
        tag: *const c_char,
        tag_len: c_int,
        buf: *const c_char,
        size: usize,
        emitter: *mut c_void,
        source: *mut c_void,
    ) -> c_int {
        if tag.is_null() || buf.is_null() || emitter == source || source.is_null() {
            return -1;
        }
        // SAFETY: the caller's tag of tag_len bytes and buffer of size bytes.
        let (tag, data) = unsafe {
            (
                String::from_utf8_lossy(std::slice::from_raw_parts(
                    tag as *const u8,
                    tag_len.max(0) as usize,
                ))
                .into_owned(),
                std::slice::from_raw_parts(buf as *const u8, size).to_vec(),
            )
        };
        // Whole msgpack records (walked without recursion, as deep as they go).
        let records: Vec<_> = crate::core::chunk::Records::new(&data).collect();
        if records.is_empty() || records.iter().any(|r| r.is_err()) {
            return -1;
        }
        let alias = {
            let inputs = INPUTS.lock().unwrap_or_else(|p| p.into_inner());
            match inputs
                .iter()
                .find(|i| i.handle == emitter as usize && i.initialized)
            {
                Some(i) => {
                    // Fluent Bit 5.1.1 crashes in input_chunk_get() here when the input
                    // has no storage: fail the test instead.
                    assert!(i.storage, "emitter used without flb_storage_input_create");
                    i.alias.clone().unwrap_or_else(|| i.name.clone())
                }
                None => return -1,
            }
        };
        EMITTED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Emitted {
                emitter: alias,
                tag,
                data,
            });
        0
    }

    /// `flb_sched_ctx_get`: the engine's scheduler (any non-NULL handle here).
    pub extern "C" fn sched_ctx_get() -> *mut c_void {
        static SCHED: u64 = 0;
        &SCHED as *const u64 as *mut c_void
    }

    /// `flb_sched_timer_cb_create(sched, type, ms, cb, data, out_timer)`.
    pub extern "C" fn sched_timer_cb_create(
        sched: *mut c_void,
        _type: c_int,
        ms: c_int,
        cb: Option<extern "C" fn(*mut c_void, *mut c_void)>,
        data: *mut c_void,
        out_timer: *mut *mut c_void,
    ) -> c_int {
        let Some(cb) = cb else { return -1 };
        if sched.is_null() || ms <= 0 {
            return -1;
        }
        let handle = Box::into_raw(Box::new(0u64)) as *mut c_void;
        TIMERS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(EmuTimer {
                handle: handle as usize,
                ms,
                cb,
                data: data as usize,
            });
        if !out_timer.is_null() {
            // SAFETY: the caller's out pointer.
            unsafe { *out_timer = handle };
        }
        0
    }

    /// `flb_sched_timer_cb_destroy`.
    pub extern "C" fn sched_timer_cb_destroy(timer: *mut c_void) -> c_int {
        let mut timers = TIMERS.lock().unwrap_or_else(|p| p.into_inner());
        let before = timers.len();
        timers.retain(|t| t.handle != timer as usize);
        if timers.len() < before {
            // SAFETY: made by Box::into_raw in sched_timer_cb_create.
            drop(unsafe { Box::from_raw(timer as *mut u64) });
            0
        } else {
            -1
        }
    }

    /// `flb_config_map_get_raw`: present in Fluent Bit >= 5.0.3 only; the plugin looks it
    /// up to tell the config map layout and never calls it.
    pub extern "C" fn config_map_get_raw(_map: *mut c_void) -> *const c_char {
        std::ptr::null()
    }
}

/// An input instance created by the plugin (its emitter).
struct EmuInput {
    handle: usize,
    name: String,
    alias: Option<String>,
    properties: Vec<(String, String)>,
    initialized: bool,
    /// `flb_storage_input_create` was called for it.
    storage: bool,
}

static INPUTS: Mutex<Vec<EmuInput>> = Mutex::new(Vec::new());

/// A record (or several) handed to an emitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted {
    /// The emitter's alias.
    pub emitter: String,
    pub tag: String,
    pub data: Vec<u8>,
}

static EMITTED: Mutex<Vec<Emitted>> = Mutex::new(Vec::new());

/// Everything emitted so far through the emitter with this alias.
pub fn emitted(emitter: &str) -> Vec<Emitted> {
    EMITTED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|e| e.emitter == emitter)
        .cloned()
        .collect()
}

/// The handle of the input with this alias (to feed its records back to the filter).
pub fn input_handle(alias: &str) -> Option<*mut c_void> {
    INPUTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|i| i.alias.as_deref() == Some(alias))
        .map(|i| i.handle as *mut c_void)
}

/// The properties the plugin set on the input with this alias.
pub fn input_properties(alias: &str) -> Option<Vec<(String, String)>> {
    INPUTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|i| i.alias.as_deref() == Some(alias))
        .map(|i| i.properties.clone())
}

struct EmuTimer {
    handle: usize,
    ms: c_int,
    cb: extern "C" fn(*mut c_void, *mut c_void),
    data: usize,
}

static TIMERS: Mutex<Vec<EmuTimer>> = Mutex::new(Vec::new());

/// Defines the host functions under their C names in the calling binary (a test or a
/// tool that hosts the plugin). `export_host_symbols!()` plays Fluent Bit >= 5.0.3;
/// `export_host_symbols!(legacy)` plays 3.2 to 5.0.2 (no `flb_config_map_get_raw`).
#[macro_export]
macro_rules! export_host_symbols {
    () => {
        $crate::export_host_symbols!(@base);
        $crate::export_host_symbols!(@emitter);
        $crate::export_host_symbols!(@current);
    };
    (legacy) => {
        $crate::export_host_symbols!(@base);
        $crate::export_host_symbols!(@emitter);
    };
    (no_emitter) => {
        $crate::export_host_symbols!(@base);
        $crate::export_host_symbols!(@current);
    };
    (@current) => {
        #[no_mangle]
        pub extern "C" fn flb_config_map_get_raw(
            map: *mut ::std::ffi::c_void,
        ) -> *const ::std::ffi::c_char {
            $crate::host_emulator::host::config_map_get_raw(map)
        }
    };
    (@emitter) => {
        #[no_mangle]
        pub extern "C" fn flb_input_name_exists(
            name: *const ::std::ffi::c_char,
            config: *mut ::std::ffi::c_void,
        ) -> ::std::ffi::c_int {
            $crate::host_emulator::host::input_name_exists(name, config)
        }
        #[no_mangle]
        pub extern "C" fn flb_input_new(
            config: *mut ::std::ffi::c_void,
            plugin: *const ::std::ffi::c_char,
            data: *mut ::std::ffi::c_void,
            public_only: ::std::ffi::c_int,
        ) -> *mut ::std::ffi::c_void {
            $crate::host_emulator::host::input_new(config, plugin, data, public_only)
        }
        #[no_mangle]
        pub extern "C" fn flb_input_set_property(
            ins: *mut ::std::ffi::c_void,
            k: *const ::std::ffi::c_char,
            v: *const ::std::ffi::c_char,
        ) -> ::std::ffi::c_int {
            $crate::host_emulator::host::input_set_property(ins, k, v)
        }
        #[no_mangle]
        pub extern "C" fn flb_input_instance_init(
            ins: *mut ::std::ffi::c_void,
            config: *mut ::std::ffi::c_void,
        ) -> ::std::ffi::c_int {
            $crate::host_emulator::host::input_instance_init(ins, config)
        }
        #[no_mangle]
        pub extern "C" fn flb_storage_input_create(
            cio: *mut ::std::ffi::c_void,
            ins: *mut ::std::ffi::c_void,
        ) -> ::std::ffi::c_int {
            $crate::host_emulator::host::storage_input_create(cio, ins)
        }
        #[no_mangle]
        pub extern "C" fn flb_input_instance_exit(
            ins: *mut ::std::ffi::c_void,
            config: *mut ::std::ffi::c_void,
        ) {
            $crate::host_emulator::host::input_instance_exit(ins, config)
        }
        #[no_mangle]
        pub extern "C" fn flb_input_instance_destroy(ins: *mut ::std::ffi::c_void) {
            $crate::host_emulator::host::input_instance_destroy(ins)
        }
        #[no_mangle]
        pub extern "C" fn in_emitter_add_record(
            tag: *const ::std::ffi::c_char,
            tag_len: ::std::ffi::c_int,
            buf: *const ::std::ffi::c_char,
            size: usize,
            emitter: *mut ::std::ffi::c_void,
            source: *mut ::std::ffi::c_void,
        ) -> ::std::ffi::c_int {
            $crate::host_emulator::host::emitter_add_record(tag, tag_len, buf, size, emitter, source)
        }
        #[no_mangle]
        pub extern "C" fn flb_sched_ctx_get() -> *mut ::std::ffi::c_void {
            $crate::host_emulator::host::sched_ctx_get()
        }
        #[no_mangle]
        pub extern "C" fn flb_sched_timer_cb_create(
            sched: *mut ::std::ffi::c_void,
            type_: ::std::ffi::c_int,
            ms: ::std::ffi::c_int,
            cb: Option<extern "C" fn(*mut ::std::ffi::c_void, *mut ::std::ffi::c_void)>,
            data: *mut ::std::ffi::c_void,
            out_timer: *mut *mut ::std::ffi::c_void,
        ) -> ::std::ffi::c_int {
            $crate::host_emulator::host::sched_timer_cb_create(sched, type_, ms, cb, data, out_timer)
        }
        #[no_mangle]
        pub extern "C" fn flb_sched_timer_cb_destroy(
            timer: *mut ::std::ffi::c_void,
        ) -> ::std::ffi::c_int {
            $crate::host_emulator::host::sched_timer_cb_destroy(timer)
        }
    };
    (@base) => {
        #[no_mangle]
        pub extern "C" fn flb_filter_get_property(
            key: *const ::std::ffi::c_char,
            ins: *mut $crate::ffi::flb_filter_instance,
        ) -> *const ::std::ffi::c_char {
            $crate::host_emulator::host::filter_get_property(key, ins)
        }
        #[no_mangle]
        pub extern "C" fn flb_filter_set_context(
            ins: *mut $crate::ffi::flb_filter_instance,
            ctx: *mut ::std::ffi::c_void,
        ) {
            $crate::host_emulator::host::filter_set_context(ins, ctx)
        }
        #[no_mangle]
        pub extern "C" fn flb_filter_name(
            ins: *mut $crate::ffi::flb_filter_instance,
        ) -> *const ::std::ffi::c_char {
            $crate::host_emulator::host::filter_name(ins)
        }
        #[no_mangle]
        pub extern "C" fn flb_log_print(
            level: ::std::ffi::c_int,
            file: *const ::std::ffi::c_char,
            line: ::std::ffi::c_int,
            fmt: *const ::std::ffi::c_char,
            arg: *const ::std::ffi::c_char,
        ) {
            $crate::host_emulator::host::log_print(level, file, line, fmt, arg)
        }
    };
}

/// Where the built plugin is: `$PSSESSION_PLUGIN`, else next to the running binary
/// (`target/<profile>/` or its `deps/`), under its cargo name or its Fluent Bit name.
pub fn find_built_plugin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PSSESSION_PLUGIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let mut dirs = Vec::new();
    let mut d = exe.parent();
    for _ in 0..3 {
        if let Some(dir) = d {
            dirs.push(dir.to_path_buf());
            dirs.push(dir.join("deps"));
            d = dir.parent();
        }
    }
    // The newest build wins: `make build` leaves a renamed copy beside cargo's own file.
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for dir in dirs {
        for name in ["flb-filter_pssession.so", "libflb_filter_pssession.so"] {
            let p = dir.join(name);
            if let Ok(m) = std::fs::metadata(&p).and_then(|m| m.modified()) {
                if best.as_ref().is_none_or(|(t, _)| m > *t) {
                    best = Some((m, p));
                }
            }
        }
    }
    best.map(|(_, p)| p)
}

/// Gives the plugin its Fluent Bit file name (a symlink in a per-process directory) if it
/// has the cargo name, so it loads by the same rule Fluent Bit applies.
pub fn stage_plugin(built: &Path) -> std::io::Result<PathBuf> {
    if built
        .file_name()
        .is_some_and(|n| n == "flb-filter_pssession.so")
    {
        return Ok(built.to_path_buf());
    }
    let dir = std::env::temp_dir().join(format!("flb-pssession-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let link = dir.join("flb-filter_pssession.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(std::fs::canonicalize(built)?, &link)?;
    Ok(link)
}

/// The plugin, found, staged and loaded once per process.
pub fn shared_plugin() -> Result<&'static Plugin, EmuError> {
    static PLUGIN: OnceLock<Result<Plugin, EmuError>> = OnceLock::new();
    PLUGIN
        .get_or_init(|| {
            let built = find_built_plugin().ok_or_else(|| {
                EmuError::Load(
                    "built plugin not found (run `cargo build --release` or set PSSESSION_PLUGIN)"
                        .into(),
                )
            })?;
            let staged = stage_plugin(&built).map_err(|e| EmuError::Load(e.to_string()))?;
            Plugin::load(&staged)
        })
        .as_ref()
        .map_err(|e| e.clone())
}
