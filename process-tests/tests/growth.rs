//! The table grows (`grow.rs`, `docs/growth.md`): in one process and in many at once, with
//! readers of keys present throughout that must never miss one or see it torn, with writers
//! SIGKILLed at random points of repeated growth, and up to `max_capacity` only.
mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmap::{Error, Inserted, MapBackend, MapOps, MapParams};
use shmap_backends::{LockFreeMap, MutexMap, SharedMap, SpinLockMap};
use shmap_testkit::checked;

use common::{finish, spawn_worker, TestName};

fn params(capacity: usize) -> MapParams {
    MapParams {
        capacity,
        max_key_size: 24,
        max_value_size: 32,
        ..MapParams::default()
    }
}

/// Keys `k-0` .. `k-{n-1}` are all present, each with the self-checking value of its id.
fn every_key_whole(map: &impl MapOps, n: u64) {
    for id in 0..n {
        let v = map
            .get(format!("k-{id}").as_bytes())
            .unwrap()
            .expect("present");
        checked::verify(id, &v).unwrap();
    }
}

fn shm_names(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n == prefix || n.starts_with(&format!("{prefix}.t")))
        .collect();
    names.sort();
    names
}

fn grows_in_one_process<P: shmap_backends::Protocol>() {
    let name = TestName::new("grow-one");
    let map = SharedMap::<P>::create(name.as_str(), params(8)).unwrap();
    let other = SharedMap::<P>::attach(name.as_str()).unwrap(); // follows without re-attaching
    let n = 5_000u64;
    for id in 0..n {
        let k = format!("k-{id}");
        assert_eq!(
            map.insert(k.as_bytes(), &checked::make(id, 1, 16)).unwrap(),
            shmap::Inserted::New
        );
        if id % 97 == 0 {
            // Every key so far, through the other handle, whatever generation it last saw.
            for j in (0..=id).step_by(13) {
                let v = other.get(format!("k-{j}").as_bytes()).unwrap();
                checked::verify(j, &v.expect("present")).unwrap();
            }
        }
    }
    assert_eq!(map.len().unwrap(), n as usize);
    assert_eq!(other.len().unwrap(), n as usize);
    let capacity = other.capacity();
    assert!(
        capacity >= n as usize * 4 / 3 && capacity <= 4 * n as usize,
        "{capacity}"
    );
    assert!(map.generation() >= 9, "{}", map.generation());
    assert_eq!(other.entries().unwrap().len(), n as usize);
    // The replaced tables are gone from /dev/shm: the map and its current table remain.
    let g = map.generation();
    assert_eq!(
        shm_names(name.as_str()),
        vec![name.as_str().to_owned(), format!("{}.t{g}", name.as_str())]
    );
    map.unlink().unwrap();
    // The table's name stays while handles are open, for them to find it.
    assert_eq!(
        shm_names(name.as_str()),
        vec![format!("{}.t{g}", name.as_str())]
    );
    // A handle still works after unlink, as mapped memory does.
    assert!(other.contains_key(b"k-0").unwrap());
    drop(map);
    assert!(other.contains_key(b"k-1").unwrap());
    drop(other); // the last handle takes the table's name with it
    assert!(shm_names(name.as_str()).is_empty());
}

#[test]
fn lockfree_grows_in_one_process() {
    grows_in_one_process::<shmap_backends::Striped<shmap_backends::Seqlock>>();
}

#[test]
fn spinlock_grows_in_one_process() {
    grows_in_one_process::<shmap_backends::Striped<shmap_backends::SlotLocks>>();
}

#[test]
fn mutex_grows_in_one_process() {
    grows_in_one_process::<shmap_backends::GlobalMutex>();
}

fn full_only_at_max_capacity<M: MapBackend>() {
    let name = TestName::new("grow-max");
    let map = M::create(
        name.as_str(),
        MapParams {
            max_capacity: 32,
            ..params(4)
        },
    )
    .unwrap();
    for id in 0..32u64 {
        map.insert(format!("k-{id}").as_bytes(), b"v").unwrap();
    }
    assert_eq!(map.capacity(), 32);
    assert!(matches!(
        map.insert(b"one-more", b"v"),
        Err(Error::TableFull { capacity: 32 })
    ));
    assert_eq!(map.len().unwrap(), 32);
    // An update that needs a slot fails the same way, and changes nothing.
    let ran = std::cell::Cell::new(0);
    let got = map.update(b"another", |_| {
        ran.set(ran.get() + 1);
        (shmap::Update::Set(b"v".to_vec()), ())
    });
    assert!(matches!(got, Err(Error::TableFull { .. })), "{got:?}");
    assert_eq!(map.len().unwrap(), 32);
    assert!(MapParams {
        max_capacity: 3,
        ..params(4)
    }
    .validate()
    .is_err());
}

/// A table that cannot grow and has 1,024 buckets or more takes new keys up to 7/8 of them,
/// not to the brim, where a miss would probe nearly the whole table (issue 33, item 3): the
/// next new key is `TableFull`, present keys are still updated and removed, `len` is exact,
/// and a reclaim of what removes left lets new keys in again.
fn a_table_that_cannot_grow_stops_new_keys_at_seven_eighths<M: MapBackend>(reclaim: impl Fn(&M)) {
    const CAP: usize = 4096;
    let name = TestName::new("fill-limit");
    let map = M::create(
        name.as_str(),
        MapParams {
            max_capacity: CAP,
            ..params(CAP)
        },
    )
    .unwrap();
    let key = |id: usize| format!("k-{id}").into_bytes();
    let mut stored = 0;
    let refused = loop {
        match map.insert(&key(stored), b"v") {
            Ok(_) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored <= CAP, "took every bucket");
    };
    assert!(
        matches!(refused, Error::TableFull { capacity: CAP }),
        "{refused:?}"
    );
    assert_eq!(stored, CAP - CAP / 8, "new keys stop at 7/8");
    assert_eq!(map.len().unwrap(), stored);
    assert_eq!(map.get(&key(stored)).unwrap(), None);
    // Present keys: updated and removed as ever.
    assert_eq!(map.insert(&key(7), b"new").unwrap(), Inserted::Replaced);
    for id in 0..512 {
        assert!(map.remove(&key(id)).unwrap());
    }
    assert_eq!(map.len().unwrap(), stored - 512);
    // What the removes left becomes claimable again once reclaimed: new keys go in.
    reclaim(&map);
    for id in stored..stored + 256 {
        map.insert(&key(id), b"v").unwrap();
    }
    assert_eq!(map.len().unwrap(), stored - 512 + 256);
    // Small tables still fill up: their misses are short whatever the load.
    let small = TestName::new("fill-small");
    let map = M::create(
        small.as_str(),
        MapParams {
            max_capacity: 64,
            ..params(64)
        },
    )
    .unwrap();
    for id in 0..64 {
        map.insert(&key(id), b"v").unwrap();
    }
    assert!(matches!(
        map.insert(&key(64), b"v"),
        Err(Error::TableFull { capacity: 64 })
    ));
}

#[test]
fn lockfree_stops_new_keys_at_seven_eighths_when_it_cannot_grow() {
    a_table_that_cannot_grow_stops_new_keys_at_seven_eighths::<LockFreeMap>(|m| {
        m.reclaim_tombstones().unwrap();
    });
}

#[test]
fn spinlock_stops_new_keys_at_seven_eighths_when_it_cannot_grow() {
    a_table_that_cannot_grow_stops_new_keys_at_seven_eighths::<SpinLockMap>(|m| {
        m.reclaim_tombstones().unwrap();
    });
}

#[test]
fn mutex_stops_new_keys_at_seven_eighths_when_it_cannot_grow() {
    a_table_that_cannot_grow_stops_new_keys_at_seven_eighths::<MutexMap>(|m| {
        m.reclaim_tombstones().unwrap();
    });
}

#[test]
fn lockfree_full_only_at_max_capacity() {
    full_only_at_max_capacity::<LockFreeMap>();
}

#[test]
fn spinlock_full_only_at_max_capacity() {
    full_only_at_max_capacity::<SpinLockMap>();
}

#[test]
fn mutex_full_only_at_max_capacity() {
    full_only_at_max_capacity::<MutexMap>();
}

/// Four processes insert 100x the initial capacity at once while two read keys present
/// throughout (which must never miss or tear) and two rewrite them: every key ends up
/// present exactly once, `len` exact.
fn grows_under_many_processes<M: MapBackend>(backend: &str) {
    const STABLE: u64 = 32;
    const INITIAL: usize = 64;
    const PER_FILLER: u64 = 100 * INITIAL as u64 / 4;
    let name = TestName::new("grow-many");
    let map = M::create(name.as_str(), params(INITIAL)).unwrap();
    for id in 0..STABLE {
        map.insert(format!("key-{id:08}").as_bytes(), &checked::make(id, 0, 16))
            .unwrap();
    }
    let s = |v: u64| v.to_string();
    let mut workers = Vec::new();
    for f in 0..4 {
        let prefix = format!("f{f}");
        workers.push(spawn_worker(
            backend,
            "fill",
            name.as_str(),
            &[prefix, s(PER_FILLER)],
        ));
    }
    for w in 1..=2 {
        workers.push(spawn_worker(
            backend,
            "update",
            name.as_str(),
            &[s(STABLE), s(w), s(200)],
        ));
        workers.push(spawn_worker(
            backend,
            "read",
            name.as_str(),
            &[s(STABLE), s(800)],
        ));
    }
    for w in workers {
        finish(w);
    }
    let total = STABLE as usize + 4 * PER_FILLER as usize;
    assert_eq!(map.len().unwrap(), total);
    let entries = map.entries().unwrap();
    assert_eq!(entries.len(), total);
    let keys: HashSet<&[u8]> = entries.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(keys.len(), total, "a key is stored twice");
    for f in 0..4 {
        for id in 0..PER_FILLER {
            let k = format!("f{f}-{id}");
            assert!(keys.contains(k.as_bytes()), "{k} missing");
        }
    }
    assert!(map.capacity() >= total, "{}", map.capacity());
}

#[test]
fn lockfree_grows_under_many_processes() {
    grows_under_many_processes::<LockFreeMap>("lockfree");
}

#[test]
fn spinlock_grows_under_many_processes() {
    grows_under_many_processes::<SpinLockMap>("spinlock");
}

#[test]
fn mutex_grows_under_many_processes() {
    grows_under_many_processes::<MutexMap>("mutex");
}

fn spawn_filler(backend: &str, name: &str, prefix: &str, keys: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_stress_worker"))
        .args([backend, "fill", name, prefix, &keys.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stress_worker")
}

/// How many of `prefix`'s keys a filler inserted: they must be a prefix `0..n` of its keys,
/// each whole (a filler inserts in order; the one in flight when it died may be there or not).
fn filled<M: MapBackend>(map: &M, prefix: &str) -> u64 {
    let mut buf = Vec::new();
    let mut n = 0;
    while map
        .get_into(format!("{prefix}-{n}").as_bytes(), &mut buf)
        .unwrap()
    {
        checked::verify(n, &buf).unwrap();
        n += 1;
    }
    for gap in 0..8 {
        let k = format!("{prefix}-{}", n + gap);
        assert!(!map.contains_key(k.as_bytes()).unwrap(), "{k} after a gap");
    }
    n
}

/// Fillers SIGKILLed every few milliseconds, at whatever point of an insert or of a resize
/// they are, while the table grows from 1k buckets to past 1M entries: after every kill the
/// survivors go on (a new filler starts at once), the dead one's keys are a whole prefix,
/// and at the end `len` counts exactly what the prefixes add up to.
fn survives_kills_while_growing<P: shmap_backends::Protocol>(backend: &str) {
    const TARGET: u64 = 1_000_000;
    const BOUND: Duration = Duration::from_secs(120);
    let name = TestName::new("grow-kill");
    let map = SharedMap::<P>::create(name.as_str(), params(1024)).unwrap();
    let started = Instant::now();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut spawned, mut done, mut kills, mut probes) = (0u64, Vec::new(), 0, 0u64);
    let mut live: Vec<(String, Child)> = Vec::new();
    let mut total = 0u64;
    while total < TARGET {
        assert!(started.elapsed() < BOUND, "only {total} keys in {BOUND:?}");
        while live.len() < 3 {
            let prefix = format!("p{spawned}");
            spawned += 1;
            live.push((
                prefix.clone(),
                spawn_filler(backend, name.as_str(), &prefix, 400_000),
            ));
        }
        std::thread::sleep(Duration::from_millis(1 + next() % 12));
        let (prefix, mut child) = live.remove((next() % 3) as usize);
        let _ = child.kill();
        if !child.wait().unwrap().success() {
            kills += 1; // else it finished before the kill landed
        }
        // The map answers at once, whatever the dead one was doing.
        let t = Instant::now();
        map.insert(
            format!("probe-{probes}").as_bytes(),
            &checked::make(0, 0, 16),
        )
        .unwrap();
        probes += 1;
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        total = map.len().unwrap() as u64;
        done.push(prefix);
    }
    for (prefix, mut child) in live {
        let _ = child.kill();
        let _ = child.wait();
        done.push(prefix);
    }
    done.sort();
    done.dedup();
    let sum: u64 = done.iter().map(|p| filled(&map, p)).sum();
    assert_eq!(
        map.len().unwrap() as u64,
        sum + probes,
        "len vs prefixes and probes"
    );
    assert!(map.capacity() >= 1 << 20, "{}", map.capacity());
    assert!(kills > 20, "only {kills} kills");
    // And it grows again: one more doubling by hand, every key still there.
    let before = map.capacity();
    let t = Instant::now();
    assert!(matches!(
        map.grow().unwrap(),
        shmap_backends::Grown::Resized { .. }
    ));
    eprintln!(
        "{backend}: {kills} kills, {total} keys; a resize of {before} buckets took {:?}",
        t.elapsed()
    );
    assert_eq!(map.capacity(), 2 * before);
    assert_eq!(map.len().unwrap() as u64, sum + probes);
    assert_eq!(done.iter().map(|p| filled(&map, p)).sum::<u64>(), sum);
}

#[test]
fn lockfree_survives_kills_while_growing() {
    survives_kills_while_growing::<shmap_backends::Striped<shmap_backends::Seqlock>>("lockfree");
}

#[test]
fn spinlock_survives_kills_while_growing() {
    survives_kills_while_growing::<shmap_backends::Striped<shmap_backends::SlotLocks>>("spinlock");
}

/// A file-backed map grows into `path.t<g>` files beside it (its records stay in
/// `path.heap`); reopened by a process that has it alone (which validates every slot of the
/// current table), every key is there; unlink removes every file.
#[test]
fn a_file_map_grows_and_reopens_whole() {
    let dir = std::env::temp_dir().join(format!("shmap-grow-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let loc = shmap::Location::File(dir.join("map"));
    {
        let map = LockFreeMap::create_in(&loc, params(8)).unwrap();
        for id in 0..2_000u64 {
            map.insert(format!("k-{id}").as_bytes(), &checked::make(id, 3, 16))
                .unwrap();
        }
        assert!(map.generation() >= 8);
        map.flush().unwrap();
    }
    let files = |d: &std::path::Path| std::fs::read_dir(d).unwrap().count();
    assert_eq!(
        files(&dir),
        3,
        "the map, its heap and its current table, nothing else"
    );
    let map = LockFreeMap::attach_in(&loc, Default::default()).unwrap();
    // Validated if no other process had the file open: a child that another test thread
    // forks in the instant before its exec shares our descriptions, and with them the
    // session lock. Either way every key must come back whole.
    if let Some(v) = map.validation() {
        assert!(v.is_clean(), "{v:?}");
    }
    assert_eq!(map.len().unwrap(), 2_000);
    every_key_whole(&map, 2_000);
    map.unlink().unwrap();
    drop(map); // the last handle takes the table's file with it
    assert_eq!(files(&dir), 0);
    std::fs::remove_dir(&dir).unwrap();
}

/// A resizer SIGKILLed at spread-out points of its resize: before it takes the locks, while
/// it copies (its unpublished table is left in /dev/shm), after it published. Each time the
/// survivors find every key whole and `len` exact, write at once, and grow the table again
/// (which removes what the dead one left); `unlink` leaves nothing.
fn a_resizer_killed_anywhere<P: shmap_backends::Protocol>(backend: &str) {
    use std::io::BufRead;
    const KEYS: u64 = 30_000;
    let make = |name: &TestName| {
        let map = SharedMap::<P>::create(name.as_str(), params(KEYS as usize * 2)).unwrap();
        for id in 0..KEYS {
            map.insert(format!("k-{id}").as_bytes(), &checked::make(id, 5, 16))
                .unwrap();
        }
        map
    };
    // How long one resize of this table takes here, to spread the kills over it.
    let name = TestName::new("grow-resizer");
    let t = Instant::now();
    assert!(matches!(
        make(&name).grow().unwrap(),
        shmap_backends::Grown::Resized { .. }
    ));
    let resize = t.elapsed();
    SharedMap::<P>::attach(name.as_str())
        .unwrap()
        .unlink()
        .unwrap();
    let (mut mid_copy, mut published) = (0, 0);
    // Twelve rounds with kills from 0 to 1.4 resizes in; then, while no kill has landed
    // mid-copy or none after the publication, more rounds at shorter delays (on 2 busy cores
    // the child may have resized before we wake to kill it).
    let mut round = 0u32;
    while round < 12 || (round < 48 && (mid_copy == 0 || published == 0)) {
        let delay = resize * (round % 12) / 8 / (1 + round / 12);
        round += 1;
        let name = TestName::new("grow-resizer");
        let map = make(&name);
        let (g, capacity) = (map.generation(), map.capacity());
        let mut child = Command::new(env!("CARGO_BIN_EXE_stress_worker"))
            .args([backend, "grow", name.as_str()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "growing");
        std::thread::sleep(delay);
        let _ = child.kill();
        child.wait().unwrap();
        if map.generation() > g {
            published += 1;
        } else if shm_names(name.as_str()).contains(&format!("{}.t{}", name.as_str(), g + 1)) {
            mid_copy += 1; // a table made and never published
        }
        assert_eq!(map.len().unwrap(), KEYS as usize, "round {round}");
        every_key_whole(&map, KEYS);
        let t = Instant::now();
        map.insert(b"after", &checked::make(0, 0, 16)).unwrap();
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        let before = map.capacity();
        assert!(matches!(
            map.grow().unwrap(),
            shmap_backends::Grown::Resized { .. }
        ));
        assert_eq!(map.capacity(), 2 * before);
        assert!(before == capacity || before == 2 * capacity);
        assert_eq!(map.len().unwrap(), KEYS as usize + 1);
        let g = map.generation();
        assert_eq!(
            shm_names(name.as_str()),
            vec![name.as_str().to_owned(), format!("{}.t{g}", name.as_str())],
            "round {round}: what the dead resizer left is gone"
        );
        map.unlink().unwrap();
        drop(map); // the last handle takes the table's name with it
        assert!(shm_names(name.as_str()).is_empty());
    }
    eprintln!("{backend}: resize {resize:?}; killed mid-copy {mid_copy}, after publishing {published} of {round}");
    assert!(mid_copy >= 1, "no kill landed mid-copy");
    assert!(published >= 1, "no resize finished before its kill");
}

#[test]
fn lockfree_resizer_killed_anywhere() {
    a_resizer_killed_anywhere::<shmap_backends::Striped<shmap_backends::Seqlock>>("lockfree");
}

#[test]
fn spinlock_resizer_killed_anywhere() {
    a_resizer_killed_anywhere::<shmap_backends::Striped<shmap_backends::SlotLocks>>("spinlock");
}

/// A resize takes over the stripe of a writer that died holding it (taking every stripe
/// gives up on a live holder after a spin, but asks first whether it is dead).
fn a_resize_takes_over_a_dead_stripe_holder<P: shmap_backends::Protocol>(backend: &str) {
    use std::io::BufRead;
    let name = TestName::new("grow-dead-holder");
    let map = SharedMap::<P>::create(name.as_str(), params(64)).unwrap();
    let mut worker = spawn_worker(backend, "die-holding", name.as_str(), &["k".into()]);
    let mut line = String::new();
    std::io::BufReader::new(worker.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "held");
    assert!(worker.wait().unwrap().success()); // the holder is gone (its fork child lives on)
    let started = Instant::now();
    assert!(matches!(
        map.grow().unwrap(),
        shmap_backends::Grown::Resized { capacity: 128, .. }
    ));
    let took = started.elapsed();
    assert!(took < Duration::from_millis(500), "took {took:?}");
    map.insert(b"k", b"v").unwrap(); // and the key's writers go on
}

#[test]
fn lockfree_resize_takes_over_a_dead_stripe_holder() {
    a_resize_takes_over_a_dead_stripe_holder::<shmap_backends::Striped<shmap_backends::Seqlock>>(
        "lockfree",
    );
}

#[test]
fn spinlock_resize_takes_over_a_dead_stripe_holder() {
    a_resize_takes_over_a_dead_stripe_holder::<shmap_backends::Striped<shmap_backends::SlotLocks>>(
        "spinlock",
    );
}

/// Only the resize lock's holder makes the next table, and it makes it before it stops the
/// writers: while another holds the lock (a resizer still making its table), writers past
/// 3/4 of the table go on at once (up to the 7/8 where a new key must wait for growth), and
/// `grow` waits for the lock, then resizes.
fn a_resizer_making_its_table_stops_no_writer<P: shmap_backends::Protocol>() {
    let name = TestName::new("grow-resize-lock");
    let map = SharedMap::<P>::create(name.as_str(), params(1024)).unwrap();
    let root = map.tables().root().segment();
    let held = shmap::lock_byte(
        root.raw_fd(),
        root.location(),
        shmap::RESIZE_BYTE,
        false,
        "the resize lock",
    )
    .unwrap()
    .expect("nobody else resizes");
    let mut slowest = Duration::ZERO;
    for id in 0..850u64 {
        let t = Instant::now();
        map.insert(format!("k-{id}").as_bytes(), &checked::make(id, 1, 16))
            .unwrap();
        slowest = slowest.max(t.elapsed());
    }
    assert_eq!(
        (map.generation(), map.capacity()),
        (0, 1024),
        "nobody resized"
    );
    assert!(
        slowest < Duration::from_millis(100),
        "a writer waited {slowest:?}"
    );
    let released = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(held);
    });
    let t = Instant::now();
    assert!(matches!(
        map.grow().unwrap(),
        shmap_backends::Grown::Resized { capacity: 2048, .. }
    ));
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    released.join().unwrap();
    every_key_whole(&map, 850);
    map.unlink().unwrap();
}

#[test]
fn lockfree_resizer_making_its_table_stops_no_writer() {
    a_resizer_making_its_table_stops_no_writer::<shmap_backends::Striped<shmap_backends::Seqlock>>(
    );
}

#[test]
fn spinlock_resizer_making_its_table_stops_no_writer() {
    a_resizer_making_its_table_stops_no_writer::<shmap_backends::Striped<shmap_backends::SlotLocks>>(
    );
}

#[test]
fn mutex_resizer_making_its_table_stops_no_writer() {
    a_resizer_making_its_table_stops_no_writer::<shmap_backends::GlobalMutex>();
}
