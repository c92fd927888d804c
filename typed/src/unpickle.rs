//! Tuples an older Python pickled, read as the tuple encoding Python writes today.
//!
//! Before the tuple tag ([`Tag::Tuple`]) held values, Python's `shared_hashmap` stored a tuple
//! value as `pickle.dumps(t)` ([`Tag::Pickle`]). A tuple of built-in values (`str`, `bytes`,
//! `int`, `float`, `bool`, `None`, tuples) pickles to a handful of opcodes, which this reads
//! back into the encoding today's Python would have written for the same tuple: so a Rust
//! reader decodes it, and a Rust `compare_and_set` matches it. Anything else (another type, a
//! protocol below 3, which pickles `bytes` through a global, an int past 128 bits, a `str`
//! with a lone surrogate, a result past 64 KiB, where Python pickles still) is `None`: the
//! value stays readable only from Python.

use crate::codec::{self, Tag};

/// Today's tuple encoding of the pickled tuple `pickle` (a [`Tag::Pickle`] payload), if it is
/// one of built-in values.
pub fn tuple_from_pickle(pickle: &[u8]) -> Option<Vec<u8>> {
    let mut r = Reader(pickle);
    let mut stack: Vec<Option<Vec<u8>>> = Vec::new(); // `None`: a MARK
    let mut memo: Vec<Vec<u8>> = Vec::new();
    let mut made = 0usize; // bytes of encodings made: memo gets can repeat a large one
    loop {
        let value = match r.byte()? {
            0x80 => {
                // PROTO: 3 and up, so that `bytes` are opcodes, not a global call.
                if !(3..=5).contains(&r.byte()?) {
                    return None;
                }
                continue;
            }
            0x95 => {
                r.take(8)?; // FRAME: a length hint
                continue;
            }
            b'.' => {
                // STOP: one tuple, nothing after.
                let top = match (stack.pop()?, stack.is_empty(), r.0.is_empty()) {
                    (Some(top), true, true) => top,
                    _ => return None,
                };
                return (top.first() == Some(&(Tag::Tuple as u8))).then_some(top);
            }
            0x94 => {
                memo.push(stack.last()?.clone()?); // MEMOIZE
                continue;
            }
            op @ (b'q' | b'r') => {
                // BINPUT, LONG_BINPUT (protocol 3): Python's pickler puts at the memo's next
                // index; any other is not its output.
                let at = r.index(op)?;
                if at != memo.len() {
                    return None;
                }
                memo.push(stack.last()?.clone()?);
                continue;
            }
            op @ (b'h' | b'j') => {
                let at = r.index(op)?; // BINGET, LONG_BINGET
                memo.get(at)?.clone()
            }
            b'(' => {
                stack.push(None); // MARK
                continue;
            }
            b't' => {
                let mark = stack.iter().rposition(Option::is_none)?;
                let items = stack.drain(mark..).skip(1).collect::<Option<Vec<_>>>()?;
                tuple(&items)?
            }
            b')' => tuple(&[])?,
            op @ 0x85..=0x87 => {
                let n = usize::from(op - 0x84); // TUPLE1, TUPLE2, TUPLE3
                let from = stack.len().checked_sub(n)?;
                let items = stack.drain(from..).collect::<Option<Vec<_>>>()?;
                tuple(&items)?
            }
            0x8c => r.str(1)?,   // SHORT_BINUNICODE
            b'X' => r.str(4)?,   // BINUNICODE
            0x8d => r.str(8)?,   // BINUNICODE8
            b'C' => r.bytes(1)?, // SHORT_BINBYTES
            b'B' => r.bytes(4)?, // BINBYTES
            0x8e => r.bytes(8)?, // BINBYTES8
            b'K' => int(r.byte()?.into()),
            b'M' => int(u16::from_le_bytes(r.array()?).into()),
            b'J' => int(i32::from_le_bytes(r.array()?).into()),
            0x8a => {
                let n = usize::from(r.byte()?); // LONG1
                int(long(r.take(n)?)?)
            }
            0x8b => {
                let n = usize::try_from(u32::from_le_bytes(r.array()?)).ok()?; // LONG4
                int(long(r.take(n)?)?)
            }
            b'G' => codec::tagged(Tag::Float, &f64::from_be_bytes(r.array()?).to_le_bytes()),
            0x88 => codec::tagged(Tag::Bool, &[1]),
            0x89 => codec::tagged(Tag::Bool, &[0]),
            b'N' => vec![Tag::None as u8],
            _ => return None,
        };
        made += value.len();
        if made > MAX_MADE {
            return None;
        }
        stack.push(Some(value));
    }
}

/// What today's Python encodes as a tuple at most (above, it pickles): 64 KiB. Also bounds
/// what memo gets can make of a small pickle.
const MAX_MADE: usize = 64 << 10;

fn tuple(items: &[Vec<u8>]) -> Option<Vec<u8>> {
    let mut out = vec![Tag::Tuple as u8];
    for item in items {
        if !codec::push_part(&mut out, item) {
            return None;
        }
    }
    Some(out)
}

fn int(i: i128) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    codec::push_int(i, &mut out);
    out
}

/// A LONG1 / LONG4 payload: little-endian two's complement, up to 128 bits.
fn long(bytes: &[u8]) -> Option<i128> {
    if bytes.len() > 16 {
        return None;
    }
    let fill = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
        0xFF
    } else {
        0
    };
    let mut all = [fill; 16];
    all[..bytes.len()].copy_from_slice(bytes);
    Some(i128::from_le_bytes(all))
}

/// The pickle not yet read.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    /// A length of `width` bytes, little-endian.
    fn len(&mut self, width: usize) -> Option<usize> {
        let mut le = [0u8; 8];
        le[..width].copy_from_slice(self.take(width)?);
        usize::try_from(u64::from_le_bytes(le)).ok()
    }
    /// A memo index: one byte after `q` and `h`, four after `r` and `j`.
    fn index(&mut self, op: u8) -> Option<usize> {
        self.len(if matches!(op, b'q' | b'h') { 1 } else { 4 })
    }
    fn str(&mut self, width: usize) -> Option<Vec<u8>> {
        let n = self.len(width)?;
        let utf8 = self.take(n)?;
        // A lone surrogate (pickled with "surrogatepass") is no UTF-8: Python pickles that.
        std::str::from_utf8(utf8).ok()?;
        Some(codec::tagged(Tag::Str, utf8))
    }
    fn bytes(&mut self, width: usize) -> Option<Vec<u8>> {
        let n = self.len(width)?;
        Some(codec::tagged(Tag::Bytes, self.take(n)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn str_(s: &str) -> Vec<u8> {
        codec::tagged(Tag::Str, s.as_bytes())
    }

    /// `("a", 7, 1.5, None, True, b"x", (1, -2**70, ()), -1, 300, 70000, -2**40, False,
    /// "ééé")`, as `pickle.dumps` of Python 3.11 writes it with protocols 3, 4 and 5.
    const MIXED: [&str; 3] = [
        "80032858010000006171004b07473ff80000000000004e8843017871014b018a090000000000000000c0298771024affffffff4d2c014a701101008a060000000000ff895806000000c3a9c3a9c3a971037471042e",
        "8004954800000000000000288c0161944b07473ff80000000000004e88430178944b018a090000000000000000c02987944affffffff4d2c014a701101008a060000000000ff898c06c3a9c3a9c3a99474942e",
        "8005954800000000000000288c0161944b07473ff80000000000004e88430178944b018a090000000000000000c02987944affffffff4d2c014a701101008a060000000000ff898c06c3a9c3a9c3a99474942e",
    ];

    #[test]
    fn pickled_tuples_of_built_ins_read_as_todays_encoding() {
        let inner = tuple(&[int(1), int(-(1 << 70)), tuple(&[]).unwrap()]).unwrap();
        let want = tuple(&[
            str_("a"),
            int(7),
            codec::tagged(Tag::Float, &1.5f64.to_le_bytes()),
            vec![Tag::None as u8],
            codec::tagged(Tag::Bool, &[1]),
            codec::tagged(Tag::Bytes, b"x"),
            inner,
            int(-1),
            int(300),
            int(70000),
            int(-(1 << 40)),
            codec::tagged(Tag::Bool, &[0]),
            str_("ééé"),
        ])
        .unwrap();
        for p in MIXED {
            assert_eq!(tuple_from_pickle(&hex(p)), Some(want.clone()), "{p}");
        }
        // ("s", "s"): the second is a memo get (protocols 3 and 4).
        let pair = tuple(&[str_("s"), str_("s")]).unwrap();
        for p in [
            "8003580100000073710068008671012e",
            "80049509000000000000008c017394680086942e",
        ] {
            assert_eq!(tuple_from_pickle(&hex(p)), Some(pair.clone()), "{p}");
        }
    }

    #[test]
    fn anything_else_stays_pickled() {
        let cases = [
            // Protocol 2 pickles bytes through `_codecs.encode`.
            "80024b014b028671008571012e",
            // A list, [1]: not a tuple.
            "80049506000000000000005d944b01612e",
            // A bare int, 1.
            "80044b012e",
            // Truncated, and a tuple with bytes after STOP.
            "80049509000000000000004b014b0286",
            "80049509000000000000004b014b0286942e00",
            // A str holding a lone surrogate: ("\ud800",) pickled with surrogatepass.
            "80049509000000000000008c03eda0809485942e",
        ];
        for p in cases {
            assert_eq!(tuple_from_pickle(&hex(p)), None, "{p}");
        }
        // A memo get that doubles at every level: stopped at 64 KiB, not 2^40 bytes.
        let mut bomb = hex("80048c0178");
        for k in 0..40u8 {
            bomb.extend_from_slice(&[0x94, b'h', k, 0x86]); // memoize, get it back, pair them
        }
        bomb.extend_from_slice(&[0x85, b'.']);
        assert_eq!(tuple_from_pickle(&bomb), None);
        // Its first levels are a tuple all right.
        let small = [&bomb[..5 + 4 * 3], &[0x85, b'.']].concat();
        assert!(tuple_from_pickle(&small).is_some());
    }
}
