//! The plugin's counters on Fluent Bit's own metrics endpoint: every series is created on
//! the instance's cmetrics context (`ins->cmt`) in `cb_init`, at 0, and then set from the
//! instance's atomics (`cmt_counter_set` / `cmt_gauge_set`, which cmetrics applies
//! atomically) after each chunk and each timer tick. Only series whose value moved are set,
//! so a chunk costs a few comparisons. Without the cmetrics symbols, or without a `cmt`
//! field the layout table can vouch for, the plugin runs without metrics.

use super::{flb_config, flb_filter_instance, layout, resolve};
use pssession_core::pwsh::Transport;
use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, TryLockError};
use std::time::{SystemTime, UNIX_EPOCH};

/// `cmt_counter_create` and `cmt_gauge_create` (cmetrics, the same in 3.2 to 5.1).
type CreateFn = unsafe extern "C" fn(
    *mut c_void,
    *mut c_char,
    *mut c_char,
    *mut c_char,
    *mut c_char,
    c_int,
    *mut *mut c_char,
) -> *mut c_void;
/// `cmt_counter_set` and `cmt_gauge_set`.
type SetFn = unsafe extern "C" fn(*mut c_void, u64, f64, c_int, *mut *mut c_char) -> c_int;

/// The cmetrics functions the plugin calls.
#[derive(Clone, Copy)]
struct Api {
    counter_create: CreateFn,
    counter_set: SetFn,
    gauge_create: CreateFn,
    gauge_set: SetFn,
}

impl Api {
    fn resolve() -> Result<Api, &'static str> {
        Ok(Api {
            counter_create: resolve(c"cmt_counter_create")?,
            counter_set: resolve(c"cmt_counter_set")?,
            gauge_create: resolve(c"cmt_gauge_create")?,
            gauge_set: resolve(c"cmt_gauge_set")?,
        })
    }
}

/// How the `outcome` label of `aggregate_rows_total` divides the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOutcome {
    /// Handed to Fluent Bit (emitter, re-injected, or appended to a chunk).
    Delivered,
    /// Written to `aggregate_state_file` at exit.
    Saved,
    /// Written to the log at exit.
    Logged,
    /// Pushed out before their interval by `max_keys` or `max_message_bytes` (also
    /// counted under the door they then leave by).
    Early,
}

/// What one series shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    Records,
    Events,
    /// Flagged records: all of them (`mode exact`), or those of one transport in `mode
    /// extended` (every flagged verdict there names at least one session).
    Flagged(Option<Transport>),
    Excluded,
    AlertsEmitted,
    Rows(RowOutcome),
    AggregateKeys,
    OpenBlocks,
    InternalErrors,
    ChunksModified,
}

/// One metric family: its name (after `fluentbit_filter_`), help, type and the label keys
/// after `name` and `parent`.
struct Family {
    name: &'static str,
    help: &'static str,
    gauge: bool,
    labels: &'static [&'static str],
}

const fn family(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Family {
    Family {
        name,
        help,
        gauge: false,
        labels,
    }
}

/// Every family the plugin publishes, in the order of [`family_of`].
const FAMILIES: [Family; 10] = [
    family(
        "pssession_records_total",
        "Records read by the filter.",
        &[],
    ),
    family(
        "pssession_events_total",
        "PowerShell 4104 script-block events judged.",
        &[],
    ),
    family(
        "pssession_flagged_total",
        "Records flagged as an interactive remote session.",
        &["mode", "transport"],
    ),
    family(
        "pssession_excluded_total",
        "Matches suppressed by exclude_user / exclude_computer.",
        &[],
    ),
    family(
        "pssession_alerts_emitted_total",
        "Alert copies handed to Fluent Bit under alert_tag.",
        &[],
    ),
    family(
        "pssession_aggregate_rows_total",
        "Aggregate rows by outcome: delivered, saved, logged, early.",
        &["outcome"],
    ),
    Family {
        name: "pssession_aggregate_keys",
        help: "Aggregate rows kept now.",
        gauge: true,
        labels: &[],
    },
    Family {
        name: "pssession_reassembly_open_blocks",
        help: "Script blocks waiting for their other parts.",
        gauge: true,
        labels: &[],
    },
    family(
        "pssession_internal_errors_total",
        "Internal errors (each also logged, rate-limited).",
        &[],
    ),
    family(
        "pssession_chunks_modified_total",
        "Chunks the filter rewrote or appended to.",
        &[],
    ),
];

fn family_of(w: What) -> usize {
    match w {
        What::Records => 0,
        What::Events => 1,
        What::Flagged(_) => 2,
        What::Excluded => 3,
        What::AlertsEmitted => 4,
        What::Rows(_) => 5,
        What::AggregateKeys => 6,
        What::OpenBlocks => 7,
        What::InternalErrors => 8,
        What::ChunksModified => 9,
    }
}

/// The series of one instance: `mode extended` has one `flagged_total` series per
/// transport, `mode exact` one with an empty transport.
fn series_of(extended: bool) -> Vec<What> {
    let mut s = vec![What::Records, What::Events];
    if extended {
        s.extend(Transport::ALL.map(|t| What::Flagged(Some(t))));
    } else {
        s.push(What::Flagged(None));
    }
    s.extend([What::Excluded, What::AlertsEmitted]);
    s.extend(
        [
            RowOutcome::Delivered,
            RowOutcome::Saved,
            RowOutcome::Logged,
            RowOutcome::Early,
        ]
        .map(What::Rows),
    );
    s.extend([
        What::AggregateKeys,
        What::OpenBlocks,
        What::InternalErrors,
        What::ChunksModified,
    ]);
    s
}

/// The label values after `name` and `parent`.
fn label_values(w: What, extended: bool) -> Vec<&'static str> {
    let mode = if extended { "extended" } else { "exact" };
    match w {
        What::Flagged(None) => vec![mode, ""],
        What::Flagged(Some(t)) => vec![mode, t.name()],
        What::Rows(o) => vec![match o {
            RowOutcome::Delivered => "delivered",
            RowOutcome::Saved => "saved",
            RowOutcome::Logged => "logged",
            RowOutcome::Early => "early",
        }],
        _ => vec![],
    }
}

struct Series {
    what: What,
    metric: *mut c_void,
    gauge: bool,
    /// The label values, and pointers to them as cmetrics takes them (into the CStrings'
    /// own heap buffers, which stay where they are).
    _labels: Vec<CString>,
    label_ptrs: Vec<*mut c_char>,
    last: f64,
}

/// The published series of one instance.
pub struct Metrics {
    api: Api,
    series: Mutex<Vec<Series>>,
    /// A publish was asked for while another thread held `series`: the holder goes round
    /// once more, so the last values always get out and no caller waits for the lock.
    pending: AtomicBool,
}

// SAFETY: the metric pointers are cmetrics objects owned by the instance's `cmt`, which
// outlives the filter context; cmetrics sets values atomically from any thread, and the
// plugin calls it only under the mutex.
unsafe impl Send for Metrics {}
// SAFETY: as above.
unsafe impl Sync for Metrics {}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn c(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

impl Metrics {
    /// Creates every series at 0 on `ins->cmt`, labelled `name` and `parent` (the input or
    /// output a processor belongs to, empty for a pipeline filter: processors of different
    /// inputs may share a name, and Fluent Bit merges every instance's series into one
    /// exposition). Err says why there are no metrics (for the one warning).
    pub fn open(
        ins: *mut flb_filter_instance,
        config: *mut flb_config,
        name: &str,
        parent: &str,
        extended: bool,
    ) -> Result<Metrics, String> {
        let api = Api::resolve().map_err(|s| format!("this Fluent Bit does not export {s}"))?;
        let fi = layout::filter_instance_offsets(ins)
            .ok_or("the filter instance's layout is not one of 3.2 to 5.1")?;
        let cmt = layout::filter_instance_cmt(ins, config, fi)?;
        let created = Self::create_families(&api, cmt)?;
        let mut series = Vec::new();
        for what in series_of(extended) {
            let f = family_of(what);
            let mut labels = vec![c(name), c(parent)];
            labels.extend(label_values(what, extended).into_iter().map(c));
            let label_ptrs = labels.iter().map(|l| l.as_ptr() as *mut c_char).collect();
            let s = Series {
                what,
                metric: created[f],
                gauge: FAMILIES[f].gauge,
                _labels: labels,
                label_ptrs,
                last: 0.0,
            };
            if !set(&api, &s, 0.0, now_ns()) {
                return Err(format!("cmetrics refused the series {}", FAMILIES[f].name));
            }
            series.push(s);
        }
        Ok(Metrics {
            api,
            series: Mutex::new(series),
            pending: AtomicBool::new(false),
        })
    }

    fn create_families(api: &Api, cmt: *mut c_void) -> Result<Vec<*mut c_void>, String> {
        let (ns, sub) = (c("fluentbit"), c("filter"));
        let mut out = Vec::new();
        for f in &FAMILIES {
            let (name, help) = (c(f.name), c(f.help));
            let keys: Vec<CString> = ["name", "parent"]
                .into_iter()
                .chain(f.labels.iter().copied())
                .map(c)
                .collect();
            let mut key_ptrs: Vec<*mut c_char> =
                keys.iter().map(|k| k.as_ptr() as *mut c_char).collect();
            let create = if f.gauge {
                api.gauge_create
            } else {
                api.counter_create
            };
            // SAFETY: cmetrics' prototype; every string is NUL-terminated and cmetrics copies
            // the names, help and label keys it keeps; `cmt` is the instance's live context.
            let m = unsafe {
                create(
                    cmt,
                    ns.as_ptr() as *mut c_char,
                    sub.as_ptr() as *mut c_char,
                    name.as_ptr() as *mut c_char,
                    help.as_ptr() as *mut c_char,
                    key_ptrs.len() as c_int,
                    key_ptrs.as_mut_ptr(),
                )
            };
            if m.is_null() {
                return Err(format!("cmetrics could not create {}", f.name));
            }
            out.push(m);
        }
        Ok(out)
    }

    /// Sets every series whose value moved since it was last set. One thread publishes at
    /// a time, reading the counters under the lock, so a counter never goes back; a thread
    /// that finds the lock taken leaves its publish to the holder and goes on.
    pub fn publish(&self, value: impl Fn(What) -> u64) {
        self.pending.store(true, Ordering::Release);
        loop {
            let mut series = match self.series.try_lock() {
                Ok(g) => g,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            if !self.pending.swap(false, Ordering::AcqRel) {
                return;
            }
            let now = now_ns();
            for s in series.iter_mut() {
                let v = value(s.what) as f64;
                if v != s.last && set(&self.api, s, v, now) {
                    s.last = v;
                }
            }
            drop(series);
            if !self.pending.load(Ordering::Acquire) {
                return;
            }
        }
    }
}

/// Sets one series; false when cmetrics refused (a counter set below its value).
fn set(api: &Api, s: &Series, v: f64, now: u64) -> bool {
    let f = if s.gauge {
        api.gauge_set
    } else {
        api.counter_set
    };
    // SAFETY: cmetrics' prototype; the metric is alive with the instance's `cmt`, and the
    // label values (as many as the family's keys) are NUL-terminated, owned by the series
    // and only read by cmetrics (the pointer is `char **` in its prototype, not written).
    unsafe {
        f(
            s.metric,
            now,
            v,
            s.label_ptrs.len() as c_int,
            s.label_ptrs.as_ptr() as *mut *mut c_char,
        ) == 0
    }
}
