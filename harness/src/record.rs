//! One result row: printed as a summary, as one JSON object (`--json`), or as a CSV line.

use serde::{Deserialize, Serialize};

use crate::run::Outcome;
use crate::workload::Spec;

/// Everything a run reports. `status` is `ok`, or why the run failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub backend: String,
    pub workload: String,
    pub procs: usize,
    /// Which repeat of this cell (0-based); plots and recommendations use the median repeat.
    #[serde(default)]
    pub repeat: u32,
    pub ops_per_sec: f64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    pub duration_s: f64,
    pub ops: u64,
    /// Each worker's ops/s, `;`-separated.
    pub per_proc_ops_per_sec: String,
    pub errors: u64,
    pub dist: String,
    pub keys: u64,
    pub key_size: usize,
    pub value_size: usize,
    pub capacity: usize,
    pub read_pct: u32,
    /// `process` (shared memory or LMDB across processes) or `thread` (in-process reference).
    pub mode: String,
    pub status: String,
    pub machine: String,
    /// Workers SIGKILLed during the run (`--kill-every`).
    #[serde(default)]
    pub kills: u64,
    /// Invariant violations seen under kills (torn or misplaced values, a bad map after).
    #[serde(default)]
    pub violations: u64,
}

impl Record {
    fn base(spec: &Spec, machine: &str) -> Self {
        Record {
            backend: spec.target.name().to_owned(),
            workload: spec.workload.name().to_owned(),
            procs: spec.procs,
            repeat: 0,
            ops_per_sec: 0.0,
            p50_ns: 0,
            p99_ns: 0,
            p999_ns: 0,
            max_ns: 0,
            duration_s: 0.0,
            ops: 0,
            per_proc_ops_per_sec: String::new(),
            errors: 0,
            dist: spec.dist.to_string(),
            keys: spec.keys,
            key_size: spec.key_size,
            value_size: spec.value_size,
            capacity: spec.capacity,
            read_pct: spec.read_pct,
            mode: if spec.target.is_in_process() {
                "thread"
            } else {
                "process"
            }
            .to_owned(),
            status: "ok".to_owned(),
            machine: machine.to_owned(),
            kills: 0,
            violations: 0,
        }
    }

    /// The row of a run that completed.
    pub fn measured(spec: &Spec, outcome: &Outcome, machine: &str) -> Self {
        let mut r = Self::base(spec, machine);
        let rates: Vec<f64> = outcome
            .workers
            .iter()
            .map(|w| w.ops as f64 / w.window_s.max(1e-9))
            .collect();
        r.ops_per_sec = rates.iter().sum();
        r.per_proc_ops_per_sec = rates
            .iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(";");
        r.ops = outcome.workers.iter().map(|w| w.ops).sum();
        r.duration_s = outcome.workers.iter().map(|w| w.window_s).sum::<f64>()
            / outcome.workers.len().max(1) as f64;
        r.errors = outcome.workers.iter().map(|w| w.errors).sum();
        let h = &outcome.latency;
        (r.p50_ns, r.p99_ns, r.p999_ns, r.max_ns) = (
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
        );
        let mut problems = Vec::new();
        if let Some(e) = outcome.workers.iter().find_map(|w| w.first_error.as_ref()) {
            problems.push(format!(
                "errors: {} operations failed, first: {e}",
                r.errors
            ));
        }
        if let Some(k) = &outcome.kills {
            // Killed workers print nothing: count what every worker added to the control
            // segment over the window instead.
            r.kills = k.kills;
            r.ops = k.ops;
            r.ops_per_sec = k.ops as f64 / spec.duration_s;
            r.duration_s = spec.duration_s;
            r.violations = k.violations + u64::from(k.map_check.is_err());
            if k.violations > 0 {
                problems.push(format!("{} torn or misplaced values read", k.violations));
            }
            if let Err(e) = &k.map_check {
                problems.push(format!("map check after the kills failed: {e}"));
            }
        }
        if !problems.is_empty() {
            r.status = problems.join("; ");
        }
        r
    }

    /// The row of a run that could not complete.
    pub fn failed(spec: &Spec, reason: &str, machine: &str) -> Self {
        let mut r = Self::base(spec, machine);
        r.status = format!("failed: {reason}");
        r
    }

    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }

    /// A few readable lines.
    pub fn summary(&self) -> String {
        let mode = if self.mode == "thread" {
            "threads (in-process reference)"
        } else {
            "processes"
        };
        let mut s = format!(
            "{} / {}: {} {mode}, {} keys of {} B, values of {} B, {}, {:.2} s window\n",
            self.backend,
            self.workload,
            self.procs,
            self.keys,
            self.key_size,
            self.value_size,
            self.dist,
            self.duration_s
        );
        if !self.is_ok() && self.ops == 0 {
            s.push_str(&format!("  {}\n", self.status));
            return s;
        }
        let per: Vec<String> = self
            .per_proc_ops_per_sec
            .split(';')
            .filter_map(|x| x.parse::<f64>().ok())
            .map(human)
            .collect();
        s.push_str(&format!(
            "  throughput  {} ops/s total; per worker: {}\n",
            human(self.ops_per_sec),
            per.join(", ")
        ));
        s.push_str(&format!(
            "  latency     p50 {}  p99 {}  p99.9 {}  max {}\n",
            ns(self.p50_ns),
            ns(self.p99_ns),
            ns(self.p999_ns),
            ns(self.max_ns)
        ));
        if self.kills > 0 {
            s.push_str(&format!(
                "  kills       {} workers SIGKILLed and replaced; {} violations\n",
                self.kills, self.violations
            ));
        }
        if !self.is_ok() {
            s.push_str(&format!("  {}\n", self.status));
        }
        s.push_str(&format!("  machine     {}\n", self.machine));
        s
    }
}

/// Per (backend, workload, procs) cell, the repeat with the median throughput (a failed
/// repeat counts as zero, so a cell that mostly fails shows as failed).
pub fn medians(rows: &[Record]) -> Vec<Record> {
    let mut cells: std::collections::BTreeMap<(&str, &str, usize), Vec<&Record>> =
        Default::default();
    for r in rows {
        cells
            .entry((r.backend.as_str(), r.workload.as_str(), r.procs))
            .or_default()
            .push(r);
    }
    cells
        .into_values()
        .map(|mut runs| {
            runs.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
            runs[runs.len() / 2].clone()
        })
        .collect()
}

/// 12345678.0 -> "12.35 M".
pub fn human(x: f64) -> String {
    match x {
        x if x >= 1e9 => format!("{:.2} G", x / 1e9),
        x if x >= 1e6 => format!("{:.2} M", x / 1e6),
        x if x >= 1e3 => format!("{:.1} k", x / 1e3),
        x => format!("{x:.0}"),
    }
}

/// 1234 -> "1.23 µs".
pub fn ns(x: u64) -> String {
    match x {
        x if x >= 1_000_000 => format!("{:.2} ms", x as f64 / 1e6),
        x if x >= 1_000 => format!("{:.2} µs", x as f64 / 1e3),
        x => format!("{x} ns"),
    }
}
