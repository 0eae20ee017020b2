//! `backout proxy` as a real process: quick mode, bad flags and files,
//! bounded memory while gigabyte bodies stream through, graceful stop.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use backout_proxy::demo_app::{Control, DemoApp};
use bytes::Bytes;
use futures_util::StreamExt;

fn backout() -> Command {
    Command::new(env!("CARGO_BIN_EXE_backout"))
}

/// A running `backout proxy` and the addresses it printed.
struct Proc {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Proc {
    let mut child = backout()
        .args(["proxy", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr = None;
    let mut admin = None;
    while addr.is_none() || admin.is_none() {
        let line = lines
            .next()
            .expect("proxy exited before listening")
            .unwrap();
        let word = |after: &str| {
            line.split(after)
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .to_string()
        };
        if line.contains("data plane listening on") {
            addr = Some(word("listening on ").parse().unwrap());
        } else if line.contains("admin API on") {
            admin = Some(word("http://").parse().unwrap());
        }
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Proc {
        child,
        addr: addr.unwrap(),
        admin: admin.unwrap(),
    }
}

/// Peak resident memory of a process, in KiB (Linux).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn app(version: &str) -> DemoApp {
    DemoApp::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Control::new(version)),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_mode_splits_and_rolls_back() {
    let (v1, v2) = (app("v1").await, app("v2").await);
    let p = start(&[
        "--stable",
        &format!("http://{}", v1.addr),
        "--canary",
        &format!("http://{}", v2.addr),
        "--canary-weight",
        "50",
        "--version-header",
        "x-version",
    ]);
    let http = reqwest::Client::new();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..100 {
        let r = http
            .get(format!("http://{}/", p.addr))
            .send()
            .await
            .unwrap();
        seen.insert(r.headers()["x-version"].to_str().unwrap().to_string());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["canary", "stable"]);
    let r = http
        .post(format!(
            "http://{}/admin/v1/services/default/rollback",
            p.admin
        ))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..50 {
        let r = http
            .get(format!("http://{}/", p.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-version"], "stable");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_streams_each_way_in_bounded_memory() {
    let v1 = app("v1").await;
    let p = start(&["--stable", &format!("http://{}", v1.addr)]);
    let idle = peak_rss_kib(p.child.id());
    const GIB: u64 = 1 << 30;
    let http = reqwest::Client::new();

    // Upload: 1 GiB generated on the fly, counted by the upstream.
    let chunk = Bytes::from(vec![b'x'; 1 << 20]);
    let body =
        futures_util::stream::iter((0..1024).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let resp = http
        .post(format!("http://{}/sink", p.addr))
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap().trim(), GIB.to_string());

    // Download: 1 GiB produced by the upstream, counted here.
    let resp = http
        .get(format!("http://{}/bytes/{GIB}", p.addr))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        n += chunk.unwrap().len() as u64;
    }
    assert_eq!(n, GIB);

    let peak = peak_rss_kib(p.child.id());
    eprintln!("proxy peak RSS: idle {idle} KiB, after 2 GiB streamed {peak} KiB");
    assert!(
        peak < 128 * 1024,
        "peak RSS {peak} KiB: bodies are being buffered"
    );
}

fn run_err(args: &[&str]) -> (i32, String) {
    let out = backout().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_flags_and_files_name_what_is_wrong() {
    let (code, err) = run_err(&[
        "proxy",
        "--stable",
        "http://127.0.0.1:1",
        "--canary",
        "http://127.0.0.1:2",
        "--canary-weight",
        "120",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--canary-weight") && err.contains("between 0 and 100"),
        "{err}"
    );
    let (code, err) = run_err(&["proxy", "--stable", "ftp://x:1"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--stable") && err.contains("scheme `ftp`"),
        "{err}"
    );
    let (code, err) = run_err(&["proxy", "--stable", "http://127.0.0.1:1", "--sticky", "ip"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--sticky") && err.contains("header:NAME"),
        "{err}"
    );
    let (code, err) = run_err(&["proxy"]);
    assert_eq!(code, 2);
    assert!(err.contains("--stable"), "{err}");

    let dir = std::env::temp_dir().join(format!("backout-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("web.yaml");
    std::fs::write(&file, "name: web\npools:\n  v1:\n    endpoints: [http://127.0.0.1:1]\n    timeout: 5s\nroute: {stable: v1}\n").unwrap();
    let (code, err) = run_err(&["proxy", "-f", file.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("web.yaml:5:5"), "{err}");
    assert!(
        err.contains("pools.v1.timeout") && err.contains("unknown field"),
        "{err}"
    );
    let (code, err) = run_err(&["proxy", "-f", dir.join("missing.yaml").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("missing.yaml"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_cleanly() {
    let v1 = app("v1").await;
    let mut p = start(&["--stable", &format!("http://{}", v1.addr)]);
    let slow = tokio::spawn({
        let url = format!("http://{}/slow/700", p.addr);
        async move { reqwest::get(url).await.unwrap().status().as_u16() }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = p.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(slow.await.unwrap(), 200, "the in-flight request finished");
    let status = tokio::task::spawn_blocking(move || {
        let s = p.child.wait().unwrap();
        (s, p)
    })
    .await
    .unwrap()
    .0;
    assert!(status.success(), "{status:?}");
}
