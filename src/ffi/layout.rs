//! Every field of a Fluent Bit struct that the plugin reads, and where its position comes
//! from: an exported symbol (`service_configs[]`, the table of `[SERVICE]` keys and their
//! offsets in `struct flb_config`), or a per-release table written from that release's
//! headers (`include/fluent-bit/flb_filter.h`, `flb_processor.h`, `flb_config.h` of 3.2.10,
//! 4.0.x, 4.2.x, 5.0.x and 5.1.x; `tests/layouts.rs` holds the header text each number was
//! read from). A table entry is chosen by symbols that exist exactly in its releases, and
//! each pointer read is cross-checked (it must lead back to this instance or this config)
//! before it is followed. When nothing fits, the feature that needs it is turned off with
//! a warning; nothing is guessed and memory is never scanned.

use super::{
    filter_pssession_plugin, flb_config, flb_filter_instance, flb_filter_plugin, host_symbol,
};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr::addr_of;

/// `FLB_PLUGIN_INPUT` and `FLB_PLUGIN_OUTPUT` of flb_plugin.h (the same in every release).
const FLB_PLUGIN_INPUT: c_int = 1;
const FLB_PLUGIN_OUTPUT: c_int = 3;

/// Offsets in `struct flb_filter_instance`, identical from 3.2 to 5.1, with and without
/// `FLB_HAVE_REGEX` (which adds `match_regex` before `parent_processor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterInstanceOffsets {
    pub parent_processor: usize,
    pub p: usize,
    pub properties: usize,
    /// `struct cmt *cmt`, followed by its five counters.
    pub cmt: usize,
    /// `struct flb_config *config`, the last field (with `FLB_HAVE_METRICS`; 8 less
    /// without, where `struct flb_metrics *metrics` is left out).
    pub config: usize,
}

pub const FILTER_INSTANCE: [FilterInstanceOffsets; 2] = [
    FilterInstanceOffsets {
        parent_processor: 72,
        p: 96,
        properties: 104,
        cmt: 144,
        config: 208,
    },
    FilterInstanceOffsets {
        parent_processor: 64,
        p: 88,
        properties: 96,
        cmt: 136,
        config: 200,
    },
];

/// The variant of `struct flb_filter_instance` this instance has: the one whose `p` field
/// is this plugin's registration (its `name` is our very string: the pointer our own
/// registration holds, since a Rust `const` has no one address; sanitizer builds keep
/// each use of it apart).
pub fn filter_instance_offsets(ins: *mut flb_filter_instance) -> Option<FilterInstanceOffsets> {
    // SAFETY: reading one field of our own registration, which only the load-time
    // constructor writes (its config_map), before any callback runs.
    let our_name = unsafe { (*addr_of!(filter_pssession_plugin)).name };
    FILTER_INSTANCE.into_iter().find(|o| {
        // SAFETY: both offsets lie inside the instance in every release and variant; the
        // plugin pointer read there is only followed when it is non-null, and then only
        // its `name` (the copy Fluent Bit made of our registration) is compared.
        unsafe {
            let plugin = *((ins as *const u8).add(o.p) as *const *const flb_filter_plugin);
            !plugin.is_null() && (*plugin).name == our_name
        }
    })
}

/// `ins->cmt`, the instance's cmetrics context, where it can be vouched for: at the offset
/// of the release table (after `properties`, `config_map` and `_head`; then its five
/// counters, `metrics`, `notification_channel` and `config`; identical from 3.2 to 5.1,
/// see `tests/layouts.rs`). It is trusted only when the instance's `config` field is the
/// very config Fluent Bit passed to `cb_init`, and `cmt` and `cmt_records` are set.
pub fn filter_instance_cmt(
    ins: *mut flb_filter_instance,
    config: *mut flb_config,
    fi: FilterInstanceOffsets,
) -> Result<*mut c_void, &'static str> {
    // SAFETY: `ins` is the live instance of the verified variant. `fi.config - 8` is
    // inside the struct in both builds (`config` itself without FLB_HAVE_METRICS, the int
    // `notification_channel` and its padding with it), and is read first: only when it is
    // not the config is `fi.config` read, which exists exactly in builds with metrics (the
    // last field; never past the end of the struct).
    unsafe {
        let base = ins as *const c_void;
        if read_at::<*mut flb_config>(base, fi.config - 8) == config {
            return Err("this Fluent Bit was built without FLB_HAVE_METRICS");
        }
        if read_at::<*mut flb_config>(base, fi.config) != config {
            return Err("the instance's config field is not where 3.2 to 5.1 keep it");
        }
        let cmt: *mut c_void = read_at(base, fi.cmt);
        let records: *mut c_void = read_at(base, fi.cmt + 8);
        if cmt.is_null() || records.is_null() {
            return Err("the instance has no cmetrics context");
        }
        Ok(cmt)
    }
}

/// Offsets in `struct flb_processor_unit` and `struct flb_processor` of one family of
/// releases. `pthread_mutex_t` sits in the unit, so its size is this target's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessorOffsets {
    pub releases: &'static str,
    pub unit_stage: usize,
    pub unit_ctx: usize,
    pub unit_parent: usize,
    pub proc_data: usize,
    pub proc_source_type: usize,
    pub proc_config: usize,
}

const MUTEX: usize = std::mem::size_of::<libc::pthread_mutex_t>();

/// 3.2: the unit has no `condition`, the processor no `profiles` list.
pub const PROCESSOR_3_2: ProcessorOffsets = ProcessorOffsets {
    releases: "3.2",
    unit_stage: 16,
    unit_ctx: 24,
    unit_parent: 32 + MUTEX + 32,
    proc_data: 72,
    proc_source_type: 80,
    proc_config: 88,
};
/// 4.0 to 4.2: `condition` in the unit, `profiles` in the processor.
pub const PROCESSOR_4: ProcessorOffsets = ProcessorOffsets {
    releases: "4.0-4.2",
    unit_stage: 16,
    unit_ctx: 24,
    unit_parent: 40 + MUTEX + 32,
    proc_data: 88,
    proc_source_type: 96,
    proc_config: 104,
};
/// 5.0 and 5.1: six processor metrics counters before `config`.
pub const PROCESSOR_5: ProcessorOffsets = ProcessorOffsets {
    releases: "5.0-5.1",
    proc_config: 152,
    ..PROCESSOR_4
};

/// The processor layout of the running Fluent Bit, chosen by the symbols that came with
/// each change: `flb_processor_get_global_config_map` (4.0, with `condition` and
/// `profiles`) and `flb_mp_count_log_records` (5.0, with the processor metrics).
pub fn processor_offsets() -> ProcessorOffsets {
    let since_4 = !host_symbol(c"flb_processor_get_global_config_map").is_null();
    let since_5 = !host_symbol(c"flb_mp_count_log_records").is_null();
    match (since_4, since_5) {
        (false, _) => PROCESSOR_3_2,
        (true, false) => PROCESSOR_4,
        (true, true) => PROCESSOR_5,
    }
}

/// Where the filter instance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A `[FILTER]` / `pipeline: filters:` entry, run by the engine for every input.
    Filter,
    /// A processor of an input: `input` is that input, `stage` the unit's stage.
    InputProcessor { input: *mut c_void, stage: usize },
    /// A processor of an output.
    OutputProcessor { output: *mut c_void },
    /// A processor whose parent could not be read in this release (see the reason).
    UnknownProcessor(&'static str),
}

/// Reads `T` at `base + off`.
///
/// # Safety
/// `base + off .. + size_of::<T>()` must be inside one live object.
unsafe fn read_at<T: Copy>(base: *const c_void, off: usize) -> T {
    ((base as *const u8).add(off) as *const T).read_unaligned()
}

/// Where `ins` runs, read through `ins->parent_processor`, its unit and its processor,
/// each step checked: the unit's `ctx` must be this instance, the processor's `config`
/// the config Fluent Bit passed to `cb_init`, and its source type an input or an output.
pub fn placement(
    ins: *mut flb_filter_instance,
    config: *mut flb_config,
    fi: FilterInstanceOffsets,
    po: ProcessorOffsets,
) -> Placement {
    // SAFETY: `ins` is the live instance; the offsets are from its verified variant. The
    // unit and processor are live while the instance is (they own it), every offset is
    // inside them in the releases the table names, and each pointer is followed only
    // after the previous step was checked.
    unsafe {
        let unit: *const c_void = read_at(ins as *const c_void, fi.parent_processor);
        if unit.is_null() {
            return Placement::Filter;
        }
        let ctx: *const c_void = read_at(unit, po.unit_ctx);
        if ctx != ins as *const c_void {
            return Placement::UnknownProcessor("the processor unit does not hold this filter");
        }
        let processor: *const c_void = read_at(unit, po.unit_parent);
        if processor.is_null() {
            return Placement::UnknownProcessor("the processor unit has no processor");
        }
        let proc_config: *const c_void = read_at(processor, po.proc_config);
        if proc_config != config as *const c_void {
            return Placement::UnknownProcessor("the processor's config is not this config");
        }
        let parent: *mut c_void = read_at(processor, po.proc_data);
        match read_at::<c_int>(processor, po.proc_source_type) {
            FLB_PLUGIN_INPUT if !parent.is_null() => Placement::InputProcessor {
                input: parent,
                stage: read_at(unit, po.unit_stage),
            },
            FLB_PLUGIN_OUTPUT => Placement::OutputProcessor { output: parent },
            _ => Placement::UnknownProcessor("the processor's parent is neither input nor output"),
        }
    }
}

/// One entry of `struct flb_service_config service_configs[]` (flb_config.h).
#[repr(C)]
struct ServiceConfig {
    key: *const c_char,
    type_: c_int,
    offset: usize,
}

/// The offset in `struct flb_config` of the `[SERVICE]` key `name`, from the exported
/// `service_configs[]` table (NULL-key terminated).
fn service_config_offset(name: &str) -> Option<usize> {
    let table = host_symbol(c"service_configs") as *const ServiceConfig;
    if table.is_null() {
        return None;
    }
    const MAX_ENTRIES: usize = 1024;
    for i in 0..MAX_ENTRIES {
        // SAFETY: the exported array, read entry by entry up to its NULL-key terminator.
        let e = unsafe { &*table.add(i) };
        if e.key.is_null() {
            return None;
        }
        // SAFETY: keys are NUL-terminated string literals.
        if unsafe { CStr::from_ptr(e.key) }
            .to_bytes()
            .eq_ignore_ascii_case(name.as_bytes())
        {
            return Some(e.offset);
        }
    }
    None
}

/// The fields of `struct flb_config` the plugin reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigFields {
    /// `void *cio`: declared right before `char *storage_path` in 3.2 to 5.1.
    pub cio: Option<usize>,
    /// `int is_shutting_down`: the struct opens with `struct mk_event ch_event` (72 bytes),
    /// `int support_mode`, `int is_ingestion_active`, `int is_shutting_down`,
    /// `int is_running`, `double flush` in 3.2 to 5.1, so it is at 80 exactly when
    /// `flush` is at 88.
    pub is_shutting_down: Option<usize>,
    /// `int grace`: the `Grace` entry of `service_configs[]`.
    pub grace: Option<usize>,
    /// Whether the grace period waits for chunks made during it (since 4.0.3, which
    /// brought `flb_storage_chunk_count`); before, it waits only for running tasks, and
    /// records handed over once the engine stops are accepted and then dropped.
    pub grace_flushes_new_chunks: bool,
}

/// `offsetof(struct flb_config, flush)` in every release from 3.2 to 5.1.
pub const FLUSH_OFFSET: usize = 88;
pub const IS_SHUTTING_DOWN_OFFSET: usize = 80;

impl ConfigFields {
    pub fn of_host() -> ConfigFields {
        ConfigFields {
            cio: service_config_offset("storage.path").and_then(|o| o.checked_sub(8)),
            is_shutting_down: (service_config_offset("flush") == Some(FLUSH_OFFSET))
                .then_some(IS_SHUTTING_DOWN_OFFSET),
            grace: service_config_offset("grace"),
            grace_flushes_new_chunks: !host_symbol(c"flb_storage_chunk_count").is_null(),
        }
    }

    /// `config->grace` (seconds), when the host says where it is.
    pub fn grace(&self, config: *mut flb_config) -> Option<c_int> {
        let off = self.grace?;
        if config.is_null() {
            return None;
        }
        // SAFETY: an int inside struct flb_config at the offset the host's table gives.
        Some(unsafe { read_at(config as *const c_void, off) })
    }

    /// `config->cio`, when its position is known and it is set.
    pub fn cio(&self, config: *mut flb_config) -> Option<*mut c_void> {
        let off = self.cio?;
        // SAFETY: an offset inside struct flb_config taken from the host's own table.
        let p: *mut c_void = unsafe { read_at(config as *const c_void, off) };
        (!p.is_null()).then_some(p)
    }

    /// Whether the engine stopped ingestion for a shutdown or a reload (false when this
    /// cannot be known).
    pub fn is_shutting_down(&self, config: *mut flb_config) -> bool {
        let Some(off) = self.is_shutting_down else {
            return false;
        };
        if config.is_null() {
            return false;
        }
        // SAFETY: an int inside struct flb_config (see the field's documentation), written
        // by the engine thread: read it volatile, as a flag.
        unsafe { ((config as *const u8).add(off) as *const c_int).read_volatile() != 0 }
    }
}
