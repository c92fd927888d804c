//! What a reclaim of tombstones costs the writer that starts it, in a large table: one
//! process fills a map of `BUCKETS` buckets (it may not grow) to `LIVE_PCT` percent live,
//! then churns it (remove a random present key, insert a new one) for `STEPS` steps, timing
//! every remove and insert. It reports the longest, the 99.99th percentile, the operations
//! over 10 ms, the reclaims counted in the table's header, the churn's rate, and checks
//! every present key at the end.
//!
//! Every writer whose write makes a reclaim due reclaims after it; the reclaim holds the
//! writer locks a chunk of slots at a time, so other writers wait for one chunk. The caller
//! itself waited for the whole pass over the table (819 ms at 16M buckets, in
//! `growth_scale`): this example measures that latency at a size that builds in seconds.
//!
//! With MAX_VALUE over 8, values are log-uniform from 8 bytes to it, so churn also leaves the
//! heap's runs sparse and the writers run its sweeps and compactions: those pauses show too.
//!
//! `cargo run --release -p shmap-benches --example reclaim_pause -- [BUCKETS] [LIVE_PCT]
//! [STEPS] [MAX_VALUE]`; defaults: 4,194,304 buckets, 40% live, 4,194,304 steps, 8 bytes.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmap::{MapBackend, MapOps, MapParams};
use shmap_backends::LockFreeMap;
use shmap_testkit::checked::SplitMix;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .map_or(default, |a| a.replace('_', "").parse().expect("a number"))
}

fn key(i: u64) -> [u8; 8] {
    i.to_le_bytes()
}

/// Key `i`'s value: `len(i)` bytes that start with the key, so a wrong one is seen.
fn value(i: u64, max: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&key(i));
    // Log-uniform from 8 to `max` bytes, fixed by the key.
    let u = SplitMix(i).below(1 << 30) as f64 / (1u64 << 30) as f64;
    let len = (8.0 * (max as f64 / 8.0).powf(u)) as usize;
    out.resize(len.clamp(8, max.max(8)), (i % 251) as u8);
}

fn main() {
    let buckets = arg(1, 1 << 22);
    let live = buckets * arg(2, 40) / 100;
    let steps = arg(3, 1 << 22);
    let max_value = arg(4, 8);
    let mut v = Vec::new();
    let params = MapParams {
        capacity: buckets,
        max_capacity: buckets,
        max_value_size: max_value.max(MapParams::default().max_value_size),
        ..MapParams::default()
    };
    let name = format!("shmap-reclaim-pause-{}", std::process::id());
    let map = LockFreeMap::create(&name, params).expect("create");
    let mut present: Vec<u64> = (0..live as u64).collect();
    for &k in &present {
        value(k, max_value, &mut v);
        map.insert(&key(k), &v).expect("fill");
    }
    // Relaxed: a statistic, read with no writer running.
    let reclaims = || {
        let table = map.raw_table().expect("current table");
        table.segment().header().reclaims().load(Ordering::Relaxed)
    };
    let before = reclaims();
    let (mut rng, mut next) = (SplitMix(11), live as u64);
    let mut times = Vec::with_capacity(2 * steps);
    let started = Instant::now();
    for _ in 0..steps {
        let at = rng.below(live);
        let t = Instant::now();
        assert!(map.remove(&key(present[at])).expect("remove"));
        times.push(t.elapsed());
        let t = Instant::now();
        value(next, max_value, &mut v);
        map.insert(&key(next), &v).expect("insert");
        times.push(t.elapsed());
        present[at] = next;
        next += 1;
    }
    let elapsed = started.elapsed();
    let mut out = Vec::new();
    let wrong = present
        .iter()
        .filter(|&&k| {
            value(k, max_value, &mut v);
            !(map.get_into(&key(k), &mut out).expect("get") && out == v)
        })
        .count();
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{buckets} buckets, {live} live, {steps} churn steps: longest op {:.1} ms, p99.99 \
         {:.3} ms, {} ops over 10 ms, {} reclaims, {:.2} M steps/s, {wrong} keys wrong, values \
         8..{max_value} B",
        ms(*times.last().expect("ops")),
        ms(at(0.9999)),
        times.iter().filter(|d| d.as_millis() >= 10).count(),
        reclaims() - before,
        steps as f64 / elapsed.as_secs_f64() / 1e6,
    );
    let _ = map.unlink();
    assert_eq!(wrong, 0, "keys read back wrong");
}
