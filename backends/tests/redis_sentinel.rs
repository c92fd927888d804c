//! Redis Sentinel and `replicas=` (`redis_map/sentinel.rs`): handles opened with a
//! `redis+sentinel://` URL follow a failover by themselves, and writes acknowledged with
//! `replicas: 1` survive it; a write that no replica took within the timeout is an error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use shmap::{Error, Inserted, MapOps, MapParams};
use shmap_backends::{RedisMap, RedisOptions};
use shmap_testkit::redis_sentinel::{wait_replicas_online, LocalSentinels};
use shmap_testkit::redis_server::LocalServer;

fn opts(replicas: u32) -> RedisOptions {
    RedisOptions {
        timeout: Duration::from_secs(10),
        replicas,
        ..RedisOptions::default()
    }
}

/// What one writer saw: the keys it was told were written, the ones whose write raised
/// (made on the primary or not), and the longest time between two acknowledged writes.
#[derive(Debug, Default)]
struct Seen {
    acked: Vec<String>,
    errors: Vec<String>,
    longest_gap: Duration,
}

fn writer(url: String, prefix: &'static str, replicas: u32, stop: Arc<AtomicBool>) -> Seen {
    let m = RedisMap::attach(&url, "failover", opts(replicas)).unwrap();
    let mut seen = Seen::default();
    let mut last = Instant::now();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("{prefix}{i}");
        i += 1;
        match m.insert(key.as_bytes(), b"v") {
            Ok(Inserted::New) => {
                seen.longest_gap = seen.longest_gap.max(last.elapsed());
                last = Instant::now();
                seen.acked.push(key);
            }
            Ok(Inserted::Replaced) => panic!("{key} was inserted twice"),
            Err(e) => seen.errors.push(format!("{key}: {e}")),
        }
        thread::sleep(Duration::from_millis(2));
    }
    seen
}

#[test]
fn handles_follow_a_failover_and_replicated_writes_survive_it() {
    if !shmap_testkit::redis_server::available_for_tests() {
        return;
    }
    let s = LocalSentinels::start(2).expect("start a primary, replicas and sentinels");
    let url = s.url();
    let first = s.primary_port().unwrap();
    assert_eq!(first, s.primary.port());
    let m = RedisMap::create(&url, "failover", MapParams::with_capacity(1 << 20), opts(0)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = [("r", 1), ("n", 0)]
        .into_iter()
        .map(|(prefix, replicas)| {
            let (url, stop) = (url.clone(), stop.clone());
            thread::spawn(move || writer(url, prefix, replicas, stop))
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    // The primary dies for good (SIGKILL); the sentinels promote a replica.
    let killed = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    let killed_ok = unsafe { libc::kill(s.primary.pid() as i32, libc::SIGKILL) };
    assert_eq!(killed_ok, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.primary_port().unwrap() == first {
        assert!(Instant::now() < deadline, "no failover in 30 s");
        thread::sleep(Duration::from_millis(50));
    }
    let failover = killed.elapsed();
    // Writes go on on the new primary for a while.
    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Seen> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let (replicated, plain) = (&seen[0], &seen[1]);
    // The writer without replicas never fails. The one with replicas=1 may be told that a
    // write was not replicated: after the failover one replica is left, and until the
    // sentinels have pointed it at the new primary and it has synced (seconds, more on a
    // loaded machine), no replica acknowledges. That is the option doing its job; any other
    // error is not.
    let first: Vec<&String> = plain.errors.iter().take(3).collect();
    assert!(
        plain.errors.is_empty(),
        "{} errors: {first:?}",
        plain.errors.len()
    );
    for e in &replicated.errors {
        assert!(e.contains("0 of the 1 replicas"), "{e}");
    }
    for w in &seen {
        assert!(w.acked.len() > 20, "{} writes only", w.acked.len());
    }
    // Within the handle's timeout (10 s): the failover itself, and the retries, never more.
    assert!(
        plain.longest_gap < Duration::from_secs(10),
        "{:?}",
        plain.longest_gap
    );
    // Every write acknowledged with replicas=1 is on the new primary.
    let lost_replicated: Vec<&String> = replicated
        .acked
        .iter()
        .filter(|k| m.get(k.as_bytes()).unwrap().is_none())
        .collect();
    assert!(lost_replicated.is_empty(), "lost {lost_replicated:?}");
    let lost_plain = plain
        .acked
        .iter()
        .filter(|k| m.get(k.as_bytes()).unwrap().is_none())
        .count();
    eprintln!(
        "failover took {failover:?}; the longest wait for a write: {:?} (replicas=1), {:?} \
         (replicas=0); acknowledged writes lost: 0 of {} with replicas=1, {lost_plain} of {} \
         without; writes reported not replicated: {}",
        replicated.longest_gap,
        plain.longest_gap,
        replicated.acked.len(),
        plain.acked.len(),
        replicated.errors.len()
    );
}

/// A write that no replica takes within the timeout is an error that says so; without
/// `replicas` it is acknowledged at once; with the replica back, it is acknowledged.
#[test]
fn a_write_no_replica_took_is_an_error() {
    if !shmap_testkit::redis_server::available_for_tests() {
        return;
    }
    let primary = LocalServer::start().unwrap();
    let port = primary.port().to_string();
    let replica = LocalServer::start_with(&["--replicaof", "127.0.0.1", &port]).unwrap();
    wait_replicas_online(&primary, 1).unwrap();
    let quick = |replicas| RedisOptions {
        timeout: Duration::from_millis(800),
        ..opts(replicas)
    };
    let m = RedisMap::create(&primary.url(), "wait", MapParams::default(), quick(1)).unwrap();
    m.insert(b"k", b"1").unwrap();
    let signal = |sig| {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(replica.pid() as i32, sig) }, 0);
    };
    signal(libc::SIGSTOP);
    let e = m.insert(b"k", b"2").unwrap_err();
    assert!(matches!(e, Error::Connection { .. }), "{e}");
    assert!(e.to_string().contains("0 of the 1 replicas"), "{e}");
    let plain = RedisMap::attach(&primary.url(), "wait", quick(0)).unwrap();
    plain.insert(b"k", b"3").unwrap();
    signal(libc::SIGCONT);
    m.insert(b"k", b"4").unwrap();
    assert_eq!(plain.get(b"k").unwrap().as_deref(), Some(&b"4"[..]));
    // Not on a cluster, and a bad sentinel URL says what is wrong.
    let e = RedisMap::attach("redis+sentinel://127.0.0.1:1/", "wait", quick(0)).unwrap_err();
    assert!(matches!(e, Error::InvalidParameter { .. }), "{e}");
}
