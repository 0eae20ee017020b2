use super::*;
use serde_json::json;

/// Loads `doc` and compares the problems found, as `(flag, path, needle)`:
/// the message must contain the needle.
fn check(doc: Json, expected: &[(Option<&str>, &str, &str)]) {
    let loaded = load(&doc).unwrap_or_else(|e| panic!("{doc} did not load: {e}"));
    let got: Vec<(Option<&str>, &str, &str)> = loaded
        .problems
        .iter()
        .map(|p| (p.flag.as_deref(), p.path.as_str(), p.message.as_str()))
        .collect();
    assert_eq!(got.len(), expected.len(), "{doc}: {got:?}");
    for ((flag, path, message), (want_flag, want_path, needle)) in got.iter().zip(expected) {
        assert_eq!((flag, path), (want_flag, want_path), "{doc}");
        assert!(
            message.contains(needle),
            "`{message}` should mention `{needle}`"
        );
    }
}

fn check_fatal(doc: Json, needle: &str) {
    let err = load(&doc).expect_err("document should not load");
    assert!(
        err.to_string().contains(needle),
        "`{err}` should mention `{needle}`"
    );
}

fn flag(extra: Json) -> Json {
    let mut f =
        json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"});
    if let (Some(f), Some(extra)) = (f.as_object_mut(), extra.as_object()) {
        f.extend(extra.clone());
    }
    f
}

#[test]
fn good_documents_have_no_problems() {
    check(json!({"flags": {"a": flag(json!({}))}}), &[]);
    check(json!({"flags": {}}), &[]);
    check(
        json!({"$schema": "https://flagd.dev/schema/v0/flags.json", "flags": {"a": flag(json!({"targeting": {}}))}}),
        &[],
    );
    check(
        json!({"$evaluators": {"jp": {"==": [{"var": "country"}, "jp"]}},
               "flags": {"a": flag(json!({"targeting": {"if": [{"$ref": "jp"}, "on"]}}))}}),
        &[],
    );
}

#[test]
fn each_broken_flag_is_reported_where_it_is() {
    check(
        json!({"flags": {"a": 5}}),
        &[(Some("a"), "/flags/a", "not a number")],
    );
    check(
        json!({"flags": {"a": {"variants": {"on": 1}}}}),
        &[(Some("a"), "/flags/a", "missing `state`")],
    );
    check(
        json!({"flags": {"a": flag(json!({"state": "ON"}))}}),
        &[(Some("a"), "/flags/a/state", "\"ENABLED\" or \"DISABLED\"")],
    );
    check(
        json!({"flags": {"a": flag(json!({"variants": {}}))}}),
        &[(Some("a"), "/flags/a/variants", "empty")],
    );
    check(
        json!({"flags": {"a": flag(json!({"variants": [1]}))}}),
        &[(Some("a"), "/flags/a/variants", "an array")],
    );
    check(
        json!({"flags": {"a": flag(json!({"defaultVariant": 3}))}}),
        &[(Some("a"), "/flags/a/defaultVariant", "must name a variant")],
    );
    check(
        json!({"flags": {"a": flag(json!({"defaultVariant": "nope"}))}}),
        &[(
            Some("a"),
            "/flags/a/defaultVariant",
            "not one of the variants",
        )],
    );
    check(
        json!({"flags": {"a": flag(json!({"targeting": "yes"}))}}),
        &[(Some("a"), "/flags/a/targeting", "JsonLogic rule")],
    );
    check(
        json!({"flags": {"a": flag(json!({"targeting": {"if": [{"regex": ["a", "b"]}, "on"]}}))}}),
        &[(
            Some("a"),
            "/flags/a/targeting/if/0/regex",
            "unknown operator `regex`",
        )],
    );
    check(
        json!({"flags": {"a": flag(json!({"targeting": {"$ref": "nope"}}))}}),
        &[(Some("a"), "/flags/a/targeting/$ref", "$evaluators")],
    );
    check(
        json!({"flags": {"a": flag(json!({"description": "x"}))}}),
        &[(Some("a"), "/flags/a/description", "unknown field")],
    );
    check(
        json!({"flags": {"a": flag(json!({"metadata": {"n": [1]}}))}}),
        &[(
            Some("a"),
            "/flags/a/metadata/n",
            "string, number or boolean",
        )],
    );
    check(
        json!({"flags": {"a/b": 1}}),
        &[(Some("a/b"), "/flags/a~1b", "not a number")],
    );
    check(
        json!({"metadata": {"x": null}, "flags": {}}),
        &[(None, "/metadata/x", "string, number or boolean")],
    );
}

#[test]
fn a_broken_flag_never_takes_the_others_down() {
    let doc = json!({"flags": {"bad": flag(json!({"targeting": {"nope": []}})), "good": flag(json!({}))}});
    let loaded = load(&doc).expect("loads");
    assert_eq!(loaded.errors().count(), 1);
    let ctx = crate::Context::new();
    assert_eq!(
        loaded.flags.evaluate("good", &ctx, 0).value,
        Some(&json!(true))
    );
    let bad = loaded.flags.evaluate("bad", &ctx, 0);
    let err = bad.error.expect("the broken flag reports its problem");
    assert_eq!(err.code, crate::ErrorCode::ParseError);
    assert!(
        err.message.contains("/flags/bad/targeting/nope"),
        "{}",
        err.message
    );
}

#[test]
fn unreadable_documents_fail_whole() {
    check_fatal(json!([1]), "an object with a `flags` member");
    check_fatal(json!({"flags": [1]}), "`flags` must be an object");
    // A file that lost its flags must not replace the last good set.
    check_fatal(json!({}), "has no `flags`");
    check_fatal(json!({"flags": null}), "has no `flags`");
    let err = load_str("{\"flags\": {\n  \"a\": }", Format::Json).expect_err("syntax error");
    assert!(err.to_string().starts_with("2:8:"), "{err}");
    assert!(load_str("flags: [", Format::Yaml).is_err());
}

#[test]
fn problems_in_json_text_carry_line_and_column() {
    let text = "{\"flags\": {\n  \"ok\": {\"state\": \"ENABLED\", \"variants\": {\"on\": true}, \"defaultVariant\": \"on\"},\n  \"bad\": {\"state\": \"ENABLED\", \"variants\": {\"on\": true},\n          \"targeting\": {\"if\": [{\"regex\": [1]}, \"on\"]}}\n}}";
    let loaded = load_str(text, Format::Json).expect("loads");
    let problem = loaded.problems.first().expect("one problem");
    assert_eq!(problem.position, Some((4, 42)));
    assert!(
        problem
            .to_string()
            .starts_with("4:42: error: flag `bad` at /flags/bad/targeting/if/0/regex"),
        "{problem}"
    );
}
