//! `backout check migrations|api` as a user runs it: the real binary over
//! the migration directories and contract pairs committed in
//! `crates/gates/tests/cases`, every output kept as a snapshot in
//! `snapshots/check__*.snap`. Each case is named for what it shows;
//! `expand-only` and `shop-additive` are the compatible twins of
//! `contract-too-early` and `shop-breaking`. A changed output fails the
//! test; `INSTA_UPDATE=always cargo test -p backout --test check` writes
//! the new outputs as the expected ones (review them with `git diff`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn cases() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../gates/tests/cases")
}

/// Runs the binary in the cases directory, so paths in its output are
/// relative and the same on every machine.
fn backout(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_backout"))
        .args(args)
        .current_dir(cases())
        .output()
        .expect("run backout");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn dirs(kind: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(cases().join(kind))
        .expect("cases")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn migrations() {
    let names = dirs("migrations");
    assert!(names.len() >= 8, "{names:?}");
    for name in names {
        let dir = format!("migrations/{name}");
        let dialect = if name.starts_with("mysql") {
            "mysql"
        } else {
            "postgres"
        };
        let (code, stdout, stderr) = backout(&["check", "migrations", &dir, "--dialect", dialect]);
        assert!(stderr.is_empty(), "{name}: {stderr}");
        // The exit status is the verdict's.
        let verdict = stdout.lines().last().unwrap_or_default().to_string();
        let want = match verdict.split_whitespace().nth(1) {
            Some("safe") => 0,
            Some("hygiene" | "risky") => 1,
            Some("unsafe") => 2,
            other => panic!("{name}: no verdict line: {other:?}"),
        };
        assert_eq!(code, want, "{name}: {verdict}");
        insta::assert_snapshot!(
            format!("migrations-{name}"),
            format!("exit {code}\n{stdout}")
        );
    }
}

/// The keys `-o json` promises, no more and no fewer.
fn keys(v: &serde_json::Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    k.sort();
    k
}

#[test]
fn every_migration_case_as_json_has_the_promised_shape() {
    for name in dirs("migrations") {
        let dir = format!("migrations/{name}");
        let dialect = if name.starts_with("mysql") {
            "mysql"
        } else {
            "postgres"
        };
        let (code, stdout, _) = backout(&[
            "check",
            "migrations",
            &dir,
            "--dialect",
            dialect,
            "-o",
            "json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
        assert_eq!(keys(&v), ["findings", "verdict"], "{name}");
        let (text_code, _, _) = backout(&["check", "migrations", &dir, "--dialect", dialect]);
        assert_eq!(code, text_code, "{name}");
        for f in v["findings"].as_array().expect("findings") {
            assert_eq!(
                keys(f),
                [
                    "class",
                    "column",
                    "file",
                    "line",
                    "message",
                    "rule",
                    "statement"
                ],
                "{name}: {f}"
            );
            assert!(f["line"].as_u64().is_some_and(|l| l >= 1), "{f}");
            assert!(f["column"].as_u64().is_some_and(|c| c >= 1), "{f}");
            assert!(
                ["unsafe", "risky", "hygiene"].contains(&f["class"].as_str().unwrap_or("")),
                "{f}"
            );
        }
    }
}

#[test]
fn migrations_as_json() {
    let (code, stdout, _) = backout(&[
        "check",
        "migrations",
        "migrations/contract-too-early",
        "-o",
        "json",
    ]);
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(v["verdict"], "unsafe");
    for f in v["findings"].as_array().expect("findings") {
        for key in [
            "file",
            "line",
            "column",
            "rule",
            "class",
            "message",
            "statement",
        ] {
            assert!(!f[key].is_null(), "{key} missing in {f}");
        }
    }
    insta::assert_json_snapshot!("migrations-contract-too-early-json", v);
}

#[test]
fn since_skips_migrations_that_have_run() {
    let (code, stdout, _) = backout(&[
        "check",
        "migrations",
        "migrations/contract-too-early",
        "--since",
        "0002",
    ]);
    assert_eq!(code, 2);
    assert!(!stdout.contains("0001_orders.sql"), "{stdout}");
    assert!(stdout.contains("0002_cleanup.sql"), "{stdout}");
}

#[test]
fn api_pairs() {
    for name in dirs("api") {
        let dir = cases().join("api").join(&name);
        let ext = if dir.join("old.json").exists() {
            "json"
        } else {
            "yaml"
        };
        let old = format!("api/{name}/old.{ext}");
        let new = format!("api/{name}/new.{ext}");
        let (code, stdout, stderr) = backout(&["check", "api", &old, &new]);
        assert!(stderr.is_empty(), "{name}: {stderr}");
        let (jcode, json, _) = backout(&["check", "api", &old, &new, "-o", "json"]);
        assert_eq!(code, jcode);
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        let want = match v["verdict"].as_str() {
            Some("safe") => 0,
            Some("hygiene" | "risky") => 1,
            Some("unsafe") => 2,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(code, want, "{name}");
        assert_eq!(keys(&v), ["changes", "verdict"], "{name}");
        for c in v["changes"].as_array().expect("changes") {
            assert_eq!(
                keys(c),
                ["class", "direction", "message", "pointer"],
                "{name}: {c}"
            );
            // A JSON pointer: empty (the whole document) or `/`-separated.
            let p = c["pointer"].as_str().expect("pointer");
            assert!(p.is_empty() || p.starts_with('/'), "{p}");
        }
        insta::assert_snapshot!(format!("api-{name}"), format!("exit {code}\n{stdout}"));
        insta::assert_json_snapshot!(format!("api-{name}-json"), v);
    }
}

#[test]
fn unreadable_input_is_an_error_that_says_where() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "openapi: 3.1.0\npaths:\n  /a: [\n").expect("write");
    let (code, _, stderr) = backout(&[
        "check",
        "api",
        "api/shop-breaking/old.yaml",
        broken.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("broken.yaml:"), "{stderr}");
    assert!(stderr.contains("not valid YAML"), "{stderr}");
    let (code, _, stderr) = backout(&["check", "migrations", "no/such/dir"]);
    assert_eq!(code, 3);
    assert!(stderr.contains("no/such/dir"), "{stderr}");
    let (code, _, stderr) = backout(&[
        "check",
        "migrations",
        "migrations/expand-only",
        "--dialect",
        "oracle",
    ]);
    // A usage mistake is "could not run", not 2, which means unsafe.
    assert_eq!(code, 3, "a usage error: {stderr}");
    assert!(stderr.contains("postgres or mysql"), "{stderr}");
    let (code, _, stderr) = backout(&["check", "migrations", "--no-such-flag", "x"]);
    assert_eq!(code, 3, "{stderr}");
    let (code, stdout, _) = backout(&["check", "migrations", "--help"]);
    assert_eq!(code, 0, "help is no error");
    assert!(stdout.contains("--dialect"), "{stdout}");
}
