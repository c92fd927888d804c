//! The bytes a map holds, as Python's `shared_hashmap` writes them, so that both languages read
//! and write one map. Every key and value starts with a type tag ([`Tag`]); the payload follows.
//!
//! | tag | payload |
//! |-----|---------|
//! | [`Tag::None`] | nothing |
//! | [`Tag::Str`] | UTF-8 |
//! | [`Tag::Bytes`] | the bytes |
//! | [`Tag::Int`] | an int that fits an `i64`: 8 bytes little-endian |
//! | [`Tag::BigInt`] | any other int: its decimal digits in ASCII, `-` first if negative |
//! | [`Tag::Bool`] | one byte, 0 or 1 |
//! | [`Tag::Float`] | an `f64`, 8 bytes little-endian (bit-exact: `-0.0` and NaN payloads survive) |
//! | [`Tag::Pickle`] | `pickle.dumps` of the value: only Python reads it |
//! | [`Tag::Tuple`] | each element as a `u32` length (little-endian) and its encoding |
//! | [`Tag::FrozenSet`] | as a tuple, the elements' encodings sorted |
//! | [`Tag::Json`] | a UTF-8 JSON document (Rust's `serde_json`, Python's `json`) |
//!
//! Keys are encoded canonically, so that keys equal in a Python dict are equal bytes: `1`,
//! `1.0` and `True` are one key, stored as the int ([`push_float_key`], and a bool key is the
//! int 0 or 1); a tuple key holds its elements' key encodings. Values keep their exact type.

use std::fmt;

/// A type tag: the first byte of every stored key and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Tag {
    /// Python's `None` (Rust's `Option::None`).
    None = 0,
    /// A `str`.
    Str = 1,
    /// `bytes`.
    Bytes = 2,
    /// An int within `i64`.
    Int = 3,
    /// Any other int, in decimal.
    BigInt = 4,
    /// A `bool` value (a bool key is stored as the int).
    Bool = 5,
    /// A `float` (an integral float key is stored as the int).
    Float = 6,
    /// Any other Python value, pickled.
    Pickle = 7,
    /// A tuple of encodings.
    Tuple = 8,
    /// A frozenset of key encodings.
    FrozenSet = 9,
    /// A JSON document: Rust's `Json<T>`, Python's lists and dicts under `serializer="json"`.
    Json = 10,
}

impl Tag {
    const ALL: [Tag; 11] = [
        Tag::None,
        Tag::Str,
        Tag::Bytes,
        Tag::Int,
        Tag::BigInt,
        Tag::Bool,
        Tag::Float,
        Tag::Pickle,
        Tag::Tuple,
        Tag::FrozenSet,
        Tag::Json,
    ];

    /// The tag of this byte, if it is one.
    pub fn from_byte(b: u8) -> Option<Tag> {
        Tag::ALL.get(usize::from(b)).copied()
    }

    /// The Python type a value of this tag decodes to, for error messages.
    pub fn python_name(self) -> &'static str {
        match self {
            Tag::None => "NoneType",
            Tag::Str => "str",
            Tag::Bytes => "bytes",
            Tag::Int | Tag::BigInt => "int",
            Tag::Bool => "bool",
            Tag::Float => "float",
            Tag::Pickle => "a pickled object",
            Tag::Tuple => "tuple",
            Tag::FrozenSet => "frozenset",
            Tag::Json => "JSON document",
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.python_name())
    }
}

/// The tag of an encoding and its payload; `None` for an empty or unknown encoding.
pub fn tag_of(bytes: &[u8]) -> Option<(Tag, &[u8])> {
    let (&t, payload) = bytes.split_first()?;
    Tag::from_byte(t).map(|tag| (tag, payload))
}

/// An encoding: `tag` then `payload`.
pub fn tagged(tag: Tag, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + payload.len());
    v.push(tag as u8);
    v.extend_from_slice(payload);
    v
}

/// Appends an int's encoding: [`Tag::Int`] within `i64`, else [`Tag::BigInt`].
pub fn push_int(i: i128, out: &mut Vec<u8>) {
    match i64::try_from(i) {
        Ok(small) => {
            out.push(Tag::Int as u8);
            out.extend_from_slice(&small.to_le_bytes());
        }
        Err(_) => {
            out.push(Tag::BigInt as u8);
            out.extend_from_slice(i.to_string().as_bytes());
        }
    }
}

/// An integral, finite float that fits an i64 (so it equals that int in a dict), as the int.
pub fn float_as_int(f: f64) -> Option<i64> {
    // -2^63 is exact as an f64; 2^63 is not an i64, hence the half-open range.
    (f.fract() == 0.0 && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f))
        .then_some(f as i64)
}

/// Appends a float's canonical key encoding, as Python's `encode_key` makes it: an integral
/// float is the int it equals ([`Tag::Int`], or [`Tag::BigInt`] with the exact digits of
/// `int(f)`); any other float (fractions, infinities, NaN) is [`Tag::Float`].
pub fn push_float_key(f: f64, out: &mut Vec<u8>) {
    if let Some(i) = float_as_int(f) {
        push_int(i.into(), out);
    } else if f.is_finite() && f.fract() == 0.0 {
        out.push(Tag::BigInt as u8);
        out.extend_from_slice(integral_digits(f).as_bytes());
    } else {
        out.push(Tag::Float as u8);
        out.extend_from_slice(&f.to_le_bytes());
    }
}

/// The exact decimal digits of an integral, finite float (Python's `str(int(f))`).
pub fn integral_digits(f: f64) -> String {
    // Below 2^127 the float is an i128 exactly.
    if f.abs() < 1.7e38 {
        return (f as i128).to_string();
    }
    // m * 2^e with a 53-bit m: double a base-10^9 number e times.
    let bits = f.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1075;
    let mut limbs: Vec<u64> = vec![(bits & ((1 << 52) - 1)) | (1 << 52)];
    // The mantissa is below 2^53 < 10^18: split it into two base-10^9 limbs first.
    limbs = vec![limbs[0] % 1_000_000_000, limbs[0] / 1_000_000_000];
    for _ in 0..exp {
        let mut carry = 0;
        for limb in &mut limbs {
            let x = *limb * 2 + carry;
            *limb = x % 1_000_000_000;
            carry = x / 1_000_000_000;
        }
        if carry > 0 {
            limbs.push(carry);
        }
    }
    while limbs.len() > 1 && limbs.last() == Some(&0) {
        limbs.pop();
    }
    let mut s = String::from(if f < 0.0 { "-" } else { "" });
    let mut iter = limbs.iter().rev();
    if let Some(top) = iter.next() {
        s.push_str(&top.to_string());
    }
    for limb in iter {
        s.push_str(&format!("{limb:09}"));
    }
    s
}

/// Appends one element of a tuple payload: its length as a `u32`, then its encoding. `false`
/// (and nothing appended) for an element of 4 GiB or more.
#[must_use]
pub fn push_part(out: &mut Vec<u8>, part: &[u8]) -> bool {
    let Ok(len) = u32::try_from(part.len()) else {
        return false;
    };
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(part);
    true
}

/// The length-prefixed elements of a tuple or frozenset payload; `None` if the lengths do not
/// add up to the payload.
pub fn parts(payload: &[u8]) -> Option<Vec<&[u8]>> {
    let mut rest = payload;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_at_checked(4)?;
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let (part, tail) = tail.split_at_checked(len)?;
        out.push(part);
        rest = tail;
    }
    Some(out)
}

/// The int of a [`Tag::BigInt`] payload, as Rust's `str::parse::<i128>` reads it (`None` for
/// digits beyond 128 bits or bytes that are no digits).
pub fn big_int(payload: &[u8]) -> Option<i128> {
    std::str::from_utf8(payload).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_floats_are_their_exact_ints() {
        let key = |f: f64| {
            let mut v = Vec::new();
            push_float_key(f, &mut v);
            v
        };
        assert_eq!(key(1.0), tagged(Tag::Int, &1i64.to_le_bytes()));
        assert_eq!(key(-0.0), tagged(Tag::Int, &0i64.to_le_bytes()));
        assert_eq!(key(1e20), tagged(Tag::BigInt, b"100000000000000000000"));
        assert_eq!(
            key(-2f64.powi(63)),
            tagged(Tag::Int, &i64::MIN.to_le_bytes())
        );
        assert_eq!(
            key(2f64.powi(63)),
            tagged(Tag::BigInt, b"9223372036854775808")
        );
        // Python: str(int(2.0**200)) and str(int(-1.7976931348623157e308))
        assert_eq!(
            integral_digits(2f64.powi(200)),
            "1606938044258990275541962092341162602522202993782792835301376"
        );
        assert!(integral_digits(-f64::MAX).starts_with("-17976931348623157081452742373170435"));
        assert_eq!(integral_digits(-f64::MAX).len(), 310);
        assert_eq!(key(0.5), tagged(Tag::Float, &0.5f64.to_le_bytes()));
        assert_eq!(key(f64::INFINITY)[0], Tag::Float as u8);
    }

    #[test]
    fn tags_round_trip_and_unknown_bytes_are_none() {
        for t in Tag::ALL {
            assert_eq!(Tag::from_byte(t as u8), Some(t));
        }
        assert_eq!(tag_of(&[11]), None);
        assert_eq!(tag_of(&[]), None);
        assert_eq!(parts(&[1, 0, 0]), None);
        assert_eq!(parts(&[1, 0, 0, 0, 7]), Some(vec![&[7u8][..]]));
    }
}
