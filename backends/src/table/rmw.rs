//! Atomic read-modify-write of one key: [`shmap::MapBackend::update`] and the operations built
//! on it (`compare_exchange`, `get_or_insert`, `remove_entry`).
//!
//! It is one more operation under the exclusion writers of a key already take (the stripe lock
//! of the lock-free and spinlock backends, the table mutex of the baseline): locate the key,
//! copy its value out, let the caller decide, then write or remove through the same journalled
//! steps as `insert` and `remove`. So it is linearizable with every other operation on the key,
//! readers see the old value or the new one, and a process killed anywhere inside leaves the
//! old state or the new one, as for any write (the journal is written before the slot is taken;
//! a kill while the caller decides leaves nothing to repair). The caller's closure runs while
//! other writers of the key wait on the lock word: it must be short, must not block, and must
//! not use the map (the lock is not re-entrant). When the decision needs a slot and the table
//! is full, nothing was written: the lock is released, the table grows, and the closure runs
//! again on the value then current (`SharedMap::write_key`).

use shmap::{Result, Update};

use crate::protocol::Protocol;

use super::SharedMap;

impl<P: Protocol> SharedMap<P> {
    pub(crate) fn update_locked<R>(
        &self,
        key: &[u8],
        mut f: impl FnMut(Option<&[u8]>) -> (Update, R),
    ) -> Result<R> {
        let mut current = Vec::new();
        self.write_key(key, true, |at, w, h| {
            let table = at.table;
            let located = at.locate(key, h)?;
            if let Some((i, _)) = located.found {
                // Only holders of this key's lock write its slot, and we hold it: the value is
                // stable while we copy it (readers may hold a slot lock; they write nothing).
                let Some(e) = table.entry(i) else {
                    return Err(table.corrupt(
                        i,
                        "its record lies outside the heap or exceeds the maximums",
                    ));
                };
                e.read_value(&mut current);
            }
            // Run again (by `write_key`) only after a full table changed nothing.
            let (change, out) = f(located.found.map(|_| current.as_slice()));
            match (change, located.found) {
                (Update::Keep, _) | (Update::Remove, None) => {}
                (Update::Remove, Some((i, m))) => at.remove_found(w, i, m, h)?,
                (Update::Set(value), _) => {
                    table.check_value(&value)?;
                    at.write_located(w, key, &value, h, &located, true)?;
                }
            }
            Ok(out)
        })
    }
}
