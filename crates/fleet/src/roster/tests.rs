use std::collections::BTreeMap;

use super::*;
use crate::message::EndpointReport;

fn hello(name: &str, have: u64) -> Hello {
    Hello {
        protocol: crate::PROTOCOL,
        name: name.into(),
        services: vec![],
        have: BTreeMap::from([("shop".to_string(), have)]),
        listen: vec![],
    }
}

fn join(r: &mut Roster, session: u64, name: &str, now: i64) {
    r.join(
        session,
        &hello(name, 0),
        "127.0.0.1:1",
        &["shop".into()],
        now,
    );
}

fn ack(r: &mut Roster, session: u64, generation: u64, now: i64) {
    r.receive(
        session,
        &FromProxy::Ack {
            service: "shop".into(),
            generation,
        },
        now,
    );
}

fn url(port: u16) -> EndpointUrl {
    EndpointUrl::parse(&format!("http://127.0.0.1:{port}")).expect("url")
}

/// A report of pool `v1` whose endpoints are given as `A` (available),
/// `u` (up but not ready) or `d` (dead), with `windows` as
/// `(start_ms, requests, errors)`.
fn report(
    proxy_now: u64,
    breaker: BreakerState,
    endpoints: &str,
    windows: &[(u64, u64, u64)],
) -> FromProxy {
    FromProxy::Report(Report {
        service: "shop".into(),
        generation: 1,
        now_ms: proxy_now,
        canary_fallback: false,
        pools: vec![PoolReport {
            version: "v1".into(),
            breaker,
            endpoints: endpoints
                .chars()
                .enumerate()
                .map(|(i, c)| EndpointReport {
                    url: url(9000 + i as u16),
                    available: c == 'A',
                    live: c != 'd',
                    startup_failed: false,
                })
                .collect(),
            in_flight: 0,
            windows: windows
                .iter()
                .map(|&(start, requests, errors)| WindowView {
                    requests,
                    errors,
                    ..WindowView::empty(start)
                })
                .collect(),
        }],
    })
}

fn progress(r: &Roster, generation: u64) -> String {
    let p = r.progress("shop", generation);
    format!(
        "acked {:?} pending {:?} nacked {:?} last {:?}",
        p.acked, p.pending, p.nacked, p.last_ack_ms
    )
}

#[test]
fn a_generation_is_done_when_every_connected_proxy_serves_it() {
    let mut r = Roster::default();
    join(&mut r, 1, "a", 0);
    join(&mut r, 2, "b", 0);
    ack(&mut r, 1, 5, 10);
    assert_eq!(
        progress(&r, 5),
        r#"acked ["a"] pending ["b"] nacked [] last Some(10)"#
    );
    r.receive(
        2,
        &FromProxy::Nack {
            service: "shop".into(),
            generation: 5,
            reason: "bad route".into(),
        },
        11,
    );
    assert_eq!(
        progress(&r, 5),
        r#"acked ["a"] pending [] nacked [("b", "bad route")] last Some(10)"#
    );
    assert!(!r.progress("shop", 5).complete());
    // A later generation acknowledged covers the earlier one.
    ack(&mut r, 2, 6, 20);
    assert_eq!(
        progress(&r, 5),
        r#"acked ["a", "b"] pending [] nacked [] last Some(20)"#
    );
    assert!(r.progress("shop", 5).complete());
    // A proxy that left is not waited for.
    r.leave(2, 30);
    assert_eq!(
        progress(&r, 6),
        r#"acked [] pending ["a"] nacked [] last None"#
    );
    assert_eq!(r.followers("shop"), 1);
    assert!(r.progress("web", 1).complete(), "nobody follows web");
}

#[test]
fn a_proxy_that_reconnects_replaces_its_old_connection() {
    let mut r = Roster::default();
    join(&mut r, 1, "a", 0);
    join(&mut r, 2, "a", 5);
    ack(&mut r, 1, 9, 6);
    assert_eq!(
        progress(&r, 9),
        r#"acked [] pending ["a"] nacked [] last None"#,
        "the old connection is not heard"
    );
    r.leave(1, 7);
    assert_eq!(
        r.followers("shop"),
        1,
        "the old connection's end does not disconnect the new one"
    );
    ack(&mut r, 2, 9, 8);
    assert!(r.progress("shop", 9).complete());
    let m = r.members("shop");
    assert_eq!((m.len(), m[0].generation, m[0].connected), (1, 9, true));
}

#[test]
fn a_pool_is_as_ready_as_the_proxy_that_sees_least() {
    let mut r = Roster::default();
    join(&mut r, 1, "a", 0);
    join(&mut r, 2, "b", 0);
    assert_eq!(r.pool("shop", "v1", 0), None, "nobody reported yet");
    r.receive(1, &report(0, BreakerState::Closed, "AAA", &[]), 0);
    r.receive(2, &report(0, BreakerState::Closed, "AuA", &[]), 0);
    let h = r.pool("shop", "v1", 100).expect("reported");
    assert_eq!(
        (h.ready, h.total, h.breaker_open, h.reporters),
        (2, 3, false, 2)
    );
    // An open breaker makes the pool unready on that proxy.
    r.receive(2, &report(0, BreakerState::Open, "AAA", &[]), 200);
    assert_eq!(
        r.pool("shop", "v1", 300).map(|h| (h.ready, h.breaker_open)),
        Some((0, true))
    );
    // Reports too old to describe the proxy do not count.
    r.receive(1, &report(0, BreakerState::Closed, "AAA", &[]), 5_000);
    let h = r.pool("shop", "v1", 5_100).expect("a's report is fresh");
    assert_eq!((h.ready, h.reporters), (3, 1));
    assert_eq!(r.pool("shop", "v1", 5_000 + STALE_MS + 1), None);
}

#[test]
fn an_endpoint_is_dead_only_if_every_proxy_finds_it_so() {
    let mut r = Roster::default();
    join(&mut r, 1, "a", 0);
    join(&mut r, 2, "b", 0);
    r.receive(1, &report(0, BreakerState::Closed, "Ad", &[]), 0);
    r.receive(2, &report(0, BreakerState::Closed, "AA", &[]), 0);
    let e = |port| r.endpoint("shop", "v1", &url(port), 10).expect("listed");
    assert_eq!((e(9000).available, e(9000).dead), (true, false));
    assert_eq!(
        (e(9001).available, e(9001).dead),
        (false, false),
        "b still reaches it"
    );
    r.receive(2, &report(0, BreakerState::Closed, "Ad", &[]), 20);
    assert!(
        r.endpoint("shop", "v1", &url(9001), 30)
            .expect("listed")
            .dead
    );
    assert_eq!(r.endpoint("shop", "v1", &url(9999), 30), None);
}

#[test]
fn windows_add_up_across_proxies_on_the_control_planes_clock() {
    let mut r = Roster::default();
    join(&mut r, 1, "a", 0);
    join(&mut r, 2, "b", 0);
    // a's clock agrees with ours; b's is 5 s behind, so its window that
    // started at 95 000 on its clock is our second 100 000.
    r.receive(
        1,
        &report(101_200, BreakerState::Closed, "A", &[(100_000, 10, 1)]),
        101_200,
    );
    r.receive(
        2,
        &report(96_200, BreakerState::Closed, "A", &[(95_000, 5, 2)]),
        101_210,
    );
    // A window sent again after a reconnect counts once.
    r.receive(
        2,
        &report(
            96_400,
            BreakerState::Closed,
            "A",
            &[(95_000, 5, 2), (96_000, 1, 0)],
        ),
        101_400,
    );
    let w = r.windows("shop", 100_000, 102_000);
    let v1: Vec<(u64, u64, u64)> = w["v1"]
        .iter()
        .map(|w| (w.start_ms, w.requests, w.errors))
        .collect();
    assert_eq!(v1, vec![(100_000, 15, 3), (101_000, 1, 0)]);
    assert!(
        r.windows("shop", 0, 100_000).is_empty() || r.windows("shop", 0, 100_000)["v1"].is_empty()
    );
    assert_eq!(r.members("shop")[1].clock_skew_ms, 5_000);
}

#[test]
fn old_windows_and_long_gone_proxies_are_forgotten() {
    let mut r = Roster::default();
    join(&mut r, 1, "a", 0);
    join(&mut r, 2, "b", 0);
    r.receive(
        1,
        &report(1_000, BreakerState::Closed, "A", &[(0, 1, 0)]),
        1_000,
    );
    r.leave(2, 1_000);
    r.prune(KEEP_WINDOWS_MS + 1);
    assert!(r.windows("shop", 0, i64::MAX).is_empty());
    assert_eq!(
        r.members("shop").len(),
        2,
        "b is still listed, as disconnected"
    );
    r.prune(FORGET_MS + 2_000);
    let names: Vec<String> = r.members("shop").into_iter().map(|m| m.name).collect();
    assert_eq!(names, vec!["a"]);
}
