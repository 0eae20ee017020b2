//! The transitions. [`ServiceState::check`] says whether an input applies
//! (the API asks before logging); [`ServiceState::apply`] applies it.
//!
//! After every input the rollout is driven as far as it can go without
//! waiting (instant steps run back to back; a timed pause whose time is up
//! ends), so the same inputs always give the same state and actions,
//! whatever the ticking rate.

use backout_judge::Verdict;
use backout_routing::{Permille, RuleSpec};
use backout_spec::{CapacityMode, OnTimeout, Step, UnsafeGate};

use crate::action::{Action, DesiredRoute, Notice};
use crate::gate::{Acceptance, GateClass, GateReport};
use crate::input::{Command, Envelope, Input, Rejection};
use crate::mttr::{RollbackKind, RollbackRecord};
use crate::release::{Release, ReleaseOutcome};
use crate::state::{
    PauseInfo, PauseKind, Phase, Policy, Rollout, RolloutKind, RolloutOutcome, RolloutSummary,
    ServiceState, Soak, VerdictInfo,
};

fn ms(d: backout_spec::Duration) -> i64 {
    i64::try_from(d.get().as_millis()).unwrap_or(i64::MAX)
}

/// What registering a release with a gate report means, in a line.
fn gate_notice(version: &str, r: &GateReport, policy: &Policy) -> String {
    let against = r.against.as_deref().unwrap_or("no stable release");
    let n = r.findings.len();
    let verdict = format!("{:?}", r.verdict).to_lowercase();
    let effect = match r.effect(policy.gates.on_unsafe) {
        UnsafeGate::Allow if r.verdict == GateClass::Unsafe => {
            "; gates: {unsafe: allow}: it rolls out and back as usual".to_string()
        }
        UnsafeGate::Allow => String::new(),
        UnsafeGate::ManualRollback => {
            "; gates: {unsafe: manual_rollback}: automatic rollback becomes pause-and-page"
                .to_string()
        }
        UnsafeGate::Refuse => {
            "; gates: {unsafe: refuse}: it cannot roll out until accepted with a reason".to_string()
        }
    };
    let first = if r.verdict == GateClass::Unsafe {
        format!(": {}", r.summary())
    } else {
        String::new()
    };
    format!(
        "{version} checked against {against}: {verdict} ({n} finding{}){first}{effect}",
        if n == 1 { "" } else { "s" }
    )
}

fn notice(kind: &str, message: impl Into<String>) -> Action {
    // Specs name these kinds in `notifications[].events`, checked against
    // the same list when they are read.
    debug_assert!(
        backout_spec::Notification::EVENTS.contains(&kind),
        "notice kind {kind:?} is missing from Notification::EVENTS"
    );
    Action::Notify(Notice {
        kind: kind.to_string(),
        message: message.into(),
    })
}

impl ServiceState {
    /// Whether `input` applies now; the error says why not and what to do.
    pub fn check(&self, input: &Input, policy: &Policy) -> Result<(), Rejection> {
        let active = || {
            self.rollout.as_ref().ok_or_else(|| {
                Rejection::conflict(format!(
                    "no rollout in progress for service {}",
                    self.service
                ))
            })
        };
        match input {
            Input::RegisterRelease {
                version,
                artifact,
                config,
                gates,
            } => {
                let contracts = gates.as_ref().and_then(|g| g.contracts.clone());
                match self.release(version) {
                    Some(r) if !r.same_content(artifact, config, &contracts) => {
                        Err(Rejection::conflict(format!(
                            "release {version} of {} is already registered with a different artifact, config or contracts; releases are immutable: register a new version",
                            self.service
                        )))
                    }
                    Some(_) => Ok(()),
                    None if version.is_empty() => Err(Rejection {
                        code: "invalid",
                        message: "a release needs a version".into(),
                    }),
                    None => match gates.as_ref().and_then(|g| g.report.as_ref()) {
                        // The report must be against what is stable now,
                        // not against whatever was when it was computed.
                        Some(report) if report.against != self.stable => {
                            Err(Rejection::conflict(format!(
                                "{version} was checked against {}, but the stable release of {} is now {}; register it again so that it is checked against what runs",
                                report.against.as_deref().unwrap_or("no release"),
                                self.service,
                                self.stable.as_deref().unwrap_or("none")
                            )))
                        }
                        _ => Ok(()),
                    },
                }
            }
            Input::RecheckGates { version, report } => {
                let Some(r) = self.release(version) else {
                    return Err(Rejection::not_found(format!(
                        "release {version} of {} is not registered",
                        self.service
                    )));
                };
                if r.contracts.is_none() {
                    return Err(Rejection::conflict(format!(
                        "{version} carries no migrations or contract to check"
                    )));
                }
                if report.against != self.stable {
                    return Err(Rejection::conflict(format!(
                        "the new report on {version} is against {}, but {} is stable now; check it again",
                        report.against.as_deref().unwrap_or("no release"),
                        self.stable.as_deref().unwrap_or("no release")
                    )));
                }
                if self.rollout.as_ref().is_some_and(|r| r.version == *version) {
                    return Err(Rejection::conflict(format!(
                        "{version} is being rolled out; its report cannot change under it"
                    )));
                }
                Ok(())
            }
            Input::AcceptGates { version, reason } => {
                let Some(r) = self.release(version) else {
                    return Err(Rejection::not_found(format!(
                        "release {version} of {} is not registered",
                        self.service
                    )));
                };
                match &r.gates {
                    _ if reason.trim().is_empty() => Err(Rejection {
                        code: "invalid",
                        message: "accepting gate findings needs a reason: say why with --reason"
                            .into(),
                    }),
                    Some(g) if g.accepted.is_some() => Err(Rejection::conflict(format!(
                        "the gate findings of {version} were already accepted"
                    ))),
                    Some(g) if g.verdict > GateClass::Safe => Ok(()),
                    _ => Err(Rejection::conflict(format!(
                        "{version} has no gate findings to accept"
                    ))),
                }
            }
            Input::StartRollout { version } => {
                if self.release(version).is_none() {
                    return Err(Rejection::not_found(format!(
                        "release {version} of {} is not registered; run `backout release {} --version {version}`",
                        self.service, self.service
                    )));
                }
                if let Some(r) = &self.rollout {
                    return Err(Rejection::conflict(format!(
                        "a rollout of {} is already in progress; wait for it, or abort it with `backout abort {}`",
                        r.version, self.service
                    )));
                }
                if self.stable.as_deref() == Some(version) {
                    return Err(Rejection::conflict(format!(
                        "{version} is already the stable version of {}",
                        self.service
                    )));
                }
                if let Some(report) = self.release(version).and_then(|r| r.gates.as_ref())
                    && report.against != self.stable
                {
                    return Err(Rejection::conflict(format!(
                        "{version} was checked against {}, but {} is stable now; its contracts must be checked again first (the API does so when it starts a rollout)",
                        report.against.as_deref().unwrap_or("no release"),
                        self.stable.as_deref().unwrap_or("no release")
                    )));
                }
                if let Some(report) = self.release(version).and_then(|r| r.gates.as_ref())
                    && report.effect(policy.gates.on_unsafe) == UnsafeGate::Refuse
                {
                    return Err(Rejection::conflict(format!(
                        "{version} is unsafe for {}: {}; rolling it back would not restore service, and the spec refuses such releases (gates: {{unsafe: refuse}}): fix the migrations or contract, or accept with `backout gates accept {} {version} --reason …`",
                        report.against.as_deref().unwrap_or("the stable release"),
                        report.summary(),
                        self.service
                    )));
                }
                Ok(())
            }
            Input::Command(c) => match c {
                Command::Approve => {
                    let r = active()?;
                    if self.at_gate(r, policy) {
                        Ok(())
                    } else {
                        Err(Rejection::conflict(match &r.paused {
                            Some(p) => format!(
                                "the rollout is paused ({}): use `backout resume`",
                                p.reason
                            ),
                            None => format!(
                                "the rollout of {} is not waiting for approval ({})",
                                r.version,
                                self.step_label(r, policy)
                            ),
                        }))
                    }
                }
                Command::SetWeight { weight } => {
                    let r = active()?;
                    if r.kind != RolloutKind::Canary {
                        Err(Rejection::conflict(format!(
                            "the rollout of {} is not a canary: it has no weight to set",
                            r.version
                        )))
                    } else if r.phase != Phase::Stepping {
                        let now = if r.phase == Phase::Deploying {
                            "still deploying"
                        } else {
                            "rolling back"
                        };
                        Err(Rejection::conflict(format!(
                            "the rollout of {} is {now}; its weight cannot be set now",
                            r.version
                        )))
                    } else if *weight >= Permille::FULL {
                        Err(Rejection::conflict(
                            "a canary at 100% is a promotion: use `promote --full`",
                        ))
                    } else {
                        Ok(())
                    }
                }
                Command::Pause => {
                    let r = active()?;
                    if r.paused.is_some() {
                        Err(Rejection::conflict("the rollout is already paused"))
                    } else if r.phase == Phase::RollingBack {
                        Err(Rejection::conflict(
                            "the rollout is rolling back; it cannot be paused",
                        ))
                    } else {
                        Ok(())
                    }
                }
                Command::Resume => {
                    let r = active()?;
                    let open_pause =
                        matches!(policy.strategy.steps.get(r.step), Some(Step::Pause(None)));
                    if r.paused.is_some() || (r.phase == Phase::Stepping && open_pause) {
                        Ok(())
                    } else {
                        Err(Rejection::conflict(format!(
                            "the rollout of {} is not paused",
                            r.version
                        )))
                    }
                }
                Command::Abort => {
                    let r = active()?;
                    if r.phase == Phase::RollingBack {
                        Err(Rejection::conflict("the rollout is already rolling back"))
                    } else {
                        Ok(())
                    }
                }
                Command::Rollback { to: None } => {
                    if let Some(r) = &self.rollout {
                        if r.phase == Phase::RollingBack {
                            // A rollback still minding stable's capacity
                            // can be forced: the big red button always
                            // works. One that moved everything is done.
                            let canary_has_traffic = self
                                .route
                                .as_ref()
                                .is_some_and(|rt| rt.weight > Permille::ZERO);
                            return if canary_has_traffic {
                                Ok(())
                            } else {
                                Err(Rejection::conflict("a rollback is already in progress"))
                            };
                        }
                        if r.baseline.is_none() {
                            return Err(Rejection::conflict(
                                "this is the service's first release: there is nothing to roll back to",
                            ));
                        }
                        return Ok(());
                    }
                    match self.previous_known_good(policy) {
                        Some(_) => Ok(()),
                        None => Err(Rejection::conflict(format!(
                            "no rollout in progress and no earlier known-good release of {} to go back to",
                            self.service
                        ))),
                    }
                }
                Command::Rollback { to: Some(v) } => {
                    let pinned = self.pinned(policy);
                    if !pinned.iter().any(|r| &r.version == v) {
                        let names: Vec<&str> = pinned.iter().map(|r| r.version.as_str()).collect();
                        return Err(Rejection::conflict(format!(
                            "{v} is not a pinned known-good release of {}; pinned: {}",
                            self.service,
                            if names.is_empty() {
                                "none yet".to_string()
                            } else {
                                names.join(", ")
                            }
                        )));
                    }
                    if self.stable.as_deref() == Some(v.as_str()) && self.rollout.is_none() {
                        return Err(Rejection::conflict(format!("{v} is already stable")));
                    }
                    if self
                        .rollout
                        .as_ref()
                        .is_some_and(|r| r.phase == Phase::RollingBack)
                    {
                        return Err(Rejection::conflict("a rollback is already in progress"));
                    }
                    Ok(())
                }
                Command::Promote { .. } => {
                    let r = active()?;
                    if r.kind != RolloutKind::Canary || r.phase == Phase::RollingBack {
                        Err(Rejection::conflict(
                            "only a canary rollout that is not rolling back can be promoted",
                        ))
                    } else if r.phase == Phase::Deploying {
                        Err(Rejection::conflict(format!(
                            "{} is still starting; promote once it is ready",
                            r.version
                        )))
                    } else if self
                        .readiness
                        .get(&r.version)
                        .is_none_or(|(ready, _)| *ready == 0)
                    {
                        Err(Rejection::conflict(format!(
                            "{} has no instance that can take traffic (none is ready, or its circuit breaker is open): promoting it would send users to nothing; wait for it, or roll back",
                            r.version
                        )))
                    } else {
                        Ok(())
                    }
                }
            },
            Input::SetAutoRollback { .. } => Ok(()),
            _ => Ok(()),
        }
    }

    /// Applies one input. Inputs that do not apply (see [`Self::check`])
    /// change nothing.
    pub fn apply(&mut self, env: &Envelope<'_>, input: &Input, policy: &Policy) -> Vec<Action> {
        let mut out = Vec::new();
        if self.check(input, policy).is_err() {
            return out;
        }
        let now = env.at_ms;
        match input {
            Input::RegisterRelease {
                version,
                artifact,
                config,
                gates,
            } => {
                if self.release(version).is_none() {
                    let report = gates.as_ref().and_then(|g| g.report.clone());
                    if let Some(r) = &report {
                        out.push(notice("gates", gate_notice(version, r, policy)));
                    }
                    self.releases.push(Release {
                        version: version.clone(),
                        artifact: artifact.clone(),
                        config: config.clone(),
                        registered_by: env.actor.to_string(),
                        registered_ms: now,
                        promoted_ms: None,
                        known_good_ms: None,
                        rolled_back_ms: None,
                        outcome: None,
                        contracts: gates.as_ref().and_then(|g| g.contracts.clone()),
                        gates: report,
                    });
                }
            }
            Input::RecheckGates { version, report } => {
                let lapsed = self
                    .release(version)
                    .and_then(|r| r.gates.as_ref())
                    .and_then(|g| g.accepted.as_ref())
                    .map(|a| format!("; the acceptance by {} of the earlier report lapses", a.by))
                    .unwrap_or_default();
                out.push(notice(
                    "gates",
                    format!(
                        "{} (checked again){lapsed}",
                        gate_notice(version, report, policy)
                    ),
                ));
                if let Some(r) = self.release_mut(version) {
                    r.gates = Some(report.clone());
                }
            }
            Input::AcceptGates { version, reason } => {
                if let Some(report) = self.release_mut(version).and_then(|r| r.gates.as_mut()) {
                    report.accepted = Some(Acceptance {
                        by: env.actor.to_string(),
                        at_ms: now,
                        reason: reason.clone(),
                    });
                    out.push(notice(
                        "gates_accepted",
                        format!(
                            "{} accepted the gate findings of {version} ({}): {reason}; the gate no longer holds it back",
                            env.actor,
                            report.summary()
                        ),
                    ));
                }
            }
            Input::StartRollout { version } => {
                self.start(env, version, RolloutKind::Canary, policy, &mut out)
            }
            Input::Command(c) => self.command(env, c, policy, &mut out),
            Input::SetAutoRollback { enabled, until_ms } => {
                self.auto_rollback.enabled = *enabled;
                self.auto_rollback.until_ms = if *enabled { None } else { *until_ms };
                self.auto_rollback.changed_by = Some(env.actor.to_string());
                self.auto_rollback.reason = env.reason.map(str::to_string);
                let until = until_ms
                    .map(|u| format!(" for {}s", (u - env.at_ms).max(0) / 1000))
                    .unwrap_or_default();
                let why = env.reason.map(|r| format!(": {r}")).unwrap_or_default();
                out.push(notice(
                    "auto_rollback",
                    if *enabled {
                        format!("automatic rollback re-enabled by {}", env.actor)
                    } else {
                        format!("automatic rollback disabled by {}{until}{why}", env.actor)
                    },
                ));
                if *enabled {
                    self.act_on_standing_rollback(env, policy, &mut out);
                }
            }
            Input::Tick => {
                let was_off = !self.auto_rollback.enabled;
                self.tick(now, &mut out);
                if was_off && self.auto_rollback.enabled {
                    self.act_on_standing_rollback(env, policy, &mut out);
                }
            }
            Input::Verdict {
                verdict,
                reason,
                onset_ms,
            } => self.verdict(env, *verdict, reason, *onset_ms, policy, &mut out),
            Input::Readiness {
                version,
                ready,
                total,
            } => {
                self.readiness.insert(version.clone(), (*ready, *total));
            }
            Input::DeployFailed { version, error } => {
                if let Some(r) = &self.rollout
                    && r.version == *version
                    && r.phase != Phase::RollingBack
                {
                    let reason = format!("deploying {version} failed: {error}");
                    self.end_without_incident(
                        now,
                        RolloutOutcome::Aborted,
                        &reason,
                        policy,
                        &mut out,
                    );
                }
            }
            Input::RouteApplied {
                stable,
                canary,
                weight_permille,
                applied_at_ms,
                ..
            } => {
                for rec in self
                    .rollbacks
                    .iter_mut()
                    .filter(|r| r.switched_ms.is_none())
                {
                    let away = canary.as_deref() != Some(rec.from_version.as_str())
                        || *weight_permille == 0;
                    if *stable == rec.to_version && away {
                        rec.switched_ms = Some(*applied_at_ms);
                    }
                }
            }
            Input::TornDown { version } => {
                for rec in self
                    .rollbacks
                    .iter_mut()
                    .filter(|r| r.from_version == *version && r.torn_down_ms.is_none())
                {
                    rec.torn_down_ms = Some(now);
                }
            }
            Input::Recovered => {
                for rec in self
                    .rollbacks
                    .iter_mut()
                    .filter(|r| r.switched_ms.is_some() && r.recovered_ms.is_none())
                {
                    rec.recovered_ms = Some(now);
                }
            }
            Input::SoakHealth { ok, reason } => {
                if !ok && let Some(soak) = self.soak.take() {
                    out.push(notice(
                        "soak_failed",
                        format!("{} did not stay healthy at 100% during its soak: {reason}; it is not marked known good", soak.version),
                    ));
                }
            }
        }
        self.advance(now, policy, &mut out);
        out
    }

    /// Starts a rollout (canary, or initial when nothing is stable yet, or a
    /// restore to a known-good release).
    fn start(
        &mut self,
        env: &Envelope<'_>,
        version: &str,
        kind: RolloutKind,
        policy: &Policy,
        out: &mut Vec<Action>,
    ) {
        let now = env.at_ms;
        let kind = if self.stable.is_none() && kind == RolloutKind::Canary {
            RolloutKind::Initial
        } else {
            kind
        };
        let id = self.next_rollout_id;
        self.next_rollout_id += 1;
        // A new rollout ends the previous release's soak: it will not be
        // known good unless it finished soaking first.
        if let Some(soak) = self.soak.take() {
            out.push(notice(
                "soak_interrupted",
                format!(
                    "{} stops soaking: {version} is being rolled out",
                    soak.version
                ),
            ));
        }
        let replicas = policy.strategy.replicas;
        self.teardowns.remove(version);
        // Readiness reported before is stale unless the version is running
        // now; a fresh deployment is ready when the controller says so.
        if self
            .instances
            .insert(version.to_string(), replicas)
            .is_none()
        {
            self.readiness.insert(version.to_string(), (0, replicas));
        }
        out.push(Action::Deploy {
            version: version.to_string(),
            replicas,
        });
        self.rollout = Some(Rollout {
            id,
            kind,
            version: version.to_string(),
            baseline: self.stable.clone(),
            started_by: env.actor.to_string(),
            started_ms: now,
            phase: Phase::Deploying,
            step: 0,
            step_started_ms: now,
            paused: None,
            last_verdict: None,
            progress_ms: now,
            rollback: None,
            capacity_wait_since_ms: None,
        });
        let what = match kind {
            RolloutKind::Canary => format!(
                "rollout #{id} of {version} started by {} (stable: {})",
                env.actor,
                self.stable.as_deref().unwrap_or("none")
            ),
            RolloutKind::Initial => format!(
                "first release {version} deploying (started by {})",
                env.actor
            ),
            RolloutKind::Restore => format!("restoring known-good {version} (by {})", env.actor),
        };
        out.push(notice("rollout_started", what));
    }

    fn command(&mut self, env: &Envelope<'_>, c: &Command, policy: &Policy, out: &mut Vec<Action>) {
        let now = env.at_ms;
        let who = env.actor;
        let why = env.reason.map(|r| format!(": {r}")).unwrap_or_default();
        match c {
            Command::Approve => {
                if let Some(r) = &mut self.rollout {
                    r.paused = None;
                    r.step += 1;
                    r.step_started_ms = now;
                    out.push(notice("approved", format!("{who} approved{why}")));
                }
            }
            Command::SetWeight { weight } => {
                let Some(version) = self.rollout.as_ref().map(|r| r.version.clone()) else {
                    return;
                };
                self.set_canary(|route| route.weight = *weight, &version, out);
                if let Some(r) = &mut self.rollout {
                    r.paused = Some(PauseInfo {
                        kind: PauseKind::Manual,
                        reason: format!("canary held at {weight} by {who}{why}"),
                        since_ms: now,
                    });
                    out.push(notice(
                        "weight",
                        format!("{who} set the canary {version} to {weight}{why}; paused there until resumed"),
                    ));
                }
            }
            Command::Pause => {
                if let Some(r) = &mut self.rollout {
                    r.paused = Some(PauseInfo {
                        kind: PauseKind::Manual,
                        reason: format!("paused by {who}{why}"),
                        since_ms: now,
                    });
                    out.push(notice(
                        "paused",
                        format!("rollout of {} paused by {who}{why}", r.version),
                    ));
                }
            }
            Command::Resume => {
                let open_pause = self.rollout.as_ref().is_some_and(|r| {
                    r.paused.is_none()
                        && matches!(policy.strategy.steps.get(r.step), Some(Step::Pause(None)))
                });
                if let Some(r) = &mut self.rollout {
                    if open_pause {
                        r.step += 1;
                    }
                    // Resuming restarts the current step's clock: an
                    // inconclusive analysis runs again, a timed pause
                    // waits its full time.
                    r.paused = None;
                    r.step_started_ms = now;
                    r.progress_ms = now;
                    out.push(notice(
                        "resumed",
                        format!("rollout of {} resumed by {who}{why}", r.version),
                    ));
                }
            }
            Command::Abort => {
                let reason = format!("aborted by {who}{why}");
                self.end_without_incident(now, RolloutOutcome::Aborted, &reason, policy, out);
            }
            Command::Rollback { to: None } => {
                let waiting = self
                    .rollout
                    .as_ref()
                    .filter(|r| r.phase == Phase::RollingBack)
                    .and_then(|r| r.rollback);
                if let Some(record) = waiting {
                    if let Some(rec) = self.rollbacks.get_mut(record) {
                        rec.capacity.push_str(&format!(
                            "; break-glass: {who} moved all traffic at once while it waited{why}"
                        ));
                    }
                    out.push(notice(
                        "break_glass",
                        format!("{who} forced the rollback: all traffic to stable now{why}"),
                    ));
                    self.rollback_progress(now, true, policy, out);
                } else if self.rollout.is_some() {
                    let reason = format!("rolled back by {who}{why}");
                    self.begin_rollback(
                        env,
                        RollbackKind::Manual,
                        None,
                        None,
                        &reason,
                        policy,
                        out,
                    );
                } else if let Some(target) = self.previous_known_good(policy) {
                    self.restore(env, &target, policy, out);
                }
            }
            Command::Rollback { to: Some(v) } => {
                let rolling_out = self
                    .rollout
                    .as_ref()
                    .is_some_and(|r| r.phase != Phase::RollingBack);
                if rolling_out && self.stable.as_deref() == Some(v.as_str()) {
                    // Back to the current stable: that is rolling back the canary.
                    let reason = format!("rolled back to {v} by {who}{why}");
                    self.begin_rollback(
                        env,
                        RollbackKind::Manual,
                        None,
                        None,
                        &reason,
                        policy,
                        out,
                    );
                    return;
                }
                if rolling_out {
                    // The rollout in progress gives way first.
                    let reason = format!("superseded by rollback to {v} by {who}{why}");
                    self.end_without_incident(now, RolloutOutcome::Aborted, &reason, policy, out);
                }
                self.restore(env, v, policy, out);
            }
            Command::Promote { full: false } => {
                if let Some(r) = &mut self.rollout {
                    r.paused = None;
                    let label = policy
                        .strategy
                        .steps
                        .get(r.step)
                        .map_or("the end".to_string(), ToString::to_string);
                    r.step += 1;
                    r.step_started_ms = now;
                    r.progress_ms = now;
                    out.push(notice(
                        "promote",
                        format!("{who} skipped step {} ({label}){why}", r.step),
                    ));
                }
            }
            Command::Promote { full: true } => {
                let version = self
                    .rollout
                    .as_ref()
                    .map(|r| r.version.clone())
                    .unwrap_or_default();
                out.push(notice(
                    "promote_full",
                    format!("break-glass: {who} promoted {version} to 100% without finishing its steps{why}"),
                ));
                self.finish_promotion(now, policy, out);
            }
        }
    }

    /// `rollback --to`: back to a known-good release, without analysis.
    fn restore(
        &mut self,
        env: &Envelope<'_>,
        version: &str,
        policy: &Policy,
        out: &mut Vec<Action>,
    ) {
        let from = self.stable.clone().unwrap_or_default();
        if let Some(rel) = self.release_mut(&from) {
            rel.rolled_back_ms = Some(env.at_ms);
            rel.outcome = Some(ReleaseOutcome::RolledBack);
        }
        self.start(env, version, RolloutKind::Restore, policy, out);
        let why = env.reason.map(|r| format!(": {r}")).unwrap_or_default();
        self.rollbacks.push(RollbackRecord {
            rollout_id: self.rollout.as_ref().map_or(0, |r| r.id),
            kind: RollbackKind::ToVersion,
            from_version: from,
            to_version: version.to_string(),
            reason: format!("rollback to {version} by {}{why}", env.actor),
            actor: env.actor.to_string(),
            onset_ms: None,
            verdict_ms: None,
            action_ms: env.at_ms,
            switched_ms: None,
            torn_down_ms: None,
            recovered_ms: None,
            capacity: format!("{version} deployed and waited for before switching"),
        });
        if let Some(r) = &mut self.rollout {
            r.rollback = Some(self.rollbacks.len() - 1);
        }
    }

    /// Automation is back on: a rollback verdict that stood while it was
    /// off (the rollout paused for a human who never came) is carried out
    /// now, not left serving the condemned canary until the judge happens
    /// to say it again.
    fn act_on_standing_rollback(
        &mut self,
        env: &Envelope<'_>,
        policy: &Policy,
        out: &mut Vec<Action>,
    ) {
        let Some(r) = &self.rollout else { return };
        let standing = r
            .paused
            .as_ref()
            .is_some_and(|p| p.kind == PauseKind::RollbackDisabled);
        let Some(last) = r.last_verdict.clone() else {
            return;
        };
        if standing && last.verdict == Verdict::Rollback && self.auto_rollback_on(policy) {
            self.verdict(env, Verdict::Rollback, &last.reason, None, policy, out);
        }
    }

    fn verdict(
        &mut self,
        env: &Envelope<'_>,
        verdict: Verdict,
        reason: &str,
        onset_ms: Option<i64>,
        policy: &Policy,
        out: &mut Vec<Action>,
    ) {
        let now = env.at_ms;
        let auto = self.auto_rollback_on(policy);
        let disabled_why = self.auto_rollback.reason.clone();
        let gate = self.gate_holds(policy);
        let Some(r) = &mut self.rollout else { return };
        if r.kind != RolloutKind::Canary || r.phase != Phase::Stepping {
            return;
        }
        r.last_verdict = Some(VerdictInfo {
            verdict,
            reason: reason.to_string(),
            at_ms: now,
        });
        match verdict {
            Verdict::Rollback if auto && gate.is_some() => {
                // Automation must not roll back into a schema the old code
                // cannot read: pause and page, a person decides.
                if r.paused.as_ref().is_none_or(|p| p.kind != PauseKind::Gate) {
                    let why = gate.unwrap_or_default();
                    let baseline = r.baseline.clone().unwrap_or_else(|| "stable".into());
                    r.paused = Some(PauseInfo {
                        kind: PauseKind::Gate,
                        reason: format!(
                            "the judge says roll back ({reason}), but {} is unsafe for {baseline}: {why}; automatic rollback is withheld (gates: unsafe: manual_rollback): roll back by hand with `backout rollback` if {baseline} works against the new schema, or fix forward",
                            r.version
                        ),
                        since_ms: now,
                    });
                    out.push(notice(
                        "page",
                        format!(
                            "{}: the judge says roll {} back ({reason}), but its migrations or contract are unsafe for {baseline}, so backout will not roll back by itself; a person must decide: {why}",
                            self.service, r.version
                        ),
                    ));
                    out.push(notice(
                        "paused",
                        format!(
                            "rollout of {} paused: judge says roll back but the release gate withholds automatic rollback",
                            r.version
                        ),
                    ));
                }
            }
            Verdict::Rollback if auto => {
                let why = format!(
                    "the judge found {} worse than {}: {reason}",
                    r.version,
                    r.baseline.as_deref().unwrap_or("stable")
                );
                self.begin_rollback(
                    env,
                    RollbackKind::Automatic,
                    Some(now),
                    onset_ms,
                    &why,
                    policy,
                    out,
                );
            }
            Verdict::Rollback => {
                if r.paused
                    .as_ref()
                    .is_none_or(|p| p.kind != PauseKind::RollbackDisabled)
                {
                    let off = if policy.rollback.automatic {
                        format!(
                            "automatic rollback is off ({})",
                            disabled_why.unwrap_or_else(|| "no reason given".into())
                        )
                    } else {
                        "the spec turns automatic rollback off".to_string()
                    };
                    r.paused = Some(PauseInfo {
                        kind: PauseKind::RollbackDisabled,
                        reason: format!(
                            "the judge says roll back ({reason}) but {off}; decide with `backout rollback` or `backout resume`"
                        ),
                        since_ms: now,
                    });
                    out.push(notice(
                        "paused",
                        format!(
                            "rollout of {} paused: judge says roll back but {off}",
                            r.version
                        ),
                    ));
                }
            }
            Verdict::Pause => {
                if r.paused.is_none() {
                    r.paused = Some(PauseInfo {
                        kind: PauseKind::Verdict,
                        reason: format!("the judge asks for a human: {reason}"),
                        since_ms: now,
                    });
                    out.push(notice(
                        "paused",
                        format!("rollout of {} paused by the judge: {reason}", r.version),
                    ));
                }
            }
            Verdict::Promote | Verdict::Continue | Verdict::Insufficient => {}
        }
    }

    /// Takes traffic away from the canary, minding stable's capacity.
    #[allow(clippy::too_many_arguments)]
    fn begin_rollback(
        &mut self,
        env: &Envelope<'_>,
        kind: RollbackKind,
        verdict_ms: Option<i64>,
        onset_ms: Option<i64>,
        reason: &str,
        policy: &Policy,
        out: &mut Vec<Action>,
    ) {
        let now = env.at_ms;
        let Some(r) = &self.rollout else { return };
        let Some(baseline) = r.baseline.clone() else {
            return;
        };
        let version = r.version.clone();
        let id = r.id;
        let needed = policy.strategy.replicas;
        let (ready, _) = self.readiness.get(&baseline).copied().unwrap_or((0, 0));
        // A person pressing the big red button gets it at once; the
        // automatic path minds capacity as configured.
        let capacity = if ready >= needed {
            format!(
                "stable {baseline} had {ready}/{needed} ready instances: all traffic moved at once"
            )
        } else if kind == RollbackKind::Manual {
            format!(
                "break-glass: all traffic moved at once although stable {baseline} had only {ready}/{needed} ready instances; scaling it"
            )
        } else {
            match policy.rollback.capacity {
                CapacityMode::ScaleFirst => format!(
                    "stable {baseline} had only {ready}/{needed} ready instances: scaled it first, waiting up to {}",
                    policy.rollback.capacity_timeout
                ),
                CapacityMode::Gradual => format!(
                    "stable {baseline} had only {ready}/{needed} ready instances: traffic moved back gradually as it became ready"
                ),
            }
        };
        self.rollbacks.push(RollbackRecord {
            rollout_id: id,
            kind,
            from_version: version.clone(),
            to_version: baseline.clone(),
            reason: reason.to_string(),
            actor: env.actor.to_string(),
            onset_ms,
            verdict_ms,
            action_ms: now,
            switched_ms: None,
            torn_down_ms: None,
            recovered_ms: None,
            capacity: capacity.clone(),
        });
        let record = self.rollbacks.len() - 1;
        if let Some(r) = &mut self.rollout {
            r.phase = Phase::RollingBack;
            r.paused = None;
            r.rollback = Some(record);
            r.capacity_wait_since_ms = Some(now);
        }
        out.push(notice(
            "rollback",
            format!("rolling back {version} → {baseline}: {reason}; {capacity}"),
        ));
        if ready < needed {
            // Ask for stable's full size whatever the mode.
            self.instances.insert(baseline.clone(), needed);
            out.push(Action::Scale {
                version: baseline.clone(),
                replicas: needed,
            });
        }
        let immediate = ready >= needed || kind == RollbackKind::Manual;
        self.rollback_progress(now, immediate, policy, out);
    }

    /// Moves traffic during a rollback as far as capacity allows, and
    /// finishes the rollback once the canary has none.
    fn rollback_progress(
        &mut self,
        now: i64,
        immediate: bool,
        policy: &Policy,
        out: &mut Vec<Action>,
    ) {
        let Some(r) = &self.rollout else { return };
        if r.phase != Phase::RollingBack {
            return;
        }
        let Some(baseline) = r.baseline.clone() else {
            return;
        };
        let needed = policy.strategy.replicas.max(1);
        let (ready, _) = self.readiness.get(&baseline).copied().unwrap_or((0, 0));
        let waited = now - r.capacity_wait_since_ms.unwrap_or(now);
        let timed_out = waited >= ms(policy.rollback.capacity_timeout);
        let all_in = immediate || ready >= needed || timed_out;
        let current = self.route.as_ref().map_or(Permille::ZERO, |rt| rt.weight);
        let target = if all_in {
            Permille::ZERO
        } else {
            match policy.rollback.capacity {
                // Hold until stable is ready (or the timeout).
                CapacityMode::ScaleFirst => current,
                // Stable can take `ready/needed` of all traffic now.
                CapacityMode::Gradual => {
                    let stable_share =
                        (u64::from(ready) * 1000 / u64::from(needed)).min(1000) as u16;
                    Permille::new(1000 - stable_share)
                        .unwrap_or(Permille::ZERO)
                        .min(current)
                }
            }
        };
        let route_changes = self
            .route
            .as_ref()
            .is_none_or(|rt| rt.weight != target || !rt.rules.is_empty());
        if route_changes {
            let canary = self.route.as_ref().and_then(|rt| rt.canary.clone());
            let route = DesiredRoute {
                stable: baseline.clone(),
                canary,
                weight: target,
                rules: Vec::new(),
            };
            self.route = Some(route.clone());
            out.push(Action::SetRoute(route));
        }
        if target == Permille::ZERO {
            if timed_out && ready < needed {
                out.push(notice(
                    "capacity_timeout",
                    format!("stable {baseline} still had {ready}/{needed} ready instances after {}; moved all traffic anyway", policy.rollback.capacity_timeout),
                ));
            }
            self.finish_rollback(now, policy, out);
        }
    }

    fn finish_rollback(&mut self, now: i64, policy: &Policy, out: &mut Vec<Action>) {
        let Some(r) = self.rollout.take() else { return };
        let baseline = r.baseline.clone().unwrap_or_default();
        // The canary leaves the route entirely once it has no traffic.
        let route = DesiredRoute::stable_only(&baseline);
        if self.route.as_ref() != Some(&route) {
            self.route = Some(route.clone());
            out.push(Action::SetRoute(route));
        }
        self.schedule_teardown(&r.version, now, policy);
        if let Some(rel) = self.release_mut(&r.version) {
            rel.rolled_back_ms = Some(now);
            rel.outcome = Some(ReleaseOutcome::RolledBack);
        }
        let reason = r
            .rollback
            .and_then(|i| self.rollbacks.get(i))
            .map(|rec| rec.reason.clone())
            .unwrap_or_default();
        out.push(notice(
            "rolled_back",
            format!("{} rolled back; {baseline} takes all traffic", r.version),
        ));
        self.archive(r, now, RolloutOutcome::RolledBack, reason);
    }

    /// Abort (or a deadline, or a failed deploy): back to stable at once,
    /// not counted as an incident.
    fn end_without_incident(
        &mut self,
        now: i64,
        outcome: RolloutOutcome,
        reason: &str,
        policy: &Policy,
        out: &mut Vec<Action>,
    ) {
        let Some(r) = self.rollout.take() else { return };
        if let Some(stable) = &self.stable {
            let route = DesiredRoute::stable_only(stable);
            if self.route.as_ref() != Some(&route) {
                self.route = Some(route.clone());
                out.push(Action::SetRoute(route));
            }
        }
        if self.stable.as_deref() != Some(r.version.as_str()) {
            self.schedule_teardown(&r.version, now, policy);
        }
        if let Some(rel) = self.release_mut(&r.version) {
            rel.outcome = Some(ReleaseOutcome::Aborted);
        }
        out.push(notice(
            "aborted",
            format!("rollout of {} ended: {reason}", r.version),
        ));
        self.archive(r, now, outcome, reason.to_string());
    }

    fn finish_promotion(&mut self, now: i64, policy: &Policy, out: &mut Vec<Action>) {
        let Some(r) = self.rollout.take() else { return };
        let route = DesiredRoute::stable_only(&r.version);
        if self.route.as_ref() != Some(&route) {
            self.route = Some(route.clone());
            out.push(Action::SetRoute(route));
        }
        let previous = self.stable.replace(r.version.clone());
        if let Some(old) = previous.filter(|o| *o != r.version) {
            self.schedule_teardown(&old, now, policy);
        }
        if let Some(rel) = self.release_mut(&r.version) {
            rel.promoted_ms = Some(now);
            rel.outcome = Some(ReleaseOutcome::Promoted);
        }
        self.soak = Some(Soak {
            version: r.version.clone(),
            until_ms: now + ms(policy.strategy.soak),
        });
        out.push(notice(
            "promoted",
            format!(
                "{} takes all traffic; known good after {} healthy",
                r.version, policy.strategy.soak
            ),
        ));
        self.archive(r, now, RolloutOutcome::Promoted, "promoted".into());
    }

    fn archive(&mut self, r: Rollout, now: i64, outcome: RolloutOutcome, reason: String) {
        self.history.push(RolloutSummary {
            id: r.id,
            kind: r.kind,
            version: r.version,
            baseline: r.baseline,
            outcome,
            started_ms: r.started_ms,
            finished_ms: now,
            started_by: r.started_by,
            reason,
        });
    }

    fn schedule_teardown(&mut self, version: &str, now: i64, policy: &Policy) {
        self.teardowns
            .insert(version.to_string(), now + ms(policy.strategy.drain));
    }

    fn tick(&mut self, now: i64, out: &mut Vec<Action>) {
        // Teardowns whose drain time has passed.
        let due: Vec<String> = self
            .teardowns
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(v, _)| v.clone())
            .collect();
        for version in due {
            self.teardowns.remove(&version);
            let in_use = self.stable.as_deref() == Some(version.as_str())
                || self.rollout.as_ref().is_some_and(|r| {
                    r.version == version || r.baseline.as_deref() == Some(version.as_str())
                });
            if !in_use && self.instances.remove(&version).is_some() {
                self.readiness.remove(&version);
                out.push(Action::Teardown { version });
            }
        }
        // Automatic rollback comes back on when its holiday ends.
        if let Some(until) = self.auto_rollback.until_ms
            && !self.auto_rollback.enabled
            && now >= until
        {
            self.auto_rollback.enabled = true;
            self.auto_rollback.until_ms = None;
            out.push(notice(
                "auto_rollback",
                "automatic rollback re-enabled: the time it was disabled for is over",
            ));
        }
        // A soak that ran its course marks the release known good.
        if let Some(soak) = &self.soak
            && now >= soak.until_ms
        {
            let version = soak.version.clone();
            self.soak = None;
            if let Some(rel) = self.release_mut(&version) {
                rel.known_good_ms = Some(now);
            }
            out.push(notice(
                "known_good",
                format!("{version} soaked healthy: it is now the last known good release"),
            ));
        }
    }

    /// Drives the rollout as far as it can go now.
    fn advance(&mut self, now: i64, policy: &Policy, out: &mut Vec<Action>) {
        // Bounded: every pass either returns or consumes a step.
        for _ in 0..=policy.strategy.steps.len() + 2 {
            let Some(r) = &self.rollout else { return };
            match r.phase {
                Phase::RollingBack => {
                    self.rollback_progress(now, false, policy, out);
                    return;
                }
                Phase::Deploying => {
                    let (ready, total) = self.readiness.get(&r.version).copied().unwrap_or((0, 0));
                    let wanted = policy.strategy.replicas;
                    if ready >= wanted && total > 0 {
                        match r.kind {
                            RolloutKind::Initial | RolloutKind::Restore => {
                                self.finish_promotion(now, policy, out);
                                return;
                            }
                            RolloutKind::Canary => {
                                let version = r.version.clone();
                                if let Some(r) = &mut self.rollout {
                                    r.phase = Phase::Stepping;
                                    r.step = 0;
                                    r.step_started_ms = now;
                                    r.progress_ms = now;
                                }
                                out.push(notice("canary_ready", format!("{version}: {ready}/{total} instances ready; starting the steps")));
                                continue;
                            }
                        }
                    }
                    if now - r.progress_ms >= ms(policy.strategy.progress_deadline) {
                        let reason = format!(
                            "progress deadline: {} had {ready}/{wanted} ready instances after {}",
                            r.version, policy.strategy.progress_deadline
                        );
                        out.push(notice("deadline", reason.clone()));
                        self.end_without_incident(
                            now,
                            RolloutOutcome::Aborted,
                            &reason,
                            policy,
                            out,
                        );
                    }
                    return;
                }
                Phase::Stepping => {
                    if !self.step_once(now, policy, out) {
                        return;
                    }
                }
            }
        }
    }

    /// Executes or checks the current step. Returns whether it moved on
    /// (so the caller should look at the next one).
    fn step_once(&mut self, now: i64, policy: &Policy, out: &mut Vec<Action>) -> bool {
        let deadline = ms(policy.strategy.progress_deadline);
        let Some(r) = &mut self.rollout else {
            return false;
        };
        // Instances that stop being ready stall progress; long enough, the
        // deadline ends the rollout. Waiting for a human does not count.
        let (ready, total) = self.readiness.get(&r.version).copied().unwrap_or((0, 0));
        let waiting_for_human = r.paused.is_some()
            || matches!(
                policy.strategy.steps.get(r.step),
                Some(Step::Approve | Step::Pause(None))
            );
        if (ready >= policy.strategy.replicas && total > 0) || waiting_for_human {
            r.progress_ms = now;
        } else if now - r.progress_ms >= deadline {
            let reason = format!(
                "progress deadline: {} had {ready}/{} ready instances for {}",
                r.version, policy.strategy.replicas, policy.strategy.progress_deadline
            );
            out.push(notice("deadline", reason.clone()));
            self.end_without_incident(now, RolloutOutcome::Aborted, &reason, policy, out);
            return false;
        }
        if r.paused.is_some() {
            return false;
        }
        if !(ready >= policy.strategy.replicas && total > 0) {
            // Not a step further, least of all to 100%, while the canary
            // is short of ready instances: the proxy sends its share to
            // stable meanwhile, and the deadline above ends the wait. The
            // step's clock starts over, so a timed pause or analysis gets
            // its full time with the canary taking traffic, not the rest
            // of it.
            r.step_started_ms = now;
            return false;
        }
        let Some(step) = policy.strategy.steps.get(r.step).cloned() else {
            self.finish_promotion(now, policy, out);
            return false;
        };
        let label = format!(
            "step {}/{}: {step}",
            r.step + 1,
            policy.strategy.steps.len()
        );
        let done = match &step {
            Step::SetWeight(w) => {
                let version = r.version.clone();
                self.set_canary(|route| route.weight = *w, &version, out);
                true
            }
            Step::Match(rules) => {
                let version = r.version.clone();
                let rules: Vec<RuleSpec> = rules.clone();
                self.set_canary(
                    |route| route.rules.extend(rules.iter().cloned()),
                    &version,
                    out,
                );
                true
            }
            Step::Pause(Some(d)) => now - r.step_started_ms >= ms(*d),
            Step::Pause(None) | Step::Approve => false,
            Step::Analysis(a) => {
                let promoted = r
                    .last_verdict
                    .as_ref()
                    .is_some_and(|v| v.verdict == Verdict::Promote && v.at_ms >= r.step_started_ms);
                if promoted {
                    true
                } else if now - r.step_started_ms >= ms(a.duration) {
                    match a.on_timeout {
                        OnTimeout::Continue => true,
                        OnTimeout::Pause => {
                            let reason = format!(
                                "analysis found no proof either way in {}: approve to go on, or roll back",
                                a.duration
                            );
                            r.paused = Some(PauseInfo {
                                kind: PauseKind::Analysis,
                                reason: reason.clone(),
                                since_ms: now,
                            });
                            out.push(notice(
                                "paused",
                                format!("rollout of {} paused: {reason}", r.version),
                            ));
                            false
                        }
                    }
                } else {
                    false
                }
            }
        };
        if done {
            if let Some(r) = &mut self.rollout {
                r.step += 1;
                r.step_started_ms = now;
            }
            out.push(notice("step", format!("{label} done")));
        }
        done
    }

    /// Changes the canary's share of the route.
    fn set_canary(
        &mut self,
        change: impl FnOnce(&mut DesiredRoute),
        version: &str,
        out: &mut Vec<Action>,
    ) {
        let Some(stable) = self.stable.clone() else {
            return;
        };
        let mut route = self
            .route
            .clone()
            .unwrap_or_else(|| DesiredRoute::stable_only(&stable));
        route.stable = stable;
        route.canary = Some(version.to_string());
        change(&mut route);
        if self.route.as_ref() != Some(&route) {
            self.route = Some(route.clone());
            out.push(Action::SetRoute(route));
        }
    }

    /// Whether the rollout waits at a gate `approve` opens.
    fn at_gate(&self, r: &Rollout, policy: &Policy) -> bool {
        if r.phase != Phase::Stepping {
            return false;
        }
        match &r.paused {
            Some(p) => p.kind == PauseKind::Analysis,
            None => matches!(
                policy.strategy.steps.get(r.step),
                Some(Step::Approve | Step::Pause(None))
            ),
        }
    }

    fn step_label(&self, r: &Rollout, policy: &Policy) -> String {
        match r.phase {
            Phase::Deploying => format!("{} is still starting", r.version),
            Phase::RollingBack => "it is rolling back".into(),
            Phase::Stepping => policy
                .strategy
                .steps
                .get(r.step)
                .map_or("finishing".into(), |s| format!("step {}: {s}", r.step + 1)),
        }
    }

    /// Whether the rollout's release gate withholds automatic rollback,
    /// and why.
    fn gate_holds(&self, policy: &Policy) -> Option<String> {
        let r = self.rollout.as_ref()?;
        let report = self.release(&r.version)?.gates.as_ref()?;
        match report.effect(policy.gates.on_unsafe) {
            UnsafeGate::Allow => None,
            UnsafeGate::ManualRollback | UnsafeGate::Refuse => Some(report.summary()),
        }
    }

    /// The newest pinned known-good release other than the current stable.
    fn previous_known_good(&self, policy: &Policy) -> Option<String> {
        self.pinned(policy)
            .into_iter()
            .find(|r| self.stable.as_deref() != Some(r.version.as_str()))
            .map(|r| r.version.clone())
    }
}

#[cfg(test)]
mod tests;
