use super::*;
use crate::rule::compile;
use serde_json::json;

/// Evaluates `rule` for flag `f` at time 1000 against `ctx` (with `targetingKey`
/// inside, as on the wire) and compares with `expected`; `Err(())` expects a
/// fault.
fn check(rule: Json, ctx: Json, expected: Result<Json, ()>) {
    let node = compile(&rule, "").unwrap_or_else(|e| panic!("{rule} does not compile: {e:?}"));
    let ctx = Context::from_json(ctx).expect("context");
    let env = Env {
        flag_key: "f",
        ctx: &ctx,
        now: 1000,
    };
    let got = eval(&node, &env, Scope::Root)
        .map(|v| v.to_json())
        .map_err(|_| ());
    assert_eq!(got, expected, "{rule}");
}

fn ok(rule: Json, ctx: Json, expected: Json) {
    check(rule, ctx, Ok(expected));
}

#[test]
fn var() {
    ok(json!({"var": "a"}), json!({"a": 1}), json!(1));
    ok(json!({"var": "a.b"}), json!({"a": {"b": "x"}}), json!("x"));
    ok(json!({"var": ["a", "dflt"]}), json!({}), json!("dflt"));
    ok(
        json!({"var": ["a", "dflt"]}),
        json!({"a": null}),
        json!("dflt"),
    );
    ok(json!({"var": "a.1"}), json!({"a": [10, 20]}), json!(20));
    ok(json!({"var": "a.01"}), json!({"a": [10, 20]}), json!(null));
    ok(json!({"var": "a.length"}), json!({"a": [10, 20]}), json!(2));
    ok(
        json!({"var": "a.length.x"}),
        json!({"a": "héllo"}),
        json!(5),
    );
    ok(json!({"var": "a.1"}), json!({"a": "héllo"}), json!("é"));
    ok(
        json!({"var": "targetingKey"}),
        json!({"targetingKey": "u1"}),
        json!("u1"),
    );
    ok(
        json!({"var": "$flagd.flagKey"}),
        json!({"$flagd": 5}),
        json!("f"),
    );
    ok(json!({"var": "$flagd.timestamp"}), json!({}), json!(1000));
    ok(
        json!({"var": "$flagd"}),
        json!({}),
        json!({"flagKey": "f", "timestamp": 1000}),
    );
    ok(
        json!({"var": ""}),
        json!({"a": 1}),
        json!({"a": 1, "$flagd": {"flagKey": "f", "timestamp": 1000}, "targetingKey": null}),
    );
    ok(json!({"var": 0}), json!({"0": "x"}), json!(null));
    ok(
        json!({"var": [{"cat": ["a", ".b"]}]}),
        json!({"a": {"b": 7}}),
        json!(7),
    );
    check(json!({"var": ["a", 1, 2]}), json!({}), Err(()));
}

#[test]
fn logic() {
    ok(json!({"if": [true, "a", "b"]}), json!({}), json!("a"));
    ok(json!({"if": [false, "a", "b"]}), json!({}), json!("b"));
    ok(json!({"if": [false, "a"]}), json!({}), json!(null));
    ok(
        json!({"if": [false, "a", true, "c", "d"]}),
        json!({}),
        json!("c"),
    );
    ok(json!({"if": "x"}), json!({}), json!("x"));
    ok(json!({"if": []}), json!({}), json!(null));
    ok(json!({"and": [1, "", 2]}), json!({}), json!(""));
    ok(json!({"and": []}), json!({}), json!(null));
    ok(json!({"or": [0, [], "x"]}), json!({}), json!("x"));
    ok(json!({"or": [0, []]}), json!({}), json!([]));
    ok(json!({"!": [[]]}), json!({}), json!(true));
    ok(json!({"!!": {}}), json!({}), json!(true));
    ok(json!({"!!": "0"}), json!({}), json!(true));
}

#[test]
fn comparison() {
    ok(json!({"==": [1, "1"]}), json!({}), json!(true));
    ok(json!({"===": [1, "1"]}), json!({}), json!(false));
    ok(json!({"===": [1, 1.0]}), json!({}), json!(true));
    ok(
        json!({"==": [{"var": "l"}, {"var": "l"}]}),
        json!({"l": [1]}),
        json!(true),
    );
    ok(json!({"==": [[1], [1]]}), json!({}), json!(false));
    ok(json!({"!=": [null, 0]}), json!({}), json!(false));
    ok(json!({"<": [1, 2, 3]}), json!({}), json!(true));
    ok(json!({"<": [1, 3, 2]}), json!({}), json!(false));
    ok(json!({"<=": [1, 1, null]}), json!({}), json!(true));
    ok(json!({">": ["b", "a"]}), json!({}), json!(true));
    ok(
        json!({">=": [{"var": "age"}, 18]}),
        json!({"age": "21"}),
        json!(true),
    );
}

#[test]
fn arithmetic() {
    ok(json!({"+": [1, 2]}), json!({}), json!(3));
    ok(json!({"+": ["1", 2]}), json!({}), json!(3.0));
    ok(json!({"+": []}), json!({}), json!(0));
    ok(json!({"+": [true, true]}), json!({}), json!(2));
    ok(json!({"*": [2, 3.5]}), json!({}), json!(7.0));
    ok(json!({"-": [5]}), json!({}), json!(-5));
    ok(json!({"-": [5, null]}), json!({}), json!(-5));
    ok(json!({"-": [5, 7]}), json!({}), json!(-2));
    ok(json!({"/": [7, 2]}), json!({}), json!(3.5));
    ok(json!({"%": [-7, 3]}), json!({}), json!(2));
    ok(json!({"%": [7, -3]}), json!({}), json!(-2));
    ok(json!({"%": [-7.5, 2]}), json!({}), json!(0.5));
    ok(json!({"min": [3, 1, 2]}), json!({}), json!(1));
    ok(json!({"max": [true, 0]}), json!({}), json!(true));
    ok(json!({"max": ["3", 2]}), json!({}), json!(3.0));
    check(json!({"/": [1, 0]}), json!({}), Err(()));
    check(json!({"%": [1, 0.0]}), json!({}), Err(()));
    check(json!({"/": [1]}), json!({}), Err(()));
}

#[test]
fn strings() {
    ok(
        json!({"cat": ["a", 1, 1.5, true, null, [1, 2]]}),
        json!({}),
        json!("a11.5Truenull1,2"),
    );
    ok(
        json!({"cat": [{"/": [1, 3]}]}),
        json!({}),
        json!("0.333333333333333"),
    );
    ok(
        json!({"substr": ["jsonlogic", 4]}),
        json!({}),
        json!("logic"),
    );
    ok(
        json!({"substr": ["jsonlogic", -5]}),
        json!({}),
        json!("logic"),
    );
    ok(
        json!({"substr": ["jsonlogic", 1, 3]}),
        json!({}),
        json!("son"),
    );
    ok(
        json!({"substr": ["jsonlogic", 4, -2]}),
        json!({}),
        json!("log"),
    );
    ok(json!({"substr": ["héllo", 1, 1]}), json!({}), json!("é"));
    ok(json!({"substr": [null]}), json!({}), json!("null"));
    ok(
        json!({"in": ["Spring", "Springfield"]}),
        json!({}),
        json!(true),
    );
    ok(json!({"in": [1, ["1", 1.0]]}), json!({}), json!(true));
    ok(json!({"in": [true, "True story"]}), json!({}), json!(true));
    ok(json!({"in": ["a", 5]}), json!({}), json!(false));
    ok(
        json!({"starts_with": [{"var": "e"}, "adm"]}),
        json!({"e": "admin@x"}),
        json!(true),
    );
    ok(
        json!({"ends_with": [{"var": "e"}, "@x"]}),
        json!({"e": "admin@x"}),
        json!(true),
    );
    ok(json!({"ends_with": [5, "5"]}), json!({}), json!(null));
    ok(json!({"starts_with": ["a"]}), json!({}), json!(null));
}

#[test]
fn arrays() {
    ok(
        json!({"merge": [[1, 2], 3, [[4]]]}),
        json!({}),
        json!([1, 2, 3, [4]]),
    );
    ok(
        json!({"map": [[1, 2], {"*": [{"var": ""}, 2]}]}),
        json!({}),
        json!([2, 4]),
    );
    ok(json!({"map": [[1, 2]]}), json!({}), json!([null, null]));
    ok(
        json!({"filter": [{"var": "l"}, {">": [{"var": ""}, 1]}]}),
        json!({"l": [1, 2, 3]}),
        json!([2, 3]),
    );
    ok(json!({"filter": [[1]]}), json!({}), json!([]));
    ok(
        json!({"reduce": [[1, 2, 3], {"+": [{"var": "accumulator"}, {"var": "current"}]}, 0]}),
        json!({}),
        json!(6),
    );
    ok(
        json!({"reduce": ["x", {"var": "current"}, {"var": "raw"}]}),
        json!({}),
        json!({"var": "raw"}),
    );
    ok(json!({"all": [[], true]}), json!({}), json!(false));
    ok(
        json!({"all": [[1, 2], {">": [{"var": ""}, 0]}]}),
        json!({}),
        json!(true),
    );
    ok(
        json!({"some": [[0, 2], {"var": ""}]}),
        json!({}),
        json!(true),
    );
    ok(
        json!({"none": [[0, 0], {"var": ""}]}),
        json!({}),
        json!(true),
    );
    ok(json!({"none": [[1]]}), json!({}), json!(true));
    ok(
        json!({"missing": ["a", "b"]}),
        json!({"a": 1, "b": ""}),
        json!(["b"]),
    );
    ok(
        json!({"missing": [["a", "c"]]}),
        json!({"a": 1}),
        json!(["c"]),
    );
    ok(
        json!({"missing_some": [1, ["a", "b"]]}),
        json!({"a": 1}),
        json!([]),
    );
    ok(
        json!({"missing_some": [2, ["a", "b"]]}),
        json!({"a": 1}),
        json!(["b"]),
    );
    ok(json!({"var": "1"}), json!({}), json!(null));
    ok(
        json!({"map": [["ab"], {"var": 1}]}),
        json!({}),
        json!(["b"]),
    );
}

#[test]
fn custom_operators() {
    ok(
        json!({"sem_ver": [{"var": "v"}, ">=", "1.2.0"]}),
        json!({"v": "v1.3"}),
        json!(true),
    );
    ok(
        json!({"sem_ver": [{"var": "v"}, ">=", "1.2.0"]}),
        json!({"v": "oops"}),
        json!(null),
    );
    ok(
        json!({"fractional": [["a", 50], ["b", 50]]}),
        json!({"targetingKey": "user-1"}),
        json!("b"),
    );
    ok(
        json!({"fractional": [["a", 50], ["b", 50]]}),
        json!({}),
        json!(null),
    );
    ok(
        json!({"fractional": [["a", 50], ["b", 50]]}),
        json!({"targetingKey": ""}),
        json!(null),
    );
    ok(
        json!({"fractional": ["jon@company.com", ["a", 10], ["b", 90]]}),
        json!({}),
        json!("b"),
    );
    ok(
        json!({"fractional": [null, ["a", 10]]}),
        json!({}),
        json!(null),
    );
    // A literal weight like this is refused when the flag loads; one that
    // is computed can still come out wrong, and yields nothing, as in the
    // reference.
    ok(
        json!({"fractional": ["x", ["a", {"var": "w"}]]}),
        json!({"w": 1.5}),
        json!(null),
    );
    ok(
        json!({"fractional": ["x", ["a", {"var": "w"}], ["b", 0]]}),
        json!({"w": 3}),
        json!("a"),
    );
    ok(
        json!({"fractional": [{"var": "l"}, ["a", 1]]}),
        json!({"l": ["z", 1], "targetingKey": "k"}),
        json!("z"),
    );
    ok(json!({"fractional": []}), json!({}), json!(null));
    // Inside `map` the shorthand reads `targetingKey` from the item.
    ok(
        json!({"map": [[{"targetingKey": "user-1", "$flagd": {"flagKey": "f"}}], {"fractional": [["a", 50], ["b", 50]]}]}),
        json!({}),
        json!(["b"]),
    );
    check(
        json!({"map": [[1], {"fractional": [["a", 50]]}]}),
        json!({}),
        Err(()),
    );
}
