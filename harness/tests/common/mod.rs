//! Helpers the harness's process-level tests share: running it, and looking at what it left
//! in /dev/shm and /proc.
#![allow(dead_code)] // each test binary uses some of them

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn harness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .output()
        .expect("run harness")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Segments and LMDB directories a harness process `pid` created and left behind.
pub fn leftovers(pid: u32) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&format!("shmap-harness-{pid}-")))
        .collect()
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
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
pub fn tiny_sweep<'a>(backends: &'a str, out: &'a str) -> Vec<&'a str> {
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
pub fn children(pid: u32) -> Vec<u32> {
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

pub fn wait_with_timeout(
    child: &mut std::process::Child,
    limit: Duration,
) -> std::process::ExitStatus {
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

pub fn start_long_run(backend: &str) -> std::process::Child {
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

/// Polls `done` every 20 ms until it holds; fails the test with `what` once `limit` has passed.
pub fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn wait_for_workers(pid: u32, n: usize) {
    wait_until(Duration::from_secs(20), "workers never started", || {
        children(pid).len() >= n
    });
    std::thread::sleep(Duration::from_millis(300)); // let them attach and start
}

/// One `run --json` of `backend` over 2,000 keys with values of 8..4096 bytes (log-uniform),
/// and `extra` arguments: its single run's record, and the key and value bytes its map holds
/// (16-byte keys, values at the distribution's mean).
pub fn memory_run(backend: &str, extra: &[&str]) -> (serde_json::Value, f64) {
    let args = [
        &[
            "run",
            "--backend",
            backend,
            "--procs",
            "1",
            "--workload",
            "read",
            "--duration",
            "0.1",
            "--warmup",
            "0",
            "--keys",
            "2000",
            "--value-size",
            "8..4096",
            "--json",
        ][..],
        extra,
    ]
    .concat();
    let o = harness(&args);
    assert!(o.status.success(), "{backend}: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // The mean of lengths log-uniform over [8, 4097), floored.
    let mean = (4097.0 - 8.0) / (4097.0f64 / 8.0).ln() - 0.5;
    (v["runs"][0].clone(), 16.0 + mean)
}

/// Asserts that `run` says its map holds at least the key and value bytes `payload` per
/// entry, and not beyond what any store's overhead explains.
pub fn assert_bytes_per_entry(backend: &str, run: &serde_json::Value, payload: f64) {
    assert_eq!(run["value_size"], "8..4096", "{backend}: {run}");
    let bytes = run["bytes_per_entry"].as_f64();
    assert!(
        bytes.is_some_and(|b| b >= 0.9 * payload && b <= 3.0 * payload + 256.0),
        "{backend}: {bytes:?} bytes per entry for {payload:.0} of key and value: {run}"
    );
}
