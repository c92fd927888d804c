//! `harness`: runs read / write / mixed workloads over every backend with N real processes,
//! measures throughput and latency, draws plots, and says which backend wins for what.

mod cleanup;
mod control;
mod kill;
mod machine;
mod plot;
mod recommend;
mod record;
mod run;
mod sweep;
mod targets;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use record::Record;
use targets::TargetKind;
use workload::{Dist, Spec, Workload};

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

#[derive(Debug, Subcommand)]
enum Cmd {
    /// One backend, one workload, one process count.
    Run {
        /// lockfree, spinlock, mutex (ours); dashmap, rwlock (in-process references); lmdb.
        #[arg(long)]
        backend: TargetKind,
        /// Worker processes (threads for dashmap and rwlock).
        #[arg(long, default_value_t = 2)]
        procs: usize,
        #[arg(long, value_enum, default_value_t = Workload::Mixed)]
        workload: Workload,
        /// Print exactly one JSON object instead of the summary.
        #[arg(long)]
        json: bool,
        /// SIGKILL a random worker every MS milliseconds and start a new one in its place;
        /// values check themselves, and the map is checked after the run (shared-memory
        /// backends only).
        #[arg(long, value_name = "MS")]
        kill_every: Option<u64>,
        #[command(flatten)]
        params: Params,
    },
    /// Backends x process counts x workloads: a CSV of every run, plots, a recommendation.
    Sweep {
        /// Comma-separated backends [default: all].
        #[arg(long, value_delimiter = ',')]
        backends: Vec<TargetKind>,
        /// Comma-separated process counts [default: 1,2,4,8,16; --quick: 1,2,4].
        #[arg(long, value_delimiter = ',')]
        procs: Vec<usize>,
        /// Comma-separated workloads [default: all; --quick: read, read-heavy, exchange].
        #[arg(long, value_delimiter = ',', value_enum)]
        workloads: Vec<Workload>,
        /// About a minute: fewer process counts and workloads, 0.3 s windows, one repeat.
        #[arg(long)]
        quick: bool,
        /// Runs per cell; plots and the recommendation use the median [default: 3; --quick: 1].
        #[arg(long)]
        repeat: Option<u32>,
        /// Where the CSV, plots and recommendation go.
        #[arg(long, default_value = "results/latest")]
        out: PathBuf,
        #[command(flatten)]
        params: Params,
    },
    /// Redraws the plots from a sweep's CSV alone.
    Plot {
        csv: PathBuf,
        /// Directory for the plots [default: the CSV's].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Prints, per workload, the winning backend and its margin over the next; writes Markdown.
    Recommend {
        csv: PathBuf,
        /// Markdown file [default: recommendation.md beside the CSV].
        #[arg(long)]
        out: Option<PathBuf>,
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
    #[arg(long)]
    duration: Option<f64>,
    /// Warm-up before the window, in seconds [default: run 0.5, sweep 0.3, sweep --quick 0.1].
    #[arg(long)]
    warmup: Option<f64>,
    /// Keys present at the start; inserts and removes range over twice as many.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    #[arg(long, default_value_t = 64)]
    value_size: usize,
    /// Buckets of the shared map [default: 2 x keys at load 0.75].
    #[arg(long)]
    capacity: Option<usize>,
    /// uniform, or zipf:THETA for skewed (hot) keys.
    #[arg(long, default_value = "uniform")]
    dist: Dist,
    /// Percentage of gets in the `mixed` workload.
    #[arg(long, default_value_t = 90)]
    read_pct: u32,
    #[arg(long, default_value_t = 42)]
    seed: u64,
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
            warmup_s: self.warmup.unwrap_or(warmup),
            keys: self.keys,
            key_size: self.key_size,
            value_size: self.value_size,
            capacity: self
                .capacity
                .unwrap_or_else(|| Spec::default_capacity(self.keys)),
            dist: self.dist,
            read_pct: self.read_pct,
            seed: self.seed,
            kill_every_ms: 0,
        }
    }
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
            json,
            kill_every,
            params,
        } => {
            cleanup::install_interrupt_handler();
            let mut spec = params.spec(backend, workload, procs, (2.0, 0.5));
            spec.kill_every_ms = kill_every.unwrap_or(0);
            if spec.kill_every_ms > 0 {
                // Bounds every wait, ours and (through the spec) the workers'.
                shmap::set_stall_timeout(kill::KILL_STALL);
            }
            spec.validate().and_then(|()| {
                let machine = machine::describe();
                let record = Record::measured(&spec, &run::run(&spec)?, &machine);
                if json {
                    println!(
                        "{}",
                        serde_json::to_string(&record).map_err(|e| e.to_string())?
                    );
                } else {
                    print!("{}", record.summary());
                }
                if record.is_ok() {
                    Ok(())
                } else {
                    Err(record.status)
                }
            })
        }
        Cmd::Sweep {
            backends,
            procs,
            workloads,
            quick,
            repeat,
            out,
            params,
        } => {
            cleanup::install_interrupt_handler();
            sweep::sweep(
                &sweep::Plan::new(backends, procs, workloads, quick, repeat),
                &params,
                &out,
            )
        }
        Cmd::Plot { csv, out } => {
            let dir = out.unwrap_or_else(|| csv.parent().map(PathBuf::from).unwrap_or_default());
            sweep::read_csv(&csv)
                .and_then(|rows| plot::draw_all(&record::medians(&rows), &dir))
                .map(|files| {
                    files.iter().for_each(|f| println!("wrote {}", f.display()));
                })
        }
        Cmd::Recommend { csv, out } => sweep::read_csv(&csv).and_then(|rows| {
            let md = recommend::recommend(&record::medians(&rows));
            print!("{}", md.text);
            let path = out.unwrap_or_else(|| csv.with_file_name("recommendation.md"));
            std::fs::write(&path, md.markdown)
                .map_err(|e| format!("write {}: {e}", path.display()))?;
            println!("wrote {}", path.display());
            Ok(())
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
