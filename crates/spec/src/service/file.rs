//! The service file as written: every field optional where a default
//! exists, and values that need checking kept with their location.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;

use backout_judge::AnalysisConfig;
use backout_routing::{RouteSpec, RouteTable, StickyKey};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{
    BreakerSpec, BulkheadSpec, OutlierSpec, PoolSpec, ProbeSpec, ProbesSpec, ServiceSpec,
    TimeoutsSpec, TlsSpec, UpstreamTlsSpec,
};
use crate::driver::DriverFile;
use crate::duration::Duration;
use crate::endpoint::{EndpointUrl, Protocol};
use crate::error::SpecError;
use crate::gates::GatesPolicy;
use crate::span_tree::SpanTree;
use crate::strategy::{HistoryPolicy, Notification, RollbackPolicy, StrategyFile};
use crate::yaml::Source;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServiceFile {
    name: Spanned<String>,
    #[serde(default)]
    listen: Option<SocketAddr>,
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
    #[serde(default)]
    path_prefix: Option<Spanned<String>>,
    #[serde(default)]
    strip_prefix: bool,
    #[serde(default)]
    sticky: Option<Spanned<StickyKey>>,
    #[serde(default)]
    version_header: Option<Spanned<String>>,
    #[serde(default)]
    timeouts: Option<TimeoutsFile>,
    #[serde(default)]
    trusted_proxies: Vec<Spanned<String>>,
    #[serde(default)]
    tls: Option<TlsFile>,
    #[serde(default)]
    upstream_tls: Option<UpstreamTlsFile>,
    // Service-wide defaults, overridden per pool.
    #[serde(default)]
    probes: Option<ProbesFile>,
    #[serde(default)]
    breaker: Option<BreakerFile>,
    #[serde(default)]
    bulkhead: Option<BulkheadFile>,
    #[serde(default)]
    outlier: Option<OutlierFile>,
    #[serde(default)]
    pools: Option<Spanned<BTreeMap<String, PoolFile>>>,
    #[serde(default)]
    route: Option<Spanned<RouteSpec>>,
    #[serde(default)]
    strategy: Option<StrategyFile>,
    #[serde(default)]
    analysis: Option<AnalysisConfig>,
    #[serde(default)]
    rollback: Option<RollbackPolicy>,
    #[serde(default)]
    history: Option<HistoryPolicy>,
    #[serde(default)]
    gates: Option<GatesPolicy>,
    #[serde(default)]
    notifications: Vec<Notification>,
    #[serde(default)]
    driver: Option<DriverFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert: Spanned<String>,
    key: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamTlsFile {
    #[serde(default)]
    ca: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutsFile {
    #[serde(default)]
    connect: Option<Spanned<Duration>>,
    #[serde(default)]
    request: Option<Spanned<Duration>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolFile {
    endpoints: Spanned<Vec<EndpointUrl>>,
    #[serde(default)]
    protocol: Protocol,
    #[serde(default)]
    probes: Option<ProbesFile>,
    #[serde(default)]
    breaker: Option<BreakerFile>,
    #[serde(default)]
    bulkhead: Option<BulkheadFile>,
    #[serde(default)]
    outlier: Option<OutlierFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbesFile {
    #[serde(default)]
    startup: Option<ProbeFile>,
    #[serde(default)]
    liveness: Option<ProbeFile>,
    #[serde(default)]
    readiness: Option<ProbeFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeFile {
    path: Spanned<String>,
    #[serde(default)]
    period: Option<Spanned<Duration>>,
    #[serde(default)]
    timeout: Option<Spanned<Duration>>,
    #[serde(default)]
    initial_delay: Option<Duration>,
    #[serde(default)]
    success_threshold: Option<Spanned<NonZeroU32>>,
    #[serde(default)]
    failure_threshold: Option<NonZeroU32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct BreakerFile {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    failure_rate: Option<Spanned<f64>>,
    #[serde(default)]
    min_requests: Option<u32>,
    #[serde(default)]
    window: Option<Spanned<Duration>>,
    #[serde(default)]
    consecutive_failures: Option<u32>,
    #[serde(default)]
    cooldown: Option<Spanned<Duration>>,
    #[serde(default)]
    half_open_requests: Option<NonZeroU32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkheadFile {
    max_concurrent: NonZeroU32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutlierFile {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    consecutive_failures: Option<NonZeroU32>,
    #[serde(default)]
    base_ejection: Option<Spanned<Duration>>,
    #[serde(default)]
    max_ejection: Option<Spanned<Duration>>,
    #[serde(default)]
    max_ejection_percent: Option<Spanned<u32>>,
}

/// Names people use on the command line and in URLs: keep them plain.
fn check_name(
    src: &Source,
    name: &Spanned<String>,
    field: &str,
    what: &str,
) -> Result<(), SpecError> {
    let n = &name.value;
    if crate::is_valid_name(n) {
        Ok(())
    } else {
        Err(src.error_at(
            name.referenced,
            field,
            format!("{what} {n:?} is not a valid name"),
            Some("use 1 to 63 lower-case letters, digits, `-`, `_` or `.`, starting with a letter or digit".into()),
        ))
    }
}

/// A sticky header must be a header name and a sticky cookie a cookie
/// name; otherwise no request ever carries the key and stickiness is
/// silently off.
fn check_sticky(
    src: &Source,
    sticky: &Spanned<StickyKey>,
    at: &dyn Fn(&str, serde_saphyr::Location) -> serde_saphyr::Location,
) -> Result<(), SpecError> {
    let (field, problem) = match &sticky.value {
        StickyKey::Header(h) if http::HeaderName::from_bytes(h.as_bytes()).is_err() => (
            "sticky.header",
            format!(
                "{h:?} is not a valid HTTP header name; use letters, digits and `-`, e.g. `x-user-id`"
            ),
        ),
        StickyKey::Cookie(c)
            if c.is_empty()
                || !c
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)) =>
        {
            (
                "sticky.cookie",
                format!(
                    "{c:?} is not a valid cookie name; use letters, digits and `-` or `_`, e.g. `uid`"
                ),
            )
        }
        _ => return Ok(()),
    };
    Err(src.error_at(at(field, sticky.referenced), field, problem, None))
}

/// A file the proxy reads: relative paths are relative to the service
/// file's directory, so a file and its certificates can move together.
fn file_path(
    src: &Source,
    path: &Spanned<String>,
    field: &str,
    what: &str,
) -> Result<std::path::PathBuf, SpecError> {
    let text = path.value.trim();
    if text.is_empty() {
        return Err(src.error_at(
            path.referenced,
            field,
            format!("empty path; give the file that holds {what}"),
            Some("e.g. `/etc/backout/tls/shop.pem`".into()),
        ));
    }
    let p = std::path::Path::new(text);
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let dir = std::path::Path::new(&src.name)
        .parent()
        .unwrap_or(std::path::Path::new(""));
    Ok(dir.join(p))
}

/// A webhook must be an absolute http(s) URL, and every event name one
/// that a rollout sends.
fn check_notification(
    src: &Source,
    n: &Notification,
    field: &str,
    at: &dyn Fn(&str) -> serde_saphyr::Location,
) -> Result<(), SpecError> {
    let url_ok = n
        .webhook
        .parse::<http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if !url_ok {
        let f = format!("{field}.webhook");
        return Err(src.error_at(
            at(&f),
            f,
            format!("{:?} is not an http or https URL", n.webhook),
            Some("e.g. `https://hooks.example.com/backout`".into()),
        ));
    }
    for (i, e) in n.events.iter().enumerate() {
        if !Notification::EVENTS.contains(&e.as_str()) {
            let f = format!("{field}.events[{i}]");
            return Err(src.error_at(
                at(&f),
                f,
                format!(
                    "unknown event {e:?}; the events are {}",
                    Notification::EVENTS.join(", ")
                ),
                Some("leave `events` out to hear about every event".into()),
            ));
        }
    }
    Ok(())
}

impl ServiceFile {
    pub(super) fn validate(self, src: &Source) -> Result<ServiceSpec, SpecError> {
        check_name(src, &self.name, "name", "service name")?;
        // What parses but makes no sense is found by path; the span tree
        // says where that path was written (`or` where it cannot tell).
        let tree = SpanTree::parse(&src.text);
        let located = |path: &str, or: serde_saphyr::Location| match &tree {
            Some(t) => match t.locate(path) {
                (at, true) => at,
                _ => or,
            },
            None => or,
        };

        let mut hosts = Vec::with_capacity(self.hosts.len());
        for (i, h) in self.hosts.iter().enumerate() {
            let host = h.value.trim().to_ascii_lowercase();
            let valid = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.*".contains(&b));
            if !valid {
                return Err(src.error_at(
                    h.referenced,
                    format!("hosts[{i}]"),
                    format!("{:?} is not a host name", h.value),
                    Some(
                        "write a host name without scheme or port, e.g. `shop.example.com`".into(),
                    ),
                ));
            }
            hosts.push(host);
        }

        let path_prefix = match self.path_prefix {
            Some(p) if !p.value.starts_with('/') => {
                return Err(src.error_at(
                    p.referenced,
                    "path_prefix",
                    format!("{:?} must start with `/`", p.value),
                    Some("e.g. `/api`".into()),
                ));
            }
            Some(p) => Some(p.value.trim_end_matches('/').to_string()).filter(|p| !p.is_empty()),
            None => None,
        };

        let version_header = match self.version_header {
            Some(h) => {
                if http::HeaderName::from_bytes(h.value.as_bytes()).is_err() {
                    return Err(src.error_at(
                        h.referenced,
                        "version_header",
                        format!("{:?} is not a valid HTTP header name", h.value),
                        Some("e.g. `x-backout-version`".into()),
                    ));
                }
                Some(h.value.to_ascii_lowercase())
            }
            None => None,
        };

        let timeout =
            |t: Option<Spanned<Duration>>, name: &str, default: Duration, hint: &str| match t {
                Some(t) if t.value.get().is_zero() => Err(src.error_at(
                    t.referenced,
                    format!("timeouts.{name}"),
                    "must be above zero",
                    Some(hint.into()),
                )),
                Some(t) => Ok(t.value),
                None => Ok(default),
            };
        let defaults = TimeoutsSpec::default();
        let timeouts = match self.timeouts {
            Some(t) => TimeoutsSpec {
                connect: timeout(
                    t.connect,
                    "connect",
                    defaults.connect,
                    "no connection is made in no time; the default is `2s`",
                )?,
                request: timeout(
                    t.request,
                    "request",
                    defaults.request,
                    "every request would time out; the default is `30s`",
                )?,
            },
            None => defaults,
        };

        let mut trusted_proxies = Vec::with_capacity(self.trusted_proxies.len());
        for (i, t) in self.trusted_proxies.iter().enumerate() {
            let text = t.value.trim();
            let net = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match net {
                Ok(n) => trusted_proxies.push(n.trunc()),
                Err(_) => {
                    return Err(src.error_at(
                        t.referenced,
                        format!("trusted_proxies[{i}]"),
                        format!("{text:?} is not an address or an address range"),
                        Some(
                            "write an address or a CIDR range, e.g. `10.0.0.5` or `10.0.0.0/8`"
                                .into(),
                        ),
                    ));
                }
            }
        }

        let tls = match &self.tls {
            Some(t) => Some(TlsSpec {
                cert: file_path(src, &t.cert, "tls.cert", "its certificate chain (PEM)")?,
                key: file_path(src, &t.key, "tls.key", "its private key (PEM)")?,
            }),
            None => None,
        };
        let upstream_tls = match &self.upstream_tls {
            Some(UpstreamTlsFile { ca: Some(ca) }) => UpstreamTlsSpec {
                ca: Some(file_path(
                    src,
                    ca,
                    "upstream_tls.ca",
                    "the CA certificates (PEM) that sign the endpoints' certificates",
                )?),
            },
            _ => UpstreamTlsSpec::default(),
        };

        if let Some(sticky) = &self.sticky {
            check_sticky(src, sticky, &located)?;
        }

        let (pools_at, pools_in) = match self.pools {
            Some(p) => (Some(p.referenced), p.value),
            None => (None, BTreeMap::new()),
        };
        if let Some(at) = pools_at
            && pools_in.is_empty()
        {
            return Err(src.error_at(
                at,
                "pools",
                "`pools` is empty",
                Some("list at least one version pool, e.g. `pools: {v1: {endpoints: [http://127.0.0.1:9001]}}`, or leave `pools` out and let releases create them (`backout up`)".into()),
            ));
        }
        let mut pools = BTreeMap::new();
        for (name, pool) in pools_in {
            let at = |field: &str| format!("pools.{name}.{field}");
            check_name(
                src,
                &Spanned::new(
                    name.clone(),
                    pools_at.unwrap_or(serde_saphyr::Location::UNKNOWN),
                    pools_at.unwrap_or(serde_saphyr::Location::UNKNOWN),
                ),
                "pools",
                "pool name",
            )?;
            if pool.endpoints.value.is_empty() {
                return Err(src.error_at(
                    pool.endpoints.referenced,
                    at("endpoints"),
                    "a pool needs at least one endpoint",
                    Some("e.g. `endpoints: [http://127.0.0.1:9001]`".into()),
                ));
            }
            let endpoints = &pool.endpoints.value;
            if let Some((i, e)) = endpoints
                .iter()
                .enumerate()
                .find(|(i, e)| endpoints[..*i].contains(e))
            {
                let field = format!("pools.{name}.endpoints[{i}]");
                return Err(src.error_at(
                    located(&field, pool.endpoints.referenced),
                    field,
                    format!("endpoint {e} is listed twice"),
                    Some("list each endpoint once; to give one more traffic, use weights between pools, not repeats".into()),
                ));
            }
            if pool.protocol == Protocol::H2c
                && let Some(i) = endpoints.iter().position(EndpointUrl::is_tls)
            {
                let field = format!("pools.{name}.endpoints[{i}]");
                return Err(src.error_at(
                    located(&field, pool.endpoints.referenced),
                    field,
                    format!("{} is reached over TLS, but `protocol: h2c` is HTTP/2 without TLS", endpoints[i]),
                    Some("https:// endpoints speak HTTP/1.1: leave `protocol` out, or use http:// for h2c".into()),
                ));
            }
            let probes = pool.probes.or_else(|| self.probes.clone());
            let breaker = pool.breaker.or_else(|| self.breaker.clone());
            let bulkhead = pool.bulkhead.or_else(|| self.bulkhead.clone());
            let outlier = pool.outlier.or_else(|| self.outlier.clone());
            pools.insert(
                name.clone(),
                PoolSpec {
                    endpoints: pool.endpoints.value,
                    protocol: pool.protocol,
                    probes: probes.map_or(Ok(ProbesSpec::default()), |p| {
                        p.validate(src, &at("probes"))
                    })?,
                    breaker: breaker.map_or(Ok(BreakerSpec::default()), |b| {
                        b.validate(src, &at("breaker"))
                    })?,
                    bulkhead: bulkhead.map_or(BulkheadSpec::default(), |b| BulkheadSpec {
                        max_concurrent: b.max_concurrent,
                    }),
                    outlier: outlier.map_or(Ok(OutlierSpec::default()), |o| {
                        o.validate(src, &at("outlier"))
                    })?,
                },
            );
        }
        // Pools created at run time (one per release) get the service-wide
        // sections.
        let pool_defaults = PoolSpec {
            endpoints: Vec::new(),
            protocol: crate::endpoint::Protocol::default(),
            probes: self
                .probes
                .map_or(Ok(ProbesSpec::default()), |p| p.validate(src, "probes"))?,
            breaker: self
                .breaker
                .map_or(Ok(BreakerSpec::default()), |b| b.validate(src, "breaker"))?,
            bulkhead: self
                .bulkhead
                .map_or(BulkheadSpec::default(), |b| BulkheadSpec {
                    max_concurrent: b.max_concurrent,
                }),
            outlier: self
                .outlier
                .map_or(Ok(OutlierSpec::default()), |o| o.validate(src, "outlier"))?,
        };

        let route = match self.route {
            None if !pools.is_empty() => {
                return Err(src.error_at(
                    pools_at.unwrap_or(serde_saphyr::Location::UNKNOWN),
                    "route",
                    "a service with `pools` needs a `route` between them",
                    Some("e.g. `route: {stable: v1}`".into()),
                ));
            }
            None => None,
            Some(route) => {
                let names: Vec<&str> = pools.keys().map(String::as_str).collect();
                if let Err(e) = RouteTable::compile(route.value.clone(), &names) {
                    let field = format!("route.{}", e.field());
                    return Err(src.error_at(
                        located(&field, route.referenced),
                        field,
                        e.to_string(),
                        None,
                    ));
                }
                Some(route.value)
            }
        };

        let at = |path: &str| {
            tree.as_ref()
                .map_or(serde_saphyr::Location::UNKNOWN, |t| t.locate(path).0)
        };
        let strategy = match self.strategy {
            Some(s) => s
                .validate()
                .map_err(|e| src.error_at(at(&e.path), e.path.clone(), e.message, e.hint))?,
            None => crate::strategy::Strategy::default(),
        };
        let analysis = self.analysis.unwrap_or_default();
        if let Err(errors) = analysis.validate("analysis")
            && let Some(e) = errors.0.first()
        {
            return Err(src.error_at(at(&e.path), e.path.clone(), e.message.clone(), None));
        }

        for (i, n) in self.notifications.iter().enumerate() {
            check_notification(src, n, &format!("notifications[{i}]"), &at)?;
        }

        let driver = match self.driver {
            Some(d) => Some(d.validate(src, "driver")?),
            None => None,
        };

        Ok(ServiceSpec {
            name: self.name.value,
            listen: self.listen,
            hosts,
            path_prefix,
            strip_prefix: self.strip_prefix,
            sticky: self.sticky.map(|s| s.value),
            version_header,
            timeouts,
            trusted_proxies,
            tls,
            upstream_tls,
            pools,
            route,
            pool_defaults,
            strategy,
            analysis,
            rollback: self.rollback.unwrap_or_default(),
            history: self.history.unwrap_or_default(),
            gates: self.gates.unwrap_or_default(),
            notifications: self.notifications,
            driver,
        })
    }
}

impl ProbesFile {
    fn validate(self, src: &Source, field: &str) -> Result<ProbesSpec, SpecError> {
        let one = |p: Option<ProbeFile>, kind: &str, single_success: bool| {
            p.map(|p| p.validate(src, &format!("{field}.{kind}"), single_success))
                .transpose()
        };
        Ok(ProbesSpec {
            startup: one(self.startup, "startup", true)?,
            liveness: one(self.liveness, "liveness", true)?,
            readiness: one(self.readiness, "readiness", false)?,
        })
    }
}

impl ProbeFile {
    fn validate(
        self,
        src: &Source,
        field: &str,
        single_success: bool,
    ) -> Result<ProbeSpec, SpecError> {
        let defaults = ProbeSpec::http("/");
        if !self.path.value.starts_with('/') {
            return Err(src.error_at(
                self.path.referenced,
                format!("{field}.path"),
                format!("probe path {:?} must start with `/`", self.path.value),
                Some("e.g. `/healthz`".into()),
            ));
        }
        let period = self.period.as_ref().map_or(defaults.period, |p| p.value);
        let timeout = self.timeout.as_ref().map_or(defaults.timeout, |t| t.value);
        if period.get().is_zero() {
            let at = self.period.map_or(self.path.referenced, |p| p.referenced);
            return Err(src.error_at(
                at,
                format!("{field}.period"),
                "probe period must be above zero",
                None,
            ));
        }
        if timeout.get().is_zero() || timeout > period {
            let at = self.timeout.map_or(self.path.referenced, |t| t.referenced);
            return Err(src.error_at(
                at,
                format!("{field}.timeout"),
                format!(
                    "probe timeout {timeout} must be above zero and at most the period ({period})"
                ),
                Some("a probe that can outlast its period overlaps the next one".into()),
            ));
        }
        let success_threshold = self
            .success_threshold
            .as_ref()
            .map_or(defaults.success_threshold, |s| s.value);
        if single_success && success_threshold.get() != 1 {
            let at = self
                .success_threshold
                .map_or(self.path.referenced, |s| s.referenced);
            return Err(src.error_at(
                at,
                format!("{field}.success_threshold"),
                format!("must be 1 for startup and liveness probes; got {success_threshold}"),
                Some("as in Kubernetes: one success proves the process is up".into()),
            ));
        }
        Ok(ProbeSpec {
            path: self.path.value,
            period,
            timeout,
            initial_delay: self.initial_delay.unwrap_or_default(),
            success_threshold,
            failure_threshold: self.failure_threshold.unwrap_or(defaults.failure_threshold),
        })
    }
}

impl BreakerFile {
    fn validate(self, src: &Source, field: &str) -> Result<BreakerSpec, SpecError> {
        let d = BreakerSpec::default();
        let failure_rate = match self.failure_rate {
            Some(r) if !(r.value > 0.0 && r.value <= 100.0) => {
                return Err(src.error_at(
                    r.referenced,
                    format!("{field}.failure_rate"),
                    format!(
                        "failure rate is a percentage above 0 and at most 100; got {}",
                        r.value
                    ),
                    Some(
                        "e.g. `failure_rate: 50` opens the breaker when half the requests fail"
                            .into(),
                    ),
                ));
            }
            Some(r) => r.value,
            None => d.failure_rate,
        };
        let nonzero = |v: Option<Spanned<Duration>>, name: &str, default: Duration| match v {
            Some(v) if v.value.get().is_zero() => Err(src.error_at(
                v.referenced,
                format!("{field}.{name}"),
                "must be above zero",
                None,
            )),
            Some(v) => Ok(v.value),
            None => Ok(default),
        };
        Ok(BreakerSpec {
            enabled: self.enabled.unwrap_or(d.enabled),
            failure_rate,
            min_requests: self.min_requests.unwrap_or(d.min_requests),
            window: nonzero(self.window, "window", d.window)?,
            consecutive_failures: self.consecutive_failures.unwrap_or(d.consecutive_failures),
            cooldown: nonzero(self.cooldown, "cooldown", d.cooldown)?,
            half_open_requests: self.half_open_requests.unwrap_or(d.half_open_requests),
        })
    }
}

impl OutlierFile {
    fn validate(self, src: &Source, field: &str) -> Result<OutlierSpec, SpecError> {
        let d = OutlierSpec::default();
        let base = self
            .base_ejection
            .as_ref()
            .map_or(d.base_ejection, |b| b.value);
        let max = self
            .max_ejection
            .as_ref()
            .map_or(d.max_ejection, |m| m.value);
        if base.get().is_zero() || max < base {
            let at = self
                .max_ejection
                .or(self.base_ejection)
                .map(|s| s.referenced)
                .unwrap_or(serde_saphyr::Location::UNKNOWN);
            return Err(src.error_at(
                at,
                format!("{field}.max_ejection"),
                format!("need 0 < base_ejection ({base}) <= max_ejection ({max})"),
                None,
            ));
        }
        let percent = match self.max_ejection_percent {
            Some(p) if p.value > 100 => {
                return Err(src.error_at(
                    p.referenced,
                    format!("{field}.max_ejection_percent"),
                    format!("a percentage from 0 to 100; got {}", p.value),
                    None,
                ));
            }
            Some(p) => p.value,
            None => d.max_ejection_percent,
        };
        Ok(OutlierSpec {
            enabled: self.enabled.unwrap_or(d.enabled),
            consecutive_failures: self.consecutive_failures.unwrap_or(d.consecutive_failures),
            base_ejection: base,
            max_ejection: max,
            max_ejection_percent: percent,
        })
    }
}
