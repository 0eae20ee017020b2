//! Arbitrary events read back exactly as they were appended, on both
//! backends: any Unicode but NUL in the strings (NUL is refused, see
//! `event_log::nul_characters_are_refused_whole`), any JSON body (NUL
//! included), floats to the last bit.

use backout_store::NewEvent;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

use crate::{TestStore, backends};

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        ".*".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(".*", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Any text but NUL.
const TEXT: &str = "[^\\x00]*";
const NONEMPTY: &str = "[^\\x00]+";

fn event() -> impl Strategy<Value = NewEvent> {
    (
        TEXT,
        NONEMPTY,
        TEXT,
        proptest::option::of(TEXT),
        proptest::option::of(NONEMPTY),
        any::<i64>(),
        json(),
    )
        .prop_map(
            |(service, kind, actor, reason, idempotency_key, at_ms, body)| NewEvent {
                service,
                kind,
                actor,
                reason,
                idempotency_key,
                at_ms,
                body,
            },
        )
}

#[test]
fn events_round_trip() {
    for store in backends() {
        events_round_trip_in(&store);
    }
}

fn events_round_trip_in(store: &TestStore) {
    let mut runner = TestRunner::new(Config {
        cases: 128,
        ..Config::default()
    });
    let case = std::cell::Cell::new(0u64);
    runner
        .run(&vec(event(), 1..4), |mut batch| {
            // Keys are unique across the log: make this case's keys its own.
            case.set(case.get() + 1);
            for (i, e) in batch.iter_mut().enumerate() {
                if let Some(k) = &mut e.idempotency_key {
                    *k = format!("{}.{i}:{k}", case.get());
                }
            }
            let before = store.last_seq().unwrap();
            let appended = store.append(batch.clone()).unwrap();
            let read = store.read(before, usize::MAX).unwrap();
            prop_assert_eq!(read.len(), batch.len());
            for ((sent, got), acked) in batch.iter().zip(&read).zip(&appended) {
                prop_assert_eq!(&acked.event, got);
                prop_assert_eq!(&got.service, &sent.service);
                prop_assert_eq!(&got.kind, &sent.kind);
                prop_assert_eq!(&got.actor, &sent.actor);
                prop_assert_eq!(&got.reason, &sent.reason);
                prop_assert_eq!(&got.idempotency_key, &sent.idempotency_key);
                prop_assert_eq!(got.at_ms, sent.at_ms);
                prop_assert_eq!(&got.body, &sent.body);
                // Equal as JSON text too: `==` on numbers would let 1.0
                // read back as 1.
                prop_assert_eq!(got.body.to_string(), sent.body.to_string());
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn snapshot_bodies_round_trip() {
    for store in backends() {
        snapshot_bodies_round_trip_in(&store);
    }
}

fn snapshot_bodies_round_trip_in(store: &TestStore) {
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    runner
        .run(&(TEXT, json()), |(service, body)| {
            store.save_snapshot(&service, 0, &body).unwrap();
            let got = store.latest_snapshot(&service).unwrap().unwrap();
            prop_assert_eq!(got.body.to_string(), body.to_string());
            prop_assert_eq!(&got.service, &service);
            Ok(())
        })
        .unwrap();
}
