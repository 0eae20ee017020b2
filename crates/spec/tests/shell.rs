//! Command strings rendered with hostile release values and run by a real
//! `sh`: what the process receives is exactly the values, and nothing in
//! them runs.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use backout_spec::CommandSpec;
use backout_spec::driver::{TemplateScope, TemplateVars};
use proptest::prelude::*;

/// Renders `text` with `artifact` and `config` and runs it in `dir`;
/// returns its standard output.
fn run(dir: &Path, text: &str, artifact: &str, config: &BTreeMap<String, String>) -> Vec<u8> {
    let cmd = CommandSpec::parse(text, TemplateScope::Replica).unwrap();
    let argv = cmd
        .render(&TemplateVars {
            service: "web",
            version: "v1",
            replica: Some(0),
            port: Some(8080),
            artifact: Some(artifact),
            config,
        })
        .unwrap();
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{argv:?}: {out:?}");
    out.stdout
}

#[test]
fn the_attack_from_the_issue_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let attack = "x; id > pwned; true";
    let config = BTreeMap::from([("name".to_string(), "$(id > pwned2)".to_string())]);
    // A string that needs a shell, with the value outside quotes and
    // inside both kinds of quotes.
    let shell = run(
        dir.path(),
        "echo {artifact} > artifact.txt; printf '%s|' \"{config.name}\" '{artifact}' {artifact}",
        attack,
        &config,
    );
    assert_eq!(
        String::from_utf8(shell).unwrap(),
        format!("$(id > pwned2)|{attack}|{attack}|")
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("artifact.txt")).unwrap(),
        format!("{attack}\n")
    );
    // The demo's form, which needs no shell: the value is one argument.
    let words = run(dir.path(), "printf '%s|' {artifact}", attack, &config);
    assert_eq!(String::from_utf8(words).unwrap(), format!("{attack}|"));
    for f in ["pwned", "pwned2"] {
        assert!(!dir.path().join(f).exists(), "{f} was written");
    }
}

fn value() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(";".to_string()),
        Just("'".to_string()),
        Just("\"".to_string()),
        Just("$(touch pwned)".to_string()),
        Just("`touch pwned`".to_string()),
        Just(" ".to_string()),
        Just("\n".to_string()),
        Just("\\".to_string()),
        Just("${1}".to_string()),
        Just("*".to_string()),
        // Any character but NUL, which no argument can carry.
        any::<char>()
            .prop_filter("no NUL", |c| *c != '\0')
            .prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the values, the shell prints each one back whole.
    #[test]
    fn the_shell_receives_values_as_data(artifact in value(), a in value()) {
        let dir = tempfile::tempdir().unwrap();
        let config = BTreeMap::from([("a".to_string(), a.clone())]);
        let text = "true && printf '%s\\0' {artifact} \"x{config.a}y\" 'q{artifact}q'";
        let out = run(dir.path(), text, &artifact, &config);
        let want = format!("{artifact}\0x{a}y\0q{artifact}q\0");
        prop_assert_eq!(String::from_utf8_lossy(&out), want);
        prop_assert!(!dir.path().join("pwned").exists());
    }
}
