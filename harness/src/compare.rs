//! `harness compare OLD.csv NEW.csv`: which cells changed beyond the noise between two runs of
//! the harness (a baseline and a change), as criterion compares with its saved baseline.
//!
//! A cell changed when every repeat of one side is faster than every repeat of the other and
//! the exact rank test puts the chance of that, were nothing changed, at most [`ALPHA`]: with
//! 3 repeats a side that chance is 2/20 = 0.10, with 5 it is 2/252 < 0.01; with 2 repeats
//! (2/6) no change can be shown, and the output says so. Ratios are of medians.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::record::{human, Record};
use crate::stats;

/// The largest chance of a false "changed" accepted.
pub const ALPHA: f64 = 0.10;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CellChange {
    pub backend: String,
    pub workload: String,
    pub procs: usize,
    pub old_median: f64,
    pub new_median: f64,
    /// new median / old median.
    pub ratio: f64,
    /// The rank test's p-value when the two sides do not overlap.
    pub p: Option<f64>,
    /// `faster`, `slower`, or `unchanged` (within the noise).
    pub verdict: &'static str,
}

type Cells<'a> = BTreeMap<(&'a str, &'a str, usize), Vec<f64>>;

fn cells(rows: &[Record]) -> Cells<'_> {
    let mut m = Cells::new();
    for r in rows.iter().filter(|r| r.is_ok()) {
        m.entry(r.cell()).or_default().push(r.ops_per_sec);
    }
    m
}

/// Every cell measured in both, with its verdict.
pub fn compare(old: &[Record], new: &[Record]) -> Vec<CellChange> {
    let (o, n) = (cells(old), cells(new));
    o.iter()
        .filter_map(|(&(backend, workload, procs), a)| {
            let b = n.get(&(backend, workload, procs))?;
            let p = stats::separation_p(a, b);
            let (old_median, new_median) = (stats::median(a), stats::median(b));
            let verdict = match p {
                Some(p) if p <= ALPHA && new_median > old_median => "faster",
                Some(p) if p <= ALPHA => "slower",
                _ => "unchanged",
            };
            Some(CellChange {
                backend: backend.to_owned(),
                workload: workload.to_owned(),
                procs,
                old_median,
                new_median,
                ratio: new_median / old_median.max(1e-9),
                p,
                verdict,
            })
        })
        .collect()
}

/// The terminal report: changed cells, then a count of the rest.
pub fn text(changes: &[CellChange], old: &[Record], new: &[Record]) -> String {
    let repeats = |rows: &[Record]| cells(rows).values().map(Vec::len).min().unwrap_or(0);
    let (ro, rn) = (repeats(old), repeats(new));
    let mut s = String::new();
    let changed: Vec<&CellChange> = changes
        .iter()
        .filter(|c| c.verdict != "unchanged")
        .collect();
    for c in &changed {
        s.push_str(&format!(
            "{:<9} {:<11} {:>3} procs  {:>10} -> {:>10} ops/s  {:.2}x  {} (p = {:.3})\n",
            c.backend,
            c.workload,
            c.procs,
            human(c.old_median),
            human(c.new_median),
            c.ratio,
            c.verdict,
            c.p.unwrap_or(1.0)
        ));
    }
    s.push_str(&format!(
        "{} of {} cells measured in both changed beyond the noise (every repeat of one side beyond every repeat of the other, p <= {ALPHA}).\n",
        changed.len(),
        changes.len()
    ));
    let smallest_p = 2.0 / (1..=ro).fold(1.0, |c, i| c * (rn + i) as f64 / i as f64);
    if smallest_p > ALPHA {
        s.push_str(&format!(
            "With {ro} and {rn} repeats per cell no change can be shown (the smallest possible p is {smallest_p:.2}); run both with --repeat 3 or more.\n"
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(ops: &[f64]) -> Vec<Record> {
        ops.iter()
            .enumerate()
            .map(|(i, &x)| Record {
                backend: "lockfree".into(),
                workload: "read".into(),
                procs: 1,
                repeat: i as u32,
                ops_per_sec: x,
                ..Record::default()
            })
            .collect()
    }

    #[test]
    fn separated_repeats_are_a_change_and_overlapping_ones_are_not() {
        let old = rows(&[10e6, 11e6, 10.5e6]);
        let c = compare(&old, &rows(&[20e6, 22e6, 21e6]));
        assert_eq!(c[0].verdict, "faster");
        assert!((c[0].ratio - 2.0).abs() < 1e-9);
        assert_eq!(compare(&old, &rows(&[5e6, 6e6, 7e6]))[0].verdict, "slower");
        assert_eq!(
            compare(&old, &rows(&[10.2e6, 12e6, 9e6]))[0].verdict,
            "unchanged"
        );
    }

    #[test]
    fn two_repeats_cannot_show_a_change_and_the_report_says_so() {
        let (old, new) = (rows(&[10e6, 11e6]), rows(&[30e6, 31e6]));
        let c = compare(&old, &new);
        assert_eq!(c[0].verdict, "unchanged");
        assert!(text(&c, &old, &new).contains("no change can be shown"));
    }
}
