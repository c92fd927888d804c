//! The heap file on its own (`src/heap/`, issue 32 step 2): allocation by class and in large
//! runs, freeing and reuse, memory that follows what is allocated, handles of one heap in
//! several threads at once, and hostile headers that must be typed errors.

mod common;

use std::sync::atomic::Ordering;

use common::{check, stamp, Named};
use shmap::heap::{record_len, Heap, Rebuilt, DEFAULT_RESERVE, LARGE_HEAD};
use shmap::Error;

#[test]
fn blocks_of_every_size_are_distinct_and_reused_after_free() {
    let name = Named::new("sizes");
    let heap = Heap::create(&name.0, DEFAULT_RESERVE).unwrap();
    let sizes: Vec<usize> = (1..=40_000)
        .step_by(97)
        .chain([8, 64, 65, 4096, 32768])
        .collect();
    let blocks: Vec<(u64, usize)> = sizes.iter().map(|&b| (heap.alloc(b).unwrap(), b)).collect();
    for &(at, bytes) in &blocks {
        assert_eq!(at % 8, 0);
        stamp(&heap, at, bytes, 1);
    }
    for &(at, bytes) in &blocks {
        check(&heap, at, bytes, 1);
    }
    // A record's words in one bounds check: inside, or nothing.
    let (at, bytes) = blocks[3];
    let words = heap.words(at, bytes.div_ceil(8)).unwrap();
    assert_eq!(words[0].load(Ordering::Relaxed), at ^ 1 << 48);
    assert!(heap.words(at + 4, 1).is_none());
    assert!(heap.words(1 << 39, 1).is_none());
    assert!(heap.words(at, usize::MAX / 4).is_none());
    // Freed blocks come back (last freed first) for records of the same class.
    let (at, bytes) = blocks[10];
    heap.free(at, bytes).unwrap();
    assert_eq!(heap.alloc(bytes).unwrap(), at);
    // Freeing twice, or what no allocation returned, is corruption, and changes nothing.
    heap.free(at, bytes).unwrap();
    assert!(matches!(heap.free(at, bytes), Err(Error::Corrupt { .. })));
    assert!(matches!(
        heap.free(at + 8, bytes),
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(heap.free(1 << 39, 8), Err(Error::Corrupt { .. })));
    assert_eq!(heap.alloc(bytes).unwrap(), at);
}

#[test]
fn large_records_get_their_pages_and_give_them_back() {
    let name = Named::new("large");
    let heap = Heap::create(&name.0, DEFAULT_RESERVE).unwrap();
    let before = heap.resident_bytes().unwrap();
    let big = 8 << 20;
    let at = heap.alloc(big).unwrap();
    assert_eq!((at - LARGE_HEAD) % 4096, 0);
    // Write the whole record, as a value of 8 MiB is written.
    for w in (0..big as u64).step_by(8) {
        heap.word(at + w).unwrap().store(w, Ordering::Relaxed);
    }
    let held = heap.resident_bytes().unwrap();
    assert!(held >= before + big as u64, "{before} -> {held}");
    heap.free(at, big).unwrap();
    let after = heap.resident_bytes().unwrap();
    assert!(
        after <= before + 8192,
        "freed pages stay: {before} -> {held} -> {after}"
    );
    // The run is reused for a record that fits it, and a smaller one too.
    assert_eq!(heap.alloc(big).unwrap(), at);
    assert!(matches!(
        heap.free(at, big + 4096),
        Err(Error::Corrupt { .. })
    ));
    heap.free(at, big).unwrap();
    assert_eq!(heap.alloc(40_000).unwrap(), at);
}

#[test]
fn memory_follows_the_records_not_the_reservation() {
    let name = Named::new("memory");
    let heap = Heap::create(&name.0, DEFAULT_RESERVE).unwrap();
    // 100,000 records of a 16-byte key and a 65-byte value: 88-byte blocks.
    let bytes = record_len(16, 65);
    assert_eq!(bytes, 88);
    for i in 0..100_000u64 {
        let at = heap.alloc(bytes).unwrap();
        stamp(&heap, at, bytes, i & 0xFF);
    }
    let held = heap.resident_bytes().unwrap() as f64;
    let data = 100_000.0 * bytes as f64;
    assert!(
        held <= data * 1.03 + 256.0 * 1024.0,
        "{held} bytes held for {data} bytes of blocks"
    );
    eprintln!("100k 88-byte records: {:.1} bytes each", held / 100_000.0);
}

#[test]
fn handles_in_threads_never_share_a_block() {
    let name = Named::new("threads");
    let first = Heap::create(&name.0, DEFAULT_RESERVE).unwrap();
    std::thread::scope(|s| {
        for t in 1..=4u64 {
            let location = name.0.clone();
            let first = &first;
            s.spawn(move || {
                // Half the threads share the creator's handle, half attach their own mapping.
                let own;
                let heap = if t % 2 == 0 {
                    own = Heap::attach(&location, DEFAULT_RESERVE).unwrap();
                    &own
                } else {
                    first
                };
                let mut held: Vec<(u64, usize)> = Vec::new();
                let mut x = t;
                for _ in 0..20_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if held.len() < 64 && x % 3 != 0 {
                        // Sizes across classes, and now and then a large record.
                        let bytes = if x % 997 == 0 {
                            40_000
                        } else {
                            1 + (x % 700) as usize
                        };
                        let at = heap.alloc(bytes).unwrap();
                        stamp(heap, at, bytes, t);
                        held.push((at, bytes));
                    } else if let Some((at, bytes)) = held.pop() {
                        check(heap, at, bytes, t);
                        heap.free(at, bytes).unwrap();
                    }
                }
                for (at, bytes) in held {
                    check(heap, at, bytes, t);
                    heap.free(at, bytes).unwrap();
                }
            });
        }
    });
}

#[test]
fn hostile_headers_are_typed_errors() {
    let name = Named::new("hostile");
    let heap = Heap::create(&name.0, DEFAULT_RESERVE).unwrap();
    let at = heap.alloc(100).unwrap();
    // Freed by a handle that then drops: it gives its magazine back to the shared free list.
    let other = Heap::attach(&name.0, DEFAULT_RESERVE).unwrap();
    other.free(at, 100).unwrap();
    drop(other);
    let word = |w: u64| heap.word(w * 8).unwrap();
    // A free list whose head points outside the heap.
    let class_heads = 8;
    let head_of_100 = (0..80u64)
        .map(|c| class_heads + c)
        .find(|&w| word(w).load(Ordering::Relaxed) != 0)
        .expect("the class of 100 bytes has a free list");
    word(head_of_100).store(1 << 36, Ordering::Relaxed);
    assert!(matches!(heap.alloc(100), Err(Error::Corrupt { .. })));
    // A length the file does not have: attaching refuses, and a handle that meets it reads
    // nothing past what it checked before (every offset goes through the checked length).
    let (magic, len) = (word(0), word(2));
    let real = len.swap(1 << 38, Ordering::Relaxed);
    assert!(matches!(
        Heap::attach(&name.0, DEFAULT_RESERVE),
        Err(Error::Corrupt { .. })
    ));
    assert!(
        heap.word((1 << 38) - 8).is_none(),
        "a handle that met the lie reads nothing past the file"
    );
    assert!(
        heap.word(8).is_some(),
        "what it checked before stays readable"
    );
    assert!(matches!(heap.alloc(8), Err(Error::Corrupt { .. })));
    len.store(real, Ordering::Relaxed);
    // Not a heap at all.
    magic.store(0, Ordering::Relaxed);
    assert!(matches!(
        Heap::attach(&name.0, DEFAULT_RESERVE),
        Err(Error::NotOurs { .. })
    ));
    // An existing name cannot be created again.
    assert!(matches!(
        Heap::create(&name.0, DEFAULT_RESERVE),
        Err(Error::AlreadyExists(_))
    ));
}

#[test]
fn a_rebuild_from_the_live_records_frees_the_rest_and_gives_pages_back() {
    let name = Named::new("rebuild");
    let heap = Heap::create(&name.0, DEFAULT_RESERVE).unwrap();
    let empty = heap.resident_bytes().unwrap();
    // 20,000 small records across classes and 8 large ones; every third stays live, as if
    // the processes that held the others had died holding them.
    let blocks: Vec<(u64, usize)> = (0..20_000usize)
        .map(|i| 1 + i * 37 % 3000)
        .chain((0..8).map(|i| 40_000 + i * 100_000))
        .map(|bytes| (heap.alloc(bytes).unwrap(), bytes))
        .collect();
    for (i, &(at, bytes)) in blocks.iter().enumerate() {
        stamp(&heap, at, bytes.min(4096), i as u64);
    }
    let full = heap.resident_bytes().unwrap();
    let live: Vec<(u64, usize)> = blocks.iter().copied().step_by(3).collect();
    // A record named twice, or one that is no block, changes nothing.
    let twice = live.iter().copied().chain([live[0]]);
    assert!(matches!(heap.rebuild(twice), Err(Error::Corrupt { .. })));
    assert!(matches!(
        heap.rebuild([(live[0].0 + 4, live[0].1)]),
        Err(Error::Corrupt { .. })
    ));
    let done: Rebuilt = heap.rebuild(live.iter().copied()).unwrap();
    assert_eq!(done.live, live.len());
    assert!(
        done.free_blocks + done.free_large >= blocks.len() - live.len() - 100,
        "{done:?}"
    );
    for (i, &(at, bytes)) in blocks.iter().enumerate().step_by(3) {
        check(&heap, at, bytes.min(4096), i as u64);
    }
    let after = heap.resident_bytes().unwrap();
    assert!(after < full, "{empty} -> {full} -> {after}");
    // The freed blocks are what new records get; the live ones are never handed out.
    let live_set: std::collections::HashSet<u64> = live.iter().map(|&(at, _)| at).collect();
    for i in 0..5000usize {
        let at = heap.alloc(1 + i * 37 % 3000).unwrap();
        assert!(
            !live_set.contains(&at),
            "a live record at {at:#x} handed out again"
        );
    }
    // Nothing live: every run is punched, the heap holds about its headers.
    let none = heap.rebuild([]).unwrap();
    let bare = heap.resident_bytes().unwrap();
    eprintln!("{none:?}");
    assert!(
        bare <= empty + 160 * 8192,
        "{bare} bytes held with nothing live"
    );
    eprintln!("resident: empty {empty}, full {full}, a third live {after}, none live {bare}");
}

/// A forked child inherits a copy of its parent's magazines: blocks the parent goes on
/// handing out. The child must not hand them out too (it forgets them).
#[test]
fn a_fork_child_never_gets_the_blocks_its_parent_kept() {
    let name = Named::new("fork");
    let heap = Heap::create(&name.0, DEFAULT_RESERVE).unwrap();
    let mailbox = heap.alloc(8 * 16).unwrap();
    let kept: Vec<u64> = (0..10).map(|_| heap.alloc(40).unwrap()).collect();
    for &b in &kept {
        heap.free(b, 40).unwrap(); // into this handle's magazine
    }
    // SAFETY: the child only allocates, stores words and exits (`_exit`: no destructors,
    // no atexit handlers of the test harness).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let words = heap.words(mailbox, 16).unwrap();
        for w in words.iter().take(10) {
            w.store(heap.alloc(40).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    let words = heap.words(mailbox, 16).unwrap();
    let child: Vec<u64> = words
        .iter()
        .take(10)
        .map(|w| w.load(Ordering::Relaxed))
        .collect();
    assert!(child.iter().all(|&b| b != u64::MAX && b != 0), "{child:?}");
    let parent: Vec<u64> = (0..10).map(|_| heap.alloc(40).unwrap()).collect();
    assert!(
        parent.iter().all(|b| !child.contains(b)),
        "a block handed out in both processes: parent {parent:?}, child {child:?}"
    );
}

/// A process killed with blocks in its magazines (up to 16 KiB per class) no longer leaks
/// them: they lie in its area of the heap, which the next process to look (a trim here)
/// finds dead by its lock and drains (issue 32, item 6). Before, the blocks were in the dead
/// process's memory and stayed allocated until a rebuild.
#[test]
fn a_killed_processs_magazines_come_back() {
    let name = Named::new("magkill");
    let heap = Heap::create(&name.0, DEFAULT_RESERVE).unwrap();
    heap.trim().unwrap();
    let empty = heap.resident_bytes().unwrap();
    // SAFETY: the child only allocates and frees in a heap of its own handle, then kills
    // itself (no destructors, no atexit handlers of the test harness).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let Ok(child) = Heap::attach(&name.0, DEFAULT_RESERVE) else {
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(1) }
        };
        // Every class, more blocks than a magazine holds: each magazine ends full.
        for bytes in (8..=32 * 1024)
            .step_by(8)
            .filter(|b| b % 512 == 8 || *b <= 64)
        {
            let blocks: Vec<u64> = (0..40).filter_map(|_| child.alloc(bytes).ok()).collect();
            for b in blocks {
                let _ = child.free(b, bytes);
            }
        }
        // SAFETY: a real SIGKILL of ourselves, as a crash would end us.
        unsafe { libc::raise(libc::SIGKILL) };
        unreachable!();
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFSIGNALED(status),
        "the child was not killed: {status}"
    );
    let held = heap.resident_bytes().unwrap();
    assert!(held > empty + (1 << 20), "the child held only {held} bytes");
    // Its lock is gone with it: its area is drained, once.
    assert_eq!(heap.recover_magazines().unwrap(), 1);
    assert_eq!(heap.recover_magazines().unwrap(), 0);
    heap.trim().unwrap();
    let after = heap.resident_bytes().unwrap();
    eprintln!("empty {empty}, the killed child's {held}, after the trim {after}");
    assert!(
        after <= empty + (64 << 10),
        "{after} bytes held after the trim"
    );
}

/// A sweep with other handles open (`src/heap/sweep.rs`): it frees exactly the blocks that
/// no live record names and no live handle's magazine holds, and keeps the rest where they
/// were (a handle's magazine goes on handing out its blocks, once each).
#[test]
fn a_sweep_frees_only_what_nothing_names_and_keeps_live_magazines() {
    let name = Named::new("sweep");
    let heap = Heap::create(&name.0, DEFAULT_RESERVE).unwrap();
    let other = Heap::attach(&name.0, DEFAULT_RESERVE).unwrap();
    // The other handle's magazine of the 40-byte class holds ten blocks.
    let kept: Vec<u64> = (0..10).map(|_| other.alloc(40).unwrap()).collect();
    for &b in &kept {
        other.free(b, 40).unwrap();
    }
    // Live records, and what killed writers would have left: small blocks and a large run.
    let live: Vec<(u64, usize)> = (0..100usize)
        .map(|i| (heap.alloc(200 + i).unwrap(), 200 + i))
        .collect();
    for (i, &(at, bytes)) in live.iter().enumerate() {
        stamp(&heap, at, bytes, i as u64);
    }
    let leaked: Vec<(u64, usize)> = (0..7)
        .map(|_| (heap.alloc(300).unwrap(), 300))
        .chain([(heap.alloc(100_000).unwrap(), 100_000)])
        .collect();
    let done = heap.sweep(live.iter().copied()).unwrap();
    assert_eq!(
        (done.live, done.leaked),
        (live.len(), leaked.len()),
        "{done:?}"
    );
    assert_eq!(heap.sweeps(), 1);
    for (i, &(at, bytes)) in live.iter().enumerate() {
        check(&heap, at, bytes, i as u64);
    }
    // The magazine's blocks are still its own: handed out by it, and not by the free lists.
    let mut again: Vec<u64> = (0..10).map(|_| other.alloc(40).unwrap()).collect();
    again.sort_unstable();
    let mut kept = kept;
    kept.sort_unstable();
    assert_eq!(again, kept, "the magazine lost blocks to the sweep");
    let named: std::collections::HashSet<u64> = live
        .iter()
        .map(|&(at, _)| at)
        .chain(kept.iter().copied())
        .collect();
    for _ in 0..2000 {
        let b = heap.alloc(40).unwrap();
        assert!(!named.contains(&b), "{b:#x} handed out while it is named");
    }
    // The leaked blocks are free again: what a new record of their size gets.
    let reused: Vec<u64> = (0..7).map(|_| heap.alloc(300).unwrap()).collect();
    assert!(
        reused.iter().all(|b| leaked.iter().any(|&(l, _)| l == *b)),
        "{reused:?}"
    );
    // A live record that is no block changes nothing.
    assert!(matches!(
        heap.sweep([(live[0].0 + 8, live[0].1)]),
        Err(Error::Corrupt { .. })
    ));
    for (i, &(at, bytes)) in live.iter().enumerate() {
        check(&heap, at, bytes, i as u64);
    }
}

/// Free blocks of the runs over 64 KiB (blocks of about 2 KiB and more) give their whole
/// pages back while they wait (`punch_free`): their links lie in the run's header page, and
/// their blocks start on a page. After churn those pages were a third of a map's, in runs a
/// live record keeps. Their next allocator gets the pages back, whole.
#[test]
fn free_large_blocks_give_their_pages_back_and_get_them_again() {
    // The 16 KiB class: four pages each (three while a block's first page held its link).
    free_blocks_give_pages_back(16_000, 4);
    // The 4 KiB class: a page each (none while a block straddled two pages after the header).
    free_blocks_give_pages_back(4_000, 1);
}

fn free_blocks_give_pages_back(bytes: usize, pages: usize) {
    let name = Named::new("punchfree");
    let heap = Heap::create(&name.0, DEFAULT_RESERVE).unwrap();
    let blocks: Vec<u64> = (0..60).map(|_| heap.alloc(bytes).unwrap()).collect();
    for (i, &b) in blocks.iter().enumerate() {
        stamp(&heap, b, bytes, i as u64);
    }
    // Every sixth stays live: the run is never empty, so only the punch can give pages back.
    for (_, &b) in blocks.iter().enumerate().filter(|(i, _)| i % 6 != 0) {
        heap.free(b, bytes).unwrap();
    }
    let before = heap.resident_bytes().unwrap();
    heap.trim().unwrap();
    let after = heap.resident_bytes().unwrap();
    let freed = 50 * pages * 4096;
    eprintln!("{before} bytes held before the trim, {after} after");
    assert!(
        after + freed as u64 * 9 / 10 <= before,
        "{bytes} B: {before} -> {after}: the free blocks kept their pages"
    );
    for (i, &b) in blocks.iter().enumerate().step_by(6) {
        check(&heap, b, bytes, i as u64);
    }
    // A second trim punches nothing twice and keeps the flags.
    heap.trim().unwrap();
    assert_eq!(heap.resident_bytes().unwrap(), after);
    // Allocated again: the pages come back (reserved), and hold what is written.
    let again: Vec<u64> = (0..50).map(|_| heap.alloc(bytes).unwrap()).collect();
    for (i, &b) in again.iter().enumerate() {
        stamp(&heap, b, bytes, 1000 + i as u64);
    }
    for (i, &b) in again.iter().enumerate() {
        check(&heap, b, bytes, 1000 + i as u64);
    }
    assert!(heap.resident_bytes().unwrap() >= after + freed as u64);
    // The sweep and rebuild punch what they free, too.
    for &b in &again {
        heap.free(b, bytes).unwrap();
    }
    let live: Vec<(u64, usize)> = blocks.iter().step_by(6).map(|&b| (b, bytes)).collect();
    heap.sweep(live.iter().copied()).unwrap();
    assert!(heap.resident_bytes().unwrap() <= after + 64 * 1024);
    for (i, &b) in blocks.iter().enumerate().step_by(6) {
        check(&heap, b, bytes, i as u64);
    }
}
