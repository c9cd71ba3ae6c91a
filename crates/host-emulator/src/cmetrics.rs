//! cmetrics as Fluent Bit links it, for the metrics the plugin publishes: `cmt_create` for
//! each filter instance (as `flb_filter_init` does, with Fluent Bit's own five counters),
//! `cmt_counter_create` / `cmt_gauge_create` and `cmt_counter_set` / `cmt_gauge_set`, with
//! the values kept so tests read them as a scrape of `/api/v2/metrics/prometheus` would.
//!
//! What the real library does and the emulator holds the plugin to: a counter refuses a
//! value below its current one (cmetrics logs "attempting to reset unresetable counter"),
//! the label values must be as many as the family's keys, and a series first set after
//! `cb_init` is recorded as a fault: Fluent Bit's collector copies the metric lists on
//! another thread, and every series must show from start-up, at 0.

use crate::engine;
use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::Mutex;

/// One metric family made on a context.
#[derive(Debug, Clone)]
struct Family {
    handle: usize,
    cmt: usize,
    gauge: bool,
    /// `ns_subsystem_name`, as the Prometheus exposition prints it.
    full_name: String,
    help: String,
    label_keys: Vec<String>,
    /// Series by label values.
    values: BTreeMap<Vec<String>, f64>,
}

/// A context made by `cmt_create`: the instance it belongs to, and whether that
/// instance's `cb_init` has returned (series made later are a fault).
struct Context {
    handle: usize,
    owner: i32,
    started: bool,
}

static CONTEXTS: Mutex<Vec<Context>> = Mutex::new(Vec::new());
static FAMILIES: Mutex<Vec<Family>> = Mutex::new(Vec::new());

fn fault(owner: i32, what: String) {
    engine::fault(format!("[owner:{owner}] {what}"));
}

/// `cmt_create()` for the filter instance `owner`, with the counters `flb_filter_init`
/// creates on it. Returns the context and its first counter (`cmt_records`).
pub fn create_context(owner: i32) -> (usize, usize) {
    let handle = Box::into_raw(Box::new(0u64)) as usize;
    CONTEXTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Context {
            handle,
            owner,
            started: false,
        });
    let mut first = 0;
    for (name, help) in [
        ("records", "Total number of new records processed."),
        ("bytes", "Total number of new bytes processed."),
        ("add_records", "Total number of new added records."),
        ("drop_records", "Total number of dropped records."),
        ("drop_bytes", "Total number of dropped bytes."),
    ] {
        let full = format!("fluentbit_filter_{name}_total");
        let h = new_family(handle, false, &full, help, vec!["name".into()]);
        if first == 0 {
            first = h;
        }
    }
    (handle, first)
}

/// The instance's `cb_init` returned: from now on a new series is a fault.
pub fn started(cmt: usize) {
    for c in CONTEXTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter_mut()
    {
        if c.handle == cmt {
            c.started = true;
        }
    }
}

/// `cmt_destroy()`: the context and its families go (a reloaded instance starts at 0).
pub fn destroy_context(cmt: usize) {
    FAMILIES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|f| {
            if f.cmt == cmt {
                // SAFETY: made by new_family as a Box<u64>; freed once, here.
                drop(unsafe { Box::from_raw(f.handle as *mut u64) });
            }
            f.cmt != cmt
        });
    let mut contexts = CONTEXTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(i) = contexts.iter().position(|c| c.handle == cmt) {
        contexts.remove(i);
        // SAFETY: made by create_context as a Box<u64>; freed once, here.
        drop(unsafe { Box::from_raw(cmt as *mut u64) });
    }
}

fn new_family(
    cmt: usize,
    gauge: bool,
    full_name: &str,
    help: &str,
    label_keys: Vec<String>,
) -> usize {
    let handle = Box::into_raw(Box::new(0u64)) as usize;
    FAMILIES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Family {
            handle,
            cmt,
            gauge,
            full_name: full_name.into(),
            help: help.into(),
            label_keys,
            values: BTreeMap::new(),
        });
    handle
}

/// Reads `n` C strings.
///
/// # Safety
/// `p` must point to `n` valid NUL-terminated strings (or `n` must be 0).
unsafe fn strings(n: c_int, p: *mut *mut c_char) -> Option<Vec<String>> {
    if n < 0 || (n > 0 && p.is_null()) {
        return None;
    }
    (0..n as usize)
        .map(|i| {
            // SAFETY: the caller's promise, entry by entry.
            let s = unsafe { *p.add(i) };
            // SAFETY: as above: NUL-terminated when not null.
            (!s.is_null()).then(|| unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
        })
        .collect()
}

/// `cmt_counter_create` / `cmt_gauge_create(cmt, ns, subsystem, name, help, label_count,
/// label_keys)`, with `names` = `[ns, subsystem, name, help]`.
///
/// # Safety
/// The strings must be NUL-terminated (or NULL) and `label_keys` hold `label_count` of them.
pub unsafe fn create(
    gauge: bool,
    cmt: *mut c_void,
    names: [*mut c_char; 4],
    label_count: c_int,
    label_keys: *mut *mut c_char,
) -> *mut c_void {
    let owner = {
        let contexts = CONTEXTS.lock().unwrap_or_else(|p| p.into_inner());
        match contexts.iter().find(|c| c.handle == cmt as usize) {
            Some(c) => c.owner,
            None => {
                fault(
                    engine::owner(),
                    "cmetrics family created on a pointer that is not a cmt context".into(),
                );
                return std::ptr::null_mut();
            }
        }
    };
    let text = |p: *mut c_char| {
        // SAFETY: the caller's promise: NUL-terminated when not null.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    let Some([ns, sub, name, help]) = names
        .map(text)
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .and_then(|v| <[String; 4]>::try_from(v).ok())
    else {
        fault(
            owner,
            "cmetrics family created with a NULL name or help".into(),
        );
        return std::ptr::null_mut();
    };
    if name.is_empty() || help.is_empty() {
        // cmt_opts_init: a metric needs a name and a help text; NULL, nothing made
        return std::ptr::null_mut();
    }
    // SAFETY: the caller's promise.
    let Some(keys) = (unsafe { strings(label_count, label_keys) }) else {
        fault(owner, format!("cmetrics family {name}: bad label keys"));
        return std::ptr::null_mut();
    };
    let full = [ns, sub, name]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    new_family(cmt as usize, gauge, &full, &help, keys) as *mut c_void
}

/// `cmt_counter_set` / `cmt_gauge_set(metric, timestamp, value, labels_count, label_vals)`.
///
/// # Safety
/// `label_vals` must hold `labels_count` NUL-terminated strings.
pub unsafe fn set(
    gauge: bool,
    metric: *mut c_void,
    val: f64,
    labels_count: c_int,
    label_vals: *mut *mut c_char,
) -> c_int {
    let mut families = FAMILIES.lock().unwrap_or_else(|p| p.into_inner());
    let Some(f) = families.iter_mut().find(|f| f.handle == metric as usize) else {
        drop(families);
        fault(
            engine::owner(),
            "cmetrics value set on a pointer that is not a metric".into(),
        );
        return -1;
    };
    let (owner, started) = {
        let contexts = CONTEXTS.lock().unwrap_or_else(|p| p.into_inner());
        contexts
            .iter()
            .find(|c| c.handle == f.cmt)
            .map_or((engine::owner(), true), |c| (c.owner, c.started))
    };
    if f.gauge != gauge {
        let what = format!(
            "{}: a {} set as a {}",
            f.full_name,
            kind(f.gauge),
            kind(gauge)
        );
        drop(families);
        fault(owner, what);
        return -1;
    }
    // SAFETY: the caller's promise.
    let vals = unsafe { strings(labels_count, label_vals) };
    let Some(vals) = vals.filter(|v| v.len() == f.label_keys.len()) else {
        let what = format!(
            "{}: label values do not match the keys {:?}",
            f.full_name, f.label_keys
        );
        drop(families);
        fault(owner, what);
        return -1;
    };
    let name = f.full_name.clone();
    let entry = f.values.get(&vals).copied();
    if !gauge && entry.is_some_and(|old| val < old) {
        // cmetrics: "attempting to reset unresetable counter", and the value stays
        drop(families);
        fault(
            owner,
            format!("{name}{vals:?}: counter set below its value"),
        );
        return -1;
    }
    f.values.insert(vals.clone(), val);
    drop(families);
    if entry.is_none() && started {
        fault(
            owner,
            format!("{name}{vals:?}: series first set after cb_init"),
        );
    }
    0
}

fn kind(gauge: bool) -> &'static str {
    if gauge {
        "gauge"
    } else {
        "counter"
    }
}

/// One series as a scrape shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub help: String,
    pub gauge: bool,
    /// `(key, value)` pairs in the family's key order.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Family {
    /// One of its series as a scrape shows it.
    fn series(&self, vals: &[String], value: f64) -> Series {
        Series {
            name: self.full_name.clone(),
            help: self.help.clone(),
            gauge: self.gauge,
            labels: self
                .label_keys
                .iter()
                .cloned()
                .zip(vals.iter().cloned())
                .collect(),
            value,
        }
    }
}

/// Every series on the context `cmt`, families in creation order.
pub fn series_of(cmt: usize) -> Vec<Series> {
    let families = FAMILIES.lock().unwrap_or_else(|p| p.into_inner());
    families
        .iter()
        .filter(|f| f.cmt == cmt)
        .flat_map(|f| f.values.iter().map(|(vals, v)| f.series(vals, *v)))
        .collect()
}

/// What Fluent Bit's exporter shows: every context's families merged into one as
/// `cmt_cat` does (a family by name; a series with the same label values as one already
/// there overwrites it), and the series that were overwritten that way.
pub fn scrape_all() -> (Vec<Series>, Vec<Series>) {
    let families = FAMILIES.lock().unwrap_or_else(|p| p.into_inner());
    let mut merged: Vec<Series> = Vec::new();
    let mut lost = Vec::new();
    for f in families.iter() {
        for (vals, v) in &f.values {
            let s = f.series(vals, *v);
            match merged
                .iter_mut()
                .find(|m| m.name == s.name && m.labels == s.labels)
            {
                Some(m) => lost.push(std::mem::replace(m, s)),
                None => merged.push(s),
            }
        }
    }
    (merged, lost)
}
