//! What a writer announces before it takes a slot, so that a process that finds it dead half
//! way can finish or undo its work: the operation ([`Op`]), the journal a protocol keeps of it
//! ([`Journal`]), and how a compaction's move packs its two slots into one record word.
//!
//! The bottom of the crate: it imports nothing of ours. The registry (`recovery/registry.rs`)
//! stores these records; the table (`table/`) and compaction (`lifecycle/compact.rs`) write
//! them; the repair (`recovery/repair.rs`) reads them back.

use shmap::heap::Ref;
use shmap::{Meta, RawTable};

/// What a record's owner is doing to its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Op {
    /// Nothing: no slot of ours is busy.
    Idle = 0,
    /// Reading a slot under its lock (spinlock): undo restores `before`.
    Read = 1,
    /// Naming a new record in a FULL slot: redo names the journal's and publishes `after`.
    Update = 2,
    /// Claiming a free slot for a new key: undo leaves a tombstone.
    Claim = 3,
    /// Retiring a FULL slot: redo publishes `after` (a tombstone).
    Remove = 4,
    /// Moving an entry to an earlier slot of its probe (compaction): the record's slot holds
    /// `to | from << 32`, `before` the destination's free word, `after` the source's FULL
    /// word, the journal the entry. Undone while the destination is held; rolled forward
    /// (the source retired) once it is published. See `compact.rs`.
    Move = 5,
}

impl Op {
    #[inline]
    pub(crate) fn from_state(state: u64) -> Option<Self> {
        Some(match state & 7 {
            0 => Op::Idle,
            1 => Op::Read,
            2 => Op::Update,
            3 => Op::Claim,
            4 => Op::Remove,
            5 => Op::Move,
            _ => return None,
        })
    }
}

/// What a writer tells the protocol about the operation it is making, so that a process that
/// finds it dead half way can finish or undo it.
pub trait Journal {
    /// The identity stamped into the busy words this writer takes.
    fn owner(&self) -> u64;

    /// Announces `op` on slot `i`, to be taken from `before` and published as `after`, with
    /// the record it publishes (`new`: claims and updates) and the one it replaces (`old`:
    /// updates and removes), so that a recoverer can finish the publication and free what
    /// the operation would have. Called before the slot is taken.
    #[allow(clippy::too_many_arguments)] // the record's fields, written in one place
    fn intend(
        &self,
        table: &RawTable,
        op: Op,
        i: usize,
        before: Meta,
        after: Meta,
        new: Option<Ref>,
        old: Option<Ref>,
    );

    /// The operation is over (published, or abandoned before its slot was taken); `delta`
    /// entries were added.
    fn finish(&self, table: &RawTable, delta: i32);

    /// A remove's [`Journal::finish`] (one entry fewer); a protocol whose count can say the
    /// map just emptied also watches for that (`shmap::RawTable::watch_emptying`).
    fn finish_remove(&self, table: &RawTable) {
        self.finish(table, -1);
    }
}

/// The record slot of a move from `from` to `to` (slot indices are below 2^32).
pub fn move_slots(to: usize, from: usize) -> usize {
    to | from << 32
}

/// The (to, from) slots of a move's record slot.
pub fn move_parts(packed: usize) -> (usize, usize) {
    (packed & 0xFFFF_FFFF, packed >> 32)
}
