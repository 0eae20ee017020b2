//! flagd's `sem_ver` operator: compares two semantic versions.
//!
//! Versions are read leniently the way flagd reads them (a leading `v` is
//! dropped and a missing minor or patch counts as zero, so `v1.2` is
//! `1.2.0`), then strictly as SemVer 2.0. Build metadata never affects the
//! comparison. `^` means "same major", `~` "same major and minor". Anything
//! unreadable makes the operator yield nothing (null), as in the reference.

use std::cmp::Ordering;

use semver::Version;

use crate::pynum;
use crate::value::Val;

/// Evaluates `sem_ver` over its three evaluated arguments.
pub(crate) fn sem_ver(args: &[Val<'_>]) -> Option<bool> {
    let [left, op, right] = args else {
        return None;
    };
    let left = version(left)?;
    let right = version(right)?;
    let ord = left
        .major
        .cmp(&right.major)
        .then(left.minor.cmp(&right.minor))
        .then(left.patch.cmp(&right.patch))
        .then_with(|| match (left.pre.is_empty(), right.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => left.pre.cmp(&right.pre),
        });
    Some(match op.as_str()? {
        "=" => ord == Ordering::Equal,
        "!=" => ord != Ordering::Equal,
        "<" => ord == Ordering::Less,
        "<=" => ord != Ordering::Greater,
        ">" => ord == Ordering::Greater,
        ">=" => ord != Ordering::Less,
        "^" => left.major == right.major,
        "~" => left.major == right.major && left.minor == right.minor,
        _ => return None,
    })
}

/// Reads a version the way the reference does: Python's `str()` of the
/// value, an optional `v`, padded to three numbers.
fn version(value: &Val<'_>) -> Option<Version> {
    let text = match value {
        Val::Str(s) => (*s).to_owned(),
        Val::String(s) => s.to_string(),
        Val::Int(i) => i.to_string(),
        Val::Float(f) => pynum::format_repr(*f),
        // Python's str() of these never reads as a version.
        _ => return None,
    };
    let text = text.strip_prefix(['v', 'V']).unwrap_or(&text);
    let numeric_len = text.find(['-', '+']).unwrap_or(text.len());
    let numeric = &text[..numeric_len];
    let dots = numeric.matches('.').count();
    let padded = if dots < 2 {
        format!("{numeric}{}{}", ".0".repeat(2 - dots), &text[numeric_len..])
    } else {
        text.to_owned()
    };
    Version::parse(&padded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value as Json, json};

    fn check(left: Json, op: &str, right: Json, expected: Option<bool>) {
        let op = Json::from(op);
        let args = [
            Val::from_json(&left),
            Val::from_json(&op),
            Val::from_json(&right),
        ];
        assert_eq!(sem_ver(&args), expected, "sem_ver({left}, {op}, {right})");
    }

    #[test]
    fn comparisons() {
        check(json!("1.2.3"), "=", json!("1.2.3"), Some(true));
        check(json!("v1.2"), "=", json!("1.2.0"), Some(true));
        check(json!("1"), "<", json!("1.0.1"), Some(true));
        check(json!("1.0.0-alpha"), "<", json!("1.0.0"), Some(true));
        check(
            json!("1.0.0-alpha.2"),
            "<",
            json!("1.0.0-alpha.10"),
            Some(true),
        );
        check(
            json!("1.0.0-alpha"),
            "<",
            json!("1.0.0-alpha.1"),
            Some(true),
        );
        check(json!("1.0.0-1"), "<", json!("1.0.0-a"), Some(true));
        check(
            json!("1.0.0+build1"),
            "=",
            json!("1.0.0+build2"),
            Some(true),
        );
        check(json!("2.1.0"), "^", json!("2.9.9"), Some(true));
        check(json!("2.1.0"), "~", json!("2.2.0"), Some(false));
        check(json!("2.1.0"), ">=", json!("2.1.0"), Some(true));
        check(json!("1.2.3"), "!=", json!("1.2.4"), Some(true));
        check(json!(1.2), "=", json!("1.2.0"), Some(true));
        check(json!(2), ">", json!("1.9.9"), Some(true));
        check(json!("1.02.3"), "=", json!("1.2.3"), None);
        check(json!("1.2.3.4"), "=", json!("1.2.3"), None);
        check(json!("1.2.3"), "===", json!("1.2.3"), None);
        check(json!(true), "=", json!("1.0.0"), None);
        check(json!("not"), "=", json!("1.0.0"), None);
    }
}
