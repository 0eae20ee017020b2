use super::*;
use crate::load::load;
use serde_json::json;

/// Evaluates flag `f` of `doc` for `ctx`, optionally typed, and compares
/// `(value, variant, reason, error code)`.
fn check(
    doc: Json,
    ctx: Json,
    ty: Option<FlagType>,
    expected: (Option<Json>, Option<&str>, Reason, Option<ErrorCode>),
) {
    let loaded = load(&json!({"flags": {"f": doc}, "metadata": {"set": "s"}})).expect("loads");
    let ctx = Context::from_json(ctx).expect("context");
    let mut res = loaded.flags.evaluate("f", &ctx, 0);
    if let Some(ty) = ty {
        res = res.typed(ty);
    }
    let got = (
        res.value.cloned(),
        res.variant,
        res.reason,
        res.error.map(|e| e.code),
    );
    assert_eq!(got, expected, "{doc}");
}

/// A boolean flag (`on`, `off`) with `targeting`.
fn flag(targeting: Json) -> Json {
    json!({"state": "ENABLED", "variants": {"on": true, "off": false},
           "defaultVariant": "off", "targeting": targeting})
}

/// A number flag whose variants are named by their values.
fn numbers(targeting: Json) -> Json {
    json!({"state": "ENABLED", "variants": {"0": 0, "1": 1, "1.5": 1.5},
           "defaultVariant": "0", "targeting": targeting})
}

use ErrorCode::*;
use Reason::*;

#[test]
fn reasons() {
    check(
        flag(json!(null)),
        json!({}),
        None,
        (Some(json!(false)), Some("off"), Static, None),
    );
    check(
        flag(json!({})),
        json!({}),
        None,
        (Some(json!(false)), Some("off"), Static, None),
    );
    check(
        flag(json!({"if": [{"var": "x"}, "on"]})),
        json!({"x": 1}),
        None,
        (Some(json!(true)), Some("on"), TargetingMatch, None),
    );
    check(
        flag(json!({"if": [{"var": "x"}, "on"]})),
        json!({}),
        None,
        (Some(json!(false)), Some("off"), Default, None),
    );
    check(
        json!({"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"}),
        json!({}),
        None,
        (None, None, Disabled, None),
    );
    check(
        json!({"state": "ENABLED", "variants": {"on": true}}),
        json!({}),
        None,
        (None, None, Default, None),
    );
}

#[test]
fn variant_names_come_from_any_scalar() {
    // `true` names variant "true", which this flag does not have.
    check(
        flag(json!({"!!": 1})),
        json!({}),
        None,
        (None, None, Error, Some(General)),
    );
    check(
        numbers(json!({"+": [0, 1]})),
        json!({}),
        None,
        (Some(json!(1)), Some("1"), TargetingMatch, None),
    );
    check(
        numbers(json!({"+": [0.5, 1]})),
        json!({}),
        None,
        (Some(json!(1.5)), Some("1.5"), TargetingMatch, None),
    );
}

#[test]
fn errors_keep_the_callers_default() {
    check(
        flag(json!({"cat": ["o", "n", "!"]})),
        json!({}),
        None,
        (None, None, Error, Some(General)),
    );
    check(
        flag(json!({"/": [1, 0]})),
        json!({}),
        None,
        (None, None, Error, Some(General)),
    );
    check(
        flag(json!({"var": "l"})),
        json!({"l": ["on"]}),
        None,
        (None, None, Error, Some(General)),
    );
    check(
        flag(json!({"if": [true, "on"]})),
        json!({}),
        Some(FlagType::String),
        (None, None, Error, Some(TypeMismatch)),
    );
    check(
        numbers(json!({"if": [true, "1"]})),
        json!({}),
        Some(FlagType::Float),
        (Some(json!(1)), Some("1"), TargetingMatch, None),
    );
    check(
        numbers(json!({"if": [true, "1.5"]})),
        json!({}),
        Some(FlagType::Int),
        (None, None, Error, Some(TypeMismatch)),
    );
    check(
        json!({"state": "DISABLED", "variants": {"on": "x"}}),
        json!({}),
        Some(FlagType::Bool),
        (None, None, Disabled, None),
    );
}

/// What flagd's reference evaluates but nobody means is refused when the
/// flag loads, and only that flag is broken.
#[test]
fn mixed_variants_and_bad_weights_break_only_their_flag() {
    let loaded = load(&json!({"flags": {
        "mixed": {"state": "ENABLED", "variants": {"on": true, "off": "false"}, "defaultVariant": "off"},
        "negative": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                     "targeting": {"fractional": [["on", -5], ["off", 105]]}},
        "fraction": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                     "targeting": {"fractional": ["x", ["on", 1.5], ["off", 98]]}},
        "good": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                 "targeting": {"fractional": [["on", 50], ["off", 9950]]}},
    }}))
    .expect("loads");
    let problems: Vec<String> = loaded
        .errors()
        .map(|p| format!("{} {}", p.path, p.message))
        .collect();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(loaded.errors().all(|p| p.stricter_than_flagd));
    let text = problems.join("\n");
    for fragment in [
        "/flags/mixed/variants/on variant `on` is a boolean but `off` is a string",
        "/flags/negative/targeting/fractional/0/1 the weight of \"on\" is -5",
        "/flags/fraction/targeting/fractional/1/1 the weight of \"on\" is 1.5",
    ] {
        assert!(text.contains(fragment), "{fragment} in:\n{text}");
    }
    let ctx = Context::from_json(json!({"targetingKey": "u"})).expect("context");
    for key in ["mixed", "negative", "fraction"] {
        let res = loaded.flags.evaluate(key, &ctx, 0);
        assert_eq!(res.error.map(|e| e.code), Some(ParseError), "{key}");
    }
    assert!(loaded.flags.evaluate("good", &ctx, 0).error.is_none());
}

#[test]
fn missing_flags_and_metadata() {
    let loaded = load(&json!({"metadata": {"set": "s", "owner": "all"},
        "flags": {"f": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", "metadata": {"owner": "me"}}}}))
    .expect("loads");
    let ctx = Context::new();
    let res = loaded.flags.evaluate("f", &ctx, 0);
    assert_eq!(
        res.metadata,
        json!({"set": "s", "owner": "me"})
            .as_object()
            .expect("object")
    );
    let missing = loaded.flags.evaluate("nope", &ctx, 0);
    assert_eq!(missing.error.as_ref().map(|e| e.code), Some(FlagNotFound));
    assert!(missing.metadata.is_empty());
    assert!(missing.bool_or(true), "the caller's default survives");
}
