//! Rebuilding the heap's bookkeeping from the records still referenced: what Ralloc does after
//! a crash, and what gives back the blocks that processes killed mid-operation left allocated
//! (`docs/variable-size-entries.md`, 2.7). Bitmaps, free lists and free large runs are derived
//! data: the caller names every live record (it marks them from the table), and everything
//! else is free. A run nothing lives in is punched out of the file and joins the free extents.
//!
//! Only for a caller that excludes every other user of the heap: the first open of a file map,
//! or a recovery that holds every writer lock (readers may go on: they write nothing, and a
//! reader's copy of a block freed here is rejected by its version check, as any free's). No
//! other handle may be open at all: its magazines (see [`Heap`]) hold blocks the rebuild
//! would free, and it clears every magazine area.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::classes::{Class, PAGE};
use super::compact::{choose_evacuation, emptied_bytes};
use super::free_list;
use super::store::{block_index, Heap, FREE_BIT, LARGE_HEAD, W_CARVE, W_HEADS, W_LARGE, W_TOP};
use crate::error::Result;

/// What a rebuild found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// Records named live.
    pub live: usize,
    /// Blocks carved once and now on a free list.
    pub free_blocks: usize,
    /// Runs of small blocks with nothing live: punched and among the free extents (merged
    /// where they touch; one that reaches the top lowers it).
    pub punched_runs: usize,
    /// Large runs nothing lives in, likewise.
    pub free_large: usize,
    /// Blocks (and large runs) that were allocated and that no live record is: what killed
    /// processes had in hand, and now free.
    pub leaked: usize,
    /// Bytes of them (whole blocks, whole pages of large runs).
    pub leaked_bytes: u64,
}

/// One run met while walking the heap.
pub(super) enum Run {
    Small { at: u64, class: Class },
    Large { at: u64, pages: u64, free: bool },
}

impl Run {
    pub(super) fn at(&self) -> u64 {
        let (Run::Small { at, .. } | Run::Large { at, .. }) = self;
        *at
    }
}

/// Which of `runs` (`index` maps a run's offset to its place) holds a block of class `c` at
/// `offset`, and the block's number there; `None` if none does.
fn small_block(
    runs: &[Run],
    index: &HashMap<u64, usize>,
    c: Class,
    offset: u64,
) -> Option<(usize, u64)> {
    let r = *index.get(&(offset & !(c.run().bytes as u64 - 1)))?;
    match runs[r] {
        Run::Small { class, .. } if class == c => Some((r, block_index(c, offset)?)),
        _ => None,
    }
}

impl Heap {
    /// Rebuilds every bitmap, free list and the large free list so that exactly the records
    /// `live` (offset, and the record's bytes as allocated) are allocated; punches the runs
    /// nothing lives in. A live offset that is no block, or named twice, is `Corrupt`, with
    /// nothing changed.
    pub fn rebuild(&self, live: impl IntoIterator<Item = (u64, usize)>) -> Result<Rebuilt> {
        self.rebuild_with(live, false).map(|(done, _)| done)
    }

    /// [`Heap::rebuild`] for a heap a crash of the machine may have torn (the first open of a
    /// file map): a live record that is no block of its class, or named twice, is left out
    /// and returned (the caller drops its entry) instead of failing the rebuild, and a run
    /// header no allocation writes is skipped as padding, never punched (pages of it may hold
    /// records the table names; those are then no blocks, and returned).
    pub fn rebuild_torn(
        &self,
        live: impl IntoIterator<Item = (u64, usize)>,
    ) -> Result<(Rebuilt, Vec<u64>)> {
        self.rebuild_with(live, true)
    }

    fn rebuild_with(
        &self,
        live: impl IntoIterator<Item = (u64, usize)>,
        torn: bool,
    ) -> Result<(Rebuilt, Vec<u64>)> {
        // Magazines hold blocks no record names, in areas no record names: the rebuild frees
        // them all, so none may be handed out from a magazine as well.
        self.forget_areas();
        self.rebuild_keeping(live, torn, Vec::new(), None)
    }

    /// The rebuild, keeping allocated the blocks `kept` names (a sweep's magazine areas and
    /// what they hold) besides the live records: those of them that are blocks of their
    /// class, each once, and not a live record's (a damaged area names anything).
    ///
    /// `evacuate`: also choose runs of small blocks sparse enough to empty (`compact.rs`),
    /// whose free blocks are then left off the free lists (and whose carving stops), so that
    /// nothing allocated until the next rebuild lands in them; their offsets go there.
    pub(super) fn rebuild_keeping(
        &self,
        live: impl IntoIterator<Item = (u64, usize)>,
        torn: bool,
        kept: Vec<(u64, usize)>,
        evacuate: Option<&mut Vec<u64>>,
    ) -> Result<(Rebuilt, Vec<u64>)> {
        let runs = self.walk_runs(torn)?;
        let mut rejected = Vec::new();
        let mut index: HashMap<u64, usize> = HashMap::with_capacity(runs.len());
        for (i, run) in runs.iter().enumerate() {
            let (Run::Small { at, .. } | Run::Large { at, .. }) = run;
            index.insert(*at, i);
        }
        // Which blocks of which run are live, found before anything is written.
        let mut marks: Vec<Vec<u64>> = runs
            .iter()
            .map(|r| match r {
                Run::Small { class, .. } => vec![0; class.run().blocks.div_ceil(64)],
                Run::Large { .. } => vec![0; 1],
            })
            .collect();
        let mut done = Rebuilt::default();
        for (offset, bytes) in live {
            let (run, bit) = match Class::of(bytes) {
                Some(c) => match small_block(&runs, &index, c, offset) {
                    Some(at) => at,
                    _ if torn => {
                        rejected.push(offset);
                        continue;
                    }
                    _ => {
                        return Err(self
                            .corrupt(format!("live record {offset:#x} is no block of its class")))
                    }
                },
                None => match index.get(&offset.wrapping_sub(LARGE_HEAD)) {
                    Some(&r) if matches!(runs[r], Run::Large { pages, .. } if pages * PAGE as u64 >= bytes as u64 + LARGE_HEAD) => {
                        (r, 0)
                    }
                    _ if torn => {
                        rejected.push(offset);
                        continue;
                    }
                    _ => {
                        return Err(self.corrupt(format!("live record {offset:#x} is no large run")))
                    }
                },
            };
            let word = &mut marks[run][bit as usize / 64];
            if *word & 1 << (bit % 64) != 0 {
                if torn {
                    rejected.push(offset);
                    continue;
                }
                return Err(self.corrupt(format!("record {offset:#x} named live twice")));
            }
            *word |= 1 << (bit % 64);
            done.live += 1;
        }
        let mut holds_kept = vec![false; runs.len()];
        for (offset, bytes) in kept {
            let small = Class::of(bytes)
                .filter(|&c| c.block() == bytes)
                .and_then(|c| small_block(&runs, &index, c, offset));
            if let Some((run, bit)) = small {
                marks[run][bit as usize / 64] |= 1 << (bit % 64);
                holds_kept[run] = true;
            }
        }
        let chosen = choose_evacuation(&runs, &marks, &holds_kept);
        let withheld = match evacuate {
            Some(out) => {
                out.extend(
                    runs.iter()
                        .zip(&chosen)
                        .filter(|(_, &c)| c)
                        .map(|(r, _)| r.at()),
                );
                chosen
            }
            None => {
                // What a compaction would give back: asked for, as a trim asks (`compact.rs`).
                let sparse: u64 = runs
                    .iter()
                    .zip(marks.iter().zip(&chosen))
                    .filter_map(|(r, (mark, &c))| match *r {
                        Run::Small { class, .. } if c => Some(emptied_bytes(class, mark)),
                        _ => None,
                    })
                    .sum();
                self.ask_compaction(sparse)?;
                vec![false; runs.len()]
            }
        };
        // Relaxed throughout: nobody else uses the heap (see the module docs); the caller
        // publishes the result as it publishes the end of its exclusion.
        for c in 0..super::classes::CLASSES {
            self.header(W_HEADS + c).store(0, Ordering::Relaxed);
        }
        self.header(W_LARGE).store(0, Ordering::Relaxed);
        // Free space joins the free extents at the end, merged where it touches, so a heap
        // with nothing live keeps its header page and nothing else (one head page per free
        // run was 2.6 MiB after 150 kills).
        let mut free = Vec::new();
        for ((run, mark), &withhold) in runs.iter().zip(&marks).zip(&withheld) {
            match *run {
                Run::Small { at, class } => {
                    if !self.rebuild_small(at, class, mark, withhold, &mut done)? {
                        free.push((at, (class.run().bytes / PAGE) as u64));
                    }
                }
                Run::Large {
                    at,
                    pages,
                    free: was_free,
                } if mark[0] == 0 => {
                    free.push((at, pages));
                    done.free_large += 1;
                    if !was_free {
                        done.leaked += 1;
                        done.leaked_bytes += pages * PAGE as u64;
                    }
                }
                Run::Large { at, pages, .. } => {
                    self.word_or_corrupt(at, "a large run")?
                        .store(pages << 8, Ordering::Relaxed);
                }
            }
        }
        self.free_extents(free)?;
        self.punch_above_top()?;
        Ok((done, rejected))
    }

    /// Writes run `at`'s bitmap from `mark` and frees its other carved blocks; `false` if
    /// nothing lives there, for the caller to free the whole run (a carve run so retired
    /// leaves its class to start a new one).
    /// `withhold`: a run being evacuated: its free blocks stay off the list (found again by
    /// the next rebuild, once its records moved out), and it is carved no further.
    fn rebuild_small(
        &self,
        at: u64,
        class: Class,
        mark: &[u64],
        withhold: bool,
        done: &mut Rebuilt,
    ) -> Result<bool> {
        let shape = class.run();
        let carve = self.header(W_CARVE + class.index());
        let cw = carve.load(Ordering::Relaxed);
        let carving = cw >> 24 == at / PAGE as u64;
        let carved = match carving {
            true => (cw & 0xFF_FFFF) as usize,
            false => shape.blocks,
        };
        // Allocated before, and no live record: leaked (read before the bitmap is rewritten).
        for (w, &bits) in mark.iter().enumerate() {
            let before = self
                .word_or_corrupt(at + 8 + w as u64 * 8, "a bitmap word")?
                .load(Ordering::Relaxed);
            let lost = (before & !bits).count_ones() as usize;
            done.leaked += lost;
            done.leaked_bytes += (lost * class.block()) as u64;
        }
        if mark.iter().all(|&w| w == 0) {
            if carving {
                carve.store(0, Ordering::Relaxed); // the next allocation makes a new run
            }
            done.punched_runs += 1;
            return Ok(false);
        }
        for (w, &bits) in mark.iter().enumerate() {
            self.word_or_corrupt(at + 8 + w as u64 * 8, "a bitmap word")?
                .store(bits, Ordering::Relaxed);
        }
        if withhold {
            if carving {
                carve.store(0, Ordering::Relaxed);
            }
            return Ok(true);
        }
        let head = self.header(W_HEADS + class.index());
        for b in (0..carved).filter(|&b| mark[b / 64] & 1 << (b % 64) == 0) {
            let offset = at + shape.block_offset(b) as u64;
            let link = self.link_or_corrupt(class, offset)?;
            // Its link may be anything (a leaked record's first word): punched whatever it says.
            let flags = self.punch_free(class, offset, 0);
            free_list::push_marked(head, offset, link, flags);
            done.free_blocks += 1;
        }
        Ok(true)
    }

    /// Every run from the end of the header to `top`, in order. Holes (alignment padding,
    /// runs punched out) are skipped without being read: on tmpfs, reading a hole through a
    /// shared mapping allocates its page. A zero head word where there is data is padding
    /// too (and is punched again); a head no allocation writes is `Corrupt`.
    /// `torn`: a head no allocation writes is skipped as a page of padding (see
    /// [`Heap::rebuild_torn`]).
    pub(super) fn walk_runs(&self, torn: bool) -> Result<Vec<Run>> {
        let top = self.header(W_TOP).load(Ordering::Relaxed);
        let mut runs = Vec::new();
        let mut at = PAGE as u64;
        while at < top {
            match self.next_data(at)? {
                Some(data) if data >= top => break,
                Some(data) if data > at => {
                    at = data / PAGE as u64 * PAGE as u64;
                    continue;
                }
                Some(_) => {}
                None => break,
            }
            let head = self
                .word_or_corrupt(at, "a run header")?
                .load(Ordering::Relaxed);
            let pages = (head & !FREE_BIT) >> 8;
            // Checked: a hostile page count must not wrap (`None` is past any top).
            let bytes = pages.checked_mul(PAGE as u64);
            let class = (head & 0xFF) as usize;
            if head == 0 {
                // A page of a punched run that a reader's stale copy faulted back in (it reads
                // as zeros): give it back again.
                self.punch(at, at + PAGE as u64);
                at += PAGE as u64;
                continue;
            }
            let run = match class.checked_sub(1).map(Class::from_index) {
                None if pages > 0 => Run::Large {
                    at,
                    pages,
                    free: head & FREE_BIT != 0,
                },
                Some(Some(c))
                    if head & FREE_BIT == 0
                        && bytes == Some(c.run().bytes as u64)
                        && at % c.run().bytes as u64 == 0 =>
                {
                    Run::Small { at, class: c }
                }
                _ if torn => {
                    at += PAGE as u64;
                    continue;
                }
                _ => return Err(self.corrupt(format!("run header {head:#x} at {at:#x}"))),
            };
            let end = bytes
                .and_then(|b| at.checked_add(b))
                .filter(|&end| end <= top);
            at = match end {
                Some(end) => end,
                None if torn => {
                    at += PAGE as u64;
                    continue;
                }
                None => {
                    return Err(self.corrupt(format!("run at {at:#x} ends past the heap's top")))
                }
            };
            runs.push(run);
        }
        Ok(runs)
    }

    /// The first offset at or after `from` that holds data (`lseek(SEEK_DATA)`), `None` past
    /// the last; where the file system cannot say, `from` itself.
    pub(super) fn next_data(&self, from: u64) -> Result<Option<u64>> {
        // SAFETY: lseek on our own descriptor; it moves only this description's offset, which
        // nothing else of ours uses (the heap is read and written through the mapping).
        let at = unsafe { libc::lseek(self.raw_fd(), from as libc::off_t, libc::SEEK_DATA) };
        if at >= 0 {
            return Ok(Some(at as u64));
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ENXIO) => Ok(None),
            Some(libc::EINVAL) => Ok(Some(from)), // no SEEK_DATA here: read every page
            _ => Err(crate::shm_file::io_err(
                "lseek(SEEK_DATA)",
                &self.location().label(),
            )),
        }
    }
}
