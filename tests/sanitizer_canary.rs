//! Proof that a sanitizer run can fail: `scripts/sanitize.sh` runs this ignored test and
//! expects the sanitizer it built with (`PSSESSION_SANITIZER`) to report it, so a setup in
//! which the instrumentation silently does nothing is caught. Never run by `make test`.

/// A pointer that may cross threads (the race is the point).
struct Shared(*mut u64);
// SAFETY: deliberately unsound, for the sanitizer to catch; only under sanitize.sh.
unsafe impl Send for Shared {}

#[test]
#[ignore = "run by scripts/sanitize.sh, which expects the sanitizer to report it"]
fn the_sanitizer_reports_a_planted_bug() {
    match std::env::var("PSSESSION_SANITIZER").as_deref() {
        Ok("thread") => {
            let cell = Box::into_raw(Box::new(0u64));
            let p = Shared(cell);
            let t = std::thread::spawn(move || {
                let p = p;
                // SAFETY: none; an unsynchronised write racing the one below.
                unsafe { std::ptr::write_volatile(p.0, 1) };
            });
            // SAFETY: none; an unsynchronised write racing the thread's.
            unsafe { std::ptr::write_volatile(cell, 2) };
            t.join().unwrap();
            // SAFETY: made by Box::into_raw above, freed once.
            drop(unsafe { Box::from_raw(cell) });
        }
        Ok("address") => {
            let v = vec![1u8; 8];
            let p = v.as_ptr();
            drop(v);
            // SAFETY: none; a read after free.
            let x = unsafe { std::ptr::read_volatile(p) };
            std::hint::black_box(x);
        }
        other => panic!("PSSESSION_SANITIZER is {other:?}; run scripts/sanitize.sh"),
    }
}
