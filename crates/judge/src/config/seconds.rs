//! Durations in configs: a number of seconds or a human string.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A duration in seconds.
///
/// Specs are written by people, so both `30` and `"30s"`, `"2m"`,
/// `"1m 30s"` or `"500ms"` are accepted; it serialises as plain seconds so
/// reports and snapshots stay easy to read by machines.
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd)]
pub struct Seconds(pub f64);

impl Seconds {
    /// The duration as seconds.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecondsVisitor)
    }
}

struct SecondsVisitor;

impl serde::de::Visitor<'_> for SecondsVisitor {
    type Value = Seconds;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            r#"a duration: seconds as a number (30) or a string such as "30s", "2m", "1m 30s""#,
        )
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Seconds, E> {
        Ok(Seconds(v as f64))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Seconds, E> {
        if v < 0 {
            return Err(E::custom(format!(
                "a duration cannot be negative (got {v})"
            )));
        }
        Ok(Seconds(v as f64))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Seconds, E> {
        if !v.is_finite() || v < 0.0 {
            return Err(E::custom(format!(
                "a duration must be a finite number of seconds ≥ 0 (got {v})"
            )));
        }
        Ok(Seconds(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Seconds, E> {
        let text = v.trim();
        if let Ok(n) = text.parse::<f64>() {
            return self.visit_f64(n);
        }
        humantime::parse_duration(text)
            .map(|d| Seconds(d.as_secs_f64()))
            .map_err(|e| {
                E::custom(format!(
                    r#"cannot read "{v}" as a duration ({e}); write e.g. "30s", "2m" or 45"#
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str, expected: Result<f64, &str>) {
        let got: Result<Seconds, _> = serde_json::from_str(json);
        match (got, expected) {
            (Ok(s), Ok(want)) => assert!((s.0 - want).abs() < 1e-9, "{json}: {} != {want}", s.0),
            (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{json}: {e}"),
            (got, want) => panic!("{json}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn reads_durations() {
        check("30", Ok(30.0));
        check("1.5", Ok(1.5));
        check(r#""30s""#, Ok(30.0));
        check(r#""2m""#, Ok(120.0));
        check(r#""1m 30s""#, Ok(90.0));
        check(r#""500ms""#, Ok(0.5));
        check(r#""12""#, Ok(12.0));
        check("-3", Err("cannot be negative"));
        check(r#""soon""#, Err("cannot read \"soon\" as a duration"));
        check("true", Err("a duration"));
    }
}
