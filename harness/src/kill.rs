//! `harness run --kill-every MS`: SIGKILL a random worker every MS milliseconds during the run
//! and start a new one in its place, to measure throughput while processes die and to check
//! that nothing they leave behind breaks the map.
//!
//! Under kills, workers write self-checking values ([`checked`]) and verify every value they
//! read, counting violations in the control segment (a killed worker's counts survive it).
//! After the run the map is attached again and checked whole: every value verifies, no key
//! is stored twice, `len` is exact. Operations are bounded by [`KILL_STALL`]: a backend that
//! cannot recover (the `mutex` baseline: a dead holder keeps the lock) shows up as stalled
//! operations and a failed map check, not as a hung harness.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shmap::{AttachOptions, Location, MapBackend};
use shmap_testkit::checked;

use crate::spec::Spec;
use crate::workers::Workers;

/// How long one operation may wait under `--kill-every` before it counts as stalled.
pub const KILL_STALL: Duration = Duration::from_secs(1);

/// Kills and respawns workers until `end` (the end of the measured window); returns how many
/// were killed.
pub(crate) fn kill_during(workers: &mut Workers, spec: &Spec, end: Instant) -> Result<u64, String> {
    let every = Duration::from_millis(spec.kill_every_ms);
    let warm_end = Instant::now() + Duration::from_secs_f64(spec.warmup_s);
    let mut rng = SmallRng::seed_from_u64(spec.seed ^ 0x6b69_6c6c);
    let mut kills = 0;
    while Instant::now() + every < end {
        std::thread::sleep(every);
        workers.poll()?;
        if let Some(failure) = workers.first_failure() {
            return Err(failure);
        }
        // The new worker ends its window with everyone else's.
        let now = Instant::now();
        let mut respawn = spec.clone();
        respawn.warmup_s = warm_end.saturating_duration_since(now).as_secs_f64();
        respawn.duration_s = end
            .saturating_duration_since(now.max(warm_end))
            .as_secs_f64();
        if respawn.duration_s <= 0.0 {
            break;
        }
        if workers.kill_and_respawn(rng.random_range(0..spec.procs), &respawn)? {
            kills += 1;
        }
    }
    Ok(kills)
}

/// Attaches to the map after the run and checks it whole.
pub fn check_map<M: MapBackend>(at: &Location) -> Result<usize, String> {
    let map = M::attach_in(at, AttachOptions::default()).map_err(|e| format!("attach: {e}"))?;
    let entries = map.entries().map_err(|e| format!("map unusable: {e}"))?;
    let mut seen = HashSet::new();
    for (key, value) in &entries {
        let index = u64::from_le_bytes(key[..8].try_into().map_err(|_| "short key")?);
        checked::verify(index, value).map_err(|e| format!("VIOLATION {e}"))?;
        if !seen.insert(key) {
            return Err(format!("VIOLATION key {index} stored twice"));
        }
    }
    let len = map.len().map_err(|e| e.to_string())?;
    if len != entries.len() {
        return Err(format!("VIOLATION len {len} but {} entries", entries.len()));
    }
    Ok(entries.len())
}
