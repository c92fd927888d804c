//! `harness`: runs read / write / mixed workloads over every backend with N real processes,
//! measures throughput and latency, draws plots, and says which backend wins for what.

mod calibrate;
mod cleanup;
mod cli;
mod compare;
mod control;
mod kill;
mod machine;
mod outcome;
mod plot;
mod recommend;
mod record;
mod run;
mod segments;
mod spec;
mod stats;
mod sweep;
mod targets;
mod value_size;
mod workers;
mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use cli::{Cli, Cmd};

use record::{read_csv, summarise, Provenance, Record};
use spec::{Spec, TargetKind};

/// A private `redis-server` for the redis backend: stopped when dropped, and killed (its
/// directory removed) by the interrupt handler if the harness is stopped first.
struct PrivateRedis(Option<shmap_testkit::redis_server::LocalServer>);

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
    use shmap_testkit::redis_server::{server_binary, LocalServer};
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
        spec::Role::Candidate => "processes",
        spec::Role::Reference => "threads (in-process reference)",
        spec::Role::Floor => "threads (the harness's floor: a map that does nothing)",
        spec::Role::Remote => "processes, each with its own connection to the server",
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
        if let Some(b) = summary.median_bytes_per_entry {
            let basis = first
                .backend
                .parse()
                .map_or("as the store counts it", targets::memory_basis);
            s.push_str(&format!(
                "  memory      {b:.1} bytes per entry at the end (median; {basis}); key + value {:.0} B (mean)\n",
                first.key_size as f64 + first.value_size.mean()
            ));
        }
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
