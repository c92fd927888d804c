//! The operations every map must have ([`MapOps`]), wherever it lives: written once, generic
//! over a [`Maker`] that creates maps in shared memory (each backend) or on a Redis server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use shmap::{Error, Inserted, MapOps, MapParams};

/// Makes fresh maps for one test, and removes them when it is dropped.
pub trait Maker {
    type Map: MapOps;
    /// Creates a map with a name of its own.
    fn create(&self, tag: &str, p: MapParams) -> Self::Map {
        self.create_named(&self.unused_name(tag), p)
            .expect("create")
    }
    /// Creates the map `name` (an error if it exists).
    fn create_named(&self, name: &str, p: MapParams) -> shmap::Result<Self::Map>;
    /// A second handle on the map `name`.
    fn attach(&self, name: &str) -> shmap::Result<Self::Map>;
    /// A name no map has (removed at drop if a test creates it).
    fn unused_name(&self, tag: &str) -> String;
}

fn params(capacity: usize, max_key_size: usize, max_value_size: usize) -> MapParams {
    MapParams {
        capacity,
        max_key_size,
        max_value_size,
        max_capacity: capacity, // these suites check the full table: growth has its own
    }
}

pub fn insert_get_replace_remove(mk: &impl Maker) {
    let m = mk.create("basic", MapParams::default());
    assert_eq!(m.get(b"a").unwrap(), None);
    assert_eq!(m.insert(b"a", b"1").unwrap(), Inserted::New);
    assert_eq!(m.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    assert!(m.contains_key(b"a").unwrap());
    assert_eq!(m.insert(b"a", b"two").unwrap(), Inserted::Replaced);
    assert_eq!(m.get(b"a").unwrap().as_deref(), Some(&b"two"[..]));
    assert!(m.remove(b"a").unwrap());
    assert!(!m.remove(b"a").unwrap());
    assert_eq!(m.get(b"a").unwrap(), None);
    assert!(!m.contains_key(b"a").unwrap());
    let mut out = b"stale".to_vec();
    assert!(!m.get_into(b"a", &mut out).unwrap());
}

pub fn len_tracks_inserts_and_removes(mk: &impl Maker) {
    // A table that cannot grow, so every backend reports the capacity it was made with (a
    // Redis map's is its limit, `max_capacity`).
    let m = mk.create("len", MapParams::fixed(64));
    assert!(m.is_empty().unwrap());
    for i in 0..40u32 {
        m.insert(&i.to_le_bytes(), b"v").unwrap();
        m.insert(&i.to_le_bytes(), b"w").unwrap(); // replacing does not count
    }
    assert_eq!(m.len().unwrap(), 40);
    for i in 0..10u32 {
        assert!(m.remove(&i.to_le_bytes()).unwrap());
    }
    assert_eq!(m.len().unwrap(), 30);
    assert_eq!(m.capacity(), 64);
}

pub fn empty_key_and_value(mk: &impl Maker) {
    let m = mk.create("empty", MapParams::default());
    m.insert(b"", b"").unwrap();
    assert_eq!(m.get(b"").unwrap(), Some(vec![]));
    m.insert(b"k", b"").unwrap();
    assert_eq!(m.get(b"k").unwrap(), Some(vec![]));
    assert_eq!(m.len().unwrap(), 2);
}

pub fn keys_and_values_at_the_limits(mk: &impl Maker) {
    // Sizes that are not multiples of 8 exercise the padded last word.
    let m = mk.create("limits", params(16, 13, 21));
    let (k, v) = (vec![0xAB; 13], vec![0xCD; 21]);
    m.insert(&k, &v).unwrap();
    assert_eq!(m.get(&k).unwrap(), Some(v));
    // A key that is a prefix of another, padded with zeros, is still a different key.
    m.insert(&[0xAB; 12], b"short").unwrap();
    assert_eq!(m.get(&[0xAB; 12]).unwrap().as_deref(), Some(&b"short"[..]));
    m.insert(&[0xAB, 0, 0], b"zeros").unwrap();
    assert_eq!(m.get(&[0xAB]).unwrap(), None);
    assert_eq!(m.get(&[0xAB, 0]).unwrap(), None);
}

pub fn oversize_key_or_value_is_an_error_and_changes_nothing(mk: &impl Maker) {
    let m = mk.create("oversize", params(16, 8, 8));
    m.insert(b"k", b"old").unwrap();
    assert!(matches!(
        m.insert(&[1; 9], b"v"),
        Err(Error::KeyTooLarge { size: 9, max: 8 })
    ));
    assert!(matches!(
        m.insert(b"k", &[1; 9]),
        Err(Error::ValueTooLarge { size: 9, max: 8 })
    ));
    assert!(matches!(m.get(&[1; 9]), Err(Error::KeyTooLarge { .. })));
    assert!(matches!(m.remove(&[1; 9]), Err(Error::KeyTooLarge { .. })));
    assert_eq!(m.get(b"k").unwrap().as_deref(), Some(&b"old"[..]));
    assert_eq!(m.len().unwrap(), 1);
}

pub fn full_table_is_an_error_and_changes_nothing(mk: &impl Maker) {
    let m = mk.create("full", params(8, 8, 8));
    for i in 0..8u8 {
        assert_eq!(m.insert(&[i], &[i]).unwrap(), Inserted::New);
    }
    assert!(matches!(
        m.insert(b"extra", b"v"),
        Err(Error::TableFull { capacity: 8 })
    ));
    assert_eq!(m.len().unwrap(), 8);
    assert_eq!(m.get(b"extra").unwrap(), None);
    // Existing keys can still be replaced, and a removal makes room again.
    assert_eq!(m.insert(&[3], b"new").unwrap(), Inserted::Replaced);
    assert!(m.remove(&[5]).unwrap());
    assert_eq!(m.insert(b"extra", b"v").unwrap(), Inserted::New);
    for i in (0..8u8).filter(|&i| i != 5 && i != 3) {
        assert_eq!(m.get(&[i]).unwrap(), Some(vec![i]));
    }
}

pub fn churn_of_fifty_times_capacity_keeps_working(mk: &impl Maker) {
    let cap = 64;
    let m = mk.create("churn", MapParams::with_capacity(cap));
    m.insert(b"resident", b"stays").unwrap();
    for i in 0..(50 * cap) as u64 {
        let k = format!("k{i}");
        assert_eq!(
            m.insert(k.as_bytes(), &i.to_le_bytes()).unwrap(),
            Inserted::New,
            "insert {i}"
        );
        if i % 3 == 0 {
            assert_eq!(m.get(k.as_bytes()).unwrap(), Some(i.to_le_bytes().to_vec()));
        }
        assert!(m.remove(k.as_bytes()).unwrap(), "remove {i}");
    }
    assert_eq!(m.len().unwrap(), 1);
    assert_eq!(m.get(b"resident").unwrap().as_deref(), Some(&b"stays"[..]));
    // Still able to fill every bucket.
    for i in 0..cap as u64 - 1 {
        m.insert(&i.to_le_bytes(), b"x").unwrap();
    }
    assert_eq!(m.len().unwrap(), cap);
}

pub fn attach_sees_data_and_reads_params_back(mk: &impl Maker) {
    let p = params(100, 40, 300);
    let a = mk.create("attach", p);
    a.insert(b"from-a", b"1").unwrap();
    let b = mk.attach(a.name()).unwrap();
    assert_eq!(b.params(), p);
    assert_eq!(b.name(), a.name());
    assert_eq!(b.get(b"from-a").unwrap().as_deref(), Some(&b"1"[..]));
    b.insert(b"from-b", b"2").unwrap();
    assert_eq!(a.get(b"from-b").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!((a.len().unwrap(), b.len().unwrap()), (2, 2));
    drop(b);
    assert_eq!(
        a.get(b"from-b").unwrap().as_deref(),
        Some(&b"2"[..]),
        "closing a handle keeps the map"
    );
}

pub fn create_existing_name_is_an_error(mk: &impl Maker) {
    let m = mk.create("exists", MapParams::default());
    m.insert(b"k", b"v").unwrap();
    assert!(matches!(
        mk.create_named(m.name(), MapParams::default()),
        Err(Error::AlreadyExists(_))
    ));
    assert_eq!(
        m.get(b"k").unwrap().as_deref(),
        Some(&b"v"[..]),
        "the existing map is untouched"
    );
}

pub fn attach_missing_name_is_an_error(mk: &impl Maker) {
    assert!(matches!(
        mk.attach(&mk.unused_name("missing")),
        Err(Error::NotFound(_))
    ));
}

pub fn entries_snapshot_matches(mk: &impl Maker) {
    let m = mk.create("entries", MapParams::with_capacity(128));
    let mut expected = HashMap::new();
    for i in 0..100u32 {
        let (k, v) = (
            format!("k{i}").into_bytes(),
            vec![i as u8; (i % 17) as usize],
        );
        m.insert(&k, &v).unwrap();
        expected.insert(k, v);
    }
    for i in (0..100u32).step_by(4) {
        m.remove(format!("k{i}").as_bytes()).unwrap();
        expected.remove(format!("k{i}").as_bytes());
    }
    let got: HashMap<_, _> = m.iter().unwrap().collect();
    assert_eq!(m.entries().unwrap().len(), expected.len(), "no key twice");
    assert_eq!(got, expected);
}

pub fn handles_are_shared_by_threads_with_exact_counts(mk: &impl Maker) {
    let m = mk.create("threads", MapParams::with_capacity(4096));
    let attached = mk.attach(m.name()).unwrap();
    let new_inserts = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (map, new_inserts) = (if t % 2 == 0 { &m } else { &attached }, &new_inserts);
            s.spawn(move || {
                for i in 0..1000u64 {
                    // Every thread inserts the same 1000 keys: exactly 1000 inserts are new.
                    if map.insert(&i.to_le_bytes(), &t.to_le_bytes()).unwrap() == Inserted::New {
                        new_inserts.fetch_add(1, Ordering::Relaxed);
                    }
                    let k = format!("own-{t}-{i}").into_bytes();
                    map.insert(&k, b"own").unwrap();
                    assert!(map.remove(&k).unwrap());
                }
            });
        }
    });
    assert_eq!(new_inserts.load(Ordering::Relaxed), 1000);
    assert_eq!(m.len().unwrap(), 1000);
    assert_eq!(m.entries().unwrap().len(), 1000);
}

/// The atomic operations' semantics: compare_exchange in its four forms, get_or_insert,
/// remove_entry, and errors that change nothing.
pub fn atomic_operations_do_what_they_say(mk: &impl Maker) {
    let m = mk.create("rmw", params(2, 8, 8));
    // Insert if absent; fails (naming the value) once present.
    assert_eq!(m.compare_exchange(b"k", None, Some(b"1")).unwrap(), Ok(()));
    assert_eq!(
        m.compare_exchange(b"k", None, Some(b"2")).unwrap(),
        Err(Some(b"1".to_vec()))
    );
    // Replace only from the expected value.
    assert_eq!(
        m.compare_exchange(b"k", Some(b"9"), Some(b"2")).unwrap(),
        Err(Some(b"1".to_vec()))
    );
    assert_eq!(
        m.compare_exchange(b"k", Some(b"1"), Some(b"2")).unwrap(),
        Ok(())
    );
    assert_eq!(m.get(b"k").unwrap().as_deref(), Some(&b"2"[..]));
    // Remove only from the expected value; on an absent key, the expectation is None.
    assert_eq!(m.compare_exchange(b"k", Some(b"2"), None).unwrap(), Ok(()));
    assert_eq!(
        m.compare_exchange(b"k", Some(b"2"), None).unwrap(),
        Err(None)
    );
    assert_eq!(m.len().unwrap(), 0);
    // get_or_insert inserts once.
    assert_eq!(m.get_or_insert(b"a", b"x").unwrap(), (b"x".to_vec(), true));
    assert_eq!(m.get_or_insert(b"a", b"y").unwrap(), (b"x".to_vec(), false));
    // remove_entry returns what was there.
    assert_eq!(m.remove_entry(b"a").unwrap(), Some(b"x".to_vec()));
    assert_eq!(m.remove_entry(b"a").unwrap(), None);
    // Errors change nothing: an oversize value, a full table.
    m.insert(b"k", b"v").unwrap();
    assert!(matches!(
        m.compare_exchange(b"k", Some(b"v"), Some(&[0; 9])),
        Err(Error::ValueTooLarge { .. })
    ));
    assert_eq!(m.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    m.insert(b"j", b"w").unwrap();
    assert!(matches!(
        m.get_or_insert(b"new", b"n"),
        Err(Error::TableFull { .. })
    ));
    assert!(matches!(
        m.compare_exchange(&[0; 9], None, Some(b"n")),
        Err(Error::KeyTooLarge { .. })
    ));
    assert_eq!(m.len().unwrap(), 2);
    assert_eq!(m.get(b"new").unwrap(), None);
}
