//! Table tests: a change that must be found, and its compatible twin that
//! must not.

use super::*;

/// An OpenAPI 3.1 document with one operation, `POST /orders/{id}`, whose
/// request body and 200 response are the given schemas (YAML flow style).
fn api(version: &str, extra_params: &str, request: &str, response: &str) -> Document {
    let text = format!(
        r#"openapi: {version}
info: {{title: shop, version: "1"}}
paths:
  /orders/{{id}}:
    parameters:
      - {{name: id, in: path, required: true, schema: {{type: string}}}}
    post:
      parameters: [{extra_params}]
      requestBody:
        required: true
        content:
          application/json:
            schema: {request}
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {response}
components:
  schemas:
    Status: {{type: string, enum: [new, paid]}}
"#
    );
    Document::parse("api.yaml", &text).expect("test document parses")
}

fn diff(old: &Document, new: &Document) -> Vec<(String, Direction, Class)> {
    check(old, new)
        .changes
        .into_iter()
        .map(|c| (c.pointer, c.direction, c.class))
        .collect()
}

const OBJ: &str = "{type: object, properties: {item: {type: string}}, required: [item]}";

#[track_caller]
fn found(old: &Document, new: &Document, direction: Direction, class: Class) {
    let d = diff(old, new);
    assert!(
        d.iter().any(|(_, dir, c)| *dir == direction && *c == class),
        "expected {class} {direction}, got {d:#?}"
    );
}

#[track_caller]
fn clean(old: &Document, new: &Document) {
    let d = diff(old, new);
    assert!(d.is_empty(), "expected no change, got {d:#?}");
}

#[test]
fn identical_documents_are_safe() {
    let a = api("3.1.0", "", OBJ, OBJ);
    assert_eq!(check(&a, &a).verdict, Verdict::Safe);
}

#[test]
fn a_new_required_request_field_breaks_old_clients_and_an_optional_one_does_not() {
    let old = api("3.1.0", "", OBJ, OBJ);
    let new = api(
        "3.1.0",
        "",
        "{type: object, properties: {item: {type: string}, qty: {type: integer}}, required: [item, qty]}",
        OBJ,
    );
    found(&old, &new, Direction::OldClientsNewServer, Class::Unsafe);
    let twin = api(
        "3.1.0",
        "",
        "{type: object, properties: {item: {type: string}, qty: {type: integer, default: 1}}, required: [item]}",
        OBJ,
    );
    clean(&old, &twin);
}

#[test]
fn a_request_field_made_optional_breaks_new_clients_against_the_old_server() {
    let old = api("3.1.0", "", OBJ, OBJ);
    let new = api(
        "3.1.0",
        "",
        "{type: object, properties: {item: {type: string}}}",
        OBJ,
    );
    let d = diff(&old, &new);
    assert!(
        d.contains(&(
            "/paths/~1orders~1{id}/post/requestBody/content/application~1json/schema".into(),
            Direction::NewClientsOldServer,
            Class::Unsafe
        )),
        "{d:#?}"
    );
}

#[test]
fn a_response_field_removed_breaks_old_clients_and_a_new_optional_one_does_not() {
    let old = api("3.1.0", "", OBJ, OBJ);
    let new = api("3.1.0", "", OBJ, "{type: object, properties: {}}");
    found(&old, &new, Direction::OldClientsNewServer, Class::Unsafe);
    let twin = api(
        "3.1.0",
        "",
        OBJ,
        "{type: object, properties: {item: {type: string}, note: {type: string}}, required: [item]}",
    );
    clean(&old, &twin);
}

#[test]
fn a_new_required_response_field_breaks_new_clients_after_a_rollback() {
    let old = api("3.1.0", "", OBJ, OBJ);
    let new = api(
        "3.1.0",
        "",
        OBJ,
        "{type: object, properties: {item: {type: string}, eta: {type: string}}, required: [item, eta]}",
    );
    found(&old, &new, Direction::NewClientsOldServer, Class::Unsafe);
}

#[test]
fn a_new_enum_value_in_a_response_is_risky_and_in_a_request_unsafe() {
    let status = |values: &str| {
        format!("{{type: object, properties: {{status: {{type: string, enum: [{values}]}}}}}}")
    };
    let old = api("3.1.0", "", &status("new, paid"), &status("new, paid"));
    let response = api(
        "3.1.0",
        "",
        &status("new, paid"),
        &status("new, paid, refunded"),
    );
    assert_eq!(check(&old, &response).verdict, Verdict::Risky);
    found(
        &old,
        &response,
        Direction::OldClientsNewServer,
        Class::Risky,
    );
    let request = api(
        "3.1.0",
        "",
        &status("new, paid, refunded"),
        &status("new, paid"),
    );
    found(
        &old,
        &request,
        Direction::NewClientsOldServer,
        Class::Unsafe,
    );
}

#[test]
fn a_type_change_breaks_both_ways_and_integer_to_number_only_one() {
    let t = |ty: &str| format!("{{type: object, properties: {{qty: {{type: {ty}}}}}}}");
    let old = api("3.1.0", "", &t("integer"), &t("integer"));
    let new = api("3.1.0", "", &t("string"), &t("string"));
    found(&old, &new, Direction::OldClientsNewServer, Class::Unsafe);
    found(&old, &new, Direction::NewClientsOldServer, Class::Unsafe);
    // A request field widened from integer to number: old clients' integers
    // are numbers, but new clients' fractions are refused by the old server.
    let wider = api("3.1.0", "", &t("number"), &t("integer"));
    let d = diff(&old, &wider);
    assert!(
        d.iter()
            .all(|(_, dir, _)| *dir == Direction::NewClientsOldServer),
        "{d:#?}"
    );
    assert!(!d.is_empty());
}

#[test]
fn nullable_in_openapi_30_and_type_null_in_31_are_the_same() {
    let old30 = api(
        "3.0.3",
        "",
        OBJ,
        "{type: object, properties: {item: {type: string}}}",
    );
    let new30 = api(
        "3.0.3",
        "",
        OBJ,
        "{type: object, properties: {item: {type: string, nullable: true}}}",
    );
    found(
        &old30,
        &new30,
        Direction::OldClientsNewServer,
        Class::Unsafe,
    );
    let old31 = api(
        "3.1.0",
        "",
        OBJ,
        "{type: object, properties: {item: {type: string}}}",
    );
    let new31 = api(
        "3.1.0",
        "",
        OBJ,
        "{type: object, properties: {item: {type: [string, \"null\"]}}}",
    );
    found(
        &old31,
        &new31,
        Direction::OldClientsNewServer,
        Class::Unsafe,
    );
}

#[test]
fn refs_are_followed_and_reported_where_the_schema_is() {
    let old = api("3.1.0", "", OBJ, "{$ref: '#/components/schemas/Status'}");
    let mut root = old.root.clone();
    root["components"]["schemas"]["Status"]["enum"] = serde_json::json!(["new", "paid", "lost"]);
    let text = serde_json::to_string(&root).expect("json");
    let new = Document::parse("api.json", &text).expect("parses");
    let d = diff(&old, &new);
    assert!(
        d.contains(&(
            "/components/schemas/Status".into(),
            Direction::OldClientsNewServer,
            Class::Risky
        )),
        "{d:#?}"
    );
}

#[test]
fn removed_operations_and_required_parameters() {
    let old = api("3.1.0", "", OBJ, OBJ);
    let mut gone = old.root.clone();
    gone["paths"] = serde_json::json!({});
    let gone = Document::parse("api.json", &gone.to_string()).expect("parses");
    found(&old, &gone, Direction::OldClientsNewServer, Class::Unsafe);
    // ... and the reverse: a new operation old servers do not have.
    found(&gone, &old, Direction::NewClientsOldServer, Class::Risky);
    let param = api(
        "3.1.0",
        "{name: dry_run, in: query, required: true, schema: {type: boolean}}",
        OBJ,
        OBJ,
    );
    found(&old, &param, Direction::OldClientsNewServer, Class::Unsafe);
    let optional = api(
        "3.1.0",
        "{name: dry_run, in: query, schema: {type: boolean}}",
        OBJ,
        OBJ,
    );
    clean(&old, &optional);
}

#[test]
fn path_parameter_names_do_not_matter() {
    let old = api("3.1.0", "", OBJ, OBJ);
    let text = serde_json::to_string(&old.root)
        .expect("json")
        .replace("{id}", "{orderId}")
        .replace("\"name\":\"id\"", "\"name\":\"orderId\"");
    let renamed = Document::parse("api.json", &text).expect("parses");
    // The operation is the same; only the parameter's name changed, which
    // clients do not send.
    clean(&old, &renamed);
}

#[test]
fn closed_objects_refuse_new_fields() {
    let old = api(
        "3.1.0",
        "",
        "{type: object, additionalProperties: false, properties: {item: {type: string}}}",
        OBJ,
    );
    let new = api(
        "3.1.0",
        "",
        "{type: object, additionalProperties: false, properties: {item: {type: string}, gift: {type: boolean}}}",
        OBJ,
    );
    found(&old, &new, Direction::NewClientsOldServer, Class::Unsafe);
}

#[test]
fn alternatives_that_changed_are_not_understood() {
    let old = api(
        "3.1.0",
        "",
        "{oneOf: [{type: string}, {type: integer}]}",
        OBJ,
    );
    let new = api("3.1.0", "", "{oneOf: [{type: string}]}", OBJ);
    let report = check(&old, &new);
    assert!(
        report
            .changes
            .iter()
            .any(|c| c.message.starts_with("not understood")),
        "{report:#?}"
    );
}

#[test]
fn message_schemas_need_full_compatibility() {
    let schema = |s: &str| Document::parse("m.json", s).expect("parses");
    let old = schema(
        r#"{"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}"#,
    );
    let added_required = schema(
        r#"{"type": "object", "properties": {"id": {"type": "string"}, "at": {"type": "string"}}, "required": ["id", "at"]}"#,
    );
    found(
        &old,
        &added_required,
        Direction::NewConsumersOldMessages,
        Class::Unsafe,
    );
    let added_optional = schema(
        r#"{"type": "object", "properties": {"id": {"type": "string"}, "at": {"type": "string"}}, "required": ["id"]}"#,
    );
    clean(&old, &added_optional);
    let dropped = schema(r#"{"type": "object", "properties": {}}"#);
    found(
        &old,
        &dropped,
        Direction::OldConsumersNewMessages,
        Class::Unsafe,
    );
}

#[test]
fn unreadable_documents_say_where() {
    let e =
        Document::parse("api.yaml", "openapi: 3.1.0\npaths:\n  /a: [\n").expect_err("broken YAML");
    assert_eq!(e.name, "api.yaml");
    assert!(e.line >= 3, "{e}");
    let e = Document::parse("api.json", "{\n  \"openapi\": 3.1.0,\n}").expect_err("broken JSON");
    assert_eq!(e.line, 2, "{e}");
    let e = Document::parse("api.yaml", "swagger: '2.0'\n").expect_err("swagger");
    assert!(e.message.contains("Swagger 2.0"), "{e}");
}

#[test]
fn an_api_compared_with_a_message_schema_is_refused() {
    let a = api("3.1.0", "", OBJ, OBJ);
    let m = Document::parse("m.json", r#"{"type": "object"}"#).expect("parses");
    assert_eq!(check(&a, &m).verdict, Verdict::Unsafe);
}

#[test]
fn a_tighter_limit_in_a_request_breaks_the_clients_that_write_beyond_it() {
    let t = |max: u32| {
        format!("{{type: object, properties: {{note: {{type: string, maxLength: {max}}}}}}}")
    };
    let old = api("3.1.0", "", &t(200), OBJ);
    let tighter = api("3.1.0", "", &t(50), OBJ);
    found(
        &old,
        &tighter,
        Direction::OldClientsNewServer,
        Class::Unsafe,
    );
    // Loosening is the other direction's problem: N's clients may now
    // write what N-1's server refuses.
    let looser = api("3.1.0", "", &t(500), OBJ);
    let d = diff(&old, &looser);
    assert!(
        d.iter()
            .all(|(_, dir, _)| *dir == Direction::NewClientsOldServer),
        "{d:#?}"
    );
    // In a response a tolerant client does not enforce limits.
    let resp = |max: u32| {
        format!("{{type: object, properties: {{note: {{type: string, maxLength: {max}}}}}}}")
    };
    clean(
        &api("3.1.0", "", OBJ, &resp(200)),
        &api("3.1.0", "", OBJ, &resp(500)),
    );
}
