//! The Redis map against real servers: the operations suite (`common/ops.rs`) on a private
//! `redis-server` per test, the same suite on a three-node Redis Cluster, and what a server
//! can do to a client: not be there, die mid-run, stop answering, hold a key that is not ours.
//!
//! Without `redis-server` (or `valkey-server`) on `PATH` every test says so and passes; `make
//! test` installs it first, so CI runs them.

mod common;

use std::cell::Cell;
use std::time::{Duration, Instant};

use common::ops::Maker;
use shmap::{Error, MapOps, MapParams};
use shmap_backends::{RedisMap, RedisOptions};
use shmap_testkit::redis_server::{LocalCluster, LocalServer};

/// Makes maps on one server (or cluster) that lives as long as the maker.
struct RedisMaker {
    url: String,
    _server: Box<dyn std::any::Any>,
    next: Cell<usize>,
}

impl Maker for RedisMaker {
    type Map = RedisMap;

    fn create_named(&self, name: &str, p: MapParams) -> shmap::Result<RedisMap> {
        RedisMap::create(&self.url, name, p, RedisOptions::default())
    }

    fn attach(&self, name: &str) -> shmap::Result<RedisMap> {
        RedisMap::attach(&self.url, name, RedisOptions::default())
    }

    fn unused_name(&self, tag: &str) -> String {
        self.next.set(self.next.get() + 1);
        format!("{tag}-{}", self.next.get())
    }
}

/// A private server, or `None` (said on stderr) when none is installed.
fn server() -> Option<LocalServer> {
    if !shmap_testkit::redis_server::available_for_tests() {
        return None;
    }
    Some(LocalServer::start().expect("start redis-server"))
}

fn maker() -> Option<RedisMaker> {
    let server = server()?;
    Some(RedisMaker {
        url: server.url(),
        _server: Box::new(server),
        next: Cell::new(0),
    })
}

mod single {
    use super::*;
    crate::ops_suite!(match maker() {
        Some(m) => m,
        None => return,
    });
}

#[test]
fn the_operations_suite_passes_on_a_three_node_cluster() {
    if server().is_none() {
        return;
    }
    let cluster = LocalCluster::start(3).expect("start a 3-node cluster");
    let mk = RedisMaker {
        url: cluster.url(),
        _server: Box::new(()),
        next: Cell::new(0),
    };
    assert!(mk.create("probe", MapParams::default()).is_cluster());
    use common::ops::*;
    insert_get_replace_remove(&mk);
    len_tracks_inserts_and_removes(&mk);
    full_table_is_an_error_and_changes_nothing(&mk);
    attach_sees_data_and_reads_params_back(&mk);
    create_existing_name_is_an_error(&mk);
    attach_missing_name_is_an_error(&mk);
    entries_snapshot_matches(&mk);
    handles_are_shared_by_threads_with_exact_counts(&mk);
    atomic_operations_do_what_they_say(&mk);
    // Names that hash to every node: each map's two keys share one slot wherever it is.
    for i in 0..30 {
        let m = mk.create(&format!("spread-{i}"), MapParams::with_capacity(4));
        m.insert(b"k", b"v").unwrap();
        m.insert_many(&[
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"2".to_vec()),
        ])
        .unwrap();
        assert_eq!(m.len().unwrap(), 3);
        m.unlink().unwrap();
    }
    drop(cluster);
}

fn opts(ms: u64) -> RedisOptions {
    RedisOptions {
        timeout: Duration::from_millis(ms),
        ..RedisOptions::default()
    }
}

#[test]
fn a_missing_server_is_a_connection_error_at_once() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let e = RedisMap::attach(&format!("redis://127.0.0.1:{port}/0"), "m", opts(500)).unwrap_err();
    assert!(matches!(e, Error::Connection { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_server_that_exits_at_start_is_reported_at_once() {
    if !shmap_testkit::redis_server::available_for_tests() {
        return;
    }
    // redis-server refuses an unknown directive and exits: each of the five tries must see
    // that at once, not wait out the 20 s start timeout (100 s in all).
    let started = Instant::now();
    let e = LocalServer::start_with(&["--no-such-directive", "1"]).unwrap_err();
    assert!(e.to_string().contains("exited"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn bad_urls_names_and_params_are_errors() {
    for url in ["http://localhost", "redis://", "not a url"] {
        let e = RedisMap::attach(url, "m", opts(500)).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidParameter { what: "url", .. } | Error::Connection { .. }
            ),
            "{url}: {e}"
        );
    }
    let Some(s) = server() else { return };
    for bad in ["", "a{b", "c}d", "nl\n", &"x".repeat(201)] {
        let e = RedisMap::create(&s.url(), bad, MapParams::default(), opts(2000)).unwrap_err();
        assert!(matches!(e, Error::InvalidName { .. }), "{bad:?}: {e}");
    }
    let e = RedisMap::create(&s.url(), "p", MapParams::with_capacity(0), opts(2000)).unwrap_err();
    assert!(matches!(e, Error::InvalidParameter { .. }), "{e}");
}

/// Each call retries until its timeout has passed, then reports the connection, whatever it
/// was (a read, a write, a write run once per request).
#[test]
fn a_server_killed_mid_run_is_a_connection_error_after_the_timeout_not_a_hang() {
    let Some(s) = server() else { return };
    let m = RedisMap::create(&s.url(), "dies", MapParams::default(), opts(600)).unwrap();
    m.insert(b"k", b"v").unwrap();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(s.pid() as i32, libc::SIGKILL) }, 0);
    std::thread::sleep(Duration::from_millis(100));
    for call in 0..3 {
        let started = Instant::now();
        let e = match call {
            0 => m.get(b"k").unwrap_err(),
            1 => m.insert(b"k", b"w").unwrap_err(),
            _ => m.compare_exchange(b"k", Some(b"v"), None).unwrap_err(),
        };
        let waited = started.elapsed();
        assert!(matches!(e, Error::Connection { .. }), "{e}");
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_millis(1500),
            "call {call}: retried for {waited:?}, with a 600 ms timeout"
        );
    }
}

#[test]
fn a_stopped_server_times_out_and_the_handle_recovers_when_it_resumes() {
    let Some(s) = server() else { return };
    let m = RedisMap::create(&s.url(), "stops", MapParams::default(), opts(300)).unwrap();
    m.insert(b"k", b"v").unwrap();
    let signal = |sig| {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(s.pid() as i32, sig) }, 0);
    };
    signal(libc::SIGSTOP);
    let started = Instant::now();
    let e = m.get(b"k").unwrap_err();
    let waited = started.elapsed();
    signal(libc::SIGCONT);
    assert!(matches!(e, Error::Connection { .. }), "{e}");
    assert!(e.to_string().contains("no answer within"), "{e}");
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    // The timed-out connection was dropped, not reused: its late reply must not answer the
    // next command.
    m.insert(b"other", b"x").unwrap();
    assert_eq!(m.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(m.get(b"other").unwrap().as_deref(), Some(&b"x"[..]));
}

fn raw(url: &str) -> redis::Connection {
    redis::Client::open(url).unwrap().get_connection().unwrap()
}

#[test]
fn keys_that_are_not_our_map_are_refused() {
    let Some(s) = server() else { return };
    let mut c = raw(&s.url());
    // A string where the meta hash would be; a data hash without meta; a foreign magic.
    redis::cmd("SET")
        .arg("shmap:{str}:meta")
        .arg("x")
        .query::<()>(&mut c)
        .unwrap();
    redis::cmd("HSET")
        .arg("shmap:{data}")
        .arg("f")
        .arg("v")
        .query::<()>(&mut c)
        .unwrap();
    redis::cmd("HSET")
        .arg("shmap:{magic}:meta")
        .arg("magic")
        .arg("other")
        .query::<()>(&mut c)
        .unwrap();
    for name in ["str", "magic"] {
        let e = RedisMap::attach(&s.url(), name, opts(2000)).unwrap_err();
        assert!(matches!(e, Error::NotOurs { .. }), "{name}: {e}");
    }
    let e = RedisMap::create(&s.url(), "data", MapParams::default(), opts(2000)).unwrap_err();
    assert!(matches!(e, Error::NotOurs { .. }), "{e}");
    let v: String = redis::cmd("HGET")
        .arg("shmap:{data}")
        .arg("f")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, "v", "the foreign key is untouched");
    // Another layout version, and a corrupt capacity.
    let m = RedisMap::create(&s.url(), "ver", MapParams::default(), opts(2000)).unwrap();
    redis::cmd("HSET")
        .arg("shmap:{ver}:meta")
        .arg("version")
        .arg("99")
        .query::<()>(&mut c)
        .unwrap();
    let e = RedisMap::attach(&s.url(), "ver", opts(2000)).unwrap_err();
    assert!(
        matches!(e, Error::IncompatibleVersion { found: 99, .. }),
        "{e}"
    );
    redis::cmd("HSET")
        .arg("shmap:{ver}:meta")
        .arg("version")
        .arg("1")
        .arg("capacity")
        .arg("-3")
        .query::<()>(&mut c)
        .unwrap();
    let e = RedisMap::attach(&s.url(), "ver", opts(2000)).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    drop(m);
}

#[test]
fn unlink_removes_the_map_for_every_handle() {
    let Some(s) = server() else { return };
    let a = RedisMap::create(&s.url(), "gone", MapParams::default(), opts(2000)).unwrap();
    let b = RedisMap::attach(&s.url(), "gone", opts(2000)).unwrap();
    a.insert(b"k", b"v").unwrap();
    a.unlink().unwrap();
    assert!(matches!(a.unlink(), Err(Error::NotFound(_))));
    assert!(matches!(
        RedisMap::attach(&s.url(), "gone", opts(2000)),
        Err(Error::NotFound(_))
    ));
    assert_eq!(b.get(b"k").unwrap(), None, "reads find nothing");
    for e in [
        b.insert(b"k", b"v").unwrap_err(),
        b.get_or_insert(b"k", b"v").unwrap_err(),
        b.compare_exchange(b"k", None, Some(b"v")).unwrap_err(),
        b.insert_many(&[(b"k".to_vec(), b"v".to_vec())])
            .unwrap_err(),
    ] {
        assert!(matches!(e, Error::NotFound(_)), "{e}");
    }
    let mut c = raw(&s.url());
    let left: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    // Nothing: not the request records of the writes before, nor anything of those after.
    assert!(left.is_empty(), "a write after unlink left {left:?}");
}

/// A hash grows by itself: the limit is `max_capacity`, as for a shared-memory table that
/// grows (the harness's rapid-grow asks for capacity 1/16 of its keys, max_capacity unbounded),
/// and the creator reports the shape every handle that attaches reads back.
#[test]
fn the_limit_is_max_capacity() {
    let Some(s) = server() else { return };
    let asked = MapParams {
        capacity: 2,
        max_key_size: 8,
        max_value_size: 8,
        max_capacity: 6,
    };
    let m = RedisMap::create(&s.url(), "grows", asked, opts(2000)).unwrap();
    for k in 0..6u8 {
        m.insert(&[k], b"v").unwrap();
    }
    assert!(matches!(
        m.insert(&[6], b"v"),
        Err(Error::TableFull { capacity: 6 })
    ));
    let shape = MapParams {
        capacity: 6,
        ..asked
    };
    assert_eq!(m.params(), shape);
    let other = RedisMap::attach(&s.url(), "grows", opts(2000)).unwrap();
    assert_eq!(other.params(), shape);
}

#[test]
fn insert_many_is_one_step_all_or_nothing() {
    let Some(s) = server() else { return };
    let m = RedisMap::create(
        &s.url(),
        "many",
        MapParams {
            capacity: 4,
            max_key_size: 8,
            max_value_size: 8,
            max_capacity: 4,
        },
        opts(2000),
    )
    .unwrap();
    let pairs = |ks: &[&str]| -> Vec<(Vec<u8>, Vec<u8>)> {
        ks.iter()
            .map(|k| (k.as_bytes().to_vec(), b"v".to_vec()))
            .collect()
    };
    assert_eq!(
        m.insert_many(&pairs(&["a", "b", "a"])).unwrap(),
        2,
        "a key twice counts once"
    );
    // Three new keys do not fit in the two buckets left: nothing is written.
    assert!(matches!(
        m.insert_many(&pairs(&["c", "d", "e"])),
        Err(Error::TableFull { capacity: 4 })
    ));
    // Nor when one value is too large.
    let mut big = pairs(&["c"]);
    big.push((b"d".to_vec(), vec![0; 9]));
    assert!(matches!(
        m.insert_many(&big),
        Err(Error::ValueTooLarge { .. })
    ));
    assert_eq!(m.len().unwrap(), 2);
    assert_eq!(m.insert_many(&pairs(&["a", "c", "d"])).unwrap(), 2);
    assert_eq!(m.len().unwrap(), 4);
    // pop_any takes each entry once.
    let mut popped = Vec::new();
    while let Some((k, v)) = m.pop_any().unwrap() {
        assert_eq!(v, b"v");
        popped.push(k);
    }
    popped.sort();
    assert_eq!(popped, [b"a", b"b", b"c", b"d"].map(|k| k.to_vec()));
    m.insert(b"x", b"y").unwrap();
    m.clear().unwrap();
    assert_eq!(m.len().unwrap(), 0);
    m.insert(b"x", b"y").unwrap(); // the map itself survives clear
}

/// How many times the servers at `urls` ran `cmd` since their last `CONFIG RESETSTAT`.
fn calls(urls: &[String], cmd: &str) -> u64 {
    urls.iter()
        .map(|url| {
            let stats: String = redis::cmd("INFO")
                .arg("commandstats")
                .query(&mut raw(url))
                .unwrap();
            stats
                .lines()
                .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
                .and_then(|rest| rest.split(',').next()?.parse().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// A scan of a big map must not hold the server (which runs one command at a time) for the
/// whole map: it is `HSCAN` in chunks, never one `HGETALL`, on a single server and on the
/// cluster node that owns the map's slot; every key is listed once, also while other keys
/// come and go.
fn scan_in_chunks(url: &str, nodes: &[String]) {
    const N: usize = 5_000;
    let m = RedisMap::create(url, "big", MapParams::with_capacity(4 * N), opts(5000)).unwrap();
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..N)
        .map(|i| (format!("k{i}").into_bytes(), format!("v{i}").into_bytes()))
        .collect();
    m.insert_many(&pairs).unwrap();
    for node in nodes {
        redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query::<()>(&mut raw(node))
            .unwrap();
    }
    let mut got = m.entries().unwrap();
    got.sort();
    let mut want = pairs.clone();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        calls(nodes, "hgetall"),
        0,
        "one HGETALL would hold the server"
    );
    let chunks = calls(nodes, "hscan");
    assert!(
        chunks as usize >= N / shmap_backends::redis_map::SCAN_CHUNK,
        "{chunks} HSCANs for {N} entries"
    );

    // Others add and remove keys during the scans: each key is listed at most once, and every
    // key present throughout is listed with its value.
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let churn = RedisMap::attach(url, "big", opts(5000)).unwrap();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch: Vec<(Vec<u8>, Vec<u8>)> = (0..200)
                    .map(|j| (format!("new{}", i * 200 + j).into_bytes(), b"x".to_vec()))
                    .collect();
                churn.insert_many(&batch).unwrap();
                for (k, _) in &batch[..150] {
                    churn.remove(k).unwrap();
                }
                i += 1;
            }
        });
        for _ in 0..5 {
            let got = m.entries().unwrap();
            let keys: std::collections::HashSet<&Vec<u8>> = got.iter().map(|(k, _)| k).collect();
            assert_eq!(keys.len(), got.len(), "a key listed twice");
            let stable: std::collections::HashMap<_, _> = got
                .iter()
                .filter(|(k, _)| k.starts_with(b"k"))
                .cloned()
                .collect();
            assert_eq!(stable.len(), N);
            assert!(pairs.iter().all(|(k, v)| stable.get(k) == Some(v)));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    m.unlink().unwrap();
}

#[test]
fn a_big_map_is_scanned_in_chunks_each_key_once() {
    let Some(s) = server() else { return };
    scan_in_chunks(&s.url(), &[s.url()]);
}

#[test]
fn a_big_map_is_scanned_in_chunks_on_a_cluster() {
    if server().is_none() {
        return;
    }
    let cluster = LocalCluster::start(3).expect("start a 3-node cluster");
    let nodes: Vec<String> = cluster.nodes().iter().map(|n| n.url()).collect();
    // Through each node's URL: the scan goes to the node that owns the map's slot.
    scan_in_chunks(&nodes[1], &nodes);
}
