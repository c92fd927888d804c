//! Single-process cost of the lock-free map against `std::collections::HashMap` on the same
//! keys: 16-byte keys, 64-byte values, keys visited in a shuffled order. Gets at two sizes:
//! 1,000 entries (both tables in cache) and 100,000 (neither is: every get misses), since a
//! ratio at one size says little about the other. Updates and inserts at 100,000.
//!
//! A shared-memory map cannot hand out references, so its get copies the value out. Both
//! `hashmap/get` (copies the value into a reused buffer, like `get_into`) and
//! `hashmap/get_ref` (returns a reference, the in-process ideal) are measured.
//!
//! The heap's own step is measured alone too (`heap/alloc_free`): an update's take of a
//! block from the handle's magazine and its give of the old one, beside the process
//! allocator's `malloc` and `free` of as many bytes.
//!
//! Run: `cargo bench -p shmap-benches --bench single_process`

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use shmap::heap::{Heap, DEFAULT_RESERVE};
use shmap::{Location, MapBackend, MapOps, MapParams};
use shmap_backends::LockFreeMap;

const ENTRIES: usize = 100_000;
/// The in-cache size of the get benchmark.
const SMALL: usize = 1_000;
const KEY: usize = 16;
const VALUE: usize = 64;

fn keys() -> Vec<[u8; KEY]> {
    // A fixed shuffle (multiplicative hashing of the index), so runs are comparable.
    (0..ENTRIES as u64)
        .map(|i| {
            let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut k = [0u8; KEY];
            k[..8].copy_from_slice(&x.to_le_bytes());
            k[8..].copy_from_slice(&i.to_le_bytes());
            k
        })
        .collect()
}

/// Visits `0..n` in a fixed order with no sequential locality.
struct Cycle(usize, usize);
impl Cycle {
    fn over(n: usize) -> Self {
        Cycle(0, n)
    }

    fn next(&mut self) -> usize {
        self.0 = (self.0 + 7919) % self.1; // a prime stride: every key once per round
        self.0
    }
}

/// `get` at `n` entries: std's get by reference and copying the value out, and ours.
fn gets(c: &mut Criterion, keys: &[[u8; KEY]], n: usize) {
    let value = [0x5Au8; VALUE];
    let std_map: HashMap<Vec<u8>, Vec<u8>> = keys[..n]
        .iter()
        .map(|k| (k.to_vec(), value.to_vec()))
        .collect();
    let name = format!("shmap-bench-get-{n}-{}", std::process::id());
    let params = MapParams {
        capacity: (n * 4 / 3).next_power_of_two(), // load 0.76 at 100k, 0.49 at 1k
        max_key_size: KEY,
        max_value_size: VALUE,
        max_capacity: (n * 4 / 3).next_power_of_two(),
    };
    let map = LockFreeMap::create(&name, params).expect("create bench map");
    map.unlink()
        .expect("unlink: the mapping stays until the end of the bench");
    for k in &keys[..n] {
        map.insert(k, &value).unwrap();
    }
    let mut g = c.benchmark_group(format!("get_{n}"));
    let mut buf = Vec::with_capacity(VALUE);
    let mut i = Cycle::over(n);
    g.bench_function("hashmap_ref", |b| {
        b.iter(|| black_box(std_map.get(&keys[i.next()][..])))
    });
    g.bench_function("hashmap_copy", |b| {
        b.iter(|| {
            let v = std_map.get(&keys[i.next()][..]).unwrap();
            buf.clear();
            buf.extend_from_slice(v);
            black_box(&buf);
        })
    });
    g.bench_function("lockfree", |b| {
        b.iter(|| black_box(map.get_into(&keys[i.next()], &mut buf).unwrap()))
    });
    g.finish();
}

/// One block of an update's record (a 16-byte key and a 64-byte value, and the record's
/// header word) taken and given back: from and to the magazine, as in a steady update loop.
fn heap_alloc_free(c: &mut Criterion) {
    const RECORD: usize = 8 + KEY + VALUE;
    let location = Location::Shm(format!("shmap-bench-heap-{}", std::process::id()));
    let heap = Heap::create(&location, DEFAULT_RESERVE).expect("create bench heap");
    location
        .unlink_one()
        .expect("unlink: the mapping stays until the end of the bench");
    let mut g = c.benchmark_group("heap");
    g.bench_function("alloc_free", |b| {
        b.iter(|| {
            let at = heap.alloc(RECORD).unwrap();
            heap.free(black_box(at), RECORD).unwrap();
        })
    });
    g.bench_function("malloc_free", |b| {
        b.iter(|| drop(black_box(Box::new([0u8; RECORD]))))
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    heap_alloc_free(c);
    let keys = keys();
    let value = [0x5Au8; VALUE];
    let mut std_map: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let name = format!("shmap-bench-{}", std::process::id());
    // 131072 buckets: a load factor of 0.76, between hashbrown's usual 0.44 and 0.875.
    let params = MapParams {
        capacity: 131_072,
        max_key_size: KEY,
        max_value_size: VALUE,
        max_capacity: 131_072,
    };
    let map = LockFreeMap::create(&name, params).expect("create bench map");
    map.unlink()
        .expect("unlink: the mapping stays until the end of the bench");
    for k in &keys {
        std_map.insert(k.to_vec(), value.to_vec());
        map.insert(k, &value).unwrap();
    }

    gets(c, &keys, SMALL);
    gets(c, &keys, ENTRIES);

    let mut i = Cycle::over(ENTRIES);
    let mut g = c.benchmark_group("update");
    g.bench_function("hashmap", |b| {
        b.iter(|| {
            let v = std_map.get_mut(&keys[i.next()][..]).unwrap();
            v.clear();
            v.extend_from_slice(black_box(&value));
        })
    });
    g.bench_function("lockfree", |b| {
        b.iter(|| map.insert(&keys[i.next()], black_box(&value)).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("insert_remove");
    let fresh: Vec<[u8; KEY]> = keys
        .iter()
        .map(|k| {
            let mut f = *k;
            f[15] ^= 0xFF;
            f
        })
        .collect();
    g.bench_function("hashmap", |b| {
        b.iter(|| {
            let k = &fresh[i.next()];
            std_map.insert(k.to_vec(), value.to_vec());
            black_box(std_map.remove(&k[..]));
        })
    });
    g.bench_function("lockfree", |b| {
        b.iter(|| {
            let k = &fresh[i.next()];
            map.insert(k, &value).unwrap();
            black_box(map.remove(k).unwrap());
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
