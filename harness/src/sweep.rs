//! `harness sweep`: every backend x process count x workload, one CSV row per run (written as
//! it goes, so an interrupted sweep keeps what it measured), then plots and a recommendation.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::Params;
use crate::record::{human, ns, summarise, Provenance, Record, Summary};
use crate::spec::{TargetKind, Workload};
use crate::{plot, recommend, run};

/// Repeats of `--quick` (`make run`): the fewest that decided the same way in five
/// back-to-back runs on a 2-core machine (see the README).
const QUICK_REPEATS: u32 = 3;

/// What a sweep runs.
#[derive(Debug)]
pub struct Plan {
    pub backends: Vec<TargetKind>,
    pub procs: Vec<usize>,
    pub workloads: Vec<Workload>,
    pub quick: bool,
    /// Runs of every cell, interleaved across backends (host noise on shared machines moves
    /// whole runs by 2x; the median of interleaved repeats is what the plots show).
    pub repeat: u32,
}

impl Plan {
    /// Fills what the command line left empty with the defaults (or the `--quick` ones).
    pub fn new(
        backends: Vec<TargetKind>,
        procs: Vec<usize>,
        workloads: Vec<Workload>,
        quick: bool,
        repeat: Option<u32>,
    ) -> Self {
        fn or<T: Clone>(v: Vec<T>, default: &[T]) -> Vec<T> {
            if v.is_empty() {
                default.to_vec()
            } else {
                v
            }
        }
        Plan {
            backends: or(backends, &TargetKind::ALL),
            procs: or(procs, if quick { &[1, 2, 4] } else { &[1, 2, 4, 8, 16] }),
            workloads: or(
                workloads,
                if quick {
                    &[Workload::Read, Workload::ReadHeavy, Workload::Exchange]
                } else {
                    &Workload::ALL
                },
            ),
            quick,
            repeat: repeat
                .unwrap_or(if quick { QUICK_REPEATS } else { 3 })
                .max(1),
        }
    }

    /// Default (window, warm-up) seconds of each run.
    pub fn window(&self) -> (f64, f64) {
        if self.quick {
            (0.3, 0.1)
        } else {
            (1.0, 0.3)
        }
    }
}

/// What a sweep writes into its directory; `--force` removes exactly these first.
fn is_sweep_output(name: &str) -> bool {
    matches!(
        name,
        "runs.csv" | "summary.csv" | "recommendation.md" | "recommendation.json"
    ) || (["throughput-", "latency-", "memory-"]
        .iter()
        .any(|p| name.starts_with(p))
        && (name.ends_with(".svg") || name.ends_with(".png")))
}

/// Makes `out` ready for a sweep: created if missing; refused if it holds anything unless
/// `force`, which removes what an earlier sweep wrote there (and nothing else).
pub fn prepare_out(out: &Path, force: bool) -> Result<(), String> {
    let entries: Vec<String> = match std::fs::read_dir(out) {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("read {}: {e}", out.display())),
    };
    if !entries.is_empty() && !force {
        return Err(format!(
            "{} is not empty; pass --force to replace an earlier sweep's files there, or choose another --out",
            out.display()
        ));
    }
    for name in entries.iter().filter(|n| is_sweep_output(n)) {
        let path = out.join(name);
        std::fs::remove_file(&path).map_err(|e| format!("remove {}: {e}", path.display()))?;
    }
    std::fs::create_dir_all(out).map_err(|e| format!("create {}: {e}", out.display()))
}

/// Writes `rows` (every run) and their per-cell summaries as CSV into `out`.
pub fn write_csvs(rows: &[Record], summaries: &[Summary], out: &Path) -> Result<(), String> {
    fn write<T: serde::Serialize>(items: &[T], path: &Path) -> Result<(), String> {
        let fail = |e: csv::Error| format!("write {}: {e}", path.display());
        let mut w = csv::Writer::from_path(path).map_err(fail)?;
        for item in items {
            w.serialize(item).map_err(fail)?;
        }
        w.flush()
            .map_err(|e| format!("write {}: {e}", path.display()))
    }
    write(rows, &out.join("runs.csv"))?;
    write(summaries, &out.join("summary.csv"))
}

/// Plots, the recommendation (printed, and as Markdown and JSON) from a sweep's rows.
pub fn report_into(rows: &[Record], out: &Path) -> Result<(), String> {
    let summaries = summarise(rows);
    for f in plot::draw_all(&summaries, rows, out)? {
        println!("wrote {}", f.display());
    }
    let report = recommend::report(rows);
    print!("{}", report.text(&summaries));
    let md: PathBuf = out.join("recommendation.md");
    std::fs::write(&md, report.markdown(&summaries))
        .map_err(|e| format!("write {}: {e}", md.display()))?;
    let json: PathBuf = out.join("recommendation.json");
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&json, text + "\n").map_err(|e| format!("write {}: {e}", json.display()))?;
    println!(
        "wrote {}, {} and {}",
        out.join("runs.csv").display(),
        md.display(),
        json.display()
    );
    Ok(())
}

/// Validates every combination before minutes are spent on the first ones.
pub fn check(plan: &Plan, params: &Params) -> Result<(), String> {
    combos(plan).try_for_each(|(b, w, p, _)| params.spec(b, w, p, plan.window()).validate())
}

pub fn sweep(plan: &Plan, params: &Params, out: &Path) -> Result<(), String> {
    let provenance = Provenance::now();
    let total = combos(plan).count() as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise} (eta {eta}) {msg}")
            .expect("valid template"),
    );
    println!(
        "sweep on {} (commit {}): {total} runs, {} interleaved repeats per cell, into {}",
        provenance.machine,
        provenance.commit,
        plan.repeat,
        out.display()
    );
    if plan.quick {
        println!(
            "--quick: a smoke test with short windows; its verdicts say when they cannot decide. \
             `make sweep` is the full measurement."
        );
    }
    let mut rows = Vec::new();
    for (backend, workload, procs, repeat) in combos(plan) {
        bar.set_message(format!("{backend} / {workload} / {procs}"));
        let spec = params.spec(backend, workload, procs, plan.window());
        let mut row = match run::run(&spec) {
            Ok(outcome) => Record::measured(&spec, &outcome, &provenance).0,
            Err(e) => Record::failed(&spec, &e, &provenance),
        };
        row.repeat = repeat;
        let note = if row.is_ok() {
            String::new()
        } else {
            format!("  [{:?}: {}]", row.status, row.message)
        };
        let memory = row
            .bytes_per_entry
            .map_or_else(String::new, |b| format!("  {b:>7.1} B/entry"));
        let line = format!(
            "{backend:<9} {workload:<11} {procs:>3} procs  #{repeat} {:>10} ops/s  p99 {:>8}{memory}{note}",
            human(row.ops_per_sec),
            ns(row.p99_ns as f64)
        );
        if bar.is_hidden() {
            println!("{line}"); // not a terminal: the bar's println would print nothing
        } else {
            bar.println(line);
        }
        rows.push(row);
        // Written as it goes, so an interrupted sweep keeps what it measured.
        write_csvs(&rows, &summarise(&rows), out)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    report_into(&rows, out)
}

/// Workload-major order, so one workload's rows complete together; within a cell, the repeats
/// interleave the backends, each repeat in a rotated order so no backend always runs first.
fn combos(plan: &Plan) -> impl Iterator<Item = (TargetKind, Workload, usize, u32)> + '_ {
    let n = plan.backends.len();
    plan.workloads.iter().flat_map(move |&w| {
        plan.procs.iter().flat_map(move |&p| {
            (0..plan.repeat).flat_map(move |r| {
                (0..n).map(move |i| (plan.backends[(i + r as usize) % n], w, p, r))
            })
        })
    })
}
