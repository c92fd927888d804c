//! `ValueSink::recall`'s contract, which the Python extension's cache of get results rests
//! on: every read attempt names its slot publication (`Origin`) before the value's words are
//! read; reads of an unchanged entry name the same origin, and every change (an update, a
//! remove and re-insert, a resize) names another; a sink that recalls is never handed the
//! words, and the lookup still reports the key found. `ValueSink::recall_keyed` is asked the
//! same origin before the slot is read; a sink that knows it ends the lookup there.

mod common;

use shmap::{MapBackend, MapOps, MapParams, Origin, ValueSink, ValueWords};
use shmap_backends::LockFreeMap;

use common::TestName;

/// Records what the lookup asked and handed; recalls the origins in `known`, and by key those
/// in `keyed`.
#[derive(Default)]
struct Recorder {
    known: Vec<Origin>,
    keyed: Vec<Origin>,
    asked: Vec<Origin>,
    asked_keyed: Vec<Origin>,
    taken: Vec<Vec<u8>>,
}

impl ValueSink for Recorder {
    fn recall_keyed(&mut self, origin: Origin) -> bool {
        self.asked_keyed.push(origin);
        self.keyed.contains(&origin)
    }

    fn recall(&mut self, origin: Origin) -> bool {
        self.asked.push(origin);
        self.known.contains(&origin)
    }

    fn take(&mut self, value: ValueWords<'_>) {
        let mut v = Vec::new();
        value.copy_to_vec(&mut v);
        self.taken.push(v);
    }
}

/// The origin of `key`'s value, read through a fresh recorder that recalls nothing.
fn origin_of(map: &LockFreeMap, key: &[u8]) -> Origin {
    let mut r = Recorder::default();
    assert_eq!(map.try_get_with(key, &mut r).unwrap(), Some(true));
    assert_eq!(r.asked.len(), r.taken.len(), "a recall before every take");
    assert_eq!(
        r.asked_keyed.last(),
        r.asked.last(),
        "recall_keyed first, same origin"
    );
    *r.asked.last().unwrap()
}

#[test]
fn origins_name_each_publication_and_recall_skips_the_words() {
    let name = TestName::new("origin");
    let params = MapParams {
        capacity: 64,
        max_key_size: 16,
        max_value_size: 32,
        max_capacity: 4096,
    };
    let map = LockFreeMap::create(name.as_str(), params).unwrap();
    map.insert(b"k", b"one").unwrap();
    let first = origin_of(&map, b"k");
    assert_eq!(origin_of(&map, b"k"), first, "an unchanged entry");
    assert_eq!((first.generation, first.slots), (0, 64));

    // A sink that knows the origin is not handed the words, and the key is still found.
    let mut r = Recorder {
        known: vec![first],
        ..Default::default()
    };
    assert_eq!(map.try_get_with(b"k", &mut r).unwrap(), Some(true));
    assert!(r.taken.is_empty());

    // A sink that knows the origin by key ends the lookup before the slot is read.
    let mut r = Recorder {
        keyed: vec![first],
        ..Default::default()
    };
    assert_eq!(map.try_get_with(b"k", &mut r).unwrap(), Some(true));
    assert!(r.asked.is_empty() && r.taken.is_empty());

    let mut seen = vec![first];
    map.insert(b"k", b"two").unwrap();
    seen.push(origin_of(&map, b"k"));
    map.remove(b"k").unwrap();
    map.insert(b"k", b"three").unwrap();
    seen.push(origin_of(&map, b"k"));
    for i in 0..200u32 {
        map.insert(format!("grow{i}").as_bytes(), b"x").unwrap();
    }
    let grown = origin_of(&map, b"k");
    assert!(grown.generation > 0 && grown.slots > 64, "{grown:?}");
    seen.push(grown);
    for (i, a) in seen.iter().enumerate() {
        for b in &seen[i + 1..] {
            assert_ne!(a, b, "two publications with one origin");
        }
    }

    // A recorder that knows every old origin, by value and by key, is handed the current
    // value.
    let mut r = Recorder {
        known: seen[..3].to_vec(),
        keyed: seen[..3].to_vec(),
        ..Default::default()
    };
    assert_eq!(map.try_get_with(b"k", &mut r).unwrap(), Some(true));
    assert_eq!(r.taken.last().map(|v| &v[..]), Some(&b"three"[..]));
}
