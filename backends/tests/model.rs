//! Model-based property test: random operation sequences against `std::collections::HashMap`,
//! on a small table so that collisions, tombstone reuse and a full table all happen; the
//! atomic operations (compare_exchange, get_or_insert, remove_entry, update) among them.
mod common;

use std::collections::HashMap;

use proptest::prelude::*;
use shmap::{Error, Inserted, MapBackend, MapParams};

use common::TestName;

const CAPACITY: usize = 12;

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, Vec<u8>),
    Remove(u8),
    Get(u8),
    Reattach,
    /// compare_exchange(key, expected, new): `expected` is the model's value when `hit`.
    Cas(u8, bool, Option<Vec<u8>>),
    GetOrInsert(u8, Vec<u8>),
    RemoveEntry(u8),
    /// update appending a byte to the value (inserting `[b]` when absent).
    Append(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    // 24 possible keys for 12 buckets: the table fills up often.
    let key = 0u8..24;
    prop_oneof![
        4 => (key.clone(), proptest::collection::vec(any::<u8>(), 0..=20)).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => key.clone().prop_map(Op::Remove),
        3 => key.clone().prop_map(Op::Get),
        1 => Just(Op::Reattach),
        2 => (key.clone(), any::<bool>(), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..=17)))
            .prop_map(|(k, hit, v)| Op::Cas(k, hit, v)),
        1 => (key.clone(), proptest::collection::vec(any::<u8>(), 0..=16)).prop_map(|(k, v)| Op::GetOrInsert(k, v)),
        1 => key.clone().prop_map(Op::RemoveEntry),
        1 => (key, any::<u8>()).prop_map(|(k, b)| Op::Append(k, b)),
    ]
}

fn key_bytes(k: u8) -> Vec<u8> {
    // Keys of different lengths, some sharing prefixes.
    vec![k; 1 + k as usize % 9]
}

fn check_against_model<M: MapBackend>(ops: &[Op]) -> Result<(), TestCaseError> {
    let name = TestName::new("model");
    let p = MapParams {
        capacity: CAPACITY,
        max_key_size: 9,
        max_value_size: 16,
        max_capacity: CAPACITY,
    };
    let mut map = M::create(name.as_str(), p).unwrap();
    let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for op in ops {
        match op {
            Op::Insert(k, v) => {
                let (k, got) = (key_bytes(*k), map.insert(&key_bytes(*k), v));
                if v.len() > 16 {
                    prop_assert!(matches!(got, Err(Error::ValueTooLarge { .. })), "{got:?}");
                } else if model.contains_key(&k) {
                    prop_assert_eq!(got.unwrap(), Inserted::Replaced);
                    model.insert(k, v.clone());
                } else if model.len() == CAPACITY {
                    prop_assert!(matches!(got, Err(Error::TableFull { .. })), "{got:?}");
                } else {
                    prop_assert_eq!(got.unwrap(), Inserted::New);
                    model.insert(k, v.clone());
                }
            }
            Op::Remove(k) => {
                prop_assert_eq!(
                    map.remove(&key_bytes(*k)).unwrap(),
                    model.remove(&key_bytes(*k)).is_some()
                );
            }
            Op::Get(k) => {
                prop_assert_eq!(
                    map.get(&key_bytes(*k)).unwrap(),
                    model.get(&key_bytes(*k)).cloned()
                );
            }
            Op::Reattach => map = M::attach(name.as_str()).unwrap(),
            Op::Cas(k, hit, new) => {
                let k = key_bytes(*k);
                let current = model.get(&k).cloned();
                // Expect the current value (a hit), or something it is not (a miss).
                let expected = if *hit {
                    current.clone()
                } else {
                    Some(b"never stored: 17+ bytes".to_vec())
                };
                let got = map.compare_exchange(&k, expected.as_deref(), new.as_deref());
                let room = current.is_some() || model.len() < CAPACITY;
                match (got, new) {
                    (Err(Error::ValueTooLarge { .. }), Some(v)) if v.len() > 16 => {}
                    (Err(Error::TableFull { .. }), Some(_)) if *hit && !room => {}
                    (Ok(Ok(())), _) if *hit => {
                        match new {
                            Some(v) => model.insert(k, v.clone()),
                            None => model.remove(&k),
                        };
                    }
                    (Ok(Err(now)), _) if !*hit => prop_assert_eq!(now, current),
                    (other, _) => {
                        prop_assert!(false, "cas {hit} {new:?} on {current:?}: {other:?}")
                    }
                }
            }
            Op::GetOrInsert(k, v) => {
                let k = key_bytes(*k);
                let got = map.get_or_insert(&k, v);
                match model.get(&k) {
                    Some(old) => prop_assert_eq!(got.unwrap(), (old.clone(), false)),
                    None if model.len() == CAPACITY => {
                        prop_assert!(matches!(got, Err(Error::TableFull { .. })), "{got:?}")
                    }
                    None => {
                        prop_assert_eq!(got.unwrap(), (v.clone(), true));
                        model.insert(k, v.clone());
                    }
                }
            }
            Op::RemoveEntry(k) => {
                let k = key_bytes(*k);
                prop_assert_eq!(map.remove_entry(&k).unwrap(), model.remove(&k));
            }
            Op::Append(k, b) => {
                let k = key_bytes(*k);
                let got = map.update(&k, |cur| {
                    let mut v = cur.map_or_else(Vec::new, <[u8]>::to_vec);
                    v.push(*b);
                    (shmap::Update::Set(v.clone()), v)
                });
                let mut want = model.get(&k).cloned().unwrap_or_default();
                want.push(*b);
                match got {
                    Err(Error::ValueTooLarge { .. }) => prop_assert!(want.len() > 16),
                    Err(Error::TableFull { .. }) => {
                        prop_assert!(!model.contains_key(&k) && model.len() == CAPACITY)
                    }
                    other => {
                        prop_assert_eq!(other.unwrap(), want.clone());
                        model.insert(k, want);
                    }
                }
            }
        }
        prop_assert_eq!(map.len().unwrap(), model.len());
    }
    let entries: HashMap<_, _> = map.entries().unwrap().into_iter().collect();
    prop_assert_eq!(entries, model);
    Ok(())
}

macro_rules! model_test {
    ($backend:ident, $M:ty) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]
            #[test]
            fn $backend(ops in proptest::collection::vec(op(), 1..200)) {
                check_against_model::<$M>(&ops)?;
            }
        }
    };
}

model_test!(lockfree_matches_hashmap, shmap_backends::LockFreeMap);
model_test!(spinlock_matches_hashmap, shmap_backends::SpinLockMap);
model_test!(mutex_matches_hashmap, shmap_backends::MutexMap);
