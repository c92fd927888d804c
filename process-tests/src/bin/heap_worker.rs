//! A worker of `tests/heap_kill.rs`: allocates and frees records in one heap file
//! (`shmap::heap::Heap`) until its time is up or it is SIGKILLed, stamping every word of each
//! block it holds with its own id and the block's offset, and checking the stamps before it
//! frees: a block handed to two processes at once, or written by anyone but its owner, fails
//! the check. Prints `VIOLATION ...` and exits 1 on a failed check or an error, `ok ops=N`
//! when its time is up.
//!
//! Usage: `heap_worker NAME ID SECONDS`

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmap::heap::{Heap, DEFAULT_RESERVE};
use shmap::Location;
use shmap_testkit::Rng;

fn stamp(heap: &Heap, at: u64, bytes: usize, id: u64) -> Result<(), String> {
    for w in 0..bytes.div_ceil(8) as u64 {
        let word = heap
            .word(at + w * 8)
            .ok_or(format!("block {at:#x} outside the heap"))?;
        word.store(at ^ id << 48 ^ w, Ordering::Relaxed);
    }
    Ok(())
}

fn check(heap: &Heap, at: u64, bytes: usize, id: u64) -> Result<(), String> {
    for w in 0..bytes.div_ceil(8) as u64 {
        let word = heap
            .word(at + w * 8)
            .ok_or(format!("block {at:#x} outside the heap"))?;
        let v = word.load(Ordering::Relaxed);
        if v != at ^ id << 48 ^ w {
            return Err(format!(
                "block {at:#x} word {w} of worker {id}: found {v:#x}"
            ));
        }
    }
    Ok(())
}

fn run(name: &str, id: u64, seconds: f64) -> Result<u64, String> {
    let heap = Heap::attach(&Location::Shm(name.to_owned()), DEFAULT_RESERVE)
        .map_err(|e| format!("attach: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ id ^ u64::from(std::process::id()) << 20);
    let mut held: Vec<(u64, usize)> = Vec::new();
    let mut ops = 0u64;
    while Instant::now() < deadline {
        ops += 1;
        if held.len() < 48 && rng.below(3) != 0 {
            // Across many classes, and a large record now and then.
            let bytes = match rng.below(200) {
                0 => 33_000 + rng.below(100_000) as usize,
                _ => 1 + rng.below(3000) as usize,
            };
            let at = heap.alloc(bytes).map_err(|e| format!("alloc: {e}"))?;
            stamp(&heap, at, bytes, id)?;
            held.push((at, bytes));
        } else if !held.is_empty() {
            let (at, bytes) = held.swap_remove(rng.below(held.len() as u64) as usize);
            check(&heap, at, bytes, id)?;
            heap.free(at, bytes).map_err(|e| format!("free: {e}"))?;
        }
    }
    for (at, bytes) in held {
        check(&heap, at, bytes, id)?;
        heap.free(at, bytes).map_err(|e| format!("free: {e}"))?;
    }
    Ok(ops)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(name), Some(id), Some(seconds)) = (
        args.get(1),
        args.get(2).and_then(|a| a.parse::<u64>().ok()),
        args.get(3).and_then(|a| a.parse::<f64>().ok()),
    ) else {
        eprintln!("usage: heap_worker NAME ID SECONDS");
        std::process::exit(2);
    };
    match run(name, id, seconds) {
        Ok(ops) => println!("ok ops={ops}"),
        Err(e) => {
            println!("VIOLATION {e}");
            std::process::exit(1);
        }
    }
}
