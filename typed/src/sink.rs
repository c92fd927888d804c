//! A get's copy of a `String` or `Vec<u8>` value: the payload alone, written where the result
//! will live, and (for a `str`) whether it is ASCII, learnt in the same pass. The bytes API's
//! copy into a buffer would be followed by a second pass to drop the tag byte and a third to
//! validate the UTF-8; this makes the typed get cost what the bytes get does.

use shmap::{ValueSink, ValueWords};

use crate::codec::Tag;

/// The value of a get: without its tag when the tag was `want`, else whole.
#[derive(Debug)]
pub(crate) struct Payload {
    want: Option<Tag>,
    /// The payload (`stripped`) or the whole encoding.
    pub(crate) buf: Vec<u8>,
    /// Whether `buf` is the payload of a `want` encoding.
    pub(crate) stripped: bool,
    /// With `stripped`: no byte of the payload has its high bit set.
    pub(crate) ascii: bool,
}

impl Payload {
    pub(crate) fn new(want: Option<Tag>) -> Self {
        Self {
            want,
            buf: Vec::new(),
            stripped: false,
            ascii: false,
        }
    }
}

impl ValueSink for Payload {
    /// Called for each read attempt: each overwrites what the last made, and only the last,
    /// the validated one, counts.
    #[inline]
    fn take(&mut self, value: ValueWords<'_>) {
        match self.want {
            Some(tag) if value.byte(0) == Some(tag as u8) => {
                self.ascii = !value.copy_tail_to_vec(1, &mut self.buf);
                self.stripped = true;
            }
            _ => {
                value.copy_to_vec(&mut self.buf);
                self.stripped = false;
            }
        }
    }
}
