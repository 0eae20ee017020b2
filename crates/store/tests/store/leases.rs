//! Leader leases and fencing, driven by small scripts, on both backends.
//!
//! `check(script, transcript)` runs `;`-separated operations against a
//! fresh store of each backend. Store objects are opened on the same data on
//! first mention, as separate processes would open them: `a`, `b`, `c`
//! campaign under their own names, `a2` under `a`'s (a restart of `a`).
//! Outputs are joined by ` | `:
//!
//! * `X campaign` (ttl 60 s) prints `leader TERM` or `follower HOLDER@TERM`
//!   (or `follower none`).
//! * `X append` appends one event; prints `ok` or `!Fenced T HOLDER@TERM`
//!   (T: the term the refused object last won; `none`: nobody leads).
//! * `X key K` appends one event with idempotency key K; prints `new`,
//!   `dup` or `!Fenced …`.
//! * `X writes` tries every kind of write (append, snapshot, create and
//!   revoke a token) and prints their outcomes, space-separated.
//! * `X resign` prints `ok`.
//! * `expire` moves the lease's expiry into the past, as if its holder had
//!   stopped renewing it for longer than its ttl (a virtual clock: the test
//!   does not sleep). Prints nothing.
//! * `leader` prints `HOLDER@TERM` or `none`.
//! * `count` prints the number of events, snapshots and tokens stored.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use backout_store::{Candidate, Leadership, LeaseInfo, NewEvent, Role, Store, StoreError};
use serde_json::json;

use crate::{Kind, TestStore, backends, variant};

const TTL: Duration = Duration::from_secs(60);

fn holder_of(object: &str) -> &str {
    object.trim_end_matches(|c: char| c.is_ascii_digit())
}

fn who(leader: &Option<LeaseInfo>) -> String {
    leader
        .as_ref()
        .map_or("none".to_owned(), |l| format!("{}@{}", l.holder, l.term))
}

fn outcome<T>(r: Result<T, StoreError>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(StoreError::Fenced { term, leader }) => format!("!Fenced {term} {}", who(&leader)),
        Err(e) => variant(&e),
    }
}

fn expire(t: &TestStore) {
    let sql = match t.kind {
        Kind::Sqlite => "UPDATE lease SET expires_at_ms = expires_at_ms - 3600000",
        Kind::Postgres => "UPDATE lease SET expires_at = expires_at - interval '1 hour'",
    };
    t.raw_execute(sql).unwrap();
}

fn run(t: &TestStore, script: &str) -> String {
    let mut objects: HashMap<String, Arc<dyn Store>> = HashMap::new();
    let mut out = Vec::new();
    for (n, op) in script.split(';').map(str::trim).enumerate() {
        let words: Vec<&str> = op.split_whitespace().collect();
        let mut object =
            |name: &str| Arc::clone(objects.entry(name.to_owned()).or_insert_with(|| t.reopen()));
        let printed = match words.as_slice() {
            [x, "campaign"] => {
                let holder = holder_of(x);
                let c = Candidate::new(holder, format!("http://{holder}"));
                match object(x).campaign(&c, TTL) {
                    Ok(Leadership::Leader { term }) => format!("leader {term}"),
                    Ok(Leadership::Follower { leader }) => format!("follower {}", who(&leader)),
                    Err(e) => variant(&e),
                }
            }
            [x, "append"] => outcome(object(x).append(vec![NewEvent::new(
                "web",
                "test.event",
                *x,
                n as i64,
                json!({"by": x}),
            )])),
            [x, "key", k] => match object(x).append(vec![
                NewEvent::new("web", "test.event", *x, 0, json!({})).with_key(*k),
            ]) {
                Ok(a) if a[0].duplicate => "dup".to_owned(),
                other => outcome(other).replace("ok", "new"),
            },
            [x, "writes"] => {
                let s = object(x);
                [
                    outcome(s.append(vec![NewEvent::new("web", "x", *x, 0, json!(1))])),
                    outcome(s.save_snapshot("web", 0, &json!({}))),
                    outcome(s.create_token(&format!("tok-{n}"), Role::Viewer, 0)),
                    outcome(s.revoke_token("standing")),
                ]
                .join(" ")
            }
            [x, "resign"] => outcome(object(x).resign(holder_of(x))),
            ["expire"] => {
                expire(t);
                String::new()
            }
            ["leader"] => who(&t.leader().unwrap()),
            ["count"] => format!(
                "{} {} {}",
                t.raw_i64("SELECT count(*) FROM events"),
                t.raw_i64("SELECT count(*) FROM snapshots"),
                t.raw_i64("SELECT count(*) FROM tokens"),
            ),
            _ => panic!("bad op {op:?}"),
        };
        out.push(printed);
    }
    out.join(" | ")
}

fn check(script: &str, expected: &str) {
    for t in backends() {
        assert_eq!(run(&t, script), expected, "{}: script: {script}", t.name());
    }
}

#[test]
fn campaigns_take_renew_and_follow() {
    check("leader", "none");
    check("a campaign; leader", "leader 1 | a@1");
    check(
        "a campaign; b campaign; leader",
        "leader 1 | follower a@1 | a@1",
    );
    // Renewing keeps the term.
    check(
        "a campaign; a campaign; b campaign; a campaign",
        "leader 1 | leader 1 | follower a@1 | leader 1",
    );
    // An expired lease goes to the next candidate, one term up, and the
    // old holder follows.
    check(
        "a campaign; expire; leader; b campaign; a campaign; leader",
        "leader 1 |  | none | leader 2 | follower b@2 | b@2",
    );
    // The old holder may take it back once it expires again.
    check(
        "a campaign; expire; b campaign; expire; a campaign",
        "leader 1 |  | leader 2 |  | leader 3",
    );
    // A leader whose lease expired but that nobody took renews it.
    check("a campaign; expire; a campaign", "leader 1 |  | leader 1");
}

#[test]
fn resigning_hands_over_at_once() {
    check(
        "a campaign; a resign; leader; b campaign",
        "leader 1 | ok | none | leader 2",
    );
    // Only the holder's own lease is released.
    check(
        "a campaign; b resign; leader; b campaign",
        "leader 1 | ok | a@1 | follower a@1",
    );
    // A resigned leader writes no more.
    check(
        "a campaign; a append; a resign; a append; count",
        "leader 1 | ok | ok | !Fenced 1 none | 1 0 0",
    );
}

/// The proof at store level: the first object wins term N, its
/// lease expires without renewal, the second wins N+1 and appends, and the
/// first's append then fails with `Fenced` and writes nothing.
#[test]
fn a_paused_leader_is_fenced_after_a_takeover() {
    check(
        "a campaign; a append; expire; b campaign; b append; a append; count",
        "leader 1 | ok |  | leader 2 | ok | !Fenced 1 b@2 | 2 0 0",
    );
    // It stays fenced even when the new leader resigns, until it wins again.
    check(
        "a campaign; expire; b campaign; a append; b resign; a append; a campaign; a append",
        "leader 1 |  | leader 2 | !Fenced 1 b@2 | ok | !Fenced 1 none | leader 3 | ok",
    );
    // Every kind of write is fenced, and none of them stored anything.
    check(
        "a campaign; expire; b campaign; a writes; count",
        "leader 1 |  | leader 2 | !Fenced 1 b@2 !Fenced 1 b@2 !Fenced 1 b@2 !Fenced 1 b@2 \
         | 0 0 0",
    );
    check(
        "a campaign; a writes; count",
        "leader 1 | ok ok ok ok | 1 1 1",
    );
}

#[test]
fn followers_do_not_write() {
    check(
        "a campaign; b campaign; b append; b writes; count",
        "leader 1 | follower a@1 | !Fenced 0 a@1 | !Fenced 0 a@1 !Fenced 0 a@1 !Fenced 0 a@1 \
         !Fenced 0 a@1 | 0 0 0",
    );
    // A store object that never campaigns is not fenced (a lone
    // `backout up`, the CLI writing a token locally).
    check("a campaign; c append; count", "leader 1 | ok | 1 0 0");
}

#[test]
fn a_restart_under_the_same_name_takes_over_at_once() {
    // `a2` is a new store object campaigning as `a`: the process restarted.
    check(
        "a campaign; a2 campaign; a append; a2 append; count",
        "leader 1 | leader 2 | !Fenced 1 a@2 | ok | 1 0 0",
    );
    // The old incarnation, if it still runs, follows and does not steal it
    // back while the new one renews.
    check(
        "a campaign; a2 campaign; a campaign; a2 campaign",
        "leader 1 | leader 2 | follower a@2 | leader 2",
    );
}

/// Expiry on the database's own clock: a short lease really expires, a
/// long one really holds. The sleep only has to be long enough; nothing
/// depends on how much longer it is.
#[test]
fn leases_expire_on_the_database_clock() {
    for t in backends() {
        let a = t.reopen();
        let b = t.reopen();
        let short = Duration::from_millis(50);
        let ca = Candidate::new("a", "http://a");
        let cb = Candidate::new("b", "http://b");
        assert_eq!(
            a.campaign(&ca, short).unwrap(),
            Leadership::Leader { term: 1 }
        );
        // Whatever is left of it is at most its ttl.
        if let Some(info) = t.leader().unwrap() {
            assert!(info.expires_in_ms <= 50, "{info:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(t.leader().unwrap(), None, "{}", t.name());
        assert_eq!(
            b.campaign(&cb, TTL).unwrap(),
            Leadership::Leader { term: 2 }
        );
        let info = t.leader().unwrap().unwrap();
        assert_eq!(
            (info.holder.as_str(), info.advertise.as_str(), info.term),
            ("b", "http://b", 2)
        );
        assert!(
            info.expires_in_ms > 50_000 && info.expires_in_ms <= 60_000,
            "{info:?}"
        );
        match a.campaign(&ca, short).unwrap() {
            Leadership::Follower { leader: Some(l) } => assert_eq!(l.term, 2),
            other => panic!("{other:?}"),
        }
    }
}

/// Many candidates campaigning at once: exactly one leads per term.
#[test]
fn one_leader_among_racing_candidates() {
    for t in backends() {
        let stores: Vec<Arc<dyn Store>> = (0..4).map(|_| t.reopen()).collect();
        let barrier = std::sync::Barrier::new(stores.len());
        let results: Vec<Leadership> = std::thread::scope(|s| {
            let handles: Vec<_> = stores
                .iter()
                .enumerate()
                .map(|(i, store)| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        let c = Candidate::new(format!("n{i}"), "");
                        store.campaign(&c, TTL).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let leaders: Vec<_> = results
            .iter()
            .filter(|r| matches!(r, Leadership::Leader { .. }))
            .collect();
        assert_eq!(leaders, [&Leadership::Leader { term: 1 }], "{}", t.name());
        // Only the leader's append goes through.
        let written: Vec<bool> = stores
            .iter()
            .map(|s| {
                s.append(vec![NewEvent::new("web", "x", "t", 0, json!(0))])
                    .is_ok()
            })
            .collect();
        assert_eq!(written.iter().filter(|w| **w).count(), 1);
        assert_eq!(t.last_seq().unwrap(), 1);
    }
}

#[test]
fn the_lease_row_only_moves_forward() {
    for t in backends() {
        let a = t.reopen();
        a.campaign(&Candidate::new("a", ""), TTL).unwrap();
        for sql in ["DELETE FROM lease", "UPDATE lease SET term = 0"] {
            let err = t.raw_execute(sql).unwrap_err();
            assert!(
                err.contains("the lease row is never deleted") || err.contains("never goes down"),
                "{}: {sql}: {err}",
                t.name()
            );
        }
        assert_eq!(t.leader().unwrap().unwrap().term, 1);
    }
}

#[test]
fn bad_campaigns_are_refused_before_any_io() {
    for t in backends() {
        let err = t.campaign(&Candidate::new("", "x"), TTL).unwrap_err();
        assert_eq!(variant(&err), "!InvalidValue");
        let err = t
            .campaign(&Candidate::new("a", "x"), Duration::ZERO)
            .unwrap_err();
        assert_eq!(variant(&err), "!InvalidValue");
        // Even a refused campaign fences the store: it meant to take part
        // in the election, so it writes only once it wins.
        let err = t
            .append(vec![NewEvent::new("web", "x", "t", 0, json!(0))])
            .unwrap_err();
        assert_eq!(variant(&err), "!Fenced");
        assert_eq!(t.leader().unwrap(), None);
        assert_eq!(t.last_seq().unwrap(), 0);
    }
}

/// A retried command that is already stored is answered from a read: a
/// fenced store may say "applied at seq N" (it writes nothing), but a new
/// command is refused.
#[test]
fn a_fenced_store_still_answers_retries_of_stored_commands() {
    check(
        "a campaign; a key k1; expire; b campaign; a key k1; a key k2; b key k2; count",
        "leader 1 | new |  | leader 2 | dup | !Fenced 1 b@2 | new | 2 0 0",
    );
}
