//! The process driver: backout runs each replica itself, as a child
//! process on a loopback port, and keeps it running.
//!
//! - Each replica is the leader of its own process group, so stopping it
//!   stops what it started, and a Ctrl-C meant for backout does not reach
//!   it.
//! - stdout and stderr go straight to `{data_dir}/logs/{service}/
//!   {version}-{replica}.log` (not through a pipe), so a replica keeps
//!   running and logging when backout itself crashes.
//! - A supervisor task per replica starts it again with back-off when it
//!   exits, and reports that as a [`DriverEvent`].
//! - `teardown` sends SIGTERM to the group, waits `stop_timeout`, then
//!   SIGKILL.
//! - `adopt` takes over replicas recorded before a crash whose pid still
//!   runs the recorded command line, and those the driver's own run
//!   records name (started, but not yet in the event log, at the crash).

mod launch;
mod log;
mod port;
mod record;
mod supervisor;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use backout_spec::ProcessSpec;
use futures_util::future::join_all;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{
    DeployRequest, Driver, DriverContext, DriverError, DriverEvent, ErrorKind, Instance,
    check_names, event_channel, group,
};
use launch::Running;

const KIND: &str = "process";

/// Runs replicas as supervised local processes. See the module docs.
pub struct ProcessDriver {
    shared: Arc<Shared>,
}

/// What the driver and its supervisor tasks share.
struct Shared {
    spec: ProcessSpec,
    /// Where commands run: the spec's `workdir` under the service file's
    /// directory.
    workdir: PathBuf,
    /// `{data_dir}/logs`.
    log_dir: PathBuf,
    /// `{data_dir}/run`: a record per replica (see `record`).
    run_dir: PathBuf,
    state: Mutex<State>,
    events: broadcast::Sender<DriverEvent>,
    gate: super::Gate,
}

/// `(service, version)`.
type Key = (String, String);

#[derive(Default)]
struct State {
    versions: BTreeMap<Key, Version>,
    /// Ports held by this driver's replicas (or reserved for one that is
    /// starting), so two replicas never get the same port.
    ports: BTreeSet<u16>,
    /// Serialises operations on one version; different versions proceed
    /// in parallel.
    locks: BTreeMap<Key, Arc<tokio::sync::Mutex<()>>>,
}

struct Version {
    req: Arc<DeployRequest>,
    replicas: BTreeMap<u32, Replica>,
}

/// A replica as the table knows it; its supervisor task owns the process.
struct Replica {
    instance: Instance,
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

/// What the driver asks of a supervisor.
enum Command {
    /// Stop the process for good and end the task.
    Stop(oneshot::Sender<Result<(), DriverError>>),
    /// Stop the process and start it again now.
    Restart(oneshot::Sender<Result<Instance, DriverError>>),
}

impl ProcessDriver {
    pub fn new(spec: ProcessSpec, ctx: DriverContext) -> Self {
        let workdir = match &spec.workdir {
            Some(dir) => ctx.base_dir.join(dir),
            None => ctx.base_dir.clone(),
        };
        ProcessDriver {
            shared: Arc::new(Shared {
                spec,
                workdir,
                log_dir: ctx.data_dir.join("logs"),
                run_dir: ctx.data_dir.join("run"),
                state: Mutex::new(State::default()),
                events: event_channel(),
                gate: ctx.gate,
            }),
        }
    }

    /// Where a replica's stdout and stderr go.
    pub fn log_path(&self, service: &str, version: &str, replica: u32) -> PathBuf {
        self.shared.log_path(service, version, replica)
    }

    /// Starts missing replicas and stops extra ones: deploy and scale.
    async fn reconcile(&self, req: &DeployRequest) -> Result<Vec<Instance>, DriverError> {
        check_names(KIND, &req.service, &req.version)?;
        let key = key(&req.service, &req.version);
        let lock = self.shared.op_lock(&key);
        let _guard = lock.lock().await;
        let req = self.shared.record_request(req)?;

        let extras: Vec<Replica> = {
            let mut state = self.shared.lock();
            match state.versions.get_mut(&key) {
                Some(v) => {
                    let doomed: Vec<u32> =
                        v.replicas.range(req.replicas..).map(|(r, _)| *r).collect();
                    doomed
                        .iter()
                        .rev()
                        .filter_map(|r| v.replicas.remove(r))
                        .collect()
                }
                None => Vec::new(),
            }
        };
        let stopped = join_all(extras.into_iter().map(|r| self.shared.stop(r))).await;

        let missing: Vec<u32> = {
            let state = self.shared.lock();
            let running = state.versions.get(&key).map(|v| &v.replicas);
            (0..req.replicas)
                .filter(|r| running.is_none_or(|m| !m.contains_key(r)))
                .collect()
        };
        let started = join_all(missing.into_iter().map(|r| self.start(&key, &req, r))).await;

        stopped
            .into_iter()
            .chain(started)
            .collect::<Result<Vec<()>, DriverError>>()?;
        Ok(self.shared.snapshot(&key))
    }

    /// Starts replica `replica` and puts it under supervision.
    async fn start(
        &self,
        key: &Key,
        req: &Arc<DeployRequest>,
        replica: u32,
    ) -> Result<(), DriverError> {
        let port = self.shared.reserve_port(req, None)?;
        let running = match launch::launch(&self.shared, req, replica, port).await {
            Ok(running) => running,
            Err(e) => {
                self.shared.release_port(port);
                return Err(e);
            }
        };
        self.supervise(key, req, running);
        Ok(())
    }

    fn supervise(&self, key: &Key, req: &Arc<DeployRequest>, running: Running) {
        let instance = running.instance.clone();
        let (commands, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(supervisor::run(
            Arc::clone(&self.shared),
            Arc::clone(req),
            running,
            rx,
        ));
        let mut state = self.shared.lock();
        if let Some(v) = state.versions.get_mut(key) {
            v.replicas.insert(
                instance.replica,
                Replica {
                    instance,
                    commands,
                    task,
                },
            );
        }
    }
}

impl Drop for ProcessDriver {
    /// Ends the supervisor tasks but leaves the processes running, as a
    /// crash of backout would: a new driver can adopt them.
    fn drop(&mut self) {
        let state = self.shared.lock();
        for v in state.versions.values() {
            for r in v.replicas.values() {
                r.task.abort();
            }
        }
    }
}

#[async_trait]
impl Driver for ProcessDriver {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn deploy(&self, req: &DeployRequest) -> Result<Vec<Instance>, DriverError> {
        self.reconcile(req).await
    }

    async fn scale(&self, req: &DeployRequest) -> Result<Vec<Instance>, DriverError> {
        self.reconcile(req).await
    }

    async fn teardown(&self, service: &str, version: &str) -> Result<(), DriverError> {
        let key = key(service, version);
        let lock = self.shared.op_lock(&key);
        let _guard = lock.lock().await;
        let removed = self.shared.lock().versions.remove(&key);
        let Some(v) = removed else {
            return Ok(());
        };
        let results = join_all(v.replicas.into_values().map(|r| self.shared.stop(r))).await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(())
    }

    async fn restart(
        &self,
        service: &str,
        version: &str,
        instance_id: &str,
    ) -> Result<Instance, DriverError> {
        let key = key(service, version);
        let lock = self.shared.op_lock(&key);
        let _guard = lock.lock().await;
        let commands = {
            let state = self.shared.lock();
            state.versions.get(&key).and_then(|v| {
                v.replicas
                    .values()
                    .find(|r| r.instance.id == instance_id)
                    .map(|r| r.commands.clone())
            })
        };
        let not_found = || {
            self.shared.error(
                service,
                version,
                ErrorKind::NotFound,
                format!("no instance {instance_id:?} runs"),
                "list the version's instances; after a restart of backout, adopt them first",
            )
        };
        let commands = commands.ok_or_else(not_found)?;
        let (reply, answer) = oneshot::channel();
        commands
            .send(Command::Restart(reply))
            .map_err(|_| not_found())?;
        answer.await.map_err(|_| not_found())?
    }

    async fn instances(&self, service: &str, version: &str) -> Result<Vec<Instance>, DriverError> {
        Ok(self.shared.snapshot(&key(service, version)))
    }

    async fn adopt(
        &self,
        req: &DeployRequest,
        recorded: &[Instance],
    ) -> Result<Vec<Instance>, DriverError> {
        check_names(KIND, &req.service, &req.version)?;
        let key = key(&req.service, &req.version);
        let lock = self.shared.op_lock(&key);
        let _guard = lock.lock().await;
        let req = self.shared.record_request(req)?;
        // The replicas the log recorded that still run, then those only
        // the run records name: started just before the crash, before the
        // caller could record them.
        let from_log = recorded
            .iter()
            .filter(|i| i.service == req.service && i.version == req.version && still_runs(i))
            .cloned();
        let from_run_records = self.shared.recorded_alive(&req.service, &req.version);
        let mut adopted = Vec::new();
        for inst in from_log.chain(from_run_records) {
            let known = self
                .shared
                .lock()
                .versions
                .get(&key)
                .is_some_and(|v| v.replicas.contains_key(&inst.replica));
            let Some(port) = inst.endpoint.authority().port_u16() else {
                continue;
            };
            if known {
                continue;
            }
            self.shared.lock().ports.insert(port);
            self.supervise(&key, &req, Running::adopted(inst.clone()));
            adopted.push(inst);
        }
        adopted.sort_by_key(|i| i.replica);
        Ok(adopted)
    }

    fn subscribe(&self) -> broadcast::Receiver<DriverEvent> {
        self.shared.events.subscribe()
    }

    /// Ends the supervisors, as a crash would, and empties the table: a
    /// replica that exits from now on is the new leader's to restart.
    fn release(&self) {
        let mut state = self.shared.lock();
        for v in std::mem::take(&mut state.versions).into_values() {
            for r in v.replicas.into_values() {
                r.task.abort();
            }
        }
        state.ports.clear();
    }
}

/// Whether a recorded instance is still the process it was: alive, leader
/// of its own group, and running the same command line (pids are reused;
/// a recycled one must never be adopted, let alone killed later).
fn still_runs(inst: &Instance) -> bool {
    let Some(pid) = inst.pid else {
        return false;
    };
    !inst.cmdline.is_empty()
        && group::alive(pid)
        && group::pgid_of(pid) == Some(pid)
        && group::cmdline(pid).as_deref() == Some(&inst.cmdline[..])
}

fn key(service: &str, version: &str) -> Key {
    (service.to_string(), version.to_string())
}

impl Shared {
    /// The table. A poisoned lock (a panic elsewhere while holding it) still
    /// holds a consistent table: every update is a single insert or remove.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn op_lock(&self, key: &Key) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(self.lock().locks.entry(key.clone()).or_default())
    }

    fn error(
        &self,
        service: &str,
        version: &str,
        kind: ErrorKind,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> DriverError {
        DriverError::new(KIND, service, version, kind, message, hint)
    }

    /// Records the request for its version, refusing one that would run
    /// another release under the same version.
    fn record_request(&self, req: &DeployRequest) -> Result<Arc<DeployRequest>, DriverError> {
        let key = key(&req.service, &req.version);
        let req = Arc::new(req.clone());
        let mut state = self.lock();
        match state.versions.get_mut(&key) {
            Some(v) if !v.req.same_release(&req) => Err(self.error(
                &req.service,
                &req.version,
                ErrorKind::Conflict,
                "the version already runs with another artifact or other settings",
                "a release is immutable: register a new version, or tear this one down first",
            )),
            Some(v) => {
                v.req = Arc::clone(&req);
                Ok(req)
            }
            None => {
                state.versions.insert(
                    key,
                    Version {
                        req: Arc::clone(&req),
                        replicas: BTreeMap::new(),
                    },
                );
                Ok(req)
            }
        }
    }

    fn snapshot(&self, key: &Key) -> Vec<Instance> {
        self.lock()
            .versions
            .get(key)
            .map(|v| v.replicas.values().map(|r| r.instance.clone()).collect())
            .unwrap_or_default()
    }

    /// Updates the table after a supervisor started a replica again.
    fn update_instance(&self, instance: &Instance) {
        let mut state = self.lock();
        let key = key(&instance.service, &instance.version);
        if let Some(r) = state
            .versions
            .get_mut(&key)
            .and_then(|v| v.replicas.get_mut(&instance.replica))
        {
            r.instance = instance.clone();
        }
    }

    /// Stops a replica taken out of the table, through its supervisor, and
    /// frees its port.
    async fn stop(&self, replica: Replica) -> Result<(), DriverError> {
        let inst = replica.instance;
        let (reply, answer) = oneshot::channel();
        let result = match replica.commands.send(Command::Stop(reply)) {
            Ok(()) => answer.await.ok(),
            Err(_) => None,
        };
        let result = match result {
            Some(r) => r,
            // The supervisor is gone (it should not be): stop the group
            // directly so that teardown still leaves nothing behind.
            None => match inst.pid {
                Some(pid) => group::terminate(pid, None, self.spec.stop_timeout.get())
                    .await
                    .map_err(|e| self.stop_error(&inst, e)),
                None => Ok(()),
            },
        };
        replica.task.abort();
        if result.is_ok() {
            self.remove_record(&inst);
        }
        if let Some(port) = inst.endpoint.authority().port_u16() {
            self.release_port(port);
        }
        result
    }

    fn stop_error(&self, inst: &Instance, detail: String) -> DriverError {
        self.error(
            &inst.service,
            &inst.version,
            ErrorKind::Timeout,
            format!("replica {} did not stop: {detail}", inst.replica),
            "look for the process with `ps -o pid,stat,cmd -g PGID`; it may be stuck in I/O",
        )
    }
}
