//! [`SharedHashMap<K, V>`]: the bytes map ([`shmap::MapOps`]) with typed keys and values,
//! encoded as Python encodes them.

use std::fmt;
use std::marker::PhantomData;

use shmap::{AttachOptions, Inserted, Location, MapBackend, MapOps, MapParams, Tagged, Update};
use shmap_backends::LockFreeMap;

use crate::error::{Error, Result};
use crate::number::{self, NotANumber, Num};
use crate::open::{open_or_create, Options, Place, TAG};
use crate::sink::Payload;
use crate::types::{unpickled_tuple, Decode, Encode, EncodesAs, Number};

/// Where the entries are: on this machine, or on a server.
// One per handle, never moved once made: boxing the local map would put a pointer chase on
// every get.
#[allow(clippy::large_enum_variant)]
enum Store {
    Local(LockFreeMap),
    #[cfg(feature = "redis")]
    Redis(shmap_backends::RedisMap),
}

impl Store {
    #[inline]
    fn ops(&self) -> &dyn MapOps {
        match self {
            Store::Local(m) => m,
            #[cfg(feature = "redis")]
            Store::Redis(m) => m,
        }
    }
}

/// A hash map shared by processes, of `K` keys and `V` values, stored as Python's
/// `shared_hashmap.SharedHashMap` stores them: a Rust process and Python processes read and
/// write one map. On shared memory or a file (the lock-free map: gets never write to shared
/// memory) or on a Redis server. Every operation is atomic across processes.
///
/// See [`crate::types`] for which Rust type is which Python type.
///
/// ```
/// use shmap_typed::{Place, SharedHashMap};
///
/// # let name = format!("doc-intro-{}", std::process::id());
/// let scores = SharedHashMap::<String, i64>::create(&Place::shm(&name))?;
/// scores.insert("ada", &36)?;
/// assert_eq!(scores.get("ada")?, Some(36));
/// assert_eq!(scores.incr("ada", 6)?, 42);
///
/// // Another process (or Python: SharedHashMap(name, create=False)) attaches by name.
/// let same = SharedHashMap::<String, i64>::attach(&Place::shm(&name))?;
/// assert_eq!(same.get("ada")?, Some(42));
/// scores.unlink()?;
/// # Ok::<(), shmap_typed::Error>(())
/// ```
pub struct SharedHashMap<K, V> {
    store: Store,
    _types: PhantomData<fn(K) -> V>,
}

/// Keys whose encoding fits this many bytes are encoded on the stack.
const STACK_KEY: usize = 128;

/// Runs `f` with the key encoding of `key`.
#[inline]
fn with_key<Q: Encode + ?Sized, R>(key: &Q, f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
    let mut stack = [0u8; STACK_KEY];
    if let Some(n) = key.encode_key_small(&mut stack) {
        return f(&stack[..n]);
    }
    let mut heap = Vec::new();
    key.encode_key(&mut heap)?;
    f(&heap)
}

fn encoded_value<W: Encode + ?Sized>(value: &W) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    value.encode_value(&mut out)?;
    Ok(out)
}

/// Each method asks of `K` and `V` only what it needs: a map whose values are only read
/// needs `V: Decode` (a `Json<T>` of a `Deserialize`-only type), one only written `V: Encode`.
impl<K, V> SharedHashMap<K, V> {
    /// Creates a new map at `place` with Python's default parameters: an error if it exists.
    pub fn create(place: &Place) -> Result<Self> {
        Self::open(place, &Options::new())
    }

    /// Attaches to the existing map at `place`.
    pub fn attach(place: &Place) -> Result<Self> {
        Self::open(place, &Options::new().attach_only())
    }

    /// Creates or attaches to the map at `place`, as `options` say.
    pub fn open(place: &Place, options: &Options) -> Result<Self> {
        let stored = options.stored();
        stored.validate()?;
        let store = match place {
            Place::Shm(_) | Place::File(_) => {
                let location = match place {
                    Place::File(path) => Location::File(path.clone()),
                    Place::Shm(name) => Location::Shm(name.clone()),
                    #[cfg(feature = "redis")]
                    Place::Redis { .. } => unreachable!("matched above"),
                };
                let attach = if options.trust_foreign {
                    AttachOptions::trusting()
                } else {
                    AttachOptions::default()
                };
                let map = if options.attach_only {
                    LockFreeMap::attach_in(&location, attach)?
                } else {
                    let (map, created) =
                        open_or_create(&location, stored, options.exist_ok, attach)?;
                    if !created {
                        options.check_found(&location.label(), map.params(), false)?;
                    }
                    map
                };
                Store::Local(map)
            }
            #[cfg(feature = "redis")]
            Place::Redis { url, name } => Store::Redis(open_redis(url, name, options, stored)?),
        };
        Ok(Self {
            store,
            _types: PhantomData,
        })
    }

    /// The value of `key`, if present.
    #[inline]
    pub fn get<Q: EncodesAs<K> + ?Sized>(&self, key: &Q) -> Result<Option<V>>
    where
        V: Decode,
    {
        // The lookup fills `got` in place and returns a bool: the value is built here, in the
        // caller's frame.
        let mut got = Payload::new(V::PAYLOAD);
        let found = match (&self.store, key.tagged_key()) {
            // A str or bytes key is hashed and compared where it is, never copied behind
            // its tag (`shmap::Tagged`: the copy cost a get 1.2x the bytes get).
            (Store::Local(m), Some((tag, payload))) => {
                let key = Tagged {
                    tag: tag as u8,
                    payload,
                };
                m.get_with(&key, &mut got)?
            }
            _ => with_key(key, |k| self.fetch(k, &mut got))?,
        };
        if !found {
            return Ok(None);
        }
        match got.stripped {
            // SAFETY: `ascii` is the sink's: set only when `copy_tail_to_vec` saw no byte with
            // its high bit set in the payload it copied (the last, validated read's).
            true => unsafe { V::from_payload(got.buf, got.ascii) }.map(Some),
            false => V::decode_owned(got.buf).map(Some),
        }
    }

    /// Looks the encoded key up, the value into `got`; whether it was there.
    fn fetch(&self, k: &[u8], got: &mut Payload) -> Result<bool> {
        Ok(match &self.store {
            Store::Local(m) => m.get_with(k, got)?,
            #[cfg(feature = "redis")]
            Store::Redis(m) => {
                got.stripped = false;
                m.get_into(k, &mut got.buf)?
            }
        })
    }

    /// Whether `key` is present.
    pub fn contains_key<Q: EncodesAs<K> + ?Sized>(&self, key: &Q) -> Result<bool> {
        with_key(key, |k| Ok(self.store.ops().contains_key(k)?))
    }

    /// Sets `key` to `value`; `true` if the key was new.
    pub fn insert<Q, W>(&self, key: &Q, value: &W) -> Result<bool>
    where
        Q: EncodesAs<K> + ?Sized,
        W: EncodesAs<V> + ?Sized,
    {
        let value = encoded_value(value)?;
        with_key(key, |k| {
            Ok(self.store.ops().insert(k, &value)? == Inserted::New)
        })
    }

    /// Removes `key`; `true` if it was present.
    pub fn remove<Q: EncodesAs<K> + ?Sized>(&self, key: &Q) -> Result<bool> {
        with_key(key, |k| Ok(self.store.ops().remove(k)?))
    }

    /// Removes `key` and returns its value (Python's `pop`): of processes racing on one key,
    /// one gets it. A value of another type is [`Error::WrongType`] and stays in the map (on
    /// Redis the value is read, checked, then removed only if unchanged: two round trips).
    pub fn pop<Q: EncodesAs<K> + ?Sized>(&self, key: &Q) -> Result<Option<V>>
    where
        V: Decode,
    {
        with_key(key, |k| match &self.store {
            // Decoded under the key's writer exclusion, removed only if it decodes.
            Store::Local(m) => m.update(k, |current| match current.map(V::decode_value) {
                None => (Update::Keep, Ok(None)),
                Some(Ok(v)) => (Update::Remove, Ok(Some(v))),
                Some(Err(e)) => (Update::Keep, Err(e)),
            })?,
            // The value is read and checked first, then removed only if it is still that
            // value (one script): a value of another type is reported and stays.
            #[cfg(feature = "redis")]
            Store::Redis(m) => {
                let mut current = m.get(k)?;
                loop {
                    let Some(bytes) = current else {
                        return Ok(None);
                    };
                    let v = V::decode_value(&bytes)?;
                    match m.compare_exchange(k, Some(&bytes), None)? {
                        Ok(()) => return Ok(Some(v)),
                        Err(now) => current = now, // changed meanwhile: judge the new value
                    }
                }
            }
        })
    }

    /// The value of `key`, after setting it to `value` if it was absent (Python's
    /// `setdefault`): processes racing on one key all get the same value back.
    pub fn get_or_insert<Q, W>(&self, key: &Q, value: &W) -> Result<V>
    where
        Q: EncodesAs<K> + ?Sized,
        W: EncodesAs<V> + ?Sized,
        V: Decode,
    {
        let value = encoded_value(value)?;
        with_key(key, |k| {
            let (stored, _inserted) = self.store.ops().get_or_insert(k, &value)?;
            V::decode_owned(stored)
        })
    }

    /// Sets `key` to `new` only if it holds `expected` (the same type and value, as in
    /// Python); returns whether it did. A tuple an older Python stored pickled matches too
    /// (as Python's own `compare_and_set` does): a second compare-and-set replaces that form.
    pub fn compare_and_set<Q, W>(&self, key: &Q, expected: &W, new: &W) -> Result<bool>
    where
        Q: EncodesAs<K> + ?Sized,
        W: EncodesAs<V> + ?Sized,
    {
        let (expected, new) = (encoded_value(expected)?, encoded_value(new)?);
        with_key(key, |k| {
            let ops = self.store.ops();
            Ok(
                match ops.compare_exchange(k, Some(&expected), Some(&new))? {
                    Ok(()) => true,
                    Err(Some(current)) if unpickled_tuple(&current).as_ref() == Some(&expected) => {
                        ops.compare_exchange(k, Some(&current), Some(&new))?.is_ok()
                    }
                    Err(_) => false,
                },
            )
        })
    }

    /// Adds `delta` (any [`Number`]: `-1` to a `u64` counter) to the number at `key` (0 if
    /// absent) and returns the new value, in one atomic step: counts from many processes
    /// (Rust or Python) add up exactly. On a map of an integer type a sum it cannot hold is an
    /// error and nothing changes: a float ([`Error::NotANumber`]), an int out of its range
    /// ([`Error::OutOfRange`]); past 128 bits, [`Error::Overflow`].
    pub fn incr<Q, D>(&self, key: &Q, delta: D) -> Result<V>
    where
        Q: EncodesAs<K> + ?Sized,
        D: Number,
        V: Number,
    {
        let delta = delta.to_num()?;
        with_key(key, |k| {
            let done = match &self.store {
                Store::Local(m) => number::incr_local(m, k, delta, Num::Int(0), V::HOLDS)?,
                #[cfg(feature = "redis")]
                Store::Redis(m) => number::incr_redis(m, k, delta, Num::Int(0), V::HOLDS)?,
            };
            match done {
                Ok(bytes) => V::decode_owned(bytes),
                Err(NotANumber::Type(found)) => Err(Error::NotANumber(found.into_owned())),
                Err(NotANumber::Overflow) => Err(Error::Overflow),
                Err(NotANumber::OutOfRange(sum)) => Err(Error::OutOfRange {
                    expected: std::any::type_name::<V>(),
                    found: sum,
                }),
            }
        })
    }

    /// Sets every pair (Python's `update`): each pair atomic, in order. On Redis all pairs go
    /// in one step.
    pub fn update<A, B>(&self, pairs: impl IntoIterator<Item = (A, B)>) -> Result<()>
    where
        A: EncodesAs<K>,
        B: EncodesAs<V>,
    {
        let mut encoded = Vec::new();
        for (k, v) in pairs {
            let mut key = Vec::new();
            k.encode_key(&mut key)?;
            encoded.push((key, encoded_value(&v)?));
        }
        match &self.store {
            Store::Local(m) => {
                for (k, v) in &encoded {
                    m.insert(k, v)?;
                }
            }
            #[cfg(feature = "redis")]
            Store::Redis(m) => m.set_many(&encoded)?,
        }
        Ok(())
    }

    /// Number of entries.
    pub fn len(&self) -> Result<usize> {
        Ok(self.store.ops().len()?)
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.store.ops().is_empty()?)
    }

    /// A snapshot of the entries: each as it was at some instant of the scan; entries added
    /// or removed meanwhile may or may not appear, none twice. An entry of another type is an
    /// `Err` item (the others still come).
    pub fn iter(&self) -> Result<impl Iterator<Item = Result<(K, V)>>>
    where
        K: Decode,
        V: Decode,
    {
        Ok(self
            .store
            .ops()
            .entries()?
            .into_iter()
            .map(|(k, v)| Ok((K::decode_key(&k)?, V::decode_owned(v)?))))
    }

    /// The map's name (a segment's name, a file's path, a Redis map's name).
    pub fn name(&self) -> &str {
        self.store.ops().name()
    }

    /// The map's parameters as Python shows them (limits without the tag byte; a limit of
    /// `shmap::MAX_KEY_SIZE_LIMIT - 1` or `MAX_VALUE_SIZE_LIMIT - 1` is none).
    pub fn params(&self) -> MapParams {
        let p = self.store.ops().params();
        MapParams {
            max_key_size: p.max_key_size - TAG,
            max_value_size: p.max_value_size - TAG,
            ..p
        }
    }

    /// Writes a file-backed map's pages to its file (msync); nothing to do elsewhere.
    pub fn flush(&self) -> Result<()> {
        match &self.store {
            Store::Local(m) => Ok(m.flush()?),
            #[cfg(feature = "redis")]
            Store::Redis(_) => Ok(()),
        }
    }

    /// Removes the map's name (a segment, a file) so that no one attaches any more: open
    /// handles keep working. A Redis map is deleted from the server for every handle.
    pub fn unlink(&self) -> Result<()> {
        match &self.store {
            Store::Local(m) => Ok(m.unlink()?),
            #[cfg(feature = "redis")]
            Store::Redis(m) => Ok(m.unlink()?),
        }
    }

    /// The bytes map underneath, for what the typed layer does not offer.
    pub fn as_bytes_map(&self) -> &dyn MapOps {
        self.store.ops()
    }
}

#[cfg(feature = "redis")]
fn open_redis(
    url: &str,
    name: &str,
    options: &Options,
    stored: MapParams,
) -> shmap::Result<shmap_backends::RedisMap> {
    let stored = crate::open::redis_params(stored, options.max_capacity.is_some());
    let (create, exist_ok) = (!options.attach_only, options.exist_ok);
    let map = crate::open::open_or_create_redis(
        url,
        name,
        stored,
        (create, exist_ok),
        options.redis.clone(),
    )?;
    if create && exist_ok {
        options.check_found(&map.label(), map.params(), true)?;
    }
    Ok(map)
}

impl<K, V> fmt::Debug for SharedHashMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedHashMap")
            .field("name", &self.store.ops().name())
            .field("key", &std::any::type_name::<K>())
            .field("value", &std::any::type_name::<V>())
            .finish()
    }
}
