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

/// The arguments of a sweep of `backends` that takes a fraction of a second: one process
/// count, one workload, 0.05 s windows, one repeat, into `out`.
fn tiny_sweep<'a>(backends: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "sweep",
        "--backends",
        backends,
        "--procs",
        "1",
        "--workloads",
        "read",
        "--duration",
        "0.05",
        "--warmup",
        "0",
        "--keys",
        "100",
        "--repeat",
        "1",
        "--out",
        out,
    ]
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
fn kill_every_needs_a_shared_memory_backend() {
    let o = harness(&["run", "--backend", "dashmap", "--kill-every", "10"]);
    assert_eq!(o.status.code(), Some(2));
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
        let v = &v["runs"][0];
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
    let run = &v["runs"][0];
    assert_eq!(run["status"], "violations", "{run}");
    let status = run["message"].as_str().unwrap();
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

#[test]
fn workers_die_with_a_harness_killed_by_sigkill() {
    for _ in 0..3 {
        let mut child = start_long_run("lockfree");
        let pid = child.id();
        wait_for_workers(pid, 2);
        let workers = children(pid);
        // SAFETY: killing our own child process.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        child.wait().unwrap();
        let start = Instant::now();
        while workers.iter().any(|&w| alive(w)) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "workers {workers:?} outlived their harness"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // What SIGKILL leaves cannot be removed by the killed harness; `rm` can.
        let left = leftovers(pid);
        if !left.is_empty() {
            let o = harness(
                &[
                    &["rm"][..],
                    &left.iter().map(String::as_str).collect::<Vec<_>>(),
                ]
                .concat(),
            );
            assert!(o.status.success(), "{}", stderr(&o));
        }
        assert_eq!(leftovers(pid), Vec::<String>::new());
    }
}

#[test]
fn an_interrupt_while_workers_start_leaves_no_worker_behind() {
    // Signals at random points of the start-up, when workers are being spawned one by one.
    for (i, delay_ms) in [5u64, 15, 30, 50, 80, 120, 10, 40, 60, 100]
        .into_iter()
        .enumerate()
    {
        let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
            .args([
                "run",
                "--backend",
                "spinlock",
                "--procs",
                "16",
                "--duration",
                "5",
            ])
            .args(["--warmup", "0", "--keys", "100"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let spawned = children(pid);
        let signal = if i % 2 == 0 {
            libc::SIGINT
        } else {
            libc::SIGTERM
        };
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid as i32, signal) };
        wait_with_timeout(&mut child, Duration::from_secs(10));
        let start = Instant::now();
        while spawned.iter().any(|&w| alive(w)) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "a worker survived an interrupt {delay_ms} ms into start-up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(leftovers(pid), Vec::<String>::new(), "segments left");
    }
}

#[test]
fn ls_lists_maps_with_their_kind_and_rm_removes_them() {
    use shmap::MapBackend;
    let name = format!("shmap-harness-lstest-{}", std::process::id());
    let map = shmap_backends::SpinLockMap::create(&name, shmap::MapParams::default()).unwrap();
    let o = harness(&["ls"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = out
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("{name} not listed: {out}"));
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

/// Whether a Redis server binary is on PATH (`make test` installs one).
fn have_redis() -> bool {
    shmap_backends::redis_map::server::available_for_tests()
}

#[test]
fn the_redis_backend_runs_on_a_private_server_it_starts_and_stops() {
    if !have_redis() {
        return;
    }
    let child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "run",
            "--backend",
            "redis",
            "--procs",
            "2",
            "--workload",
            "mixed",
            "--duration",
            "0.3",
            "--warmup",
            "0",
            "--keys",
            "200",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("\"status\":\"ok\""), "{out}");
    assert!(out.contains("\"role\":\"remote\""), "{out}");
    // The private server (run in /tmp/shmap-redis-PID-N, its working directory: it rewrites
    // its command line) stopped, its directory removed.
    let marker = format!("shmap-redis-{pid}-");
    let running: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|p| p.parse::<u32>().is_ok_and(alive))
        .filter(|p| {
            std::fs::read_link(format!("/proc/{p}/cwd"))
                .is_ok_and(|c| c.to_string_lossy().contains(&marker))
        })
        .collect();
    assert!(running.is_empty(), "left running: {running:?}");
    let dirs = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&marker))
        .count();
    assert_eq!(dirs, 0, "the server's directory is removed");
}

#[test]
fn without_a_server_run_says_why_and_sweep_skips_the_redis_row() {
    // A PATH without redis-server (the harness itself is run by its full path).
    let empty = tempfile::tempdir().unwrap();
    let no_redis = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(args)
            .env("PATH", empty.path())
            .output()
            .unwrap()
    };
    let o = no_redis(&[
        "run",
        "--backend",
        "redis",
        "--duration",
        "0.1",
        "--warmup",
        "0",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no redis-server"), "{}", stderr(&o));
    let out = empty.path().join("sweep");
    let o = no_redis(&tiny_sweep("redis,null", out.to_str().unwrap()));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("skipping the redis backend"),
        "{}",
        stderr(&o)
    );
    let csv = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert!(!csv.contains("redis") && csv.contains("null"), "{csv}");
}

#[test]
fn a_redis_url_nobody_answers_at_is_a_failed_run_that_says_so() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let started = Instant::now();
    let o = harness(&[
        "run",
        "--backend",
        "redis",
        "--redis-url",
        &url,
        "--duration",
        "0.1",
        "--warmup",
        "0",
    ]);
    assert!(!o.status.success());
    let all = format!("{}{}", stderr(&o), String::from_utf8_lossy(&o.stdout));
    assert!(
        all.contains("refused") || all.contains("redis server"),
        "{all}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Processes alive whose working directory names `marker` (a private redis-server runs in
/// `/tmp/shmap-redis-PID-N`; it rewrites its command line, not its cwd).
fn running_in(marker: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|p| p.parse::<u32>().is_ok_and(alive))
        .filter(|p| {
            std::fs::read_link(format!("/proc/{p}/cwd"))
                .is_ok_and(|c| c.to_string_lossy().contains(marker))
        })
        .collect()
}

#[test]
fn an_interrupted_redis_run_leaves_no_server_and_no_map() {
    if !have_redis() {
        return;
    }
    let user = shmap_backends::redis_map::server::LocalServer::start().unwrap();
    for url in [None, Some(user.url())] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
        cmd.args([
            "run",
            "--backend",
            "redis",
            "--procs",
            "2",
            "--duration",
            "5",
        ])
        .args(["--warmup", "0", "--keys", "200"]);
        if let Some(url) = &url {
            cmd.args(["--redis-url", url]);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        std::thread::sleep(Duration::from_millis(800)); // mid-run
                                                        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        wait_with_timeout(&mut child, Duration::from_secs(10));
        let marker = format!("shmap-redis-{pid}-");
        let start = Instant::now();
        while !running_in(&marker).is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the private redis-server survived"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if url.is_some() {
            use shmap_backends::redis_map::redis;
            let mut c = redis::Client::open(user.url())
                .unwrap()
                .get_connection()
                .unwrap();
            let left: Vec<String> = redis::cmd("KEYS").arg("shmap:*").query(&mut c).unwrap();
            assert!(
                left.is_empty(),
                "the run's map was left on the server: {left:?}"
            );
        }
    }
}
