//! API tokens, driven by small scripts.
//!
//! `check(script, transcript)` runs `;`-separated operations against a
//! fresh store of each backend; their outputs are joined by ` | `:
//!
//! * `create NAME ROLE` creates a token and remembers its secret as NAME's
//!   latest; prints `ok` or `!Variant`.
//! * `verify NAME` verifies NAME's latest secret; `verify-old NAME` the one
//!   before it; `verify-raw TEXT` any text. Prints `name:role@created`, or
//!   `none`.
//! * `list` prints `name:role` for every token.
//! * `revoke NAME` prints `true`, `false` or `!Variant`.

use std::collections::HashMap;

use backout_store::{Role, TokenInfo};

use crate::{TestStore, backends, variant};

fn show(info: Option<TokenInfo>) -> String {
    info.map_or("none".to_owned(), |t| {
        format!("{}:{}@{}", t.name, t.role, t.created_at_ms)
    })
}

fn check(script: &str, expected: &str) {
    for store in backends() {
        assert_eq!(
            run(&store, script),
            expected,
            "{}: script: {script}",
            store.name()
        );
    }
}

fn run(store: &TestStore, script: &str) -> String {
    let mut secrets: HashMap<String, Vec<String>> = HashMap::new();
    let mut out = Vec::new();
    for (clock, op) in script.split(';').map(str::trim).enumerate() {
        let words: Vec<&str> = op.split_whitespace().collect();
        let printed = match words.as_slice() {
            ["create", name, role] => {
                let role: Role = role.parse().unwrap();
                match store.create_token(name, role, clock as i64) {
                    Ok(secret) => {
                        secrets.entry((*name).to_owned()).or_default().push(secret);
                        "ok".to_owned()
                    }
                    Err(e) => variant(&e),
                }
            }
            ["verify", name] => show(store.verify_token(secrets[*name].last().unwrap()).unwrap()),
            ["verify-old", name] => {
                let all = &secrets[*name];
                show(store.verify_token(&all[all.len() - 2]).unwrap())
            }
            ["verify-raw", text] => show(store.verify_token(text).unwrap()),
            ["list"] => {
                let shown: Vec<String> = store
                    .list_tokens()
                    .unwrap()
                    .iter()
                    .map(|t| format!("{}:{}", t.name, t.role))
                    .collect();
                shown.join(" ")
            }
            ["revoke", name] => match store.revoke_token(name) {
                Ok(revoked) => revoked.to_string(),
                Err(e) => variant(&e),
            },
            _ => panic!("bad op {op:?}"),
        };
        out.push(printed);
    }
    out.join(" | ")
}

#[test]
fn create_and_verify() {
    check("list", "");
    check("create ci operator; verify ci", "ok | ci:operator@0");
    check(
        "create a viewer; create b admin; verify a; verify b",
        "ok | ok | a:viewer@0 | b:admin@1",
    );
    check("create ci operator; list", "ok | ci:operator");
    check(
        "create zed viewer; create amy admin; list",
        "ok | ok | amy:admin zed:viewer",
    );
}

#[test]
fn unknown_and_malformed_secrets_verify_to_nothing() {
    check("create ci operator; verify-raw nope", "ok | none");
    check(
        "verify-raw bo_0000000000000000000000000000000000000000000000000000000000000000",
        "none",
    );
    check("verify-raw bo_", "none");
    check("verify-raw ''", "none");
}

#[test]
fn names_are_unique_and_plain() {
    check(
        "create ci operator; create ci admin; list",
        "ok | !TokenExists | ci:operator",
    );
    check(
        "create ci operator; create ci admin; verify ci",
        "ok | !TokenExists | ci:operator@0",
    );
    check("create a/b viewer", "!InvalidTokenName");
    check("create a\u{7f} viewer", "!InvalidTokenName");
}

#[test]
fn revoking() {
    check("revoke ci", "false");
    check(
        "create ci operator; revoke ci; verify ci; list",
        "ok | true | none | ",
    );
    check(
        "create ci operator; revoke ci; revoke ci",
        "ok | true | false",
    );
    // A name is free again after revoking; the old secret stays dead.
    check(
        "create ci operator; revoke ci; create ci admin; verify ci; verify-old ci",
        "ok | true | ok | ci:admin@2 | none",
    );
}

#[test]
fn the_last_admin_token_stays() {
    check(
        "create root admin; revoke root; list",
        "ok | !LastAdmin | root:admin",
    );
    check(
        "create root admin; create ci operator; revoke root; verify root",
        "ok | ok | !LastAdmin | root:admin@0",
    );
    // With a second admin either may go, but not both.
    check(
        "create a admin; create b admin; revoke a; revoke b; list",
        "ok | ok | true | !LastAdmin | b:admin",
    );
    // Other roles never count as admins, and may all go.
    check(
        "create a admin; create p proxy; create o operator; revoke p; revoke o; revoke a",
        "ok | ok | ok | true | true | !LastAdmin",
    );
    // A store without admins (tokens made by hand) can still lose the rest.
    check("create v viewer; revoke v; list", "ok | true | ");
    let store = TestStore::sqlite();
    store.create_token("root", Role::Admin, 0).unwrap();
    let err = store.revoke_token("root").unwrap_err().to_string();
    assert_eq!(
        err,
        "token \"root\" is the last admin token; revoking it would lock every admin out. \
         Create another admin token first (`backout token create NAME --role admin`), then \
         revoke this one"
    );
}

/// Two admins revoking each other at the same moment: one wins, one admin
/// is left, whatever the interleaving (the count and the delete share a
/// transaction).
#[test]
fn racing_revocations_leave_an_admin() {
    for t in backends() {
        for _ in 0..10 {
            t.raw_execute("DELETE FROM tokens").unwrap();
            t.create_token("a", Role::Admin, 0).unwrap();
            t.create_token("b", Role::Admin, 0).unwrap();
            // Two store objects, as two processes would have.
            let stores = [t.reopen(), t.reopen()];
            let barrier = std::sync::Barrier::new(2);
            let mut results: Vec<String> = std::thread::scope(|s| {
                let handles: Vec<_> = stores
                    .iter()
                    .zip(["a", "b"])
                    .map(|(store, name)| {
                        let barrier = &barrier;
                        s.spawn(move || {
                            barrier.wait();
                            match store.revoke_token(name) {
                                Ok(r) => r.to_string(),
                                Err(e) => variant(&e),
                            }
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            results.sort();
            assert_eq!(results, ["!LastAdmin", "true"], "{}", t.name());
            assert_eq!(t.list_tokens().unwrap().len(), 1);
        }
    }
}

#[test]
fn proxy_tokens() {
    check(
        "create edge-1 proxy; verify edge-1; list",
        "ok | edge-1:proxy@0 | edge-1:proxy",
    );
}

#[test]
fn only_a_hash_is_stored() {
    for t in backends() {
        let secret = t.create_token("ci", Role::Admin, 5).unwrap();
        let hex = &secret.as_bytes()[3..];
        match &t.place.place {
            crate::support::Place::Sqlite { path, .. } => {
                let raw = std::fs::read(path).unwrap();
                let wal = std::fs::read(path.with_extension("db-wal")).unwrap_or_default();
                for bytes in [&raw, &wal] {
                    assert!(
                        !bytes.windows(hex.len()).any(|w| w == hex),
                        "the secret is in the file"
                    );
                }
            }
            crate::support::Place::Postgres { .. } => {
                // No column of any row holds the secret, and the stored
                // hash is its SHA-256.
                let found = t.raw_i64(&format!(
                    "SELECT count(*) FROM tokens t WHERE t::text LIKE '%{}%' \
                       OR encode(t.secret_sha256, 'escape') LIKE '%{}%'",
                    std::str::from_utf8(hex).unwrap(),
                    std::str::from_utf8(hex).unwrap()
                ));
                assert_eq!(found, 0, "the secret is in the database");
                let matches = t.raw_i64(&format!(
                    "SELECT count(*) FROM tokens WHERE secret_sha256 = sha256('{secret}'::bytea)"
                ));
                assert_eq!(matches, 1);
            }
        }
    }
}
