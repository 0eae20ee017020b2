//! Match rules: "requests with this header or cookie go to that pool", for
//! stages such as "employees first".

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::table::{RequestView, Target};

/// Where a rule looks in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A header, by lower-case name; the first value counts.
    Header(String),
    /// A cookie, by exact name.
    Cookie(String),
}

/// How a rule compares the value it found.
#[derive(Debug, Clone)]
pub enum Matcher {
    Equals(String),
    Prefix(String),
    /// Unanchored: matches when the pattern occurs anywhere in the value.
    Regex(Regex),
}

/// A compiled rule. Built from a [`RuleSpec`] so bad input is caught once,
/// when the route is set, not on every request.
#[derive(Debug, Clone)]
pub struct MatchRule {
    pub source: Source,
    pub matcher: Matcher,
    pub target: Target,
    spec: RuleSpec,
}

/// A rule as people write it, in YAML or JSON:
/// `{header: x-group, equals: employees, to: canary}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    pub to: Target,
}

/// What is wrong with a rule, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("a rule needs exactly one of `header` or `cookie` to say where to look")]
    Source,
    #[error("a rule needs exactly one of `equals`, `prefix` or `regex` to say how to compare")]
    Matcher,
    #[error("`{field}` must not be empty")]
    Empty { field: &'static str },
    #[error("{0:?} is not a valid HTTP header name")]
    HeaderName(String),
    #[error("invalid regex: {0}")]
    Regex(String),
}

impl RuleError {
    /// The field a caller should point at.
    pub fn field(&self) -> &'static str {
        match self {
            RuleError::Source => "header",
            RuleError::Matcher => "equals",
            RuleError::Empty { field } => field,
            RuleError::HeaderName(_) => "header",
            RuleError::Regex(_) => "regex",
        }
    }
}

/// Regexes come from operators over the API; cap their compiled size so a
/// pathological pattern cannot eat the proxy's memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl MatchRule {
    pub fn compile(spec: RuleSpec) -> Result<Self, RuleError> {
        let source = match (&spec.header, &spec.cookie) {
            (Some(h), None) => {
                if h.is_empty() {
                    return Err(RuleError::Empty { field: "header" });
                }
                if !h.bytes().all(is_token_byte) {
                    return Err(RuleError::HeaderName(h.clone()));
                }
                Source::Header(h.to_ascii_lowercase())
            }
            (None, Some(c)) => {
                if c.is_empty() {
                    return Err(RuleError::Empty { field: "cookie" });
                }
                Source::Cookie(c.clone())
            }
            _ => return Err(RuleError::Source),
        };
        let matcher = match (&spec.equals, &spec.prefix, &spec.regex) {
            (Some(v), None, None) => Matcher::Equals(v.clone()),
            (None, Some(p), None) => Matcher::Prefix(p.clone()),
            (None, None, Some(r)) => Matcher::Regex(
                regex::RegexBuilder::new(r)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    // The regex crate's message spans lines; keep ours on one.
                    .map_err(|e| {
                        RuleError::Regex(
                            e.to_string()
                                .split_whitespace()
                                .collect::<Vec<_>>()
                                .join(" "),
                        )
                    })?,
            ),
            _ => return Err(RuleError::Matcher),
        };
        Ok(MatchRule {
            source,
            matcher,
            target: spec.to,
            spec,
        })
    }

    pub fn spec(&self) -> &RuleSpec {
        &self.spec
    }

    /// Whether the request carries a value this rule matches.
    pub fn matches(&self, req: &impl RequestView) -> bool {
        let value = match &self.source {
            Source::Header(name) => req.header(name),
            Source::Cookie(name) => req.cookie(name),
        };
        let Some(value) = value else { return false };
        match &self.matcher {
            Matcher::Equals(v) => value == v,
            Matcher::Prefix(p) => value.starts_with(p.as_str()),
            Matcher::Regex(r) => r.is_match(value),
        }
    }
}

/// RFC 9110 token characters, which is what a header name may hold.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The value of cookie `name` in one `Cookie` header value, if present.
///
/// Cookie pairs are separated by `;` with optional spaces (RFC 6265 §4.2.1);
/// values may be wrapped in double quotes, which are stripped.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        if k.trim() != name {
            return None;
        }
        let v = v.trim();
        Some(
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::tests::FakeRequest;

    fn rule(json: &str) -> Result<MatchRule, RuleError> {
        MatchRule::compile(serde_json::from_str(json).expect("valid JSON"))
    }

    fn check(rule_json: &str, headers: &[(&str, &str)], expected: bool) {
        let r = rule(rule_json).expect("rule compiles");
        assert_eq!(
            r.matches(&FakeRequest::new(headers)),
            expected,
            "{rule_json} vs {headers:?}"
        );
    }

    #[test]
    fn matching() {
        let eq = r#"{"header":"X-Group","equals":"employees","to":"canary"}"#;
        check(eq, &[("x-group", "employees")], true);
        check(eq, &[("x-group", "employees-2")], false);
        check(eq, &[], false);
        let pre = r#"{"header":"x-user","prefix":"test-","to":"canary"}"#;
        check(pre, &[("x-user", "test-42")], true);
        check(pre, &[("x-user", "prod-42")], false);
        let re = r#"{"header":"user-agent","regex":"Mac OS X 1[0-4]","to":"canary"}"#;
        check(
            re,
            &[("user-agent", "Mozilla (Macintosh; Intel Mac OS X 14_1)")],
            true,
        );
        check(re, &[("user-agent", "Mozilla (Windows NT 10.0)")], false);
        let ck = r#"{"cookie":"beta","equals":"1","to":"canary"}"#;
        check(ck, &[("cookie", "a=b; beta=1")], true);
        check(ck, &[("cookie", "a=b; beta=2")], false);
        check(ck, &[("cookie", "xbeta=1")], false);
    }

    fn check_error(rule_json: &str, field: &str) {
        let err = rule(rule_json).expect_err("rule is refused");
        assert_eq!(err.field(), field, "{rule_json}: {err}");
    }

    #[test]
    fn bad_rules_name_the_field() {
        check_error(r#"{"equals":"x","to":"canary"}"#, "header");
        check_error(
            r#"{"header":"a","cookie":"b","equals":"x","to":"canary"}"#,
            "header",
        );
        check_error(r#"{"header":"a","to":"canary"}"#, "equals");
        check_error(
            r#"{"header":"a","equals":"x","prefix":"y","to":"canary"}"#,
            "equals",
        );
        check_error(r#"{"header":"","equals":"x","to":"canary"}"#, "header");
        check_error(
            r#"{"header":"bad name","equals":"x","to":"canary"}"#,
            "header",
        );
        check_error(r#"{"header":"a","regex":"(","to":"canary"}"#, "regex");
        check_error(
            r#"{"header":"a","regex":"a{1000}{1000}{1000}","to":"canary"}"#,
            "regex",
        );
    }

    fn check_cookie(header: &str, name: &str, expected: Option<&str>) {
        assert_eq!(cookie_value(header, name), expected, "{header:?} {name}");
    }

    #[test]
    fn cookies() {
        check_cookie("a=1", "a", Some("1"));
        check_cookie("a=1; b=2", "b", Some("2"));
        check_cookie("a=1;b=2", "b", Some("2"));
        check_cookie(r#"a="quoted""#, "a", Some("quoted"));
        check_cookie("a=1; b=2", "c", None);
        check_cookie("garbage", "a", None);
        check_cookie("", "a", None);
        check_cookie("a=x=y", "a", Some("x=y"));
    }
}
