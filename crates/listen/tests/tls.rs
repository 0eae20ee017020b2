//! HTTPS on a control listener, with certificates made at test time, and
//! a certificate renewed while the listener serves.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use backout_listen::{Settings, Tls, TlsFiles, serve};

/// A self-signed certificate for `localhost`, written to `dir`; returns its
/// PEM.
fn make_cert(dir: &Path) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    // Written whole, then renamed, as a certificate manager would.
    for (name, text) in [("cert.pem", cert.pem()), ("key.pem", key.serialize_pem())] {
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
    cert.pem()
}

/// A TLS client that trusts only `ca_pem` and speaks to `localhost` at
/// `addr`.
struct Client(tokio_rustls::TlsConnector, std::net::SocketAddr);

fn client(ca_pem: &str, addr: std::net::SocketAddr) -> Client {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(backout_listen::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Client(tokio_rustls::TlsConnector::from(Arc::new(config)), addr)
}

impl Client {
    /// `GET /` over a new connection; the whole response, or why not.
    async fn get(&self) -> Result<String, String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = tokio::net::TcpStream::connect(self.1)
            .await
            .map_err(|e| e.to_string())?;
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = self.0.connect(name, tcp).await.map_err(|e| e.to_string())?;
        tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out).await;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

use rustls_pki_types::pem::PemObject;

#[tokio::test]
async fn https_with_a_certificate_renewed_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let first = make_cert(dir.path());
    let files = TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    let tls = Tls::new(files.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = Settings {
        tls: Some(tls),
        ..Settings::default()
    };
    let app = Router::new().route("/", get(|| async { "hello over tls" }));
    tokio::spawn(serve(listener, app, settings, std::future::pending()));
    let text = client(&first, addr).get().await.unwrap();
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("hello over tls"),
        "{text}"
    );
    // Plain HTTP gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/"))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");

    // Renewed: a new key and certificate in the same files.
    let second = make_cert(dir.path());
    let renewed = client(&second, addr);
    let mut served = false;
    for _ in 0..100 {
        if renewed.get().await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        served,
        "the renewed certificate is served without a restart"
    );
    assert!(
        client(&first, addr).get().await.is_err(),
        "the old one is not"
    );

    // A broken renewal keeps the last good pair.
    std::fs::write(&files.key, "not a key").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(renewed.get().await.is_ok());
}

#[test]
fn broken_files_are_refused_at_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    make_cert(dir.path());
    let other = tempfile::tempdir().unwrap();
    make_cert(other.path());
    let mismatched = TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: other.path().join("key.pem"),
    };
    let e = Tls::new(mismatched).unwrap_err();
    assert!(e.contains("does not belong to the certificate"), "{e}");
    let missing = TlsFiles {
        cert: dir.path().join("nope.pem"),
        key: dir.path().join("key.pem"),
    };
    let e = Tls::new(missing).unwrap_err();
    assert!(e.contains("nope.pem"), "{e}");
}
