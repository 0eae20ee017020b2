//! Changes to a flag document, as pure functions: the management API and
//! the CLI both go through here, so a change that would break a flag is
//! refused before anything is written.

use serde_json::{Map, Value as Json, json};

use crate::dsl::{self, Rule};
use crate::guard::{Share, SplitError, set_share};
use crate::load::{Problem, load};

/// One change to a flag document.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// Create or replace a flag with this definition (flagd format).
    Put {
        key: String,
        flag: Json,
    },
    Delete {
        key: String,
    },
    /// Disable a flag: every evaluation gets the caller's default.
    Kill {
        key: String,
    },
    /// Enable a disabled flag again.
    Revive {
        key: String,
    },
    /// Set `variant`'s share of the flag's `fractional` split against
    /// `control` (see [`crate::guard::set_share`]): the step of a guarded
    /// rollout, applied to the document as it is when the change is made.
    Split {
        key: String,
        variant: String,
        control: String,
        share: Share,
    },
}

impl Edit {
    pub fn key(&self) -> &str {
        match self {
            Edit::Put { key, .. }
            | Edit::Delete { key }
            | Edit::Kill { key }
            | Edit::Revive { key }
            | Edit::Split { key, .. } => key,
        }
    }

    /// A short name for the event log.
    pub fn action(&self, existed: bool) -> &'static str {
        match self {
            Edit::Put { .. } if existed => "update",
            Edit::Put { .. } => "create",
            Edit::Delete { .. } => "delete",
            Edit::Kill { .. } => "kill",
            Edit::Revive { .. } => "revive",
            Edit::Split { .. } => "split",
        }
    }
}

/// A change that was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("flag `{0}` does not exist")]
    NotFound(String),
    #[error("the document is not a flag document: {0}")]
    Document(String),
    #[error("flag `{key}` would be broken: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid { key: String, problems: Vec<Problem> },
    #[error("flag `{key}`: {error}")]
    Split { key: String, error: SplitError },
}

/// The result of an edit: the new document, and the flag before and after.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub document: Json,
    pub before: Option<Json>,
    pub after: Option<Json>,
}

/// Applies `edit` to `doc`, checking that the flag it touches still loads.
pub fn apply(doc: &Json, edit: &Edit) -> Result<Applied, EditError> {
    let mut document = doc.clone();
    let root = match &mut document {
        Json::Object(root) => root,
        Json::Null => {
            document = json!({"flags": {}});
            match &mut document {
                Json::Object(root) => root,
                _ => return Err(EditError::Document("cannot create a document".into())),
            }
        }
        other => {
            return Err(EditError::Document(format!(
                "expected an object, found {other}"
            )));
        }
    };
    let flags = root
        .entry("flags")
        .or_insert_with(|| Json::Object(Map::new()));
    let Json::Object(flags) = flags else {
        return Err(EditError::Document("`flags` is not an object".into()));
    };
    let key = edit.key().to_owned();
    let before = flags.get(&key).cloned();
    let after = match edit {
        Edit::Put { flag, .. } => Some(flag.clone()),
        Edit::Delete { .. } => None,
        Edit::Kill { .. } | Edit::Revive { .. } => {
            let Some(mut flag) = before.clone() else {
                return Err(EditError::NotFound(key));
            };
            let state = if matches!(edit, Edit::Kill { .. }) {
                "DISABLED"
            } else {
                "ENABLED"
            };
            if let Json::Object(fields) = &mut flag {
                fields.insert("state".into(), Json::from(state));
            }
            Some(flag)
        }
        Edit::Split {
            variant,
            control,
            share,
            ..
        } => {
            let Some(flag) = &before else {
                return Err(EditError::NotFound(key));
            };
            Some(
                set_share(flag, variant, control, *share).map_err(|error| EditError::Split {
                    key: key.clone(),
                    error,
                })?,
            )
        }
    };
    match &after {
        Some(flag) => {
            flags.insert(key.clone(), flag.clone());
        }
        None => {
            if flags.remove(&key).is_none() {
                return Err(EditError::NotFound(key));
            }
        }
    }
    if after.is_some() {
        let loaded = load(&document).map_err(|e| EditError::Document(e.to_string()))?;
        let problems: Vec<Problem> = loaded
            .problems
            .into_iter()
            // A change is held to a higher bar than a file being loaded:
            // warnings (say, a default variant that does not exist) refuse it.
            .filter(|p| p.flag.as_deref() == Some(key.as_str()))
            .collect();
        if !problems.is_empty() {
            return Err(EditError::Invalid { key, problems });
        }
    }
    Ok(Applied {
        document,
        before,
        after,
    })
}

/// What `backout flag set` asks to change on one flag.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlagChange {
    /// Variants to add or replace (name, value).
    pub variants: Vec<(String, Json)>,
    pub default_variant: Option<String>,
    /// New rules, replacing the flag's targeting; `Some(vec![])` removes it.
    pub rules: Option<Vec<Rule>>,
    pub enabled: Option<bool>,
    /// Metadata to set (string values).
    pub metadata: Vec<(String, Json)>,
}

/// Builds a flag definition from an existing one (if any) and a change. A
/// new flag without variants gets `on: true` / `off: false`, default `off`.
pub fn change_flag(existing: Option<&Json>, change: &FlagChange) -> Result<Json, String> {
    let mut flag = match existing {
        Some(Json::Object(f)) => f.clone(),
        Some(other) => return Err(format!("the existing flag is not an object: {other}")),
        None => {
            let mut f = Map::new();
            f.insert("state".into(), json!("ENABLED"));
            if change.variants.is_empty() {
                f.insert("variants".into(), json!({"on": true, "off": false}));
                f.insert("defaultVariant".into(), json!("off"));
            } else {
                f.insert("variants".into(), json!({}));
            }
            f
        }
    };
    if !change.variants.is_empty() {
        let variants = flag.entry("variants").or_insert_with(|| json!({}));
        let Json::Object(variants) = variants else {
            return Err("the flag's `variants` is not an object".into());
        };
        for (name, value) in &change.variants {
            variants.insert(name.clone(), value.clone());
        }
    }
    if let Some(default) = &change.default_variant {
        flag.insert("defaultVariant".into(), Json::from(default.as_str()));
    }
    if let Some(enabled) = change.enabled {
        flag.insert(
            "state".into(),
            json!(if enabled { "ENABLED" } else { "DISABLED" }),
        );
    }
    if let Some(rules) = &change.rules {
        if rules.is_empty() {
            flag.remove("targeting");
        } else {
            let default = flag
                .get("defaultVariant")
                .and_then(Json::as_str)
                .map(str::to_owned);
            flag.insert("targeting".into(), dsl::compile(rules, default.as_deref())?);
        }
    }
    if !change.metadata.is_empty() {
        let metadata = flag.entry("metadata").or_insert_with(|| json!({}));
        if let Json::Object(metadata) = metadata {
            for (k, v) in &change.metadata {
                metadata.insert(k.clone(), v.clone());
            }
        }
    }
    if !flag.contains_key("defaultVariant")
        && let Some(Json::Object(variants)) = flag.get("variants")
        && variants.len() == 1
        && let Some(only) = variants.keys().next().cloned()
    {
        flag.insert("defaultVariant".into(), Json::from(only));
    }
    Ok(Json::Object(flag))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Json {
        json!({"flags": {"a": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}}})
    }

    fn check(edit: Edit, expected: Result<Option<Json>, &str>) {
        let got = apply(&doc(), &edit)
            .map(|a| a.after)
            .map_err(|e| e.to_string());
        match expected {
            Ok(after) => assert_eq!(got, Ok(after), "{edit:?}"),
            Err(needle) => {
                let err = got.expect_err("edit should be refused");
                assert!(err.contains(needle), "`{err}` should mention `{needle}`");
            }
        }
    }

    #[test]
    fn edits() {
        check(
            Edit::Kill { key: "a".into() },
            Ok(Some(
                json!({"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}),
            )),
        );
        check(
            Edit::Revive { key: "a".into() },
            Ok(Some(doc()["flags"]["a"].clone())),
        );
        check(Edit::Delete { key: "a".into() }, Ok(None));
        check(Edit::Delete { key: "b".into() }, Err("does not exist"));
        check(Edit::Kill { key: "b".into() }, Err("does not exist"));
        let split = |key: &str, variant: &str| Edit::Split {
            key: key.into(),
            variant: variant.into(),
            control: "off".into(),
            share: Share::from_percent(5.0).expect("share"),
        };
        check(
            split("a", "on"),
            Ok(Some(
                json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                       "targeting": {"fractional": [["on", 5], ["off", 95]]}}),
            )),
        );
        check(split("b", "on"), Err("flag `b` does not exist"));
        check(
            split("a", "blue"),
            Err("flag `a`: the flag has no variant `blue`"),
        );
        check(
            Edit::Put {
                key: "b".into(),
                flag: json!({"state": "ON", "variants": {"x": 1}}),
            },
            Err("flag `b` would be broken"),
        );
        check(
            Edit::Put {
                key: "b".into(),
                flag: json!({"state": "ENABLED", "variants": {"x": 1}, "targeting": {"nope": 1}}),
            },
            Err("unknown operator"),
        );
    }

    #[test]
    fn changes() {
        let rule = dsl::parse_rule("country == jp => 5% on").expect("rule");
        let change = FlagChange {
            rules: Some(vec![rule]),
            ..FlagChange::default()
        };
        let flag = change_flag(None, &change).expect("builds");
        assert_eq!(
            flag,
            json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                   "targeting": {"if": [{"==": [{"var": "country"}, "jp"]}, {"fractional": [["on", 5], ["off", 95]]}, null]}})
        );
        let off = FlagChange {
            enabled: Some(false),
            rules: Some(vec![]),
            ..FlagChange::default()
        };
        let flag = change_flag(Some(&flag), &off).expect("builds");
        assert_eq!(flag["state"], json!("DISABLED"));
        assert!(flag.get("targeting").is_none());
        let colour = FlagChange {
            variants: vec![("red".into(), json!("#f00"))],
            ..FlagChange::default()
        };
        assert_eq!(
            change_flag(None, &colour).expect("builds")["defaultVariant"],
            json!("red")
        );
    }
}
