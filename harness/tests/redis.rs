//! The harness's redis backend: a private server it starts and stops, and what a run says
//! without one.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Whether a Redis server binary is on PATH (`make test` installs one).
fn have_redis() -> bool {
    shmap_testkit::redis_server::available_for_tests()
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

/// The map on the server reports its bytes per entry (MEMORY USAGE), as ours and LMDB do.
#[test]
fn a_redis_run_reports_bytes_per_entry() {
    if !have_redis() {
        return;
    }
    let (run, payload) = memory_run("redis", &[]);
    assert_bytes_per_entry("redis", &run, payload);
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
    let user = shmap_testkit::redis_server::LocalServer::start().unwrap();
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
        wait_until(
            Duration::from_secs(5),
            "the private redis-server survived",
            || running_in(&marker).is_empty(),
        );
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

#[test]
fn a_rediss_url_with_its_ca_in_the_query_runs_over_tls() {
    use shmap_testkit::redis_server::LocalServer;
    use shmap_testkit::tls_certs::{self, TestCerts};
    if !have_redis() || !tls_certs::available_for_tests() {
        return;
    }
    let certs = TestCerts::generate().unwrap();
    let server = LocalServer::start_tls(&certs, &[]).unwrap();
    // The TLS options ride in the URL's query, as redis-py's from_url takes them, so the
    // workers and the clean-up get them with the URL.
    let url = format!("{}?ssl_ca_certs={}", server.url(), certs.ca().display());
    let run = |url: &str| {
        harness(&[
            "run",
            "--backend",
            "redis",
            "--redis-url",
            url,
            "--procs",
            "2",
            "--duration",
            "0.2",
            "--warmup",
            "0",
            "--keys",
            "100",
            "--json",
        ])
    };
    let o = run(&url);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("\"status\":\"ok\""), "{out}");
    let mut admin = server.client().unwrap().get_connection().unwrap();
    use shmap_backends::redis_map::redis;
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut admin).unwrap();
    assert!(keys.is_empty(), "the run's map is removed: {keys:?}");
    // Without the CA the server is not trusted: the run fails and says why.
    let o = run(&server.url());
    assert!(!o.status.success());
    let all = format!("{}{}", stderr(&o), String::from_utf8_lossy(&o.stdout));
    assert!(all.contains("certificate verification failed"), "{all}");
}
