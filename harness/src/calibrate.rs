//! `harness calibrate`: does the harness measure the map or itself? In one process, rounds
//! interleaved (A B C A B C ...), it times three loops of gets over the same keys:
//!
//! - **null**: the workload loop over the `null` target, a map that does nothing: the
//!   harness's floor (choosing keys, rolling the mix, sampling latency, a call);
//! - **direct**: the same key choice fed straight to the map's `get` in a bare loop;
//! - **harness**: the workload loop over the map.
//!
//! Two ratios, both within one run so a machine that changes speed moves all three loops:
//! - harness / (direct + null) <= [`MAX_LOOP_RATIO`]: the loop over the map costs no more than
//!   a direct get plus the loop's own floor (the floor and the direct loop both pay for
//!   choosing keys, so there is slack);
//! - null / direct <= [`MAX_FLOOR_RATIO`]: the floor is small next to a get.
//!
//! The bug that verified, and formatted an error for, every value read gave 1.24 and 0.94 (the
//! null target "found" every key, so the floor paid for it too); now they are about 0.9 and
//! 0.2.

use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use shmap::{MapBackend, MapParams};
use shmap_backends::with_backend;

use crate::control::ControlWords;
use crate::spec::{Dist, Spec, TargetKind, Workload};
use crate::stats;
use crate::targets::{NullTarget, ShmTarget, Target};
use crate::value_size::ValueSize;
use crate::workload::{key_into, prefill, run_worker};

/// The largest harness / (direct + null) that passes.
pub const MAX_LOOP_RATIO: f64 = 1.10;
/// The largest null / direct that passes.
pub const MAX_FLOOR_RATIO: f64 = 0.5;

/// Medians over the rounds, in ns per get.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    pub backend: String,
    pub rounds: usize,
    pub null_ns: f64,
    pub direct_ns: f64,
    pub harness_ns: f64,
    /// harness / (direct + null), per round, then its median.
    pub ratios: Vec<f64>,
    pub ratio: f64,
    pub max_ratio: f64,
    /// null / direct, of the medians.
    pub floor_ratio: f64,
    pub max_floor_ratio: f64,
}

fn spec(target: TargetKind, window_s: f64) -> Spec {
    Spec {
        target,
        workload: Workload::Read,
        procs: 1,
        duration_s: window_s,
        warmup_s: window_s / 4.0,
        keys: 10_000,
        key_size: 16,
        value_size: ValueSize::Fixed(64),
        capacity: Spec::default_capacity(10_000, Workload::Read),
        dist: Dist::Uniform,
        read_pct: 100,
        absent_pct: 0,
        seed: 42,
        kill_every_ms: 0,
        storage_dir: None,
        redis_url: None,
    }
}

/// ns per op of the workload loop over `target`.
fn loop_ns(target: &dyn Target, spec: &Spec) -> f64 {
    let ctl = ControlWords::default();
    ctl.release(); // one worker, no one to wait for
    let m = run_worker(target, spec, 0, &ctl);
    m.window_s * 1e9 / m.ops.max(1) as f64
}

/// ns per op of a bare loop of gets over the same key choice.
fn direct_ns(target: &dyn Target, spec: &Spec) -> f64 {
    let mut rng = SmallRng::seed_from_u64(spec.seed);
    let (mut key, mut buf) = (
        vec![0u8; spec.key_size],
        Vec::with_capacity(spec.value_size.max()),
    );
    let end = Instant::now() + Duration::from_secs_f64(spec.duration_s);
    let (start, mut n, mut hits) = (Instant::now(), 0u64, 0u64);
    while Instant::now() < end {
        for _ in 0..64 {
            key_into(&mut key, rng.random_range(0..spec.keys));
            hits += u64::from(target.get(&key, &mut buf) == Ok(true));
        }
        n += 64;
    }
    assert_eq!(hits, n, "every prefilled key must be found");
    start.elapsed().as_secs_f64() * 1e9 / n as f64
}

/// Runs the three loops `rounds` times, interleaved, against a fresh map of `backend`.
pub fn calibrate(backend: TargetKind, rounds: usize, window_s: f64) -> Result<Calibration, String> {
    let kind = backend
        .shm_kind()
        .ok_or_else(|| format!("calibrate needs one of our backends, not {backend}"))?;
    let spec = spec(backend, window_s);
    let null_spec = Spec {
        target: TargetKind::Null,
        ..spec.clone()
    };
    let name = format!("shmap-harness-{}-calibrate", std::process::id());
    let (mut null, mut direct, mut harness, mut ratios) = (vec![], vec![], vec![], vec![]);
    with_backend!(kind, M => {
        let params = MapParams { capacity: spec.capacity, max_key_size: spec.key_size, max_value_size: spec.value_size.max(), max_capacity: spec.capacity };
        let map = ShmTarget(M::create(&name, params).map_err(|e| format!("create map: {e}"))?);
        let _ = shmap::unlink(&name); // the mapping stays; nothing is left behind on any exit
        prefill(&map, &spec)?;
        for _ in 0..rounds {
            let n = loop_ns(&NullTarget, &null_spec);
            let d = direct_ns(&map, &spec);
            let h = loop_ns(&map, &spec);
            null.push(n);
            direct.push(d);
            harness.push(h);
            ratios.push(h / (d + n));
        }
    });
    let (null_ns, direct_ns) = (stats::median(&null), stats::median(&direct));
    Ok(Calibration {
        backend: backend.name().to_owned(),
        rounds,
        null_ns,
        direct_ns,
        harness_ns: stats::median(&harness),
        ratio: stats::median(&ratios),
        ratios,
        max_ratio: MAX_LOOP_RATIO,
        floor_ratio: null_ns / direct_ns,
        max_floor_ratio: MAX_FLOOR_RATIO,
    })
}

impl Calibration {
    pub fn passed(&self) -> bool {
        self.ratio <= MAX_LOOP_RATIO && self.floor_ratio <= MAX_FLOOR_RATIO
    }

    pub fn text(&self) -> String {
        format!(
            "{} gets, medians of {} interleaved rounds, ns per op:\n  null loop (harness floor) {:>6.1}\n  direct get loop           {:>6.1}\n  harness loop              {:>6.1}\n  harness / (direct + null) = {:.2} (pass: <= {MAX_LOOP_RATIO}); null / direct = {:.2} (pass: <= {MAX_FLOOR_RATIO}): {}\n",
            self.backend,
            self.rounds,
            self.null_ns,
            self.direct_ns,
            self.harness_ns,
            self.ratio,
            self.floor_ratio,
            if self.passed() { "the harness measures the map" } else { "THE HARNESS MEASURES ITSELF" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails when the workload loop costs more than a direct call plus its floor, or the floor
    /// is not small next to a get, as when every get formatted an error string (1.24 and
    /// 0.94). Ratios within one run, so a slow or noisy machine moves all the loops alike.
    #[test]
    fn the_workload_loop_costs_no_more_than_its_floor_plus_a_direct_call() {
        if cfg!(debug_assertions) {
            eprintln!("skipped: a timing ratio means something only in a release build (make test builds one)");
            return;
        }
        let c = calibrate(TargetKind::Lockfree, 7, 0.1).unwrap();
        assert!(c.passed(), "{}", c.text());
    }
}
