//! The data plane outlives the control plane: real `backout proxy
//! --control-plane` processes following a real `backout up --no-proxy`,
//! real load through every proxy, the control plane and proxies killed
//! with SIGKILL.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod harness;

use std::time::{Duration, Instant};

use harness::{Edge, Load, Up, free_port, http_get, no_rollout, spec, stable};
use serde_json::Value as Json;

/// Tokens with the `proxy` role, one per proxy.
fn proxy_token(up: &Up, name: &str) -> String {
    up.ok(&["token", "create", name, "--role", "proxy"])
        .trim()
        .to_string()
}

fn connected(s: &Json) -> Vec<&Json> {
    s["proxy"]["proxies"]
        .as_array()
        .map(|a| a.iter().filter(|p| p["connected"] == true).collect())
        .unwrap_or_default()
}

/// Every one of `n` proxies is connected and serves the newest snapshot.
fn all_serve(s: &Json, n: usize) -> bool {
    let generation = s["proxy"]["generation"].as_u64().unwrap_or(0);
    let c = connected(s);
    generation > 0
        && c.len() == n
        && c.iter()
            .all(|p| p["generation"].as_u64() == Some(generation))
}

/// The route a proxy serves, from its own admin API.
fn edge_route(e: &Edge) -> Json {
    let (status, body) = http_get(e.admin_port, "/admin/v1/services/shop/route").unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn start_fleet(steps: &str) -> (Up, Vec<Edge>) {
    let up = Up::start_with(&spec(free_port(), steps, ""), 0, &[], &["--no-proxy"]);
    let edges: Vec<Edge> = (1..=3)
        .map(|i| {
            let name = format!("edge-{i}");
            let token = proxy_token(&up, &name);
            Edge::start(&up.dir, &name, &[&up.api], &token)
        })
        .collect();
    up.first_release("v1");
    up.wait_for("three proxies serving v1", 30, |s| all_serve(s, 3));
    for e in &edges {
        e.wait_ready("serving shop", 10, |r| r["services"]["shop"].is_object());
    }
    (up, edges)
}

#[test]
fn the_proxies_serve_on_while_the_control_plane_is_killed() {
    let (mut up, mut edges) = start_fleet("[{set_weight: 20}, approve]");
    let mut loads: Vec<Load> = edges.iter().map(|e| Load::start(e.port)).collect();
    std::thread::sleep(Duration::from_secs(2));

    up.kill();
    let down = Instant::now();
    for e in &edges {
        e.wait_ready("noticing the control plane is gone", 10, |r| {
            r["control_plane_connected"] == false && r["serving"] == true
        });
    }

    // A proxy killed and started again while the control plane is down
    // serves from its state file at once.
    let restarted = loads.remove(1);
    let (sent, failed, _) = restarted.counts();
    drop(restarted);
    assert_eq!(
        failed, 0,
        "edge-2 before its restart: {failed} of {sent} failed"
    );
    edges[1].kill();
    edges[1].launch();
    let r = edges[1].wait_ready("serving from its state file", 5, |r| r["serving"] == true);
    assert_eq!(r["control_plane_connected"], false, "{r:#}");
    assert_eq!(r["services"]["shop"]["from_state_file"], true, "{r:#}");
    let (status, body) = http_get(edges[1].port, "/").unwrap();
    assert_eq!(status, 200, "the restarted proxy's first request: {body}");
    loads.insert(1, Load::start(edges[1].port));

    let outage = Duration::from_secs(10);
    std::thread::sleep(outage.saturating_sub(down.elapsed()));
    up.launch();
    let s = up.wait_for("every proxy back", 30, |s| all_serve(s, 3));
    assert_eq!(stable(&s), Some("v1"));

    // The fleet follows the control plane again: a rollout reaches every
    // proxy.
    up.release("v2", "--latency 1ms");
    let s = up.wait_for("v2 at 20% on every proxy", 60, |s| {
        s["state"]["rollout"]["step"] == 1
            && s["proxy"]["route"]["canary_weight"] == 20.0
            && all_serve(s, 3)
    });
    for e in &edges {
        let route = edge_route(e);
        assert_eq!(route["route"]["canary"], "v2", "{}: {route:#}", e.name);
        assert_eq!(route["route"]["canary_weight"], 20.0, "{}", e.name);
        assert_eq!(
            route["generation"], s["proxy"]["generation"],
            "{} serves the newest generation",
            e.name
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    for (e, load) in edges.iter().zip(loads) {
        let (sent, failed, _) = load.counts();
        drop(load);
        assert!(sent > 100, "{}: only {sent} requests", e.name);
        assert_eq!(
            failed,
            0,
            "{}: {failed} of {sent} requests failed\n{}",
            e.name,
            e.log()
        );
    }
}

#[test]
fn a_thousand_route_changes_reach_every_proxy_under_load() {
    let (up, edges) = start_fleet("[{set_weight: 10}, approve]");
    up.release("v2", "--latency 1ms");
    up.wait_for("v2 at its approve gate on every proxy", 60, |s| {
        s["state"]["rollout"]["step"] == 1 && all_serve(s, 3)
    });
    let loads: Vec<Load> = edges.iter().map(|e| Load::start(e.port)).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/services/shop/actions", up.api);
    let mut last = 0.0;
    for i in 0..1000u32 {
        // Consecutive weights always differ, so each is a route change.
        let weight = f64::from(1 + i % 90);
        let resp = rt
            .block_on(
                client
                    .post(&url)
                    .bearer_auth(&up.token)
                    .json(&serde_json::json!({"command": "set_weight", "weight": weight, "reason": "fleet test"}))
                    .send(),
            )
            .unwrap();
        let status = resp.status();
        let body = rt.block_on(resp.text()).unwrap();
        assert!(status.is_success(), "change {i}: {status} {body}");
        last = weight;
    }
    let s = up.wait_for("every proxy on the last generation", 30, |s| {
        all_serve(s, 3) && s["proxy"]["route"]["canary_weight"] == last
    });
    let generation = &s["proxy"]["generation"];
    for e in &edges {
        let route = edge_route(e);
        assert_eq!(&route["generation"], generation, "{}", e.name);
        assert_eq!(route["route"]["canary_weight"], last, "{}", e.name);
    }
    // Every change is in the log, each served by all three proxies.
    let events = up.events();
    let applied: Vec<&Json> = events
        .iter()
        .filter(|e| e["kind"] == "fleet.applied")
        .collect();
    assert!(
        applied.len() >= 1000,
        "{} route changes applied",
        applied.len()
    );
    assert!(
        applied
            .iter()
            .all(|e| e["body"]["served_by"].as_array().map(Vec::len) == Some(3)),
        "a route change was not served by every proxy"
    );
    for (e, load) in edges.iter().zip(loads) {
        let (sent, failed, _) = load.counts();
        drop(load);
        assert!(sent > 100, "{}: only {sent} requests", e.name);
        assert_eq!(
            failed,
            0,
            "{}: {failed} of {sent} failed\n{}",
            e.name,
            e.log()
        );
    }
}

#[test]
fn a_restarted_control_plane_with_its_embedded_proxy_answers_no_503() {
    let port = free_port();
    let mut up = Up::start(&spec(port, "[{set_weight: 50}, approve]", ""), port);
    up.first_release("v1");
    let load = Load::start(port);
    std::thread::sleep(Duration::from_secs(1));
    let (_, _, errors) = load.counts();
    assert_eq!(errors, 0, "5xx before the crash");
    for _ in 0..3 {
        up.kill();
        std::thread::sleep(Duration::from_millis(500));
        up.launch();
        std::thread::sleep(Duration::from_secs(2));
    }
    let (sent, failed, errors) = load.counts();
    drop(load);
    // Connections refused while no process listens are the crash's; once
    // the new process listens, it serves the recovered route at once.
    assert_eq!(
        errors,
        0,
        "{errors} 5xx answers across restarts ({failed} failures of {sent} in all)\n{}",
        up.log()
    );
    let s = up.status();
    assert!(stable(&s) == Some("v1") && no_rollout(&s));
}
