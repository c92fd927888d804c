//! `harness`: runs read / write / mixed workloads over every backend with N real processes,
//! measures throughput and latency, draws plots, and says which backend wins for what.

mod calibrate;
mod cleanup;
mod compare;
mod control;
mod kill;
mod machine;
mod plot;
mod recommend;
mod record;
mod run;
mod segments;
mod stats;
mod sweep;
mod targets;
mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};

use record::{read_csv, summarise, Provenance, Record};
use targets::TargetKind;
use workload::{Dist, Spec, Workload, MAX_PROCS};

#[derive(Debug, Parser)]
#[command(
    name = "harness",
    version,
    about = "Multi-process benchmarks of the shmap backends and their peers"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
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
enum Cmd {
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
struct Params {
    /// Measured window in seconds [default: run 2, sweep 1, sweep --quick 0.3].
    #[arg(long, value_parser = window)]
    duration: Option<f64>,
    /// Warm-up before the window, in seconds [default: run 0.5, sweep 0.3, sweep --quick 0.1].
    #[arg(long, value_parser = warmup)]
    warmup: Option<f64>,
    /// Keys present at the start; inserts and removes range over twice as many.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    /// Key bytes (keys embed an 8-byte index).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(8..=1 << 20))]
    key_size: u32,
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(0..=1 << 28))]
    value_size: u32,
    /// Buckets the shared map starts with [default: 2 x keys at load 0.75; rapid-grow: 1/16
    /// of that, and the table grows]. Only rapid-grow grows the table.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    capacity: Option<u64>,
    /// uniform, or zipf:THETA for skewed (hot) keys.
    #[arg(long, default_value = "uniform")]
    dist: Dist,
    /// Percentage of gets in the `mixed` workload.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(0..=100))]
    read_pct: u32,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where maps live: shm (/dev/shm) or file:DIR (files in DIR; LMDB's environment too).
    #[arg(long, default_value = "shm", value_parser = storage)]
    storage: Storage,
    /// The Redis server for the redis backend (redis://host:port/db) [default: a private
    /// redis-server on a free loopback port, started and stopped by the harness].
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
}

/// `--storage`: `/dev/shm`, or files in a directory.
#[derive(Debug, Clone)]
struct Storage(Option<PathBuf>);

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
    fn spec(
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
            value_size: self.value_size as usize,
            capacity: self.capacity.map_or_else(
                || Spec::default_capacity(self.keys, workload),
                |c| c as usize,
            ),
            dist: self.dist,
            read_pct: self.read_pct,
            seed: self.seed,
            kill_every_ms: 0,
            storage_dir: self.storage.0.clone(),
            redis_url: self.redis_url.clone(),
        }
    }
}

/// A private `redis-server` for the redis backend: stopped when dropped, and killed (its
/// directory removed) by the interrupt handler if the harness is stopped first.
struct PrivateRedis(Option<shmap_backends::redis_map::server::LocalServer>);

impl PrivateRedis {
    fn url(&self) -> String {
        self.0.as_ref().map(|s| s.url()).unwrap_or_default()
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(server) = self.0.take() {
            let (pid, dir) = (server.pid(), server.dir().to_owned());
            drop(server); // killed and reaped
            cleanup::forget_server(pid, &dir);
        }
    }
}

fn private_redis() -> Result<PrivateRedis, String> {
    use shmap_backends::redis_map::server::{server_binary, LocalServer};
    if server_binary().is_none() {
        return Err(
            "no --redis-url given and no redis-server (or valkey-server) on PATH; \
                    install one (apt-get install redis-server) or point --redis-url at a server"
                .into(),
        );
    }
    let server =
        LocalServer::start().map_err(|e| format!("starting a private redis-server: {e}"))?;
    // (A signal in the few microseconds before this line would leave the server running.)
    cleanup::track_server(server.pid(), server.dir().to_owned());
    Ok(PrivateRedis(Some(server)))
}

/// A usage error found after parsing (sizes that do not fit together, a non-empty --out):
/// exits 2 with clap's usage line, as a parse error does.
fn usage_error(msg: &str) -> ! {
    Cli::command().error(ErrorKind::ValueValidation, msg).exit()
}

/// Runs `spec` `repeats` times and reports the runs and their summary.
fn run_repeats(
    spec: &Spec,
    repeats: u32,
    (json, csv): (bool, bool),
    save_runs: Option<&Path>,
) -> Result<(), String> {
    let provenance = Provenance::now();
    let mut runs: Vec<(Record, Vec<f64>)> = Vec::new();
    for repeat in 0..repeats {
        let (mut record, rates) = match run::run(spec) {
            Ok(outcome) => Record::measured(spec, &outcome, &provenance),
            Err(e) => (Record::failed(spec, &e, &provenance), Vec::new()),
        };
        record.repeat = repeat;
        if !json && !csv && repeats > 1 {
            eprintln!(
                "  run {}/{repeats}: {} ops/s{}",
                repeat + 1,
                record::human(record.ops_per_sec),
                if record.is_ok() {
                    String::new()
                } else {
                    format!(" [{}]", record.message)
                }
            );
        }
        runs.push((record, rates));
    }
    let rows: Vec<Record> = runs.iter().map(|(r, _)| r.clone()).collect();
    let summary = summarise(&rows).remove(0);
    if let Some(path) = save_runs {
        let mut w =
            csv::Writer::from_path(path).map_err(|e| format!("write {}: {e}", path.display()))?;
        rows.iter()
            .try_for_each(|r| w.serialize(r))
            .and_then(|()| Ok(w.flush()?))
            .map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    if json {
        #[derive(serde::Serialize)]
        struct Run<'a> {
            #[serde(flatten)]
            record: &'a Record,
            worker_ops_per_sec: &'a [f64],
        }
        #[derive(serde::Serialize)]
        struct Report<'a> {
            summary: &'a record::Summary,
            runs: Vec<Run<'a>>,
        }
        let report = Report {
            summary: &summary,
            runs: runs
                .iter()
                .map(|(record, rates)| Run {
                    record,
                    worker_ops_per_sec: rates,
                })
                .collect(),
        };
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| e.to_string())?
        );
    } else if csv {
        let mut w = csv::Writer::from_writer(std::io::stdout());
        w.serialize(&summary)
            .and_then(|()| Ok(w.flush()?))
            .map_err(|e| e.to_string())?;
    } else {
        print!("{}", run_text(&summary, &runs));
    }
    match rows.iter().find(|r| !r.is_ok()) {
        None => Ok(()),
        Some(bad) => Err(format!("{:?}: {}", bad.status, bad.message)),
    }
}

/// The text report of `run`.
fn run_text(summary: &record::Summary, runs: &[(Record, Vec<f64>)]) -> String {
    let (first, _) = &runs[0];
    let mode = match first.role() {
        targets::Role::Candidate => "processes",
        targets::Role::Reference => "threads (in-process reference)",
        targets::Role::Floor => "threads (the harness's floor: a map that does nothing)",
        targets::Role::Remote => "processes, each with its own connection to the server",
    };
    let mut s = format!(
        "{} / {}: {} {mode}; {}\n",
        first.backend,
        first.workload,
        first.procs,
        first.parameters()
    );
    s.push_str(&format!("  throughput  {}\n", summary.spread()));
    if summary.is_ok() {
        s.push_str(&format!(
            "  per op      {:.1} ns per operation and worker (median)\n",
            summary.median_ns_per_op
        ));
        s.push_str(&format!(
            "  latency     p50 {}  p99 {} (medians over runs; sampled 1 op in 32)\n",
            record::ns(summary.median_p50_ns),
            record::ns(summary.median_p99_ns)
        ));
        let median_run = runs.iter().filter(|(r, _)| r.is_ok()).min_by(|a, b| {
            (a.0.ops_per_sec - summary.median_ops_per_sec)
                .abs()
                .total_cmp(&(b.0.ops_per_sec - summary.median_ops_per_sec).abs())
        });
        if let Some((r, rates)) = median_run {
            let per: Vec<String> = rates.iter().map(|x| record::human(*x)).collect();
            s.push_str(&format!(
                "  per worker  {} (the median run)\n",
                per.join(", ")
            ));
            if r.kills > 0 {
                s.push_str(&format!(
                    "  kills       {} workers SIGKILLed and replaced; {} violations\n",
                    r.kills, r.violations
                ));
            }
        }
    }
    for (r, _) in runs.iter().filter(|(r, _)| !r.is_ok()) {
        s.push_str(&format!(
            "  run {}: {:?}: {}\n",
            r.repeat + 1,
            r.status,
            r.message
        ));
    }
    s.push_str(&format!(
        "  machine     {}\n  harness     {} (commit {}), {}\n",
        first.machine, first.version, first.commit, first.timestamp
    ));
    s
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`harness ... | head`), like other command-line tools,
    // instead of panicking in println.
    // SAFETY: setting a signal disposition to its default has no memory-safety preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Worker {
            spec,
            name,
            ctl,
            worker,
        } => serde_json::from_str(&spec)
            .map_err(|e| format!("bad --spec: {e}"))
            .and_then(|spec| run::worker_main(&spec, &name, &ctl, worker)),
        Cmd::Run {
            backend,
            procs,
            workload,
            repeats,
            json,
            csv,
            save_runs,
            kill_every,
            params,
        } => {
            cleanup::install_interrupt_handler();
            let mut spec = params.spec(backend, workload, procs, (2.0, 0.5));
            spec.kill_every_ms = kill_every.unwrap_or(0);
            if let Err(e) = spec.validate() {
                usage_error(&e);
            }
            if spec.kill_every_ms > 0 {
                // Bounds every wait, ours and (through the spec) the workers'.
                shmap::set_stall_timeout(kill::KILL_STALL);
            }
            // Kept until the runs end: dropping it stops the server.
            let server = (backend == TargetKind::Redis && spec.redis_url.is_none())
                .then(private_redis)
                .transpose();
            server.and_then(|server| {
                if let Some(s) = &server {
                    spec.redis_url = Some(s.url());
                }
                run_repeats(&spec, repeats, (json, csv), save_runs.as_deref())
            })
        }
        Cmd::Sweep {
            backends,
            procs,
            workloads,
            quick,
            repeat,
            out,
            force,
            mut params,
        } => {
            cleanup::install_interrupt_handler();
            let mut plan = sweep::Plan::new(backends, procs, workloads, quick, repeat);
            let mut _server = None;
            if plan.backends.contains(&TargetKind::Redis) && params.redis_url.is_none() {
                match private_redis() {
                    Ok(server) => {
                        params.redis_url = Some(server.url());
                        _server = Some(server);
                    }
                    Err(e) => {
                        eprintln!("skipping the redis backend: {e}");
                        plan.backends.retain(|&b| b != TargetKind::Redis);
                    }
                }
            }
            if let Err(e) =
                sweep::check(&plan, &params).and_then(|()| sweep::prepare_out(&out, force))
            {
                usage_error(&e);
            }
            sweep::sweep(&plan, &params, &out)
        }
        Cmd::Plot { csv, out } => {
            let dir = out.unwrap_or_else(|| csv.parent().map(PathBuf::from).unwrap_or_default());
            read_csv(&csv)
                .and_then(|rows| plot::draw_all(&summarise(&rows), &rows, &dir))
                .map(|files| {
                    files.iter().for_each(|f| println!("wrote {}", f.display()));
                })
        }
        Cmd::Recommend { csv, out, json } => read_csv(&csv).and_then(|rows| {
            let report = recommend::report(&rows);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
                );
                return Ok(());
            }
            let summaries = summarise(&rows);
            print!("{}", report.text(&summaries));
            let path = out.unwrap_or_else(|| csv.with_file_name("recommendation.md"));
            std::fs::write(&path, report.markdown(&summaries))
                .map_err(|e| format!("write {}: {e}", path.display()))?;
            println!("wrote {}", path.display());
            Ok(())
        }),
        Cmd::Compare { old, new, json } => read_csv(&old).and_then(|o| {
            let n = read_csv(&new)?;
            let changes = compare::compare(&o, &n);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&changes).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", compare::text(&changes, &o, &n));
            }
            Ok(())
        }),
        Cmd::Ls => segments::list().map(|e| print!("{}", segments::text(&e))),
        Cmd::Rm { names } => segments::remove(&names),
        Cmd::Calibrate {
            backend,
            rounds,
            window,
            json,
        } => calibrate::calibrate(backend, rounds as usize, window).and_then(|c| {
            if json {
                println!("{}", serde_json::to_string(&c).map_err(|e| e.to_string())?);
            } else {
                print!("{}", c.text());
            }
            if c.passed() {
                Ok(())
            } else {
                Err("the harness loop costs more than its floor plus a direct call".into())
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
