//! `harness sweep`: every backend x process count x workload, one CSV row per run (written as
//! it goes, so an interrupted sweep keeps what it measured), then plots and a recommendation.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use crate::record::{human, medians, Record};
use crate::targets::TargetKind;
use crate::workload::Workload;
use crate::{machine, plot, recommend, run, Params};

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
            repeat: repeat.unwrap_or(if quick { 1 } else { 3 }).max(1),
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

pub fn read_csv(path: &Path) -> Result<Vec<Record>, String> {
    let mut reader =
        csv::Reader::from_path(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    reader
        .deserialize()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("parse {}: {e}", path.display()))
}

pub fn sweep(plan: &Plan, params: &Params, out: &Path) -> Result<(), String> {
    if plan.repeat == 0 {
        return Err("--repeat must be at least 1".into());
    }
    // Validate every combination before spending minutes on the first ones.
    for (b, w, p, _) in combos(plan) {
        params.spec(b, w, p, plan.window()).validate()?;
    }
    std::fs::create_dir_all(out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let csv_path = out.join("runs.csv");
    let mut csv = csv::Writer::from_path(&csv_path)
        .map_err(|e| format!("write {}: {e}", csv_path.display()))?;
    let machine = machine::describe();
    let total = combos(plan).count() as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise} (eta {eta}) {msg}")
            .expect("valid template"),
    );
    println!("sweep on {machine}: {total} runs into {}", out.display());
    let mut rows = Vec::new();
    for (backend, workload, procs, repeat) in combos(plan) {
        bar.set_message(format!("{backend} / {workload} / {procs}"));
        let spec = params.spec(backend, workload, procs, plan.window());
        let mut row = match run::run(&spec) {
            Ok(outcome) => Record::measured(&spec, &outcome, &machine),
            Err(e) => Record::failed(&spec, &e, &machine),
        };
        row.repeat = repeat;
        let note = if row.is_ok() {
            String::new()
        } else {
            format!("  [{}]", row.status)
        };
        let line = format!(
            "{backend:<9} {workload:<11} {procs:>3} procs {:>10} ops/s  p99 {:>8} ns{note}",
            human(row.ops_per_sec),
            row.p99_ns
        );
        if bar.is_hidden() {
            println!("{line}"); // not a terminal: the bar's println would print nothing
        } else {
            bar.println(line);
        }
        csv.serialize(&row)
            .and_then(|()| Ok(csv.flush()?))
            .map_err(|e| format!("write {}: {e}", csv_path.display()))?;
        rows.push(row);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let medians = medians(&rows);
    for f in plot::draw_all(&medians, out)? {
        println!("wrote {}", f.display());
    }
    let rec = recommend::recommend(&medians);
    print!("{}", rec.text);
    let md: PathBuf = out.join("recommendation.md");
    std::fs::write(&md, &rec.markdown).map_err(|e| format!("write {}: {e}", md.display()))?;
    println!("wrote {} and {}", csv_path.display(), md.display());
    Ok(())
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
