//! Model-based property test: random operation sequences against `std::collections::HashMap`,
//! on a small table so that collisions, tombstone reuse and a full table all happen.
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
}

fn op() -> impl Strategy<Value = Op> {
    // 24 possible keys for 12 buckets: the table fills up often.
    let key = 0u8..24;
    prop_oneof![
        4 => (key.clone(), proptest::collection::vec(any::<u8>(), 0..=20)).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => key.clone().prop_map(Op::Remove),
        3 => key.prop_map(Op::Get),
        1 => Just(Op::Reattach),
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
        }
        prop_assert_eq!(map.len(), model.len());
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
