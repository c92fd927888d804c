//! The header's words that change after creation (usage counters, reclaim hints, the
//! generation), one accessor each: a child of `segment.rs`, so the fields stay private to it.

use std::sync::atomic::AtomicU64;

use super::Header;

impl Header {
    /// The header's live-entry counter (mutex backend): writers change it after publishing or
    /// retiring an entry under the mutex.
    pub fn live_count(&self) -> &AtomicU64 {
        &self.len
    }

    /// Slots ever claimed from EMPTY, less those reclaimed.
    pub fn used(&self) -> &AtomicU64 {
        &self.used
    }

    /// `used` after the last reclaim.
    pub fn reclaim_mark(&self) -> &AtomicU64 {
        &self.reclaim_mark
    }

    /// Where the next reclaim of tombstones starts looking (a hint).
    pub fn reclaim_cursor(&self) -> &AtomicU64 {
        &self.reclaim_cursor
    }

    /// Slots of a reclaim pass left for the next writers (see the field).
    pub fn reclaim_left(&self) -> &AtomicU64 {
        &self.reclaim_left
    }

    /// Reclaims of tombstones so far.
    pub fn reclaims(&self) -> &AtomicU64 {
        &self.reclaims
    }

    /// Whether the table was at least half live when last counted (see the field).
    pub fn dense(&self) -> &AtomicU64 {
        &self.dense
    }

    /// Entries moved within the table so far (see the field).
    pub fn moves(&self) -> &AtomicU64 {
        &self.moves
    }

    /// Whether removes watch for the map becoming empty (see the field).
    pub fn emptying(&self) -> &AtomicU64 {
        &self.emptying
    }

    /// The current table's generation (root segments; see the field's state table).
    pub fn generation(&self) -> &AtomicU64 {
        &self.generation
    }
}
