//! The harness as a user runs it: real worker processes, real segments, real signals.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn harness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .output()
        .expect("run harness")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Segments and LMDB directories a harness process `pid` created and left behind.
fn leftovers(pid: u32) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&format!("shmap-harness-{pid}-")))
        .collect()
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')?
                .1
                .split_whitespace()
                .next()
                .map(|st| st != "Z" && st != "X")
        })
        .unwrap_or(false)
}

/// Direct children of `pid`, from /proc.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    // Field 4 is the parent pid; field 2 (the name) may contain spaces, so split after ')'.
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                })
                == Some(pid)
        })
        .collect()
}

#[test]
fn unknown_choices_and_impossible_sizes_are_errors_that_list_the_choices() {
    let o = harness(&["run", "--backend", "nosuch"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("lockfree, spinlock, mutex, dashmap, rwlock, lmdb"),
        "{}",
        stderr(&o)
    );
    let o = harness(&["run", "--backend", "lockfree", "--workload", "nosuch"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("read-heavy"), "{}", stderr(&o));
    for bad in [
        &["--procs", "0"][..],
        &["--procs", "100000"],
        &["--key-size", "4"],
        &["--capacity", "10"],
        &["--read-pct", "101"],
        &["--dist", "zipf:-1"],
        &["--duration", "0"],
        &["--kill-every", "10", "--value-size", "8"],
    ] {
        let o = harness(&[&["run", "--backend", "lockfree"], bad].concat());
        assert!(!o.status.success(), "{bad:?} was accepted");
        assert!(stderr(&o).contains("error"), "{bad:?}: {}", stderr(&o));
    }
}

#[test]
fn kill_every_needs_a_shared_memory_backend() {
    let o = harness(&["run", "--backend", "dashmap", "--kill-every", "10"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("shared-memory backend"),
        "{}",
        stderr(&o)
    );
}

fn kill_run(backend: &str) -> (Output, serde_json::Value) {
    let o = harness(&[
        "run",
        "--backend",
        backend,
        "--procs",
        "3",
        "--workload",
        "exchange",
        "--duration",
        "1.5",
        "--warmup",
        "0",
        "--keys",
        "500",
        "--kill-every",
        "15",
        "--json",
    ]);
    let v = serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    (o, v)
}

#[test]
fn kill_every_kills_and_replaces_workers_and_the_map_stays_whole() {
    for backend in ["lockfree", "spinlock"] {
        let (o, v) = kill_run(backend);
        assert!(o.status.success(), "{backend}: {v} {}", stderr(&o));
        assert_eq!(v["status"], "ok", "{backend}: {v}");
        assert!(v["kills"].as_u64().unwrap() >= 20, "{backend}: {v}");
        assert_eq!(v["violations"], 0, "{backend}: {v}");
        assert!(v["ops_per_sec"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn kill_every_reports_the_mutex_hang_and_cleans_up() {
    let started = Instant::now();
    let (o, v) = kill_run("mutex");
    assert!(
        !o.status.success(),
        "a dead mutex holder must fail the run: {v}"
    );
    let status = v["status"].as_str().unwrap();
    assert!(status.contains("table mutex"), "{status}");
    assert!(
        status.contains("map check after the kills failed"),
        "{status}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the harness did not hang"
    );
}

#[test]
fn run_json_prints_exactly_one_object_with_the_documented_fields() {
    for backend in ["lockfree", "spinlock", "mutex", "dashmap", "rwlock", "lmdb"] {
        let o = harness(&[
            "run",
            "--backend",
            backend,
            "--procs",
            "2",
            "--workload",
            "exchange",
            "--duration",
            "0.2",
            "--warmup",
            "0",
            "--keys",
            "500",
            "--json",
        ]);
        assert!(o.status.success(), "{backend}: {}", stderr(&o));
        let text = String::from_utf8(o.stdout).unwrap();
        assert_eq!(text.trim().lines().count(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for field in [
            "backend",
            "workload",
            "procs",
            "ops_per_sec",
            "p50_ns",
            "p99_ns",
            "p999_ns",
            "duration_s",
            "machine",
        ] {
            assert!(v.get(field).is_some(), "{backend}: no {field} in {text}");
        }
        assert_eq!(v["backend"], backend);
        assert_eq!(v["procs"], 2);
        assert_eq!(v["status"], "ok", "{text}");
        assert!(v["ops_per_sec"].as_f64().unwrap() > 0.0);
        assert_eq!(
            v["per_proc_ops_per_sec"]
                .as_str()
                .unwrap()
                .split(';')
                .count(),
            2
        );
    }
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
        for kind in ["throughput", "latency"] {
            let svg = std::fs::read_to_string(out.join(format!("{kind}-{w}.svg"))).unwrap();
            assert!(
                svg.contains("<svg") && svg.contains("lockfree"),
                "{kind}-{w}.svg"
            );
        }
    }
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
    assert!(String::from_utf8_lossy(&o.stdout).contains("choose"));
    assert!(std::fs::read_to_string(md_path)
        .unwrap()
        .contains("| read |"));
}

fn wait_with_timeout(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            start.elapsed() < limit,
            "harness did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start_long_run(backend: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "run",
            "--backend",
            backend,
            "--procs",
            "2",
            "--duration",
            "20",
            "--warmup",
            "0",
            "--keys",
            "1000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for_workers(pid: u32, n: usize) {
    let start = Instant::now();
    while children(pid).len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "workers never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300)); // let them attach and start
}

#[test]
fn ctrl_c_or_sigterm_stops_workers_and_removes_every_segment() {
    for (backend, signal) in [
        ("lockfree", libc::SIGINT),
        ("lmdb", libc::SIGINT),
        ("spinlock", libc::SIGTERM),
    ] {
        let mut child = start_long_run(backend);
        let pid = child.id();
        wait_for_workers(pid, 2);
        let workers = children(pid);
        assert!(
            !leftovers(pid).is_empty(),
            "the run should have segments while running"
        );
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid as i32, signal) };
        let status = wait_with_timeout(&mut child, Duration::from_secs(10));
        assert_eq!(status.code(), Some(130), "{backend}");
        assert_eq!(
            leftovers(pid),
            Vec::<String>::new(),
            "{backend}: segments left behind"
        );
        std::thread::sleep(Duration::from_millis(200));
        for w in workers {
            assert!(!alive(w), "{backend}: worker {w} survived the interrupt");
        }
    }
}

#[test]
fn a_worker_killed_mid_run_fails_the_run_cleanly() {
    let mut child = start_long_run("lockfree");
    let pid = child.id();
    wait_for_workers(pid, 2);
    // SAFETY: killing a worker process the harness spawned.
    unsafe { libc::kill(children(pid)[0] as i32, libc::SIGKILL) };
    let status = wait_with_timeout(&mut child, Duration::from_secs(10));
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("worker") && err.contains("signal: 9"), "{err}");
    assert_eq!(leftovers(pid), Vec::<String>::new(), "segments left behind");
    assert!(children(pid).is_empty(), "the other worker was not stopped");
}
