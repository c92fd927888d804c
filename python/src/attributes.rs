//! What a handle tells about itself: its name, place and sizes, whether it is closed, and
//! its `repr`.

use pyo3::prelude::*;
use shmap::{Location, MapParams, MAX_KEY_SIZE_LIMIT, MAX_VALUE_SIZE_LIMIT};

use crate::sizes::{shown, user_limit};
use crate::store::MapRef;
use crate::{Place, SharedHashMap};

#[pymethods]
impl SharedHashMap {
    fn __repr__(&self, py: Python<'_>) -> String {
        let p = MapParams {
            capacity: self.capacity(py),
            ..self.params
        };
        self.map
            .with(py, |m| {
                // repr must not raise: a server that does not answer shows as size=?.
                let size = m
                    .ops()
                    .len()
                    .map_or_else(|_| "?".to_owned(), |n| n.to_string());
                let url = match m {
                    MapRef::Redis(r) => format!(", url={:?}", r.url()),
                    MapRef::Shm(_) => String::new(),
                };
                format!(
                    "SharedHashMap(name={:?}{url}, size={size}, capacity={}, max_key_size={}, \
                     max_value_size={})",
                    self.name,
                    p.capacity,
                    shown(self.max_key_size()),
                    shown(self.max_value_size())
                )
            })
            .unwrap_or_else(|| format!("<closed SharedHashMap name={:?}>", self.name))
    }

    /// The segment's name (for a file-backed map, its path).
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The file of a map created with `path=`; `None` for shared memory.
    #[getter]
    fn path(&self) -> Option<std::path::PathBuf> {
        match &self.place {
            Place::Local(Location::File(path)) => Some(path.clone()),
            _ => None,
        }
    }

    /// The Redis server of a map created with `url=` (its password hidden); `None` for a map
    /// on this machine.
    #[getter]
    fn url(&self) -> Option<String> {
        match &self.place {
            Place::Redis { url, .. } => Some(shmap_backends::redis_map::redact(url)),
            Place::Local(_) => None,
        }
    }

    /// Number of buckets now: the table doubles when it is 3/4 used, up to max_capacity. (On
    /// Redis, whose hash grows by itself: the most entries the map may hold.)
    #[getter]
    fn capacity(&self, py: Python<'_>) -> usize {
        self.map
            .with(py, |m| m.ops().capacity())
            .unwrap_or(self.params.capacity)
    }

    /// The most buckets the table may grow to: only then is it full (RuntimeError).
    #[getter]
    fn max_capacity(&self) -> usize {
        self.params.max_capacity
    }

    /// Largest serialized key, in bytes; `None`: no limit (the map was made with
    /// `max_key_size=None`). A limit costs no memory: entries take what they hold.
    #[getter]
    fn max_key_size(&self) -> Option<usize> {
        user_limit(self.params.max_key_size, MAX_KEY_SIZE_LIMIT)
    }

    /// Largest serialized value, in bytes; `None`: no limit (`max_value_size=None`).
    #[getter]
    fn max_value_size(&self) -> Option<usize> {
        user_limit(self.params.max_value_size, MAX_VALUE_SIZE_LIMIT)
    }

    /// Whether `close()` was called on this handle.
    #[getter]
    fn closed(&self) -> bool {
        self.map.is_closed()
    }
}
