//! TLS for a listener, with rustls: a certificate and key from PEM files,
//! loaded again when either file changes, so a renewed certificate is
//! served without a restart. A broken renewal keeps the last good pair and
//! says so in the log.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Where a listener's certificate chain and private key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How often the files are checked for a change.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The crypto rustls uses everywhere in backout.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration with backout's crypto and protocol versions, no
/// client certificates, the certificates `resolver` picks (one per
/// listener, or one per SNI name) and the ALPN protocols offered.
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, String> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Reads a certificate chain and its key; the error names the file and
/// what is wrong with it.
pub fn load(files: &TlsFiles) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| format!("cannot read the certificate {}: {e}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", files.cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{} holds no certificate (`-----BEGIN CERTIFICATE-----`)",
            files.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        format!(
            "cannot read a PEM private key from {}: {e}",
            files.key.display()
        )
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{}: unusable private key: {e}", files.key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        format!(
            "the key in {} does not belong to the certificate in {}: {e}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    Ok(certified)
}

/// The certificate a listener serves, swapped when its files change.
#[derive(Debug)]
pub struct Reloading {
    files: TlsFiles,
    current: ArcSwap<CertifiedKey>,
    seen: Mutex<Option<Stamp>>,
}

/// When each file was last changed, and its size.
type Stamp = [(Option<SystemTime>, u64); 2];

fn stamp(files: &TlsFiles) -> Stamp {
    let one = |p: &Path| std::fs::metadata(p).map_or((None, 0), |m| (m.modified().ok(), m.len()));
    [one(&files.cert), one(&files.key)]
}

impl Reloading {
    /// Loads the files now; a listener does not start with a broken pair.
    pub fn new(files: TlsFiles) -> Result<Reloading, String> {
        let seen = stamp(&files);
        let current = load(&files)?;
        Ok(Reloading {
            files,
            current: ArcSwap::from_pointee(current),
            seen: Mutex::new(Some(seen)),
        })
    }

    /// Loads the files again if they changed since the last look; returns
    /// whether a new certificate is now served.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamp(&self.files);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.as_ref() == Some(&now) {
                return false;
            }
            *seen = Some(now);
        }
        match load(&self.files) {
            Ok(fresh) => {
                self.current.store(Arc::new(fresh));
                tracing::info!(cert = %self.files.cert.display(), "serving the renewed certificate");
                true
            }
            Err(e) => {
                tracing::error!("{e}; still serving the previous certificate");
                false
            }
        }
    }

    /// The rustls configuration of a listener serving this certificate
    /// over HTTP/1.1.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, String> {
        server_config(
            Arc::clone(self) as Arc<dyn ResolvesServerCert>,
            &[b"http/1.1"],
        )
    }

    /// The certificate served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// The files it is read from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Checks the files every [`RELOAD_INTERVAL`] until dropped.
    pub async fn watch(self: Arc<Self>) {
        let mut tick = tokio::time::interval(RELOAD_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.reload_if_changed();
        }
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// A listener's TLS: the acceptor and the certificate behind it.
#[derive(Clone)]
pub struct Tls {
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
    pub(crate) certs: Arc<Reloading>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.certs.files)
            .finish()
    }
}

impl Tls {
    /// TLS from these files, loaded now (the error says what is wrong).
    pub fn new(files: TlsFiles) -> Result<Tls, String> {
        let certs = Arc::new(Reloading::new(files)?);
        let config = certs.server_config()?;
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            certs,
        })
    }
}
