//! What every shared-memory backend must do beyond the operations (`ops.rs`): segments,
//! names, headers, tampering, `update`. Written once, generic over [`MapBackend`].

use std::io::Write;

use shmap::{BackendKind, Error, MapBackend, MapParams, HEADER_LEN};
use shmap_backends::with_backend;

use super::TestName;

fn params(capacity: usize, max_key_size: usize, max_value_size: usize) -> MapParams {
    MapParams {
        capacity,
        max_key_size,
        max_value_size,
        max_capacity: capacity, // these suites check the full table: growth has its own
    }
}

fn create<M: MapBackend>(tag: &str, p: MapParams) -> (TestName, M) {
    let name = TestName::new(tag);
    let map = M::create(name.as_str(), p).expect("create");
    (name, map)
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
    // Names Python's resource tracker cannot carry (one ASCII line `cmd:name:type`, stripped
    // when read back): refused by every user, with the reason.
    for (bad, says) in [
        ("a:b", "':'"),
        ("line\nbreak", "control"),
        ("tab\tname", "control"),
        ("caf\u{e9}", "non-ASCII"),
        ("trailing ", "space"),
    ] {
        for result in [
            M::create(bad, MapParams::default()).map(drop),
            M::attach(bad).map(drop),
        ] {
            match result {
                Err(e @ Error::InvalidName { .. }) => {
                    assert!(e.to_string().contains(says), "{bad:?}: {e}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
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
        params(1 << 33, 8, 8),
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
    // The heap as it is: only the root is tampered with.
    let heap = std::fs::read(format!("/dev/shm/{}.heap", n.as_str())).unwrap();
    write_raw_segment(&format!("{}.heap", copy.as_str()), &heap);
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
    // Header words: 3 capacity, 4/5 max sizes, 7 total_len, 8..12 offsets and stride. (A
    // max size within the limits changes no offset since the records moved to the heap, and
    // every record is bounds-checked whatever it says: not a lie worth refusing the map for.)
    for (word, value) in [
        (3, 1u64 << 40),
        (3, 0),
        (4, 1 << 40),
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
    // Make every bucket name a record far outside the heap through the raw file: a get must
    // refuse, not read it.
    let path = format!("/dev/shm/{}", n.as_str());
    let bytes = std::fs::read(&path).unwrap();
    let slots_offset = u64::from_le_bytes(bytes[88..96].try_into().unwrap()) as usize;
    let stride = u64::from_le_bytes(bytes[96..104].try_into().unwrap()) as usize;
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for i in 0..4 {
        use std::io::{Seek, SeekFrom};
        f.seek(SeekFrom::Start((slots_offset + i * stride) as u64))
            .unwrap();
        // Offset 2^41 (in 8-byte units: 2^38), key and value of one byte each.
        f.write_all(&(1u64 << 38 | 1 << 40 | 1 << 52).to_le_bytes())
            .unwrap();
    }
    drop(f);
    assert!(matches!(m.get(b"k"), Err(Error::Corrupt { .. })));
    assert!(matches!(m.entries(), Err(Error::Corrupt { .. })));
    // Writers of the key refuse too: a remove that said "absent" and an insert that added a
    // second copy of the key were what the heap fuzz found.
    assert!(matches!(m.remove(b"k"), Err(Error::Corrupt { .. })));
    assert!(matches!(m.insert(b"k", b"w"), Err(Error::Corrupt { .. })));
    assert_eq!(m.len().unwrap(), 1);
}

/// `max_key_size` and `max_value_size` are limits, nothing more: a map that allows the largest
/// keys and values takes no more memory than one that allows 8 bytes, and holds entries of
/// every size up to them (issue 32, item 2).
pub fn size_limits_cost_no_memory<M: MapBackend>() {
    use shmap::{MAX_KEY_SIZE_LIMIT, MAX_VALUE_SIZE_LIMIT};
    let root_bytes = |n: &TestName| {
        std::fs::metadata(format!("/dev/shm/{}", n.as_str()))
            .unwrap()
            .len()
    };
    let (small, _s) = create::<M>("limits8", params(64, 8, 8));
    let (large, m) = create::<M>(
        "limitsmax",
        params(64, MAX_KEY_SIZE_LIMIT, MAX_VALUE_SIZE_LIMIT),
    );
    assert_eq!(root_bytes(&small), root_bytes(&large));
    let key = vec![7u8; 1 << 20];
    let value: Vec<u8> = (0..5 << 20).map(|i| (i * 31 % 251) as u8).collect();
    m.insert(&key, &value).unwrap();
    m.insert(b"tiny", b"").unwrap();
    assert_eq!(m.get(&key).unwrap().as_deref(), Some(&value[..]));
    assert_eq!(m.get(b"tiny").unwrap().as_deref(), Some(&b""[..]));
    m.insert(&key, b"now small").unwrap();
    assert_eq!(m.get(&key).unwrap().as_deref(), Some(&b"now small"[..]));
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

/// `update`, which only shared memory has (a closure under the key's lock): Keep writes nothing
/// and its result comes back; Remove of an absent key is nothing; an oversize new value is an
/// error that changes nothing.
pub fn update_keeps_removes_and_refuses<M: MapBackend>() {
    use shmap::Update;
    let (_n, m) = create::<M>("update", params(2, 8, 8));
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
    assert!(matches!(
        m.update(b"k", |_| (Update::Set(vec![0; 9]), ())),
        Err(Error::ValueTooLarge { .. })
    ));
    assert_eq!(m.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
}

/// Makes shared-memory maps of backend `M` with test names unlinked at drop.
pub struct ShmMaker<M> {
    names: std::cell::RefCell<Vec<TestName>>,
    backend: std::marker::PhantomData<M>,
}

impl<M> Default for ShmMaker<M> {
    fn default() -> Self {
        Self {
            names: Default::default(),
            backend: std::marker::PhantomData,
        }
    }
}

impl<M: MapBackend> super::ops::Maker for ShmMaker<M> {
    type Map = M;

    fn create_named(&self, name: &str, p: MapParams) -> shmap::Result<M> {
        M::create(name, p)
    }

    fn attach(&self, name: &str) -> shmap::Result<M> {
        M::attach(name)
    }

    fn unused_name(&self, tag: &str) -> String {
        let name = TestName::new(tag);
        let s = name.0.clone();
        self.names.borrow_mut().push(name);
        s
    }
}
