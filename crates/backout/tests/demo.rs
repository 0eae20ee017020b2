//! The README's first command, as a user runs it.

#![allow(clippy::unwrap_used)]

#[test]
fn the_demo_catches_the_bad_release_and_promotes_the_good_one() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_backout"))
        .args(["demo", "--rate", "150"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "v1 is stable and known good",
        "judge: rollback",
        "rolling back v2 → v1",
        "MTTR of the rollback (v2 → v1)",
        "v2: rolled back automatically",
        "v3: promoted to 100%",
        "stable now v3",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // Every stage of the MTTR clock was measured.
    for phase in ["detect", "decide", "act", "verify", "total"] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(phase))
            .unwrap();
        assert!(line.contains('s') && !line.contains(" - "), "{line}");
    }
}
