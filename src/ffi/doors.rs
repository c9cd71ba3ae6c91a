//! The ways records the plugin makes itself (aggregate rows, alert copies, late flags)
//! enter Fluent Bit, one per placement, and the host functions behind them:
//! - a filter creates an emitter input (as `rewrite_tag` does) and appends to it;
//! - an input processor re-injects into its own input after its stage (as `rewrite_tag`
//!   and `multiline` do in processors: `flb_input_log_append_skip_processor_stages`);
//! - an output processor (or a host lacking the above) appends rows to the chunk it is
//!   processing, the only records that reach its output.

use super::layout::ConfigFields;
use super::{flb_config, flb_input_instance, resolve};
use pssession_core::config::Config;
use pssession_core::instance::RowDoor;
use std::ffi::{c_char, c_int, c_void, CStr, CString};

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
type InputInstanceExitFn = unsafe extern "C" fn(*mut flb_input_instance, *mut flb_config);
type InputInstanceDestroyFn = unsafe extern "C" fn(*mut flb_input_instance);
type StorageInputCreateFn = unsafe extern "C" fn(*mut c_void, *mut flb_input_instance) -> c_int;
/// `flb_input_log_append(ins, tag, tag_len, buf, size)`.
type LogAppendFn = unsafe extern "C" fn(
    *mut flb_input_instance,
    *const c_char,
    usize,
    *const c_void,
    usize,
) -> c_int;
/// `flb_input_log_append_skip_processor_stages(ins, stage, tag, tag_len, buf, size)`.
pub type SkipStagesFn = unsafe extern "C" fn(
    *mut flb_input_instance,
    usize,
    *const c_char,
    usize,
    *const c_void,
    usize,
) -> c_int;

/// The host functions behind an emitter input. A Fluent Bit built without `in_emitter`
/// lacks some of them.
#[derive(Clone, Copy)]
pub struct EmitterHost {
    name_exists: InputNameExistsFn,
    input_new: InputNewFn,
    set_property: InputSetPropertyFn,
    instance_init: InputInstanceInitFn,
    instance_exit: InputInstanceExitFn,
    instance_destroy: InputInstanceDestroyFn,
    storage_input_create: StorageInputCreateFn,
    log_append: LogAppendFn,
    _emitter: EmitterMarkerFn,
}

/// Any function pointer type: `in_emitter_add_record` is only looked up, never called
/// (records reach the emitter input through `flb_input_log_append`, which says whether
/// Fluent Bit took them; the emitter's own queue accepts records it may never deliver).
type EmitterMarkerFn = unsafe extern "C" fn();

impl EmitterHost {
    /// Ok(host), or Err(the first missing symbol).
    pub fn resolve() -> Result<EmitterHost, &'static str> {
        Ok(EmitterHost {
            name_exists: resolve(c"flb_input_name_exists")?,
            input_new: resolve(c"flb_input_new")?,
            set_property: resolve(c"flb_input_set_property")?,
            instance_init: resolve(c"flb_input_instance_init")?,
            instance_exit: resolve(c"flb_input_instance_exit")?,
            instance_destroy: resolve(c"flb_input_instance_destroy")?,
            storage_input_create: resolve(c"flb_storage_input_create")?,
            // Present exactly when the emitter plugin is built in.
            _emitter: resolve::<EmitterMarkerFn>(c"in_emitter_add_record")?,
            log_append: resolve(c"flb_input_log_append")?,
        })
    }
}

/// Why an emitter could not be made: a bad property stops start-up, anything else makes
/// the filter fall back to appending rows to chunks.
pub enum EmitterError {
    Property(String),
    Unavailable(String),
}

impl EmitterHost {
    // Each wrapper makes one call of Fluent Bit's input API, with the config pointer it
    // passed to cb_init, NUL-terminated strings and an input instance it made.

    fn name_exists(&self, name: &CStr, config: *mut flb_config) -> bool {
        // SAFETY: see above.
        unsafe { (self.name_exists)(name.as_ptr(), config) != 0 }
    }

    fn new_emitter(&self, config: *mut flb_config) -> *mut flb_input_instance {
        // SAFETY: see above; "emitter" is a private plugin, so public_only is 0.
        unsafe { (self.input_new)(config, c"emitter".as_ptr(), std::ptr::null_mut(), 0) }
    }

    fn set(&self, em: *mut flb_input_instance, k: &CStr, v: &CStr) -> bool {
        // SAFETY: see above.
        unsafe { (self.set_property)(em, k.as_ptr(), v.as_ptr()) == 0 }
    }

    fn init(&self, em: *mut flb_input_instance, config: *mut flb_config) -> bool {
        // SAFETY: see above.
        unsafe { (self.instance_init)(em, config) == 0 }
    }

    fn storage(&self, cio: *mut c_void, em: *mut flb_input_instance) -> bool {
        // SAFETY: see above; `cio` is config->cio, read where service_configs[] says.
        unsafe { (self.storage_input_create)(cio, em) == 0 }
    }

    /// Releases an emitter that did not start (after `instance_exit` once initialised).
    fn discard(&self, em: *mut flb_input_instance, config: *mut flb_config, initialised: bool) {
        // SAFETY: see above; the instance is released once and never used again.
        unsafe {
            if initialised {
                (self.instance_exit)(em, config);
            }
            (self.instance_destroy)(em);
        }
    }
}

/// Creates and initialises the emitter input, as `rewrite_tag` does, with storage from
/// `config->cio` (read at the offset the host's `service_configs[]` gives).
pub fn create_emitter(
    eh: EmitterHost,
    config: *mut flb_config,
    fields: &ConfigFields,
    name: &str,
    cfg: &Config,
) -> Result<*mut flb_input_instance, EmitterError> {
    use EmitterError::*;
    let cname = CString::new(name).map_err(|_| Property("emitter_name has a NUL byte".into()))?;
    let Some(cio) = fields.cio(config) else {
        return Err(Unavailable(
            "this Fluent Bit does not say where its chunk I/O context is (no 'storage.path' \
             in service_configs)"
                .into(),
        ));
    };
    if eh.name_exists(&cname, config) {
        return Err(Property(format!(
            "property 'emitter_name': emitter_name '{name}' already exists"
        )));
    }
    let em = eh.new_emitter(config);
    if em.is_null() {
        return Err(Unavailable(
            "cannot create the emitter input instance".into(),
        ));
    }
    let settings = [
        ("alias", name),
        ("mem_buf_limit", cfg.emitter.mem_buf_limit.as_str()),
        ("storage.type", cfg.emitter.storage_type.as_str()),
    ];
    for (k, v) in settings {
        let (ck, cv) = (
            CString::new(k).unwrap_or_default(),
            CString::new(v).unwrap_or_default(),
        );
        if !eh.set(em, &ck, &cv) {
            eh.discard(em, config, false);
            return Err(Unavailable(format!(
                "cannot set '{k}' of the emitter to '{v}'"
            )));
        }
    }
    if !eh.init(em, config) {
        eh.discard(em, config, true);
        return Err(Unavailable(format!(
            "cannot initialize emitter instance '{name}'"
        )));
    }
    // Storage is created for the configured inputs before filters start; an input made
    // now needs its own, as rewrite_tag does with flb_storage_input_create.
    if !eh.storage(cio, em) {
        eh.discard(em, config, true);
        return Err(Unavailable(format!(
            "cannot create storage for emitter '{name}'"
        )));
    }
    Ok(em)
}

/// How this instance's own records enter the pipeline.
pub enum Door {
    /// The emitter input this filter created.
    Emitter {
        host: EmitterHost,
        ins: *mut flb_input_instance,
    },
    /// The processor's parent input, after the processor's stage.
    Reinject {
        input: *mut flb_input_instance,
        stage: usize,
        append: SkipStagesFn,
    },
    /// The chunk being processed (rows only; see [`RowSink::AppendToChunk`]).
    ///
    /// [`RowSink::AppendToChunk`]: pssession_core::instance::RowSink::AppendToChunk
    Chunk,
}

impl Door {
    /// The door rows delivered by [`deliver`](Self::deliver) are counted under.
    pub fn row_door(&self) -> RowDoor {
        match self {
            Door::Emitter { .. } => RowDoor::Emitter,
            Door::Reinject { .. } => RowDoor::Reinjected,
            Door::Chunk => RowDoor::Appended,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Door::Emitter { .. } => "emitter",
            Door::Reinject { .. } => "re-injected into the input",
            Door::Chunk => "appended to chunks",
        }
    }

    /// Whether `ins` is this door's own emitter input.
    pub fn is_own_input(&self, ins: *mut flb_input_instance) -> bool {
        matches!(self, Door::Emitter { ins: em, .. } if *em == ins)
    }

    /// Hands whole records to Fluent Bit from the engine timer (the thread the door was
    /// made on). True only when Fluent Bit accepted them into an input chunk: a paused or
    /// full input refuses them, and the caller keeps them for the next try.
    pub fn deliver(&self, tag: &str, records: &[u8]) -> bool {
        let ctag = match CString::new(tag) {
            Ok(t) => t,
            Err(_) => return false,
        };
        // SAFETY: Fluent Bit's append functions with a live input, a tag of tag.len()
        // bytes and a whole msgpack buffer they copy before returning.
        let ret = unsafe {
            match self {
                Door::Emitter { host, ins } => (host.log_append)(
                    *ins,
                    ctag.as_ptr(),
                    tag.len(),
                    records.as_ptr() as *const c_void,
                    records.len(),
                ),
                Door::Reinject {
                    input,
                    stage,
                    append,
                } => append(
                    *input,
                    stage + 1,
                    ctag.as_ptr(),
                    tag.len(),
                    records.as_ptr() as *const c_void,
                    records.len(),
                ),
                Door::Chunk => -1,
            }
        };
        ret == 0
    }

    /// Whether records made inside the filter callback may be handed over there and then:
    /// re-injection goes into the very input whose thread runs the callback; the emitter
    /// belongs to the engine thread, so they wait for the timer.
    pub fn takes_from_filter(&self) -> bool {
        matches!(self, Door::Reinject { .. })
    }
}

/// `FLB_SCHED_TIMER_CB_PERM` of flb_scheduler.h: a permanent callback timer.
const FLB_SCHED_TIMER_CB_PERM: c_int = 4;

pub type TimerCallback = extern "C" fn(*mut flb_config, *mut c_void);
type SchedCtxGetFn = unsafe extern "C" fn() -> *mut c_void;
type TimerCbCreateFn = unsafe extern "C" fn(
    *mut c_void,
    c_int,
    c_int,
    TimerCallback,
    *mut c_void,
    *mut *mut c_void,
) -> c_int;
type TimerCbDestroyFn = unsafe extern "C" fn(*mut c_void) -> c_int;

/// An engine timer (`log_to_metrics`'s pattern) on the scheduler of the thread that made
/// it: the engine's for a filter, the input's own for a processor of a threaded input.
pub struct Timer {
    handle: *mut c_void,
    destroy: TimerCbDestroyFn,
    owner: libc::pthread_t,
}

impl Timer {
    /// A permanent timer calling `cb(config, data)` every `ms` on this thread's scheduler.
    pub fn create(ms: u64, cb: TimerCallback, data: *mut c_void) -> Result<Timer, String> {
        let sched_get: SchedCtxGetFn = resolve(c"flb_sched_ctx_get")?;
        let create: TimerCbCreateFn = resolve(c"flb_sched_timer_cb_create")?;
        let destroy: TimerCbDestroyFn = resolve(c"flb_sched_timer_cb_destroy")?;
        let mut handle: *mut c_void = std::ptr::null_mut();
        // SAFETY: flb_sched_ctx_get / flb_sched_timer_cb_create as log_to_metrics uses
        // them; the callback and its data outlive the timer (see `release`).
        let ret = unsafe {
            let sched = sched_get();
            if sched.is_null() {
                return Err("this thread has no scheduler".into());
            }
            let ms = ms.clamp(1, i32::MAX as u64) as c_int;
            create(sched, FLB_SCHED_TIMER_CB_PERM, ms, cb, data, &mut handle)
        };
        if ret < 0 || handle.is_null() {
            return Err("flb_sched_timer_cb_create failed".into());
        }
        Ok(Timer {
            handle,
            destroy,
            // SAFETY: pthread_self has no preconditions.
            owner: unsafe { libc::pthread_self() },
        })
    }

    /// Stops the timer, on the thread whose scheduler holds it. Called from another
    /// thread (the engine's, at the exit of a threaded input's processor), that thread and
    /// its scheduler are already gone, timers included: destroying it would touch freed
    /// memory, and nothing can fire it any more. Returns whether it was destroyed here.
    pub fn release(self) -> bool {
        // SAFETY: pthread_self / pthread_equal have no preconditions.
        let here = unsafe { libc::pthread_equal(self.owner, libc::pthread_self()) != 0 };
        if here {
            // SAFETY: our timer, destroyed once, on its scheduler's thread.
            unsafe { (self.destroy)(self.handle) };
        }
        here
    }
}
