//! End to end: managing flags with `backout flag …`, directly on the file
//! and through a running server, with every change recorded.

#[path = "flags/support.rs"]
mod support;

use serde_json::{Value as Json, json};
use support::{Server, post};

fn flags() -> Json {
    json!({"flags": {
        "checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on",
            "metadata": {"owner": "payments"}},
        "search": {"state": "ENABLED", "variants": {"v1": "v1", "v2": "v2"}, "defaultVariant": "v1",
            "targeting": {"if": [{"==": [{"var": "beta"}, true]}, "v2"]}}
    }})
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_through_the_server_reaches_evaluations_and_is_recorded() {
    let server = Server::start(&flags(), &["tok"]);
    let eval = format!("{}/ofrep/v1/evaluate/flags/checkout", server.url);
    let auth = [("authorization", "Bearer tok")];
    assert_eq!(post(&eval, "{}", &auth).await.2["value"], json!(true));
    let (ok, stdout, stderr) = server.cli(&[
        "flag",
        "kill",
        "checkout",
        "--reason",
        "5xx spike in eu-west",
        "--server",
        &server.url,
        "--token",
        "tok",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("kill checkout (by test-operator)"),
        "{stdout}"
    );
    // Applied and served before the command returned: no waiting.
    let body = post(&eval, "{}", &auth).await.2;
    assert_eq!(body["reason"], json!("DISABLED"), "{body}");
    assert!(body.get("value").is_none());
    // The file holds the change, and the event log says who, why, before, after.
    let file: Json =
        serde_json::from_str(&std::fs::read_to_string(&server.file).expect("file")).expect("json");
    assert_eq!(file["flags"]["checkout"]["state"], json!("DISABLED"));
    let (ok, history, stderr) = server.cli(&[
        "flag",
        "history",
        "checkout",
        "--server",
        &server.url,
        "--token",
        "tok",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        history.contains("kill")
            && history.contains("test-operator")
            && history.contains("5xx spike in eu-west"),
        "{history}"
    );
    let log = std::fs::read_to_string(server.dir.path().join("flags.json.events.jsonl"))
        .expect("event log");
    let event: Json = serde_json::from_str(log.lines().next().expect("one event")).expect("json");
    assert_eq!(event["before"]["state"], json!("ENABLED"));
    assert_eq!(event["after"]["state"], json!("DISABLED"));
    // Revive brings it back.
    let (ok, _, stderr) = server.cli(&[
        "flag",
        "revive",
        "checkout",
        "--server",
        &server.url,
        "--token",
        "tok",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(post(&eval, "{}", &auth).await.2["value"], json!(true));
}

#[tokio::test(flavor = "multi_thread")]
async fn set_with_a_readable_rule() {
    let server = Server::start(&flags(), &[]);
    let rule = "country == jp and userAgent contains \"Mac OS\" => 5% on";
    let (ok, _, stderr) = server.cli(&[
        "flag",
        "set",
        "mac-jp",
        "--rule",
        rule,
        "--meta",
        "owner=growth",
        "--server",
        &server.url,
    ]);
    assert!(ok, "{stderr}");
    let eval = format!("{}/ofrep/v1/evaluate/flags/mac-jp", server.url);
    let mut on = 0;
    for i in 0..2000 {
        let ctx = json!({"context": {"targetingKey": format!("user-{i}"), "country": "jp", "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5)"}});
        if post(&eval, &ctx.to_string(), &[]).await.2["value"] == json!(true) {
            on += 1;
        }
    }
    // 5% of 2000 is 100; the split is deterministic, so this is a fixed count
    // that must sit near it.
    assert!(
        (60..=140).contains(&on),
        "{on} of 2000 matching users got `on`"
    );
    for ctx in [
        json!({"targetingKey": "user-1", "country": "us", "userAgent": "Mac OS X"}),
        json!({"targetingKey": "user-1", "country": "jp", "userAgent": "Windows NT"}),
    ] {
        let body = post(&eval, &json!({"context": ctx}).to_string(), &[])
            .await
            .2;
        assert_eq!(
            (&body["value"], &body["reason"]),
            (&json!(false), &json!("DEFAULT")),
            "{ctx}"
        );
    }
    // A rule that does not parse says where.
    let (ok, _, stderr) = server.cli(&[
        "flag",
        "set",
        "mac-jp",
        "--rule",
        "country jp => on",
        "--server",
        &server.url,
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("column 9") && stderr.contains("expected an operator after `country`"),
        "{stderr}"
    );
    // A definition that would break the flag is refused and nothing changes.
    let (ok, _, stderr) = server.cli(&[
        "flag",
        "set",
        "search",
        "--default",
        "nope",
        "--rule",
        "50% v3",
        "--server",
        &server.url,
    ]);
    assert!(
        !ok,
        "a split to an unknown variant is accepted by flagd's format, but the default must exist: {stderr}"
    );
}

#[test]
fn file_mode_list_set_delete_and_stale() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("flags.yaml");
    std::fs::write(
        &file,
        "flags:\n  checkout:\n    state: ENABLED\n    variants: {\"on\": true, \"off\": false}\n    defaultVariant: \"on\"\n    metadata: {owner: payments}\n",
    )
    .expect("write");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(support::BIN)
            .args(args)
            .env("USER", "dev")
            .output()
            .expect("run");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let f = file.to_str().expect("utf-8");
    let (ok, out, err) = run(&[
        "flag",
        "set",
        "beta",
        "--variant",
        "on=true",
        "--variant",
        "off=false",
        "--default",
        "off",
        "--rule",
        "10% on",
        "-f",
        f,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("create beta"), "{out}");
    let (ok, list, _) = run(&["flag", "list", "-f", f]);
    assert!(
        ok && list.contains("beta") && list.contains("checkout"),
        "{list}"
    );
    // The file stays YAML.
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(
        text.contains("beta:") && !text.trim_start().starts_with('{'),
        "{text}"
    );
    let (ok, out, _) = run(&[
        "flag",
        "eval",
        "beta",
        "-f",
        f,
        "--context",
        "{\"targetingKey\": \"user-3\"}",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("TARGETING_MATCH"), "{out}");
    // `checkout` serves `on` to everyone; with a zero-day threshold it is stale now.
    let (ok, stale, err) = run(&["flag", "stale", "--days", "0", "-f", f]);
    assert!(ok, "{err}");
    assert!(
        stale.contains("checkout")
            && stale.contains("serves `on` to everyone")
            && stale.contains("payments"),
        "{stale}"
    );
    let (ok, stale, _) = run(&["flag", "stale", "-f", f]);
    assert!(ok && stale.contains("no stale flags"), "{stale}");
    let (ok, _, err) = run(&["flag", "delete", "beta", "--reason", "shipped", "-f", f]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["flag", "delete", "beta", "-f", f]);
    assert!(!ok && err.contains("flag `beta` does not exist"), "{err}");
    let (ok, history, _) = run(&["flag", "history", "-f", f]);
    assert!(
        ok && history.contains("create")
            && history.contains("delete")
            && history.contains("shipped"),
        "{history}"
    );
}

/// `backout flag list | head -1`: the closed pipe ends the command quietly,
/// as it ends any Unix tool, instead of a panic on stderr.
#[test]
fn a_reader_that_stops_early_ends_the_listing_quietly() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.json");
    let many: serde_json::Map<String, Json> = (0..20_000)
        .map(|i| {
            (
                format!("flag-{i}"),
                json!({"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}),
            )
        })
        .collect();
    std::fs::write(&file, json!({ "flags": many }).to_string()).unwrap();
    let mut child = Command::new(support::BIN)
        .args(["flag", "list", "-f"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is gone: the rest of the listing has nowhere to go.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!first.is_empty());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        out.status.code() == Some(141) || out.status.signal().is_some(),
        "{:?} {stderr}",
        out.status
    );
}
