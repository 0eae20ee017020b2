//! Weights, stickiness, match rules and service selection, through real
//! sockets.

use std::collections::HashMap;
use std::sync::Arc;

use crate::support::{Harness, two_pools};

/// Sends `n` requests with `concurrency` workers; counts by served version.
async fn split(h: &Harness, n: usize, concurrency: usize) -> HashMap<String, usize> {
    let counts = Arc::new(std::sync::Mutex::new(HashMap::<String, usize>::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, counts, next) =
            (h.http.clone(), h.url("/"), counts.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                let resp = client.get(&url).send().await.unwrap();
                assert_eq!(resp.status(), 200);
                let v = resp.headers()["x-backout-version"]
                    .to_str()
                    .unwrap()
                    .to_string();
                resp.bytes().await.unwrap();
                *counts.lock().unwrap().entry(v).or_default() += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(counts).unwrap().into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_traffic_within_one_percent_over_100k_requests() {
    let h = Harness::start(&two_pools("")).await;
    let counts = split(&h, 100_000, 32).await;
    let canary = counts.get("v2").copied().unwrap_or(0) as f64 / 100_000.0;
    assert!(
        (canary - 0.10).abs() <= 0.01,
        "canary share {canary} with weight 10%: {counts:?}"
    );
    // The demo apps saw exactly what the proxy says it sent.
    assert_eq!(h.app("v2").requests() as usize, counts["v2"]);
    assert_eq!(h.app("v1").requests() as usize, counts["v1"]);
    // Fine weights hold too: 0.5%.
    h.put_route(
        "web",
        r#"{"stable":"v1","canary":"v2","canary_weight":0.5}"#,
    )
    .await;
    let counts = split(&h, 20_000, 16).await;
    let share = counts.get("v2").copied().unwrap_or(0) as f64 / 20_000.0;
    assert!(
        (share - 0.005).abs() <= 0.003,
        "canary share {share} with weight 0.5%"
    );
}

async fn versions_by_key(h: &Harness, keys: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for k in keys {
        let (status, v, _) = h.get("/", &[("x-user", k)]).await;
        assert_eq!(status, 200);
        out.push(v);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_keys_stay_put_and_only_move_towards_the_canary() {
    let h = Harness::start(&two_pools("sticky: {header: x-user}")).await;
    let keys: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
    let at10 = versions_by_key(&h, &keys).await;
    assert_eq!(
        versions_by_key(&h, &keys).await,
        at10,
        "same key, same weight, same version"
    );
    let share = at10.iter().filter(|v| *v == "v2").count();
    assert!(
        (60..=140).contains(&share),
        "about 10% of 1000 keys: {share}"
    );

    h.put_route("web", r#"{"stable":"v1","canary":"v2","canary_weight":30}"#)
        .await;
    let at30 = versions_by_key(&h, &keys).await;
    for (before, after) in at10.iter().zip(&at30) {
        assert!(
            !(before == "v2" && after == "v1"),
            "a canary user went back to stable"
        );
    }
    assert!(
        at30.iter().filter(|v| *v == "v2").count() > share,
        "raising the weight moved users"
    );

    // A cookie key and the client address work the same way.
    let h = Harness::start(&two_pools("sticky: {cookie: uid}")).await;
    let mut seen = HashMap::new();
    for i in 0..200 {
        let cookie = format!("theme=dark; uid=u{i}");
        let (_, v1, _) = h.get("/", &[("cookie", &cookie)]).await;
        let (_, v2, _) = h.get("/", &[("cookie", &cookie)]).await;
        assert_eq!(v1, v2);
        *seen.entry(v1).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both versions serve some cookies: {seen:?}");
    let h = Harness::start(&two_pools("sticky: client_addr")).await;
    let (_, first, _) = h.get("/", &[]).await;
    for _ in 0..50 {
        assert_eq!(
            h.get("/", &[]).await.1,
            first,
            "one client address, one version"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_rules_force_a_version() {
    let h = Harness::start(&two_pools("")).await;
    let (status, body) = h
        .put_route(
            "web",
            r#"{"stable":"v1","canary":"v2","canary_weight":0,"rules":[
                {"header":"x-group","equals":"staff","to":"canary"},
                {"cookie":"beta","prefix":"yes","to":"canary"},
                {"header":"user-agent","regex":"Mac OS X","to":"canary"},
                {"header":"x-optout","equals":"1","to":"stable"}]}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for _ in 0..20 {
        assert_eq!(h.get("/", &[("x-group", "staff")]).await.1, "v2");
        assert_eq!(h.get("/", &[("x-group", "staffer")]).await.1, "v1");
        assert_eq!(h.get("/", &[("cookie", "beta=yes-please")]).await.1, "v2");
        assert_eq!(
            h.get(
                "/",
                &[("user-agent", "Mozilla (Macintosh; Intel Mac OS X 14_1)")]
            )
            .await
            .1,
            "v2"
        );
        assert_eq!(h.get("/", &[]).await.1, "v1");
    }
    // Rules are checked in order: opt-out only wins when listed first.
    h.put_route(
        "web",
        r#"{"stable":"v1","canary":"v2","canary_weight":100,"rules":[{"header":"x-optout","equals":"1","to":"stable"}]}"#,
    )
    .await;
    assert_eq!(h.get("/", &[("x-optout", "1")]).await.1, "v1");
    assert_eq!(h.get("/", &[]).await.1, "v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_share_a_listener_by_host_and_path_prefix() {
    let shop = "name: shop\nhosts: [shop.example]\npools: {v1: {endpoints: [$shop]}}\nroute: {stable: v1}\n";
    let api = "name: api\npath_prefix: /api\nstrip_prefix: true\npools: {v1: {endpoints: [$api]}}\nroute: {stable: v1}\n";
    let wild = "name: wild\nhosts: ['*.example']\npools: {v1: {endpoints: [$wild]}}\nroute: {stable: v1}\n";
    let fallback = "name: site\npools: {v1: {endpoints: [$site]}}\nroute: {stable: v1}\n";
    let h = Harness::start_many(&[shop, api, wild, fallback]).await;
    let who = |host: &'static str, path: &'static str| {
        let (client, url) = (h.http.clone(), h.url(path));
        async move {
            let resp = client.get(url).header("host", host).send().await.unwrap();
            resp.headers()["x-demo-version"]
                .to_str()
                .unwrap()
                .to_string()
        }
    };
    assert_eq!(who("shop.example", "/").await, "shop");
    assert_eq!(who("shop.example:8080", "/x").await, "shop");
    assert_eq!(who("blog.example", "/").await, "wild");
    assert_eq!(who("other.test", "/").await, "site");
    assert_eq!(who("other.test", "/api/things").await, "api");
    assert_eq!(who("other.test", "/apis").await, "site");
    // The prefix is stripped before forwarding.
    let resp = h.http.get(h.url("/api/headers?x=1")).send().await.unwrap();
    let text = resp.text().await.unwrap();
    assert!(text.contains("uri: /headers?x=1"), "{text}");
}

/// One raw HTTP/1.1 request over a fresh connection; the response text.
async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// An absolute-form target and a `Host` that disagree are routed and
/// forwarded by one name, the target's; forwarding headers a client makes
/// up are replaced, while a trusted proxy's stand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_authority_and_no_forged_forwarding_headers() {
    let a = "name: a\nhosts: [a.localhost]\npools: {v1: {endpoints: [$a]}}\nroute: {stable: v1}\n";
    let b = "name: b\nhosts: [b.localhost]\ntrusted_proxies: [10.0.0.0/8]\npools: {v1: {endpoints: [$b]}}\nroute: {stable: v1}\n";
    let c = "name: c\nhosts: [c.localhost]\ntrusted_proxies: [127.0.0.1]\npools: {v1: {endpoints: [$c]}}\nroute: {stable: v1}\n";
    let h = Harness::start_many(&[a, b, c]).await;
    let forged = "x-forwarded-for: 6.6.6.6\r\nx-forwarded-proto: https\r\nx-forwarded-host: admin.internal\r\nforwarded: for=6.6.6.6\r\n";
    let got = raw(
        h.addr,
        &format!("GET http://b.localhost/headers HTTP/1.1\r\nhost: a.localhost\r\n{forged}connection: close\r\n\r\n"),
    )
    .await;
    assert!(
        got.contains("x-demo-version: b"),
        "routed by the target: {got}"
    );
    assert!(
        got.contains("\nhost: b.localhost\n"),
        "forwarded with the target's name: {got}"
    );
    // Not a trusted proxy (b trusts 10.0.0.0/8 only): replaced.
    assert!(got.contains("\nx-forwarded-for: 127.0.0.1\n"), "{got}");
    assert!(got.contains("\nx-forwarded-proto: http\n"), "{got}");
    assert!(got.contains("\nx-forwarded-host: b.localhost\n"), "{got}");
    assert!(
        !got.contains("6.6.6.6") && !got.contains("admin.internal"),
        "{got}"
    );
    // A trusted proxy's values stand, the client's address appended.
    let got = raw(
        h.addr,
        &format!("GET /headers HTTP/1.1\r\nhost: c.localhost\r\n{forged}connection: close\r\n\r\n"),
    )
    .await;
    assert!(got.contains("x-demo-version: c"), "{got}");
    assert!(
        got.contains("\nx-forwarded-for: 6.6.6.6, 127.0.0.1\n"),
        "{got}"
    );
    assert!(got.contains("\nx-forwarded-proto: https\n"), "{got}");
}
