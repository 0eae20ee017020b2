//! Starting demo upstreams and a proxy in front of them, and a few client
//! helpers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use backout_proxy::demo_app::{Control, DemoApp};
use backout_proxy::{ProxyConfig, RunningProxy};
use backout_spec::{ServiceSpec, Source};

pub const LOCAL: &str = "127.0.0.1:0";

pub fn local() -> SocketAddr {
    LOCAL.parse().unwrap()
}

/// A proxy with demo apps behind it.
pub struct Harness {
    pub proxy: RunningProxy,
    /// Data-plane address.
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// Demo apps by the placeholder name used in the YAML (`$v1` → "v1").
    pub apps: HashMap<String, DemoApp>,
    pub http: reqwest::Client,
}

impl Harness {
    /// `yaml` is a service file whose endpoints may name demo apps as
    /// `$app`; each distinct `$app` gets its own demo app, which reports the
    /// part of the name before any `-` as its version (`$v2-b` is a second
    /// endpoint of version v2).
    pub async fn start(yaml: &str) -> Harness {
        Self::start_many(&[yaml]).await
    }

    pub async fn start_many(yamls: &[&str]) -> Harness {
        Self::start_with(yamls, |_, _| {}).await
    }

    /// Like `start_many`, letting `setup` configure each demo app (by
    /// placeholder name) before the proxy starts probing it.
    pub async fn start_with(yamls: &[&str], setup: impl Fn(&str, &Control)) -> Harness {
        let mut apps: HashMap<String, DemoApp> = HashMap::new();
        let mut texts = Vec::new();
        for yaml in yamls {
            // Replace each `$name` with the URL of a demo app of that name.
            let mut text = String::new();
            let mut rest = *yaml;
            while let Some(at) = rest.find('$') {
                text.push_str(&rest[..at]);
                let tail = &rest[at + 1..];
                let len = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                    .unwrap_or(tail.len());
                let name = &tail[..len];
                if !apps.contains_key(name) {
                    let version = name.split('-').next().unwrap();
                    let control = Arc::new(Control::new(version));
                    setup(name, &control);
                    let app = DemoApp::start(local(), control).await.unwrap();
                    apps.insert(name.to_string(), app);
                }
                text.push_str(&format!("http://{}", apps[name].addr));
                rest = &tail[len..];
            }
            text.push_str(rest);
            texts.push(text);
        }
        let services = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                ServiceSpec::parse(&Source::new(format!("svc{i}.yaml"), t.clone()))
                    .unwrap_or_else(|e| panic!("{e}\n{t}"))
            })
            .collect();
        let proxy = RunningProxy::start(ProxyConfig {
            services,
            default_listen: Some(local()),
            admin: Some(local()),
            admin_listener: Default::default(),
            drain_timeout: Duration::from_secs(5),
            workers: 2,
            ..Default::default()
        })
        .await
        .unwrap();
        let addr = proxy.bound(local()).expect("default listener");
        let admin = proxy.admin.unwrap();
        Harness {
            proxy,
            addr,
            admin,
            apps,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
        }
    }

    pub fn app(&self, name: &str) -> &Arc<Control> {
        &self.apps[name].control
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// GET through the proxy: (status, version header or "", body).
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
        let mut req = self.http.get(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let version = resp
            .headers()
            .get("x-backout-version")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, version, resp.text().await.unwrap())
    }

    pub async fn put_route(&self, service: &str, body: &str) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .put(self.admin_url(&format!("/admin/v1/services/{service}/route")))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        self.http
            .get(self.admin_url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Events of one type, from the admin API.
    pub async fn events(&self, kind: &str) -> Vec<serde_json::Value> {
        let all = self.admin_json("/admin/v1/events").await;
        all.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == kind)
            .cloned()
            .collect()
    }
}

/// Polls `check` until it returns true, for at most `limit`. Waits on
/// state, never asserts on time.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two-pool service in YAML with a 10% canary and a version header.
pub fn two_pools(extra: &str) -> String {
    format!(
        "name: web\nversion_header: x-backout-version\n{extra}\npools:\n  v1: {{endpoints: [$v1]}}\n  v2: {{endpoints: [$v2]}}\nroute: {{stable: v1, canary: v2, canary_weight: 10}}\n"
    )
}
