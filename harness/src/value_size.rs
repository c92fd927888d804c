//! `--value-size`: one size for every value, or sizes spread log-uniformly between two bounds,
//! as real caches hold a few large values among many small ones. A key's value length is a
//! function of its index alone, so every worker writes the same length for a key, the prefill
//! agrees with them, and a map's memory per entry is the same in every run of one spec.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest value the harness writes: 256 MiB.
pub const MAX_VALUE_SIZE: usize = 1 << 28;

/// The lengths of a run's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueSize {
    /// Every value has this many bytes.
    Fixed(usize),
    /// `MIN..MAX`: lengths from `min` to `max` inclusive, log-uniform (as many values of
    /// 8-16 bytes as of 8-16 KiB), with `0 < min < max`.
    LogUniform { min: usize, max: usize },
}

impl Default for ValueSize {
    /// The command line's default.
    fn default() -> Self {
        Self::Fixed(64)
    }
}

impl ValueSize {
    pub fn min(self) -> usize {
        match self {
            Self::Fixed(n) => n,
            Self::LogUniform { min, .. } => min,
        }
    }

    /// The longest value: what the map must accept (its `max_value_size`).
    pub fn max(self) -> usize {
        match self {
            Self::Fixed(n) => n,
            Self::LogUniform { max, .. } => max,
        }
    }

    /// The mean length over keys, to within half a byte (the lengths are whole bytes; this
    /// is the continuous distribution's mean less the half byte flooring takes off).
    pub fn mean(self) -> f64 {
        match self {
            Self::Fixed(n) => n as f64,
            Self::LogUniform { min, max } => {
                let (lo, hi) = (min as f64, max as f64 + 1.0);
                (hi - lo) / (hi / lo).ln() - 0.5
            }
        }
    }

    /// The length of each key's value, by key index (with its logarithm computed once, for
    /// the workload loop).
    pub fn lengths(self) -> Lengths {
        match self {
            Self::Fixed(n) => Lengths {
                min: n,
                max: n,
                ln_span: 0.0,
            },
            Self::LogUniform { min, max } => Lengths {
                min,
                max,
                // `max + 1` so that lengths near `max` get their share: floor((max+1)^u) ...
                ln_span: ((max as f64 + 1.0) / min as f64).ln(),
            },
        }
    }
}

/// [`ValueSize::lengths`]: a multiply and an `exp` per distributed length, nothing for a fixed
/// one.
#[derive(Debug, Clone, Copy)]
pub struct Lengths {
    min: usize,
    max: usize,
    ln_span: f64,
}

impl Lengths {
    pub fn of(&self, index: u64) -> usize {
        if self.min == self.max {
            return self.min;
        }
        // A uniform u in [0, 1) from the index's hash (53 bits: a double's mantissa), then
        // min * ((max + 1) / min)^u, floored: log-uniform over [min, max + 1).
        let u = (mix(index) >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        let x = self.min as f64 * (u * self.ln_span).exp();
        (x as usize).clamp(self.min, self.max)
    }
}

/// splitmix64's finaliser: neighbouring indices get unrelated lengths.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl fmt::Display for ValueSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(n) => write!(f, "{n}"),
            Self::LogUniform { min, max } => write!(f, "{min}..{max}"),
        }
    }
}

impl FromStr for ValueSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bytes = |part: &str, what: &str| -> Result<usize, String> {
            let n: usize = part.trim().parse().map_err(|_| {
                format!("{what} {part:?} is not a number of bytes; give N or MIN..MAX (e.g. 64 or 8..16384)")
            })?;
            if n > MAX_VALUE_SIZE {
                return Err(format!(
                    "{what} {n} is over the limit of {MAX_VALUE_SIZE} bytes"
                ));
            }
            Ok(n)
        };
        let Some((lo, hi)) = s.split_once("..") else {
            return bytes(s, "size").map(Self::Fixed);
        };
        let (min, max) = (bytes(lo, "MIN")?, bytes(hi, "MAX")?);
        if min == 0 {
            return Err("MIN must be at least 1 (log-uniform sizes start above 0)".into());
        }
        if min > max {
            return Err(format!("MIN {min} is above MAX {max}"));
        }
        Ok(if min == max {
            Self::Fixed(min)
        } else {
            Self::LogUniform { min, max }
        })
    }
}

// As its string form, in the spec workers get and in the CSV and JSON of every run.
impl Serialize for ValueSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ValueSize {
    /// The string form, or a bare number: CSVs written before sizes could be ranges have
    /// one, and the CSV reader hands a numeric field over as a number.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ValueSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value size: N or MIN..MAX")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ValueSize, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ValueSize, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ValueSize, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_display_as_written() {
        for (text, size) in [
            ("0", ValueSize::Fixed(0)),
            ("64", ValueSize::Fixed(64)),
            ("8..16384", ValueSize::LogUniform { min: 8, max: 16384 }),
            ("268435456", ValueSize::Fixed(MAX_VALUE_SIZE)),
        ] {
            assert_eq!(text.parse::<ValueSize>(), Ok(size));
            assert_eq!(size.to_string(), text);
        }
        // A range of one size is that size.
        assert_eq!("16..16".parse(), Ok(ValueSize::Fixed(16)));
    }

    #[test]
    fn bad_sizes_say_what_is_wrong() {
        for (text, says) in [
            ("", "not a number"),
            ("x", "not a number"),
            ("-1", "not a number"),
            ("0..", "MAX \"\" is not a number"),
            ("..8", "MIN \"\" is not a number"),
            ("8..16..32", "not a number"),
            ("9..8", "MIN 9 is above MAX 8"),
            ("0..8", "MIN must be at least 1"),
            ("268435457", "over the limit"),
            ("8..268435457", "MAX 268435457 is over the limit"),
        ] {
            let e = text.parse::<ValueSize>().unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_csv_and_json_forms_read_back_and_old_numeric_ones_too() {
        let size = ValueSize::LogUniform { min: 8, max: 16384 };
        let json = serde_json::to_string(&size).unwrap();
        assert_eq!(json, "\"8..16384\"");
        assert_eq!(serde_json::from_str::<ValueSize>(&json).unwrap(), size);
        assert_eq!(
            serde_json::from_str::<ValueSize>("64").unwrap(),
            ValueSize::Fixed(64)
        );
    }

    /// Lengths over 100,000 keys: inside the bounds, both ends reached, and the median and
    /// geometric mean at sqrt(min * (max + 1)), where a log-uniform distribution puts both.
    #[test]
    fn lengths_are_log_uniform_within_their_bounds() {
        for (min, max) in [(8, 16384), (16, 20), (64, 1 << 20)] {
            let size = ValueSize::LogUniform { min, max };
            let lengths = size.lengths();
            let mut lens: Vec<usize> = (0..100_000).map(|i| lengths.of(i)).collect();
            assert!(lens.iter().all(|&n| (min..=max).contains(&n)), "{size}");
            lens.sort_unstable();
            // Both ends are reached (the top within 0.1%: about 1 key in 10,000 lands there).
            let top = lens[lens.len() - 1];
            assert!(
                lens[0] == min && top >= max - max / 1000,
                "{size}: {}..{top}",
                lens[0]
            );
            let centre = (min as f64 * (max as f64 + 1.0)).sqrt();
            let median = lens[lens.len() / 2] as f64;
            let geo_mean =
                (lens.iter().map(|&n| (n as f64).ln()).sum::<f64>() / lens.len() as f64).exp();
            let mean = lens.iter().sum::<usize>() as f64 / lens.len() as f64;
            // Within 4 standard errors of each estimate: ln(length) is uniform over a span
            // S, so the sample median of n is off by S / (2 sqrt n) in log terms (one error),
            // the geometric mean by S / sqrt(12 n). Flooring a narrow range moves the centre
            // by up to a byte.
            let se = ((max as f64 + 1.0) / min as f64).ln() / (lens.len() as f64).sqrt();
            let near = |x: f64, want: f64, tol: f64| {
                (x / want).ln().abs() <= tol || (x - want).abs() <= 1.0
            };
            assert!(
                near(median, centre, 4.0 * se / 2.0),
                "{size}: median {median}, want {centre:.1}"
            );
            assert!(
                near(geo_mean, centre, 4.0 * se / 12f64.sqrt()),
                "{size}: geometric mean {geo_mean:.1}, want {centre:.1}"
            );
            assert!(
                near(mean, size.mean(), 0.03),
                "{size}: mean {mean:.1}, want {:.1}",
                size.mean()
            );
            // Log-uniform: each factor of 2 of the range holds the same share of the keys.
            if max / min >= 1024 {
                let (lo, hi) = (min * 4, min * 8);
                let share = lens.iter().filter(|&&n| (lo..hi).contains(&n)).count() as f64
                    / lens.len() as f64;
                let want = 2f64.ln() / ((max as f64 + 1.0) / min as f64).ln();
                assert!(
                    (share - want).abs() < 0.01,
                    "{size}: {share:.3} in [{lo}, {hi}), want {want:.3}"
                );
            }
        }
    }

    #[test]
    fn a_length_depends_on_the_key_alone_and_a_fixed_size_is_that_size() {
        let size = ValueSize::LogUniform { min: 8, max: 16384 };
        // A worker gets the size as JSON on its command line and must pick the same lengths.
        let in_worker: ValueSize =
            serde_json::from_str(&serde_json::to_string(&size).unwrap()).unwrap();
        let first: Vec<usize> = (0..1000).map(|i| size.lengths().of(i)).collect();
        let again: Vec<usize> = (0..1000).map(|i| in_worker.lengths().of(i)).collect();
        assert_eq!(first, again);
        assert!(first.windows(2).any(|w| w[0] != w[1]));
        let fixed = ValueSize::Fixed(64).lengths();
        assert!((0..1000).all(|i| fixed.of(i) == 64));
        assert_eq!(ValueSize::Fixed(64).mean(), 64.0);
    }
}
