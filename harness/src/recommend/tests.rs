//! The verdicts on synthetic sweeps: ties, wins, problems, and what is never chosen.

use super::*;
use crate::record::Status;

/// Rows of `backend` on `workload`: one per (procs, repeat), ops/s from `ops(procs, repeat)`.
fn rows(backend: &str, role: &str, ops: impl Fn(usize, u32) -> f64) -> Vec<Record> {
    let mut v = Vec::new();
    for procs in [1, 2, 4] {
        for repeat in 0..5 {
            v.push(Record {
                backend: backend.into(),
                role: role.into(),
                workload: "read".into(),
                procs,
                repeat,
                ops_per_sec: ops(procs, repeat),
                ns_per_op: procs as f64 * 1e9 / ops(procs, repeat),
                ..Record::default()
            });
        }
    }
    v
}

/// A machine whose speed changes by 2x between repeats, as these 2-core VMs do, plus a
/// few percent of independent jitter per run.
fn phase(repeat: u32) -> f64 {
    if repeat % 2 == 0 {
        1.0
    } else {
        0.5
    }
}
fn jitter(seed: u64) -> f64 {
    1.0 + 0.03 * (((seed * 2_654_435_761) % 1000) as f64 / 500.0 - 1.0)
}

fn decision(rows: &[Record]) -> Decision {
    let r = report(rows);
    assert_eq!(r.workloads.len(), 1);
    r.workloads[0].clone()
}

#[test]
fn a_clear_winner_is_named_despite_a_machine_that_changes_speed() {
    let mut all = rows("lockfree", "candidate", |p, r| {
        20e6 * phase(r) * jitter(p as u64 * 7 + r as u64)
    });
    all.extend(rows("spinlock", "candidate", |p, r| {
        12e6 * phase(r) * jitter(p as u64 * 13 + r as u64 + 1)
    }));
    let d = decision(&all);
    assert_eq!(d.verdict, Verdict::Winner, "{}", d.message);
    assert_eq!(d.choose.as_deref(), Some("lockfree"));
    assert_eq!(d.runner_up.as_deref(), Some("spinlock"));
    let [lo, hi] = d.interval.unwrap();
    assert!(
        lo > 1.5 && hi < 1.8 && (lo..hi).contains(&d.margin.unwrap()),
        "{d:?}"
    );
}

#[test]
fn a_map_on_a_server_is_never_chosen_and_is_explained_as_the_several_machines_option() {
    // Redis slower than both: it must not even be the runner-up; and faster than both
    // (a fast network, a slow machine): still not chosen, since it is not a rival.
    for redis_ops in [20e3, 50e6] {
        let mut all = rows("lockfree", "candidate", |p, r| {
            20e6 * jitter(p as u64 + r as u64)
        });
        all.extend(rows("lmdb", "candidate", |p, r| {
            2e6 * jitter(p as u64 * 3 + r as u64)
        }));
        all.extend(rows("redis", "remote", |_, _| redis_ops));
        let d = decision(&all);
        assert_eq!(d.choose.as_deref(), Some("lockfree"), "{d:?}");
        assert_eq!(d.runner_up.as_deref(), Some("lmdb"), "{d:?}");
        let text = report(&all).text(&crate::record::summarise(&all));
        assert!(
            text.contains("redis is the option when processes run on several machines")
                && text.contains("read ")
                && text.contains("at 1 / 2 / 4 procs"),
            "{text}"
        );
    }
}

#[test]
fn equal_backends_tie_and_nobody_is_chosen() {
    let mut all = rows("lockfree", "candidate", |p, r| {
        10e6 * phase(r) * jitter(p as u64 + r as u64 * 3)
    });
    all.extend(rows("spinlock", "candidate", |p, r| {
        10e6 * phase(r) * jitter(p as u64 * 5 + r as u64 + 2)
    }));
    let d = decision(&all);
    assert_eq!(d.verdict, Verdict::Tie, "{}", d.message);
    assert_eq!(d.choose, None);
    assert!(d.message.starts_with("tie:"), "{}", d.message);
    // The markdown's "choose" column says so too (it said "no clear winner" beside a
    // verdict of "either will do").
    let md = report(&all).markdown(&crate::record::summarise(&all));
    assert!(md.contains("| tie: either |"), "{md}");
}

#[test]
fn noise_larger_than_the_margin_leaves_it_undecided_with_a_repeat_estimate() {
    // 8% apart, but each run is off by up to +-30% on its own.
    let noisy = |seed: u64| 1.0 + 0.3 * (((seed * 2_654_435_761) % 1000) as f64 / 500.0 - 1.0);
    let mut all = rows("lockfree", "candidate", |p, r| {
        10.8e6 * noisy(p as u64 * 31 + r as u64)
    });
    all.extend(rows("spinlock", "candidate", |p, r| {
        10e6 * noisy(p as u64 * 17 + r as u64 + 5)
    }));
    let d = decision(&all);
    assert_eq!(d.verdict, Verdict::Undecided, "{}", d.message);
    assert_eq!(d.choose, None);
    assert!(
        d.message.contains("no clear winner between"),
        "{}",
        d.message
    );
    assert!(d.repeats_needed.is_none_or(|r| r > 5), "{d:?}");
}

#[test]
fn references_and_the_floor_are_never_chosen_and_a_loser_never_recommended() {
    let mut all = rows("dashmap", "reference", |_, _| 90e6);
    all.extend(rows("null", "floor", |_, _| 200e6));
    all.extend(rows("mutex", "candidate", |_, r| 3e6 * phase(r)));
    all.extend(rows("lockfree", "candidate", |_, r| 15e6 * phase(r)));
    let r = report(&all);
    let d = &r.workloads[0];
    assert_eq!(d.choose.as_deref(), Some("lockfree"), "{}", d.message);
    assert!(r.floor_ns_per_op.unwrap() > 4.0 && r.floor_ns_per_op.unwrap() < 21.0);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["workloads"][0]["choose"], "lockfree");
    assert_eq!(json["workloads"][0]["runner_up"], "mutex");
    assert_eq!(
        json["workloads"][0]["interval"].as_array().unwrap().len(),
        2
    );
}

#[test]
fn a_huge_win_at_one_process_count_is_no_clear_winner() {
    // lockfree is 4x at 1 process and loses by 20% at 2 and 4: neither is the answer for
    // every process count, and the verdict must not pretend one is.
    let mut all = rows("lockfree", "candidate", |p, r| {
        if p == 1 {
            40e6
        } else {
            8e6 * jitter(r as u64 + p as u64)
        }
    });
    all.extend(rows("spinlock", "candidate", |p, r| {
        10e6 * jitter(r as u64 * 3 + p as u64 + 1)
    }));
    let d = decision(&all);
    assert_eq!(d.choose, None, "{}", d.message);
    assert!(d.message.starts_with("no clear winner"), "{}", d.message);
    let leaders: Vec<(usize, &str)> = d
        .per_procs
        .iter()
        .map(|a| (a.procs, a.leader.as_str()))
        .collect();
    assert_eq!(leaders, [(1, "lockfree"), (2, "spinlock"), (4, "spinlock")]);
}

#[test]
fn one_pair_split_by_a_change_of_machine_speed_does_not_change_the_verdict() {
    // 5 repeats x 3 counts, lockfree 1.5x; in one pair the machine halves its speed
    // between the two runs, so that ratio is 0.75.
    let mut all = rows("lockfree", "candidate", |p, r| {
        if (p, r) == (2, 3) {
            7.5e6
        } else {
            15e6
        }
    });
    all.extend(rows("spinlock", "candidate", |_, _| 10e6));
    let d = decision(&all);
    assert_eq!(d.choose.as_deref(), Some("lockfree"), "{}", d.message);
    assert!(
        (d.margin.unwrap() - 1.5).abs() < 1e-9 && d.interval.unwrap()[0] > 1.4,
        "{d:?}"
    );
}

#[test]
fn failed_runs_are_reported_not_compared() {
    let mut all = rows("lockfree", "candidate", |_, _| 10e6);
    let mut bad = rows("spinlock", "candidate", |_, _| 50e6);
    bad.iter_mut().for_each(|r| {
        r.status = Status::Failed;
        r.message = "boom".into();
    });
    all.extend(bad);
    let r = report(&all);
    assert_eq!(r.workloads[0].verdict, Verdict::Alone);
    assert_eq!(r.problems.len(), 15);
}

#[test]
fn memory_per_entry_is_shown_beside_ops_per_sec_when_the_rows_have_it() {
    let with_bytes = |mut rows: Vec<Record>, bytes: f64| {
        rows.iter_mut().for_each(|r| {
            r.bytes_per_entry = Some(bytes + r.repeat as f64); // medians: bytes + 2
            r.key_size = 16;
            r.value_size = crate::value_size::ValueSize::Fixed(64);
        });
        rows
    };
    let mut all = with_bytes(rows("lockfree", "candidate", |_, _| 20e6), 145.0);
    all.extend(with_bytes(rows("lmdb", "candidate", |_, _| 2e6), 124.0));
    all.extend(with_bytes(rows("redis", "remote", |_, _| 30e3), 98.0));
    let r = report(&all);
    let d = &r.workloads[0];
    // ops/s in thousands (a geometric mean of equal numbers is equal to a rounding).
    let figures: Vec<(&str, f64, Option<f64>)> = d
        .candidates
        .iter()
        .map(|c| {
            (
                c.backend.as_str(),
                (c.ops_per_sec / 1e3).round(),
                c.bytes_per_entry,
            )
        })
        .collect();
    assert_eq!(
        figures,
        [("lockfree", 20e3, Some(147.0)), ("lmdb", 2e3, Some(126.0))],
        "best first, redis not a candidate"
    );
    assert_eq!(r.payload_bytes, Some(80.0));
    let summaries = crate::record::summarise(&all);
    let text = r.text(&summaries);
    assert!(
        text.contains("lockfree 20.00 M ops/s, 147 B per entry; lmdb 2.00 M ops/s, 126 B per entry (key + value: 80 B)")
            && text.contains("at 1 / 2 / 4 procs, 100 B per entry"),
        "{text}"
    );
    let md = r.markdown(&summaries);
    assert!(
        md.contains("| read | lockfree | 20.00 M | 147 |")
            && md.contains("| read | lmdb | 2.00 M | 126 |"),
        "{md}"
    );
    // Rows without memory (a CSV of an earlier harness): the verdict alone, as before.
    let old = rows("lockfree", "candidate", |_, _| 20e6);
    let text = report(&old).text(&crate::record::summarise(&old));
    assert!(!text.contains("per entry"), "{text}");
}
