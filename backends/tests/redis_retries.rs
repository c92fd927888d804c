//! Retries of the Redis map (`redis_map/retry.rs`): connections killed by the server mid-run
//! (`CLIENT KILL`), and a server killed and started again, cost no call an error, and no write
//! is applied twice: a counter moved by compare-and-swap is exact, a fresh key's insert says
//! `New` and its remove says `true`, every entry is popped exactly once. The same while a
//! cluster moves the map's slot to another node.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use shmap::{Inserted, MapOps, MapParams};
use shmap_backends::{RedisMap, RedisOptions};
use shmap_testkit::redis_server::{LocalCluster, LocalServer};

const WORKERS: usize = 4;

fn opts() -> RedisOptions {
    RedisOptions {
        timeout: Duration::from_secs(5),
        ..RedisOptions::default()
    }
}

fn start(extra: &[&str]) -> Option<LocalServer> {
    if !shmap_testkit::redis_server::available_for_tests() {
        return None;
    }
    Some(LocalServer::start_with(extra).expect("start redis-server"))
}

/// Adds one to `counter` by compare-and-swap, as a user would; returns the tries it took.
fn bump(m: &RedisMap, counter: &[u8]) -> u64 {
    let mut tries = 0;
    loop {
        tries += 1;
        let cur = m.get(counter).unwrap();
        let n: u64 = cur
            .as_deref()
            .map_or(0, |v| std::str::from_utf8(v).unwrap().parse().unwrap());
        let next = (n + 1).to_string();
        if m.compare_exchange(counter, cur.as_deref(), Some(next.as_bytes()))
            .unwrap()
            .is_ok()
        {
            return tries;
        }
    }
}

/// One worker's round: every write's reply is checked against what only a single run of it
/// would say.
fn round(m: &RedisMap, w: usize, i: usize) {
    let key = format!("w{w}-{i}");
    assert_eq!(
        m.insert(key.as_bytes(), b"v").unwrap(),
        Inserted::New,
        "{key}"
    );
    let other = format!("g{w}-{i}");
    let (stored, inserted) = m.get_or_insert(other.as_bytes(), b"g").unwrap();
    assert!(inserted && stored == b"g", "{other}");
    assert!(
        m.remove(other.as_bytes()).unwrap(),
        "{other} was removed once"
    );
    // Without a request record: a retry stores the value again.
    m.set(format!("s{w}-{i}").as_bytes(), b"s").unwrap();
    bump(m, b"counter");
}

/// `WORKERS` threads doing [`round`]s on the map `name` until `done`, at least 50 each.
fn rounds_until(url: &str, name: &'static str, done: &Arc<AtomicBool>) -> Vec<JoinHandle<usize>> {
    (0..WORKERS)
        .map(|w| {
            let (url, done) = (url.to_owned(), done.clone());
            thread::spawn(move || {
                let m = RedisMap::attach(&url, name, opts()).unwrap();
                let mut i = 0;
                while !done.load(Ordering::Relaxed) || i < 50 {
                    round(&m, w, i);
                    i += 1;
                }
                i
            })
        })
        .collect()
}

/// Joins the workers of [`rounds_until`] and checks that every key their rounds inserted and
/// set is there; returns how many rounds they made in all.
fn check_rounds(m: &RedisMap, workers: Vec<JoinHandle<usize>>) -> usize {
    let mut total = 0;
    for (w, t) in workers.into_iter().enumerate() {
        let rounds = t
            .join()
            .expect("a worker's call failed or was applied twice");
        for i in 0..rounds {
            for (key, value) in [(format!("w{w}-{i}"), "v"), (format!("s{w}-{i}"), "s")] {
                let got = m.get(key.as_bytes()).unwrap();
                assert_eq!(got.as_deref(), Some(value.as_bytes()), "{key}");
            }
        }
        total += rounds;
    }
    total
}

/// `WORKERS` threads, each with its own handle, write while another client kills every
/// normal connection every millisecond or two.
#[test]
fn killed_connections_cost_no_error_and_apply_no_write_twice() {
    let Some(s) = start(&[]) else { return };
    let url = s.url();
    let m = RedisMap::create(&url, "kills", MapParams::with_capacity(1 << 20), opts()).unwrap();
    const POOL: usize = 2000;
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..POOL)
        .map(|i| (format!("p{i}").into_bytes(), b"x".to_vec()))
        .collect();
    // Popped from a map of their own: a pop must not take the counter.
    RedisMap::create(&url, "pool", MapParams::with_capacity(POOL), opts())
        .unwrap()
        .insert_many(&pairs)
        .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicU64::new(0));
    let killer = {
        let (done, kills) = (done.clone(), kills.clone());
        let mut c = s.client().unwrap().get_connection().unwrap();
        thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let n: u64 = redis::cmd("CLIENT")
                    .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"][..])
                    .query(&mut c)
                    .unwrap();
                kills.fetch_add(n, Ordering::Relaxed);
                thread::sleep(Duration::from_micros(700));
            }
        })
    };
    const ROUNDS: usize = 300;
    let start = Arc::new(Barrier::new(WORKERS));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (url, start) = (url.clone(), start.clone());
            thread::spawn(move || {
                let m = RedisMap::attach(&url, "kills", opts()).unwrap();
                let pool = RedisMap::attach(&url, "pool", opts()).unwrap();
                start.wait();
                let mut popped = Vec::new();
                for i in 0..ROUNDS {
                    round(&m, w, i);
                    if let Some((k, _)) = pool.pop_any().unwrap() {
                        popped.push(k);
                    }
                }
                while let Some((k, _)) = pool.pop_any().unwrap() {
                    popped.push(k);
                }
                popped
            })
        })
        .collect();
    let mut popped = Vec::new();
    for w in workers {
        popped.extend(
            w.join()
                .expect("a worker's call failed or was applied twice"),
        );
    }
    done.store(true, Ordering::Relaxed);
    killer.join().unwrap();
    let kills = kills.load(Ordering::Relaxed);
    eprintln!("{kills} connections killed");
    assert!(
        kills > 100,
        "only {kills} connections killed: the test proves little"
    );

    let counter = m.get(b"counter").unwrap().unwrap();
    assert_eq!(counter, (WORKERS * ROUNDS).to_string().as_bytes());
    assert_eq!(
        m.len().unwrap(),
        1 + 2 * WORKERS * ROUNDS,
        "the counter and the keys inserted and set"
    );
    // Every pooled entry was popped, each exactly once.
    let unique: HashSet<&Vec<u8>> = popped.iter().collect();
    assert_eq!(unique.len(), popped.len(), "an entry was popped twice");
    assert_eq!(popped.len(), POOL);
}

/// A server with an append-only file synced at every write is killed and started again on
/// its port while the workers write: they wait it out (their timeout is 5 s, the server is
/// down for about half a second) and every write they were told succeeded is there after.
#[test]
fn a_restarted_server_costs_no_error_and_keeps_every_acknowledged_write() {
    let Some(mut s) = start(&["--appendonly", "yes", "--appendfsync", "always"]) else {
        return;
    };
    let url = s.url();
    let m = RedisMap::create(&url, "restart", MapParams::with_capacity(1 << 20), opts()).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let workers = rounds_until(&url, "restart", &done);
    thread::sleep(Duration::from_millis(300));
    s.restart(Duration::from_millis(300)).unwrap();
    thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    let total = check_rounds(&m, workers);
    let counter = m.get(b"counter").unwrap().unwrap();
    assert_eq!(counter, total.to_string().as_bytes());
    assert_eq!(m.len().unwrap(), 2 * total + 1);
}

/// What the request record costs a write, on one private server, alternated (set, insert,
/// insert, set, ...): `set` and `insert` run the same script body, `insert` with the record.
/// A measurement, not a check: `cargo test --release -p shmap-backends --test redis_retries
/// -- --ignored --nocapture`.
#[test]
#[ignore]
fn what_the_request_record_costs() {
    let Some(s) = start(&[]) else { return };
    let m = RedisMap::create(&s.url(), "cost", MapParams::with_capacity(1 << 20), opts()).unwrap();
    const N: usize = 3000;
    let time = |f: &dyn Fn(usize)| {
        let t = std::time::Instant::now();
        (0..N).for_each(f);
        N as f64 / t.elapsed().as_secs_f64()
    };
    let set = |i: usize| {
        m.set(format!("k{}", i % 1000).as_bytes(), b"value")
            .unwrap()
    };
    let insert = |i: usize| {
        m.insert(format!("k{}", i % 1000).as_bytes(), b"value")
            .unwrap();
    };
    let (mut ratios, mut sets) = (Vec::new(), Vec::new());
    for round in 0..10 {
        let (a, b) = if round % 2 == 0 {
            let a = time(&set);
            (a, time(&insert))
        } else {
            let b = time(&insert);
            (time(&set), b)
        };
        sets.push(a);
        ratios.push(b / a);
    }
    ratios.sort_by(f64::total_cmp);
    sets.sort_by(f64::total_cmp);
    let mut c = s.client().unwrap().get_connection().unwrap();
    let records: u64 = redis::cmd("HLEN")
        .arg("shmap:{cost}:req")
        .query(&mut c)
        .unwrap();
    let bytes: u64 = redis::cmd("MEMORY")
        .arg(&["USAGE", "shmap:{cost}:req", "SAMPLES", "0"][..])
        .query(&mut c)
        .unwrap();
    eprintln!(
        "{records} request records held ({} inserts made), {} bytes each",
        10 * N,
        bytes / records.max(1)
    );
    eprintln!(
        "set {:.0} ops/s (median), insert / set {:.2} (median of 10 pairs) [{:.2}, {:.2}]",
        sets[5], ratios[5], ratios[0], ratios[9]
    );
}

/// The map's slot moves to another node of a cluster while the workers write (`CLUSTER
/// SETSLOT` and `MIGRATE`, as `redis-cli --cluster reshard` does it): the `ASK`, `TRYAGAIN`
/// and `MOVED` replies of the move cost no call an error, and every count stays exact.
#[test]
fn a_slot_moved_mid_run_costs_no_error() {
    if !shmap_testkit::redis_server::available_for_tests() {
        return;
    }
    let cluster = LocalCluster::start(3).expect("start a cluster");
    let url = cluster.url();
    let m = RedisMap::create(&url, "moves", MapParams::with_capacity(1 << 20), opts()).unwrap();
    let conn = |n: &LocalServer| n.client().unwrap().get_connection().unwrap();
    let nodes = cluster.nodes();
    let mut c0 = conn(&nodes[0]);
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg("shmap:{moves}")
        .query(&mut c0)
        .unwrap();
    let owns = |n: &LocalServer| -> bool {
        let count: i64 = redis::cmd("CLUSTER")
            .arg("COUNTKEYSINSLOT")
            .arg(slot)
            .query(&mut conn(n))
            .unwrap();
        count > 0
    };
    let src = nodes.iter().position(owns).expect("the map's node");
    let dst = (src + 1) % nodes.len();
    let id = |n: &LocalServer| -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut conn(n))
            .unwrap()
    };
    let (src_id, dst_id) = (id(&nodes[src]), id(&nodes[dst]));

    let done = Arc::new(AtomicBool::new(false));
    let workers = rounds_until(&url, "moves", &done);
    thread::sleep(Duration::from_millis(200));
    let setslot = |n: &LocalServer, state: &str, node_id: &str| {
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg(state)
            .arg(node_id)
            .query::<()>(&mut conn(n))
            .unwrap();
    };
    setslot(&nodes[dst], "IMPORTING", &src_id);
    setslot(&nodes[src], "MIGRATING", &dst_id);
    let mut moved = 0;
    loop {
        // One key at a time, with the workers writing between: for 0.1 s at a time the
        // map's keys are on two nodes, and its scripts are told TRYAGAIN.
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(1)
            .query(&mut conn(&nodes[src]))
            .unwrap();
        if keys.is_empty() {
            break;
        }
        redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(nodes[dst].port())
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&keys)
            .query::<()>(&mut conn(&nodes[src]))
            .unwrap();
        moved += keys.len();
        thread::sleep(Duration::from_millis(100));
    }
    setslot(&nodes[dst], "NODE", &dst_id);
    setslot(&nodes[src], "NODE", &dst_id);
    let other = 3 - src - dst;
    setslot(&nodes[other], "NODE", &dst_id);
    let stats: String = redis::cmd("INFO")
        .arg("errorstats")
        .query(&mut conn(&nodes[src]))
        .unwrap();
    let count = |code: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("errorstat_{code}:count=")))
            .map_or(0, |n| n.trim().parse().unwrap())
    };
    let (tryagain, ask) = (count("TRYAGAIN"), count("ASK"));
    eprintln!(
        "moved slot {slot} ({moved} keys) from node {src} to node {dst}: {tryagain} TRYAGAIN \
         and {ask} ASK replies on the way"
    );
    assert!(
        tryagain + ask > 0,
        "the move sent no redirection: the test proves little"
    );
    thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    let total = check_rounds(&m, workers);
    assert!(owns(&nodes[dst]) && !owns(&nodes[src]), "the slot moved");
    let counter = m.get(b"counter").unwrap().unwrap();
    assert_eq!(counter, total.to_string().as_bytes());
    assert_eq!(m.len().unwrap(), 2 * total + 1);
}
