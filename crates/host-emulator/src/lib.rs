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

pub mod cmetrics;
pub mod engine;
pub mod headers;

pub use engine::{faults_about, Emitted};
use engine::{EmuInput, InputKind, Worker, EMITTED, INPUTS, LOST, TIMERS};
use headers::{
    flb_config_head, flb_config_map, flb_filter_plugin, flb_kv, mk_list, CONFIG_MAP_VALUE_CURRENT,
    CONFIG_MAP_VALUE_LEGACY, FLB_CONFIG_MAP_MULT, FLB_FILTER_LOGS, FLB_FILTER_MODIFIED,
    FLB_FILTER_NOTOUCH, FLB_LOG_DEBUG, FLB_LOG_ERROR, FLB_LOG_INFO, FLB_LOG_WARN,
};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};

/// `struct flb_filter_instance` as the emulator lays it out.
pub type EmuFilterInstance = headers::flb_filter_instance;

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

/// Forgets every logged line (a fuzz target calls this after each input: what a run
/// allocates, it frees, so LeakSanitizer's per-run check stays quiet and cheap).
pub fn clear_logs() {
    if let Ok(mut l) = LOGS.lock() {
        l.clear();
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
    /// 3.2.10: 32-byte `flb_config_map_val`, processors without conditions or profiles.
    Legacy,
    /// 5.1.1: 40-byte `flb_config_map_val` (since 5.0.3), processor metrics (since 5.0).
    Current,
}

impl HostLayout {
    /// What this process exports: `flb_config_map_get_raw` came with 5.0.3.
    pub fn of_this_process() -> HostLayout {
        // SAFETY: dlsym on the global scope with a NUL-terminated name.
        let current =
            !unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"flb_config_map_get_raw".as_ptr()) }
                .is_null();
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
    /// The loaded library; None for a registration linked into this process.
    _lib: Option<libloading::Library>,
    reg: Box<flb_filter_plugin>,
    pub name: String,
    pub path: PathBuf,
    pub config_map: Vec<MapEntry>,
}

// SAFETY: the registration copy is immutable after load; the library handle is Send+Sync.
unsafe impl Sync for Plugin {}
// SAFETY: as above: nothing in it is tied to the thread that loaded it.
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
        Plugin::registered(Some(lib.into()), reg, name, path)
    }

    /// The registration of a plugin linked into this process (the fuzz targets), checked
    /// and copied as [`load`](Self::load) does after `dlsym`.
    ///
    /// # Safety
    /// `reg` points to a `struct flb_filter_plugin` that lives as long as the process,
    /// laid out as this process's Fluent Bit headers say.
    pub unsafe fn linked(reg: *const flb_filter_plugin, name: &str) -> Result<Plugin, EmuError> {
        if reg.is_null() {
            return Err(EmuError::Load("registration is NULL".into()));
        }
        // SAFETY: the caller's promise; memcpy as flb_plugin_load does.
        let reg = Box::new(unsafe { std::ptr::read(reg) });
        let path = PathBuf::from(format!("(linked) flb-filter_{name}.so"));
        Plugin::registered(None, reg, name.to_string(), &path)
    }

    /// The checks Fluent Bit makes of a registration before it uses it.
    fn registered(
        lib: Option<libloading::Library>,
        reg: Box<flb_filter_plugin>,
        name: String,
        path: &Path,
    ) -> Result<Plugin, EmuError> {
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
            _lib: lib,
            reg,
            name,
            path: path.to_path_buf(),
            config_map,
        })
    }

    /// Creates a pipeline filter instance and runs Fluent Bit's start-up on it: instance
    /// properties, `Match` check, config-map property check, then `cb_init`.
    pub fn instance(&self, properties: &[(&str, &str)]) -> Result<Instance<'_>, EmuError> {
        self.instance_in(Placement::Filter, properties)
    }

    /// [`instance`](Self::instance) placed as Fluent Bit places it: a processor's instance
    /// hangs from a processor unit and a processor (in the emulated release's layout) whose
    /// parent is an input or an output; a threaded input's processor starts on that
    /// input's own thread, inside the walk of `flb_input_init_all`.
    pub fn instance_in(
        &self,
        placement: Placement,
        properties: &[(&str, &str)],
    ) -> Result<Instance<'_>, EmuError> {
        let mut inst = self.new_instance(placement);
        let mut properties = properties.to_vec();
        if placement != Placement::Filter
            && !properties
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("match"))
        {
            // flb_processor_unit_create: "just set to workaround the pipeline initializer"
            properties.push(("match", "*"));
        }
        inst.apply_properties(&properties)?;
        inst.hang_from_parent(placement);
        let inst_name = inst.name();
        let before = logs_containing(&format!(":{inst_name}]")).len();
        let cb_init = self
            .reg
            .cb_init
            .ok_or_else(|| EmuError::Load("no cb_init".into()))?;
        let (ins, cfg, id) = (
            SendPtr(inst.ins_ptr() as usize),
            SendPtr(inst.config.as_ptr() as usize),
            inst.ffi.id,
        );
        let in_walk = matches!(placement, Placement::InputProcessor { .. });
        let init = move || {
            engine::set_input_init_walk(in_walk);
            let ret = engine::as_owner(id, || {
                cb_init(
                    ins.0 as *mut c_void,
                    cfg.0 as *mut c_void,
                    std::ptr::null_mut(),
                )
            });
            engine::set_input_init_walk(false);
            ret
        };
        let ret = match &inst.worker {
            Some(w) => w.run(init),
            None => init(),
        };
        if ret != 0 {
            let mut lines: Vec<String> = logs_containing(&format!(":{inst_name}]"))
                .into_iter()
                .skip(before)
                .map(|l| l.to_string())
                .collect();
            lines.push(format!("Failed initialize filter {inst_name}"));
            return Err(EmuError::Init(lines));
        }
        inst.initialized = true;
        cmetrics::started(inst.ffi.cmt as usize);
        Ok(inst)
    }

    /// `flb_filter_new`: a zeroed instance named `<plugin>.<id>` with an empty property
    /// list.
    fn new_instance(&self, placement: Placement) -> Instance<'_> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        // SAFETY: every field of the C struct is an integer, a pointer or an array of
        // them, for which all-zero is the calloc state flb_filter_new starts from.
        let mut ffi: Box<EmuFilterInstance> = Box::new(unsafe { std::mem::zeroed() });
        ffi.event_type = FLB_FILTER_LOGS;
        ffi.id = id;
        ffi.log_level = -1;
        ffi.notification_channel = -1;
        ffi.p = &*self.reg as *const flb_filter_plugin as *mut flb_filter_plugin;
        let head: *mut mk_list = &mut ffi.properties;
        ffi.properties.prev = head;
        ffi.properties.next = head;
        let inst_name = format!("{}.{}", self.name, id);
        for (i, b) in inst_name.bytes().take(31).enumerate() {
            ffi.name[i] = b as c_char;
        }
        // flb_filter_init: the instance's cmetrics context and Fluent Bit's own counters
        let (cmt, cmt_records) = cmetrics::create_context(id);
        ffi.cmt = cmt as *mut c_void;
        ffi.cmt_records = cmt_records as *mut c_void;
        let worker = match placement {
            Placement::InputProcessor { threaded: true, .. } => {
                Some(Worker::start(&format!("flb-in-tail.{id}-w0")))
            }
            _ => None,
        };
        let config = EmuConfig::new(HostLayout::of_this_process());
        // flb_filter_new: `ins->config = config`
        ffi.config = config.as_ptr() as *mut c_void;
        Instance {
            plugin: self,
            ffi,
            strings: Vec::new(),
            initialized: false,
            config,
            placement,
            parent: ProcessorParent::None,
            source: Instance::filter_source() as usize,
            worker,
        }
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
        let mut m = map as *const flb_config_map<V>;
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

/// Stand-in for `struct flb_config`: its head as in every release (`is_shutting_down`,
/// `flush`), and `void *cio` at the emulated release's offset (the exported
/// `service_configs[]` says where, through `storage.path` right after it), pointing to an
/// opaque chunk I/O context.
pub struct EmuConfig {
    bytes: Box<[u64; headers::CONFIG_WORDS]>,
    cio: Box<[u64; 17]>,
}

impl EmuConfig {
    fn new(layout: HostLayout) -> EmuConfig {
        let (off, grace) = match layout {
            HostLayout::Current => (headers::CONFIG_CIO_5_1_1, headers::CONFIG_GRACE_5_1_1),
            HostLayout::Legacy => (headers::CONFIG_CIO_3_2_10, headers::CONFIG_GRACE_3_2_10),
        };
        let cio = Box::new([0u64; 17]);
        let mut bytes = Box::new([0u64; headers::CONFIG_WORDS]);
        bytes[off / 8] = &*cio as *const [u64; 17] as u64;
        // the low int of its word; the [SERVICE] value this thread set, 5 by default
        bytes[grace / 8] = SERVICE_GRACE.with(|g| g.get()) as u32 as u64;
        let flush = std::mem::offset_of!(flb_config_head, flush) / 8;
        bytes[flush] = 1.0f64.to_bits();
        VALID_CIO
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(&*cio as *const [u64; 17] as usize);
        EmuConfig { bytes, cio }
    }

    fn as_ptr(&self) -> *const u8 {
        self.bytes.as_ptr() as *const u8
    }

    /// `config->is_shutting_down`, as `flb_engine_stop_ingestion` sets it.
    fn set_shutting_down(&mut self) {
        let head = self.bytes.as_mut_ptr() as *mut flb_config_head;
        // SAFETY: the config head lies inside `bytes`.
        unsafe { (*head).is_shutting_down = 1 };
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

thread_local! {
    static SERVICE_GRACE: std::cell::Cell<i32> = const { std::cell::Cell::new(5) };
}

/// The `[SERVICE] grace` of configurations this thread creates from now on (default 5).
pub fn set_service_grace(seconds: i32) {
    SERVICE_GRACE.with(|g| g.set(seconds));
}

/// Where Fluent Bit runs the filter instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A pipeline filter.
    Filter,
    /// A processor of an input (on that input's own thread when `threaded`), at `stage`.
    InputProcessor { threaded: bool, stage: usize },
    /// A processor of an output.
    OutputProcessor,
}

/// The processor unit and processor a processor instance hangs from, in the emulated
/// release's layout (kept alive as long as the instance; the plugin reads them through
/// `ins->parent_processor`).
#[allow(dead_code)]
enum ProcessorParent {
    None,
    Legacy(
        Box<headers::flb_processor_unit_3_2>,
        Box<headers::flb_processor_3_2>,
    ),
    Current(
        Box<headers::flb_processor_unit_5_1>,
        Box<headers::flb_processor_5_1>,
    ),
}

/// A raw pointer carried to the input thread.
#[derive(Clone, Copy)]
struct SendPtr(usize);

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
    placement: Placement,
    parent: ProcessorParent,
    /// The input (or, for an output processor, the output) passed as `cb_filter`'s
    /// fifth argument.
    source: usize,
    /// The input's own thread, for a processor of a threaded input.
    worker: Option<Worker>,
}

// SAFETY: after start-up the instance is only read (by the host functions), and Fluent Bit
// itself calls a filter from several threads at once; the plugin must cope, and the tests
// check that it does.
unsafe impl Sync for Instance<'_> {}
// SAFETY: its raw pointers are its own allocations (and a threaded input's worker, which
// it joins before it frees them), valid wherever the instance goes.
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
    /// The input handle the emulator passes to a pipeline filter as the chunk's source.
    fn filter_source() -> *mut c_void {
        static SOURCE: u64 = 0;
        &SOURCE as *const u64 as *mut c_void
    }

    /// `flb_filter_set_property` for each property (core ones into the struct, the rest
    /// into the list), then `flb_filter_init`'s checks.
    fn apply_properties(&mut self, properties: &[(&str, &str)]) -> Result<(), EmuError> {
        let mut errors = Vec::new();
        for (k, v) in properties {
            match k.to_ascii_lowercase().as_str() {
                "match" => self.ffi.match_ = self.keep(v),
                "alias" => self.ffi.alias = self.keep(v),
                "log_level" => match log_level_of(v) {
                    Some(l) => self.ffi.log_level = l,
                    None => errors.push(format!("[config] invalid log_level '{v}'")),
                },
                "match_regex" | "log_suppress_interval" => {}
                _ => self.push_kv(k, v),
            }
        }
        if !errors.is_empty() {
            return Err(EmuError::Init(errors));
        }
        if self.ffi.match_.is_null() {
            return Err(EmuError::Init(vec![format!(
                "[filter] NO match rule for {} filter instance, unloading.",
                self.name()
            )]));
        }
        if self.ffi.log_level == -1 {
            self.ffi.log_level = FLB_LOG_INFO;
        }
        self.property_check().map_err(|e| {
            EmuError::Init(vec![
                e,
                format!("try the command: fluent-bit -F {} -h", self.plugin.name),
            ])
        })
    }

    /// `flb_processor_create` + `flb_processor_unit_create` for a processor placement, in
    /// the emulated release's layout: `ins->parent_processor` is the unit, the unit's
    /// `parent` the processor, whose `data` is the input or output.
    fn hang_from_parent(&mut self, placement: Placement) {
        let (source, type_, stage) = match placement {
            Placement::Filter => return,
            Placement::InputProcessor { stage, .. } => (
                engine::configured_input(&format!("tail.{}", self.ffi.id), self.ffi.id),
                headers::FLB_PLUGIN_INPUT,
                stage,
            ),
            Placement::OutputProcessor => {
                let out = Box::into_raw(Box::new([0u64; 8])) as usize;
                engine::OUTPUTS
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((
                        out,
                        CString::new(format!("null.{}", self.ffi.id)).unwrap_or_default(),
                    ));
                (out, headers::FLB_PLUGIN_OUTPUT, 0)
            }
        };
        self.source = source;
        let ins = self.ins_ptr() as *mut c_void;
        let config = self.config.as_ptr() as *mut c_void;
        // SAFETY: all-zero is the calloc state of these C structs (integers, pointers,
        // lists and a mutex Fluent Bit initialises before use; this one is never locked).
        let (unit, parent) = unsafe {
            match HostLayout::of_this_process() {
                HostLayout::Current => {
                    let mut p: Box<headers::flb_processor_5_1> = Box::new(std::mem::zeroed());
                    let mut u: Box<headers::flb_processor_unit_5_1> = Box::new(std::mem::zeroed());
                    (p.data, p.source_plugin_type, p.config) =
                        (source as *mut c_void, type_, config);
                    p.stage_count = stage + 1;
                    (u.stage, u.ctx, u.parent) = (stage, ins, &mut *p as *mut _ as *mut c_void);
                    let unit = &mut *u as *mut _ as *mut c_void;
                    (unit, ProcessorParent::Current(u, p))
                }
                HostLayout::Legacy => {
                    let mut p: Box<headers::flb_processor_3_2> = Box::new(std::mem::zeroed());
                    let mut u: Box<headers::flb_processor_unit_3_2> = Box::new(std::mem::zeroed());
                    (p.data, p.source_plugin_type, p.config) =
                        (source as *mut c_void, type_, config);
                    p.stage_count = stage + 1;
                    (u.stage, u.ctx, u.parent) = (stage, ins, &mut *p as *mut _ as *mut c_void);
                    let unit = &mut *u as *mut _ as *mut c_void;
                    (unit, ProcessorParent::Legacy(u, p))
                }
            }
        };
        self.ffi.parent_processor = unit;
        self.parent = parent;
    }

    /// The handle of the processor's parent input (None for a filter or an output
    /// processor).
    pub fn parent_input(&self) -> Option<*mut c_void> {
        matches!(self.placement, Placement::InputProcessor { .. })
            .then_some(self.source as *mut c_void)
    }

    /// The label records re-injected into the parent input are listed under by
    /// [`emitted`].
    pub fn parent_input_name(&self) -> Option<String> {
        let h = self.parent_input()? as usize;
        engine::with_input(h, |i| i.label())
    }

    /// `flb_engine_stop_ingestion`, as at a shutdown or a hot reload: sets
    /// `config->is_shutting_down` and pauses every input of this instance (the emitter
    /// and the parent input) through their `cb_pause`. Timers keep running (the grace
    /// period) until the instance is dropped.
    pub fn stop_ingestion(&mut self) {
        self.config.set_shutting_down();
        let id = self.ffi.id;
        for i in INPUTS.lock().unwrap_or_else(|p| p.into_inner()).iter_mut() {
            if i.owner == id {
                i.engine_paused = true;
            }
        }
    }

    /// Sets the `mem_buf_limit` state of this instance's inputs (paused: they refuse
    /// `flb_input_log_append`).
    pub fn set_inputs_full(&self, full: bool) {
        let id = self.ffi.id;
        for i in INPUTS.lock().unwrap_or_else(|p| p.into_inner()).iter_mut() {
            if i.owner == id {
                i.mem_paused = full;
            }
        }
    }

    /// Every series on the instance's cmetrics context (Fluent Bit's own filter counters,
    /// which the emulator leaves at no value, and the plugin's), as a scrape shows them.
    pub fn metrics(&self) -> Vec<cmetrics::Series> {
        cmetrics::series_of(self.ffi.cmt as usize)
    }

    /// The value of the series `name` (the full name, e.g.
    /// `fluentbit_filter_pssession_records_total`) whose labels include `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.metrics()
            .into_iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .map(|s| s.value)
    }

    /// Faults the real engine would have shown for this instance (crash or lost record).
    pub fn faults(&self) -> Vec<String> {
        engine::faults_about(&format!("[owner:{}]", self.ffi.id))
    }

    /// The id Fluent Bit gave the instance.
    pub fn id(&self) -> i32 {
        self.ffi.id
    }

    fn ins_ptr(&self) -> *mut EmuFilterInstance {
        &*self.ffi as *const EmuFilterInstance as *mut EmuFilterInstance
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

    /// Runs this instance's timers once, as the engine does when they expire, each on the
    /// thread of the scheduler it was created on. Returns how many ran.
    pub fn fire_timers(&self) -> usize {
        self.fire_timers_within(i32::MAX)
    }

    /// [`fire_timers`](Self::fire_timers) for the timers of at most `ms`.
    fn fire_timers_within(&self, ms: i32) -> usize {
        let ctx = self.ffi.context as usize;
        let (cfg, id) = (SendPtr(self.config.as_ptr() as usize), self.ffi.id);
        let fire = move || {
            let here = engine::scheduler();
            let due: Vec<_> = TIMERS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|t| t.data == ctx && t.sched == here && t.ms <= ms)
                .map(|t| (t.cb, t.data))
                .collect();
            engine::as_owner(id, || {
                for (cb, data) in &due {
                    cb(cfg.0 as *mut c_void, *data as *mut c_void);
                }
            });
            due.len()
        };
        match &self.worker {
            Some(w) => w.run(fire),
            None => fire(),
        }
    }

    /// The grace period of a stop: the engine's loop keeps running for about a second
    /// before it checks what is left to flush, so the timers of a second or less fire
    /// (once each here); longer ones do not.
    pub fn grace(&self) -> usize {
        self.fire_timers_within(1000)
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

    /// What Fluent Bit passes as `cb_filter`'s fifth argument: the chunk's input for a
    /// filter, the processor's parent (an input, or an output) for a processor.
    pub fn source_input(&self) -> *mut c_void {
        self.source as *mut c_void
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
            .map(|kv| {
                // SAFETY: keys are sds strings made by push_kv.
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

    /// Calls `cb_filter` as `flb_filter_do` (or `flb_processor_run`) does, on the thread
    /// that runs this placement: (code, the returned buffer copied, or None).
    fn call_filter(
        &self,
        chunk: &[u8],
        tag: &str,
        source: *mut c_void,
    ) -> (c_int, Option<Vec<u8>>) {
        let Some(cb) = self.plugin.reg.cb_filter else {
            return (FLB_FILTER_NOTOUCH, None);
        };
        let ctag = CString::new(tag.replace('\0', "")).unwrap_or_default();
        let (data, len) = (SendPtr(chunk.as_ptr() as usize), chunk.len());
        let (tag_ptr, tag_len) = (SendPtr(ctag.as_ptr() as usize), tag.len() as c_int);
        let (ins, ctx) = (
            SendPtr(self.ins_ptr() as usize),
            SendPtr(self.ffi.context as usize),
        );
        let (src, cfg, id) = (
            SendPtr(source as usize),
            SendPtr(self.config.as_ptr() as usize),
            self.ffi.id,
        );
        let call = move || {
            let mut out_buf: *mut c_void = std::ptr::null_mut();
            let mut out_size: usize = 0;
            let code = engine::as_owner(id, || {
                cb(
                    data.0 as *const c_void,
                    len,
                    tag_ptr.0 as *const c_char,
                    tag_len,
                    &mut out_buf,
                    &mut out_size,
                    ins.0 as *mut c_void,
                    src.0 as *mut c_void,
                    ctx.0 as *mut c_void,
                    cfg.0 as *mut c_void,
                )
            });
            let out = (!out_buf.is_null()).then(|| {
                // SAFETY: the plugin hands over out_size bytes at out_buf.
                let v =
                    unsafe { std::slice::from_raw_parts(out_buf as *const u8, out_size) }.to_vec();
                // SAFETY: Fluent Bit frees the buffer with free(); so do we.
                unsafe { libc::free(out_buf) };
                v
            });
            (code, out)
        };
        // The chunk and tag outlive the call: `run` waits for it to finish.
        match &self.worker {
            Some(w) => w.run(call),
            None => call(),
        }
    }

    /// Calls `cb_filter` and releases any returned buffer, returning the callback's code and
    /// the output size: the bare cost of the filter, for benchmarks.
    pub fn filter_discard(&self, chunk: &[u8]) -> (c_int, usize) {
        let (code, out) = self.call_filter(chunk, "bench", self.source_input());
        (code, out.map_or(0, |o| o.len()))
    }

    /// Calls `cb_filter` as `flb_filter_do` does and returns what goes on.
    pub fn filter(&self, chunk: &[u8], tag: &str) -> FilterCall {
        self.filter_from(chunk, tag, self.source_input())
    }

    /// [`filter`](Self::filter) with a chosen source input (e.g. the plugin's own emitter).
    pub fn filter_from(&self, chunk: &[u8], tag: &str, source: *mut c_void) -> FilterCall {
        let (code, out) = self.call_filter(chunk, tag, source);
        match code {
            FLB_FILTER_MODIFIED => FilterCall {
                code,
                chunk: out.unwrap_or_default(),
            },
            _ => {
                assert!(
                    out.is_none(),
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
    /// Fluent Bit's shutdown order: a threaded input's thread (and its scheduler) ends
    /// first, the router stops, then `cb_exit` runs on the engine thread.
    fn drop(&mut self) {
        if let Some(mut w) = self.worker.take() {
            w.stop();
        }
        let id = self.ffi.id;
        for i in INPUTS.lock().unwrap_or_else(|p| p.into_inner()).iter_mut() {
            if i.owner == id {
                i.router_down = true;
            }
        }
        // flb_filter_instance_exit: cb_exit only when a context was set.
        if self.initialized && !self.ffi.context.is_null() {
            if let Some(cb_exit) = self.plugin.reg.cb_exit {
                let (ctx, cfg) = (self.ffi.context, self.config.as_ptr() as *mut c_void);
                engine::as_owner(id, || cb_exit(ctx, cfg));
            }
        }
        // flb_input_exit_all: the inputs of this (emulated) configuration go with it, so a
        // reload's next generation can create its emitter under the same name.
        INPUTS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|i| {
                if i.owner == id {
                    // SAFETY: every input handle is a Box<u64> made by input_new or
                    // configured_input, and leaves the registry (and is freed) once.
                    drop(unsafe { Box::from_raw(i.handle as *mut u64) });
                }
                i.owner != id
            });
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
        // flb_filter_instance_destroy: cmt_destroy(ins->cmt)
        cmetrics::destroy_context(self.ffi.cmt as usize);
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
///
/// # Safety
/// Each is called as Fluent Bit's function of the same name: with the pointers its C
/// prototype promises (NUL-terminated strings, buffers of the given sizes, instances and
/// inputs this emulator made, or NULL where the original accepts it).
#[allow(clippy::missing_safety_doc)] // one contract for all, stated above
pub mod host {
    use super::*;

    fn text(p: *const c_char) -> String {
        // SAFETY: a C string from the caller.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    fn fault(owner: i32, what: String) {
        engine::fault(format!("[owner:{owner}] {what}"));
    }

    /// `flb_filter_get_property` -> `flb_kv_get_key_value`: first property whose key has
    /// the same length and matches case-insensitively.
    pub unsafe extern "C" fn filter_get_property(
        key: *const c_char,
        ins: *mut c_void,
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
    pub unsafe extern "C" fn filter_set_context(ins: *mut c_void, ctx: *mut c_void) {
        if !ins.is_null() {
            // SAFETY: `ins` is an EmuFilterInstance.
            unsafe { (*(ins as *mut EmuFilterInstance)).context = ctx };
        }
    }

    /// `flb_filter_name`: the alias if set, else the numbered name.
    pub unsafe extern "C" fn filter_name(ins: *mut c_void) -> *const c_char {
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
    pub unsafe extern "C" fn log_print(
        level: c_int,
        _file: *const c_char,
        _line: c_int,
        fmt: *const c_char,
        arg: *const c_char,
    ) {
        if fmt.is_null() {
            return;
        }
        let f = text(fmt);
        let text = if f == "%s" && !arg.is_null() {
            text(arg)
        } else {
            format!("(unformatted) {f}")
        };
        record_log(LogLine { level, text });
    }

    /// `flb_input_name_exists`: whether an input has this name or alias.
    pub unsafe extern "C" fn input_name_exists(name: *const c_char, _config: *mut c_void) -> c_int {
        if name.is_null() {
            return 0;
        }
        let name = text(name);
        let inputs = INPUTS.lock().unwrap_or_else(|p| p.into_inner());
        inputs
            .iter()
            .any(|i| i.alias.as_deref() == Some(&name) || i.name == name) as c_int
    }

    /// `flb_input_name(ins)`: the input's alias, or its name (NULL for a pointer that is
    /// not an input).
    pub unsafe extern "C" fn input_name(ins: *mut c_void) -> *const c_char {
        engine::with_input(ins as usize, |i| {
            let label = i.label();
            if i.c_label
                .as_ref()
                .is_none_or(|c| c.to_bytes() != label.as_bytes())
            {
                i.c_label = Some(CString::new(label).unwrap_or_default());
            }
            i.c_label.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
        })
        .unwrap_or(std::ptr::null())
    }

    /// `flb_output_name(ins)`: the output's name (NULL for a pointer that is not an
    /// output).
    pub unsafe extern "C" fn output_name(ins: *mut c_void) -> *const c_char {
        engine::output_name(ins as usize).unwrap_or(std::ptr::null())
    }

    /// `flb_input_new(config, plugin, data, public_only)`: only the `emitter` plugin exists
    /// here (it is private, so `public_only` must be false, as for rewrite_tag). Called
    /// from an input processor's `cb_init`, inside `flb_input_init_all`'s walk of
    /// `config->inputs`, the new input is appended to the list being walked and is
    /// initialised a second time: a fault.
    pub unsafe extern "C" fn input_new(
        _config: *mut c_void,
        plugin: *const c_char,
        _data: *mut c_void,
        public_only: c_int,
    ) -> *mut c_void {
        if plugin.is_null() || text(plugin) != "emitter" || public_only != 0 {
            return std::ptr::null_mut();
        }
        let owner = engine::owner();
        if engine::in_input_init_walk() {
            fault(
                owner,
                "input created by an input processor's cb_init during flb_input_init_all: \
                 it is initialised twice"
                    .into(),
            );
        }
        // Fluent Bit numbers the instances of a plugin in the order they are created.
        static NEXT_EMITTER: AtomicI32 = AtomicI32::new(0);
        let id = NEXT_EMITTER.fetch_add(1, Ordering::Relaxed);
        let mut inputs = INPUTS.lock().unwrap_or_else(|p| p.into_inner());
        let handle = Box::into_raw(Box::new(id as u64)) as *mut c_void;
        inputs.push(EmuInput {
            c_label: None,
            handle: handle as usize,
            name: format!("emitter.{id}"),
            alias: None,
            properties: Vec::new(),
            initialized: false,
            storage: false,
            kind: InputKind::Emitter,
            engine_paused: false,
            mem_paused: false,
            router_down: false,
            owner,
        });
        handle
    }

    /// `flb_input_set_property`: the core input properties the plugin may set.
    pub unsafe extern "C" fn input_set_property(
        ins: *mut c_void,
        k: *const c_char,
        v: *const c_char,
    ) -> c_int {
        if k.is_null() || v.is_null() {
            return -1;
        }
        let (k, v) = (text(k), text(v));
        let ok = match k.as_str() {
            "alias" => true,
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
        engine::with_input(ins as usize, |i| {
            if k == "alias" {
                i.alias = Some(v.clone());
            }
            i.properties.push((k, v));
            0
        })
        .unwrap_or(-1)
    }

    /// `flb_storage_input_create(cio, ins)`: only the host's own chunk I/O context works
    /// (any other pointer crashes the real Fluent Bit).
    pub unsafe extern "C" fn storage_input_create(cio: *mut c_void, ins: *mut c_void) -> c_int {
        let valid = VALID_CIO
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(cio as usize));
        if !valid {
            fault(
                engine::owner(),
                "flb_storage_input_create with a pointer that is not config->cio".into(),
            );
            return -1;
        }
        engine::with_input(ins as usize, |i| {
            i.storage = true;
            0
        })
        .unwrap_or(-1)
    }

    /// `flb_input_instance_exit`.
    pub unsafe extern "C" fn input_instance_exit(ins: *mut c_void, _config: *mut c_void) {
        engine::with_input(ins as usize, |i| i.initialized = false);
    }

    /// `flb_input_instance_destroy`.
    pub unsafe extern "C" fn input_instance_destroy(ins: *mut c_void) {
        let mut inputs = INPUTS.lock().unwrap_or_else(|p| p.into_inner());
        let before = inputs.len();
        inputs.retain(|i| i.handle != ins as usize);
        if inputs.len() < before {
            // SAFETY: the handle made by Box::into_raw in input_new, released once.
            drop(unsafe { Box::from_raw(ins as *mut u64) });
        }
    }

    /// `flb_input_instance_init`.
    pub unsafe extern "C" fn input_instance_init(ins: *mut c_void, _config: *mut c_void) -> c_int {
        engine::with_input(ins as usize, |i| {
            i.initialized = true;
            0
        })
        .unwrap_or(-1)
    }

    /// The caller's tag and whole msgpack records, or None when the buffer is not records.
    fn tag_and_records(
        tag: *const c_char,
        tag_len: usize,
        buf: *const c_void,
        size: usize,
    ) -> Option<(String, Vec<u8>)> {
        if tag.is_null() || buf.is_null() || size == 0 {
            return None;
        }
        // SAFETY: the caller's tag of tag_len bytes and buffer of size bytes.
        let (tag, data) = unsafe {
            (
                String::from_utf8_lossy(std::slice::from_raw_parts(tag as *const u8, tag_len))
                    .into_owned(),
                std::slice::from_raw_parts(buf as *const u8, size).to_vec(),
            )
        };
        let records: Vec<_> = pssession_core::chunk::Records::new(&data).collect();
        (!records.is_empty() && records.iter().all(|r| r.is_ok())).then_some((tag, data))
    }

    /// Why an input does not take appended records, as the real engine behaves.
    enum Refusal {
        /// Not initialised, or over its memory limit: -1, nothing lost.
        Refused,
        /// Not an input at all: a fault.
        NotAnInput,
        /// An emitter without storage: Fluent Bit 5.1.1 crashes in input_chunk_get().
        NoStorage,
        /// The router stopped: accepted by nothing, lost.
        RouterDown,
        /// Stages skipped on an input that is not the processor's parent.
        NotTheParent,
        /// 3.2 to 4.0.2 after the stop: accepted (0), but its chunk is never flushed.
        LostInGrace,
    }

    /// Whether the input `ins` takes records now (its label), or why not.
    fn input_verdict(ins: *mut c_void, stage: Option<usize>) -> Result<String, Refusal> {
        engine::with_input(ins as usize, |i| {
            if !i.initialized {
                Err(Refusal::Refused)
            } else if i.kind == InputKind::Emitter && !i.storage {
                Err(Refusal::NoStorage)
            } else if i.router_down {
                Err(Refusal::RouterDown)
            } else if i.mem_paused {
                Err(Refusal::Refused)
            } else if i.engine_paused && HostLayout::of_this_process() == HostLayout::Legacy {
                Err(Refusal::LostInGrace)
            } else if stage.is_some() && i.kind != InputKind::Configured {
                Err(Refusal::NotTheParent)
            } else {
                Ok(i.label())
            }
        })
        .unwrap_or(Err(Refusal::NotAnInput))
    }

    /// `flb_input_log_append` and its `_skip_processor_stages` form: the records go into
    /// an input chunk of `ins` (-1 when its buffer is over its limit). An input paused by
    /// the engine still takes them. After the router stopped, or into anything that is
    /// not an input, they are lost: a fault.
    fn append(
        ins: *mut c_void,
        stage: Option<usize>,
        tag: *const c_char,
        tag_len: usize,
        buf: *const c_void,
        size: usize,
    ) -> c_int {
        let owner = engine::owner();
        if engine::is_output(ins as usize) {
            fault(owner, "an output instance was used as an input".into());
            return -1;
        }
        let Some((tag, data)) = tag_and_records(tag, tag_len, buf, size) else {
            return -1;
        };
        let (fault_text, code) = match input_verdict(ins, stage) {
            Ok(label) => {
                let e = Emitted {
                    emitter: label,
                    tag,
                    data,
                    stage,
                };
                EMITTED.lock().unwrap_or_else(|p| p.into_inner()).push(e);
                return 0;
            }
            Err(Refusal::Refused) => return -1,
            Err(Refusal::NotAnInput) => ("records appended to a pointer that is not an input".to_string(), -1),
            Err(Refusal::NoStorage) => ("emitter used without flb_storage_input_create".to_string(), -1),
            Err(Refusal::RouterDown) => (format!("{tag} records appended after the router stopped: lost"), -1),
            Err(Refusal::NotTheParent) => ("processor stages skipped on an input that is not the processor's".to_string(), -1),
            Err(Refusal::LostInGrace) => (format!("{tag} records appended during the grace period of a release that does not flush them: lost"), 0),
        };
        fault(owner, fault_text);
        code
    }

    /// `flb_input_log_append(ins, tag, tag_len, buf, size)`.
    pub unsafe extern "C" fn input_log_append(
        ins: *mut c_void,
        tag: *const c_char,
        tag_len: usize,
        buf: *const c_void,
        size: usize,
    ) -> c_int {
        append(ins, None, tag, tag_len, buf, size)
    }

    /// `flb_input_log_append_skip_processor_stages(ins, stage, tag, tag_len, buf, size)`.
    pub unsafe extern "C" fn input_log_append_skip_processor_stages(
        ins: *mut c_void,
        stage: usize,
        tag: *const c_char,
        tag_len: usize,
        buf: *const c_void,
        size: usize,
    ) -> c_int {
        append(ins, Some(stage), tag, tag_len, buf, size)
    }

    /// `in_emitter_add_record(tag, tag_len, buf, size, emitter, source input)` as in
    /// 5.1.1: rejects a record sent by the emitter to itself; a paused emitter still
    /// answers 0 but its queue is never ingested again (the records are lost).
    pub unsafe extern "C" fn emitter_add_record(
        tag: *const c_char,
        tag_len: c_int,
        buf: *const c_char,
        size: usize,
        emitter: *mut c_void,
        source: *mut c_void,
    ) -> c_int {
        if emitter == source || source.is_null() {
            return -1;
        }
        let Some((tag, data)) =
            tag_and_records(tag, tag_len.max(0) as usize, buf as *const c_void, size)
        else {
            return -1;
        };
        let Some((label, paused)) =
            engine::with_input(emitter as usize, |i| (i.label(), i.engine_paused))
        else {
            return -1;
        };
        let e = Emitted {
            emitter: label,
            tag,
            data,
            stage: None,
        };
        if paused {
            LOST.lock().unwrap_or_else(|p| p.into_inner()).push(e);
            fault(
                engine::owner(),
                "records handed to a paused emitter: lost".into(),
            );
        } else {
            EMITTED.lock().unwrap_or_else(|p| p.into_inner()).push(e);
        }
        0
    }

    /// `flb_sched_ctx_get`: the calling thread's scheduler.
    pub unsafe extern "C" fn sched_ctx_get() -> *mut c_void {
        engine::scheduler() as *mut c_void
    }

    /// `flb_sched_timer_cb_create(sched, type, ms, cb, data, out_timer)`.
    pub unsafe extern "C" fn sched_timer_cb_create(
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
            .push(engine::EmuTimer {
                handle: handle as usize,
                ms,
                cb,
                data: data as usize,
                sched: sched as usize,
                thread: std::thread::current().id(),
            });
        if !out_timer.is_null() {
            // SAFETY: the caller's out pointer.
            unsafe { *out_timer = handle };
        }
        0
    }

    /// `flb_sched_timer_cb_destroy`: only on the thread of the timer's scheduler. A
    /// timer of a thread that ended went with its scheduler; touching it from another
    /// thread is the SIGSEGV of flb_scheduler.c:732.
    pub unsafe extern "C" fn sched_timer_cb_destroy(timer: *mut c_void) -> c_int {
        let mut timers = TIMERS.lock().unwrap_or_else(|p| p.into_inner());
        let Some(pos) = timers.iter().position(|t| t.handle == timer as usize) else {
            drop(timers);
            fault(
                engine::owner(),
                "flb_sched_timer_cb_destroy on a timer whose scheduler is gone (SIGSEGV)".into(),
            );
            return -1;
        };
        if timers[pos].thread != std::thread::current().id()
            || engine::scheduler_is_dead(timers[pos].sched)
        {
            drop(timers);
            fault(
                engine::owner(),
                "flb_sched_timer_cb_destroy from another thread than its scheduler's".into(),
            );
            return -1;
        }
        timers.remove(pos);
        // SAFETY: made by Box::into_raw in sched_timer_cb_create.
        drop(unsafe { Box::from_raw(timer as *mut u64) });
        0
    }

    /// `flb_config_map_get_raw`: present in Fluent Bit >= 5.0.3 only; the plugin looks it
    /// up to tell the config map layout and never calls it.
    pub unsafe extern "C" fn config_map_get_raw(_map: *mut c_void) -> *const c_char {
        std::ptr::null()
    }

    /// A symbol that only marks a release (looked up, never called).
    pub unsafe extern "C" fn release_marker() {}
}

/// Everything Fluent Bit accepted so far into the input with this alias (an emitter, or
/// a processor's parent input for re-injected records).
pub fn emitted(emitter: &str) -> Vec<Emitted> {
    EMITTED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|e| e.emitter == emitter)
        .cloned()
        .collect()
}

/// Everything any emitter received and lost so far, taken out of the record (a fuzz
/// target calls this after each input, so what a run allocates, it frees).
pub fn take_all_emitted() -> (Vec<Emitted>, Vec<Emitted>) {
    let take = |all: &Mutex<Vec<Emitted>>| {
        std::mem::take(&mut *all.lock().unwrap_or_else(|p| p.into_inner()))
    };
    (take(&EMITTED), take(&LOST))
}

/// Records handed to this emitter while it was paused (never delivered).
pub fn lost(emitter: &str) -> Vec<Emitted> {
    LOST.lock()
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

/// Emitter inputs the instance with this id created (Fluent Bit initialises each once).
pub fn emitters_of(owner: i32) -> usize {
    INPUTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|i| i.owner == owner && i.kind == InputKind::Emitter)
        .count()
}

/// Defines the host functions under their C names in the calling binary (a test or a
/// tool that hosts the plugin). `export_host_symbols!()` plays Fluent Bit 5.1.1;
/// `export_host_symbols!(legacy)` plays 3.2.10 (no `flb_config_map_get_raw`, the older
/// processor and config layouts); `export_host_symbols!(no_emitter)` plays a 5.1.1 built
/// without `in_emitter`.
#[macro_export]
macro_rules! export_host_symbols {
    () => {
        $crate::export_host_symbols!(@base);
        $crate::export_host_symbols!(@emitter);
        $crate::export_host_symbols!(@current);
        $crate::export_host_symbols!(@metrics);
    };
    (no_metrics) => {
        $crate::export_host_symbols!(@base);
        $crate::export_host_symbols!(@emitter);
        $crate::export_host_symbols!(@current);
    };
    (legacy) => {
        $crate::export_host_symbols!(@base);
        $crate::export_host_symbols!(@emitter);
        $crate::export_host_symbols!(@metrics);
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub static service_configs: $crate::headers::ServiceConfigs<4> =
            $crate::headers::service_configs(
                $crate::headers::CONFIG_CIO_3_2_10,
                $crate::headers::CONFIG_GRACE_3_2_10,
            );
    };
    (no_emitter) => {
        $crate::export_host_symbols!(@base);
        $crate::export_host_symbols!(@current);
        $crate::export_host_symbols!(@metrics);
    };
    (@metrics) => {
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // cmetrics' C prototype is the contract
        pub unsafe extern "C" fn cmt_counter_create(
            cmt: *mut ::std::ffi::c_void,
            ns: *mut ::std::ffi::c_char,
            subsystem: *mut ::std::ffi::c_char,
            name: *mut ::std::ffi::c_char,
            help: *mut ::std::ffi::c_char,
            label_count: ::std::ffi::c_int,
            label_keys: *mut *mut ::std::ffi::c_char,
        ) -> *mut ::std::ffi::c_void {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe {
                $crate::cmetrics::create(
                    false,
                    cmt,
                    [ns, subsystem, name, help],
                    label_count,
                    label_keys,
                )
            }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // cmetrics' C prototype is the contract
        pub unsafe extern "C" fn cmt_gauge_create(
            cmt: *mut ::std::ffi::c_void,
            ns: *mut ::std::ffi::c_char,
            subsystem: *mut ::std::ffi::c_char,
            name: *mut ::std::ffi::c_char,
            help: *mut ::std::ffi::c_char,
            label_count: ::std::ffi::c_int,
            label_keys: *mut *mut ::std::ffi::c_char,
        ) -> *mut ::std::ffi::c_void {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe {
                $crate::cmetrics::create(
                    true,
                    cmt,
                    [ns, subsystem, name, help],
                    label_count,
                    label_keys,
                )
            }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // cmetrics' C prototype is the contract
        pub unsafe extern "C" fn cmt_counter_set(
            counter: *mut ::std::ffi::c_void,
            _timestamp: u64,
            val: f64,
            labels_count: ::std::ffi::c_int,
            label_vals: *mut *mut ::std::ffi::c_char,
        ) -> ::std::ffi::c_int {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::cmetrics::set(false, counter, val, labels_count, label_vals) }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // cmetrics' C prototype is the contract
        pub unsafe extern "C" fn cmt_gauge_set(
            gauge: *mut ::std::ffi::c_void,
            _timestamp: u64,
            val: f64,
            labels_count: ::std::ffi::c_int,
            label_vals: *mut *mut ::std::ffi::c_char,
        ) -> ::std::ffi::c_int {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::cmetrics::set(true, gauge, val, labels_count, label_vals) }
        }
    };
    (@current) => {
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn flb_config_map_get_raw(
            map: *mut ::std::ffi::c_void,
        ) -> *const ::std::ffi::c_char {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::config_map_get_raw(map) }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn flb_processor_get_global_config_map() {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::release_marker() }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn flb_mp_count_log_records() {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::release_marker() }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn flb_storage_chunk_count() {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::release_marker() }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub static service_configs: $crate::headers::ServiceConfigs<4> =
            $crate::headers::service_configs(
                $crate::headers::CONFIG_CIO_5_1_1,
                $crate::headers::CONFIG_GRACE_5_1_1,
            );
    };
    (@emitter) => {
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn flb_input_name_exists(
            name: *const ::std::ffi::c_char,
            config: *mut ::std::ffi::c_void,
        ) -> ::std::ffi::c_int {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::input_name_exists(name, config) }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn flb_input_new(
            config: *mut ::std::ffi::c_void,
            plugin: *const ::std::ffi::c_char,
            data: *mut ::std::ffi::c_void,
            public_only: ::std::ffi::c_int,
        ) -> *mut ::std::ffi::c_void {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::input_new(config, plugin, data, public_only) }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn flb_input_set_property(
            ins: *mut ::std::ffi::c_void,
            k: *const ::std::ffi::c_char,
            v: *const ::std::ffi::c_char,
        ) -> ::std::ffi::c_int {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::input_set_property(ins, k, v) }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn flb_input_instance_init(
            ins: *mut ::std::ffi::c_void,
            config: *mut ::std::ffi::c_void,
        ) -> ::std::ffi::c_int {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::input_instance_init(ins, config) }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn flb_storage_input_create(
            cio: *mut ::std::ffi::c_void,
            ins: *mut ::std::ffi::c_void,
        ) -> ::std::ffi::c_int {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::storage_input_create(cio, ins) }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn flb_input_instance_exit(
            ins: *mut ::std::ffi::c_void,
            config: *mut ::std::ffi::c_void,
        ) {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::input_instance_exit(ins, config) }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn flb_input_instance_destroy(ins: *mut ::std::ffi::c_void) {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::input_instance_destroy(ins) }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn in_emitter_add_record(
            tag: *const ::std::ffi::c_char,
            tag_len: ::std::ffi::c_int,
            buf: *const ::std::ffi::c_char,
            size: usize,
            emitter: *mut ::std::ffi::c_void,
            source: *mut ::std::ffi::c_void,
        ) -> ::std::ffi::c_int {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::emitter_add_record(tag, tag_len, buf, size, emitter, source) }
        }
    };
    (@base) => {
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn flb_input_name(
            ins: *mut ::std::ffi::c_void,
        ) -> *const ::std::ffi::c_char {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::input_name(ins) }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn flb_output_name(
            ins: *mut ::std::ffi::c_void,
        ) -> *const ::std::ffi::c_char {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::output_name(ins) }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn flb_filter_get_property(
            key: *const ::std::ffi::c_char,
            ins: *mut ::std::ffi::c_void,
        ) -> *const ::std::ffi::c_char {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::filter_get_property(key, ins) }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn flb_filter_set_context(
            ins: *mut ::std::ffi::c_void,
            ctx: *mut ::std::ffi::c_void,
        ) {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::filter_set_context(ins, ctx) }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn flb_filter_name(
            ins: *mut ::std::ffi::c_void,
        ) -> *const ::std::ffi::c_char {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::filter_name(ins) }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn flb_log_print(
            level: ::std::ffi::c_int,
            file: *const ::std::ffi::c_char,
            line: ::std::ffi::c_int,
            fmt: *const ::std::ffi::c_char,
            arg: *const ::std::ffi::c_char,
        ) {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::log_print(level, file, line, fmt, arg) }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn flb_input_log_append(
            ins: *mut ::std::ffi::c_void,
            tag: *const ::std::ffi::c_char,
            tag_len: usize,
            buf: *const ::std::ffi::c_void,
            size: usize,
        ) -> ::std::ffi::c_int {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::input_log_append(ins, tag, tag_len, buf, size) }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn flb_input_log_append_skip_processor_stages(
            ins: *mut ::std::ffi::c_void,
            stage: usize,
            tag: *const ::std::ffi::c_char,
            tag_len: usize,
            buf: *const ::std::ffi::c_void,
            size: usize,
        ) -> ::std::ffi::c_int {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::input_log_append_skip_processor_stages(
                ins, stage, tag, tag_len, buf, size,
            ) }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn flb_sched_ctx_get() -> *mut ::std::ffi::c_void {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::sched_ctx_get() }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn flb_sched_timer_cb_create(
            sched: *mut ::std::ffi::c_void,
            type_: ::std::ffi::c_int,
            ms: ::std::ffi::c_int,
            cb: Option<extern "C" fn(*mut ::std::ffi::c_void, *mut ::std::ffi::c_void)>,
            data: *mut ::std::ffi::c_void,
            out_timer: *mut *mut ::std::ffi::c_void,
        ) -> ::std::ffi::c_int {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::sched_timer_cb_create(sched, type_, ms, cb, data, out_timer) }
        }
        #[no_mangle]
        #[allow(clippy::missing_safety_doc)] // Fluent Bit's C prototype is the contract
        pub unsafe extern "C" fn flb_sched_timer_cb_destroy(
            timer: *mut ::std::ffi::c_void,
        ) -> ::std::ffi::c_int {
            // SAFETY: the caller keeps the C prototype's promises, forwarded as they are.
            unsafe { $crate::host::sched_timer_cb_destroy(timer) }
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
