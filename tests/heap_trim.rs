//! Giving memory back (`src/heap/trim.rs`, issue 32 item 3): runs nothing lives in go back to
//! the kernel and their space to any class; what lives stays whole; allocators and freers in
//! other threads meanwhile never get one block twice.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::{check, stamp, Named};
use shmap::heap::{Heap, DEFAULT_RESERVE, TRIM_MIN};

/// Record sizes over many classes (8 B to 3 KiB), from a seeded sequence.
fn sizes(n: usize, seed: u64) -> Vec<usize> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            8 + (x % 3000) as usize
        })
        .collect()
}

#[test]
fn freeing_everything_gives_the_pages_back_and_the_space_is_reused() {
    let name = Named::new("trim-all");
    let heap = Heap::create(&name.0, DEFAULT_RESERVE).unwrap();
    let empty = heap.resident_bytes().unwrap();
    let records: Vec<(u64, usize)> = sizes(60_000, 7)
        .into_iter()
        .map(|b| (heap.alloc(b).unwrap(), b))
        .collect();
    let full = heap.resident_bytes().unwrap();
    assert!(
        full > 60 << 20,
        "{full} bytes for 60,000 records of 1.5 KiB on average"
    );
    for &(at, b) in &records {
        heap.free(at, b).unwrap();
    }
    let trimmed = heap.trim().unwrap();
    let after = heap.resident_bytes().unwrap();
    assert!(trimmed.runs > 100, "{trimmed:?}");
    // Every run goes, the carve runs too: what stays is the header page, the head pages of
    // free extents below the top, and this handle's magazine area (a 12 KiB block, and the
    // header page of its run).
    assert!(
        after < empty + (256 << 10) + (16 << 10),
        "{after} bytes held after freeing {full}"
    );

    // Allocated again, the records fit in the space given back: the file does not grow.
    let len = std::fs::metadata(name.shm_path()).unwrap().len();
    let again: Vec<(u64, usize)> = sizes(60_000, 11)
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let at = heap.alloc(b).unwrap();
            stamp(&heap, at, b, i as u64);
            (at, b)
        })
        .collect();
    for (i, &(at, b)) in again.iter().enumerate() {
        check(&heap, at, b, i as u64);
    }
    let len_again = std::fs::metadata(name.shm_path()).unwrap().len();
    assert!(
        len_again <= len + (4 << 20),
        "the file grew from {len} to {len_again}"
    );
}

#[test]
fn a_trim_keeps_every_live_record_whole() {
    let name = Named::new("trim-half");
    let heap = Heap::create(&name.0, DEFAULT_RESERVE).unwrap();
    let mut records: Vec<(u64, usize)> = sizes(40_000, 3)
        .into_iter()
        .map(|b| {
            let at = heap.alloc(b).unwrap();
            stamp(&heap, at, b, 1);
            (at, b)
        })
        .collect();
    let full = heap.resident_bytes().unwrap();
    // Free a contiguous nine tenths of what was allocated in order (whole runs empty), and a
    // scattered half of the rest (runs partly live stay).
    let keep_from = records.len() * 9 / 10;
    for (i, &(at, b)) in records.iter().enumerate() {
        if i < keep_from || i % 2 == 0 {
            heap.free(at, b).unwrap();
        }
    }
    records = records
        .into_iter()
        .enumerate()
        .filter(|&(i, _)| i >= keep_from && i % 2 == 1)
        .map(|(_, r)| r)
        .collect();
    // (Frees trim by themselves too: some runs went already.)
    let trimmed = heap.trim().unwrap();
    assert!(trimmed.kept_blocks > 0, "{trimmed:?}");
    let after = heap.resident_bytes().unwrap();
    assert!(
        after < full / 4,
        "{full} -> {after} with 5% live: {trimmed:?}"
    );
    for &(at, b) in &records {
        check(&heap, at, b, 1);
    }
    // A large record takes its pages from the space given back, not past the top.
    let large = heap.alloc(200_000).unwrap();
    assert!(large < full / 2, "a large record at {large:#x}");
    for &(at, b) in &records {
        check(&heap, at, b, 1);
        heap.free(at, b).unwrap();
    }
    heap.free(large, 200_000).unwrap();
}

/// Threads allocate, stamp, check and free records while one of them trims again and again:
/// a block given to two owners at once shows as an overwritten stamp.
#[test]
fn trims_beside_allocators_never_hand_out_a_block_twice() {
    let name = Named::new("trim-threads");
    let first = Heap::create(&name.0, DEFAULT_RESERVE).unwrap();
    let trims = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 1..=4u64 {
            let (location, first, trims) = (name.0.clone(), &first, &trims);
            s.spawn(move || {
                let own;
                let heap = if t % 2 == 0 {
                    own = Heap::attach(&location, DEFAULT_RESERVE).unwrap();
                    &own
                } else {
                    first
                };
                let mut held: Vec<(u64, usize)> = Vec::new();
                for (i, bytes) in sizes(60_000, t).into_iter().enumerate() {
                    // Waves: grow to 2,000 records, then free down to none.
                    let growing = (i / 2_000) % 2 == 0;
                    if growing {
                        let at = heap.alloc(bytes).unwrap();
                        stamp(heap, at, bytes, t);
                        held.push((at, bytes));
                    } else if let Some((at, b)) = held.pop() {
                        check(heap, at, b, t);
                        heap.free(at, b).unwrap();
                    }
                    if t == 1 && i % 1_000 == 0 {
                        trims.fetch_add(heap.trim().unwrap().runs, Ordering::Relaxed);
                    }
                }
                for (at, b) in held {
                    check(heap, at, b, t);
                    heap.free(at, b).unwrap();
                }
            });
        }
    });
    assert!(
        trims.load(Ordering::Relaxed) > 0,
        "no run was ever given back"
    );
}

/// Frees that go past the magazines trim by themselves once enough came back.
#[test]
fn frees_trim_by_themselves() {
    let name = Named::new("trim-auto");
    let heap = Heap::create(&name.0, DEFAULT_RESERVE).unwrap();
    let n = 4 * TRIM_MIN as usize;
    let records: Vec<(u64, usize)> = (0..n).map(|_| (heap.alloc(64).unwrap(), 64)).collect();
    let full = heap.resident_bytes().unwrap();
    for &(at, b) in &records {
        heap.free(at, b).unwrap();
    }
    let after = heap.resident_bytes().unwrap();
    assert!(
        after < full / 2,
        "{after} bytes held after freeing all of {full}"
    );
}
