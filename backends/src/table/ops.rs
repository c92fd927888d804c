//! The contract on the table: [`MapOps`] and [`MapBackend`] for every [`SharedMap`], built
//! from the lookup and the keyed write of `mod.rs` and the whole-table work of `lifecycle/`;
//! and the scan behind `entries`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use shmap::heap::{Heap, DEFAULT_RESERVE};
use shmap::{
    compare_exchange_by_update, get_or_insert_by_update, remove_entry_by_update, AttachOptions,
    BackendKind, Backoff, Error, Inserted, Layout, Location, MapBackend, MapOps, MapParams, Meta,
    NoValue, Result, Segment, SlotState, Update,
};

use crate::protocol::Protocol;

use super::probe::At;
use super::SharedMap;

impl<P: Protocol> MapOps for SharedMap<P> {
    fn name(&self) -> &str {
        self.tables.root().segment().name()
    }

    /// The shape of the map now: `capacity` is the current table's (it grows).
    fn params(&self) -> MapParams {
        let p = self.tables.params();
        match self.tables.current() {
            Ok((_, t)) => p.resized(t.capacity()),
            Err(_) => p,
        }
    }

    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        self.lookup_patiently(key, Some(out))
    }

    fn contains_key(&self, key: &[u8]) -> Result<bool> {
        self.lookup_patiently(key, None::<&mut NoValue>)
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<Inserted> {
        self.tables.root().check_value(value)?;
        let inserted = self.write_key(key, true, |at, w, h| {
            at.insert_locked(w, key, value, h, true)
        })?;
        // After the key's lock is released: a new key may call for a reclaim or growth, any
        // write for the heap's sweep or compaction.
        match inserted {
            Inserted::New => self.reclaim_if_due(),
            _ => self.sweep_if_due(),
        }
        Ok(inserted)
    }

    fn remove(&self, key: &[u8]) -> Result<bool> {
        let removed = self.write_key(key, true, |at, w, h| {
            let Some((i, m)) = at.locate(key, h)?.found else {
                return Ok(false);
            };
            at.remove_found(w, i, m, h)?;
            Ok(true)
        })?;
        self.sweep_if_due(); // after the key's lock is released
        Ok(removed)
    }

    fn len(&self) -> Result<usize> {
        self.protocol.len(&self.tables)
    }

    fn entries(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            // Two scans spoiled by moves or a resize: the next holds every writer lock (readers
            // go on), so nothing moves under it; a churning map cannot starve a scan.
            let _writers = match attempt > 2 && !P::READS_EXCLUDE_WRITERS {
                true => self.lock_all(true, "the writer locks, for a scan")?,
                false => None,
            };
            let at = self.at()?;
            let moves = at.table.moves();
            let read = self.protocol.begin_read(&self.tables)?;
            let mut entries = Vec::with_capacity(self.protocol.len(&self.tables)?);
            let scanned = scan(&at, &read, &mut entries);
            drop(read);
            // Acquire: as in `lookup`; a table replaced meanwhile is scanned again in the new,
            // and so is one where entries moved (one may have moved behind the scan).
            if self.tables.generation() != at.gen || !scanned? || at.table.moves() != moves {
                continue;
            }
            // A key removed behind the scan and inserted again ahead of it is met twice; each
            // copy was present at some instant, so keep the first. Cheap next to the scan.
            let mut seen = std::collections::HashSet::with_capacity(entries.len());
            let keep: Vec<bool> = entries
                .iter()
                .map(|(k, _)| seen.insert(k.as_slice()))
                .collect();
            drop(seen);
            let mut keep = keep.into_iter();
            entries.retain(|_| keep.next().unwrap_or(true));
            return Ok(entries);
        }
    }

    fn compare_exchange(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Result<(), Option<Vec<u8>>>> {
        compare_exchange_by_update(self, key, expected, new)
    }

    fn get_or_insert(&self, key: &[u8], value: &[u8]) -> Result<(Vec<u8>, bool)> {
        get_or_insert_by_update(self, key, value)
    }

    fn remove_entry(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        remove_entry_by_update(self, key)
    }
}

impl<P: Protocol> MapBackend for SharedMap<P> {
    const KIND: BackendKind = P::KIND;

    fn create_in(location: &Location, params: MapParams) -> Result<Self> {
        let layout = Layout::new(params, P::area_len(&params))?;
        let mut heap = None;
        // Zeroed memory is already an EMPTY slot of version 0 everywhere. The heap is made
        // while the root's name is ours and not yet published: a `name.heap` there now is a
        // leftover (of a map removed while a handle kept it, or of a creator killed here),
        // which the handles still open keep mapped; ours replaces its name.
        let segment = Segment::create(location, Self::KIND, layout, |segment| {
            let at = location.heap();
            let _ = at.unlink_one();
            heap = Some(Heap::create_for(&at, DEFAULT_RESERVE, segment.hash_seed())?);
            P::init(segment)
        })?;
        let heap = Arc::new(heap.expect("made by the init above"));
        // A create that fails after the segment exists (the protocol's own setup) removes it:
        // the name is ours alone until we return.
        Self::from_segment(segment, heap, AttachOptions::default()).inspect_err(|_| {
            let _ = location.unlink();
        })
    }

    fn attach_in(location: &Location, opts: AttachOptions) -> Result<Self> {
        let root = Segment::attach(location, Self::KIND, P::area_len, opts)?;
        let heap = Heap::attach_for(
            &location.heap(),
            DEFAULT_RESERVE,
            root.hash_seed(),
            opts.trust_foreign,
        )
        .map_err(|e| match e {
            // The root is published only after its heap exists: a heap that is missing,
            // or another map's, means the map was removed (and perhaps made again)
            // while we opened it.
            Error::NotFound(_) => Error::NotFound(location.label()),
            e => e,
        })?;
        Self::from_segment(root, Arc::new(heap), opts)
    }

    fn location(&self) -> &Location {
        self.tables.root().segment().location()
    }

    fn flush(&self) -> Result<()> {
        // The current table first: the root's generation word must never name a table that
        // a restart would find missing pages of (the resizer flushed it before publishing).
        self.raw_table()?.heap().flush()?; // the records, before the words that name them
        self.raw_table()?.segment().flush()?;
        self.tables.root().segment().flush()
    }

    fn try_get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<Option<bool>> {
        self.lookup(key, Some(out), false)
    }

    fn try_contains_key(&self, key: &[u8]) -> Result<Option<bool>> {
        self.lookup(key, None::<&mut NoValue>, false)
    }

    fn update<R>(&self, key: &[u8], f: impl FnMut(Option<&[u8]>) -> (Update, R)) -> Result<R> {
        let out = self.update_locked(key, f)?;
        self.reclaim_if_due(); // after the key's lock is released
        Ok(out)
    }
}

/// Copies every entry of `at`'s table into `entries`; `false` if the table was replaced while
/// a slot on the way was busy (the caller starts over).
fn scan<P: Protocol>(
    at: &At<'_, P>,
    read: &P::ReadGuard<'_>,
    entries: &mut Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<bool> {
    let t = at.table;
    for i in 0..t.capacity() {
        let meta = t.meta(i);
        let mut backoff = Backoff::new();
        loop {
            // Acquire: as in `read_slot`.
            let m1 = Meta(meta.load(Ordering::Acquire));
            match (at.state(i, m1)?, m1.is_busy()) {
                (SlotState::Full, true) => {
                    if at.tables.generation() != at.gen {
                        return Ok(false);
                    }
                    at.wait(m1, &mut backoff)?;
                    continue;
                }
                (SlotState::Full, false) => {}
                _ => break,
            }
            let copied = at.protocol.read_consistent(read, i, meta, m1, || {
                let (mut k, mut v) = (Vec::new(), Vec::new());
                t.read_entry(i, &mut k, &mut v).then_some((k, v))
            });
            match copied {
                None => continue,
                Some(None) => {
                    return Err(t.corrupt(
                        i,
                        "its record lies outside the heap or exceeds the maximums",
                    ))
                }
                Some(Some(entry)) => entries.push(entry),
            }
            break;
        }
    }
    Ok(true)
}
