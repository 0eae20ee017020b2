//! Webhook notifications and the audited switch for automatic rollback,
//! against a real `backout up`.

#![allow(clippy::unwrap_used)]

mod harness;

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

use harness::{Up, free_port, no_rollout, spec};
use serde_json::Value as Json;

/// A webhook receiver on loopback: collects every JSON body POSTed to it.
fn receiver() -> (u16, Arc<Mutex<Vec<Json>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&got);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            if let Ok(v) = serde_json::from_slice(&body) {
                sink.lock().unwrap().push(v);
            }
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
        }
    });
    (port, got)
}

#[test]
fn rollbacks_are_announced_and_turning_automation_off_is_audited() {
    let (hook, got) = receiver();
    let port = free_port();
    let extra = format!(
        "notifications:\n  - {{webhook: \"http://127.0.0.1:{hook}/hook\", events: [rollback, promoted]}}\n"
    );
    let up = Up::start(&spec(port, "[{set_weight: 50}, {pause: {}}]", &extra), port);
    up.first_release("v1");
    up.release("v2", "--latency 1ms");
    up.wait_for("v2 at the pause", 30, |s| {
        s["state"]["rollout"]["step"] == 1
    });
    up.ok(&["rollback", "shop", "--reason", "pager went off"]);
    up.wait_for("v2 gone", 30, no_rollout);
    up.wait_for("the webhook called", 20, |_| {
        got.lock().unwrap().iter().any(|b| b["kind"] == "rollback")
    });
    let bodies = got.lock().unwrap().clone();
    // Only the kinds asked for, each with service, message and time.
    assert!(
        bodies
            .iter()
            .all(|b| b["kind"] == "rollback" || b["kind"] == "promoted"),
        "{bodies:#?}"
    );
    let rb = bodies.iter().find(|b| b["kind"] == "rollback").unwrap();
    assert_eq!(rb["service"], "shop");
    assert!(
        rb["message"].as_str().unwrap().contains("pager went off"),
        "{rb}"
    );
    assert!(rb["at_ms"].is_i64());
    assert!(bodies.iter().any(|b| b["kind"] == "promoted"));

    // Automatic rollback off: only with a reason and an expiry, audited.
    let out = up.cli(&["auto-rollback", "shop", "--off"]);
    assert!(!out.status.success());
    up.ok(&[
        "auto-rollback",
        "shop",
        "--off",
        "--for",
        "1h",
        "--reason",
        "load test",
    ]);
    let s = up.status();
    let ar = &s["state"]["auto_rollback"];
    assert_eq!(ar["enabled"], false);
    assert_eq!(ar["changed_by"], "admin");
    assert_eq!(ar["reason"], "load test");
    assert!(ar["until_ms"].as_i64().unwrap() > 0);
    assert!(
        up.ok(&["status", "shop"])
            .contains("automatic rollback OFF")
    );
    up.ok(&["auto-rollback", "shop", "--on"]);
    assert_eq!(up.status()["state"]["auto_rollback"]["enabled"], true);
    let events = up.events();
    let switches: Vec<&Json> = events
        .iter()
        .filter(|e| e["kind"] == "input.set_auto_rollback")
        .collect();
    assert_eq!(switches.len(), 2);
    assert_eq!(switches[0]["reason"], "load test");
}
