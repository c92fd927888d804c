//! The behaviour every backend must have, written once and generic over [`MapBackend`].

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use shmap::{BackendKind, Error, Inserted, MapBackend, MapParams, HEADER_LEN};
use shmap_backends::with_backend;

use super::TestName;

fn params(capacity: usize, max_key_size: usize, max_value_size: usize) -> MapParams {
    MapParams {
        capacity,
        max_key_size,
        max_value_size,
    }
}

fn create<M: MapBackend>(tag: &str, p: MapParams) -> (TestName, M) {
    let name = TestName::new(tag);
    let map = M::create(name.as_str(), p).expect("create");
    (name, map)
}

pub fn insert_get_replace_remove<M: MapBackend>() {
    let (_n, m) = create::<M>("basic", MapParams::default());
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

pub fn len_tracks_inserts_and_removes<M: MapBackend>() {
    let (_n, m) = create::<M>("len", MapParams::with_capacity(64));
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

pub fn empty_key_and_value<M: MapBackend>() {
    let (_n, m) = create::<M>("empty", MapParams::default());
    m.insert(b"", b"").unwrap();
    assert_eq!(m.get(b"").unwrap(), Some(vec![]));
    m.insert(b"k", b"").unwrap();
    assert_eq!(m.get(b"k").unwrap(), Some(vec![]));
    assert_eq!(m.len().unwrap(), 2);
}

pub fn keys_and_values_at_the_limits<M: MapBackend>() {
    // Sizes that are not multiples of 8 exercise the padded last word.
    let (_n, m) = create::<M>("limits", params(16, 13, 21));
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

pub fn oversize_key_or_value_is_an_error_and_changes_nothing<M: MapBackend>() {
    let (_n, m) = create::<M>("oversize", params(16, 8, 8));
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

pub fn full_table_is_an_error_and_changes_nothing<M: MapBackend>() {
    let (_n, m) = create::<M>("full", params(8, 8, 8));
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

pub fn churn_of_fifty_times_capacity_keeps_working<M: MapBackend>() {
    let cap = 64;
    let (_n, m) = create::<M>("churn", MapParams::with_capacity(cap));
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

pub fn attach_sees_data_and_reads_params_back<M: MapBackend>() {
    let p = params(100, 40, 300);
    let (n, a) = create::<M>("attach", p);
    a.insert(b"from-a", b"1").unwrap();
    let b = M::attach(n.as_str()).unwrap();
    assert_eq!(b.params(), p);
    assert_eq!(b.name(), n.as_str());
    assert_eq!(b.get(b"from-a").unwrap().as_deref(), Some(&b"1"[..]));
    b.insert(b"from-b", b"2").unwrap();
    assert_eq!(a.get(b"from-b").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!((a.len().unwrap(), b.len().unwrap()), (2, 2));
    b.close();
    assert_eq!(
        a.get(b"from-b").unwrap().as_deref(),
        Some(&b"2"[..]),
        "close keeps the segment"
    );
}

pub fn create_existing_name_is_an_error<M: MapBackend>() {
    let (n, m) = create::<M>("exists", MapParams::default());
    m.insert(b"k", b"v").unwrap();
    assert!(matches!(
        M::create(n.as_str(), MapParams::default()),
        Err(Error::AlreadyExists(_))
    ));
    assert_eq!(
        m.get(b"k").unwrap().as_deref(),
        Some(&b"v"[..]),
        "the existing map is untouched"
    );
}

pub fn attach_missing_name_is_an_error<M: MapBackend>() {
    let n = TestName::new("missing");
    assert!(matches!(M::attach(n.as_str()), Err(Error::NotFound(_))));
    assert!(matches!(shmap::unlink(n.as_str()), Err(Error::NotFound(_))));
}

pub fn invalid_names_are_errors<M: MapBackend>() {
    let long = "x".repeat(300);
    for bad in ["", "a/b", "..", &long, "nul\0byte"] {
        assert!(
            matches!(
                M::create(bad, MapParams::default()),
                Err(Error::InvalidName { .. })
            ),
            "{bad:?}"
        );
        assert!(
            matches!(M::attach(bad), Err(Error::InvalidName { .. })),
            "{bad:?}"
        );
    }
}

pub fn invalid_params_are_errors<M: MapBackend>() {
    let n = TestName::new("params");
    for p in [
        params(0, 8, 8),
        params(8, 0, 8),
        params(8, 8, 0),
        params(usize::MAX, 8, 8),
        params(8, usize::MAX, 8),
        params(1 << 31, 1 << 20, 1 << 28), // each field allowed, the product absurd
    ] {
        assert!(
            matches!(
                M::create(n.as_str(), p),
                Err(Error::InvalidParameter { .. })
            ),
            "{p:?}"
        );
        assert!(
            matches!(M::attach(n.as_str()), Err(Error::NotFound(_))),
            "nothing was created"
        );
    }
}

/// Writes `bytes` as the whole content of the shared-memory file `name`.
fn write_raw_segment(name: &str, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(format!("/dev/shm/{name}"))
        .unwrap();
    f.write_all(bytes).unwrap();
}

pub fn attach_foreign_segment_is_refused<M: MapBackend>() {
    let n = TestName::new("foreign");
    write_raw_segment(n.as_str(), &[0x5A; 4096]);
    assert!(matches!(M::attach(n.as_str()), Err(Error::NotOurs { .. })));
    let small = TestName::new("tiny");
    write_raw_segment(small.as_str(), b"hello"); // never grows to a header: refused after the wait
    assert!(matches!(
        M::attach(small.as_str()),
        Err(Error::NotOurs { .. })
    ));
}

/// A segment whose creator died before writing its header (zeros, no creator lock) is
/// reported as abandoned, and `remove_abandoned` removes it (and only it).
pub fn abandoned_segment_is_reported_and_removable<M: MapBackend>() {
    let n = TestName::new("abandoned");
    write_raw_segment(n.as_str(), &[0; 4096]);
    assert!(
        !shmap::remove_abandoned(n.as_str()).unwrap(),
        "a file this fresh may be a creator's before its lock"
    );
    let got = M::attach(n.as_str());
    assert!(matches!(got, Err(Error::Abandoned { .. })), "{got:?}");
    assert!(matches!(
        M::create(n.as_str(), params(4, 4, 4)),
        Err(Error::AlreadyExists(_))
    ));
    assert!(shmap::remove_abandoned(n.as_str()).unwrap());
    assert!(
        !shmap::remove_abandoned(n.as_str()).unwrap(),
        "already gone"
    );
    let m = M::create(n.as_str(), params(4, 4, 4)).unwrap();
    assert!(
        !shmap::remove_abandoned(n.as_str()).unwrap(),
        "a live map is not abandoned"
    );
    m.insert(b"k", b"v").unwrap();
}

/// Segments another user owns, or that group or others may write, are refused unless trusted.
pub fn attach_refuses_untrusted_segments_unless_trusted<M: MapBackend>() {
    use std::os::unix::fs::PermissionsExt;
    let (n, m) = create::<M>("trust", params(4, 4, 4));
    m.insert(b"k", b"v").unwrap();
    let path = format!("/dev/shm/{}", n.as_str());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "created with exactly 0600");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o620)).unwrap();
    let got = M::attach(n.as_str());
    assert!(matches!(got, Err(Error::Untrusted { .. })), "{got:?}");
    let trusted = M::attach_with(n.as_str(), shmap::AttachOptions::trusting()).unwrap();
    assert_eq!(trusted.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
}

/// A copy of a real segment's bytes, with `edit` applied.
fn tampered_copy<M: MapBackend>(tag: &str, edit: impl FnOnce(&mut Vec<u8>)) -> TestName {
    let (n, m) = create::<M>(tag, params(16, 8, 8));
    m.insert(b"k", b"v").unwrap();
    let mut bytes = std::fs::read(format!("/dev/shm/{}", n.as_str())).unwrap();
    edit(&mut bytes);
    let copy = TestName::new(tag);
    write_raw_segment(copy.as_str(), &bytes);
    copy
}

fn set_word(bytes: &mut [u8], word: usize, value: u64) {
    bytes[word * 8..word * 8 + 8].copy_from_slice(&value.to_le_bytes());
}

pub fn attach_truncated_segment_is_refused<M: MapBackend>() {
    let n = tampered_copy::<M>("trunc", |b| b.truncate(b.len() - 8));
    assert!(matches!(M::attach(n.as_str()), Err(Error::Corrupt { .. })));
    let header_only = tampered_copy::<M>("hdr", |b| b.truncate(HEADER_LEN));
    assert!(matches!(
        M::attach(header_only.as_str()),
        Err(Error::Corrupt { .. })
    ));
}

pub fn attach_other_version_is_refused<M: MapBackend>() {
    let n = tampered_copy::<M>("version", |b| set_word(b, 1, 99));
    assert!(matches!(
        M::attach(n.as_str()),
        Err(Error::IncompatibleVersion { found: 99, .. })
    ));
}

pub fn attach_lying_header_is_refused<M: MapBackend>() {
    // Header words: 3 capacity, 4/5 max sizes, 7 total_len, 8..12 offsets and stride.
    for (word, value) in [
        (3, 1u64 << 40),
        (3, 0),
        (4, 4096),
        (5, 0),
        (7, 1 << 20),
        (10, 8),
        (11, 64),
        (12, 7),
    ] {
        let n = tampered_copy::<M>("liar", |b| set_word(b, word, value));
        let err = M::attach(n.as_str()).expect_err("a lying header must be refused");
        assert!(
            matches!(err, Error::Corrupt { .. }),
            "word {word} = {value}: {err}"
        );
    }
    let n = tampered_copy::<M>("kind", |b| set_word(b, 2, 77));
    assert!(matches!(M::attach(n.as_str()), Err(Error::Corrupt { .. })));
}

pub fn attach_with_another_backend_is_refused<M: MapBackend>() {
    let (n, _m) = create::<M>("wrongkind", MapParams::default());
    for other in BackendKind::ALL.into_iter().filter(|k| *k != M::KIND) {
        with_backend!(other, O => {
            let err = O::attach(n.as_str()).expect_err("attach with another backend");
            assert!(matches!(err, Error::WrongBackend { .. }), "{other}: {err}");
        });
    }
}

pub fn corrupt_slot_is_an_error<M: MapBackend>() {
    let (n, m) = create::<M>("badslot", params(4, 8, 8));
    m.insert(b"k", b"v").unwrap();
    // Make every FULL slot claim a 1 GiB value through the raw file: a get must refuse, not read it.
    let path = format!("/dev/shm/{}", n.as_str());
    let bytes = std::fs::read(&path).unwrap();
    let slots_offset = u64::from_le_bytes(bytes[88..96].try_into().unwrap()) as usize;
    let stride = u64::from_le_bytes(bytes[96..104].try_into().unwrap()) as usize;
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for i in 0..4 {
        use std::io::{Seek, SeekFrom};
        f.seek(SeekFrom::Start((slots_offset + i * stride) as u64))
            .unwrap();
        f.write_all(&(1u64 | 1 << 62).to_le_bytes()).unwrap();
    }
    drop(f);
    assert!(matches!(m.get(b"k"), Err(Error::Corrupt { .. })));
    assert!(matches!(m.entries(), Err(Error::Corrupt { .. })));
}

pub fn entries_snapshot_matches<M: MapBackend>() {
    let (_n, m) = create::<M>("entries", MapParams::with_capacity(128));
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

pub fn unlink_keeps_open_handles_working<M: MapBackend>() {
    let (n, m) = create::<M>("unlink", MapParams::default());
    m.insert(b"k", b"v").unwrap();
    m.unlink().unwrap();
    assert!(matches!(M::attach(n.as_str()), Err(Error::NotFound(_))));
    assert!(matches!(m.unlink(), Err(Error::NotFound(_))));
    m.insert(b"k2", b"v2").unwrap();
    assert_eq!(m.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
}

pub fn handles_are_shared_by_threads_with_exact_counts<M: MapBackend>() {
    let (n, m) = create::<M>("threads", MapParams::with_capacity(4096));
    let attached = M::attach(n.as_str()).unwrap();
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
/// remove_entry, update's Keep, and errors that change nothing.
pub fn atomic_operations_do_what_they_say<M: MapBackend>() {
    use shmap::Update;
    let (_n, m) = create::<M>("rmw", params(2, 8, 8));
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
    // update: Keep writes nothing, its result comes back; Remove of an absent key is nothing.
    m.insert(b"k", b"v").unwrap();
    assert_eq!(
        m.update(b"k", |cur| (Update::Keep, cur.map(<[u8]>::to_vec)))
            .unwrap(),
        Some(b"v".to_vec())
    );
    assert!(!m
        .update(b"zz", |cur| (Update::Remove, cur.is_some()))
        .unwrap());
    assert_eq!(m.len().unwrap(), 1);
    // Errors change nothing: an oversize value, a full table.
    assert!(matches!(
        m.update(b"k", |_| (Update::Set(vec![0; 9]), ())),
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
