//! Rust types as Python's `shared_hashmap` stores the same values ([`crate::codec`]): a key or
//! value is [`Encode`] to be written and [`Decode`] to be read.
//!
//! | Rust | Python | notes |
//! |------|--------|-------|
//! | `String`, `str` | `str` | |
//! | `Vec<u8>`, `[u8]` | `bytes` | |
//! | `i8` ... `i128`, `u8` ... `u128`, `isize`, `usize` | `int` | a stored int that does not fit is [`Error::OutOfRange`] |
//! | `f64` | `float` | as a key, an integral float is the int it equals |
//! | `bool` | `bool` | as a key, the int 0 or 1 (`True == 1` in a dict) |
//! | `Option<T>` | `None` or `T` | `Some(None)` of an `Option<Option<T>>` is stored as `None` |
//! | tuples of these, up to 6 | `tuple` | |
//! | [`Json<T>`] (serde) | `list`, `dict`, ... via `json` | values only |
//!
//! So `1_i64`, `1.0_f64` and `true` are one key, as in Python. Reading a value of another type
//! is [`Error::WrongType`], naming both types.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{self, Tag};
pub use crate::encodes_as::EncodesAs;
use crate::error::{Error, Result};
use crate::number::{Holds, Num};

/// A type the map can store: its value encoding, and its canonical key encoding (keys equal in
/// Python encode to equal bytes).
pub trait Encode {
    /// Appends the value encoding (type tag first) to `out`.
    fn encode_value(&self, out: &mut Vec<u8>) -> Result<()>;

    /// Appends the key encoding to `out`: the value encoding unless equal Python keys of
    /// different types must meet (numbers, and tuples holding them).
    fn encode_key(&self, out: &mut Vec<u8>) -> Result<()> {
        self.encode_value(out)
    }

    /// The key encoding written into `buf` if this type has a short one and it fits: a get's
    /// key then needs no allocation. `None`: use [`Encode::encode_key`].
    #[doc(hidden)]
    #[inline]
    fn encode_key_small(&self, _buf: &mut [u8]) -> Option<usize> {
        None
    }

    /// The key encoding as a tag and a payload this value already holds (a `str`'s UTF-8, a
    /// byte string): a get then hashes and compares it in place (`shmap::Tagged`).
    #[doc(hidden)]
    #[inline]
    fn tagged_key(&self) -> Option<(Tag, &[u8])> {
        None
    }
}

/// `tag` then `payload` into `buf`, if they fit.
#[inline]
fn put(buf: &mut [u8], tag: Tag, payload: &[u8]) -> Option<usize> {
    let n = 1 + payload.len();
    let dst = buf.get_mut(..n)?;
    dst[0] = tag as u8;
    dst[1..].copy_from_slice(payload);
    Some(n)
}

/// A type the map can read back.
pub trait Decode: Sized {
    /// The value `bytes` (a value encoding) stands for, if it is of this type.
    fn decode_value(bytes: &[u8]) -> Result<Self>;

    /// The key `bytes` (a canonical key encoding) stands for, if it is of this type.
    fn decode_key(bytes: &[u8]) -> Result<Self> {
        Self::decode_value(bytes)
    }

    /// As [`Decode::decode_value`], from a buffer it may keep (a `String` or `Vec<u8>` reuses
    /// it: a get allocates once).
    #[inline]
    fn decode_owned(bytes: Vec<u8>) -> Result<Self> {
        Self::decode_value(&bytes)
    }

    /// The tag whose payload alone makes a value of this type (`str` for `String`, `bytes`
    /// for `Vec<u8>`): a get copies only that payload, into the buffer the value keeps.
    #[doc(hidden)]
    const PAYLOAD: Option<Tag> = None;

    /// The value of a `PAYLOAD`-tagged encoding from its payload.
    ///
    /// # Safety
    /// With `ascii`, no byte of `payload` has its high bit set (a `String` is then made
    /// without validating its UTF-8).
    #[doc(hidden)]
    #[inline]
    unsafe fn from_payload(payload: Vec<u8>, _ascii: bool) -> Result<Self> {
        let tag = Self::PAYLOAD.map_or(u8::MAX, |t| t as u8);
        Self::decode_owned([&[tag][..], &payload].concat())
    }
}

/// The buffer of an encoding of `tag` without its tag byte.
#[inline]
fn strip<T>(mut bytes: Vec<u8>, tag: Tag) -> Result<Vec<u8>> {
    payload::<T>(&bytes, tag)?;
    bytes.remove(0);
    Ok(bytes)
}

impl<T: Encode + ?Sized> Encode for &T {
    fn encode_value(&self, out: &mut Vec<u8>) -> Result<()> {
        (**self).encode_value(out)
    }
    fn encode_key(&self, out: &mut Vec<u8>) -> Result<()> {
        (**self).encode_key(out)
    }
    #[inline]
    fn encode_key_small(&self, buf: &mut [u8]) -> Option<usize> {
        (**self).encode_key_small(buf)
    }
    #[inline]
    fn tagged_key(&self) -> Option<(Tag, &[u8])> {
        (**self).tagged_key()
    }
}

/// The payload of `bytes` if its tag is `want`; else the error that names both types.
fn payload<T: ?Sized>(bytes: &[u8], want: Tag) -> Result<&[u8]> {
    match codec::tag_of(bytes) {
        Some((tag, p)) if tag == want => Ok(p),
        found => Err(mismatch::<T>(found.map(|(t, _)| t))),
    }
}

/// The error for a stored `found` that is not a `T`.
fn mismatch<T: ?Sized>(found: Option<Tag>) -> Error {
    let expected = std::any::type_name::<T>();
    match found {
        Some(Tag::Pickle) => Error::Pickled { expected },
        Some(tag) => Error::WrongType {
            expected,
            found: tag.python_name(),
        },
        None => Error::Corrupt {
            what: "value",
            reason: "no known type tag",
        },
    }
}

/// Stored digits for an error message: at most 40 characters of them (a hostile segment may
/// hold megabytes).
fn shown(digits: &[u8]) -> String {
    let text = String::from_utf8_lossy(digits);
    match text.char_indices().nth(40) {
        Some((at, _)) => format!("{}... ({} digits)", &text[..at], digits.len()),
        None => text.into_owned(),
    }
}

fn out_of_range<T>(found: impl fmt::Display) -> Error {
    Error::OutOfRange {
        expected: std::any::type_name::<T>(),
        found: found.to_string(),
    }
}

impl Encode for str {
    fn encode_value(&self, out: &mut Vec<u8>) -> Result<()> {
        out.push(Tag::Str as u8);
        out.extend_from_slice(self.as_bytes());
        Ok(())
    }
    #[inline]
    fn encode_key_small(&self, buf: &mut [u8]) -> Option<usize> {
        put(buf, Tag::Str, self.as_bytes())
    }
    #[inline]
    fn tagged_key(&self) -> Option<(Tag, &[u8])> {
        Some((Tag::Str, self.as_bytes()))
    }
}

impl Encode for String {
    fn encode_value(&self, out: &mut Vec<u8>) -> Result<()> {
        self.as_str().encode_value(out)
    }
    #[inline]
    fn encode_key_small(&self, buf: &mut [u8]) -> Option<usize> {
        self.as_str().encode_key_small(buf)
    }
    #[inline]
    fn tagged_key(&self) -> Option<(Tag, &[u8])> {
        self.as_str().tagged_key()
    }
}

impl Decode for String {
    fn decode_value(bytes: &[u8]) -> Result<Self> {
        Self::decode_owned(bytes.to_vec())
    }
    #[inline]
    fn decode_owned(bytes: Vec<u8>) -> Result<Self> {
        // SAFETY: not `ascii`: the UTF-8 is validated.
        unsafe { Self::from_payload(strip::<Self>(bytes, Tag::Str)?, false) }
    }

    const PAYLOAD: Option<Tag> = Some(Tag::Str);

    #[inline]
    unsafe fn from_payload(payload: Vec<u8>, ascii: bool) -> Result<Self> {
        if ascii {
            // SAFETY: with `ascii` no byte has its high bit set (the caller's contract):
            // ASCII, which is valid UTF-8.
            return Ok(unsafe { String::from_utf8_unchecked(payload) });
        }
        String::from_utf8(payload).map_err(|_| Error::Corrupt {
            what: "str",
            reason: "not UTF-8",
        })
    }
}

impl Encode for [u8] {
    fn encode_value(&self, out: &mut Vec<u8>) -> Result<()> {
        out.push(Tag::Bytes as u8);
        out.extend_from_slice(self);
        Ok(())
    }
    #[inline]
    fn encode_key_small(&self, buf: &mut [u8]) -> Option<usize> {
        put(buf, Tag::Bytes, self)
    }
    #[inline]
    fn tagged_key(&self) -> Option<(Tag, &[u8])> {
        Some((Tag::Bytes, self))
    }
}

impl Encode for Vec<u8> {
    fn encode_value(&self, out: &mut Vec<u8>) -> Result<()> {
        self.as_slice().encode_value(out)
    }
    #[inline]
    fn encode_key_small(&self, buf: &mut [u8]) -> Option<usize> {
        self.as_slice().encode_key_small(buf)
    }
    #[inline]
    fn tagged_key(&self) -> Option<(Tag, &[u8])> {
        self.as_slice().tagged_key()
    }
}

impl Decode for Vec<u8> {
    fn decode_value(bytes: &[u8]) -> Result<Self> {
        payload::<Self>(bytes, Tag::Bytes).map(<[u8]>::to_vec)
    }
    #[inline]
    fn decode_owned(bytes: Vec<u8>) -> Result<Self> {
        strip::<Self>(bytes, Tag::Bytes)
    }

    const PAYLOAD: Option<Tag> = Some(Tag::Bytes);

    #[inline]
    unsafe fn from_payload(payload: Vec<u8>, _ascii: bool) -> Result<Self> {
        Ok(payload)
    }
}

/// The int a stored int encoding holds, as an `i128` or (past it) a `u128`.
enum Stored {
    Signed(i128),
    Unsigned(u128),
}

fn stored_int<T>(bytes: &[u8]) -> Result<Stored> {
    match codec::tag_of(bytes) {
        Some((Tag::Int, p)) => p
            .try_into()
            .map(|w| Stored::Signed(i64::from_le_bytes(w).into()))
            .map_err(|_| Error::Corrupt {
                what: "int",
                reason: "not 8 bytes",
            }),
        Some((Tag::BigInt, p)) => {
            let digits = std::str::from_utf8(p).map_err(|_| Error::Corrupt {
                what: "int",
                reason: "not decimal digits",
            })?;
            digits
                .parse::<i128>()
                .map(Stored::Signed)
                .or_else(|_| digits.parse::<u128>().map(Stored::Unsigned))
                .map_err(|_| out_of_range::<T>(shown(digits.as_bytes())))
        }
        found => Err(mismatch::<T>(found.map(|(t, _)| t))),
    }
}

macro_rules! ints {
    ($($t:ty),*) => {$(
        impl EncodesAs<$t> for $t {}

        impl Encode for $t {
            fn encode_value(&self, out: &mut Vec<u8>) -> Result<()> {
                #[allow(irrefutable_let_patterns, clippy::cast_lossless)]
                match i128::try_from(*self) {
                    Ok(i) => codec::push_int(i, out),
                    Err(_) => {
                        out.push(Tag::BigInt as u8);
                        out.extend_from_slice(self.to_string().as_bytes());
                    }
                }
                Ok(())
            }
            #[inline]
            #[allow(clippy::useless_conversion)]
            fn encode_key_small(&self, buf: &mut [u8]) -> Option<usize> {
                let small = i64::try_from(*self).ok()?;
                put(buf, Tag::Int, &small.to_le_bytes())
            }
        }

        impl Decode for $t {
            fn decode_value(bytes: &[u8]) -> Result<Self> {
                match stored_int::<Self>(bytes)? {
                    Stored::Signed(i) => <$t>::try_from(i).map_err(|_| out_of_range::<Self>(i)),
                    Stored::Unsigned(u) => <$t>::try_from(u).map_err(|_| out_of_range::<Self>(u)),
                }
            }
        }

        impl Number for $t {
            #[allow(clippy::cast_possible_wrap, clippy::unnecessary_cast)]
            const HOLDS: Holds = Holds::Ints {
                min: <$t>::MIN as i128, // 0 for the unsigned, exact for the signed
                // u128's greatest is past every sum (sums stop at i128::MAX).
                max: if <$t>::MAX as u128 > i128::MAX as u128 {
                    i128::MAX
                } else {
                    <$t>::MAX as i128
                },
            };
            fn to_num(&self) -> Result<Num> {
                i128::try_from(*self).map(Num::Int).map_err(|_| Error::Overflow)
            }
        }
    )*};
}

ints!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize);

impl Encode for bool {
    fn encode_value(&self, out: &mut Vec<u8>) -> Result<()> {
        out.extend_from_slice(&[Tag::Bool as u8, u8::from(*self)]);
        Ok(())
    }
    fn encode_key(&self, out: &mut Vec<u8>) -> Result<()> {
        codec::push_int(i128::from(*self), out); // True == 1
        Ok(())
    }
    #[inline]
    fn encode_key_small(&self, buf: &mut [u8]) -> Option<usize> {
        put(buf, Tag::Int, &i64::from(*self).to_le_bytes())
    }
}

impl Decode for bool {
    fn decode_value(bytes: &[u8]) -> Result<Self> {
        match payload::<Self>(bytes, Tag::Bool)? {
            [b @ (0 | 1)] => Ok(*b == 1),
            _ => Err(Error::Corrupt {
                what: "bool",
                reason: "not one byte 0 or 1",
            }),
        }
    }
    fn decode_key(bytes: &[u8]) -> Result<Self> {
        match codec::tag_of(bytes) {
            Some((Tag::Bool, _)) => Self::decode_value(bytes),
            Some((Tag::Int, _)) => match i64::decode_value(bytes) {
                Ok(b @ (0 | 1)) => Ok(b == 1),
                Ok(other) => Err(out_of_range::<Self>(other)),
                Err(e) => Err(e),
            },
            found => Err(mismatch::<Self>(found.map(|(t, _)| t))),
        }
    }
}

impl Encode for f64 {
    fn encode_value(&self, out: &mut Vec<u8>) -> Result<()> {
        out.push(Tag::Float as u8);
        out.extend_from_slice(&self.to_le_bytes());
        Ok(())
    }
    fn encode_key(&self, out: &mut Vec<u8>) -> Result<()> {
        codec::push_float_key(*self, out); // 1.0 == 1
        Ok(())
    }
}

impl Decode for f64 {
    fn decode_value(bytes: &[u8]) -> Result<Self> {
        payload::<Self>(bytes, Tag::Float)?
            .try_into()
            .map(f64::from_le_bytes)
            .map_err(|_| Error::Corrupt {
                what: "float",
                reason: "not 8 bytes",
            })
    }
    /// A float key, or an int key that a float equals exactly (`1` for `1.0`).
    fn decode_key(bytes: &[u8]) -> Result<Self> {
        match codec::tag_of(bytes) {
            Some((Tag::Float, _)) => Self::decode_value(bytes),
            Some((Tag::Int | Tag::BigInt, p)) => {
                let exact = |f: f64| {
                    let mut again = Vec::new();
                    codec::push_float_key(f, &mut again);
                    again == bytes
                };
                let f = match codec::tag_of(bytes) {
                    Some((Tag::Int, _)) => i64::decode_value(bytes)? as f64,
                    _ => std::str::from_utf8(p)
                        .ok()
                        .and_then(|d| d.parse::<f64>().ok())
                        .unwrap_or(f64::NAN),
                };
                if exact(f) {
                    Ok(f)
                } else {
                    Err(out_of_range::<Self>(shown(p)))
                }
            }
            found => Err(mismatch::<Self>(found.map(|(t, _)| t))),
        }
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode_value(&self, out: &mut Vec<u8>) -> Result<()> {
        match self {
            None => {
                out.push(Tag::None as u8);
                Ok(())
            }
            Some(v) => v.encode_value(out),
        }
    }
    fn encode_key(&self, out: &mut Vec<u8>) -> Result<()> {
        match self {
            None => {
                out.push(Tag::None as u8);
                Ok(())
            }
            Some(v) => v.encode_key(out),
        }
    }
}

impl<T: Decode> Decode for Option<T> {
    fn decode_value(bytes: &[u8]) -> Result<Self> {
        match bytes.first() {
            Some(&b) if b == Tag::None as u8 => Ok(None),
            _ => T::decode_value(bytes).map(Some),
        }
    }
    fn decode_key(bytes: &[u8]) -> Result<Self> {
        match bytes.first() {
            Some(&b) if b == Tag::None as u8 => Ok(None),
            _ => T::decode_key(bytes).map(Some),
        }
    }
}

/// Appends one tuple element, length first, encoded in place (no buffer of its own).
fn push_element(out: &mut Vec<u8>, encode: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<()> {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    encode(out)?;
    let len = u32::try_from(out.len() - at - 4)
        .map_err(|_| Error::Unstorable("a tuple element is larger than 4 GiB"))?;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// The tuple encoding of a tuple value an older Python pickled ([`crate::unpickle`]).
pub(crate) fn unpickled_tuple(bytes: &[u8]) -> Option<Vec<u8>> {
    match codec::tag_of(bytes) {
        Some((Tag::Pickle, pickle)) => crate::unpickle::tuple_from_pickle(pickle),
        _ => None,
    }
}

/// The `N` elements of a stored tuple.
fn elements<T, const N: usize>(bytes: &[u8]) -> Result<[&[u8]; N]> {
    let parts = codec::parts(payload::<T>(bytes, Tag::Tuple)?).ok_or(Error::Corrupt {
        what: "tuple",
        reason: "element lengths do not add up",
    })?;
    let n = parts.len();
    parts
        .try_into()
        .map_err(|_| out_of_range::<T>(format_args!("a tuple of {n}")))
}

macro_rules! tuples {
    ($(($n:literal; $($t:ident $q:ident $i:tt),+)),*) => {$(
        impl<$($t, $q: EncodesAs<$t>),+> EncodesAs<($($t,)+)> for ($($q,)+) {}

        impl<$($t: Encode),+> Encode for ($($t,)+) {
            fn encode_value(&self, out: &mut Vec<u8>) -> Result<()> {
                out.push(Tag::Tuple as u8);
                $(push_element(out, |o| self.$i.encode_value(o))?;)+
                Ok(())
            }
            fn encode_key(&self, out: &mut Vec<u8>) -> Result<()> {
                out.push(Tag::Tuple as u8);
                $(push_element(out, |o| self.$i.encode_key(o))?;)+
                Ok(())
            }
        }

        impl<$($t: Decode),+> Decode for ($($t,)+) {
            fn decode_value(bytes: &[u8]) -> Result<Self> {
                if let Some(today) = unpickled_tuple(bytes) {
                    return Self::decode_value(&today);
                }
                let parts = elements::<Self, $n>(bytes)?;
                Ok(($($t::decode_value(parts[$i])?,)+))
            }
            fn decode_key(bytes: &[u8]) -> Result<Self> {
                let parts = elements::<Self, $n>(bytes)?;
                Ok(($($t::decode_key(parts[$i])?,)+))
            }
        }
    )*};
}

tuples!(
    (1; A QA 0),
    (2; A QA 0, B QB 1),
    (3; A QA 0, B QB 1, C QC 2),
    (4; A QA 0, B QB 1, C QC 2, D QD 3),
    (5; A QA 0, B QB 1, C QC 2, D QD 3, E QE 4),
    (6; A QA 0, B QB 1, C QC 2, D QD 3, E QE 4, F QF 5)
);

/// A value stored as JSON (`serde`): Python reads it with `json.loads`, and a Python map made
/// with `serializer="json"` writes its lists and dicts so that Rust reads them as `Json<T>`.
/// Values only: Python's lists and dicts cannot be keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Json<T>(pub T);

impl<T: Serialize> Encode for Json<T> {
    fn encode_value(&self, out: &mut Vec<u8>) -> Result<()> {
        out.push(Tag::Json as u8);
        serde_json::to_writer(&mut *out, &self.0)?;
        Ok(())
    }
    fn encode_key(&self, _out: &mut Vec<u8>) -> Result<()> {
        Err(Error::Unstorable(
            "a JSON document cannot be a key (Python's lists and dicts are unhashable)",
        ))
    }
}

impl<T: DeserializeOwned> Decode for Json<T> {
    fn decode_value(bytes: &[u8]) -> Result<Self> {
        Ok(Json(serde_json::from_slice(payload::<Self>(
            bytes,
            Tag::Json,
        )?)?))
    }
}

/// A number `incr` adds: the integers and `f64`. On a map of an integer type `incr` stores
/// only what the type holds: a float, or an int out of its range, is an error and nothing
/// changes.
pub trait Number: Encode + Decode + Copy {
    /// What a map of this type lets `incr` store.
    const HOLDS: Holds;
    /// The number as `incr` computes with it; [`Error::Overflow`] past 128-bit ints.
    fn to_num(&self) -> Result<Num>;
}

impl Number for f64 {
    const HOLDS: Holds = Holds::Any;
    fn to_num(&self) -> Result<Num> {
        Ok(Num::Float(*self))
    }
}
