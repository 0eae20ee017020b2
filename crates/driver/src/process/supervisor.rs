//! One task per replica: it owns the process, starts it again when it
//! exits, caps its log, and carries out the driver's stop and restart
//! commands, so that the process is only ever touched from one place.
//!
//! Back-off: a replica that exits is started again after `restart.backoff`,
//! doubling with each exit (or failed start) up to `restart.max_backoff`;
//! a replica that stayed up for `max_backoff` starts over at `backoff`.
//! The task never gives up: a replica that cannot run keeps being retried
//! at `max_backoff` and reported, and the controller decides (roll back,
//! tear down).
//!
//! When the driver is dropped the task ends and the process keeps running:
//! that is what a crash of backout looks like, and what adoption expects.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::launch::{self, Running};
use super::{Command, DeployRequest, DriverEvent, Shared, log};
use crate::{clock, group};

/// How often the log size is checked.
const LOG_CHECK: Duration = Duration::from_secs(1);

enum Phase {
    Up(Box<Running>),
    /// The process is gone; try again at `retry_at`.
    Down {
        retry_at: Instant,
    },
}

struct Supervisor {
    shared: Arc<Shared>,
    req: Arc<DeployRequest>,
    replica: u32,
    /// The port the replica had last; a restart keeps it when it can.
    port: u16,
    backoff: Backoff,
    restarts: u32,
}

/// The restart policy, apart from the clock: `exited` and `failed` say how
/// long to wait before the next start.
#[derive(Debug)]
struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(spec: backout_spec::RestartSpec) -> Self {
        Backoff {
            first: spec.backoff.get(),
            max: spec.max_backoff.get(),
            next: spec.backoff.get(),
        }
    }

    /// The replica exited after running for `uptime`.
    fn exited(&mut self, uptime: Duration) -> Duration {
        if uptime >= self.max {
            self.next = self.first;
        }
        self.failed()
    }

    /// A start failed.
    fn failed(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }
}

/// Supervises `running` until told to stop or until the driver is dropped.
pub(super) async fn run(
    shared: Arc<Shared>,
    req: Arc<DeployRequest>,
    running: Running,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut sup = Supervisor {
        backoff: Backoff::new(shared.spec.restart),
        replica: running.instance.replica,
        port: running
            .instance
            .endpoint
            .authority()
            .port_u16()
            .unwrap_or(0),
        shared,
        req,
        restarts: 0,
    };
    let log_path = sup
        .shared
        .log_path(&sup.req.service, &sup.req.version, sup.replica);
    let log_max = sup.shared.spec.log_max_size.0;
    let mut log_check = tokio::time::interval(LOG_CHECK);
    log_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut phase = Phase::Up(Box::new(running));
    loop {
        phase = match phase {
            Phase::Up(mut running) => {
                tokio::select! {
                    status = running.wait() => sup.exited(&running, status).await,
                    command = commands.recv() => match command {
                        None => return,
                        Some(Command::Stop(reply)) => {
                            let result = running
                                .stop(sup.shared.spec.stop_timeout.get())
                                .await
                                .map_err(|e| sup.shared.stop_error(&running.instance, e));
                            let _ = reply.send(result);
                            return;
                        }
                        Some(Command::Restart(reply)) => {
                            let grace = sup.shared.spec.stop_timeout.get();
                            if let Err(e) = running.stop(grace).await {
                                let _ = reply.send(Err(sup.shared.stop_error(&running.instance, e)));
                                Phase::Up(running)
                            } else {
                                let (phase, result) = sup.start().await;
                                let _ = reply.send(result);
                                phase
                            }
                        }
                    },
                    _ = log_check.tick() => {
                        // A log that cannot be cut keeps growing; the next
                        // check tries again, and nothing else depends on it.
                        let _ = log::cap(&log_path, log_max).await;
                        Phase::Up(running)
                    }
                }
            }
            Phase::Down { retry_at } => {
                tokio::select! {
                    _ = tokio::time::sleep_until(retry_at) => {
                        if !sup.shared.gate.acting() {
                            // This process no longer leads: the replica is
                            // the new leader's to start, or not.
                            tracing::warn!(service = %sup.req.service, version = %sup.req.version, replica = sup.replica, "not starting the exited replica again: this process no longer leads");
                            return;
                        }
                        sup.start().await.0
                    }
                    command = commands.recv() => match command {
                        None => return,
                        Some(Command::Stop(reply)) => {
                            let _ = reply.send(Ok(()));
                            return;
                        }
                        Some(Command::Restart(reply)) => {
                            let (phase, result) = sup.start().await;
                            let _ = reply.send(result);
                            phase
                        }
                    },
                }
            }
        };
    }
}

impl Supervisor {
    /// The replica exited without being asked to: clean up its group,
    /// report, and schedule the restart.
    async fn exited(&mut self, running: &Running, status: String) -> Phase {
        group::kill_remains(running.pid).await;
        let delay = self.backoff.exited(running.started.elapsed());
        tracing::warn!(
            instance = %running.instance.id,
            pid = running.pid,
            "replica exited with {status}; starting it again in {delay:?}"
        );
        let _ = self.shared.events.send(DriverEvent::Exited {
            instance: running.instance.clone(),
            status,
            restart_in_ms: delay.as_millis() as u64,
            at_ms: clock::unix_millis(),
        });
        Phase::Down {
            retry_at: Instant::now() + delay,
        }
    }

    /// Starts the replica again (on its old port if still free) and
    /// reports how that went.
    async fn start(&mut self) -> (Phase, Result<super::Instance, super::DriverError>) {
        let attempt = match self.shared.reserve_port(&self.req, Some(self.port)) {
            Ok(port) => launch::launch(&self.shared, &self.req, self.replica, port)
                .await
                .inspect_err(|_| {
                    if port != self.port {
                        self.shared.release_port(port);
                    }
                }),
            Err(e) => Err(e),
        };
        match attempt {
            Ok(running) => {
                let new_port = running.instance.endpoint.authority().port_u16();
                if let Some(p) = new_port.filter(|p| *p != self.port) {
                    self.shared.release_port(self.port);
                    self.port = p;
                }
                self.restarts += 1;
                self.shared.update_instance(&running.instance);
                let _ = self.shared.events.send(DriverEvent::Restarted {
                    instance: running.instance.clone(),
                    restarts: self.restarts,
                    at_ms: clock::unix_millis(),
                });
                let instance = running.instance.clone();
                (Phase::Up(Box::new(running)), Ok(instance))
            }
            Err(e) => {
                let delay = self.backoff.failed();
                tracing::warn!(
                    service = %self.req.service,
                    version = %self.req.version,
                    replica = self.replica,
                    "{e}; trying again in {delay:?}"
                );
                let _ = self.shared.events.send(DriverEvent::RestartFailed {
                    service: self.req.service.clone(),
                    version: self.req.version.clone(),
                    replica: self.replica,
                    error: e.to_string(),
                    retry_in_ms: delay.as_millis() as u64,
                    at_ms: clock::unix_millis(),
                });
                (
                    Phase::Down {
                        retry_at: Instant::now() + delay,
                    },
                    Err(e),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events in order (`Some(uptime)` for an exit, `None` for a failed
    /// start) and the waits they get, with back-off 1s up to 8s.
    fn check(events: &[Option<u64>], waits: &[u64]) {
        let mut b = Backoff::new(backout_spec::RestartSpec {
            backoff: backout_spec::Duration::from_secs(1),
            max_backoff: backout_spec::Duration::from_secs(8),
        });
        let got: Vec<u64> = events
            .iter()
            .map(|e| match e {
                Some(up) => b.exited(Duration::from_secs(*up)),
                None => b.failed(),
            })
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(got, waits, "{events:?}");
    }

    #[test]
    fn backoff() {
        check(&[Some(0)], &[1]);
        check(
            &[Some(0), Some(0), Some(0), Some(0), Some(0)],
            &[1, 2, 4, 8, 8],
        );
        check(&[Some(0), None, None, None], &[1, 2, 4, 8]);
        check(&[Some(0), Some(0), Some(0), Some(8)], &[1, 2, 4, 1]);
        check(&[Some(0), Some(0), Some(7)], &[1, 2, 4]);
    }
}
