//! The proxy-windows provider against a real proxy with real upstreams.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use backout_provider::{ErrorClasses, MetricProvider, ProxyProvider, WindowQuery};
use backout_proxy::demo_app::{Control, DemoApp};
use backout_proxy::{ProxyConfig, RunningProxy};
use backout_spec::{ServiceSpec, Source};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_windows_feed_the_judge() {
    let local = "127.0.0.1:0".parse().unwrap();
    let (v1, v2) = (Arc::new(Control::new("v1")), Arc::new(Control::new("v2")));
    let a1 = DemoApp::start(local, Arc::clone(&v1)).await.unwrap();
    let a2 = DemoApp::start(local, Arc::clone(&v2)).await.unwrap();
    let yaml = format!(
        "name: web\npools: {{v1: {{endpoints: ['http://{}']}}, v2: {{endpoints: ['http://{}']}}}}\n\
         route: {{stable: v1, canary: v2, rules: [{{header: x-canary, equals: '1', to: canary}}]}}\n",
        a1.addr, a2.addr
    );
    let spec = ServiceSpec::parse(&Source::new("web.yaml", yaml)).unwrap();
    let proxy = RunningProxy::start(ProxyConfig {
        services: vec![spec],
        default_listen: Some(local),
        admin: Some(local),
        admin_listener: Default::default(),
        drain_timeout: Duration::from_secs(1),
        workers: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let addr = proxy.bound(local).unwrap();
    let since = backout_proxy::clock::unix_ms() as i64;
    let http = reqwest::Client::new();
    for i in 0..40 {
        let canary = i % 2 == 0;
        let path = match i % 10 {
            0 => "/status/503",
            1 => "/status/404",
            _ => "/",
        };
        let mut req = http.get(format!("http://{addr}{path}"));
        if canary {
            req = req.header("x-canary", "1");
        }
        req.send().await.unwrap();
    }
    // Windows are reported once complete: wait for the current second to end.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let until = backout_proxy::clock::unix_ms() as i64;
    let query = WindowQuery {
        service: "web".into(),
        since_ms: since - since % 1000,
        until_ms: until,
    };

    let admin = format!("http://{}", proxy.admin.unwrap());
    let provider =
        ProxyProvider::new(&admin, ErrorClasses::default(), Duration::from_secs(2)).unwrap();
    let series = provider.fetch(&query).await.unwrap();
    let total = |ws: &[backout_provider::ProviderWindow]| {
        (
            ws.iter().map(|w| w.requests).sum::<u64>(),
            ws.iter().map(|w| w.errors).sum::<u64>(),
            ws.iter().map(|w| w.latency_ms.len()).sum::<usize>(),
        )
    };
    assert_eq!(
        total(&series.canary),
        (20, 4, 20),
        "canary: i%10==0 gives 503s on even i"
    );
    assert_eq!(
        total(&series.baseline),
        (20, 0, 20),
        "baseline: 404s are not errors by default"
    );
    let last = series.canary.last().unwrap();
    assert_eq!(last.metrics["ready"], 1.0);
    assert_eq!(last.metrics["breaker_open"], 0.0);

    // 4xx can be made to count.
    let strict = ProxyProvider::new(
        &admin,
        serde_json::from_str(r#"["5xx","4xx"]"#).unwrap(),
        Duration::from_secs(2),
    )
    .unwrap();
    let series = strict.fetch(&query).await.unwrap();
    assert_eq!(total(&series.baseline).1, 4);

    // Folded into one judge tick, the judge takes it.
    let mut window = backout_judge::Window::default();
    series.fold_into(&mut window);
    assert_eq!(window.canary.requests, 20);
    let mut judge = backout_judge::Judge::with_defaults();
    let _ = judge.observe(&window);

    // A wrong address is an error that says so.
    let nowhere = ProxyProvider::new(
        "http://127.0.0.1:1",
        ErrorClasses::default(),
        Duration::from_secs(2),
    )
    .unwrap();
    let err = nowhere.fetch(&query).await.unwrap_err().to_string();
    assert!(err.contains("cannot connect"), "{err}");
    let unknown = WindowQuery {
        service: "nope".into(),
        ..query
    };
    let err = provider.fetch(&unknown).await.unwrap_err().to_string();
    assert!(
        err.contains("404") && err.contains("known services: web"),
        "{err}"
    );

    proxy.shutdown().await;
    a1.stop().await;
    a2.stop().await;
}
