//! A service as the proxy sees it: validated, with every default filled in.
//!
//! Parsing goes through the raw types in `service/file.rs`, which keep the
//! location of each value so that a value that parses but makes no sense is
//! reported where it was written.

mod file;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;

use backout_judge::AnalysisConfig;
use backout_routing::{RouteSpec, StickyKey};
use serde::{Deserialize, Serialize};

use crate::driver::DriverSpec;
use crate::duration::Duration;
use crate::endpoint::{EndpointUrl, Protocol};
use crate::error::SpecError;
use crate::gates::GatesPolicy;
use crate::strategy::{HistoryPolicy, Notification, RollbackPolicy, Strategy};
use crate::yaml::{Source, parse_yaml};

/// One service: where it listens, how requests are matched to it, its
/// version pools and the current route between them.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceSpec {
    pub name: String,
    /// Listener address; services without one use the proxy's default.
    pub listen: Option<SocketAddr>,
    /// Host names (lower case, no port) that select this service; empty
    /// means any host.
    pub hosts: Vec<String>,
    /// Path prefix that selects this service; the longest match wins.
    pub path_prefix: Option<String>,
    /// Remove the prefix before forwarding.
    pub strip_prefix: bool,
    /// What keeps a user on one version.
    pub sticky: Option<StickyKey>,
    /// Response header that names the version that served the request.
    pub version_header: Option<String>,
    pub timeouts: TimeoutsSpec,
    /// Proxies in front whose `X-Forwarded-For`, `-Proto` and `-Host` are
    /// kept (and `X-Forwarded-For` appended to). From anyone else these
    /// headers are replaced, so a client cannot claim another address.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The certificate served to TLS clients whose SNI names one of
    /// `hosts` (any name when `hosts` is empty); plain HTTP requests for
    /// the service are redirected to HTTPS.
    pub tls: Option<TlsSpec>,
    /// How `https://` endpoints are verified.
    pub upstream_tls: UpstreamTlsSpec,
    /// Version pools given in the file (e.g. `v1`, `v2`), for `backout
    /// proxy`. Under `backout up` pools come from releases instead.
    pub pools: BTreeMap<String, PoolSpec>,
    /// The initial route between the file's pools; `None` when releases
    /// decide it (`backout up`).
    pub route: Option<RouteSpec>,
    /// Settings for pools created at run time, one per release.
    pub pool_defaults: PoolSpec,
    pub strategy: Strategy,
    /// The judge's configuration (the `analysis:` section).
    pub analysis: AnalysisConfig,
    pub rollback: RollbackPolicy,
    pub history: HistoryPolicy,
    /// What release gate findings mean (the `gates:` section).
    pub gates: GatesPolicy,
    pub notifications: Vec<Notification>,
    /// How releases' instances are started (`backout up`); `None` for a
    /// proxy-only file whose pools are listed.
    pub driver: Option<DriverSpec>,
}

/// Where a service's certificate chain and private key are, on the
/// proxy's machine: the files are read (and read again when they change)
/// by each proxy, so key material never travels in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsSpec {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// The roots `https://` endpoints' certificates must chain to: the CA
/// bundle in `ca` (PEM, on the proxy's machine) instead of the Mozilla
/// roots that webpki-roots carries, for endpoints with certificates from
/// an internal CA.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamTlsSpec {
    pub ca: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutsSpec {
    /// TCP connect to an endpoint.
    pub connect: Duration,
    /// From sending the request until the response headers arrive. Body
    /// streaming afterwards is not limited, so long downloads work.
    pub request: Duration,
}

impl Default for TimeoutsSpec {
    fn default() -> Self {
        TimeoutsSpec {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(30),
        }
    }
}

/// The endpoints that run one version, and how to protect them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolSpec {
    pub endpoints: Vec<EndpointUrl>,
    pub protocol: Protocol,
    pub probes: ProbesSpec,
    pub breaker: BreakerSpec,
    pub bulkhead: BulkheadSpec,
    pub outlier: OutlierSpec,
}

impl PoolSpec {
    /// A pool with default protection around the given endpoints.
    pub fn new(endpoints: Vec<EndpointUrl>) -> Self {
        PoolSpec {
            endpoints,
            protocol: Protocol::default(),
            probes: ProbesSpec::default(),
            breaker: BreakerSpec::default(),
            bulkhead: BulkheadSpec::default(),
            outlier: OutlierSpec::default(),
        }
    }
}

/// Kubernetes-style probes. Liveness and readiness wait for startup to
/// succeed. An endpoint without a readiness probe is ready once started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbesSpec {
    pub startup: Option<ProbeSpec>,
    pub liveness: Option<ProbeSpec>,
    pub readiness: Option<ProbeSpec>,
}

/// One HTTP GET probe; a status in 200..400 within the timeout is success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeSpec {
    pub path: String,
    pub period: Duration,
    pub timeout: Duration,
    pub initial_delay: Duration,
    /// Consecutive successes to become healthy (1 for startup and liveness).
    pub success_threshold: NonZeroU32,
    /// Consecutive failures to become unhealthy.
    pub failure_threshold: NonZeroU32,
}

impl ProbeSpec {
    pub fn http(path: impl Into<String>) -> Self {
        ProbeSpec {
            path: path.into(),
            period: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            initial_delay: Duration::default(),
            success_threshold: NonZeroU32::MIN,
            failure_threshold: NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// Per-pool circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BreakerSpec {
    pub enabled: bool,
    /// Open when this share of requests (percent) in `window` failed…
    pub failure_rate: f64,
    /// …and at least this many requests were seen in the window.
    pub min_requests: u32,
    pub window: Duration,
    /// Or open after this many failures in a row (0 turns this off).
    pub consecutive_failures: u32,
    /// How long to stay open before trying again.
    pub cooldown: Duration,
    /// Trial requests let through while half-open; all must succeed to close.
    pub half_open_requests: NonZeroU32,
}

impl Default for BreakerSpec {
    fn default() -> Self {
        BreakerSpec {
            enabled: true,
            failure_rate: 50.0,
            min_requests: 20,
            window: Duration::from_secs(10),
            consecutive_failures: 20,
            cooldown: Duration::from_secs(5),
            half_open_requests: NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// Caps concurrent requests per pool so one slow version cannot take all
/// the proxy's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkheadSpec {
    pub max_concurrent: NonZeroU32,
}

impl Default for BulkheadSpec {
    fn default() -> Self {
        BulkheadSpec {
            max_concurrent: NonZeroU32::new(10_000).unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// Passive outlier detection: an endpoint that fails many times in a row is
/// ejected for a back-off that doubles with each ejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutlierSpec {
    pub enabled: bool,
    /// 5xx responses or connect failures in a row that eject an endpoint.
    pub consecutive_failures: NonZeroU32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    /// At most this share of a pool's endpoints is ejected at once; the last
    /// available endpoint is never ejected.
    pub max_ejection_percent: u32,
}

impl Default for OutlierSpec {
    fn default() -> Self {
        OutlierSpec {
            enabled: true,
            consecutive_failures: NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN),
            base_ejection: Duration::from_secs(5),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: 50,
        }
    }
}

impl ServiceSpec {
    /// Parses and validates one service file.
    pub fn parse(source: &Source) -> Result<ServiceSpec, SpecError> {
        let raw: file::ServiceFile = parse_yaml(source)?;
        raw.validate(source)
    }

    /// The names of the pools, for route validation.
    pub fn pool_names(&self) -> Vec<&str> {
        self.pools.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests;
