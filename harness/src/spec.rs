//! What a run is: the target it measures and what that target is to a reader ([`TargetKind`],
//! [`Role`]), the workload ([`Workload`], [`Dist`]), and every size and setting ([`Spec`], which
//! workers get as JSON on their command line), with the checks that they fit together.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use shmap::BackendKind;

use shmap_testkit::checked;

use crate::value_size::{ValueSize, MAX_VALUE_SIZE};

/// Everything `--backend` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Lockfree,
    Spinlock,
    Mutex,
    /// Reference: `dashmap::DashMap` with N threads in one process.
    Dashmap,
    /// Reference: `parking_lot::RwLock<HashMap>` with N threads in one process.
    Rwlock,
    /// Peer: LMDB through `heed`, N processes sharing one environment on tmpfs.
    Lmdb,
    /// Our map on a Redis server (`--redis-url`, or a private `redis-server`): the option for
    /// several machines, measured to show what the network costs.
    Redis,
    /// The harness's floor: the same loop over a map that does nothing (threads).
    Null,
}

/// What a target is to the person choosing a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A way to share a map between processes: ours, or a peer such as LMDB. Only these can
    /// be recommended.
    Candidate,
    /// An in-process map driven by threads: a ceiling to compare with, not a way to share
    /// between processes.
    Reference,
    /// The harness's own cost per operation.
    Floor,
    /// A map on a server (Redis): the way to share between machines. Shown for what that
    /// costs; never chosen over a map on this machine.
    Remote,
}

impl TargetKind {
    pub const ALL: [TargetKind; 8] = [
        Self::Lockfree,
        Self::Spinlock,
        Self::Mutex,
        Self::Dashmap,
        Self::Rwlock,
        Self::Lmdb,
        Self::Redis,
        Self::Null,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Lockfree => "lockfree",
            Self::Spinlock => "spinlock",
            Self::Mutex => "mutex",
            Self::Dashmap => "dashmap",
            Self::Rwlock => "rwlock",
            Self::Lmdb => "lmdb",
            Self::Redis => "redis",
            Self::Null => "null",
        }
    }

    /// The shmap backend, for the three of ours.
    pub fn shm_kind(self) -> Option<BackendKind> {
        match self {
            Self::Lockfree => Some(BackendKind::LockFree),
            Self::Spinlock => Some(BackendKind::SpinLock),
            Self::Mutex => Some(BackendKind::Mutex),
            _ => None,
        }
    }

    pub fn role(self) -> Role {
        match self {
            Self::Dashmap | Self::Rwlock => Role::Reference,
            Self::Null => Role::Floor,
            Self::Redis => Role::Remote,
            _ => Role::Candidate,
        }
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for TargetKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|k| k.name()).collect();
                format!("unknown backend {s:?}; choose one of: {}", names.join(", "))
            })
    }
}

/// The operation mixes.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// 100% get.
    Read,
    /// 100% insert-or-update of present keys.
    Write,
    /// `--read-pct` get (default 90), the rest updates.
    Mixed,
    /// 98% get, 1% insert, 1% remove (conc-map-bench).
    ReadHeavy,
    /// 10% get, 40% insert, 40% remove, 10% update (conc-map-bench).
    Exchange,
    /// 5% get, 80% insert, 5% remove, 10% update (conc-map-bench), from an empty map, with no
    /// warm-up unless asked for: a shared-memory map starts at 1/16 of the default capacity
    /// and grows (doubling) in the measured window. Use a large --keys (1M) to see growth
    /// take a good part of the window.
    RapidGrow,
}

impl Workload {
    pub const ALL: [Workload; 6] = [
        Self::Read,
        Self::Write,
        Self::Mixed,
        Self::ReadHeavy,
        Self::Exchange,
        Self::RapidGrow,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Mixed => "mixed",
            Self::ReadHeavy => "read-heavy",
            Self::Exchange => "exchange",
            Self::RapidGrow => "rapid-grow",
        }
    }

    /// Percentages of get / insert / remove / update.
    pub fn mix(self, read_pct: u32) -> [u32; 4] {
        match self {
            Self::Read => [100, 0, 0, 0],
            Self::Write => [0, 0, 0, 100],
            Self::Mixed => [read_pct, 0, 0, 100 - read_pct],
            Self::ReadHeavy => [98, 1, 1, 0],
            Self::Exchange => [10, 40, 40, 10],
            Self::RapidGrow => [5, 80, 5, 10],
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// How keys are chosen: uniformly, or Zipf-skewed with exponent THETA (hot keys).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Dist {
    Uniform,
    Zipf(f64),
}

impl fmt::Display for Dist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uniform => f.write_str("uniform"),
            Self::Zipf(theta) => write!(f, "zipf:{theta}"),
        }
    }
}

impl FromStr for Dist {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "uniform" {
            return Ok(Self::Uniform);
        }
        let theta: f64 = s
            .strip_prefix("zipf:")
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| {
                format!("unknown distribution {s:?}; choose uniform or zipf:THETA (e.g. zipf:0.99)")
            })?;
        if !(theta > 0.0 && theta.is_finite()) {
            return Err(format!("zipf exponent must be positive, got {theta}"));
        }
        Ok(Self::Zipf(theta))
    }
}

/// Most workers one run may start (each is a process, or a thread for the references).
pub const MAX_PROCS: usize = 1024;

/// One run's parameters; workers get it as JSON on their command line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub target: TargetKind,
    pub workload: Workload,
    pub procs: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Keys present at the start (and the range gets and updates draw from); inserts and
    /// removes draw from twice as many.
    pub keys: u64,
    pub key_size: usize,
    /// Each key's value length: one size, or log-uniform between two (see [`ValueSize`]).
    pub value_size: ValueSize,
    pub capacity: usize,
    pub dist: Dist,
    pub read_pct: u32,
    /// Percentage of gets that look up keys never inserted (`read` and `mixed` only): a
    /// miss costs a lookup differently from a hit, and `read-heavy`'s gets miss half the time.
    #[serde(default)]
    pub absent_pct: u32,
    pub seed: u64,
    /// With `--kill-every`: kill and respawn a random worker this often (0: never). Workers
    /// then write self-checking values and verify every one they read.
    #[serde(default)]
    pub kill_every_ms: u64,
    /// `--storage file:DIR`: maps (and LMDB's environment) in files under DIR instead of
    /// `/dev/shm`.
    #[serde(default)]
    pub storage_dir: Option<std::path::PathBuf>,
    /// The server of the `redis` target (the harness starts a private one when none is
    /// given).
    #[serde(default)]
    pub redis_url: Option<String>,
}

impl Spec {
    /// Checks what the command line cannot: sizes that work together.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_PROCS).contains(&self.procs) {
            return Err(format!(
                "--procs must be 1 to {MAX_PROCS}, got {}",
                self.procs
            ));
        }
        if self.keys == 0 {
            return Err("--keys must be at least 1".into());
        }
        if !(8..=1 << 20).contains(&self.key_size) {
            return Err(format!(
                "--key-size must be 8 to {} bytes (keys embed an 8-byte index), got {}",
                1 << 20,
                self.key_size
            ));
        }
        if self.value_size.max() > MAX_VALUE_SIZE {
            return Err(format!(
                "--value-size must be at most {MAX_VALUE_SIZE} bytes, got {}",
                self.value_size
            ));
        }
        if self.read_pct > 100 {
            return Err(format!(
                "--read-pct must be 0 to 100, got {}",
                self.read_pct
            ));
        }
        if self.absent_pct > 100 {
            return Err(format!(
                "--absent-pct must be 0 to 100, got {}",
                self.absent_pct
            ));
        }
        if self.absent_pct > 0 && !matches!(self.workload, Workload::Read | Workload::Mixed) {
            return Err(format!(
                "--absent-pct applies to the read and mixed workloads (their gets), not {}: \
                 the others insert keys, so their gets miss already",
                self.workload
            ));
        }
        let duration_ok = self.duration_s > 0.0 && self.duration_s <= 3600.0;
        if !duration_ok || !(0.0..=600.0).contains(&self.warmup_s) {
            return Err("--duration must be in (0, 3600] s and --warmup in [0, 600] s".into());
        }
        if self.kill_every_ms > 0 {
            if self.target.shm_kind().is_none() {
                return Err(format!(
                    "--kill-every needs a shared-memory backend (lockfree, spinlock, mutex), not {}",
                    self.target
                ));
            }
            if self.value_size.min() < checked::MIN_LEN {
                return Err(format!(
                    "--kill-every needs values of at least {} bytes (they check themselves), \
                     but --value-size {} allows {}",
                    checked::MIN_LEN,
                    self.value_size,
                    self.value_size.min()
                ));
            }
        }
        if let Some(dir) = &self.storage_dir {
            if !dir.is_dir() {
                return Err(format!(
                    "--storage file:{} is not a directory",
                    dir.display()
                ));
            }
        }
        if self.target.shm_kind().is_some()
            && !self.grows()
            && (self.capacity as u64) < 2 * self.keys
        {
            return Err(format!(
                "--capacity {} cannot hold the up to {} keys inserts can reach (2 x --keys)",
                self.capacity,
                2 * self.keys
            ));
        }
        Ok(())
    }

    /// Default capacity: room for 2 x keys at a load factor of 0.75, so the table never
    /// needs to grow; `rapid-grow` starts at 1/16 of that and grows (see [`Spec::grows`]).
    pub fn default_capacity(keys: u64, workload: Workload) -> usize {
        let room = (keys as usize).saturating_mul(8).div_ceil(3).max(1);
        match workload {
            Workload::RapidGrow => (room / 16).max(64),
            _ => room,
        }
    }

    /// Whether a shared-memory map may grow past `capacity` in this run: in `rapid-grow` (the
    /// workload that measures growth); every other workload keeps the table it starts with.
    pub fn grows(&self) -> bool {
        self.workload == Workload::RapidGrow
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One worker of `workload` over 1,000 keys of the `null` target, for 50 ms.
    pub(crate) fn example(workload: Workload, absent_pct: u32) -> Spec {
        Spec {
            target: TargetKind::Null,
            workload,
            procs: 1,
            duration_s: 0.05,
            warmup_s: 0.0,
            keys: 1000,
            key_size: 16,
            value_size: ValueSize::Fixed(8),
            capacity: Spec::default_capacity(1000, workload),
            dist: Dist::Uniform,
            read_pct: 50,
            absent_pct,
            seed: 7,
            kill_every_ms: 0,
            storage_dir: None,
            redis_url: None,
        }
    }

    #[test]
    fn kills_refuse_value_sizes_too_short_to_check_themselves() {
        let with = |sizes: &str| Spec {
            target: TargetKind::Lockfree,
            value_size: sizes.parse().unwrap(),
            kill_every_ms: 10,
            ..example(Workload::Mixed, 0)
        };
        let e = with("8..4096").validate().unwrap_err();
        assert!(
            e.contains("values of at least 16 bytes") && e.contains("8..4096 allows 8"),
            "{e}"
        );
        with("16..4096").validate().unwrap();
    }

    #[test]
    fn absent_pct_is_refused_where_inserts_make_gets_miss_already() {
        for workload in [
            Workload::Write,
            Workload::ReadHeavy,
            Workload::Exchange,
            Workload::RapidGrow,
        ] {
            let e = example(workload, 50).validate().unwrap_err();
            assert!(
                e.contains("--absent-pct applies to the read and mixed"),
                "{e}"
            );
            example(workload, 0).validate().unwrap();
        }
        let e = example(Workload::Read, 101).validate().unwrap_err();
        assert!(e.contains("--absent-pct must be 0 to 100"), "{e}");
    }
}
