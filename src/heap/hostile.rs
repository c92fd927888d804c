//! Hostile heaps, shape by shape (issue 32, item 7): header words, free lists and run words
//! that point outside the heap, overlap or loop must be [`Error::Corrupt`] within a bound,
//! never a fault, a hang or a file cut or lengthened. (`backends/tests/heap_corruption.rs`
//! fuzzes whole maps.)

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::classes::{Class, MIN_RUN, PAGE};
use super::store::{W_CARVE, W_HEADS, W_LARGE, W_LEN, W_TOP};
use super::{Heap, DEFAULT_RESERVE};
use crate::error::{Error, Result};
use crate::Location;

struct Scratch {
    heap: Arc<Heap>,
    at: Location,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.at.unlink_one();
    }
}

fn heap(tag: &str) -> Scratch {
    let at = Location::Shm(format!("shmap-hostile-{}-{tag}", std::process::id()));
    let _ = at.unlink_one();
    Scratch {
        heap: Arc::new(Heap::create(&at, DEFAULT_RESERVE).unwrap()),
        at,
    }
}

impl Scratch {
    fn set(&self, w: usize, v: u64) {
        self.heap.header(w).store(v, Ordering::Relaxed);
    }

    fn file_len(&self) -> u64 {
        std::fs::metadata(self.at.path()).unwrap().len()
    }

    /// Blocks of `bytes` allocated, then freed onto the shared list (magazines returned).
    fn freed(&self, bytes: usize, n: usize) -> Vec<u64> {
        let blocks: Vec<u64> = (0..n).map(|_| self.heap.alloc(bytes).unwrap()).collect();
        for &b in &blocks {
            self.heap.free(b, bytes).unwrap();
        }
        self.heap.return_magazines();
        blocks
    }

    /// The first block on class `c`'s shared list.
    fn head_block(&self, c: Class) -> u64 {
        (self
            .heap
            .header(W_HEADS + c.index())
            .load(Ordering::Relaxed)
            & ((1 << 40) - 1))
            << 3
    }

    fn link(&self, block: u64, to: u64) {
        self.heap.word(block).unwrap().store(to, Ordering::Relaxed);
    }
}

/// Runs `f` on the heap in a thread of its own: its result if it returns within two seconds,
/// a test failure (naming `what`) if it does not.
fn bounded<T: Send + 'static>(
    s: &Scratch,
    what: &str,
    f: impl FnOnce(&Heap) -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let heap = Arc::clone(&s.heap);
    std::thread::spawn(move || {
        let _ = tx.send(f(&heap));
    });
    match rx.recv_timeout(Duration::from_secs(2)) {
        Ok(out) => out,
        Err(_) => panic!("{what} did not return within 2 s"),
    }
}

fn assert_corrupt<T: std::fmt::Debug>(got: Result<T>, what: &str) {
    assert!(
        matches!(got, Err(Error::Corrupt { .. })),
        "{what}: expected Corrupt, got {got:?}"
    );
}

/// Allocations from a list that loops are `Corrupt` (the bitmap says the block was handed
/// out), and so is a trim, which pops whole lists.
fn a_looping_list_is_corrupt(tag: &str, close_loop: impl Fn(&Scratch, &[u64])) {
    let s = heap(tag);
    let blocks = s.freed(16, 3);
    close_loop(&s, &blocks);
    let trim = bounded(&s, "a trim of a looping list", |h| h.trim());
    assert_corrupt(trim, "trim");
    // The trim gave back each block it popped once: the list no longer loops.
    let mut seen = Vec::new();
    for _ in 0..8 {
        match bounded(&s, "an allocation", |h| h.alloc(16)) {
            Ok(b) => {
                assert!(!seen.contains(&b), "{b:#x} handed out twice");
                seen.push(b);
            }
            Err(e) => panic!("after the trim, the list is whole: {e}"),
        }
    }
}

#[test]
fn a_free_list_that_loops_to_itself_is_corrupt() {
    a_looping_list_is_corrupt("self-loop", |s, _| {
        let first = s.head_block(Class::of(16).unwrap());
        s.link(first, first);
    });
}

#[test]
fn a_free_list_that_loops_back_is_corrupt() {
    a_looping_list_is_corrupt("loop-back", |s, _| {
        let first = s.head_block(Class::of(16).unwrap());
        let second = s.heap.word(first).unwrap().load(Ordering::Relaxed);
        s.link(second, first);
    });
}

#[test]
fn allocating_from_a_looping_list_is_corrupt_not_a_block_twice() {
    let s = heap("loop-alloc");
    s.freed(16, 2);
    let first = s.head_block(Class::of(16).unwrap());
    s.link(first, first);
    let got: Vec<_> = (0..4)
        .map(|_| bounded(&s, "an allocation", |h| h.alloc(16)))
        .collect();
    let ok: Vec<u64> = got
        .iter()
        .filter_map(|g| g.as_ref().ok().copied())
        .collect();
    assert!(got.iter().any(Result::is_err), "{got:?}");
    assert!(!ok[1..].contains(&ok[0]), "{got:?}");
}

#[test]
fn a_large_free_list_that_loops_is_corrupt() {
    for tag in ["large-self", "large-back"] {
        let s = heap(tag);
        let records: Vec<u64> = (0..2).map(|_| s.heap.alloc(40_000).unwrap()).collect();
        for &r in &records {
            s.heap.free(r, 40_000).unwrap();
        }
        let first = s.heap.header(W_LARGE).load(Ordering::Relaxed);
        let second = s.heap.word(first + 8).unwrap().load(Ordering::Relaxed);
        match tag {
            "large-self" => s.link(first + 8, first),
            _ => s.link(second + 8, first),
        }
        let len = s.file_len();
        // Larger than either run: the allocation walks the whole list.
        let alloc = bounded(&s, "a large allocation", |h| h.alloc(200_000));
        assert_corrupt(alloc, tag);
        let trim = bounded(&s, "a trim", |h| h.trim());
        assert!(
            trim.is_ok() || matches!(trim, Err(Error::Corrupt { .. })),
            "{trim:?}"
        );
        let _ = bounded(&s, "an allocation", |h| h.alloc(200_000));
        assert_eq!(s.file_len(), len, "{tag}: the file kept its length");
    }
}

#[test]
fn a_free_list_head_outside_or_misaligned_is_corrupt() {
    let s = heap("heads");
    let c = Class::of(16).unwrap();
    let blocks = s.freed(16, 2);
    let len = s.file_len();
    // Past the file, into the header page, and into the middle of a block.
    for at in [len + 8 * PAGE as u64, 64, blocks[0] + 8] {
        s.set(W_HEADS + c.index(), at >> 3);
        let got = bounded(&s, "an allocation", |h| h.alloc(16));
        assert_corrupt(got, &format!("a head naming {at:#x}"));
    }
    assert_eq!(s.file_len(), len);
}

#[test]
fn top_or_heap_len_past_the_file_is_corrupt() {
    let s = heap("top");
    let b = s.heap.alloc(16).unwrap();
    s.heap.word(b).unwrap().store(0xfeed, Ordering::Relaxed);
    let (len, top) = (s.file_len(), s.heap.header(W_TOP).load(Ordering::Relaxed));
    // Each word made hostile in turn; every allocation needs a new run (a new class each).
    let hostile = [
        (W_TOP, u64::MAX),
        (W_TOP, len + 16 * PAGE as u64),
        (W_TOP, 12345),
        (W_LEN, u64::MAX),
        (W_LEN, len + PAGE as u64),
        (W_LEN, PAGE as u64), // below the top: growing must not cut the file
    ];
    for (i, &(w, v)) in hostile.iter().enumerate() {
        let (was_len, was_top) = (s.file_len(), top);
        s.set(w, v);
        let bytes = 100 * (i + 1);
        let got = bounded(&s, "an allocation", move |h| h.alloc(bytes));
        assert_corrupt(got, &format!("word {w} = {v:#x}"));
        assert!(s.file_len() >= was_len, "word {w} = {v:#x} cut the file");
        assert_eq!(s.heap.header(0).load(Ordering::Relaxed), super::HEAP_MAGIC);
        s.set(W_LEN, len);
        s.set(W_TOP, was_top);
    }
    // The block written before is still there (a cut file would fault here).
    assert_eq!(s.heap.word(b).unwrap().load(Ordering::Relaxed), 0xfeed);
    let fresh = Heap::attach(&s.at, DEFAULT_RESERVE);
    assert!(fresh.is_ok(), "{fresh:?}");
}

#[test]
fn a_carve_word_naming_a_run_outside_the_file_is_corrupt() {
    let s = heap("carve");
    // The first free claims this handle's magazine area, which makes a run of its own.
    s.freed(8, 1);
    let len = s.file_len();
    // A small class (runs reserved whole) and a large one (blocks reserved as carved).
    for bytes in [16, 20_000] {
        let c = Class::of(bytes).unwrap();
        assert_eq!(bytes > 4096, c.run().bytes > MIN_RUN);
        for page in [len / PAGE as u64 + 64, (1 << 40) - 1, 0] {
            s.set(W_CARVE + c.index(), page << 24 | 3);
            let got = bounded(&s, "an allocation", move |h| h.alloc(bytes));
            assert_corrupt(got, &format!("class {} carving page {page:#x}", c.index()));
            assert_eq!(
                s.file_len(),
                len,
                "a hostile carve word lengthened the file"
            );
        }
    }
}

#[test]
fn a_large_run_or_extent_with_pages_past_the_top_is_corrupt() {
    let s = heap("large-pages");
    let r = s.heap.alloc(40_000).unwrap();
    let kept = s.heap.alloc(40_000).unwrap();
    let (run, len) = (r - super::LARGE_HEAD, s.file_len());
    // A live run's head claiming more pages than the heap has, or so many they wrap.
    for pages in [1 << 20, 1 << 52] {
        s.link(run, pages << 8);
        let got = bounded(&s, "a free", move |h| h.free(r, 40_000));
        assert_corrupt(got, &format!("freeing a run of {pages:#x} pages"));
    }
    // A free extent claiming as much: allocating from it, or trimming, must not use it.
    s.link(run, 10 << 8);
    s.heap.free(r, 40_000).unwrap();
    s.link(run, 1 << 20 << 8 | 1 << 63);
    let got = bounded(&s, "a large allocation", |h| h.alloc(200_000));
    assert_corrupt(got, "allocating from an extent past the top");
    // (A trim reads the extents only when it has emptied runs to merge into them.)
    let got = bounded(&s, "a trim", |h| h.trim());
    assert!(
        got.is_ok() || matches!(got, Err(Error::Corrupt { .. })),
        "{got:?}"
    );
    assert_eq!(s.file_len(), len, "the file kept its length");
    assert!(s.heap.words(kept, 5000).is_some());
}

#[test]
fn freeing_a_block_in_the_header_page_is_corrupt() {
    let s = heap("header-block");
    // Where a block of the 8-byte class would lie, were the header page a run of it (its
    // blocks start 1 KiB in): what a hostile reference to the header names.
    for at in [1024, 1024 + 8 * 40, 4088] {
        assert_corrupt(s.heap.free(at, 8), &format!("freeing {at:#x}"));
    }
    let b = s.heap.alloc(8).unwrap();
    assert!(b >= PAGE as u64, "{b:#x} handed out of the header page");
}
