//! Shared by the `flags_*` end-to-end tests: a real `backout flags serve`
//! process on a loopback port, over a flag file in a temporary directory.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value as Json;

pub const BIN: &str = env!("CARGO_BIN_EXE_backout");

/// A running flag server; killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
}

impl Server {
    pub fn start(flags: &Json, tokens: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("flags.json");
        std::fs::write(&file, serde_json::to_string_pretty(flags).expect("json"))
            .expect("write flags");
        let mut cmd = Command::new(BIN);
        cmd.args(["flags", "serve", "-f"])
            .arg(&file)
            .args(["--listen", "127.0.0.1:0"]);
        for t in tokens {
            cmd.args(["--token", t]);
        }
        cmd.env_remove("BACKOUT_FLAGS_TOKEN")
            .env("RUST_LOG", "warn")
            .stderr(Stdio::piped())
            .stdout(Stdio::null());
        let mut child = cmd.spawn().expect("spawn backout flags serve");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("server exited before listening")
                .expect("read stderr");
            if let Some(rest) = line.split("on http://").nth(1) {
                break format!(
                    "http://{}",
                    rest.split_whitespace().next().expect("address")
                );
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            url,
            dir,
            file,
        }
    }

    pub fn write_flags(&self, flags: &Json) {
        write_atomically(
            &self.file,
            &serde_json::to_string_pretty(flags).expect("json"),
        );
    }

    /// Runs `backout ARGS…`, returning (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(BIN)
            .args(args)
            .env("USER", "test-operator")
            .output()
            .expect("run backout");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// POSTs JSON and returns (status, headers, body).
pub async fn post(
    url: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Json) {
    let client = reqwest::Client::new();
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Json::Null),
    )
}

pub async fn get_text(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.expect("request");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

/// Polls `check` every 20 ms for up to 10 s (for effects that travel through
/// a file watcher); panics with `what` if it never holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}

/// An external tool the test needs: its path from the environment, or
/// `None` (with the reason printed) outside `scripts/test`.
pub fn external(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("BACKOUT_TEST_STRICT").is_ok_and(|s| s == "1") => {
            panic!("{var} is not set: {what} is required under scripts/test")
        }
        _ => {
            eprintln!("skipping: {var} is not set ({what}); run scripts/test to install it");
            None
        }
    }
}
