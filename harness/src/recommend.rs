//! `harness recommend`: per workload, the backend to choose for sharing a map between
//! processes, and by how much it beats the next. In-process references (threads) are shown for
//! scale but cannot win: they cannot be shared between processes.

use std::collections::{BTreeMap, BTreeSet};

use crate::record::{human, Record};

/// The same verdict as terminal text and as Markdown.
#[derive(Debug)]
pub struct Recommendation {
    pub text: String,
    pub markdown: String,
}

/// Margins below this are within the run-to-run noise of a shared machine: called a tie.
const TIE: f64 = 1.05;

fn geomean(xs: &[f64]) -> f64 {
    (xs.iter().map(|x| x.max(1.0).ln()).sum::<f64>() / xs.len().max(1) as f64).exp()
}

pub fn recommend(rows: &[Record]) -> Recommendation {
    let mut text = String::from(
        "\nRecommendation (geometric mean of ops/s over the process counts every candidate ran):\n",
    );
    let machine = rows.first().map_or("unknown", |r| r.machine.as_str());
    let mut md = format!("Machine: {machine}\n\n");
    md.push_str(
        "| workload | choose | margin over next | runner-up | winner at each process count | vs dashmap threads |\n|---|---|---|---|---|---|\n",
    );
    // workload -> backend -> procs -> ops/s
    let mut by: BTreeMap<&str, BTreeMap<&str, BTreeMap<usize, f64>>> = BTreeMap::new();
    let mut reference: BTreeMap<(&str, usize), f64> = BTreeMap::new();
    let mut failures: BTreeSet<String> = BTreeSet::new();
    for r in rows {
        if !r.is_ok() {
            failures.insert(format!(
                "{} / {} / {} procs: {}",
                r.backend, r.workload, r.procs, r.status
            ));
            continue;
        }
        if r.mode == "thread" {
            if r.backend == "dashmap" {
                reference.insert((r.workload.as_str(), r.procs), r.ops_per_sec);
            }
            continue;
        }
        by.entry(&r.workload)
            .or_default()
            .entry(&r.backend)
            .or_default()
            .insert(r.procs, r.ops_per_sec);
    }
    for (workload, backends) in &by {
        // Only process counts that every candidate completed, so means compare like with like.
        let common: Vec<usize> = backends
            .values()
            .map(|m| m.keys().copied().collect::<BTreeSet<_>>())
            .reduce(|a, b| &a & &b)
            .unwrap_or_default()
            .into_iter()
            .collect();
        if common.is_empty() {
            continue;
        }
        let mut ranked: Vec<(&str, f64)> = backends
            .iter()
            .map(|(b, m)| {
                (
                    *b,
                    geomean(&common.iter().map(|p| m[p]).collect::<Vec<_>>()),
                )
            })
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let (winner, best) = ranked[0];
        let (runner, margin) = ranked.get(1).map_or(("-", String::from("-")), |(b, x)| {
            (*b, format!("{:.2}x", best / x))
        });
        let tie = ranked.get(1).is_some_and(|(_, x)| best / x < TIE);
        let choice = if tie {
            format!("{winner} = {runner} (tie)")
        } else {
            winner.to_owned()
        };
        let per_procs: Vec<String> = common
            .iter()
            .map(|p| {
                let mut at: Vec<(&str, f64)> = backends.iter().map(|(b, m)| (*b, m[p])).collect();
                at.sort_by(|a, b| b.1.total_cmp(&a.1));
                let m = at
                    .get(1)
                    .map_or(String::new(), |(_, x)| format!(" {:.2}x", at[0].1 / x));
                format!("{p}: {}{m}", at[0].0)
            })
            .collect();
        let vs_ref: Vec<String> = common
            .iter()
            .filter_map(|p| {
                reference
                    .get(&(*workload, *p))
                    .map(|d| format!("{p}: {:.0}%", 100.0 * backends[winner][p] / d))
            })
            .collect();
        text.push_str(&format!(
            "  {workload:<11} choose {choice:<9} {} ops/s, {margin} over {runner}; per process count: {}\n",
            human(best),
            per_procs.join(", ")
        ));
        md.push_str(&format!(
            "| {workload} | **{choice}** | {margin} | {runner} | {} | {} |\n",
            per_procs.join("; "),
            if vs_ref.is_empty() {
                "-".to_owned()
            } else {
                vs_ref.join("; ")
            }
        ));
    }
    if !failures.is_empty() {
        text.push_str("Runs that did not complete:\n");
        md.push_str("\nRuns that did not complete:\n\n");
        for f in &failures {
            text.push_str(&format!("  {f}\n"));
            md.push_str(&format!("- {f}\n"));
        }
    }
    md.push_str(
        "\n\"margin\" is the winner's geometric-mean throughput over the runner-up's (under 1.05x is called a tie: \
         within the noise of a shared machine); \"vs dashmap threads\" is the winner's throughput as a share of \
         dashmap's with as many threads in one process.\n",
    );
    Recommendation { text, markdown: md }
}
