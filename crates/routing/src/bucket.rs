//! Weights in tenths of a percent and the hash bucket a sticky key lands in.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How many buckets the key space is cut into: one per tenth of a percent.
pub const BUCKETS: u16 = 1000;

/// The bucket (0..1000) a sticky key falls into.
///
/// MurmurHash3 x86-32 with seed 0, scaled with `(hash × 1000) >> 32` — the same
/// construction flagd's `fractional` uses — so buckets are uniform and a key's
/// bucket never depends on the current weights. A request goes to the canary
/// when its bucket is below the canary weight, so raising the weight only ever
/// moves keys from stable to canary, never back.
pub fn bucket(key: &[u8]) -> u16 {
    let hash = u64::from(mur3::murmurhash3_x86_32(key, 0));
    // hash < 2^32, so the product is < 1000 · 2^32 and the shift is < 1000.
    ((hash * u64::from(BUCKETS)) >> 32) as u16
}

/// A traffic share in tenths of a percent (0..=1000), the routing resolution.
///
/// Serialised as a percentage (`12.5`) because that is what people type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permille(u16);

/// Why a weight was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightError {
    #[error("weight must be between 0 and 100 percent; got {0}")]
    OutOfRange(f64),
    #[error("weight has a resolution of 0.1 percent; got {0} (use e.g. {1})")]
    TooFine(f64, f64),
    #[error("weight must be a finite number; got {0}")]
    NotFinite(f64),
}

impl Permille {
    pub const ZERO: Permille = Permille(0);
    pub const FULL: Permille = Permille(BUCKETS);

    /// From tenths of a percent.
    pub fn new(permille: u16) -> Result<Self, WeightError> {
        if permille > BUCKETS {
            return Err(WeightError::OutOfRange(f64::from(permille) / 10.0));
        }
        Ok(Permille(permille))
    }

    /// From a percentage such as `12.5`; finer than 0.1 is refused rather than
    /// silently rounded, because a weight is a promise about traffic.
    pub fn from_percent(percent: f64) -> Result<Self, WeightError> {
        if !percent.is_finite() {
            return Err(WeightError::NotFinite(percent));
        }
        if !(0.0..=100.0).contains(&percent) {
            return Err(WeightError::OutOfRange(percent));
        }
        let tenths = (percent * 10.0).round();
        if (percent * 10.0 - tenths).abs() > 1e-6 {
            return Err(WeightError::TooFine(percent, tenths / 10.0));
        }
        // In range 0..=1000 by the checks above.
        Ok(Permille(tenths as u16))
    }

    pub fn get(self) -> u16 {
        self.0
    }

    pub fn as_percent(self) -> f64 {
        f64::from(self.0) / 10.0
    }

    /// The rest of the traffic.
    pub fn complement(self) -> Permille {
        Permille(BUCKETS - self.0)
    }
}

impl fmt::Display for Permille {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.as_percent())
    }
}

impl Serialize for Permille {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_percent())
    }
}

impl<'de> Deserialize<'de> for Permille {
    /// A number only: YAML would otherwise read a quoted `"10"` as a
    /// number too, and a weight written as text is usually a templating
    /// slip that should be seen.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Permille;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a percentage as a number, e.g. `10` or `12.5`")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Permille, E> {
                Permille::from_percent(v).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Permille, E> {
                self.visit_f64(v as f64)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Permille, E> {
                self.visit_f64(v as f64)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Permille, E> {
                Err(E::custom(format!(
                    "a weight is a number, not the text {v:?}; write it without quotes, e.g. `10`"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_hash(key: &str, expected: u32) {
        assert_eq!(
            mur3::murmurhash3_x86_32(key.as_bytes(), 0),
            expected,
            "{key:?}"
        );
    }

    #[test]
    fn murmur3_reference_vectors() {
        // Published MurmurHash3_x86_32 vectors (seed 0).
        check_hash("", 0);
        check_hash("hello", 0x248b_fa47);
        check_hash("The quick brown fox jumps over the lazy dog", 0x2e4f_f723);
    }

    #[test]
    fn buckets_cover_the_range() {
        assert_eq!(bucket(b""), 0);
        let mut seen = [false; BUCKETS as usize];
        for i in 0..100_000u32 {
            let b = bucket(&i.to_le_bytes());
            assert!(b < BUCKETS);
            seen[b as usize] = true;
        }
        assert!(seen.iter().all(|s| *s), "every bucket is reachable");
    }

    fn check_percent(input: f64, expected: Result<u16, ()>) {
        assert_eq!(
            Permille::from_percent(input)
                .map(Permille::get)
                .map_err(|_| ()),
            expected,
            "{input}"
        );
    }

    #[test]
    fn percent_parsing() {
        check_percent(0.0, Ok(0));
        check_percent(10.0, Ok(100));
        check_percent(12.5, Ok(125));
        check_percent(0.1, Ok(1));
        check_percent(100.0, Ok(1000));
        check_percent(33.3, Ok(333));
        check_percent(12.34, Err(()));
        check_percent(-0.1, Err(()));
        check_percent(100.1, Err(()));
        check_percent(f64::NAN, Err(()));
        check_percent(f64::INFINITY, Err(()));
    }

    #[test]
    fn serde_round_trip_is_in_percent() {
        let w: Permille = serde_json::from_str("12.5").unwrap();
        assert_eq!(w.get(), 125);
        assert_eq!(serde_json::to_string(&w).unwrap(), "12.5");
        assert!(serde_json::from_str::<Permille>("101").is_err());
    }
}
