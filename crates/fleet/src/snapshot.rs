//! A service's whole configuration as a proxy needs it, as one versioned
//! value: the settings that match and forward its requests, its pools
//! with their endpoints and readiness, and the route between them.
//!
//! Full state, not deltas: a snapshot is small (a few pools of a few
//! endpoints), so a proxy that missed any number of them needs only the
//! latest, and applying one is idempotent.

use std::collections::{BTreeMap, BTreeSet};

use backout_routing::{RouteSpec, RouteTable, StickyKey};
use backout_spec::{
    AnalysisConfig, EndpointUrl, GatesPolicy, HistoryPolicy, PoolSpec, RollbackPolicy, ServiceSpec,
    Strategy, TimeoutsSpec,
};
use serde::{Deserialize, Serialize};

/// One service's configuration at one generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub service: String,
    /// Increases with every change of `config`. A proxy never goes back to
    /// a lower generation of the same epoch.
    pub generation: u64,
    /// The control plane's identity, fixed when its store was created: a
    /// control plane started on a new store starts counting again, and the
    /// proxies must follow it rather than refuse its low generations.
    pub epoch: String,
    #[serde(flatten)]
    pub config: Config,
}

/// What a snapshot says, without its version stamp: the controller
/// compares these to know whether anything changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub settings: ServiceSettings,
    /// Pools by version name.
    pub pools: BTreeMap<String, PoolSnapshot>,
    /// `None` until the first release is ready.
    pub route: Option<RouteSpec>,
}

/// How the proxy matches and forwards the service's requests: the parts
/// of the service file that the data plane reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSettings {
    pub hosts: Vec<String>,
    pub path_prefix: Option<String>,
    pub strip_prefix: bool,
    pub sticky: Option<StickyKey>,
    pub version_header: Option<String>,
    pub timeouts: TimeoutsSpec,
    /// Proxies in front whose forwarding headers are kept.
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where each proxy finds the service's certificate and key: paths on
    /// the proxy's machine, never the key itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<backout_spec::TlsSpec>,
    /// The CA bundle `https://` endpoints are verified against (a path on
    /// the proxy's machine); without one, the Mozilla roots.
    #[serde(default, skip_serializing_if = "is_default")]
    pub upstream_tls: backout_spec::UpstreamTlsSpec,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// One version's pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolSnapshot {
    /// Endpoints and the protection around them (probes, breaker,
    /// bulkhead, outlier ejection).
    pub spec: PoolSpec,
    /// The endpoints the control plane last knew to be ready. A proxy
    /// starts endpoints it has not probed yet in this state (so a proxy
    /// that starts from its state file, or joins late, serves at once);
    /// endpoints it already probes keep its own view.
    pub ready: Vec<EndpointUrl>,
}

/// Why a snapshot cannot be applied: the proxy answers with a NACK that
/// carries this and keeps serving what it had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SnapshotError {
    /// Where in the snapshot, e.g. `pools.v2.spec.probes.readiness.period`.
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> SnapshotError {
    SnapshotError {
        field: field.into(),
        message: message.into(),
    }
}

impl ServiceSettings {
    /// The data-plane settings of a service file.
    pub fn of(spec: &ServiceSpec) -> Self {
        ServiceSettings {
            hosts: spec.hosts.clone(),
            path_prefix: spec.path_prefix.clone(),
            strip_prefix: spec.strip_prefix,
            sticky: spec.sticky.clone(),
            version_header: spec.version_header.clone(),
            timeouts: spec.timeouts,
            trusted_proxies: spec.trusted_proxies.clone(),
            tls: spec.tls.clone(),
            upstream_tls: spec.upstream_tls.clone(),
        }
    }
}

impl Snapshot {
    /// Everything a proxy must refuse before it touches its state, so that
    /// a bad snapshot from a peer can never make it panic or serve
    /// garbage: names, endpoints, durations and the route against the
    /// snapshot's own pools.
    pub fn check(&self) -> Result<(), SnapshotError> {
        if !backout_spec::is_valid_name(&self.service) {
            return Err(invalid(
                "service",
                format!("{:?} is not a valid service name", self.service),
            ));
        }
        if self.generation == 0 {
            return Err(invalid("generation", "generations start at 1"));
        }
        let settings = &self.config.settings;
        if settings.timeouts.connect.get().is_zero() || settings.timeouts.request.get().is_zero() {
            return Err(invalid(
                "settings.timeouts",
                "timeouts must be longer than 0",
            ));
        }
        if let Some(p) = &settings.path_prefix
            && !p.starts_with('/')
        {
            return Err(invalid(
                "settings.path_prefix",
                format!("{p:?} does not start with `/`"),
            ));
        }
        for (name, pool) in &self.config.pools {
            check_pool(name, pool)?;
        }
        if let Some(route) = &self.config.route {
            let names: Vec<&str> = self.config.pools.keys().map(String::as_str).collect();
            RouteTable::compile(route.clone(), &names)
                .map_err(|e| invalid("route", e.to_string()))?;
        }
        Ok(())
    }

    /// The service spec a proxy builds the service from: the snapshot's
    /// settings, and defaults for what only the control plane reads. It
    /// has no pools and no route yet: applying the snapshot puts them in,
    /// with the endpoints' readiness.
    pub fn to_spec(&self) -> ServiceSpec {
        let s = &self.config.settings;
        ServiceSpec {
            name: self.service.clone(),
            listen: None,
            hosts: s.hosts.clone(),
            path_prefix: s.path_prefix.clone(),
            strip_prefix: s.strip_prefix,
            sticky: s.sticky.clone(),
            version_header: s.version_header.clone(),
            timeouts: s.timeouts,
            trusted_proxies: s.trusted_proxies.clone(),
            tls: s.tls.clone(),
            upstream_tls: s.upstream_tls.clone(),
            pools: BTreeMap::new(),
            route: None,
            pool_defaults: PoolSpec::new(Vec::new()),
            strategy: Strategy::default(),
            analysis: AnalysisConfig::default(),
            rollback: RollbackPolicy::default(),
            history: HistoryPolicy::default(),
            gates: GatesPolicy::default(),
            notifications: Vec::new(),
            driver: None,
        }
    }
}

fn check_pool(name: &str, pool: &PoolSnapshot) -> Result<(), SnapshotError> {
    let at = |f: &str| format!("pools.{name}.{f}");
    if !backout_spec::is_valid_name(name) {
        return Err(invalid(
            format!("pools.{name}"),
            format!("{name:?} is not a valid version name"),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, e) in pool.spec.endpoints.iter().enumerate() {
        if !seen.insert(e.to_string()) {
            return Err(invalid(
                at(&format!("spec.endpoints[{i}]")),
                format!("{e} is listed twice"),
            ));
        }
    }
    if pool.spec.protocol == backout_spec::Protocol::H2c
        && let Some(e) = pool.spec.endpoints.iter().find(|e| e.is_tls())
    {
        return Err(invalid(
            at("spec.protocol"),
            format!("h2c is HTTP/2 without TLS, but {e} is reached over TLS"),
        ));
    }
    for e in &pool.ready {
        if !pool.spec.endpoints.contains(e) {
            return Err(invalid(
                at("ready"),
                format!("{e} is not one of the pool's endpoints"),
            ));
        }
    }
    let probes = &pool.spec.probes;
    for (kind, probe) in [
        ("startup", &probes.startup),
        ("liveness", &probes.liveness),
        ("readiness", &probes.readiness),
    ] {
        let Some(p) = probe else { continue };
        if p.period.get().is_zero() || p.timeout.get().is_zero() {
            return Err(invalid(
                at(&format!("spec.probes.{kind}")),
                "a probe's period and timeout must be longer than 0",
            ));
        }
        if !p.path.starts_with('/') {
            return Err(invalid(
                at(&format!("spec.probes.{kind}.path")),
                format!("{:?} does not start with `/`", p.path),
            ));
        }
    }
    let b = &pool.spec.breaker;
    if !(0.0..=100.0).contains(&b.failure_rate) {
        return Err(invalid(
            at("spec.breaker.failure_rate"),
            format!("{} is not a percentage", b.failure_rate),
        ));
    }
    if b.enabled && (b.window.get().is_zero() || b.cooldown.get().is_zero()) {
        return Err(invalid(
            at("spec.breaker"),
            "the breaker's window and cool-down must be longer than 0",
        ));
    }
    let o = &pool.spec.outlier;
    if o.max_ejection_percent > 100 {
        return Err(invalid(
            at("spec.outlier.max_ejection_percent"),
            format!("{} is not a percentage", o.max_ejection_percent),
        ));
    }
    if o.enabled && (o.base_ejection.get().is_zero() || o.max_ejection < o.base_ejection) {
        return Err(invalid(
            at("spec.outlier"),
            "the base ejection must be longer than 0 and no longer than the maximum",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use backout_routing::Permille;

    fn url(s: &str) -> EndpointUrl {
        EndpointUrl::parse(s).expect("url")
    }

    fn snapshot() -> Snapshot {
        let pool = |e: &str| PoolSnapshot {
            spec: PoolSpec::new(vec![url(e)]),
            ready: vec![url(e)],
        };
        Snapshot {
            service: "shop".into(),
            generation: 3,
            epoch: "e1".into(),
            config: Config {
                settings: ServiceSettings {
                    hosts: vec![],
                    path_prefix: None,
                    strip_prefix: false,
                    sticky: None,
                    version_header: None,
                    timeouts: TimeoutsSpec::default(),
                    trusted_proxies: Vec::new(),
                    tls: None,
                    upstream_tls: Default::default(),
                },
                pools: BTreeMap::from([
                    ("v1".into(), pool("http://127.0.0.1:9001")),
                    ("v2".into(), pool("http://127.0.0.1:9002")),
                ]),
                route: Some(RouteSpec {
                    stable: "v1".into(),
                    canary: Some("v2".into()),
                    canary_weight: Permille::from_percent(10.0).expect("weight"),
                    rules: vec![],
                }),
            },
        }
    }

    fn check(change: impl FnOnce(&mut Snapshot), expected: &str) {
        let mut s = snapshot();
        change(&mut s);
        let got = match s.check() {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, expected);
    }

    #[test]
    fn what_a_proxy_refuses() {
        check(|_| {}, "ok");
        check(
            |s| s.service = "Shop!".into(),
            r#"service: "Shop!" is not a valid service name"#,
        );
        check(|s| s.generation = 0, "generation: generations start at 1");
        check(
            |s| s.config.route.as_mut().expect("route").canary = Some("v3".into()),
            r#"route: unknown pool "v3"; known pools: v1, v2"#,
        );
        check(
            |s| {
                let p = s.config.pools.get_mut("v1").expect("v1");
                p.spec.endpoints.push(url("http://127.0.0.1:9001"));
            },
            "pools.v1.spec.endpoints[1]: http://127.0.0.1:9001 is listed twice",
        );
        check(
            |s| {
                let p = s.config.pools.get_mut("v2").expect("v2");
                p.ready = vec![url("http://127.0.0.1:1")];
            },
            "pools.v2.ready: http://127.0.0.1:1 is not one of the pool's endpoints",
        );
        check(
            |s| {
                let p = s.config.pools.get_mut("v2").expect("v2");
                let mut probe = backout_spec::ProbeSpec::http("/ready");
                probe.period = backout_spec::Duration::default();
                p.spec.probes.readiness = Some(probe);
            },
            "pools.v2.spec.probes.readiness: a probe's period and timeout must be longer than 0",
        );
        check(
            |s| {
                let p = s.config.pools.get_mut("v2").expect("v2");
                p.spec.breaker.failure_rate = 150.0;
            },
            "pools.v2.spec.breaker.failure_rate: 150 is not a percentage",
        );
        check(
            |s| s.config.settings.timeouts.connect = backout_spec::Duration::default(),
            "settings.timeouts: timeouts must be longer than 0",
        );
    }

    #[test]
    fn a_snapshot_round_trips_through_json() {
        let s = snapshot();
        let json = serde_json::to_string(&s).expect("serialise");
        let back: Snapshot = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, s);
        let spec = back.to_spec();
        assert_eq!((spec.name.as_str(), spec.pools.len()), ("shop", 0));
        assert_eq!(ServiceSettings::of(&spec), s.config.settings);
    }
}
