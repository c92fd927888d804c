//! The harness as a user runs it: its commands, their output files and their errors.

mod common;

use std::process::Command;

use common::*;

#[test]
fn unknown_choices_and_impossible_sizes_are_usage_errors_that_list_the_choices() {
    let o = harness(&["run", "--backend", "nosuch"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("lockfree, spinlock, mutex, dashmap, rwlock, lmdb, redis, null"),
        "{}",
        stderr(&o)
    );
    let o = harness(&["run", "--backend", "lockfree", "--workload", "nosuch"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("read-heavy"), "{}", stderr(&o));
    // Range errors (parse-time and those only the whole spec can see) exit 2 with the usage
    // line, as parse errors do.
    for bad in [
        &["--procs", "0"][..],
        &["--procs", "100000"],
        &["--key-size", "4"],
        &["--capacity", "10"],
        &["--read-pct", "101"],
        &["--dist", "zipf:-1"],
        &["--duration", "0"],
        &["--warmup", "-1"],
        &["--repeats", "0"],
        &["--kill-every", "10", "--value-size", "8"],
    ] {
        let o = harness(&[&["run", "--backend", "lockfree"], bad].concat());
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with("error: ")
                && (stderr(&o).contains("Usage") || stderr(&o).contains("--help")),
            "{bad:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn run_json_prints_exactly_one_object_with_the_documented_fields() {
    for backend in [
        "lockfree", "spinlock", "mutex", "dashmap", "rwlock", "lmdb", "null",
    ] {
        let o = harness(&[
            "run",
            "--backend",
            backend,
            "--procs",
            "2",
            "--workload",
            "exchange",
            "--duration",
            "0.1",
            "--warmup",
            "0",
            "--keys",
            "500",
            "--repeats",
            "3",
            "--json",
        ]);
        assert!(o.status.success(), "{backend}: {}", stderr(&o));
        let text = String::from_utf8(o.stdout).unwrap();
        assert_eq!(text.trim().lines().count(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let s = &v["summary"];
        for field in [
            "median_ops_per_sec",
            "min_ops_per_sec",
            "max_ops_per_sec",
            "ci_low_ops_per_sec",
            "ci_high_ops_per_sec",
            "ci_coverage",
            "median_p99_ns",
        ] {
            assert!(
                s[field].as_f64().is_some(),
                "{backend}: no {field} in {text}"
            );
        }
        assert!(
            (s["ci_coverage"].as_f64().unwrap() - 0.75).abs() < 1e-9,
            "3 runs: {s}"
        );
        assert_eq!(s["runs"], 3);
        let runs = v["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 3);
        for (i, r) in runs.iter().enumerate() {
            for field in [
                "backend",
                "workload",
                "procs",
                "ops_per_sec",
                "ns_per_op",
                "p50_ns",
                "p99_ns",
                "duration_s",
                "warmup_s",
                "seed",
                "keys",
                "machine",
                "version",
                "commit",
                "timestamp",
                "message",
            ] {
                assert!(r.get(field).is_some(), "{backend}: no {field} in {r}");
            }
            assert_eq!(r["backend"], backend);
            assert_eq!(r["repeat"], i);
            assert_eq!(r["status"], "ok", "{r}");
            assert!(r["ops_per_sec"].as_f64().unwrap() > 0.0);
            let workers = r["worker_ops_per_sec"].as_array().unwrap();
            assert_eq!(workers.len(), 2, "{r}");
            assert!(workers.iter().all(|w| w.as_f64().unwrap() > 0.0));
        }
    }
}

/// Ours, in /dev/shm and in a file, and LMDB report what their map holds per entry, at
/// least its keys and values; the in-process maps and the floor cannot say, and do not.
#[test]
fn runs_report_bytes_per_entry_where_the_map_can_say() {
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("file:{}", dir.path().display());
    for (backend, extra) in [
        ("lockfree", &[][..]),
        ("lockfree", &["--storage", &storage][..]),
        ("mutex", &[][..]),
        ("lmdb", &[][..]),
    ] {
        let (run, payload) = memory_run(backend, extra);
        assert_bytes_per_entry(backend, &run, payload);
    }
    for backend in ["dashmap", "null"] {
        let (run, _) = memory_run(backend, &[]);
        assert!(run["bytes_per_entry"].is_null(), "{backend}: {run}");
    }
}

#[test]
fn run_csv_prints_the_summary_and_save_runs_feeds_compare() {
    let dir = tempfile::tempdir().unwrap();
    let runs = |file: &str| {
        let path = dir.path().join(file);
        let o = harness(&[
            "run",
            "--backend",
            "lockfree",
            "--procs",
            "1",
            "--workload",
            "read",
            "--duration",
            "0.1",
            "--warmup",
            "0",
            "--keys",
            "500",
            "--repeats",
            "3",
            "--csv",
            "--save-runs",
            path.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = String::from_utf8(o.stdout).unwrap();
        assert_eq!(text.lines().count(), 2, "a header and one row: {text}");
        assert!(text.starts_with("backend,role,workload,procs,runs,ok_runs,median_ops_per_sec"));
        path
    };
    let (a, b) = (runs("a.csv"), runs("b.csv"));
    let o = harness(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("cells measured in both changed"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = harness(&[
        "compare",
        "--json",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert!(v[0]["ratio"].as_f64().unwrap() > 0.0);
}

#[test]
fn plot_recommend_and_compare_refuse_a_csv_that_is_not_the_harnesss() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("runs.csv");
    std::fs::write(&foreign, "name,value\nx,1\n").unwrap();
    let f = foreign.to_str().unwrap();
    for args in [
        vec!["plot", f],
        vec!["recommend", f],
        vec!["recommend", "--json", f],
        vec!["compare", f, f],
    ] {
        let o = harness(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&o).contains("not a harness runs.csv"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, vec!["runs.csv"], "nothing may be written");
}

#[test]
fn sweep_refuses_a_non_empty_out_unless_forced_and_force_clears_only_its_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    std::fs::write(out.join("throughput-old.svg"), "stale").unwrap();
    let args = |force: bool| {
        let mut a = tiny_sweep("null", out.to_str().unwrap());
        if force {
            a.push("--force");
        }
        a
    };
    let o = harness(&args(false));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    let o = harness(&args(true));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        out.join("notes.txt").exists(),
        "a file the sweep did not write was removed"
    );
    assert!(
        !out.join("throughput-old.svg").exists(),
        "an earlier sweep's plot was kept"
    );
    assert!(out.join("runs.csv").exists() && out.join("summary.csv").exists());
}

#[test]
fn sweep_writes_csv_plots_and_a_recommendation_that_plot_and_recommend_redo() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    let o = harness(&[
        "sweep",
        "--backends",
        "lockfree,spinlock,dashmap",
        "--procs",
        "1,2",
        "--workloads",
        "read,exchange",
        "--duration",
        "0.1",
        "--warmup",
        "0",
        "--keys",
        "300",
        "--value-size",
        "8..1024",
        "--repeat",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        1 + 3 * 2 * 2 * 2,
        "a row for every repeat of every cell: {csv}"
    );
    for w in ["read", "exchange"] {
        for kind in ["throughput", "latency", "memory"] {
            let svg = std::fs::read_to_string(out.join(format!("{kind}-{w}.svg"))).unwrap();
            assert!(
                svg.contains("<svg") && svg.contains("lockfree"),
                "{kind}-{w}.svg"
            );
        }
        // Memory is drawn for the maps that can say it: not the in-process reference.
        let svg = std::fs::read_to_string(out.join(format!("memory-{w}.svg"))).unwrap();
        assert!(
            !svg.contains("dashmap") && svg.contains("key + value"),
            "memory-{w}.svg"
        );
    }
    assert!(
        csv.lines().skip(1).all(|l| l.contains(",8..1024,")),
        "the value size's range in every row: {csv}"
    );
    let md = std::fs::read_to_string(out.join("recommendation.md")).unwrap();
    assert!(
        md.contains("| read |") && md.contains("| exchange |"),
        "{md}"
    );
    assert!(
        !md.contains("**dashmap**"),
        "an in-process reference must not be recommended: {md}"
    );

    std::fs::remove_file(out.join("throughput-read.svg")).unwrap();
    let csv_path = out.join("runs.csv");
    assert!(harness(&["plot", csv_path.to_str().unwrap()])
        .status
        .success());
    assert!(out.join("throughput-read.svg").exists());
    let md_path = dir.path().join("again.md");
    let o = harness(&[
        "recommend",
        csv_path.to_str().unwrap(),
        "--out",
        md_path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Recommendation"));
    let o = harness(&["recommend", "--json", csv_path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ws = v["workloads"].as_array().unwrap();
    assert_eq!(ws.len(), 2, "{v}");
    for w in ws {
        for field in ["workload", "choose", "runner_up", "margin", "interval"] {
            assert!(w.get(field).is_some(), "no {field} in {w}");
        }
        assert_ne!(w["choose"], "dashmap");
    }
    assert!(out.join("recommendation.json").exists() && out.join("summary.csv").exists());
    assert!(std::fs::read_to_string(md_path)
        .unwrap()
        .contains("| read |"));
}

#[test]
fn ls_lists_maps_with_their_kind_and_rm_removes_them() {
    use shmap::MapBackend;
    let name = format!("shmap-harness-lstest-{}", std::process::id());
    /// Removes the segment even when an assertion below fails (`rm` is what is tested).
    struct Remove<'a>(&'a str);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(format!("/dev/shm/{}", self.0));
        }
    }
    let _remove = Remove(&name);
    let map = shmap_backends::SpinLockMap::create(&name, shmap::MapParams::default()).unwrap();
    // The line for our map. Another test of this binary that spawns a process at that moment
    // shows this process's mappings in its child until the exec, so a count of 2 is looked
    // at again: a listing that always counted wrong would never show 1.
    let listed = || {
        let o = harness(&["ls"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        out.lines()
            .find(|l| l.starts_with(&name))
            .unwrap_or_else(|| panic!("{name} not listed: {out}"))
            .to_owned()
    };
    let mut line = listed();
    for _ in 0..20 {
        if line.split_whitespace().nth(4) == Some("1") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        line = listed();
    }
    assert!(
        line.contains("spinlock (layout v") && line.contains(" 600 "),
        "{line}"
    );
    let attached: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(attached[4], "1", "this test process maps it: {line}");
    let o = harness(&["rm", &name]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!std::path::Path::new(&format!("/dev/shm/{name}")).exists());
    let o = harness(&["rm", &name]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    drop(map);
}

#[test]
fn a_dev_shm_too_small_for_the_run_is_an_error_not_sigbus() {
    let ok = Command::new("unshare").args(["-m", "true"]).output();
    if !ok.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: cannot make a mount namespace here (needs root and unshare)");
        return;
    }
    let script = "mount -t tmpfs -o size=8m tmpfs /dev/shm && exec \"$@\"";
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(env!("CARGO_BIN_EXE_harness"))
        .args([
            "run",
            "--backend",
            "lockfree",
            "--keys",
            "200000",
            "--duration",
            "0.1",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        stderr(&o).contains("not enough room in /dev/shm"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn storage_file_runs_maps_in_files_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("file:{}", dir.path().display());
    for backend in ["lockfree", "lmdb"] {
        let o = harness(&[
            "run",
            "--backend",
            backend,
            "--procs",
            "2",
            "--workload",
            "exchange",
            "--duration",
            "0.1",
            "--warmup",
            "0",
            "--keys",
            "300",
            "--storage",
            &storage,
            "--json",
        ]);
        assert!(o.status.success(), "{backend}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["runs"][0]["storage"], storage, "{v}");
        assert_eq!(v["runs"][0]["status"], "ok", "{v}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{backend} left {left:?}");
    }
    let o = harness(&[
        "run",
        "--backend",
        "lockfree",
        "--storage",
        "file:/nonexistent-dir",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = harness(&["run", "--backend", "lockfree", "--storage", "disk"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
