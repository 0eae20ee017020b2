//! Attacks on a real `backout up`, tried as an attacker would try them.

#![allow(clippy::unwrap_used)]

mod harness;
#[path = "flags/support.rs"]
mod support;

use harness::{BIN, Up, free_port, no_rollout, spec, stable};
use serde_json::json;

/// One request with raw headers: (status, body).
fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new().request(method.parse().unwrap(), url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if !body.is_empty() {
            req = req.body(body.to_string());
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    })
}

/// The value of one sample in Prometheus text.
fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

/// The attack: an operator registers a release whose artifact is
/// shell code. The command needs a shell (`&&`, `>`), so it runs under
/// `sh -c`, and the artifact still arrives as one value.
#[test]
fn a_release_artifact_is_never_run_as_shell_code() {
    let port = free_port();
    let text = spec(port, "[{set_weight: 50}]", "").replace(
        &format!("'{BIN}' demo-app --port {{port}} --version {{version}} --behaviour {{artifact}}"),
        &format!(
            "echo {{artifact}} > artifact-{{version}}.txt && exec '{BIN}' demo-app --port {{port}} --version {{version}}"
        ),
    );
    assert!(text.contains("artifact-{version}.txt"), "{text}");
    let up = Up::start(&text, port);
    let attack = "x; id > pwned; true";
    up.ok(&["release", "shop", "--version", "v1", "--artifact", attack]);
    up.wait_for("v1 stable", 30, |s| {
        stable(s) == Some("v1") && no_rollout(s)
    });
    let seen = std::fs::read_to_string(up.dir.join("artifact-v1.txt")).unwrap();
    assert_eq!(seen, format!("{attack}\n"));
    assert!(!up.dir.join("pwned").exists(), "the artifact ran");
}

/// Wrong credentials of every kind are refused, logged without the secret
/// and counted; the scheme `Bearer` is accepted in any case.
#[test]
fn failed_logins_are_logged_without_the_token_and_counted() {
    let port = free_port();
    let up = Up::start(&spec(port, "[{set_weight: 50}]", ""), port);
    let viewer = up.ok(&["token", "create", "watcher", "--role", "viewer"]);
    let viewer = viewer.trim();
    let tokens = format!("{}/api/v1/tokens", up.api);
    let guess = "guessed-0123456789abcdef";
    for (headers, status) in [
        (vec![], 401),
        (vec![("authorization", "Basic YWRtaW46YWRtaW4=")], 401),
        (
            vec![("authorization", format!("Bearer {guess}").as_str())],
            401,
        ),
        (vec![("x-api-key", guess)], 401),
        (
            vec![("authorization", format!("Bearer {viewer}").as_str())],
            403,
        ),
    ] {
        let (got, body) = request("GET", &tokens, &headers, "");
        assert_eq!(got, status, "{headers:?}: {body}");
        assert!(body.contains("\"error\""), "{body}");
    }
    let admin = format!("BEARER {}", up.token);
    let (got, body) = request("GET", &tokens, &[("authorization", &admin)], "");
    assert_eq!(got, 200, "{body}");
    let (_, metrics) = request(
        "GET",
        &format!("{}/metrics", up.api),
        &[("authorization", &admin)],
        "",
    );
    for (reason, n) in [
        ("missing", 1.0),
        ("malformed", 1.0),
        ("unknown", 2.0),
        ("forbidden", 1.0),
    ] {
        let name = format!("backout_auth_failures_total{{listener=\"api\",reason=\"{reason}\"}}");
        assert_eq!(sample(&metrics, &name), Some(n), "{name} in:\n{metrics}");
    }
    let log = up.log();
    assert_eq!(log.matches("authentication failed").count(), 5, "{log}");
    let forbidden = log
        .lines()
        .find(|l| l.contains("authentication failed") && l.contains("forbidden"))
        .unwrap_or_else(|| panic!("no refusal for the viewer in:\n{log}"));
    assert!(
        forbidden.contains("watcher"),
        "the token's name: {forbidden}"
    );
    assert!(
        !log.contains(guess) && !log.contains(viewer),
        "a secret is in the log:\n{log}"
    );
}

/// The standalone flag server counts refused attempts too, and takes the
/// scheme in any case.
#[tokio::test]
async fn the_flag_server_counts_refused_attempts() {
    let flags = json!({"flags": {"f": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}}});
    let server = support::Server::start(&flags, &["s3cret"]);
    let url = format!("{}/ofrep/v1/evaluate/flags/f", server.url);
    let (status, _, _) = support::post(&url, "{}", &[("authorization", "Bearer nope")]).await;
    assert_eq!(status, 403);
    let (status, _, _) = support::post(&url, "{}", &[]).await;
    assert_eq!(status, 401);
    let (status, _, body) = support::post(&url, "{}", &[("authorization", "BEARER s3cret")]).await;
    assert_eq!(status, 200, "{body}");
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", server.url))
        .header("x-api-key", "s3cret")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (reason, n) in [("missing", 1.0), ("unknown", 1.0)] {
        let name = format!("backout_auth_failures_total{{listener=\"flags\",reason=\"{reason}\"}}");
        assert_eq!(sample(&metrics, &name), Some(n), "{name} in:\n{metrics}");
    }
}

/// `--help` never prints a secret that is set in the environment.
#[test]
fn help_hides_secrets_from_the_environment() {
    for args in [
        &["flag", "list", "--help"][..],
        &["status", "--help"],
        &["flags", "serve", "--help"],
    ] {
        let out = std::process::Command::new(BIN)
            .args(args)
            .env("BACKOUT_FLAGS_TOKEN", "supersecret")
            .env("BACKOUT_TOKEN", "supersecret")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("env: BACKOUT_"),
            "{args:?}: {text}"
        );
        assert!(
            !text.contains("supersecret"),
            "{args:?} shows the secret:\n{text}"
        );
    }
}
