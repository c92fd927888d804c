//! Size classes of the heap's small records, and the shape of a run of one class
//! (`docs/variable-size-entries.md`, 2.2).
//!
//! Eight classes per doubling bound the rounding waste at 12.5% (about 6% on average), as
//! jemalloc and mimalloc measure: every multiple of 8 up to 64 bytes, then for each doubling
//! `(2^k, 2^(k+1)]` the eight sizes `2^k + j * 2^(k-3)`, `j = 1..=8`, up to [`MAX_SMALL`].
//! Records past it get large runs of whole pages.

/// The largest record a class holds; larger ones get large runs.
pub const MAX_SMALL: usize = 32 * 1024;
/// Classes in all: eight of 8..=64 bytes, then eight per doubling up to [`MAX_SMALL`].
pub const CLASSES: usize = 8 + 8 * (MAX_SMALL.trailing_zeros() as usize - 6);
/// The smallest run: a run of small blocks spans at least this many bytes.
pub const MIN_RUN: usize = 64 * 1024;
/// Runs are whole pages, so an empty one can be punched out of the file.
pub const PAGE: usize = 4096;
/// Bytes of a run's header before its bitmap: its class and size.
const RUN_HEAD: usize = 8;

/// A size class: an index below [`CLASSES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Class(u8);

impl Class {
    /// The class of a record of `bytes` (at least 1 byte is rounded up to 8); `None` past
    /// [`MAX_SMALL`].
    pub fn of(bytes: usize) -> Option<Self> {
        let bytes = bytes.max(1);
        if bytes > MAX_SMALL {
            return None;
        }
        if bytes <= 64 {
            return Some(Self((bytes.div_ceil(8) - 1) as u8));
        }
        // `bytes` lies in (2^k, 2^(k+1)]; the step there is 2^(k-3).
        let k = (usize::BITS - 1 - (bytes - 1).leading_zeros()) as usize;
        let j = (bytes - (1 << k)).div_ceil(1 << (k - 3));
        Some(Self((8 + (k - 6) * 8 + (j - 1)) as u8))
    }

    /// The class numbered `index`, if there is one (for a class read back from a run header).
    pub fn from_index(index: usize) -> Option<Self> {
        (index < CLASSES).then_some(Self(index as u8))
    }

    /// This class's number.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// Bytes of every block of the class: a multiple of 8.
    pub fn block(self) -> usize {
        let c = self.index();
        if c < 8 {
            return (c + 1) * 8;
        }
        let (k, j) = (6 + (c - 8) / 8, (c - 8) % 8 + 1);
        (1 << k) + j * (1 << (k - 3))
    }

    /// The shape of this class's runs (computed once per process: every alloc and free
    /// needs it).
    #[inline]
    pub fn run(self) -> RunShape {
        static SHAPES: std::sync::OnceLock<[RunShape; CLASSES]> = std::sync::OnceLock::new();
        SHAPES.get_or_init(|| std::array::from_fn(|c| RunShape::for_block(Class(c as u8).block())))
            [self.index()]
    }
}

/// How a run of one class is laid out: a header (class, allocation bitmap), padded to a cache
/// line, then `blocks` blocks of `block` bytes, in `bytes` bytes (a power of two).
///
/// A run larger than [`MIN_RUN`] (blocks of about 2 KiB and more, whose carvers reserve pages
/// block by block) has a header page of its own that also holds its free blocks' free-list
/// links, one word per block (`links`), and its blocks start on the next page: so a free
/// block keeps no page of its own, and a trim or a sweep can punch all its whole pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunShape {
    pub block: usize,
    pub blocks: usize,
    /// Bytes before the first block.
    pub header: usize,
    /// The run's length: whole pages.
    pub bytes: usize,
    /// Byte offset from the run's start of block 0's free-list link, the others following;
    /// 0: each free block's link is its own first word (runs of [`MIN_RUN`]).
    pub links: usize,
    /// `block` is `odd << shift`: ...
    shift: u32,
    /// ... and `inverse` is `odd`'s inverse modulo 2^64, so [`RunShape::index_of`] needs no
    /// division (every free and every take from a magazine checks a block's place).
    inverse: u64,
}

impl RunShape {
    /// The header for `blocks` blocks: the head word and one bitmap bit per block, padded to
    /// 64 bytes so the first block starts on a cache line.
    fn header_for(blocks: usize) -> usize {
        (RUN_HEAD + blocks.div_ceil(64) * 8).next_multiple_of(64)
    }

    /// The smallest run of at least [`MIN_RUN`] bytes, a power of two (runs are aligned to
    /// their size, so a block's run is its offset rounded down), that wastes under 2% of itself
    /// on the tail a block does not fit in. Pages nobody writes cost nothing, so a large run
    /// of a class with few records costs only the pages its records use.
    fn for_block(block: usize) -> Self {
        let mut bytes = MIN_RUN.max((block + 64).next_power_of_two());
        loop {
            let shape = match bytes > MIN_RUN {
                false => Self::inline_links(block, bytes),
                true => Self::links_in_header(block, bytes),
            };
            let waste = bytes - shape.block_offset(shape.blocks);
            if waste * 50 <= bytes {
                return shape;
            }
            bytes *= 2;
        }
    }

    /// As many blocks as fit after a header of head word and bitmap; links in the blocks.
    fn inline_links(block: usize, bytes: usize) -> Self {
        let mut blocks = bytes / block;
        while Self::header_for(blocks) + blocks * block > bytes {
            blocks -= 1;
        }
        Self::new(block, blocks, Self::header_for(blocks), bytes, 0)
    }

    /// A header page (head word, bitmap, one link word per block), then the blocks.
    fn links_in_header(block: usize, bytes: usize) -> Self {
        let blocks = (bytes - PAGE) / block;
        let links = RUN_HEAD + blocks.div_ceil(64) * 8;
        assert!(
            links + blocks * 8 <= PAGE,
            "{blocks} links fit a header page"
        );
        Self::new(block, blocks, PAGE, bytes, links)
    }

    /// Byte offset of block `b` from the start of the run.
    pub fn block_offset(&self, b: usize) -> usize {
        self.header + b * self.block
    }

    /// The block that starts `within` bytes past the first one, if one does: `within` a
    /// multiple of `block` below `blocks` blocks. Exact division by multiplication: for `n`
    /// a multiple of `odd`, `n * inverse` (mod 2^64) is `n / odd`; for any other `n` it is
    /// above `u64::MAX / odd`, past every block index (Granlund and Montgomery, 1994).
    #[inline]
    pub fn index_of(&self, within: u64) -> Option<u64> {
        if within & ((1 << self.shift) - 1) != 0 {
            return None;
        }
        let i = (within >> self.shift).wrapping_mul(self.inverse);
        (i < self.blocks as u64).then_some(i)
    }

    /// The shape with these fields, and `shift` and `inverse` computed for `block`.
    fn new(block: usize, blocks: usize, header: usize, bytes: usize, links: usize) -> Self {
        let shift = block.trailing_zeros();
        let odd = (block >> shift) as u64;
        // Newton's iteration: `x` is right in 3 low bits (odd * odd = 1 mod 8), and each
        // step doubles them: 6, 12, 24, 48, 96.
        let mut inverse = odd;
        for _ in 0..5 {
            inverse = inverse.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inverse)));
        }
        Self {
            block,
            blocks,
            header,
            bytes,
            links,
            shift,
            inverse,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_gets_the_smallest_class_that_holds_it() {
        let mut previous = 0;
        for c in 0..CLASSES {
            let class = Class::from_index(c).unwrap();
            let block = class.block();
            assert!(block > previous && block % 8 == 0, "class {c}: {block}");
            for bytes in previous + 1..=block {
                assert_eq!(Class::of(bytes), Some(class), "{bytes} bytes");
            }
            previous = block;
        }
        assert_eq!(previous, MAX_SMALL);
        assert_eq!(Class::of(MAX_SMALL + 1), None);
        assert_eq!(Class::of(0), Class::of(1));
        assert_eq!(Class::from_index(CLASSES), None);
    }

    #[test]
    fn index_of_is_division() {
        for c in (0..CLASSES).filter_map(Class::from_index) {
            let run = c.run();
            let (b, n) = (run.block as u64, run.blocks as u64);
            let divided = |w: u64| (w % b == 0 && w / b < n).then_some(w / b);
            let around = |i: u64| (i * b).saturating_sub(9)..=i * b + 9;
            for w in (0..=n + 1)
                .flat_map(around)
                .chain([u64::MAX, u64::MAX - 7, 1 << 40])
            {
                assert_eq!(run.index_of(w), divided(w), "class {}: {w}", c.index());
            }
        }
    }

    #[test]
    fn rounding_wastes_at_most_an_eighth_past_64_bytes() {
        for bytes in 65..=MAX_SMALL {
            let block = Class::of(bytes).unwrap().block();
            assert!(
                (block - bytes) * 8 < bytes,
                "{bytes} bytes in a block of {block}"
            );
        }
    }

    #[test]
    fn runs_are_powers_of_two_that_waste_under_two_percent() {
        for c in 0..CLASSES {
            let run = Class::from_index(c).unwrap().run();
            assert!(
                run.bytes.is_power_of_two() && run.bytes % PAGE == 0,
                "{run:?}"
            );
            assert!(run.bytes <= 2 << 20, "{run:?}");
            assert!(run.bytes >= MIN_RUN && run.blocks >= 1, "{run:?}");
            assert!(
                run.header >= RUN_HEAD + run.blocks.div_ceil(64) * 8,
                "{run:?}"
            );
            if run.bytes > MIN_RUN {
                // The links after the bitmap, inside the header page; blocks page-aligned.
                assert_eq!(run.header, PAGE, "{run:?}");
                assert!(
                    run.links >= RUN_HEAD + run.blocks.div_ceil(64) * 8,
                    "{run:?}"
                );
                assert!(run.links + 8 * run.blocks <= PAGE, "{run:?}");
            } else {
                assert_eq!(run.links, 0, "{run:?}");
            }
            assert_eq!(run.header % 64, 0, "{run:?}");
            let end = run.block_offset(run.blocks);
            assert!(end <= run.bytes, "{run:?}");
            assert!((run.bytes - end) * 50 <= run.bytes, "{run:?}");
        }
        // The 8-byte class fills a 64 KiB run exactly: 1 KiB of header and bitmap.
        let small = Class::of(8).unwrap().run();
        assert_eq!(
            (small.bytes, small.header, small.blocks),
            (65536, 1024, 8064)
        );
    }
}
