//! The static driver: something else runs the versions; each release
//! names its endpoints (`--set endpoints=http://10.0.0.5:8080,http://…`)
//! and backout only moves traffic between them.
//!
//! Deploy and teardown only record. The endpoints come from the release
//! every time, so adoption after a crash needs no record at all.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use backout_spec::{EndpointUrl, StaticSpec};
use tokio::sync::broadcast;

use super::{
    DeployRequest, Driver, DriverError, DriverEvent, ErrorKind, Instance, clock, event_channel,
    instance_id,
};

const KIND: &str = "static";

/// Endpoints given per release. See the module docs.
pub struct StaticDriver {
    versions: Mutex<BTreeMap<(String, String), Vec<Instance>>>,
    events: broadcast::Sender<DriverEvent>,
}

impl StaticDriver {
    pub fn new(_spec: StaticSpec) -> Self {
        StaticDriver {
            versions: Mutex::new(BTreeMap::new()),
            events: event_channel(),
        }
    }

    fn record(&self, req: &DeployRequest) -> Result<Vec<Instance>, DriverError> {
        let endpoints = endpoints(req)?;
        let key = (req.service.clone(), req.version.clone());
        let mut versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        // Keep the start time of what was recorded already: deploying
        // twice changes nothing.
        let known = versions.get(&key);
        let now = clock::unix_millis();
        let instances: Vec<Instance> = endpoints
            .into_iter()
            .enumerate()
            .map(|(i, endpoint)| {
                let replica = i as u32;
                let started_at_ms = known
                    .and_then(|k| {
                        k.iter()
                            .find(|x| x.replica == replica && x.endpoint == endpoint)
                    })
                    .map_or(now, |x| x.started_at_ms);
                Instance {
                    id: instance_id(&req.service, &req.version, replica),
                    service: req.service.clone(),
                    version: req.version.clone(),
                    replica,
                    endpoint,
                    pid: None,
                    started_at_ms,
                    cmdline: Vec::new(),
                }
            })
            .collect();
        versions.insert(key, instances.clone());
        Ok(instances)
    }
}

/// The release's endpoints, each checked, with errors naming the key.
fn endpoints(req: &DeployRequest) -> Result<Vec<EndpointUrl>, DriverError> {
    let key = StaticSpec::ENDPOINTS_KEY;
    let example = format!(
        "`backout release {} --version {} --set {key}=http://10.0.0.5:8080,http://10.0.0.6:8080`",
        req.service, req.version
    );
    let error = |message: String| {
        DriverError::new(
            KIND,
            &req.service,
            &req.version,
            ErrorKind::Release,
            message,
            format!("register the release with its endpoints, e.g. {example}"),
        )
    };
    let Some(list) = req.config.get(key) else {
        return Err(error(format!(
            "the release has no `{key}` setting, so there is nothing to send traffic to"
        )));
    };
    let mut out: Vec<EndpointUrl> = Vec::new();
    for (i, text) in list.split(',').map(str::trim).enumerate() {
        if text.is_empty() {
            continue;
        }
        let url = EndpointUrl::parse(text)
            .map_err(|e| error(format!("setting `{key}`, entry {i}: {e}")))?;
        if out.contains(&url) {
            return Err(error(format!("setting `{key}` lists {url} twice")));
        }
        out.push(url);
    }
    if out.is_empty() {
        return Err(error(format!("setting `{key}` lists no endpoint")));
    }
    Ok(out)
}

#[async_trait]
impl Driver for StaticDriver {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn deploy(&self, req: &DeployRequest) -> Result<Vec<Instance>, DriverError> {
        self.record(req)
    }

    /// The endpoints are what the release lists, whatever the count asked:
    /// scaling is up to whoever runs them.
    async fn scale(&self, req: &DeployRequest) -> Result<Vec<Instance>, DriverError> {
        self.record(req)
    }

    async fn teardown(&self, service: &str, version: &str) -> Result<(), DriverError> {
        self.versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(service.to_string(), version.to_string()));
        Ok(())
    }

    async fn restart(
        &self,
        service: &str,
        version: &str,
        instance_id: &str,
    ) -> Result<Instance, DriverError> {
        Err(DriverError::new(
            KIND,
            service,
            version,
            ErrorKind::Unsupported,
            format!("cannot restart {instance_id}: backout does not run static endpoints"),
            "restart it where it runs; the proxy's probes and outlier ejection keep traffic off it meanwhile",
        ))
    }

    async fn instances(&self, service: &str, version: &str) -> Result<Vec<Instance>, DriverError> {
        Ok(self
            .versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(service.to_string(), version.to_string()))
            .cloned()
            .unwrap_or_default())
    }

    /// The release is the record: the recorded instances are not needed.
    async fn adopt(
        &self,
        req: &DeployRequest,
        _recorded: &[Instance],
    ) -> Result<Vec<Instance>, DriverError> {
        self.record(req)
    }

    fn subscribe(&self) -> broadcast::Receiver<DriverEvent> {
        self.events.subscribe()
    }
}
