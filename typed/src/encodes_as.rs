//! [`EncodesAs`]: what a map of `T` takes where it takes a `T`, so that keys and values are
//! passed borrowed, tuples included.

use std::borrow::Borrow;

use serde::Serialize;

use crate::types::{Encode, Json};

/// `Self` is encoded as a `T` is: what a map of `T` keys (or values) takes where it takes
/// a `T`. Each type for itself, `str` for `String`, `[u8]` for `Vec<u8>`, a reference for
/// what it refers to, and options, tuples and [`Json`] part by part: a map of
/// `(String, u32)` keys is asked for `&("queue", 7)`, nothing owned.
///
/// ```
/// # use shmap_typed::{Place, SharedHashMap};
/// # let name = format!("doc-encodes-as-{}", std::process::id());
/// let m = SharedHashMap::<(String, u32), Vec<u8>>::create(&Place::shm(&name))?;
/// m.insert(&("queue", 7), b"job".as_slice())?;
/// assert_eq!(m.get(&("queue", 7))?.as_deref(), Some(&b"job"[..]));
/// m.update([(("queue", 8), b"next".as_slice())])?;
/// # m.unlink()?;
/// # Ok::<(), shmap_typed::Error>(())
/// ```
///
/// Only what encodes as a `T` does: a map of `u8` values takes a `u8`, not an `i64` that
/// might not fit. A type of your own that implements [`Encode`] implements this for itself.
pub trait EncodesAs<T: ?Sized>: Encode {}

impl<T: ?Sized, Q: EncodesAs<T> + ?Sized> EncodesAs<T> for &Q {}
impl EncodesAs<String> for String {}
impl EncodesAs<String> for str {}
impl EncodesAs<Vec<u8>> for Vec<u8> {}
impl EncodesAs<Vec<u8>> for [u8] {}
impl EncodesAs<bool> for bool {}
impl EncodesAs<f64> for f64 {}
impl<T, Q: EncodesAs<T>> EncodesAs<Option<T>> for Option<Q> {}
impl<T, Q: Serialize + Borrow<T>> EncodesAs<Json<T>> for Json<Q> {}
