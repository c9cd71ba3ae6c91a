//! The emulator's own copies of the Fluent Bit structs it plays, written from Fluent Bit's
//! headers (`include/fluent-bit/flb_filter.h`, `flb_config_map.h`, `flb_kv.h`,
//! `flb_processor.h`, `flb_config.h`, monkey's `mk_list.h` and `mk_event.h`) of the two
//! releases it emulates: 5.1.1 (`Current`) and 3.2.10 (`Legacy`). Nothing here comes from
//! the plugin, so a wrong offset in one cannot hide in the other; `tests/layouts.rs`
//! checks both against the numbers a C compiler gave for each release's headers.
#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void};

pub const FLB_FILTER_MODIFIED: c_int = 1;
pub const FLB_FILTER_NOTOUCH: c_int = 2;
pub const FLB_FILTER_LOGS: c_int = 1;
pub const FLB_LOG_ERROR: c_int = 1;
pub const FLB_LOG_WARN: c_int = 2;
pub const FLB_LOG_INFO: c_int = 3;
pub const FLB_LOG_DEBUG: c_int = 4;
pub const FLB_CONFIG_MAP_MULT: c_int = 1;
pub const FLB_PLUGIN_INPUT: c_int = 1;
pub const FLB_PLUGIN_OUTPUT: c_int = 3;

/// `struct mk_list`.
#[repr(C)]
pub struct mk_list {
    pub prev: *mut mk_list,
    pub next: *mut mk_list,
}

impl mk_list {
    pub const fn empty() -> mk_list {
        mk_list {
            prev: std::ptr::null_mut(),
            next: std::ptr::null_mut(),
        }
    }
}

/// `struct flb_kv`.
#[repr(C)]
pub struct flb_kv {
    pub key: *mut c_char,
    pub val: *mut c_char,
    pub _head: mk_list,
}

type FilterCb = extern "C" fn(
    *const c_void,
    usize,
    *const c_char,
    c_int,
    *mut *mut c_void,
    *mut usize,
    *mut c_void,
    *mut c_void,
    *mut c_void,
    *mut c_void,
) -> c_int;

/// `struct flb_filter_plugin` (3.2 to 5.1).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct flb_filter_plugin {
    pub event_type: c_int,
    pub flags: c_int,
    pub name: *const c_char,
    pub description: *const c_char,
    pub config_map: *const c_void,
    pub cb_pre_run: Option<extern "C" fn(*mut c_void, *mut c_void, *mut c_void) -> c_int>,
    pub cb_init: Option<extern "C" fn(*mut c_void, *mut c_void, *mut c_void) -> c_int>,
    pub cb_filter: Option<FilterCb>,
    pub cb_exit: Option<extern "C" fn(*mut c_void, *mut c_void) -> c_int>,
    pub cb_notification: Option<extern "C" fn(*mut c_void, *mut c_void, *mut c_void) -> c_int>,
    pub _head: [*mut c_void; 2],
}

/// `struct flb_config_map` with its embedded `struct flb_config_map_val` of `VALUE`
/// bytes: 32 in 3.2.10 (`Legacy`), 40 in 5.1.1 (`Current`, a `raw` field since 5.0.3).
#[repr(C)]
pub struct flb_config_map<const VALUE: usize> {
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
pub const CONFIG_MAP_VALUE_LEGACY: usize = 32;
pub const CONFIG_MAP_VALUE_CURRENT: usize = 40;

/// `struct flb_filter_instance` of 3.2 to 5.1 built with FLB_HAVE_REGEX and
/// FLB_HAVE_METRICS (the release configuration), field for field.
#[repr(C)]
pub struct flb_filter_instance {
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

/// `struct flb_processor_unit` of 3.2.10 (no `condition`).
#[repr(C)]
pub struct flb_processor_unit_3_2 {
    pub event_type: c_int,
    pub unit_type: c_int,
    pub name: *mut c_char,
    pub stage: usize,
    pub ctx: *mut c_void,
    pub lock: libc::pthread_mutex_t,
    pub unused_list: mk_list,
    pub _head: mk_list,
    pub parent: *mut c_void,
}

/// `struct flb_processor_unit` of 4.0 to 5.1.
#[repr(C)]
pub struct flb_processor_unit_5_1 {
    pub event_type: c_int,
    pub unit_type: c_int,
    pub name: *mut c_char,
    pub stage: usize,
    pub ctx: *mut c_void,
    pub condition: *mut c_void,
    pub lock: libc::pthread_mutex_t,
    pub unused_list: mk_list,
    pub _head: mk_list,
    pub parent: *mut c_void,
}

/// `struct flb_processor` of 3.2.10.
#[repr(C)]
pub struct flb_processor_3_2 {
    pub is_active: c_int,
    pub name: *mut c_char,
    pub logs: mk_list,
    pub metrics: mk_list,
    pub traces: mk_list,
    pub stage_count: usize,
    pub data: *mut c_void,
    pub source_plugin_type: c_int,
    pub notification_channel: c_int,
    pub config: *mut c_void,
}

/// `struct flb_processor` of 5.0 and 5.1.
#[repr(C)]
pub struct flb_processor_5_1 {
    pub is_active: c_int,
    pub name: *mut c_char,
    pub logs: mk_list,
    pub metrics: mk_list,
    pub traces: mk_list,
    pub profiles: mk_list,
    pub stage_count: usize,
    pub data: *mut c_void,
    pub source_plugin_type: c_int,
    pub notification_channel: c_int,
    pub cmt_invocations: *mut c_void,
    pub cmt_errors: *mut c_void,
    pub cmt_items_in: *mut c_void,
    pub cmt_items_out: *mut c_void,
    pub cmt_items_drop: *mut c_void,
    pub cmt_items_add: *mut c_void,
    pub config: *mut c_void,
}

/// `struct mk_event` (monkey, the same from 3.2 to 5.1).
#[repr(C)]
pub struct mk_event {
    pub fd: c_int,
    pub type_: c_int,
    pub mask: u32,
    pub status: u8,
    pub data: *mut c_void,
    pub handler: *mut c_void,
    pub _head: mk_list,
    pub _priority_head: mk_list,
    pub priority: c_char,
}

/// The head of `struct flb_config` (3.2 to 5.1 alike up to `flush`).
#[repr(C)]
pub struct flb_config_head {
    pub ch_event: mk_event,
    pub support_mode: c_int,
    pub is_ingestion_active: c_int,
    pub is_shutting_down: c_int,
    pub is_running: c_int,
    pub flush: f64,
}

/// `offsetof(struct flb_config, cio)` and `offsetof(struct flb_config, grace)` per
/// emulated release (`storage_path` follows `cio`), and the stand-in's size in 8-byte words.
pub const CONFIG_CIO_5_1_1: usize = 1192;
pub const CONFIG_CIO_3_2_10: usize = 1032;
pub const CONFIG_GRACE_5_1_1: usize = 176;
pub const CONFIG_GRACE_3_2_10: usize = 96;
pub const CONFIG_WORDS: usize = 512;

/// `struct flb_service_config`: one entry of the exported `service_configs[]`.
#[repr(C)]
pub struct flb_service_config {
    pub key: *const c_char,
    pub type_: c_int,
    pub offset: usize,
}

/// The exported `service_configs[]` table (a few of its entries, NULL-key terminated),
/// shareable between threads as the real one is.
#[repr(transparent)]
pub struct ServiceConfigs<const N: usize>(pub [flb_service_config; N]);
// SAFETY: immutable string literals and numbers.
unsafe impl<const N: usize> Sync for ServiceConfigs<N> {}

/// `FLB_CONF_TYPE_INT`, `_DOUBLE` and `_STR` of `enum conf_type` (flb_config.h).
pub const FLB_CONF_TYPE_INT: c_int = 0;
pub const FLB_CONF_TYPE_DOUBLE: c_int = 1;
pub const FLB_CONF_TYPE_STR: c_int = 3;

/// The table for the release whose `cio` and `grace` are at these offsets.
pub const fn service_configs(cio: usize, grace: usize) -> ServiceConfigs<4> {
    ServiceConfigs([
        flb_service_config {
            key: c"Flush".as_ptr(),
            type_: FLB_CONF_TYPE_DOUBLE,
            offset: std::mem::offset_of!(flb_config_head, flush),
        },
        flb_service_config {
            key: c"Grace".as_ptr(),
            type_: FLB_CONF_TYPE_INT,
            offset: grace,
        },
        flb_service_config {
            key: c"storage.path".as_ptr(),
            type_: FLB_CONF_TYPE_STR,
            offset: cio + 8,
        },
        flb_service_config {
            key: std::ptr::null(),
            type_: 0,
            offset: 0,
        },
    ])
}

const _: () = {
    use std::mem::offset_of;
    assert!(offset_of!(flb_filter_instance, parent_processor) == 72);
    assert!(offset_of!(flb_filter_instance, p) == 96);
    assert!(offset_of!(flb_filter_instance, properties) == 104);
    assert!(offset_of!(flb_filter_instance, cmt) == 144);
    assert!(offset_of!(flb_filter_instance, config) == 208);
    assert!(offset_of!(flb_config_head, is_shutting_down) == 80);
    assert!(offset_of!(flb_config_head, flush) == 88);
    assert!(std::mem::size_of::<flb_config_map<CONFIG_MAP_VALUE_CURRENT>>() == 104);
    assert!(std::mem::size_of::<flb_config_map<CONFIG_MAP_VALUE_LEGACY>>() == 96);
};
