//! Architecture invariants that a refactor could break silently.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

/// Crates that must stay pure: values in, values out, no runtime, no sockets.
const PURE: &[&str] = &[
    "backout-routing",
    "backout-spec",
    "backout-judge",
    "backout-flags",
    "backout-sim",
    "backout-gates",
    "backout-rollout",
    "backout-fleet",
];

/// Packages whose presence means I/O or an async runtime.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "hyper",
    "hyper-util",
    "axum",
    "reqwest",
    "mio",
    "socket2",
    "tower",
];

#[test]
fn pure_crates_have_no_runtime_or_socket_dependencies() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Only this machine's platform: the whole graph would need packages
    // for other platforms (Windows console crates) that a fresh machine
    // never downloaded, and `--offline` cannot fetch them.
    let rustc = Command::new("rustc").arg("-vV").output().unwrap();
    let rustc = String::from_utf8_lossy(&rustc.stdout).into_owned();
    let host = rustc
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host");
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: HashMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    // Normal (non-dev, non-build) dependency edges of the resolved graph.
    let mut edges: HashMap<&str, Vec<&str>> = HashMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let id = node["id"].as_str().unwrap();
        let deps = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| d["pkg"].as_str().unwrap())
            .collect();
        edges.insert(id, deps);
    }
    for pure in PURE {
        let Some((root, _)) = names.iter().find(|(_, n)| *n == pure) else {
            panic!("{pure} is not in the workspace");
        };
        let mut seen = BTreeSet::new();
        let mut stack = vec![*root];
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let name = names[id];
            assert!(
                !FORBIDDEN.contains(&name),
                "{pure} depends (transitively) on {name}"
            );
            stack.extend(edges.get(id).into_iter().flatten().copied());
        }
    }
}
