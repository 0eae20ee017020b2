//! TLS on the data plane: one certificate per service, picked by the name
//! a client asks for (SNI), the way the request is later routed by Host.
//!
//! A listener serves TLS and plain HTTP on the same port, told apart by
//! the first byte (a TLS handshake starts with 0x16, no HTTP method does),
//! as Envoy's TLS inspector does. Each certificate is a
//! [`backout_listen::tls::Reloading`], the same reloading pair the control
//! listeners use: its files are looked at every second and a renewed pair
//! is served without a restart, a broken renewal keeps the last good one.

use std::sync::Arc;

use backout_listen::tls::Reloading;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::registry::{Registry, SharedIndex};

/// What a data-plane listener offers in ALPN: HTTP/2 first, as browsers
/// and gRPC clients expect over TLS.
const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The data plane's TLS for one listener.
#[derive(Clone)]
pub(crate) struct DataTls {
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
    pub(crate) sni: Arc<Sni>,
}

impl std::fmt::Debug for DataTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataTls").finish_non_exhaustive()
    }
}

impl DataTls {
    pub(crate) fn new(index: SharedIndex, default: Option<Arc<Reloading>>) -> Result<Self, String> {
        let sni = Arc::new(Sni { index, default });
        let config = backout_listen::tls::server_config(
            Arc::clone(&sni) as Arc<dyn ResolvesServerCert>,
            ALPN,
        )?;
        Ok(DataTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            sni,
        })
    }
}

/// Picks a listener's certificate by SNI among its services: an exact
/// host beats a wildcard, which beats a service without `hosts`; without
/// a match (or without SNI, as for a client that dialled an address),
/// the proxy's default certificate, and without one the handshake fails.
#[derive(Debug)]
pub(crate) struct Sni {
    index: SharedIndex,
    default: Option<Arc<Reloading>>,
}

impl Sni {
    /// The certificate source for `name`.
    pub(crate) fn pick(&self, name: Option<&str>) -> Option<Arc<Reloading>> {
        self.index
            .load()
            .certificate(name)
            .or_else(|| self.default.clone())
    }
}

impl ResolvesServerCert for Sni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let picked = self.pick(hello.server_name());
        if picked.is_none() {
            tracing::debug!(sni = ?hello.server_name(), "no certificate for this name; handshake refused");
        }
        picked.map(|r| r.current())
    }
}

/// The TLS client for a service's `https://` endpoints: their
/// certificates must chain to the CA bundle in `upstream_tls.ca`, or
/// without one to the Mozilla roots (webpki-roots, compiled in, so a proxy
/// verifies the same way on every machine).
pub(crate) fn upstream_connector(
    spec: &backout_spec::UpstreamTlsSpec,
) -> Result<Arc<rustls::ClientConfig>, String> {
    static MOZILLA: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>> =
        std::sync::OnceLock::new();
    match &spec.ca {
        None => MOZILLA
            .get_or_init(|| {
                let roots = rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                client(roots)
            })
            .clone(),
        Some(path) => {
            use rustls_pki_types::pem::PemObject;
            let field = "upstream_tls.ca";
            let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{field}: cannot read {}: {e}", path.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{field}: {} is not PEM: {e}", path.display()))?;
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "{field}: {} holds no usable CA certificate (`-----BEGIN CERTIFICATE-----`)",
                    path.display()
                ));
            }
            client(roots)
        }
    }
}

fn client(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut config = rustls::ClientConfig::builder_with_provider(backout_listen::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // The pools speak HTTP/1.1 to https:// endpoints.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Loads every data-plane certificate again whose files changed: each
/// service's and the default. Runs every
/// [`backout_listen::tls::RELOAD_INTERVAL`] until shutdown.
pub(crate) async fn watch(
    registry: Arc<Registry>,
    default: Option<Arc<Reloading>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(backout_listen::tls::RELOAD_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if let Some(d) = &default {
            d.reload_if_changed();
        }
        for service in registry.all().values() {
            if let Some(t) = &service.tls {
                t.reload_if_changed();
            }
        }
    }
}
