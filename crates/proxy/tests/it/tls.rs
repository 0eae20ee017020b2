//! TLS on the data plane: a certificate per service chosen by SNI, the
//! default certificate for other names and for clients without SNI,
//! renewal without a restart, and what plain HTTP and misdirected requests
//! get. Certificates are made at test time by a CA of the test's own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use backout_proxy::demo_app::{Control, DemoApp};
use backout_proxy::{ProxyConfig, RunningProxy};
use backout_spec::{ServiceSpec, Source};
use http_body_util::{BodyExt, Empty};
use rustls_pki_types::{CertificateDer, ServerName};

use crate::support::{eventually, local};

/// A certificate authority made for one test.
pub struct Ca {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        let issuer = rcgen::Issuer::new(params, key);
        Ca { cert, issuer }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `names` (host names or IP addresses),
    /// written to `dir/NAME.pem` and `dir/NAME.key` (whole, then renamed,
    /// as a certificate manager does); returns the paths and the
    /// certificate's DER.
    pub fn issue(
        &self,
        dir: &Path,
        file: &str,
        names: &[&str],
    ) -> (PathBuf, PathBuf, CertificateDer<'static>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = rcgen::CertificateParams::new(names).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{file}.pem")),
            dir.join(format!("{file}.key")),
        );
        for (path, text) in [(&cert_path, cert.pem()), (&key_path, key.serialize_pem())] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
        (cert_path, key_path, cert.der().clone())
    }
}

/// A TLS client that trusts only one CA.
pub struct Client {
    connector: tokio_rustls::TlsConnector,
}

/// One exchange over TLS: the status, the certificate the server showed,
/// the protocol ALPN chose and the body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub cert: CertificateDer<'static>,
    pub h2: bool,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Client {
    pub fn new(ca_pem: &str, alpn: &[&[u8]]) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        use rustls_pki_types::pem::PemObject;
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let mut config =
            rustls::ClientConfig::builder_with_provider(backout_listen::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        // A resumed session shows no certificate: every connection here
        // is a full handshake, so the test sees what the server serves now.
        config.resumption = rustls::client::Resumption::disabled();
        Client {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }

    /// `GET path` with `host` as Host, over a new connection to `addr`
    /// whose TLS server name is `sni` (an IP address sends no SNI).
    pub async fn get(
        &self,
        addr: SocketAddr,
        sni: &str,
        host: &str,
        path: &str,
    ) -> Result<Answer, String> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from(sni.to_string()).unwrap();
        let tls = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (_, conn) = tls.get_ref();
        let cert = conn.peer_certificates().unwrap()[0].clone().into_owned();
        let h2 = conn.alpn_protocol() == Some(b"h2".as_slice());
        let io = hyper_util::rt::TokioIo::new(tls);
        let uri = format!("https://{host}{path}");
        let resp = if h2 {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let req = http::Request::get(uri)
                .body(Empty::<bytes::Bytes>::new())
                .unwrap();
            send.send_request(req).await.map_err(|e| e.to_string())?
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let req = http::Request::get(path)
                .header("host", host)
                .body(Empty::<bytes::Bytes>::new())
                .unwrap();
            send.send_request(req).await.map_err(|e| e.to_string())?
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(Answer {
            status,
            cert,
            h2,
            headers,
            body: String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        })
    }
}

fn yaml_path(p: &Path) -> String {
    p.display().to_string()
}

struct Setup {
    proxy: RunningProxy,
    addr: SocketAddr,
    _apps: Vec<DemoApp>,
}

/// Services a (a.localhost, its own certificate), b (b.localhost, its own
/// certificate) and plain (plain.localhost, no certificate) on one
/// listener, with a default certificate for plain.localhost,
/// nobody.localhost and 127.0.0.1.
async fn setup(dir: &Path, ca: &Ca) -> (Setup, [CertificateDer<'static>; 3]) {
    let (a_cert, a_key, a_der) = ca.issue(dir, "a", &["a.localhost"]);
    let (b_cert, b_key, b_der) = ca.issue(dir, "b", &["b.localhost"]);
    let (d_cert, d_key, d_der) = ca.issue(
        dir,
        "default",
        &["plain.localhost", "nobody.localhost", "127.0.0.1"],
    );
    let mut apps = Vec::new();
    let mut services = Vec::new();
    for (name, tls) in [
        ("a", Some((&a_cert, &a_key))),
        ("b", Some((&b_cert, &b_key))),
        ("plain", None),
    ] {
        let app = DemoApp::start(local(), Arc::new(Control::new(name)))
            .await
            .unwrap();
        let tls = tls.map_or(String::new(), |(c, k)| {
            format!(
                "tls: {{cert: '{}', key: '{}'}}\n",
                yaml_path(c),
                yaml_path(k)
            )
        });
        let yaml = format!(
            "name: {name}\nhosts: [{name}.localhost]\nversion_header: x-backout-version\n{tls}pools: {{{name}: {{endpoints: ['http://{}']}}}}\nroute: {{stable: {name}}}\n",
            app.addr
        );
        services.push(ServiceSpec::parse(&Source::new(format!("{name}.yaml"), yaml)).unwrap());
        apps.push(app);
    }
    let proxy = RunningProxy::start(ProxyConfig {
        services,
        default_listen: Some(local()),
        workers: 1,
        drain_timeout: Duration::from_secs(1),
        default_tls: Some(backout_listen::TlsFiles {
            cert: d_cert,
            key: d_key,
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let addr = proxy.bound(local()).unwrap();
    (
        Setup {
            proxy,
            addr,
            _apps: apps,
        },
        [a_der, b_der, d_der],
    )
}

#[tokio::test]
async fn each_service_gets_its_certificate_by_sni_and_others_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (s, [a, b, default]) = setup(dir.path(), &ca).await;
    let client = Client::new(&ca.pem(), &[b"http/1.1"]);

    let got = client
        .get(s.addr, "a.localhost", "a.localhost", "/")
        .await
        .unwrap();
    assert_eq!(
        (got.status, got.cert == a, got.h2),
        (200, true, false),
        "{got:?}"
    );
    assert_eq!(got.headers["x-backout-version"], "a");
    let got = client
        .get(s.addr, "b.localhost", "b.localhost", "/")
        .await
        .unwrap();
    assert_eq!((got.status, got.cert == b), (200, true), "{got:?}");
    assert_eq!(got.headers["x-backout-version"], "b");

    // A service without a certificate of its own is served with the
    // default one; so is a name nobody has.
    let got = client
        .get(s.addr, "plain.localhost", "plain.localhost", "/")
        .await
        .unwrap();
    assert_eq!((got.status, got.cert == default), (200, true), "{got:?}");
    let got = client
        .get(s.addr, "nobody.localhost", "nobody.localhost", "/")
        .await
        .unwrap();
    assert_eq!((got.status, got.cert == default), (404, true), "{got:?}");
    // A client that dialled an address sends no SNI.
    let got = client
        .get(s.addr, "127.0.0.1", "plain.localhost", "/")
        .await
        .unwrap();
    assert_eq!((got.status, got.cert == default), (200, true), "{got:?}");

    // HTTP/2 when the client offers it in ALPN.
    let h2 = Client::new(&ca.pem(), &[b"h2", b"http/1.1"]);
    let got = h2
        .get(s.addr, "a.localhost", "a.localhost", "/")
        .await
        .unwrap();
    assert_eq!(
        (got.status, got.cert == a, got.h2),
        (200, true, true),
        "{got:?}"
    );

    // A client that trusts another CA refuses the proxy.
    let stranger = Client::new(&Ca::new("another CA").pem(), &[b"http/1.1"]);
    let e = stranger
        .get(s.addr, "a.localhost", "a.localhost", "/")
        .await
        .unwrap_err();
    assert!(
        e.contains("UnknownIssuer") || e.contains("unknown issuer"),
        "{e}"
    );
    s.proxy.shutdown().await;
}

#[tokio::test]
async fn plain_http_is_redirected_and_misdirected_requests_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (s, _) = setup(dir.path(), &ca).await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = plain
        .post(format!("http://{}/cart?x=1", s.addr))
        .header("host", "a.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 308, "plain HTTP to a TLS service");
    assert_eq!(
        resp.headers()["location"],
        "https://a.localhost/cart?x=1",
        "same host, path and query over https"
    );
    // A service without a certificate still speaks plain HTTP.
    let resp = plain
        .get(format!("http://{}/", s.addr))
        .header("host", "plain.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // a's certificate does not carry b's requests.
    let client = Client::new(&ca.pem(), &[b"http/1.1"]);
    let got = client
        .get(s.addr, "a.localhost", "b.localhost", "/")
        .await
        .unwrap();
    assert_eq!(got.status, 421, "{got:?}");
    assert!(got.body.contains("certificate is not b's"), "{got:?}");
    s.proxy.shutdown().await;
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (s, [first, ..]) = setup(dir.path(), &ca).await;
    let client = Client::new(&ca.pem(), &[b"http/1.1"]);
    let got = client
        .get(s.addr, "a.localhost", "a.localhost", "/")
        .await
        .unwrap();
    assert!(got.cert == first);

    let (_, _, renewed) = ca.issue(dir.path(), "a", &["a.localhost"]);
    assert!(renewed != first);
    eventually(
        Duration::from_secs(10),
        "the renewed certificate",
        || async {
            let got = client
                .get(s.addr, "a.localhost", "a.localhost", "/")
                .await
                .unwrap();
            got.cert == renewed && got.status == 200
        },
    )
    .await;

    // A broken renewal keeps the last good pair.
    std::fs::write(dir.path().join("a.key"), "not a key").unwrap();
    tokio::time::sleep(backout_listen::tls::RELOAD_INTERVAL * 2).await;
    let got = client
        .get(s.addr, "a.localhost", "a.localhost", "/")
        .await
        .unwrap();
    assert!(got.cert == renewed && got.status == 200, "{got:?}");
    s.proxy.shutdown().await;
}

#[tokio::test]
async fn a_service_whose_certificate_cannot_be_read_is_refused_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let yaml = format!(
        "name: web\ntls: {{cert: '{}', key: '{}'}}\npools: {{v1: {{endpoints: ['http://127.0.0.1:9']}}}}\nroute: {{stable: v1}}\n",
        missing.display(),
        missing.display()
    );
    let spec = ServiceSpec::parse(&Source::new("web.yaml", yaml)).unwrap();
    let e = RunningProxy::start(ProxyConfig {
        services: vec![spec],
        default_listen: Some(local()),
        workers: 1,
        ..Default::default()
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("service \"web\": tls:") && e.contains("missing.pem"),
        "{e}"
    );
}

/// An HTTPS upstream on loopback with a certificate for `localhost` from
/// `ca`, answering `/` and `/ready`.
async fn https_upstream(dir: &Path, ca: &Ca, text: &'static str) -> SocketAddr {
    use axum::routing::get;
    let (cert, key, _) = ca.issue(dir, "upstream", &["localhost"]);
    let tls = backout_listen::Tls::new(backout_listen::TlsFiles { cert, key }).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/", get(move || async move { text }))
        .route("/ready", get(|| async { "ready" }));
    let settings = backout_listen::Settings {
        tls: Some(tls),
        ..Default::default()
    };
    tokio::spawn(backout_listen::serve(
        listener,
        app,
        settings,
        std::future::pending(),
    ));
    addr
}

/// A proxy in front of one `https://localhost:PORT` endpoint, verified
/// against the CA bundle at `ca_file`.
async fn proxy_to(
    upstream: SocketAddr,
    ca_file: &Path,
    probes: &str,
) -> (RunningProxy, SocketAddr) {
    let yaml = format!(
        "name: web\nupstream_tls: {{ca: '{}'}}\n{probes}pools: {{v1: {{endpoints: ['https://localhost:{}']}}}}\nroute: {{stable: v1}}\n",
        ca_file.display(),
        upstream.port()
    );
    let spec = ServiceSpec::parse(&Source::new("web.yaml", yaml)).unwrap();
    let proxy = RunningProxy::start(ProxyConfig {
        services: vec![spec],
        default_listen: Some(local()),
        workers: 1,
        drain_timeout: Duration::from_secs(1),
        ..Default::default()
    })
    .await
    .unwrap();
    let addr = proxy.bound(local()).unwrap();
    (proxy, addr)
}

#[tokio::test]
async fn https_endpoints_are_verified_against_the_services_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("upstream CA");
    let upstream = https_upstream(dir.path(), &ca, "secure v1").await;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let (proxy, addr) = proxy_to(
        upstream,
        &ca_file,
        "probes: {readiness: {path: /ready, period: 100ms, timeout: 100ms}}\n",
    )
    .await;
    // The probe goes over https too: the endpoint becomes ready.
    let service = proxy.service("web").unwrap();
    eventually(
        Duration::from_secs(10),
        "the https endpoint is ready",
        || {
            let service = Arc::clone(&service);
            async move { service.status().pools[0].endpoints[0].ready }
        },
    )
    .await;
    let resp = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "secure v1");
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_endpoint_signed_by_another_ca_is_an_upstream_tls_failure() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = https_upstream(dir.path(), &Ca::new("the endpoint's CA"), "secret").await;
    let ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&ca_file, Ca::new("a CA the proxy trusts").pem()).unwrap();

    // Without probes, requests reach the endpoint and fail there.
    let (proxy, addr) = proxy_to(upstream, &ca_file, "").await;
    let resp = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["x-backout-error"], "upstream-tls");
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("upstream failure (tls)") && body.contains("UnknownIssuer"),
        "{body}"
    );
    let metrics = proxy.state.metrics.render();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("backout_upstream_failures_total")
                && l.contains("kind=\"tls\"")
                && !l.ends_with(" 0")),
        "{metrics}"
    );
    proxy.shutdown().await;

    // With a readiness probe, the endpoint never becomes ready.
    let (proxy, _) = proxy_to(
        upstream,
        &ca_file,
        "probes: {readiness: {path: /ready, period: 100ms, timeout: 100ms, failure_threshold: 1}}\n",
    )
    .await;
    let service = proxy.service("web").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!service.status().pools[0].endpoints[0].ready);
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_unreadable_ca_bundle_refuses_the_service_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-ca.pem");
    let e = RunningProxy::start(ProxyConfig {
        services: vec![
            ServiceSpec::parse(&Source::new(
                "web.yaml",
                format!(
                    "name: web\nupstream_tls: {{ca: '{}'}}\npools: {{v1: {{endpoints: ['https://localhost:1']}}}}\nroute: {{stable: v1}}\n",
                    missing.display()
                ),
            ))
            .unwrap(),
        ],
        default_listen: Some(local()),
        workers: 1,
        ..Default::default()
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("upstream_tls.ca") && e.contains("no-such-ca.pem"),
        "{e}"
    );
}
