//! The typed map's error: the map's own ([`shmap::Error`]) or a value that is not of the type
//! asked for.

/// Everything a typed call can fail with. A call that fails changed nothing, except where a
/// method's documentation says otherwise (a value removed, then found of another type).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The map's error: not found, already exists, full, too large, a server that did not
    /// answer, a corrupt segment...
    #[error(transparent)]
    Map(#[from] shmap::Error),

    /// The stored key or value is of another type than the one asked for.
    #[error("expected {}, found a Python {found} in the map", short(expected))]
    WrongType {
        /// The Rust type asked for.
        expected: &'static str,
        /// The Python type stored (`str`, `int`, `float`, `tuple`...).
        found: &'static str,
    },

    /// A stored int that does not fit the Rust integer asked for (or a tuple of another
    /// length).
    #[error("expected {}, found {found}, which does not fit it", short(expected))]
    OutOfRange {
        /// The Rust type asked for.
        expected: &'static str,
        /// What the map holds.
        found: String,
    },

    /// A value Python pickled (any type but the built-in ones `codec` names): only Python can
    /// read it.
    #[error(
        "expected {}, found a pickled Python object, which only Python can read \
         (write it from Python with serializer=\"json\" to share it with Rust)",
        short(expected)
    )]
    Pickled {
        /// The Rust type asked for.
        expected: &'static str,
    },

    /// Stored bytes that no writer of this library makes (a key or value written by
    /// something else, or damaged).
    #[error("the stored {what} is corrupt: {reason}")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A value `serde_json` could not write or read.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),

    /// A value that cannot be stored as asked: a JSON document as a key (Python's dicts and
    /// lists are unhashable), a tuple element of 4 GiB or more.
    #[error("{0}")]
    Unstorable(&'static str),

    /// `incr` found a value that is not a number (its Python type), or a float on a map of
    /// ints.
    #[error("incr needs a number at the key, found {0}")]
    NotANumber(String),

    /// `incr` would pass 128-bit ints (Python's `OverflowError`).
    #[error("incr supports ints of up to 128 bits")]
    Overflow,
}

/// The typed map's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A type's name without its module paths: `(String, i64)`, not `(alloc::string::String, i64)`.
fn short(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut word = String::new();
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            word.clear(); // a module: drop it
        } else if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            out.push_str(&word);
            word.clear();
            out.push(c);
        }
    }
    out + &word
}

#[cfg(test)]
mod tests {
    #[test]
    fn type_names_lose_their_paths() {
        assert_eq!(
            super::short(std::any::type_name::<(String, Option<Vec<u8>>)>()),
            "(String, Option<Vec<u8>>)"
        );
    }
}
