//! The fixture of `benches/typed.rs` and `examples/typed_cost.rs`: `n` `str` -> `str` entries
//! (16-character keys, 64-character values), read three ways:
//! - `typed`: `shmap-typed`'s `SharedHashMap<String, String>`, key `&str`, value `String`;
//! - `bytes`: the bytes API on the same map, with the stored key encodings made in advance
//!   (a type tag, then the UTF-8), value the stored encoding as a `Vec<u8>`: the typed layer's
//!   whole work (encode the key, check the tag and the UTF-8) is what `typed` adds to this;
//! - `bytes_string`: the bytes API as a Rust program would use it for `String`s, on a map of
//!   its own holding the raw UTF-8: `get(key.as_bytes())`, then `String::from_utf8`.

use shmap::{MapBackend, MapOps, MapParams};
use shmap_backends::LockFreeMap;
use shmap_typed::{Options, Place, SharedHashMap};

/// The maps of `n` entries and the three ways to read them.
#[derive(Debug)]
pub struct Fixture {
    keys: Vec<String>,
    encoded: Vec<Vec<u8>>,
    bytes: LockFreeMap,
    raw: LockFreeMap,
    typed: SharedHashMap<String, String>,
}

impl Fixture {
    /// Makes the maps (Python's default parameters, so they grow as a user's would).
    pub fn new(n: usize) -> Self {
        let name = format!("shmap-typed-cost-{}-{n}", std::process::id());
        let typed = SharedHashMap::<String, String>::open(&Place::shm(&name), &Options::new())
            .expect("a fresh name");
        let raw = LockFreeMap::create(&format!("{name}-raw"), MapParams::default())
            .expect("a fresh name");
        // A fixed shuffle of the indexes (multiplicative hashing), so runs are comparable.
        let keys: Vec<String> = (0..n as u64)
            .map(|i| format!("{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 4))
            .collect();
        let value = "v".repeat(64);
        for k in &keys {
            typed
                .insert(k.as_str(), value.as_str())
                .expect("room to grow");
            raw.insert(k.as_bytes(), value.as_bytes())
                .expect("room to grow");
        }
        let encoded = keys
            .iter()
            .map(|k| [&[1u8][..], k.as_bytes()].concat())
            .collect();
        let bytes = LockFreeMap::attach(&name).expect("attach");
        bytes.unlink().expect("unlink");
        raw.unlink().expect("unlink");
        Self {
            keys,
            encoded,
            bytes,
            raw,
            typed,
        }
    }

    /// The `i`th entry through the bytes API: its stored encoding. No side is inlined into
    /// the loop, so that they compare as calls a program makes, not as whatever the inliner
    /// made of each loop.
    #[inline(never)]
    pub fn bytes_get(&self, i: usize) -> Option<Vec<u8>> {
        self.bytes.get(&self.encoded[i]).expect("a get")
    }

    /// The `i`th entry as a `String` through the bytes API, from a map of raw UTF-8.
    #[inline(never)]
    pub fn bytes_string_get(&self, i: usize) -> Option<String> {
        let v = self.raw.get(self.keys[i].as_bytes()).expect("a get")?;
        Some(String::from_utf8(v).expect("UTF-8"))
    }

    /// The `i`th entry through the typed map: a `String`.
    #[inline(never)]
    pub fn typed_get(&self, i: usize) -> Option<String> {
        self.typed.get(self.keys[i].as_str()).expect("a get")
    }
}
