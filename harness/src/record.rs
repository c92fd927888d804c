//! What the harness reports, for people and for scripts: one [`Record`] per run (a CSV row,
//! or one entry of `run --json`), and one [`Summary`] per cell (backend x workload x process
//! count) over its repeats, with the spread every figure must carry.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::outcome::Outcome;
use crate::spec::{Role, Spec};
use crate::stats;
use crate::value_size::ValueSize;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Completed, every operation succeeded.
    #[default]
    Ok,
    /// Completed, but some operations failed (`message` says which first).
    Errors,
    /// Under `--kill-every`: a torn or misplaced value was read, or the map was bad after.
    Violations,
    /// Could not complete (a worker failed or hung, the map could not be created, ...).
    Failed,
}

/// Where and from what a result came: the same in every row of one invocation.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Provenance {
    /// The harness's crate version.
    pub version: String,
    /// The git commit the harness was built from (`-dirty` with uncommitted changes), or
    /// `unknown` outside a checkout.
    pub commit: String,
    /// When the invocation started, UTC, RFC 3339.
    pub timestamp: String,
    /// CPU model, cpus, memory, kernel.
    pub machine: String,
}

impl Provenance {
    pub fn now() -> Self {
        Provenance {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            commit: env!("SHMAP_GIT_COMMIT").to_owned(),
            timestamp: rfc3339_utc(std::time::SystemTime::now()),
            machine: crate::machine::describe(),
        }
    }
}

/// Everything one run reports: what ran, with every parameter, what it measured, how it
/// ended, and where. Flat, so that it is one CSV row; `run --json` adds each worker's rate.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Record {
    pub backend: String,
    /// `candidate` (shares a map between processes), `reference` (threads in one process) or
    /// `floor` (the harness's own cost).
    pub role: String,
    pub workload: String,
    pub procs: usize,
    /// Which repeat of this cell (0-based).
    pub repeat: u32,
    pub status: Status,
    /// Why the status is not `ok`; empty when it is.
    pub message: String,
    pub ops_per_sec: f64,
    /// Nanoseconds per operation in each worker (workers / total ops/s).
    pub ns_per_op: f64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    pub ops: u64,
    pub errors: u64,
    /// The slowest and fastest worker's ops/s (`run --json` lists every worker's).
    pub min_worker_ops_per_sec: f64,
    pub max_worker_ops_per_sec: f64,
    /// Workers SIGKILLed during the run (`--kill-every`).
    pub kills: u64,
    /// Invariant violations seen under kills (torn or misplaced values, a bad map after).
    pub violations: u64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub dist: String,
    pub keys: u64,
    pub key_size: usize,
    /// `N`, or `MIN..MAX` (log-uniform). A number in the CSVs of earlier harnesses, which
    /// reads as the same.
    pub value_size: ValueSize,
    pub capacity: usize,
    pub read_pct: u32,
    /// `--absent-pct`. Added after the first CSVs: read as 0 when absent.
    #[serde(default)]
    pub absent_pct: u32,
    pub seed: u64,
    pub kill_every_ms: u64,
    /// [`Provenance`], flat (CSV has no nesting).
    pub version: String,
    pub commit: String,
    pub timestamp: String,
    pub machine: String,
    /// `shm`, or `file:DIR` (`--storage`). Added after the first CSVs: read as `shm` when absent.
    #[serde(default = "shm")]
    pub storage: String,
    /// Memory per entry at the end of the run (`outcome::Memory`), where the target can say.
    /// Added after the first CSVs: read as empty when absent.
    #[serde(default)]
    pub bytes_per_entry: Option<f64>,
}

fn shm() -> String {
    "shm".to_owned()
}

/// Columns a CSV of an earlier harness may lack (each has a serde default).
const ADDED_LATER: [&str; 3] = ["storage", "absent_pct", "bytes_per_entry"];

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Candidate => "candidate",
        Role::Reference => "reference",
        Role::Floor => "floor",
        Role::Remote => "remote",
    }
}

impl Record {
    fn base(spec: &Spec, provenance: &Provenance) -> Self {
        Record {
            backend: spec.target.name().to_owned(),
            role: role_name(spec.target.role()).to_owned(),
            workload: spec.workload.name().to_owned(),
            procs: spec.procs,
            duration_s: spec.duration_s,
            warmup_s: spec.warmup_s,
            dist: spec.dist.to_string(),
            keys: spec.keys,
            key_size: spec.key_size,
            value_size: spec.value_size,
            capacity: spec.capacity,
            read_pct: spec.read_pct,
            absent_pct: spec.absent_pct,
            seed: spec.seed,
            kill_every_ms: spec.kill_every_ms,
            storage: spec
                .storage_dir
                .as_ref()
                .map_or_else(shm, |d| format!("file:{}", d.display())),
            version: provenance.version.clone(),
            commit: provenance.commit.clone(),
            timestamp: provenance.timestamp.clone(),
            machine: provenance.machine.clone(),
            ..Record::default()
        }
    }

    /// The row of a run that completed, and each worker's ops/s.
    pub fn measured(spec: &Spec, outcome: &Outcome, provenance: &Provenance) -> (Self, Vec<f64>) {
        let mut r = Self::base(spec, provenance);
        let rates: Vec<f64> = outcome
            .workers
            .iter()
            .map(|w| w.ops as f64 / w.window_s.max(1e-9))
            .collect();
        r.ops_per_sec = rates.iter().sum();
        r.min_worker_ops_per_sec = rates.iter().copied().fold(f64::INFINITY, f64::min);
        r.max_worker_ops_per_sec = rates.iter().copied().fold(0.0, f64::max);
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
            r.status = Status::Errors;
            problems.push(format!("{} operations failed, first: {e}", r.errors));
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
            if r.violations > 0 {
                r.status = Status::Violations;
            }
        }
        r.ns_per_op = spec.procs as f64 * 1e9 / r.ops_per_sec.max(1e-9);
        r.bytes_per_entry = outcome.memory.and_then(|m| m.per_entry());
        r.message = problems.join("; ");
        (r, rates)
    }

    /// The row of a run that could not complete.
    pub fn failed(spec: &Spec, reason: &str, provenance: &Provenance) -> Self {
        let mut r = Self::base(spec, provenance);
        r.status = Status::Failed;
        r.message = reason.to_owned();
        r
    }

    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    pub fn role(&self) -> Role {
        match self.role.as_str() {
            "reference" => Role::Reference,
            "floor" => Role::Floor,
            "remote" => Role::Remote,
            _ => Role::Candidate,
        }
    }

    /// The cell this run belongs to.
    pub fn cell(&self) -> (&str, &str, usize) {
        (&self.backend, &self.workload, self.procs)
    }

    /// The run's parameters in a few words, for titles and summaries.
    pub fn parameters(&self) -> String {
        let mut extra = if self.storage == "shm" || self.storage.is_empty() {
            String::new()
        } else {
            format!(", maps in {}", self.storage)
        };
        if self.absent_pct > 0 {
            extra += &format!(", {}% of gets for absent keys", self.absent_pct);
        }
        let values = match self.value_size {
            ValueSize::Fixed(n) => format!("values of {n} B"),
            v => format!("values of {v} B (log-uniform, mean {:.0} B)", v.mean()),
        };
        format!(
            "{} keys of {} B, {values}, {}, {:.2} s windows after {:.2} s warm-up{extra}",
            self.keys, self.key_size, self.dist, self.duration_s, self.warmup_s
        )
    }
}

/// The columns of a harness CSV, in order.
pub fn csv_header() -> Vec<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(Record::default()).expect("a record serializes");
    let bytes = w.into_inner().expect("in memory");
    let text = String::from_utf8(bytes).expect("utf-8");
    text.lines()
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// Reads a `runs.csv` the harness wrote; anything else is refused with a clear error.
pub fn read_csv(path: &Path) -> Result<Vec<Record>, String> {
    let not_ours = |why: String| {
        format!(
            "{} is not a harness runs.csv ({why}); give the runs.csv that `harness sweep` or `harness run --save-runs` wrote",
            path.display()
        )
    };
    let mut reader =
        csv::Reader::from_path(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| not_ours(e.to_string()))?
        .iter()
        .map(str::to_owned)
        .collect();
    let expected = csv_header();
    // Every column, in order, except those added later that this file does not have (serde
    // fills in their defaults).
    let accepted: Vec<&String> = expected
        .iter()
        .filter(|c| !ADDED_LATER.contains(&c.as_str()) || header.contains(c))
        .collect();
    let header_refs: Vec<&String> = header.iter().collect();
    if header_refs != accepted {
        let missing: Vec<&str> = expected
            .iter()
            .filter(|c| !header.contains(c))
            .map(String::as_str)
            .collect();
        return Err(not_ours(if missing.is_empty() {
            "its columns are not in the harness's order".to_owned()
        } else {
            format!("missing columns: {}", missing.join(", "))
        }));
    }
    let rows: Vec<Record> = reader
        .deserialize()
        .collect::<Result<_, _>>()
        .map_err(|e| not_ours(e.to_string()))?;
    if rows.is_empty() {
        return Err(not_ours("no rows".to_owned()));
    }
    Ok(rows)
}

/// One cell over its repeats: medians with their spread.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub backend: String,
    pub role: String,
    pub workload: String,
    pub procs: usize,
    /// Repeats run, and how many completed without error (the figures are over those).
    pub runs: usize,
    pub ok_runs: usize,
    pub median_ops_per_sec: f64,
    pub min_ops_per_sec: f64,
    pub max_ops_per_sec: f64,
    /// An order-statistic interval for the median ops/s, and its coverage (e.g. 0.9375 for
    /// five runs: see `stats::median_interval`).
    pub ci_low_ops_per_sec: f64,
    pub ci_high_ops_per_sec: f64,
    pub ci_coverage: f64,
    pub median_ns_per_op: f64,
    pub median_p50_ns: f64,
    pub min_p50_ns: f64,
    pub max_p50_ns: f64,
    pub median_p99_ns: f64,
    pub min_p99_ns: f64,
    pub max_p99_ns: f64,
    pub status: Status,
    /// The first problem of a repeat that did not end `ok`.
    pub message: String,
    /// The median memory per entry of the repeats that measured it, and its spread.
    pub median_bytes_per_entry: Option<f64>,
    pub min_bytes_per_entry: Option<f64>,
    pub max_bytes_per_entry: Option<f64>,
}

/// The cells of `rows` (in the order first seen), each summarised over its repeats.
pub fn summarise(rows: &[Record]) -> Vec<Summary> {
    type Cell<'a> = ((&'a str, &'a str, usize), Vec<&'a Record>);
    let mut cells: Vec<Cell> = Vec::new();
    for r in rows {
        match cells.iter_mut().find(|(c, _)| *c == r.cell()) {
            Some((_, runs)) => runs.push(r),
            None => cells.push((r.cell(), vec![r])),
        }
    }
    cells
        .into_iter()
        .map(|((backend, workload, procs), runs)| {
            let ok: Vec<&&Record> = runs.iter().filter(|r| r.is_ok()).collect();
            let of = |f: fn(&Record) -> f64| ok.iter().map(|r| f(r)).collect::<Vec<f64>>();
            let ops = of(|r| r.ops_per_sec);
            let (p50, p99) = (of(|r| r.p50_ns as f64), of(|r| r.p99_ns as f64));
            let min = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::min);
            let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
            let (ci_low, ci_high, coverage) = stats::median_interval(&ops);
            let worst = runs.iter().find(|r| !r.is_ok());
            let bytes: Vec<f64> = ok.iter().filter_map(|r| r.bytes_per_entry).collect();
            let measured = |f: &dyn Fn(&[f64]) -> f64| (!bytes.is_empty()).then(|| f(&bytes));
            Summary {
                backend: backend.to_owned(),
                role: runs[0].role.clone(),
                workload: workload.to_owned(),
                procs,
                runs: runs.len(),
                ok_runs: ok.len(),
                median_ops_per_sec: stats::median(&ops),
                min_ops_per_sec: min(&ops),
                max_ops_per_sec: max(&ops),
                ci_low_ops_per_sec: ci_low,
                ci_high_ops_per_sec: ci_high,
                ci_coverage: coverage,
                median_ns_per_op: stats::median(&of(|r| r.ns_per_op)),
                median_p50_ns: stats::median(&p50),
                min_p50_ns: min(&p50),
                max_p50_ns: max(&p50),
                median_p99_ns: stats::median(&p99),
                min_p99_ns: min(&p99),
                max_p99_ns: max(&p99),
                status: worst.map_or(Status::Ok, |r| r.status),
                message: worst.map_or(String::new(), |r| r.message.clone()),
                median_bytes_per_entry: measured(&stats::median),
                min_bytes_per_entry: measured(&min),
                max_bytes_per_entry: measured(&max),
            }
        })
        .collect()
}

impl Summary {
    pub fn is_ok(&self) -> bool {
        self.ok_runs > 0
    }

    /// One line: "20.9 M ops/s (median of 5; min 19.2 M, max 21.4 M; 94% CI 19.2 M - 21.4 M)".
    pub fn spread(&self) -> String {
        if !self.is_ok() {
            return format!("no run completed: {}", self.message);
        }
        let mut s = format!("{} ops/s", human(self.median_ops_per_sec));
        if self.ok_runs > 1 {
            s.push_str(&format!(
                " (median of {}; min {}, max {}; {:.0}% CI of the median {} - {})",
                self.ok_runs,
                human(self.min_ops_per_sec),
                human(self.max_ops_per_sec),
                100.0 * self.ci_coverage,
                human(self.ci_low_ops_per_sec),
                human(self.ci_high_ops_per_sec)
            ));
        } else {
            s.push_str(" (one run: no spread; use --repeats 5 for an interval)");
        }
        s
    }
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
pub fn ns(x: f64) -> String {
    match x {
        x if x >= 1e6 => format!("{:.2} ms", x / 1e6),
        x if x >= 1e3 => format!("{:.2} µs", x / 1e3),
        x => format!("{x:.0} ns"),
    }
}

/// `2026-11-25T09:37:45Z` for a time after 1970.
fn rfc3339_utc(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
