//! `harness recommend`: per workload, the backend to choose for sharing a map between
//! processes, named only when the measurements say so.
//!
//! The rule, for each workload:
//! 1. Candidates are the maps that can be shared between processes (ours and peers such as
//!    LMDB). References (threads in one process) and the `null` floor are shown for scale
//!    and never chosen. Only process counts every candidate completed are compared.
//! 2. Candidates are ranked by the geometric mean over process counts of their median ops/s;
//!    the first two are compared.
//! 3. Each repeat of each process count gives one paired ratio of the two (their runs of the
//!    same cell and repeat were interleaved, so a machine that changes speed moves both). The
//!    one the median paired ratio favours is the leader; the margin is that median, with its
//!    distribution-free order-statistic (sign-test) interval, 95% from 6 pairs on: robust to a
//!    pair the machine changed speed in the middle of (that one ratio is off by 2x).
//! 4. The leader is chosen when the whole interval lies above [`TIE`] (a practical margin:
//!    smaller differences are not worth a choice, and a threshold keeps a true tie from being
//!    called a win one run in twenty) and it does not lose beyond the noise at most process
//!    counts. The two tie when the whole interval lies within [1/TIE, TIE]. Otherwise there
//!    is no clear winner at this precision, and the rule says how many repeats would likely
//!    settle it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::record::{human, Record, Summary};
use crate::spec::Role;
use crate::stats;

/// A margin that is worth a choice: below it two backends tie.
pub const TIE: f64 = 1.05;
/// More repeats than this are not a realistic suggestion.
const MAX_REPEATS: usize = 50;

/// What the rule decided for one workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// `choose` wins by more than the tie margin, beyond the noise.
    Winner,
    /// The two lead candidates are within the tie margin of each other, beyond the noise.
    Tie,
    /// The interval straddles the tie margin: more repeats are needed.
    Undecided,
    /// Only one candidate ran: nothing to compare.
    Alone,
}

/// Which of the two candidates the decision is about leads at one process count.
#[derive(Debug, Clone, Serialize)]
pub struct AtProcs {
    pub procs: usize,
    pub leader: String,
    /// The median of the paired ratios at this count, as that leader's margin (>= 1).
    pub margin: f64,
}

/// The decision for one workload (`recommend --json` prints these).
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub workload: String,
    /// The backend to choose, or `null` when there is no clear winner.
    pub choose: Option<String>,
    /// The leader when it is not chosen, else the runner-up: the other side of the margin.
    pub runner_up: Option<String>,
    /// Leader over runner-up: the median of the paired ratios (>= 1: the leader is the one
    /// the pairs favour).
    pub margin: Option<f64>,
    /// The interval of `margin` (order statistics of the paired ratios).
    pub interval: Option<[f64; 2]>,
    /// The interval's coverage: 0.95 or more from 6 pairs on; [min, max] below that, with
    /// its own (lower) coverage.
    pub coverage: Option<f64>,
    pub verdict: Verdict,
    /// With `undecided`: repeats per cell that would likely settle it (`null`: too close to
    /// the tie margin for any realistic number).
    pub repeats_needed: Option<usize>,
    pub per_procs: Vec<AtProcs>,
    /// Every candidate, best first: what it costs beside what it does.
    pub candidates: Vec<Standing>,
    /// One sentence for people.
    pub message: String,
}

/// One candidate on one workload: its speed and, where its store can say, its memory.
#[derive(Debug, Clone, Serialize)]
pub struct Standing {
    pub backend: String,
    /// The geometric mean over the compared process counts of its median ops/s (what ranks
    /// the candidates).
    pub ops_per_sec: f64,
    /// The median over its runs of the bytes per entry at the end of a run.
    pub bytes_per_entry: Option<f64>,
}

/// Every decision, with what they were measured against (`recommend --json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub workloads: Vec<Decision>,
    /// The harness's own cost per operation (the `null` target's median over its one-worker
    /// runs), when it ran.
    pub floor_ns_per_op: Option<f64>,
    /// The key and value bytes an entry holds (key size + mean value length): what bytes per
    /// entry compare with.
    pub payload_bytes: Option<f64>,
    pub tie: f64,
    pub level: f64,
    pub machine: String,
    pub commit: String,
    /// Runs that did not complete or had errors.
    pub problems: Vec<String>,
}

/// backend -> procs -> repeat -> ops/s, for the candidates' successful runs of one workload.
type Runs<'a> = BTreeMap<&'a str, BTreeMap<usize, BTreeMap<u32, f64>>>;

fn decide(workload: &str, runs: &Runs) -> Option<Decision> {
    // Process counts every candidate completed at least once.
    let common: Vec<usize> = runs
        .values()
        .map(|m| m.keys().copied().collect::<BTreeSet<_>>())
        .reduce(|a, b| &a & &b)?
        .into_iter()
        .collect();
    if common.is_empty() {
        return None;
    }
    let median_at =
        |b: &str, p: usize| stats::median(&runs[b][&p].values().copied().collect::<Vec<_>>());
    let mut ranked: Vec<(&str, f64)> = runs
        .keys()
        .map(|&b| {
            let logs: Vec<f64> = common
                .iter()
                .map(|&p| median_at(b, p).max(1.0).ln())
                .collect();
            (b, stats::mean(&logs))
        })
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let candidates: Vec<Standing> = ranked
        .iter()
        .map(|&(b, log)| Standing {
            backend: b.to_owned(),
            ops_per_sec: log.exp(),
            bytes_per_entry: None, // `report` has the rows
        })
        .collect();
    let (mut leader, runner) = (ranked[0].0, ranked.get(1).map(|r| r.0));
    let Some(mut runner) = runner else {
        return Some(Decision {
            workload: workload.to_owned(),
            choose: Some(leader.to_owned()),
            runner_up: None,
            margin: None,
            interval: None,
            coverage: None,
            verdict: Verdict::Alone,
            repeats_needed: None,
            per_procs: Vec::new(),
            candidates,
            message: format!("{leader}: the only candidate measured"),
        });
    };
    // Paired log-ratios leader / runner-up, one per (process count, repeat) both completed.
    let paired = |a: &str, b: &str, p: usize| -> Vec<f64> {
        runs[a][&p]
            .iter()
            .filter_map(|(r, x)| Some((x / runs[b][&p].get(r)?.max(1.0)).max(1e-9).ln()))
            .collect()
    };
    let pooled = |a: &str, b: &str| {
        common
            .iter()
            .flat_map(|&p| paired(a, b, p))
            .collect::<Vec<_>>()
    };
    let mut logs = pooled(leader, runner);
    // The paired median decides which of the two leads (the ranking above, by medians of
    // cells, can be swayed by a cell whose runs landed in the machine's other phase).
    if stats::median(&logs) < 0.0 {
        (leader, runner) = (runner, leader);
        logs = pooled(leader, runner);
    }
    let mut lost_at = 0;
    let mut per_procs = Vec::new();
    for &p in &common {
        let at = paired(leader, runner, p);
        if at.is_empty() {
            continue;
        }
        let m = stats::median(&at);
        per_procs.push(AtProcs {
            procs: p,
            leader: (if m >= 0.0 { leader } else { runner }).to_owned(),
            margin: m.abs().exp(),
        });
        // Loses here beyond the noise: every repeat lost, by more than the tie margin.
        if at.iter().all(|&x| x < 0.0) && m < -TIE.ln() {
            lost_at += 1;
        }
    }
    let m = stats::median(&logs);
    let margin = m.exp();
    // A distribution-free (sign-test) interval for the median: robust to the pair the machine
    // changed speed in the middle of, and exact whatever the noise's shape.
    let (lo, hi, coverage) = stats::median_interval(&logs);
    let interval = (logs.len() >= 2).then(|| [lo.exp(), hi.exp()]);
    let cells = common.len();
    let loses_most = 2 * lost_at > cells;
    let verdict = match interval {
        Some([lo, _]) if lo > TIE && !loses_most => Verdict::Winner,
        Some([lo, hi]) if lo >= 1.0 / TIE && hi <= TIE => Verdict::Tie,
        _ => Verdict::Undecided,
    };
    // Pairs needed for the interval to clear the tie line: n = (z 1.25 s / d)^2 (a median is
    // about 1.25x as noisy as a mean), d the margin's distance from that line in log terms;
    // per cell, that is n / cells repeats.
    let repeats_needed = (verdict == Verdict::Undecided).then(|| {
        let (s, d) = (1.25 * stats::std_dev(&logs), (m.abs() - TIE.ln()).abs());
        let n = (1.96 * s / d).powi(2);
        let r = (n / cells as f64).ceil() as usize;
        let have = logs.len().div_ceil(cells);
        (d > 1e-3 && r <= MAX_REPEATS).then_some(r.max(have + 1))
    });
    let ci = interval.map_or_else(
        || "one pair: no interval".to_owned(),
        |[lo, hi]| format!("{:.0}% CI {lo:.2}x - {hi:.2}x", 100.0 * coverage),
    );
    let message = match verdict {
        Verdict::Winner => {
            format!("choose {leader}: {margin:.2}x over {runner} ({ci})")
        }
        Verdict::Tie => format!(
            "tie: {leader} and {runner} are within {:.0}% of each other ({margin:.2}x, {ci}); either will do",
            100.0 * (TIE - 1.0)
        ),
        _ if loses_most => format!(
            "no clear winner: {leader} leads on the median ({margin:.2}x over {runner}, {ci}) but loses beyond the noise at most process counts"
        ),
        _ => format!(
            "no clear winner between {leader} and {runner} at this precision ({margin:.2}x, {ci}); {}",
            match repeats_needed.flatten() {
                Some(r) => format!("about {r} repeats per cell would likely settle it"),
                None => "the margin is too close to the tie line for more repeats to settle it".to_owned(),
            }
        ),
    };
    Some(Decision {
        workload: workload.to_owned(),
        choose: (verdict == Verdict::Winner).then(|| leader.to_owned()),
        runner_up: Some(runner.to_owned()),
        margin: Some(margin),
        interval,
        coverage: interval.map(|_| coverage),
        verdict,
        repeats_needed: repeats_needed.flatten(),
        per_procs,
        candidates,
        message,
    })
}

/// Decides every workload of `rows` (all repeats of a sweep, or of `run --repeats`).
pub fn report(rows: &[Record]) -> Report {
    let mut by: BTreeMap<&str, Runs> = BTreeMap::new();
    // workload -> backend -> bytes per entry of its runs that measured it.
    let mut bytes: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    let mut problems = BTreeSet::new();
    let mut floor = Vec::new();
    for r in rows {
        if !r.is_ok() {
            problems.insert(format!(
                "{} / {} / {} procs, repeat {}: {:?}: {}",
                r.backend, r.workload, r.procs, r.repeat, r.status, r.message
            ));
            continue;
        }
        if let Some(b) = r.bytes_per_entry {
            bytes.entry((&r.workload, &r.backend)).or_default().push(b);
        }
        match r.role() {
            Role::Candidate => {
                by.entry(&r.workload)
                    .or_default()
                    .entry(&r.backend)
                    .or_default()
                    .entry(r.procs)
                    .or_default()
                    .insert(r.repeat, r.ops_per_sec);
            }
            // One worker: the loop's own cost, without the oversubscription of 4 threads on 2 cores.
            Role::Floor if r.procs == 1 => floor.push(r.ns_per_op),
            Role::Floor => {}
            Role::Reference | Role::Remote => {}
        }
    }
    let first = rows.first();
    let mut workloads: Vec<Decision> = by.iter().filter_map(|(w, runs)| decide(w, runs)).collect();
    for d in &mut workloads {
        for c in &mut d.candidates {
            c.bytes_per_entry = bytes
                .get(&(d.workload.as_str(), c.backend.as_str()))
                .map(|b| stats::median(b));
        }
    }
    Report {
        workloads,
        payload_bytes: first.map(|r| r.key_size as f64 + r.value_size.mean()),
        floor_ns_per_op: (!floor.is_empty()).then(|| stats::median(&floor)),
        tie: TIE,
        level: stats::LEVEL,
        machine: first.map_or_else(String::new, |r| r.machine.clone()),
        commit: first.map_or_else(String::new, |r| r.commit.clone()),
        problems: problems.into_iter().collect(),
    }
}

impl Report {
    /// Terminal text.
    pub fn text(&self, summaries: &[Summary]) -> String {
        let mut s = format!(
            "\nRecommendation for sharing a map between processes (intervals of 95% or more; under {TIE}x is a tie):\n"
        );
        for d in &self.workloads {
            s.push_str(&format!("  {:<11} {}\n", d.workload, d.message));
            if let Some(line) = self.standings(d) {
                s.push_str(&format!("  {:<11} {line}\n", ""));
            }
        }
        s.push_str(&self.scale_lines(summaries).join(""));
        if !self.problems.is_empty() {
            s.push_str("Runs that did not complete cleanly:\n");
            self.problems
                .iter()
                .for_each(|p| s.push_str(&format!("  {p}\n")));
        }
        s
    }

    /// "lockfree 2.06 M ops/s, 2584 B per entry; lmdb ..." for a workload whose candidates
    /// measured their memory, with the key and value bytes it compares with; `None` when
    /// none did (the CSVs of earlier harnesses).
    fn standings(&self, d: &Decision) -> Option<String> {
        d.candidates
            .iter()
            .any(|c| c.bytes_per_entry.is_some())
            .then(|| {
                let each: Vec<String> = d
                    .candidates
                    .iter()
                    .map(|c| {
                        let memory = c.bytes_per_entry.map_or_else(
                            || "memory not measured".to_owned(),
                            |b| format!("{b:.0} B per entry"),
                        );
                        format!("{} {} ops/s, {memory}", c.backend, human(c.ops_per_sec))
                    })
                    .collect();
                let payload = self
                    .payload_bytes
                    .map_or_else(String::new, |p| format!(" (key + value: {p:.0} B)"));
                format!("{}{payload}", each.join("; "))
            })
    }

    /// The floor and the references, for scale.
    fn scale_lines(&self, summaries: &[Summary]) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(f) = self.floor_ns_per_op {
            lines.push(format!(
                "  harness floor (null target, 1 worker): {f:.1} ns per operation; every map's figure includes it\n"
            ));
        }
        let refs: Vec<String> = summaries
            .iter()
            .filter(|s| s.role == "reference" && s.is_ok() && s.procs == 1)
            .map(|s| {
                format!(
                    "{} {} on {}",
                    s.backend,
                    human(s.median_ops_per_sec),
                    s.workload
                )
            })
            .collect();
        if !refs.is_empty() {
            lines.push(format!(
                "  in-process references at 1 thread (not for sharing between processes): {}\n",
                refs.join(", ")
            ));
        }
        // workload -> its cells of the map on a server, for one line per workload.
        let mut remote: BTreeMap<&str, Vec<&Summary>> = BTreeMap::new();
        for s in summaries.iter().filter(|s| s.role == "remote" && s.is_ok()) {
            remote.entry(&s.workload).or_default().push(s);
        }
        if !remote.is_empty() {
            let per: Vec<String> = remote
                .iter()
                .map(|(w, cells)| {
                    let (procs, rates): (Vec<_>, Vec<_>) = cells
                        .iter()
                        .map(|s| (s.procs.to_string(), human(s.median_ops_per_sec)))
                        .unzip();
                    let bytes: Vec<f64> = cells
                        .iter()
                        .filter_map(|s| s.median_bytes_per_entry)
                        .collect();
                    let memory = if bytes.is_empty() {
                        String::new()
                    } else {
                        format!(", {:.0} B per entry", stats::median(&bytes))
                    };
                    format!(
                        "{w} {} at {} procs{memory}",
                        rates.join(" / "),
                        procs.join(" / ")
                    )
                })
                .collect();
            lines.push(format!(
                "  redis is the option when processes run on several machines, not a rival on \
                 one: every operation is a network round trip ({})\n",
                per.join("; ")
            ));
        }
        lines
    }

    /// The same as Markdown, for `recommendation.md`.
    pub fn markdown(&self, summaries: &[Summary]) -> String {
        let mut md = format!(
            "Machine: {}; harness commit {}\n\n",
            self.machine, self.commit
        );
        md.push_str("| workload | choose | margin (95% CI) | leader at each process count | verdict |\n|---|---|---|---|---|\n");
        for d in &self.workloads {
            let margin = match (d.margin, d.interval) {
                (Some(m), Some([lo, hi])) => format!(
                    "{m:.2}x over {} ({lo:.2}x - {hi:.2}x)",
                    d.runner_up.as_deref().unwrap_or("-")
                ),
                (Some(m), None) => format!("{m:.2}x (no interval)"),
                _ => "-".to_owned(),
            };
            let at: Vec<String> = d
                .per_procs
                .iter()
                .map(|a| format!("{}: {} {:.2}x", a.procs, a.leader, a.margin))
                .collect();
            // A tie is a decision too ("either will do"), not a lack of one.
            let choose = match (&d.choose, d.verdict) {
                (Some(c), _) => format!("**{c}**"),
                (None, Verdict::Tie) => "tie: either".to_owned(),
                (None, _) => "no clear winner".to_owned(),
            };
            md.push_str(&format!(
                "| {} | {choose} | {margin} | {} | {} |\n",
                d.workload,
                at.join("; "),
                d.message
            ));
        }
        md.push('\n');
        let measured: Vec<&Decision> = self
            .workloads
            .iter()
            .filter(|d| d.candidates.iter().any(|c| c.bytes_per_entry.is_some()))
            .collect();
        if !measured.is_empty() {
            md.push_str(&format!(
                "What each candidate costs beside what it does{}:\n\n| workload | backend | ops/s (geometric mean over process counts) | bytes per entry (median) |\n|---|---|---|---|\n",
                self.payload_bytes
                    .map_or_else(String::new, |p| format!(" (an entry holds {p:.0} B of key and value)"))
            ));
            for d in measured {
                for c in &d.candidates {
                    let memory = c
                        .bytes_per_entry
                        .map_or("-".to_owned(), |b| format!("{b:.0}"));
                    md.push_str(&format!(
                        "| {} | {} | {} | {memory} |\n",
                        d.workload,
                        c.backend,
                        human(c.ops_per_sec)
                    ));
                }
            }
            md.push('\n');
        }
        for line in self.scale_lines(summaries) {
            md.push_str(&format!("- {}", line.trim_start()));
        }
        if !self.problems.is_empty() {
            md.push_str("\nRuns that did not complete cleanly:\n\n");
            self.problems
                .iter()
                .for_each(|p| md.push_str(&format!("- {p}\n")));
        }
        md.push_str(&format!(
            "\nThe rule: candidates ranked by the geometric mean of their median ops/s over the process counts; \
             the margin is the median of the paired ratios (leader / runner-up, same cell and repeat) with its \
             distribution-free (order-statistic) interval, 95% from 6 pairs on. A winner is named only when the whole interval is above {TIE}x; \
             within [1/{TIE}, {TIE}] the two tie. References (threads) and the null floor are never chosen.\n"
        ));
        md
    }
}

#[cfg(test)]
mod tests;
