//! Attacks on a real `backout up`, tried as an attacker would try them.

#![allow(clippy::unwrap_used)]

mod harness;

use harness::{BIN, Up, free_port, no_rollout, spec, stable};

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
