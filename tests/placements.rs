//! The plugin in every place Fluent Bit can run it, through the host emulator playing what
//! the real engine did (see `src/host_emulator/engine.rs`): a filter, a processor of a
//! plain or threaded input, a processor of an output; stops and hot reloads. Each test
//! ends with no fault: nothing the real engine would have crashed on or lost.

mod common;
pssession_host_emulator::export_host_symbols!();

use common::*;
use pssession_core::chunk_io::Layout;
use pssession_host_emulator::{self as host_emulator, emitted, EmuError, Instance, Placement};
use serde_json::{json, Value};

fn positive(host: &str) -> Value {
    json!({"EventID": 4104, "Hostname": host, "AccountName": "alice",
           "Channel": "Microsoft-Windows-PowerShell/Operational",
           "ScriptBlockText": format!("Enter-PSSession -ComputerName {host}-dc")})
}

fn positives(n: usize, host: &str) -> Vec<u8> {
    let bodies: Vec<Value> = (0..n).map(|_| positive(host)).collect();
    chunk_of(&bodies, 1.7e9, Layout::CURRENT)
}

/// (rows, the flagged records they count) among records of `tag` in the input `input`.
fn delivered(input: &str, tag: &str) -> (usize, u64) {
    let mut rows = 0;
    let mut records = 0;
    for e in emitted(input).into_iter().filter(|e| e.tag == tag) {
        for r in decode(&e.data) {
            rows += 1;
            records += r.body["count"].as_u64().unwrap();
        }
    }
    (rows, records)
}

fn exit_line(name: &str) -> String {
    host_emulator::logs_containing(&format!("[filter:pssession:{name}] stopping:"))
        .pop()
        .map(|l| l.text)
        .unwrap_or_default()
}

fn no_faults(inst: &Instance<'_>) {
    assert!(inst.faults().is_empty(), "{:?}", inst.faults());
}

#[test]
fn output_processor_appends_rows_and_never_uses_its_output_as_an_input() {
    let inst = plugin()
        .instance_in(
            Placement::OutputProcessor,
            &[("alias", "outproc"), ("flush_interval", "1s")],
        )
        .unwrap();
    assert!(
        inst.timer_intervals().is_empty(),
        "no timer: rows ride the chunks"
    );
    assert!(inst
        .logs()
        .iter()
        .any(|l| l.text.contains("placement=output processor")));
    let first = inst.filter(&positives(3, "ws1"), "win");
    assert_eq!(decode(&first.chunk).len(), 3, "not due yet");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let call = inst.filter(&positives(1, "ws2"), "win");
    let out = decode(&call.chunk);
    assert_eq!(
        out.len(),
        3,
        "the record, then the window's rows, this record's included"
    );
    assert_eq!(
        (&out[1].body["count"], &out[2].body["count"]),
        (&json!(3), &json!(1))
    );
    let again = inst.filter(&call.chunk, "win");
    assert!(
        !again.modified(),
        "its own rows and flagged records are not judged again"
    );
    no_faults(&inst);
}

#[test]
fn alert_tag_in_an_output_processor_stops_start_up_with_what_to_do() {
    match plugin().instance_in(Placement::OutputProcessor, &[("alert_tag", "alerts")]) {
        Err(EmuError::Init(lines)) => {
            let text = lines.join("\n");
            assert!(text.contains("property 'alert_tag'"), "{text}");
            assert!(text.contains("output processor"), "{text}");
            assert!(text.contains("processors of the input"), "{text}");
        }
        other => panic!("started: {:?}", other.err()),
    }
}

#[test]
fn input_processor_reinjects_after_its_stage_and_creates_no_emitter() {
    let inst = plugin()
        .instance_in(
            Placement::InputProcessor {
                threaded: false,
                stage: 2,
            },
            &[("alias", "inproc"), ("alert_tag", "alerts.ps")],
        )
        .unwrap();
    assert_eq!(
        host_emulator::emitters_of(inst.id()),
        0,
        "no emitter input at all"
    );
    let input = inst.parent_input_name().unwrap();
    inst.filter(&positives(2, "ws3"), "win");
    let copies: Vec<_> = emitted(&input)
        .into_iter()
        .filter(|e| e.tag == "alerts.ps")
        .collect();
    assert_eq!(
        copies.len(),
        2,
        "copies re-injected at once, on the input's thread"
    );
    assert!(
        copies.iter().all(|c| c.stage == Some(3)),
        "after this processor's stage"
    );
    inst.fire_timers();
    assert_eq!(delivered(&input, "pssession.aggregate"), (1, 2));
    drop_and_check(inst, "inproc", "re-injected 1 (2)");
}

fn drop_and_check(inst: Instance<'_>, name: &str, door: &str) {
    let faults = inst.faults();
    drop(inst);
    assert!(faults.is_empty(), "{faults:?}");
    let line = exit_line(name);
    assert!(line.contains(door), "{line}");
}

#[test]
fn threaded_input_processor_leaves_its_timers_to_its_thread() {
    let inst = plugin()
        .instance_in(
            Placement::InputProcessor {
                threaded: true,
                stage: 0,
            },
            &[("alias", "threaded"), ("flush_interval", "1h")],
        )
        .unwrap();
    let input = inst.parent_input_name().unwrap();
    inst.filter(&positives(4, "ws4"), "win");
    assert_eq!(
        inst.fire_timers(),
        2,
        "both timers run on the input's thread"
    );
    assert_eq!(delivered(&input, "pssession.aggregate"), (1, 4));
    let id = inst.id();
    drop(inst); // the thread ends first, then cb_exit on this thread
    let faults = host_emulator::faults_about(&format!("[owner:{id}]"));
    assert!(faults.is_empty(), "{faults:?}");
}

#[test]
fn the_emulator_catches_a_timer_destroyed_from_another_thread() {
    use host_emulator::host;
    extern "C" fn cb(_: *mut std::ffi::c_void, _: *mut std::ffi::c_void) {}
    let mut w = host_emulator::engine::Worker::start("flb-in-probe");
    let timer = w.run(|| {
        let mut t: *mut std::ffi::c_void = std::ptr::null_mut();
        host_emulator::engine::as_owner(-77, || {
            // SAFETY: this thread's scheduler, a callback, and a valid out pointer.
            unsafe {
                host::sched_timer_cb_create(
                    host::sched_ctx_get(),
                    4,
                    100,
                    Some(cb),
                    std::ptr::null_mut(),
                    &mut t,
                )
            }
        });
        t as usize
    });
    w.stop();
    // SAFETY: the handle the emulator made (what is checked is the thread it is used on).
    host_emulator::engine::as_owner(-77, || unsafe {
        host::sched_timer_cb_destroy(timer as *mut _)
    });
    assert_eq!(host_emulator::faults_about("[owner:-77]").len(), 1);
}

#[test]
fn a_stop_delivers_the_open_window_while_the_engine_still_flushes() {
    let mut inst = plugin()
        .instance(&[
            ("match", "*"),
            ("alias", "stopper"),
            ("flush_interval", "1h"),
        ])
        .unwrap();
    inst.filter(&positives(5, "ws5"), "win");
    inst.stop_ingestion();
    inst.grace(); // the grace period: short timers still run
    let em = "emitter_for_stopper";
    assert_eq!(delivered(em, "pssession.aggregate"), (1, 5));
    let row = decode(&emitted(em)[0].data).remove(0);
    assert_eq!(row.body["emit_reason"], "shutdown");
    drop_and_check(inst, "stopper", "emitter 1 (5)");
    assert!(host_emulator::lost(em).is_empty());
}

#[test]
fn rows_refused_by_a_full_emitter_wait_for_the_next_door() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("rows.state");
    let mut inst = plugin()
        .instance(&[
            ("match", "*"),
            ("alias", "fullem"),
            ("aggregate_state_file", state.to_str().unwrap()),
        ])
        .unwrap();
    inst.filter(&positives(3, "ws6"), "win");
    inst.set_inputs_full(true);
    inst.fire_timers();
    assert!(
        emitted("emitter_for_fullem").is_empty(),
        "nothing handed to a full emitter"
    );
    inst.filter(&positives(2, "ws7"), "win");
    inst.stop_ingestion();
    inst.grace();
    drop_and_check(inst, "fullem", "state file 2 (5)");
    let saved = std::fs::read_to_string(&state).unwrap();
    let n: u64 = saved
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["count"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(n, 5, "every count kept for the next start");
}

/// Five hot reloads (stop, grace, exit, then a new instance) with records in each
/// generation: rows delivered + rows left in the state file = every flagged record.
fn reloads(state: Option<&std::path::Path>, alias: &str, full_at_stop: &[bool]) -> (u64, u64) {
    let mut flagged = 0;
    let mut props = vec![("match", "*"), ("alias", alias), ("flush_interval", "1h")];
    let state_text = state.map(|p| p.to_str().unwrap().to_string());
    if let Some(p) = &state_text {
        props.push(("aggregate_state_file", p));
    }
    let em = format!("emitter_for_{alias}");
    for (generation, full) in full_at_stop.iter().enumerate() {
        let mut inst = plugin().instance(&props).unwrap();
        let n = generation + 1;
        inst.filter(&positives(n, &format!("g{generation}")), "win");
        flagged += n as u64;
        inst.set_inputs_full(*full);
        inst.stop_ingestion();
        inst.grace();
        let faults = inst.faults();
        drop(inst);
        assert!(faults.is_empty(), "{faults:?}");
    }
    let (_, delivered) = delivered(&em, "pssession.aggregate");
    let saved: u64 = state
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| {
            t.lines()
                .map(|l| {
                    serde_json::from_str::<Value>(l).unwrap()["count"]
                        .as_u64()
                        .unwrap()
                })
                .sum()
        })
        .unwrap_or(0);
    let logged: u64 = host_emulator::logs_containing(&format!(
        "[filter:pssession:{alias}] aggregate row at shutdown"
    ))
    .iter()
    .map(|l| {
        let json = &l.text[l.text.find('{').unwrap()..];
        serde_json::from_str::<Value>(json).unwrap()["count"]
            .as_u64()
            .unwrap()
    })
    .sum();
    assert_eq!(
        delivered + saved + logged,
        flagged,
        "delivered {delivered} saved {saved} logged {logged}"
    );
    (delivered, saved + logged)
}

#[test]
fn five_reloads_keep_the_accounting_exact_with_a_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("rows.state");
    // generations whose emitter is full at the stop leave their rows to the next one
    let (delivered, kept) = reloads(
        Some(&state),
        "reload_sf",
        &[false, true, false, true, true, false],
    );
    assert_eq!((delivered, kept), (21, 0));
}

#[test]
fn five_reloads_keep_the_accounting_exact_without_a_state_file() {
    let (delivered, kept) = reloads(
        None,
        "reload_log",
        &[false, true, false, false, true, false],
    );
    assert_eq!(delivered + kept, 21);
    assert_eq!(kept, 2 + 5, "what could not leave is in the log");
}

#[test]
fn the_emulator_catches_an_input_created_while_inputs_are_initialised() {
    use host_emulator::{engine, host};
    engine::set_input_init_walk(true);
    // SAFETY: flb_input_new's arguments: a C string plugin name, NULL config and data.
    let em = engine::as_owner(-78, || unsafe {
        host::input_new(
            std::ptr::null_mut(),
            c"emitter".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    });
    engine::set_input_init_walk(false);
    assert!(!em.is_null());
    assert_eq!(host_emulator::faults_about("[owner:-78]").len(), 1);
    // SAFETY: the input just made, destroyed once.
    unsafe { host::input_instance_destroy(em) };
}

#[test]
fn a_zero_grace_period_is_warned_about() {
    host_emulator::set_service_grace(0);
    let inst = plugin()
        .instance(&[("match", "*"), ("alias", "nograce")])
        .unwrap();
    host_emulator::set_service_grace(5);
    assert!(
        inst.logs()
            .iter()
            .any(|l| l.text.contains("service grace is 0")),
        "{:?}",
        inst.logs()
    );
    let fine = plugin()
        .instance(&[("match", "*"), ("alias", "grace5")])
        .unwrap();
    assert!(!fine.logs().iter().any(|l| l.text.contains("service grace")));
}
