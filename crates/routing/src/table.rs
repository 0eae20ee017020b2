//! The route table: which pool is stable, which is canary, how much traffic
//! the canary gets and which rules force a pool.

use serde::{Deserialize, Serialize};

use crate::bucket::{BUCKETS, Permille};
use crate::rule::{MatchRule, RuleError, RuleSpec};

/// One of the two roles a version pool plays in a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Stable,
    Canary,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Stable => "stable",
            Target::Canary => "canary",
        }
    }
}

/// What the proxy needs from a request to route it. Kept as a trait so this
/// crate stays free of HTTP types and tests can use plain maps.
pub trait RequestView {
    /// First value of a header, by lower-case name, if it is valid UTF-8.
    fn header(&self, name: &str) -> Option<&str>;
    /// Value of a cookie by name.
    fn cookie(&self, name: &str) -> Option<&str>;
}

/// What keeps a user on one version while the weights stay the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StickyKey {
    /// The value of this request header (e.g. a user id set by an auth layer).
    Header(String),
    /// The value of this cookie.
    Cookie(String),
    /// The client's IP address (not the port).
    ClientAddr,
}

/// The route as people write it (YAML spec, admin API) and as it is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Pool that serves everything the canary does not.
    pub stable: String,
    /// Pool under test, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
    /// Share of traffic (percent, 0.1 resolution) for the canary.
    #[serde(default)]
    pub canary_weight: Permille,
    /// Rules checked in order before the weights; the first match wins.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// What is wrong with a route, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("unknown pool {name:?}; known pools: {known}")]
    UnknownPool {
        field: &'static str,
        name: String,
        known: String,
    },
    #[error("the canary pool must differ from the stable pool ({0:?})")]
    SamePool(String),
    #[error("a canary weight above 0 needs a `canary` pool")]
    WeightWithoutCanary,
    #[error("rule {index}: {source}")]
    Rule { index: usize, source: RuleError },
}

impl RouteError {
    /// The JSON path of the field at fault, e.g. `rules[2].regex`.
    pub fn field(&self) -> String {
        match self {
            RouteError::UnknownPool { field, .. } => (*field).to_string(),
            RouteError::SamePool(_) => "canary".into(),
            RouteError::WeightWithoutCanary => "canary_weight".into(),
            RouteError::Rule { index, source } => format!("rules[{index}].{}", source.field()),
        }
    }
}

/// A validated, compiled route. Immutable: a change builds a new table and
/// the proxy swaps it in atomically.
#[derive(Debug, Clone)]
pub struct RouteTable {
    spec: RouteSpec,
    rules: Vec<MatchRule>,
}

/// Why a request went where it went; exported for debugging and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Rule number N matched.
    Rule(usize),
    /// Bucket of the sticky key.
    Sticky(u16),
    /// No sticky key: a random bucket.
    Random(u16),
}

/// The outcome of routing one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub target: Target,
    pub cause: Cause,
}

impl RouteTable {
    /// Validates `spec` against the pools the service has.
    pub fn compile(spec: RouteSpec, pools: &[&str]) -> Result<Self, RouteError> {
        let known = || pools.join(", ");
        if !pools.contains(&spec.stable.as_str()) {
            return Err(RouteError::UnknownPool {
                field: "stable",
                name: spec.stable.clone(),
                known: known(),
            });
        }
        match &spec.canary {
            Some(c) if !pools.contains(&c.as_str()) => {
                return Err(RouteError::UnknownPool {
                    field: "canary",
                    name: c.clone(),
                    known: known(),
                });
            }
            Some(c) if *c == spec.stable => return Err(RouteError::SamePool(c.clone())),
            None if spec.canary_weight > Permille::ZERO => {
                return Err(RouteError::WeightWithoutCanary);
            }
            _ => {}
        }
        let rules = spec
            .rules
            .iter()
            .enumerate()
            .map(|(index, r)| {
                MatchRule::compile(r.clone()).map_err(|source| RouteError::Rule { index, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RouteTable { spec, rules })
    }

    pub fn spec(&self) -> &RouteSpec {
        &self.spec
    }

    pub fn stable(&self) -> &str {
        &self.spec.stable
    }

    pub fn canary(&self) -> Option<&str> {
        self.spec.canary.as_deref()
    }

    pub fn canary_weight(&self) -> Permille {
        self.spec.canary_weight
    }

    /// The pool name for a target.
    pub fn pool(&self, target: Target) -> &str {
        match target {
            Target::Canary => self.spec.canary.as_deref().unwrap_or(&self.spec.stable),
            Target::Stable => &self.spec.stable,
        }
    }

    /// The same table with the canary at 0% and no rules: what a rollback
    /// installs. The canary pool stays named so its in-flight requests and
    /// metrics remain attributable.
    pub fn rolled_back(&self) -> RouteTable {
        RouteTable {
            spec: RouteSpec {
                stable: self.spec.stable.clone(),
                canary: self.spec.canary.clone(),
                canary_weight: Permille::ZERO,
                rules: Vec::new(),
            },
            rules: Vec::new(),
        }
    }

    /// Routes one request. `sticky_key` is the request's sticky key if the
    /// service has one and the request carries it; `random_bucket` (0..1000)
    /// is used otherwise.
    pub fn decide(
        &self,
        req: &impl RequestView,
        sticky_key: Option<&[u8]>,
        random_bucket: u16,
    ) -> Decision {
        let has_canary = self.spec.canary.is_some();
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.matches(req) {
                let target = if has_canary {
                    rule.target
                } else {
                    Target::Stable
                };
                return Decision {
                    target,
                    cause: Cause::Rule(i),
                };
            }
        }
        let (bucket, cause) = match sticky_key {
            Some(key) => {
                let b = crate::bucket::bucket(key);
                (b, Cause::Sticky(b))
            }
            None => {
                let b = random_bucket % BUCKETS;
                (b, Cause::Random(b))
            }
        };
        let target = if has_canary && bucket < self.spec.canary_weight.get() {
            Target::Canary
        } else {
            Target::Stable
        };
        Decision { target, cause }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::rule::cookie_value;

    /// A request made of plain header pairs.
    pub(crate) struct FakeRequest(HashMap<String, String>);

    impl FakeRequest {
        pub(crate) fn new(headers: &[(&str, &str)]) -> Self {
            FakeRequest(
                headers
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                    .collect(),
            )
        }
    }

    impl RequestView for FakeRequest {
        fn header(&self, name: &str) -> Option<&str> {
            self.0.get(name).map(String::as_str)
        }
        fn cookie(&self, name: &str) -> Option<&str> {
            cookie_value(self.0.get("cookie")?, name)
        }
    }

    fn table(json: &str) -> RouteTable {
        RouteTable::compile(serde_json::from_str(json).unwrap(), &["v1", "v2"]).unwrap()
    }

    fn check(
        json: &str,
        headers: &[(&str, &str)],
        key: Option<&str>,
        random: u16,
        expected: Target,
    ) {
        let t = table(json);
        let d = t.decide(&FakeRequest::new(headers), key.map(str::as_bytes), random);
        assert_eq!(
            d.target, expected,
            "{json} {headers:?} {key:?} {random}: {d:?}"
        );
    }

    #[test]
    fn decisions() {
        let ten = r#"{"stable":"v1","canary":"v2","canary_weight":10}"#;
        check(ten, &[], None, 0, Target::Canary);
        check(ten, &[], None, 99, Target::Canary);
        check(ten, &[], None, 100, Target::Stable);
        check(ten, &[], None, 999, Target::Stable);
        let none = r#"{"stable":"v1"}"#;
        check(none, &[], None, 0, Target::Stable);
        let full = r#"{"stable":"v1","canary":"v2","canary_weight":100}"#;
        check(full, &[], None, 999, Target::Canary);
        let rules = r#"{"stable":"v1","canary":"v2","canary_weight":0,
            "rules":[{"header":"x-group","equals":"staff","to":"canary"},
                     {"cookie":"optout","equals":"1","to":"stable"}]}"#;
        check(rules, &[("x-group", "staff")], None, 999, Target::Canary);
        check(rules, &[("x-group", "other")], None, 0, Target::Stable);
        let optout = r#"{"stable":"v1","canary":"v2","canary_weight":100,
            "rules":[{"cookie":"optout","equals":"1","to":"stable"}]}"#;
        check(optout, &[("cookie", "optout=1")], None, 0, Target::Stable);
        check(optout, &[("cookie", "optout=0")], None, 0, Target::Canary);
        // A rule that forces the canary when no canary exists sends to stable.
        let no_canary = r#"{"stable":"v1","rules":[{"header":"x","equals":"y","to":"canary"}]}"#;
        check(no_canary, &[("x", "y")], None, 0, Target::Stable);
    }

    fn check_compile_error(json: &str, field: &str) {
        let err =
            RouteTable::compile(serde_json::from_str(json).unwrap(), &["v1", "v2"]).unwrap_err();
        assert_eq!(err.field(), field, "{json}: {err}");
    }

    #[test]
    fn bad_routes_name_the_field() {
        check_compile_error(r#"{"stable":"v9"}"#, "stable");
        check_compile_error(r#"{"stable":"v1","canary":"v9"}"#, "canary");
        check_compile_error(r#"{"stable":"v1","canary":"v1"}"#, "canary");
        check_compile_error(r#"{"stable":"v1","canary_weight":5}"#, "canary_weight");
        check_compile_error(
            r#"{"stable":"v1","canary":"v2","rules":[{"header":"a","equals":"b","to":"canary"},{"header":"a","to":"canary"}]}"#,
            "rules[1].equals",
        );
    }

    #[test]
    fn rollback_clears_weight_and_rules() {
        let t = table(
            r#"{"stable":"v1","canary":"v2","canary_weight":50,"rules":[{"header":"a","equals":"b","to":"canary"}]}"#,
        );
        let r = t.rolled_back();
        assert_eq!(r.canary_weight(), Permille::ZERO);
        assert!(r.spec().rules.is_empty());
        for b in 0..BUCKETS {
            assert_eq!(
                r.decide(&FakeRequest::new(&[("a", "b")]), None, b).target,
                Target::Stable
            );
        }
    }

    proptest! {
        /// Raising the canary weight only ever moves a key from stable to
        /// canary, and a key's target is a function of the weight alone.
        #[test]
        fn sticky_keys_move_monotonically(key in proptest::collection::vec(any::<u8>(), 0..64), w1 in 0u16..=1000, w2 in 0u16..=1000, r1: u16, r2: u16) {
            let (lo, hi) = (w1.min(w2), w1.max(w2));
            let make = |w: u16| RouteTable::compile(RouteSpec {
                stable: "v1".into(), canary: Some("v2".into()),
                canary_weight: Permille::new(w).unwrap(), rules: vec![],
            }, &["v1", "v2"]).unwrap();
            let req = FakeRequest::new(&[]);
            let at_lo = make(lo).decide(&req, Some(&key), r1).target;
            let at_lo_again = make(lo).decide(&req, Some(&key), r2).target;
            let at_hi = make(hi).decide(&req, Some(&key), r2).target;
            prop_assert_eq!(at_lo, at_lo_again, "sticky: the random bucket must not matter");
            if at_lo == Target::Canary {
                prop_assert_eq!(at_hi, Target::Canary);
            }
        }

        /// Route parsing never panics, whatever the JSON.
        #[test]
        fn route_parsing_never_panics(body in ".{0,200}") {
            if let Ok(spec) = serde_json::from_str::<RouteSpec>(&body) {
                let _ = RouteTable::compile(spec, &["v1", "v2"]);
            }
        }

        /// Structured but arbitrary routes compile or fail with a field name.
        #[test]
        fn arbitrary_routes_compile_or_name_a_field(
            stable in "[a-z0-9]{0,3}", canary in proptest::option::of("[a-z0-9]{0,3}"),
            weight in -10.0f64..110.0, header in "[ -~]{0,8}", pattern in "[ -~]{0,8}",
        ) {
            let body = serde_json::json!({
                "stable": stable, "canary": canary, "canary_weight": weight,
                "rules": [{"header": header, "regex": pattern, "to": "canary"}],
            });
            match serde_json::from_value::<RouteSpec>(body) {
                Ok(spec) => match RouteTable::compile(spec, &["v1", "v2"]) {
                    Ok(t) => { let _ = t.decide(&FakeRequest::new(&[]), None, 0); }
                    Err(e) => prop_assert!(!e.field().is_empty()),
                },
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }
}
