//! API tokens, driven by small scripts.
//!
//! `check(script, transcript)` runs `;`-separated operations against a
//! fresh store; their outputs are joined by ` | `:
//!
//! * `create NAME ROLE` creates a token and remembers its secret as NAME's
//!   latest; prints `ok` or `!Variant`.
//! * `verify NAME` verifies NAME's latest secret; `verify-old NAME` the one
//!   before it; `verify-raw TEXT` any text. Prints `name:role@created`, or
//!   `none`.
//! * `list` prints `name:role` for every token.
//! * `revoke NAME` prints `true`, `false` or `!Variant`.

use std::collections::HashMap;

use backout_store::{Role, TokenInfo, Tokens};

use crate::{temp_store, variant};

fn show(info: Option<TokenInfo>) -> String {
    info.map_or("none".to_owned(), |t| {
        format!("{}:{}@{}", t.name, t.role, t.created_at_ms)
    })
}

fn check(script: &str, expected: &str) {
    let (_dir, store) = temp_store();
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
    assert_eq!(out.join(" | "), expected, "script: {script}");
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
    let (_dir, store) = temp_store();
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
    for _ in 0..20 {
        let (dir, store) = temp_store();
        store.create_token("a", Role::Admin, 0).unwrap();
        store.create_token("b", Role::Admin, 0).unwrap();
        drop(store);
        let path = dir.path().join("data/backout.db");
        let results: Vec<String> = ["a", "b"]
            .map(|name| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let store = backout_store::SqliteStore::open(path).unwrap();
                    match store.revoke_token(name) {
                        Ok(r) => r.to_string(),
                        Err(e) => variant(&e),
                    }
                })
            })
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let mut sorted = results.clone();
        sorted.sort();
        assert_eq!(sorted, ["!LastAdmin", "true"]);
        let store = backout_store::SqliteStore::open(&path).unwrap();
        assert_eq!(store.list_tokens().unwrap().len(), 1);
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
    let (dir, store) = temp_store();
    let secret = store.create_token("ci", Role::Admin, 5).unwrap();
    drop(store);
    let raw = std::fs::read(dir.path().join("data/backout.db")).unwrap();
    let wal = std::fs::read(dir.path().join("data/backout.db-wal")).unwrap_or_default();
    let hex = &secret.as_bytes()[3..];
    for bytes in [&raw, &wal] {
        assert!(
            !bytes.windows(hex.len()).any(|w| w == hex),
            "the secret is in the file"
        );
    }
}
