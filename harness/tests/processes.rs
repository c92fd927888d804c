//! The harness's worker processes under signals: killed by `--kill-every`, by a user, or
//! with the harness itself; every worker goes and every segment is removed.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

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
        wait_until(
            Duration::from_secs(5),
            &format!("workers {workers:?} outlived their harness"),
            || !workers.iter().any(|&w| alive(w)),
        );
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
        wait_until(
            Duration::from_secs(5),
            &format!("a worker survived an interrupt {delay_ms} ms into start-up"),
            || !spawned.iter().any(|&w| alive(w)),
        );
        assert_eq!(leftovers(pid), Vec::<String>::new(), "segments left");
    }
}
