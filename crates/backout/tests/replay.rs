//! `backout analysis replay` as a user runs it: the real binary on the
//! committed traces in `tests/traces/` (written by `traces/generate.py`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn traces() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/traces")
}

/// Runs the binary; returns (exit code, stdout, stderr).
fn backout(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_backout"))
        .args(args)
        .output()
        .expect("run backout");
    // miette wraps long messages at 80 columns behind a "│" gutter; undo
    // that so assertions can look for whole phrases.
    let stderr = String::from_utf8_lossy(&out.stderr)
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

/// Rounds every number to 6 decimals: the snapshot is about the judge's
/// decisions, not the last bit of a float (which JSON parsers round-trip
/// differently depending on serde_json's `float_roundtrip` feature).
fn rounded(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => n
            .as_f64()
            .and_then(|f| serde_json::Number::from_f64((f * 1e6).round() / 1e6))
            .map_or(Value::Null, Value::Number),
        Value::Array(a) => Value::Array(a.into_iter().map(rounded).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, rounded(v))).collect()),
        other => other,
    }
}

/// The verdict transitions of a replay, then the last line in full.
fn summary(stdout: &str) -> String {
    let mut text = String::new();
    let mut previous = String::new();
    let mut last = serde_json::Value::Null;
    for line in stdout.lines() {
        let d: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        assert!(
            d["checks"].as_array().is_some_and(|c| !c.is_empty()),
            "no reasons: {line}"
        );
        let verdict = d["verdict"].as_str().unwrap_or_default().to_owned();
        if verdict != previous {
            text.push_str(&format!(
                "t={} {verdict}: {}\n",
                d["t"],
                d["reason"].as_str().unwrap_or_default()
            ));
            previous = verdict;
        }
        last = d;
    }
    text.push_str("\nlast line:\n");
    text.push_str(&serde_json::to_string_pretty(&rounded(last)).unwrap_or_default());
    text
}

fn check(trace: &str, config: Option<&str>) {
    let path = traces().join(format!("{trace}.jsonl"));
    let mut args = vec!["analysis", "replay", path.to_str().unwrap_or_default()];
    if let Some(c) = config {
        args.extend(["--config", c]);
    }
    let (code, stdout, stderr) = backout(&args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 180, "one verdict per tick");
    insta::assert_snapshot!(trace, summary(&stdout));
}

#[test]
fn replays_match_their_snapshots() {
    check("healthy", None);
    check("errors-5x-at-60s", None);
    check("latency-2x", None);
    check("shared-incident", None);
    check("low-traffic", None);
}

#[test]
fn a_config_file_changes_the_judgement() {
    // Latency is not judged here, so the 2x slower canary is not rolled back.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("spec.yaml");
    std::fs::write(
        &config,
        "name: web\nanalysis:\n  checks:\n    - kind: error_rate\n",
    )
    .expect("write");
    let path = traces().join("latency-2x.jsonl");
    let (code, stdout, stderr) = backout(&[
        "analysis",
        "replay",
        path.to_str().unwrap_or_default(),
        "--config",
        config.to_str().unwrap_or_default(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("\"rollback\""), "{stdout}");
}

#[test]
fn bad_input_is_rejected_with_its_location() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("bad.jsonl");
    std::fs::write(
        &trace,
        "{\"t\":1,\"baseline\":{\"requests\":1,\"errors\":0},\"canary\":{\"requests\":1,\"errors\":0}}\n{\"t\":2,\"baseline\":{\"requests\":1}}\n",
    )
    .expect("write");
    let (code, stdout, stderr) =
        backout(&["analysis", "replay", trace.to_str().unwrap_or_default()]);
    assert_eq!(code, 2);
    assert!(
        stdout.is_empty(),
        "nothing is judged from a bad trace: {stdout}"
    );
    assert!(stderr.contains("bad.jsonl:2:"), "{stderr}");
    assert!(stderr.contains("missing field `errors`"), "{stderr}");

    let config = dir.path().join("analysis.yaml");
    std::fs::write(
        &config,
        "alpha: 0.01\nchecks:\n  - kind: latency\n    tolerance: 20\n",
    )
    .expect("write");
    let good = traces().join("healthy.jsonl");
    let (code, _, stderr) = backout(&[
        "analysis",
        "replay",
        good.to_str().unwrap_or_default(),
        "--config",
        config.to_str().unwrap_or_default(),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("analysis.yaml:4:16"), "{stderr}");
    assert!(stderr.contains("checks[0].tolerance"), "{stderr}");
}

#[test]
fn simulate_is_deterministic_and_rejects_unknown_families() {
    let args = [
        "simulate",
        "--runs",
        "2",
        "--seed",
        "3",
        "--family",
        "errors-50x",
        "-o",
        "json",
    ];
    let (code, a, stderr) = backout(&args);
    assert_eq!(code, 0, "{stderr}");
    let (_, b, _) = backout(&args);
    assert_eq!(a, b);
    let doc: serde_json::Value = serde_json::from_str(&a).expect("json output");
    assert_eq!(doc["families"][0]["family"], "errors-50x");

    let (code, _, stderr) = backout(&["simulate", "--family", "errors-7x"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("no such scenario family") && stderr.contains("errors-50x"),
        "{stderr}"
    );
}
