//! The treatment's share of a flag, and the edit that sets it.
//!
//! A guarded rollout moves one number: the weight of the treatment variant
//! in the flag's `fractional` split against the control variant. Bucketing
//! stays flagd's: a user's bucket depends on the flag key and targeting key
//! only, and with the weights `[treatment, s]`, `[control, W − s]` a user
//! gets the treatment exactly when `hash < s/W × 2³²`. Raising the share
//! therefore only moves users from control to treatment, whatever the scale
//! `W` of the weights (100, or 10 000 for shares finer than a percent), and
//! the same holds with the control listed first (the treatment then takes
//! the top of the range).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value as Json, json};

/// A share of users, in hundredths of a percent (0 ..= 10 000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Share(u32);

impl Share {
    pub const ZERO: Share = Share(0);
    pub const ALL: Share = Share(10_000);

    /// A share from a percentage; refuses anything outside 0–100 % or finer
    /// than 0.01 % (flagd weights are integers), rather than rounding.
    pub fn from_percent(percent: f64) -> Result<Share, String> {
        if !(0.0..=100.0).contains(&percent) {
            return Err(format!("{percent}% is not a share of users: use 0 to 100"));
        }
        let bp = percent * 100.0;
        if (bp - bp.round()).abs() > 1e-6 {
            return Err(format!(
                "{percent}% is finer than 0.01%, which flagd's integer weights cannot express"
            ));
        }
        Ok(Share(bp.round() as u32))
    }

    /// Hundredths of a percent.
    pub fn basis_points(self) -> u32 {
        self.0
    }

    pub fn percent(self) -> f64 {
        f64::from(self.0) / 100.0
    }

    /// The weights `(treatment, control)` for a `fractional`: out of 100
    /// when the share is a whole percent (what people write by hand), out
    /// of 10 000 otherwise.
    pub fn weights(self) -> (u32, u32) {
        if self.0.is_multiple_of(100) {
            (self.0 / 100, 100 - self.0 / 100)
        } else {
            (self.0, 10_000 - self.0)
        }
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.percent())
    }
}

impl std::str::FromStr for Share {
    type Err = String;

    fn from_str(s: &str) -> Result<Share, String> {
        let t = s.trim().trim_end_matches('%').trim();
        let percent: f64 = t
            .parse()
            .map_err(|_| format!("`{s}` is not a percentage; write e.g. 5 or 0.5%"))?;
        Share::from_percent(percent)
    }
}

/// Serialised as a percentage (`5`, `0.5`), as people write it.
impl Serialize for Share {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.percent())
    }
}

impl<'de> Deserialize<'de> for Share {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Share, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(p) => Share::from_percent(p),
            Raw::Text(t) => t.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// Why the share of a flag cannot be read or set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("the flag is not an object")]
    NotAnObject,
    #[error(
        "the flag has no variant `{0}`; add it first (`backout flag set KEY --variant {0}=...`)"
    )]
    NoVariant(String),
    #[error(
        "the flag's targeting has no `fractional` split between `{treatment}` and `{control}`{hint}; \
         give it one (`backout flag set KEY --rule \"1% {treatment}\"` with default `{control}`) or remove its rules"
    )]
    NoSplit {
        treatment: String,
        control: String,
        hint: &'static str,
    },
    #[error(
        "the flag's targeting has {0} `fractional` splits between the two variants; a guarded rollout moves one, so merge them first"
    )]
    SeveralSplits(usize),
}

/// The flag with the treatment's share of its split set to `share`.
///
/// A flag without targeting gets `{"fractional": [[treatment, s], [control,
/// rest]]}`. A flag with targeting must hold exactly one `fractional` whose
/// fractions are the treatment and the control and nothing else; its
/// weights are rewritten in place, so its conditions (`country == jp =>`),
/// its bucket-by expression and the order of its fractions stay as they
/// were.
pub fn set_share(
    flag: &Json,
    treatment: &str,
    control: &str,
    share: Share,
) -> Result<Json, SplitError> {
    let Json::Object(fields) = flag else {
        return Err(SplitError::NotAnObject);
    };
    for v in [treatment, control] {
        if !fields
            .get("variants")
            .and_then(Json::as_object)
            .is_some_and(|vs| vs.contains_key(v))
        {
            return Err(SplitError::NoVariant(v.to_owned()));
        }
    }
    let (tw, cw) = share.weights();
    let mut out = fields.clone();
    match out.get_mut("targeting") {
        None | Some(Json::Null) => {
            out.insert(
                "targeting".into(),
                json!({"fractional": [[treatment, tw], [control, cw]]}),
            );
        }
        Some(targeting) => {
            let mut found = 0;
            splits(targeting, treatment, control, &mut |_| found += 1);
            match found {
                0 => {
                    return Err(SplitError::NoSplit {
                        treatment: treatment.to_owned(),
                        control: control.to_owned(),
                        hint: if contains_ref(targeting) {
                            " (a split inside a shared `$evaluators` rule is not moved: it may serve other flags)"
                        } else {
                            ""
                        },
                    });
                }
                1 => {}
                n => return Err(SplitError::SeveralSplits(n)),
            }
            splits_mut(targeting, treatment, control, &mut |args| {
                for fraction in args.iter_mut().filter_map(Json::as_array_mut) {
                    let weight = if fraction.first().and_then(Json::as_str) == Some(treatment) {
                        tw
                    } else {
                        cw
                    };
                    fraction.truncate(1);
                    fraction.push(json!(weight));
                }
            });
        }
    }
    Ok(Json::Object(out))
}

/// The treatment's share in the flag's split, if it has exactly one split
/// between the two variants with a usable total weight.
pub fn share_of(flag: &Json, treatment: &str, control: &str) -> Option<Share> {
    let targeting = flag.get("targeting")?;
    let mut found = Vec::new();
    splits(targeting, treatment, control, &mut |args| found.push(args));
    let [args] = found.as_slice() else {
        return None;
    };
    let mut t = 0u64;
    let mut total = 0u64;
    for fraction in args.iter().filter_map(Json::as_array) {
        let w = match fraction.get(1) {
            None => 1,
            Some(w) => w.as_u64()?,
        };
        total += w;
        if fraction.first().and_then(Json::as_str) == Some(treatment) {
            t += w;
        }
    }
    (total > 0).then(|| Share((t * 10_000 / total) as u32))
}

/// Calls `f` with the argument list of every `fractional` in `node` whose
/// fractions are exactly the treatment and the control.
fn splits<'a>(node: &'a Json, treatment: &str, control: &str, f: &mut dyn FnMut(&'a [Json])) {
    match node {
        Json::Object(m) => {
            if let Some(Json::Array(args)) = m.get("fractional")
                && is_split_of(args, treatment, control)
            {
                f(args);
                return;
            }
            for value in m.values() {
                splits(value, treatment, control, f);
            }
        }
        Json::Array(items) => {
            for item in items {
                splits(item, treatment, control, f);
            }
        }
        _ => {}
    }
}

/// [`splits`], for rewriting.
fn splits_mut(node: &mut Json, treatment: &str, control: &str, f: &mut dyn FnMut(&mut Vec<Json>)) {
    match node {
        Json::Object(m) => {
            if let Some(Json::Array(args)) = m.get_mut("fractional")
                && is_split_of(args, treatment, control)
            {
                f(args);
                return;
            }
            for value in m.values_mut() {
                splits_mut(value, treatment, control, f);
            }
        }
        Json::Array(items) => {
            for item in items {
                splits_mut(item, treatment, control, f);
            }
        }
        _ => {}
    }
}

/// Whether a `fractional`'s arguments split between exactly the two
/// variants. The first argument is the bucket-by expression unless it is
/// itself a fraction (flagd's shorthand).
fn is_split_of(args: &[Json], treatment: &str, control: &str) -> bool {
    let fractions = match args.first() {
        Some(Json::Array(_)) => args,
        Some(_) => &args[1..],
        None => return false,
    };
    let mut names = Vec::with_capacity(fractions.len());
    for f in fractions {
        let Some(items) = f.as_array() else {
            return false;
        };
        match (
            items.first().and_then(Json::as_str),
            items.get(1),
            items.len(),
        ) {
            (Some(name), None, 1) => names.push(name),
            (Some(name), Some(w), 2) if w.as_u64().is_some() => names.push(name),
            _ => return false,
        }
    }
    names.len() == 2 && names.contains(&treatment) && names.contains(&control)
}

fn contains_ref(node: &Json) -> bool {
    match node {
        Json::Object(m) => m.contains_key("$ref") || m.values().any(contains_ref),
        Json::Array(items) => items.iter().any(contains_ref),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Context, Format, load_str};

    fn flag(targeting: Option<Json>) -> Json {
        let mut f = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"});
        if let Some(t) = targeting {
            f["targeting"] = t;
        }
        f
    }

    fn check(targeting: Option<Json>, percent: f64, expected: Result<Json, &str>) {
        let share = Share::from_percent(percent).expect("share");
        let got = set_share(&flag(targeting.clone()), "on", "off", share);
        match expected {
            Ok(t) => {
                let got = got.expect("set");
                assert_eq!(got["targeting"], t, "{targeting:?} at {percent}%");
                assert_eq!(share_of(&got, "on", "off"), Some(share), "{got}");
            }
            Err(needle) => {
                let e = got.expect_err("refused").to_string();
                assert!(e.contains(needle), "`{e}` lacks `{needle}`");
            }
        }
    }

    #[test]
    fn splits() {
        // No targeting: a split is added.
        check(
            None,
            5.0,
            Ok(json!({"fractional": [["on", 5], ["off", 95]]})),
        );
        check(
            None,
            0.5,
            Ok(json!({"fractional": [["on", 50], ["off", 9950]]})),
        );
        check(
            None,
            0.0,
            Ok(json!({"fractional": [["on", 0], ["off", 100]]})),
        );
        // The command line's `country == jp => 1% on`: only the weights move.
        let jp = |on: u32, off: u32| json!({"if": [{"==": [{"var": "country"}, "jp"]}, {"fractional": [["on", on], ["off", off]]}, null]});
        check(Some(jp(1, 99)), 25.0, Ok(jp(25, 75)));
        // Order, bucket-by expression and implicit weights are kept.
        check(
            Some(json!({"fractional": [{"var": "email"}, ["off"], ["on"]]})),
            10.0,
            Ok(json!({"fractional": [{"var": "email"}, ["off", 90], ["on", 10]]})),
        );
        // Refusals say what to do.
        check(
            Some(json!({"if": [{"==": [{"var": "beta"}, true]}, "on", "off"]})),
            5.0,
            Err("no `fractional` split between `on` and `off`"),
        );
        check(
            Some(json!({"fractional": [["on", 1], ["off", 1], ["other", 1]]})),
            5.0,
            Err("no `fractional` split"),
        );
        check(
            Some(json!({"$ref": "shared"})),
            5.0,
            Err("shared `$evaluators` rule"),
        );
        check(
            Some(
                json!({"if": [{"var": "beta"}, {"fractional": [["on", 1], ["off", 1]]},
                               {"fractional": [["on", 1], ["off", 9]]}]}),
            ),
            5.0,
            Err("2 `fractional` splits"),
        );
        let err = set_share(&json!({"variants": {"on": 1}}), "on", "off", Share::ALL)
            .expect_err("no control");
        assert!(err.to_string().contains("no variant `off`"), "{err}");
        assert_eq!(
            set_share(&json!(3), "on", "off", Share::ALL),
            Err(SplitError::NotAnObject)
        );
    }

    /// Raising the share only ever moves users from control to treatment,
    /// at whole and fine shares and with either order of fractions; and the
    /// share served is close to the share asked for.
    #[test]
    fn raising_the_share_only_moves_users_towards_the_treatment() {
        let keys: Vec<String> = (0..4000).map(|i| format!("user-{i}")).collect();
        for start in [None, Some(json!({"fractional": [["off", 1], ["on", 1]]}))] {
            let mut previous: Vec<bool> = vec![false; keys.len()];
            for percent in [0.5, 1.0, 2.25, 5.0, 25.0, 50.0, 99.99, 100.0] {
                let share = Share::from_percent(percent).expect("share");
                let f = set_share(&flag(start.clone()), "on", "off", share).expect("set");
                let doc = json!({"flags": {"f": f}}).to_string();
                let loaded = load_str(&doc, Format::Json).expect("loads");
                let now: Vec<bool> = keys
                    .iter()
                    .map(|k| {
                        let res = loaded
                            .flags
                            .evaluate("f", &Context::with_key(k.as_str()), 0);
                        res.variant == Some("on")
                    })
                    .collect();
                for (i, (was, is)) in previous.iter().zip(&now).enumerate() {
                    assert!(!was || *is, "{} left the treatment at {percent}%", keys[i]);
                }
                let served = now.iter().filter(|b| **b).count() as f64 / keys.len() as f64;
                assert!(
                    (served * 100.0 - percent).abs() < 2.0,
                    "{served} served at {percent}%"
                );
                previous = now;
            }
        }
    }
}
