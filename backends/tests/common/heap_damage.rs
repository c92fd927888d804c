//! The damage `heap_corruption.rs` does to a map's heap and table, and what it aims at: a
//! vocabulary of hostile words (lengths, heads, carve words, links, run headers, bitmaps,
//! record headers, bucket references), resolved against a populated map.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use proptest::prelude::*;
use shmap::heap::classes::{Class, CLASSES, PAGE};
use shmap::heap::{Ref, LARGE_HEAD};
use shmap::{AttachOptions, Location, MapBackend, MapOps, MapParams, Meta, SlotState};
use shmap_backends::{Protocol, SharedMap};

use super::hostile::write_at;

/// The heap header's words (`src/heap/store.rs`); `header_words_are_where_we_say` checks them.
pub const W_LEN: usize = 2;
pub const W_TOP: usize = 3;
pub const W_LARGE: usize = 4;
pub const W_HEADS: usize = 8;
pub const W_CARVE: usize = W_HEADS + CLASSES;
pub const HEADER_WORDS: usize = W_CARVE + CLASSES;

pub const PARAMS: MapParams = MapParams {
    capacity: 256,
    max_key_size: 16,
    max_value_size: 200_000,
    max_capacity: 256,
};
/// Value sizes of the first keys: records of many classes, some with escaped lengths (4095
/// bytes and more), and large runs (over 32 KiB).
pub const SIZES: [usize; 9] = [0, 5, 30, 100, 500, 3000, 5000, 20_000, 40_000];
pub const KEYS: usize = 64;

pub fn key(i: usize) -> Vec<u8> {
    format!("k{i:03}").into_bytes()
}

pub fn value(i: usize) -> Vec<u8> {
    vec![i as u8; SIZES[i % SIZES.len()]]
}

/// What the damage can aim at, found in the map before it is damaged.
#[derive(Debug, Default)]
pub struct Targets {
    heap_len: u64,
    /// Live entries: (bucket, reference, the record's allocated bytes).
    live: Vec<(usize, Ref, usize)>,
    /// References of entries removed since (their blocks are free, in a magazine, or gone).
    freed: Vec<Ref>,
    /// The table's file and its buckets' reference words: (offset of bucket 0's, stride).
    table: PathBuf,
    refs_at: (u64, u64),
}

impl Targets {
    fn pick<T: Copy>(all: &[T], f: f64) -> Option<T> {
        (!all.is_empty()).then(|| all[(f * all.len() as f64) as usize % all.len()])
    }

    fn live(&self, f: f64) -> Option<(usize, Ref, usize)> {
        Self::pick(&self.live, f)
    }

    /// An 8-aligned offset at fraction `f` of the heap file.
    fn offset(&self, f: f64) -> u64 {
        ((f * self.heap_len as f64) as u64).min(self.heap_len.saturating_sub(8)) & !7
    }

    /// Where the run holding a live record starts.
    fn run_of(&self, f: f64) -> Option<u64> {
        let (_, r, bytes) = self.live(f)?;
        Some(match Class::of(bytes) {
            Some(c) => r.offset() & !(c.run().bytes as u64 - 1),
            None => r.offset() - LARGE_HEAD,
        })
    }
}

/// A word's new value.
#[derive(Debug, Clone)]
pub enum Val {
    Raw(u64),
    Zero,
    Max,
    /// An offset into the file (bytes), or the same in 8-byte units (what heads and links hold).
    Offset(f64),
    Units(f64),
    /// A carve word naming the page at that fraction of the file, with this many carved.
    Carve(f64, u32),
    /// An offset past the file's end.
    Past(u16),
    /// A live record's offset in bytes, or in units; a freed record's.
    Live(f64),
    LiveUnits(f64),
    Freed(f64),
    /// The word's own offset: a free block that links to itself.
    Own,
}

pub fn val() -> impl Strategy<Value = Val> {
    let f = || 0.0f64..1.0;
    prop_oneof![
        any::<u64>().prop_map(Val::Raw),
        Just(Val::Zero),
        Just(Val::Max),
        f().prop_map(Val::Offset),
        f().prop_map(Val::Units),
        (f(), any::<u32>()).prop_map(|(f, n)| Val::Carve(f, n)),
        any::<u16>().prop_map(Val::Past),
        f().prop_map(Val::Live),
        f().prop_map(Val::LiveUnits),
        f().prop_map(Val::Freed),
        Just(Val::Own),
    ]
}

impl Val {
    fn resolve(&self, t: &Targets, at: u64) -> u64 {
        let live = |f| t.live(f).map_or(0, |(_, r, _)| r.offset());
        match *self {
            Val::Raw(v) => v,
            Val::Zero => 0,
            Val::Max => u64::MAX,
            Val::Offset(f) => t.offset(f),
            Val::Units(f) => t.offset(f) >> 3,
            Val::Carve(f, n) => (t.offset(f) / PAGE as u64) << 24 | u64::from(n & 0xFF_FFFF),
            Val::Past(k) => t.heap_len + u64::from(k) * 8,
            Val::Live(f) => live(f),
            Val::LiveUnits(f) => live(f) >> 3,
            Val::Freed(f) => Targets::pick(&t.freed, f).map_or(0, |r| r.offset()),
            Val::Own => at,
        }
    }
}

/// A header word: the lengths and lists named, or a class's free-list head or carve word
/// (of the class of a live record, whose runs exist).
#[derive(Debug, Clone)]
pub enum HeaderWord {
    Len,
    Top,
    Large,
    Head(f64),
    Carve(f64),
    Any(usize),
}

pub fn header_word() -> impl Strategy<Value = HeaderWord> {
    prop_oneof![
        1 => Just(HeaderWord::Len),
        1 => Just(HeaderWord::Top),
        1 => Just(HeaderWord::Large),
        2 => (0.0f64..1.0).prop_map(HeaderWord::Head),
        2 => (0.0f64..1.0).prop_map(HeaderWord::Carve),
        1 => (W_LEN..HEADER_WORDS).prop_map(HeaderWord::Any),
    ]
}

impl HeaderWord {
    /// The word's index.
    fn resolve(&self, t: &Targets) -> usize {
        let class = |f| {
            t.live(f)
                .and_then(|(_, _, bytes)| Class::of(bytes))
                .map_or(0, Class::index)
        };
        match *self {
            HeaderWord::Len => W_LEN,
            HeaderWord::Top => W_TOP,
            HeaderWord::Large => W_LARGE,
            HeaderWord::Head(f) => W_HEADS + class(f),
            HeaderWord::Carve(f) => W_CARVE + class(f),
            HeaderWord::Any(w) => w,
        }
    }
}

/// Which heap word to overwrite.
#[derive(Debug, Clone)]
pub enum Spot {
    Anywhere(f64),
    /// The head word of a live record's run, or a word of its bitmap (or a large run's link).
    RunHead(f64),
    Bitmap(f64, u8),
    /// A word of a live record (its length header, when its lengths are escaped).
    Record(f64, u8),
    /// The first word of a freed block: its free-list link.
    FreedLink(f64),
}

pub fn spot() -> impl Strategy<Value = Spot> {
    let f = || 0.0f64..1.0;
    prop_oneof![
        f().prop_map(Spot::Anywhere),
        f().prop_map(Spot::RunHead),
        (f(), any::<u8>()).prop_map(|(f, w)| Spot::Bitmap(f, w)),
        (f(), 0u8..4).prop_map(|(f, w)| Spot::Record(f, w)),
        f().prop_map(Spot::FreedLink),
    ]
}

impl Spot {
    fn resolve(&self, t: &Targets) -> Option<u64> {
        match *self {
            Spot::Anywhere(f) => Some(t.offset(f)),
            Spot::RunHead(f) => t.run_of(f),
            Spot::Bitmap(f, w) => Some(t.run_of(f)? + 8 + u64::from(w % 16) * 8),
            Spot::Record(f, w) => Some(t.live(f)?.1.offset() + u64::from(w) * 8),
            Spot::FreedLink(f) => Some(Targets::pick(&t.freed, f)?.offset()),
        }
    }
}

/// A bucket's reference word made to name no record of its own.
#[derive(Debug, Clone)]
pub enum Hostile {
    Raw(u64),
    /// Past the file's end, by this many words.
    Outside(u16),
    /// Into the header page (word `w`).
    Header(u16),
    /// A live record's offset plus 1 to 8 words: the middle of its block.
    MidBlock(f64, u8),
    /// A record removed since: a free block.
    Freed(f64),
    /// A live record with lengths its words do not hold (near the file's end, or too long).
    LensPast(f64),
    /// A live record read as if its first word were a length header.
    Escaped(f64),
    /// Another bucket's record: two buckets naming one block.
    OtherLive(f64),
}

pub fn hostile() -> impl Strategy<Value = Hostile> {
    let f = || 0.0f64..1.0;
    prop_oneof![
        any::<u64>().prop_map(Hostile::Raw),
        any::<u16>().prop_map(Hostile::Outside),
        any::<u16>().prop_map(Hostile::Header),
        (f(), any::<u8>()).prop_map(|(f, d)| Hostile::MidBlock(f, d)),
        f().prop_map(Hostile::Freed),
        f().prop_map(Hostile::LensPast),
        f().prop_map(Hostile::Escaped),
        f().prop_map(Hostile::OtherLive),
    ]
}

impl Hostile {
    fn resolve(&self, t: &Targets, own: Ref) -> u64 {
        let live = |f| t.live(f).map_or(own, |(_, r, _)| r);
        let at = |offset: u64, k, v| Ref::new(offset & shmap::heap::free_list::MAX_OFFSET, k, v).0;
        match *self {
            Hostile::Raw(v) => v,
            Hostile::Outside(k) => at(t.heap_len + u64::from(k) * 8, 4, 10),
            Hostile::Header(w) => at(u64::from(w % 512) * 8, 4, 10),
            Hostile::MidBlock(f, d) => {
                let r = live(f);
                r.0 + u64::from(d % 8 + 1) // the offset field is in words
            }
            Hostile::Freed(f) => Targets::pick(&t.freed, f).unwrap_or(own).0,
            Hostile::LensPast(f) if f < 0.5 => at(t.heap_len - 8, 4, 100),
            Hostile::LensPast(f) => at(live(f).offset(), 4094, 4094),
            Hostile::Escaped(f) => at(live(f).offset(), 4095, 4095),
            Hostile::OtherLive(f) => live(f).0,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Damage {
    /// Header words (lengths, top, the large list, free-list heads, carve words).
    Header(Vec<(HeaderWord, Val)>),
    /// Words past the header.
    Words(Vec<(Spot, Val)>),
    /// Bytes anywhere in the heap file.
    Bytes(Vec<(f64, u8)>),
    /// Buckets' reference words.
    Refs(Vec<(f64, Hostile)>),
    /// The heap file cut to a fraction of its length (every handle dropped first: a mapped
    /// file truncated under a process faults with SIGBUS, as the README says).
    Truncate(f64),
    /// The heap file made longer by this many pages.
    Extend(u8),
}

pub fn damage() -> impl Strategy<Value = Damage> {
    use proptest::collection::vec;
    prop_oneof![
        3 => vec((header_word(), val()), 1..4).prop_map(Damage::Header),
        3 => vec((spot(), val()), 1..6).prop_map(Damage::Words),
        1 => vec((0.0f64..1.0, any::<u8>()), 1..24).prop_map(Damage::Bytes),
        3 => vec((0.0f64..1.0, hostile()), 1..6).prop_map(Damage::Refs),
        1 => (0.0f64..1.0).prop_map(Damage::Truncate),
        1 => any::<u8>().prop_map(Damage::Extend),
    ]
}

pub fn heap_path(location: &Location) -> PathBuf {
    location.heap().path()
}

/// Fills a new map at `at`: records of many classes and large ones, then removals so that
/// free lists (through a second handle, which gives its magazines back as it drops), free
/// extents (a trim) and blocks in the open handle's magazines all exist.
pub fn populate<P: Protocol>(map: &SharedMap<P>, at: &Location) -> Targets
where
    SharedMap<P>: MapBackend,
{
    for i in 0..KEYS {
        map.insert(&key(i), &value(i)).unwrap();
    }
    let live_refs = |map: &SharedMap<P>| {
        let t = map.raw_table().unwrap();
        (0..t.capacity())
            .filter(|&i| Meta(t.meta(i).load(Ordering::Relaxed)).state() == Some(SlotState::Full))
            .map(|i| {
                let r = t.ref_of(i);
                (i, r, t.record_extent(r).expect("a live record").1)
            })
            .collect::<Vec<_>>()
    };
    let before = live_refs(map);
    let other = SharedMap::<P>::attach_in(at, AttachOptions::default()).unwrap();
    for i in (0..KEYS).step_by(3) {
        other.remove(&key(i)).unwrap();
    }
    drop(other);
    map.trim().unwrap();
    for i in (1..KEYS).step_by(5) {
        map.remove(&key(i)).unwrap();
    }
    let live = live_refs(map);
    let table = map.raw_table().unwrap();
    let layout = table.segment().layout();
    Targets {
        heap_len: std::fs::metadata(heap_path(at)).unwrap().len(),
        freed: before
            .iter()
            .filter(|(_, r, _)| !live.iter().any(|l| l.1 == *r))
            .map(|l| l.1)
            .collect(),
        live,
        table: table.segment().location().path(),
        refs_at: (layout.slots_offset as u64, layout.slot_stride as u64),
    }
}

/// Applies `damage` to the map whose targets are `t` and whose heap file is `heap`.
pub fn apply(damage: &Damage, t: &Targets, heap: &Path) {
    let word = |at: u64, v: u64| (at, v.to_le_bytes().to_vec());
    match damage {
        Damage::Header(edits) => {
            let edits: Vec<_> = edits
                .iter()
                .map(|(w, v)| {
                    let at = w.resolve(t) as u64 * 8;
                    word(at, v.resolve(t, at))
                })
                .collect();
            write_at(heap, &edits);
        }
        Damage::Words(edits) => {
            let edits: Vec<_> = edits
                .iter()
                .filter_map(|(s, v)| s.resolve(t).map(|at| word(at, v.resolve(t, at))))
                .filter(|(at, _)| *at >= PAGE as u64 && at + 8 <= t.heap_len)
                .collect();
            write_at(heap, &edits);
        }
        Damage::Bytes(edits) => {
            let edits: Vec<_> = edits
                .iter()
                .map(|&(f, b)| ((f * t.heap_len as f64) as u64 % t.heap_len, vec![b]))
                .collect();
            write_at(heap, &edits);
        }
        Damage::Refs(edits) => {
            let edits: Vec<_> = edits
                .iter()
                .filter_map(|(f, h)| {
                    let (bucket, own, _) = t.live(*f)?;
                    let at = t.refs_at.0 + bucket as u64 * t.refs_at.1;
                    Some(word(at, h.resolve(t, own)))
                })
                .collect();
            write_at(&t.table, &edits);
        }
        Damage::Truncate(f) => {
            let file = std::fs::OpenOptions::new().write(true).open(heap).unwrap();
            file.set_len((f * t.heap_len as f64) as u64).unwrap();
        }
        Damage::Extend(pages) => {
            let file = std::fs::OpenOptions::new().write(true).open(heap).unwrap();
            file.set_len(t.heap_len + u64::from(*pages) * PAGE as u64)
                .unwrap();
        }
    }
}
