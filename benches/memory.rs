//! Memory of the live aggregate: bytes of state per key, measured with a counting
//! allocator (criterion measures time, not memory). `make bench` runs it after the
//! throughput benches.

use pssession_core::aggregate::{Aggregate, AggregateMode, Key};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on unchanged to the system allocator, which upholds the
// GlobalAlloc contract; only a counter is updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
}

// Only the pure core runs under this allocator. The plugin hands the chunks it rewrites
// to Fluent Bit, which frees them with free(): a binary that calls the plugin's cb_filter
// must keep an allocator whose memory free() takes (std's System, or one over it).
#[global_allocator]
static A: Counting = Counting;

fn main() {
    for (label, message_len) in [
        ("short script (40 B)", 40usize),
        ("typical script (600 B)", 600),
    ] {
        let n = 10_000;
        let before = LIVE.load(Ordering::Relaxed);
        let keys: Vec<Key> = (0..n)
            .map(|i| Key {
                event_code: 4104,
                message: format!("{:0width$}", i, width = message_len),
                computer: format!("WS{i:05}.corp.contoso.com"),
                user: format!("CORP\\\\user{i:05}"),
            })
            .collect();
        let key_bytes: usize = keys
            .iter()
            .map(|k| k.message.len() + k.computer.len() + k.user.len())
            .sum::<usize>()
            / n;
        let mut agg = Aggregate::new(AggregateMode::Tumbling, n, 1 << 30, 0.0);
        for (i, k) in keys.into_iter().enumerate() {
            agg.add(k, i as f64, i as f64);
        }
        // the Vec that held the keys is gone; what remains is the aggregate
        let after = LIVE.load(Ordering::Relaxed);
        let per_key = (after - before) as f64 / n as f64;
        println!(
            "aggregate state, {label}: {per_key:.0} bytes per key ({key_bytes} bytes of key text, \
             {:.0} bytes of overhead); {n} keys = {:.1} MB",
            per_key - key_bytes as f64,
            (after - before) as f64 / 1e6
        );
        drop(agg);
    }
}
