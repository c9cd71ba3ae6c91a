//! The engine side of the emulator, as the real engine behaved when we tried the plugin:
//! the inputs (configured ones, and the emitters the plugin creates), one scheduler per
//! thread with its timers, pausing and stopping, and a record of the faults that Fluent
//! Bit turns into a crash or a lost record (tests assert there are none).
//!
//! Facts it models (Fluent Bit 3.2 to 5.1, see `src/flb_engine.c`, `src/flb_input.c`,
//! `plugins/in_emitter/emitter.c`, `src/flb_scheduler.c`):
//! - at a stop (shutdown or hot reload) the engine sets `config->is_shutting_down`, pauses
//!   every input through its `cb_pause` (the emitters among them), keeps running timers
//!   and flushing chunks for the grace period, then stops the router and calls `cb_exit`;
//! - a paused emitter's `in_emitter_add_record` still answers 0, but keeps the records in
//!   a queue that is never ingested again: they are lost;
//! - `flb_input_log_append` refuses (-1) only an input whose memory or storage buffer is
//!   over its limit; an input paused by the engine still takes records;
//! - a timer lives on the scheduler of the thread that created it; a threaded input's
//!   thread and scheduler are gone before its processors' `cb_exit` runs on the engine
//!   thread, and destroying such a timer there crashes (flb_scheduler.c:732);
//! - an input created while `flb_input_init_all` walks `config->inputs` (from the
//!   `cb_init` of an input's processor) is initialised a second time by that walk;
//! - in an output processor, the `i_ins` argument of `cb_filter` is an output instance.

use std::cell::Cell;
use std::ffi::c_void;
use std::sync::Mutex;
use std::thread::ThreadId;

/// What the real engine would have turned into a crash or a lost record.
static FAULTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub fn fault(what: String) {
    FAULTS.lock().unwrap_or_else(|p| p.into_inner()).push(what);
}

/// Faults recorded so far whose text mentions `needle` (an instance or input name).
pub fn faults_about(needle: &str) -> Vec<String> {
    FAULTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|f| f.contains(needle))
        .cloned()
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// An emitter input the plugin created.
    Emitter,
    /// An input of the configuration (a processor's parent).
    Configured,
}

/// An input instance.
pub struct EmuInput {
    pub handle: usize,
    pub name: String,
    pub alias: Option<String>,
    pub properties: Vec<(String, String)>,
    pub initialized: bool,
    /// `flb_storage_input_create` was called for it.
    pub storage: bool,
    pub kind: InputKind,
    /// Paused by the engine (`flb_input_pause_all` at a stop).
    pub engine_paused: bool,
    /// Over its `mem_buf_limit`: `flb_input_log_append` refuses.
    pub mem_paused: bool,
    /// The router is gone (after the grace period): nothing appended now is delivered.
    pub router_down: bool,
    /// The filter instance whose test made it (instances of parallel tests stay apart).
    pub owner: i32,
    /// `flb_input_name()`'s answer, kept as long as the input (made at the first call).
    pub c_label: Option<std::ffi::CString>,
}

impl EmuInput {
    pub fn label(&self) -> String {
        self.alias.clone().unwrap_or_else(|| self.name.clone())
    }
}

pub static INPUTS: Mutex<Vec<EmuInput>> = Mutex::new(Vec::new());

pub fn with_input<R>(handle: usize, f: impl FnOnce(&mut EmuInput) -> R) -> Option<R> {
    INPUTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter_mut()
        .find(|i| i.handle == handle)
        .map(f)
}

/// Makes a configured input (the parent of an input processor).
pub fn configured_input(name: &str, owner: i32) -> usize {
    let handle = Box::into_raw(Box::new(0u64)) as usize;
    INPUTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(EmuInput {
            handle,
            name: name.into(),
            alias: None,
            properties: Vec::new(),
            initialized: true,
            storage: true,
            kind: InputKind::Configured,
            engine_paused: false,
            mem_paused: false,
            router_down: false,
            owner,
            c_label: None,
        });
    handle
}

/// Output instances handed to output processors (handle, name): never inputs.
pub static OUTPUTS: Mutex<Vec<(usize, std::ffi::CString)>> = Mutex::new(Vec::new());

pub fn is_output(handle: usize) -> bool {
    output_name(handle).is_some()
}

/// `flb_output_name()` of an output instance: its name, kept as long as the output.
pub fn output_name(handle: usize) -> Option<*const std::ffi::c_char> {
    OUTPUTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(h, _)| *h == handle)
        .map(|(_, n)| n.as_ptr())
}

/// Records Fluent Bit accepted from the plugin, by input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted {
    /// The input's alias (or name).
    pub emitter: String,
    pub tag: String,
    pub data: Vec<u8>,
    /// For re-injected records: the first processor stage they go through.
    pub stage: Option<usize>,
}

pub static EMITTED: Mutex<Vec<Emitted>> = Mutex::new(Vec::new());

/// Records handed to a paused emitter: answered 0, never delivered.
pub static LOST: Mutex<Vec<Emitted>> = Mutex::new(Vec::new());

pub struct EmuTimer {
    pub handle: usize,
    pub ms: i32,
    pub cb: extern "C" fn(*mut c_void, *mut c_void),
    pub data: usize,
    pub sched: usize,
    pub thread: ThreadId,
}

pub static TIMERS: Mutex<Vec<EmuTimer>> = Mutex::new(Vec::new());

/// Schedulers of threads that ended (their timers went with them).
static DEAD_SCHEDULERS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

static MAIN_SCHEDULER: u64 = 0;

thread_local! {
    static SCHEDULER: Cell<usize> = Cell::new(&MAIN_SCHEDULER as *const u64 as usize);
    /// Set while an input's processors are initialised inside `flb_input_init_all`.
    static IN_INPUT_INIT_WALK: Cell<bool> = const { Cell::new(false) };
}

/// `flb_sched_ctx_get`: this thread's scheduler.
pub fn scheduler() -> usize {
    SCHEDULER.with(|s| s.get())
}

/// Gives the calling thread a scheduler of its own (a threaded input's thread).
pub fn start_thread_scheduler() -> usize {
    let s = Box::into_raw(Box::new(0u64)) as usize;
    SCHEDULER.with(|c| c.set(s));
    s
}

/// The thread whose scheduler is `sched` ended: its timers are freed with it.
pub fn end_thread_scheduler(sched: usize) {
    TIMERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|t| {
            if t.sched == sched {
                // SAFETY: the handle made by Box::into_raw in sched_timer_cb_create, freed
                // once, with its scheduler, as flb_sched_destroy frees its timers.
                drop(unsafe { Box::from_raw(t.handle as *mut u64) });
            }
            t.sched != sched
        });
    DEAD_SCHEDULERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(sched);
}

pub fn scheduler_is_dead(sched: usize) -> bool {
    DEAD_SCHEDULERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&sched)
}

pub fn set_input_init_walk(on: bool) {
    IN_INPUT_INIT_WALK.with(|c| c.set(on));
}

pub fn in_input_init_walk() -> bool {
    IN_INPUT_INIT_WALK.with(|c| c.get())
}

/// A thread playing a threaded input: the processor's callbacks and its timers run on it.
pub struct Worker {
    tx: Option<std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    pub fn start(name: &str) -> Worker {
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let sched = start_thread_scheduler();
                for job in rx {
                    job();
                }
                end_thread_scheduler(sched);
            })
            .expect("spawn the input thread");
        Worker {
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    /// Runs `f` on the worker thread and waits for its result.
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let (rtx, rrx) = std::sync::mpsc::channel();
        let job: Box<dyn FnOnce() + Send> = Box::new(move || {
            let _ = rtx.send(f());
        });
        self.tx
            .as_ref()
            .expect("the input thread is running")
            .send(job)
            .expect("the input thread takes jobs");
        rrx.recv().expect("the input thread answers")
    }

    /// Stops the thread (as `flb_input_thread_instance_exit` does) and waits for it.
    pub fn stop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

thread_local! {
    /// The filter instance whose callback is running on this thread.
    static OWNER: Cell<i32> = const { Cell::new(-1) };
}

/// Runs `f` as a callback of filter instance `id`.
pub fn as_owner<R>(id: i32, f: impl FnOnce() -> R) -> R {
    let before = OWNER.with(|o| o.replace(id));
    let r = f();
    OWNER.with(|o| o.set(before));
    r
}

pub fn owner() -> i32 {
    OWNER.with(|o| o.get())
}
