//! The technical-debt report: flags that no longer decide anything.
//!
//! A flag is stale when it has served one variant to everyone for at least
//! the threshold with no change (disabled, no targeting, or a split with one
//! live fraction), or when nothing has evaluated it for at least the
//! threshold. Pure: the caller supplies the last change and last evaluation
//! times and `now`.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value as Json;

use crate::flag::{FlagSet, State};

/// Why a flag is listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StaleReason {
    /// Everyone gets the same variant (named; `None`: the caller's default).
    SingleVariant { variant: Option<String> },
    /// Not evaluated for the threshold (or never, since `since`).
    NotEvaluated,
}

/// One stale flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleFlag {
    pub key: String,
    pub reasons: Vec<StaleReason>,
    /// Seconds since the flag last changed.
    pub age_secs: i64,
    pub owner: Option<String>,
    /// Unix seconds of the last change.
    pub last_change: i64,
    /// Unix seconds of the last evaluation, if any was seen.
    pub last_evaluated: Option<i64>,
}

/// Lists stale flags. `last_change` and `last_evaluated` are Unix seconds per
/// key; a flag with no recorded change counts from `since` (when records
/// began), and so does one never evaluated.
pub fn report(
    flags: &FlagSet,
    last_change: &HashMap<String, i64>,
    last_evaluated: &HashMap<String, i64>,
    since: i64,
    now: i64,
    threshold_secs: i64,
) -> Vec<StaleFlag> {
    let mut out = Vec::new();
    for key in flags.keys() {
        let Some(flag) = flags.flag(key) else {
            continue;
        };
        let changed = last_change.get(key).copied().unwrap_or(since);
        let evaluated = last_evaluated.get(key).copied();
        let mut reasons = Vec::new();
        if now - changed >= threshold_secs
            && let Some(variant) = single_variant(flag)
        {
            reasons.push(StaleReason::SingleVariant { variant });
        }
        // A change restarts the clock: a flag just edited is given time to be
        // evaluated before it counts as unused.
        if now - evaluated.unwrap_or(since).max(changed) >= threshold_secs {
            reasons.push(StaleReason::NotEvaluated);
        }
        if !reasons.is_empty() {
            out.push(StaleFlag {
                key: key.to_owned(),
                reasons,
                age_secs: now - changed,
                owner: flag
                    .metadata()
                    .get("owner")
                    .and_then(Json::as_str)
                    .map(str::to_owned),
                last_change: changed,
                last_evaluated: evaluated,
            });
        }
    }
    out
}

/// The one variant a flag serves to everyone, if it does: `Some(None)` for
/// a disabled flag (everyone gets the caller's default).
fn single_variant(flag: &crate::Flag) -> Option<Option<String>> {
    if flag.state() == State::Disabled {
        return Some(None);
    }
    match &flag.targeting {
        None => Some(flag.default_variant().map(str::to_owned)),
        Some(crate::rule::Node::Fractional(f)) => {
            let split = f.fixed.as_ref()?.split.as_ref()?;
            let mut live = split.fractions.iter().filter(|(_, w)| *w > 0);
            let (variant, _) = live.next()?;
            if live.next().is_some() {
                return None;
            }
            Some(variant.as_str().map(str::to_owned))
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load;
    use serde_json::json;

    const DAY: i64 = 86_400;

    fn check(flag: Json, changed: i64, evaluated: Option<i64>, expected: Vec<StaleReason>) {
        let loaded = load(&json!({"flags": {"f": flag}})).expect("loads");
        let changes = HashMap::from([("f".to_owned(), changed)]);
        let evals: HashMap<String, i64> =
            evaluated.map(|e| ("f".to_owned(), e)).into_iter().collect();
        let got = report(&loaded.flags, &changes, &evals, 0, 30 * DAY, 7 * DAY);
        let reasons = got
            .into_iter()
            .next()
            .map(|s| s.reasons)
            .unwrap_or_default();
        assert_eq!(reasons, expected);
    }

    fn on_off(extra: Json) -> Json {
        let mut f = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"});
        if let (Some(f), Some(e)) = (f.as_object_mut(), extra.as_object()) {
            f.extend(e.clone());
        }
        f
    }

    #[test]
    fn reasons() {
        let single = |v: Option<&str>| StaleReason::SingleVariant {
            variant: v.map(str::to_owned),
        };
        check(
            on_off(json!({})),
            20 * DAY,
            Some(29 * DAY),
            vec![single(Some("on"))],
        );
        check(on_off(json!({})), 25 * DAY, Some(29 * DAY), vec![]);
        check(
            on_off(json!({"state": "DISABLED"})),
            0,
            Some(29 * DAY),
            vec![single(None)],
        );
        check(
            on_off(json!({"targeting": {"fractional": [["on", 100], ["off", 0]]}})),
            0,
            Some(29 * DAY),
            vec![single(Some("on"))],
        );
        check(
            on_off(json!({"targeting": {"fractional": [["on", 50], ["off", 50]]}})),
            0,
            Some(29 * DAY),
            vec![],
        );
        check(
            on_off(json!({"targeting": {"if": [{"var": "x"}, "on"]}})),
            0,
            Some(20 * DAY),
            vec![StaleReason::NotEvaluated],
        );
        check(
            on_off(json!({"targeting": {"if": [{"var": "x"}, "on"]}})),
            0,
            None,
            vec![StaleReason::NotEvaluated],
        );
        check(
            on_off(json!({"targeting": {"if": [{"var": "x"}, "on"]}})),
            28 * DAY,
            None,
            vec![],
        );
    }
}
