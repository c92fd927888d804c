//! The harness's command line: its subcommands, their flags, and the checks clap runs on them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::spec::{Dist, Spec, TargetKind, Workload, MAX_PROCS};
use crate::value_size::ValueSize;

#[derive(Debug, Parser)]
#[command(
    name = "harness",
    version,
    about = "Multi-process benchmarks of the shmap backends and their peers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

fn procs_in_range(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    if (1..=MAX_PROCS).contains(&n) {
        Ok(n)
    } else {
        Err(format!("must be 1 to {MAX_PROCS}"))
    }
}

fn seconds(s: &str, max: f64, zero_ok: bool) -> Result<f64, String> {
    let x: f64 = s.parse().map_err(|e| format!("{e}"))?;
    let low_ok = if zero_ok { x >= 0.0 } else { x > 0.0 };
    if low_ok && x <= max {
        Ok(x)
    } else {
        Err(format!(
            "must be in {}0, {max}] seconds",
            if zero_ok { "[" } else { "(" }
        ))
    }
}

fn window(s: &str) -> Result<f64, String> {
    seconds(s, 3600.0, false)
}

fn warmup(s: &str) -> Result<f64, String> {
    seconds(s, 600.0, true)
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// One backend, one workload, one process count; --repeats N for a median with its spread.
    Run {
        /// lockfree, spinlock, mutex (ours); dashmap, rwlock (in-process references); lmdb;
        /// redis (our map on a Redis server: --redis-url, or a private redis-server); null
        /// (the harness's floor).
        #[arg(long)]
        backend: TargetKind,
        /// Worker processes (threads for dashmap, rwlock and null).
        #[arg(long, default_value_t = 2, value_parser = procs_in_range)]
        procs: usize,
        #[arg(long, value_enum, default_value_t = Workload::Mixed)]
        workload: Workload,
        /// Runs, one after the other; the report gives the median, min, max and an
        /// order-statistic confidence interval of the median.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
        repeats: u32,
        /// Print one JSON object (the summary and every run) instead of text.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print the summary as CSV (a header and one row) instead of text.
        #[arg(long)]
        csv: bool,
        /// Also write every run as a runs.csv that `compare`, `recommend` and `plot` read.
        #[arg(long, value_name = "FILE")]
        save_runs: Option<PathBuf>,
        /// SIGKILL a random worker every MS milliseconds and start a new one in its place;
        /// values check themselves, and the map is checked after the run (shared-memory
        /// backends only).
        #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
        kill_every: Option<u64>,
        #[command(flatten)]
        params: Params,
    },
    /// Backends x process counts x workloads, repeats interleaved across backends: a CSV of
    /// every run and of every cell, plots, a recommendation.
    Sweep {
        /// Comma-separated backends [default: all, the null floor included].
        #[arg(long, value_delimiter = ',')]
        backends: Vec<TargetKind>,
        /// Comma-separated process counts [default: 1,2,4,8,16; --quick: 1,2,4].
        #[arg(long, value_delimiter = ',', value_parser = procs_in_range)]
        procs: Vec<usize>,
        /// Comma-separated workloads [default: all; --quick: read, read-heavy, exchange].
        #[arg(long, value_delimiter = ',', value_enum)]
        workloads: Vec<Workload>,
        /// A smoke test of about two minutes: fewer process counts and workloads, 0.3 s
        /// windows, 3 repeats. Its verdicts say when they cannot decide.
        #[arg(long)]
        quick: bool,
        /// Runs per cell, interleaved across backends (A B C A B C ...) [default: 3].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        repeat: Option<u32>,
        /// Where the CSVs, plots and recommendation go; must be empty or missing.
        #[arg(long, default_value = "results/latest")]
        out: PathBuf,
        /// Use a non-empty --out, removing the files an earlier sweep wrote there.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        params: Params,
    },
    /// Redraws the plots from a runs.csv alone.
    Plot {
        csv: PathBuf,
        /// Directory for the plots [default: the CSV's].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Per workload, the backend to choose when the measurements say so; writes Markdown.
    Recommend {
        csv: PathBuf,
        /// Markdown file [default: recommendation.md beside the CSV].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the decisions as JSON instead of text (and write no Markdown).
        #[arg(long)]
        json: bool,
    },
    /// Which cells changed beyond the noise between two runs.csv (a baseline and a change).
    Compare {
        old: PathBuf,
        new: PathBuf,
        /// Print every cell as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Checks that the harness measures the map, not itself: the workload loop against a
    /// loop that does nothing and a direct call, as ratios in one run. Exits 1 if it fails.
    Calibrate {
        #[arg(long, default_value = "lockfree")]
        backend: TargetKind,
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=1000))]
        rounds: u32,
        /// Seconds each loop runs per round.
        #[arg(long, default_value_t = 0.2, value_parser = window)]
        window: f64,
        #[arg(long)]
        json: bool,
    },
    /// Lists the shared-memory segments on this machine: owner, size, kind, processes
    /// attached.
    Ls,
    /// Removes shared-memory maps by name (e.g. one whose creator died, or a killed run's).
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// A worker process (started by the harness itself).
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        spec: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        ctl: String,
        #[arg(long)]
        worker: u64,
    },
}

/// Parameters shared by `run` and `sweep`.
#[derive(Debug, Clone, Args)]
pub struct Params {
    /// Measured window in seconds [default: run 2, sweep 1, sweep --quick 0.3].
    #[arg(long, value_parser = window)]
    pub duration: Option<f64>,
    /// Warm-up before the window, in seconds [default: run 0.5, sweep 0.3, sweep --quick 0.1].
    #[arg(long, value_parser = warmup)]
    pub warmup: Option<f64>,
    /// Keys present at the start; inserts and removes range over twice as many.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,
    /// Key bytes (keys embed an 8-byte index).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(8..=1 << 20))]
    pub key_size: u32,
    /// Value bytes: N, or MIN..MAX for lengths spread log-uniformly (each key's length is
    /// fixed by its index, so all workers agree), e.g. 8..16384. At most 268435456.
    #[arg(long, default_value = "64", value_name = "N|MIN..MAX")]
    pub value_size: ValueSize,
    /// Buckets the shared map starts with [default: 2 x keys at load 0.75; rapid-grow: 1/16
    /// of that, and the table grows]. Only rapid-grow grows the table.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub capacity: Option<u64>,
    /// uniform, or zipf:THETA for skewed (hot) keys.
    #[arg(long, default_value = "uniform")]
    pub dist: Dist,
    /// Percentage of gets in the `mixed` workload.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub read_pct: u32,
    /// Percentage of gets (in `read` and `mixed`) that look up keys not in the map, e.g. 50
    /// to compare `read` with `read-heavy`, whose gets miss half the time.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub absent_pct: u32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where maps live: shm (/dev/shm) or file:DIR (files in DIR; LMDB's environment too).
    #[arg(long, default_value = "shm", value_parser = storage)]
    pub storage: Storage,
    /// The Redis server for the redis backend (redis://host:port/db; rediss:// for TLS, its
    /// options in the query as redis-py takes them: ?ssl_ca_certs=CA.pem&ssl_certfile=...
    /// &ssl_keyfile=...&ssl_cert_reqs=none) [default: a private redis-server on a free
    /// loopback port, started and stopped by the harness].
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
}

/// `--storage`: `/dev/shm`, or files in a directory.
#[derive(Debug, Clone)]
pub struct Storage(pub Option<PathBuf>);

fn storage(s: &str) -> Result<Storage, String> {
    match s {
        "shm" => Ok(Storage(None)),
        _ => s
            .strip_prefix("file:")
            .filter(|d| !d.is_empty())
            .map(|d| Storage(Some(PathBuf::from(d))))
            .ok_or_else(|| format!("{s:?}: choose shm or file:DIR")),
    }
}

impl Params {
    /// The spec of one run; `(duration, warmup)` are the defaults where the flags are absent.
    pub fn spec(
        &self,
        target: TargetKind,
        workload: Workload,
        procs: usize,
        (duration, warmup): (f64, f64),
    ) -> Spec {
        Spec {
            target,
            workload,
            procs,
            duration_s: self.duration.unwrap_or(duration),
            // rapid-grow measures the growth from empty: no warm-up unless asked for.
            warmup_s: self.warmup.unwrap_or(match workload {
                Workload::RapidGrow => 0.0,
                _ => warmup,
            }),
            keys: self.keys,
            key_size: self.key_size as usize,
            value_size: self.value_size,
            capacity: self.capacity.map_or_else(
                || Spec::default_capacity(self.keys, workload),
                |c| c as usize,
            ),
            dist: self.dist,
            read_pct: self.read_pct,
            absent_pct: self.absent_pct,
            seed: self.seed,
            kill_every_ms: 0,
            storage_dir: self.storage.0.clone(),
            redis_url: self.redis_url.clone(),
        }
    }
}
