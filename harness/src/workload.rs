//! The measured operation loop that every worker runs ([`run_worker`]), and what it works on:
//! the keys ([`key_into`]), their choice, and the prefill that makes gets hit.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

use shmap_testkit::checked;

use crate::control::ControlWords;
use crate::outcome::new_histogram;
use crate::spec::{Dist, Spec, Workload};
use crate::targets::Target;

/// Writes key number `index` into `buf` (`key_size` bytes: the index, then filler: byte `i`
/// of the filler is `index as u8 + i`, wrapping).
///
/// The filler is stored a word at a time. Stored byte by byte, it made the map's first read
/// of the key (the hash's 8-byte load) wait for eight byte stores to reach the cache, a failed
/// store-to-load forwarding that perf put at 9% of a lock-free get's samples. A real key,
/// written by a copy, does not pay it, and the `null` floor, which never reads the key, did
/// not show it.
pub fn key_into(buf: &mut [u8], index: u64) {
    buf[..8].copy_from_slice(&index.to_le_bytes());
    // Eight bytes b, b+1, ..., b+7 (each wrapping) in one register: a per-byte add of the
    // steps 0..7 to b in every byte (the high bits summed apart, so no byte carries into the
    // next). Bytes built one by one on the stack and loaded as a word would stall the same way.
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const STEPS: u64 = 0x0706_0504_0302_0100;
    let word = |at: usize| -> [u8; 8] {
        let b = u64::from((index as u8).wrapping_add(at as u8)) * 0x0101_0101_0101_0101;
        (((b & LOW7) + STEPS) ^ (b & !LOW7)).to_le_bytes()
    };
    let filler = &mut buf[8..];
    let at = filler.len() / 8 * 8;
    let mut words = filler.chunks_exact_mut(8);
    for (w, chunk) in words.by_ref().enumerate() {
        chunk.copy_from_slice(&word(w * 8)); // one 8-byte store
    }
    let rest = words.into_remainder();
    if !rest.is_empty() {
        rest.copy_from_slice(&word(at)[..rest.len()]);
    }
}

/// Inserts keys `0..keys`, so that gets hit.
pub fn prefill(target: &dyn Target, spec: &Spec) -> Result<(), String> {
    if spec.workload == Workload::RapidGrow {
        return Ok(()); // it starts empty: filling the map is what it measures
    }
    let (mut key, filler) = (
        vec![0u8; spec.key_size],
        vec![0xA5u8; spec.value_size.max()],
    );
    let lengths = spec.value_size.lengths();
    // Batches of at most 4,096 pairs or 4 MiB (values can be up to 256 MiB each).
    let (mut batch, mut bytes) = (Vec::new(), 0);
    for index in 0..spec.keys {
        key_into(&mut key, index);
        let len = lengths.of(index);
        let value = if spec.kill_every_ms > 0 {
            checked::make(index, 0, len)
        } else {
            filler[..len].to_vec()
        };
        bytes += key.len() + value.len();
        batch.push((key.clone(), value));
        if batch.len() == 4096 || bytes >= 4 << 20 {
            target.insert_all(&batch)?;
            (batch, bytes) = (Vec::new(), 0);
        }
    }
    target.insert_all(&batch)
}

/// A key chooser over `0..n`.
enum Chooser {
    Uniform(u64),
    Zipf(Zipf<f64>),
}

impl Chooser {
    fn new(dist: Dist, n: u64) -> Self {
        match dist {
            Dist::Uniform => Self::Uniform(n),
            Dist::Zipf(theta) => {
                Self::Zipf(Zipf::new(n as f64, theta).expect("validated parameters"))
            }
        }
    }

    fn pick(&self, rng: &mut SmallRng) -> u64 {
        match self {
            Self::Uniform(n) => rng.random_range(0..*n),
            Self::Zipf(z) => z.sample(rng) as u64 - 1, // ranks are 1..=n; rank 1 is the hottest key
        }
    }
}

/// What one worker measured in its window.
#[derive(Debug)]
pub struct Measured {
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Sampled operation latencies in nanoseconds.
    pub latency: Histogram<u64>,
    pub window_s: f64,
}

/// One in this many operations is timed: often enough for stable percentiles, rarely enough
/// that reading the clock does not change the throughput being measured.
const SAMPLE_EVERY: u64 = 32;
/// Operations between clock checks.
const BATCH: u64 = 64;

/// Waits at the start barrier, warms up, then runs the workload for the measured window.
pub fn run_worker(target: &dyn Target, spec: &Spec, worker: u64, ctl: &ControlWords) -> Measured {
    let mut rng = SmallRng::seed_from_u64(spec.seed ^ worker.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let [get, insert, remove, _update] = spec.workload.mix(spec.read_pct);
    let absent = spec.absent_pct;
    let (present, universe) = (
        Chooser::new(spec.dist, spec.keys),
        Chooser::new(spec.dist, 2 * spec.keys),
    );
    let (mut key, mut buf) = (
        vec![0u8; spec.key_size],
        Vec::with_capacity(spec.value_size.max()),
    );
    let checking = spec.kill_every_ms > 0;
    let lengths = spec.value_size.lengths();
    // Written as `value[..length of the key]`; under kills, replaced by each checked value.
    let mut value = vec![worker as u8; spec.value_size.max()];
    let mut len = value.len();
    let mut m = Measured {
        ops: 0,
        errors: 0,
        first_error: None,
        latency: new_histogram(),
        window_s: 0.0,
    };

    ctl.arrive_and_wait();
    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(spec.warmup_s);
    let end = warm_end + Duration::from_secs_f64(spec.duration_s);
    let mut measuring = spec.warmup_s == 0.0;
    let (mut n, mut counted) = (0u64, 0u64);
    loop {
        for _ in 0..BATCH {
            let roll = rng.random_range(0..100u32);
            let timed = measuring && n % SAMPLE_EVERY == 0;
            let t0 = timed.then(Instant::now);
            let index = if roll < get || roll >= get + insert + remove {
                let key = present.pick(&mut rng);
                if absent > 0 {
                    // An absent key: the same distribution over `keys..2 * keys`, which only
                    // inserts (refused with `--absent-pct`) would fill. Chosen without a
                    // branch: one on a coin (50%) would be mispredicted half the time, in the
                    // harness, and counted as the map's.
                    let miss = (roll < get) & (rng.random_range(0..100u32) < absent);
                    key + spec.keys * u64::from(miss)
                } else {
                    key
                }
            } else {
                universe.pick(&mut rng)
            };
            key_into(&mut key, index);
            let writes = roll >= get && !(get + insert..get + insert + remove).contains(&roll);
            if writes {
                len = lengths.of(index);
                if checking {
                    // A value that names its key and writer, so a torn one is seen.
                    value = checked::make(index, worker << 40 | n, len);
                }
            }
            let result = if roll < get {
                target.get(&key, &mut buf).map(|found| {
                    // Verify only under kills: `verify` formats an error for every value that
                    // does not check itself (all prefilled ones), which once cost 61 of a
                    // get's 107 ns and made the harness measure itself.
                    if checking && found {
                        if let Err(e) = checked::verify(index, &buf) {
                            ctl.violation();
                            m.first_error.get_or_insert(format!("VIOLATION {e}"));
                        }
                    }
                })
            } else if roll < get + insert + remove && roll >= get + insert {
                target.remove(&key).map(drop)
            } else {
                target.insert(&key, &value[..len])
            };
            if let Some(t0) = t0 {
                m.latency
                    .saturating_record(t0.elapsed().as_nanos().max(1) as u64);
            }
            n += 1;
            if let Err(e) = result {
                m.errors += 1;
                m.first_error.get_or_insert(e);
                if Instant::now() >= end {
                    break; // failing operations can be slow (a stall): do not finish the batch
                }
            }
        }
        if checking && measuring {
            ctl.add_ops(n - counted); // survives this worker being killed
            counted = n;
        }
        let now = Instant::now();
        if ctl.aborted() || now >= end {
            m.window_s = now.saturating_duration_since(warm_end).as_secs_f64();
            break;
        }
        if !measuring && now >= warm_end {
            measuring = true;
            (n, counted) = (0, 0);
        }
    }
    m.ops = if measuring { n } else { 0 };
    m
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    use super::*;
    use crate::spec::tests::example;

    /// A map of keys `0..present` that counts what the worker asks of it.
    #[derive(Default)]
    struct Counting {
        present: u64,
        hits: AtomicU64,
        misses: AtomicU64,
        /// Indices of the keys of gets that missed, and of every write.
        missed: Mutex<Vec<u64>>,
        written: Mutex<Vec<u64>>,
    }

    fn index(key: &[u8]) -> u64 {
        u64::from_le_bytes(key[..8].try_into().unwrap())
    }

    impl Target for Counting {
        fn get(&self, key: &[u8], _buf: &mut Vec<u8>) -> Result<bool, String> {
            let hit = index(key) < self.present;
            if hit {
                self.hits.fetch_add(1, Ordering::Relaxed);
            } else {
                self.misses.fetch_add(1, Ordering::Relaxed);
                self.missed.lock().unwrap().push(index(key));
            }
            Ok(hit)
        }
        fn insert(&self, key: &[u8], _value: &[u8]) -> Result<(), String> {
            self.written.lock().unwrap().push(index(key));
            Ok(())
        }
        fn remove(&self, key: &[u8]) -> Result<bool, String> {
            self.written.lock().unwrap().push(index(key));
            Ok(true)
        }
    }

    /// Runs one worker of `spec` on a [`Counting`] map of its keys; the share of gets that
    /// missed.
    fn miss_share(spec: &Spec) -> (f64, Counting) {
        let map = Counting {
            present: spec.keys,
            ..Counting::default()
        };
        let ctl = ControlWords::default();
        ctl.release();
        run_worker(&map, spec, 0, &ctl);
        let (hits, misses) = (
            map.hits.load(Ordering::Relaxed),
            map.misses.load(Ordering::Relaxed),
        );
        assert!(hits + misses > 10_000, "too few gets: {}", hits + misses);
        (misses as f64 / (hits + misses) as f64, map)
    }

    #[test]
    fn absent_pct_makes_that_share_of_gets_miss_and_no_write_use_an_absent_key() {
        for (workload, pct) in [
            (Workload::Read, 0),
            (Workload::Read, 50),
            (Workload::Read, 100),
            (Workload::Mixed, 25),
        ] {
            let spec = example(workload, pct);
            spec.validate().unwrap();
            let (share, map) = miss_share(&spec);
            assert!(
                (share - f64::from(pct) / 100.0).abs() < 0.02,
                "{workload} --absent-pct {pct}: {share:.3} of gets missed"
            );
            // Absent keys are the present range's twins: `keys..2 * keys`, never written.
            let missed = map.missed.lock().unwrap();
            assert!(missed.iter().all(|&i| (1000..2000).contains(&i)));
            let written = map.written.lock().unwrap();
            assert!(written.iter().all(|&i| i < 1000));
            assert_eq!(written.is_empty(), workload == Workload::Read);
        }
    }

    /// Records every write whose value is not the length its key's index gives.
    #[derive(Default)]
    struct LengthCheck {
        spec: Option<Spec>,
        writes: AtomicU64,
        wrong: Mutex<Vec<(u64, usize)>>,
    }

    impl Target for LengthCheck {
        fn get(&self, _key: &[u8], _buf: &mut Vec<u8>) -> Result<bool, String> {
            Ok(false)
        }
        fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
            let spec = self.spec.as_ref().unwrap();
            self.writes.fetch_add(1, Ordering::Relaxed);
            let want = spec.value_size.lengths().of(index(key));
            let checks = spec.kill_every_ms == 0 || checked::verify(index(key), value).is_ok();
            if value.len() != want || !checks {
                self.wrong.lock().unwrap().push((index(key), value.len()));
            }
            Ok(())
        }
        fn remove(&self, _key: &[u8]) -> Result<bool, String> {
            Ok(true)
        }
    }

    /// The prefill and every worker write each key's value at the length its index gives,
    /// so that they agree; under kills the values also check themselves.
    #[test]
    fn every_write_has_the_length_of_its_key() {
        for kill_every_ms in [0, 10] {
            let spec = Spec {
                value_size: "16..4096".parse().unwrap(),
                kill_every_ms,
                ..example(Workload::Exchange, 0)
            };
            let map = LengthCheck {
                spec: Some(spec.clone()),
                ..LengthCheck::default()
            };
            prefill(&map, &spec).unwrap();
            let ctl = ControlWords::default();
            ctl.release();
            for worker in 0..2 {
                run_worker(&map, &spec, worker, &ctl);
            }
            assert!(map.writes.load(Ordering::Relaxed) > 10_000);
            let wrong = map.wrong.lock().unwrap();
            assert!(
                wrong.is_empty(),
                "kills {kill_every_ms}: {:?}",
                &wrong[..5.min(wrong.len())]
            );
        }
    }

    /// The word-at-a-time filler writes exactly the bytes of its definition, for every key
    /// size up to a few words past one and indices whose low byte wraps in the filler.
    #[test]
    fn key_into_writes_the_index_then_the_wrapping_filler() {
        for size in 8..=41 {
            for index in [
                0u64,
                1,
                7,
                200,
                249,
                250,
                255,
                256,
                0x1234_5678_9ABC_DEFF,
                u64::MAX,
            ] {
                let mut key = vec![0xEEu8; size];
                key_into(&mut key, index);
                let mut want = index.to_le_bytes().to_vec();
                want.extend((0..size - 8).map(|i| (index as u8).wrapping_add(i as u8)));
                assert_eq!(key, want, "size {size}, index {index}");
            }
        }
    }
}
