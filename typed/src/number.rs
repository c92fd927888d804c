//! `incr`: one read-modify-write of a number, the same arithmetic in Rust and in Python. On
//! shared memory it runs under the key's writer exclusion (`MapBackend::update`), with no
//! allocation but the result's; on a Redis map it is `incr.lua`, one step on the server, bit
//! for bit the same.
//!
//! Python's rules: an int (a bool counts as one) plus an int is an int, within 128 bits;
//! anything plus a float is a float.

use std::borrow::Cow;

use shmap::{MapBackend, Update};

use crate::codec::{self, Tag};

/// A number as `incr` computes with it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    /// An int (or a bool, as 0 or 1).
    Int(i128),
    /// A float.
    Float(f64),
}

/// Why a stored value cannot be incremented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotANumber {
    /// The stored value is of this (Python) type, not an int or float; or a map of ints met a
    /// float (`"float"`).
    Type(Cow<'static, str>),
    /// The sum, or the stored int, is beyond 128 bits.
    Overflow,
    /// The sum (in decimal) is outside what the map's value type holds ([`Holds::Ints`]).
    OutOfRange(String),
}

/// What `incr` may store: any number (Python), or ints within a Rust type's range (a typed
/// map of `u8`, `i64`...). A sum it does not hold is an error, and nothing changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    /// Any int (to 128 bits) or float.
    Any,
    /// Ints from `min` to `max`.
    Ints {
        /// The least.
        min: i128,
        /// The greatest.
        max: i128,
    },
}

impl Holds {
    /// Why `sum` may not be stored, if it may not.
    fn refuses(self, sum: Num) -> Option<NotANumber> {
        match (self, sum) {
            (Holds::Any, _) => None,
            (Holds::Ints { .. }, Num::Float(_)) => Some(NotANumber::Type("float".into())),
            (Holds::Ints { min, max }, Num::Int(i)) => {
                (i < min || i > max).then(|| NotANumber::OutOfRange(i.to_string()))
            }
        }
    }
}

impl Num {
    /// `self + other` as Python computes it; `None` past 128-bit ints.
    pub fn checked_add(self, other: Num) -> Option<Num> {
        Some(match (self, other) {
            (Num::Int(a), Num::Int(b)) => Num::Int(a.checked_add(b)?),
            (Num::Int(a), Num::Float(b)) => Num::Float(a as f64 + b),
            (Num::Float(a), Num::Int(b)) => Num::Float(a + b as f64),
            (Num::Float(a), Num::Float(b)) => Num::Float(a + b),
        })
    }

    /// The value encoding of the number.
    pub fn encode(self) -> Vec<u8> {
        match self {
            Num::Int(i) => {
                let mut out = Vec::with_capacity(9);
                codec::push_int(i, &mut out);
                out
            }
            Num::Float(f) => codec::tagged(Tag::Float, &f.to_le_bytes()),
        }
    }

    /// The stored value as a number, if it is an int (bool included) or a float.
    pub fn from_stored(bytes: &[u8]) -> Result<Num, NotANumber> {
        match codec::tag_of(bytes) {
            Some((Tag::Int, p)) => p
                .try_into()
                .map(|w| Num::Int(i64::from_le_bytes(w).into()))
                .map_err(|_| NotANumber::Type("corrupt int".into())),
            Some((Tag::BigInt, p)) => codec::big_int(p).map(Num::Int).ok_or(NotANumber::Overflow),
            Some((Tag::Bool, p)) => Ok(Num::Int(i128::from(p.first() == Some(&1)))),
            Some((Tag::Float, p)) => p
                .try_into()
                .map(|w| Num::Float(f64::from_le_bytes(w)))
                .map_err(|_| NotANumber::Type("corrupt float".into())),
            Some((tag, _)) => Err(NotANumber::Type(tag.python_name().into())),
            None => Err(NotANumber::Type("corrupt value".into())),
        }
    }
}

/// What an `incr` did: the new value's encoding, or why it changed nothing.
pub type Incremented = shmap::Result<Result<Vec<u8>, NotANumber>>;

/// `incr` on a shared-memory (or file) map: adds `delta` to the number at `key` (`default` if
/// absent) and returns the new value's encoding. A sum `holds` refuses is an error, and
/// nothing changes.
pub fn incr_local<M: MapBackend>(
    map: &M,
    key: &[u8],
    delta: Num,
    default: Num,
    holds: Holds,
) -> Incremented {
    map.update(key, |current| {
        let base = match current.map(Num::from_stored) {
            None => Ok(default),
            Some(n) => n,
        };
        let sum = base
            .and_then(|b| b.checked_add(delta).ok_or(NotANumber::Overflow))
            .and_then(|new| holds.refuses(new).map_or(Ok(new), Err));
        match sum {
            Ok(new) => {
                let bytes = new.encode();
                (Update::Set(bytes.clone()), Ok(bytes))
            }
            Err(e) => (Update::Keep, Err(e)),
        }
    })
}

#[cfg(feature = "redis")]
mod on_redis {
    use std::sync::LazyLock;

    use shmap_backends::redis_map::redis::{self, Script};
    use shmap_backends::redis_map::write_script;
    use shmap_backends::RedisMap;

    use super::{Holds, Incremented, NotANumber, Num};

    /// `incr` on the server: see `incr.lua`.
    static INCR: LazyLock<Script> = LazyLock::new(|| write_script(include_str!("incr.lua")));

    /// `incr` on a Redis map, one step on the server: as [`super::incr_local`].
    pub fn incr_redis(
        map: &RedisMap,
        key: &[u8],
        delta: Num,
        default: Num,
        holds: Holds,
    ) -> Incremented {
        let (delta, default) = (delta.encode(), default.encode());
        let reply: Vec<redis::Value> = match holds {
            Holds::Any => map.script_once(&INCR, &[key, &delta, &default])?,
            Holds::Ints { min, max } => {
                let (min, max) = (min.to_string(), max.to_string());
                let args: [&[u8]; 6] =
                    [key, &delta, &default, b"i", min.as_bytes(), max.as_bytes()];
                map.script_once(&INCR, &args)?
            }
        };
        let bytes = |v: Option<&redis::Value>| match v {
            Some(redis::Value::BulkString(b)) => Some(b.clone()),
            _ => None,
        };
        Ok(match reply.first() {
            Some(redis::Value::Int(0)) => {
                bytes(reply.get(1)).ok_or(NotANumber::Type("corrupt reply".into()))
            }
            Some(redis::Value::Int(1)) => Err(NotANumber::Type(
                bytes(reply.get(1)).map_or("corrupt value".into(), |b| {
                    String::from_utf8_lossy(&b).into_owned().into()
                }),
            )),
            Some(redis::Value::Int(3)) => Err(NotANumber::OutOfRange(
                bytes(reply.get(1))
                    .map_or_else(String::new, |b| String::from_utf8_lossy(&b).into_owned()),
            )),
            _ => Err(NotANumber::Overflow),
        })
    }
}

#[cfg(feature = "redis")]
pub use on_redis::incr_redis;
