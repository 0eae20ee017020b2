//! The state of one service: its releases, what is stable, the rollout in
//! progress and what the world should look like.

use std::collections::BTreeMap;

use backout_judge::Verdict;
use backout_spec::{GatesPolicy, HistoryPolicy, RollbackPolicy, ServiceSpec, Strategy};
use serde::{Deserialize, Serialize};

use crate::action::DesiredRoute;
use crate::mttr::RollbackRecord;
use crate::release::Release;

/// The parts of a service spec the state machine obeys.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Policy {
    pub strategy: Strategy,
    pub rollback: RollbackPolicy,
    pub history: HistoryPolicy,
    pub gates: GatesPolicy,
}

impl Policy {
    pub fn of(spec: &ServiceSpec) -> Policy {
        Policy {
            strategy: spec.strategy.clone(),
            rollback: spec.rollback.clone(),
            history: spec.history.clone(),
            gates: spec.gates.clone(),
        }
    }
}

/// Everything known about one service; the fold of its event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceState {
    pub service: String,
    /// The version that takes all traffic outside a rollout.
    pub stable: Option<String>,
    /// Every release, in registration order.
    pub releases: Vec<Release>,
    pub rollout: Option<Rollout>,
    /// Finished rollouts, oldest first.
    pub history: Vec<RolloutSummary>,
    pub next_rollout_id: u64,
    pub auto_rollback: AutoRollback,
    pub rollbacks: Vec<RollbackRecord>,
    pub soak: Option<Soak>,
    /// Latest readiness report per version: (ready, total).
    pub readiness: BTreeMap<String, (u32, u32)>,
    /// The route the proxy should have.
    pub route: Option<DesiredRoute>,
    /// Versions that should run, with their replica counts.
    pub instances: BTreeMap<String, u32>,
    /// Versions to tear down once their drain time has passed.
    pub teardowns: BTreeMap<String, i64>,
}

/// Whether backout may roll back by itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoRollback {
    pub enabled: bool,
    /// Off until then (re-enabled by a tick after it).
    pub until_ms: Option<i64>,
    pub changed_by: Option<String>,
    pub reason: Option<String>,
}

/// A promoted release proving itself at 100% before it counts as known good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Soak {
    pub version: String,
    pub until_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutKind {
    /// A canary moving through the steps.
    Canary,
    /// The first release of a service: straight to 100%.
    Initial,
    /// `rollback --to`: a known-good release back to 100%, no analysis.
    Restore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Instances of the new version are starting.
    Deploying,
    /// Moving through the strategy's steps.
    Stepping,
    /// Moving traffic back to stable, possibly waiting for capacity.
    RollingBack,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutOutcome {
    Promoted,
    RolledBack,
    Aborted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseKind {
    /// Someone ran `backout pause`.
    Manual,
    /// The judge asked for a human.
    Verdict,
    /// An analysis step ran out of time without a verdict.
    Analysis,
    /// The judge said roll back, but automatic rollback is off.
    RollbackDisabled,
    /// The judge said roll back, but the release's gate found its
    /// migrations or contract unsafe for the stable release: a person
    /// decides (`gates: {unsafe: manual_rollback}`).
    Gate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseInfo {
    pub kind: PauseKind,
    pub reason: String,
    pub since_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictInfo {
    pub verdict: Verdict,
    pub reason: String,
    pub at_ms: i64,
}

/// A rollout in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub id: u64,
    pub kind: RolloutKind,
    /// The version being rolled out.
    pub version: String,
    /// The version it replaces (stable when it started), if any.
    pub baseline: Option<String>,
    pub started_by: String,
    pub started_ms: i64,
    pub phase: Phase,
    /// Index of the current step.
    pub step: usize,
    pub step_started_ms: i64,
    pub paused: Option<PauseInfo>,
    pub last_verdict: Option<VerdictInfo>,
    /// The last time the rollout was not stuck waiting for instances; the
    /// progress deadline counts from here.
    pub progress_ms: i64,
    /// During a rollback: the record being filled in, and since when it has
    /// been waiting for stable's capacity.
    pub rollback: Option<usize>,
    pub capacity_wait_since_ms: Option<i64>,
}

/// A finished rollout, for history and the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutSummary {
    pub id: u64,
    pub kind: RolloutKind,
    pub version: String,
    pub baseline: Option<String>,
    pub outcome: RolloutOutcome,
    pub started_ms: i64,
    pub finished_ms: i64,
    pub started_by: String,
    pub reason: String,
}

impl ServiceState {
    pub fn new(service: &str) -> Self {
        ServiceState {
            service: service.to_string(),
            stable: None,
            releases: Vec::new(),
            rollout: None,
            history: Vec::new(),
            next_rollout_id: 1,
            auto_rollback: AutoRollback {
                enabled: true,
                until_ms: None,
                changed_by: None,
                reason: None,
            },
            rollbacks: Vec::new(),
            soak: None,
            readiness: BTreeMap::new(),
            route: None,
            instances: BTreeMap::new(),
            teardowns: BTreeMap::new(),
        }
    }

    pub fn release(&self, version: &str) -> Option<&Release> {
        self.releases.iter().find(|r| r.version == version)
    }

    pub(crate) fn release_mut(&mut self, version: &str) -> Option<&mut Release> {
        self.releases.iter_mut().find(|r| r.version == version)
    }

    /// The route the proxy should have now.
    pub fn desired_route(&self) -> Option<&DesiredRoute> {
        self.route.as_ref()
    }

    /// Versions that should be running, with replica counts.
    pub fn desired_instances(&self) -> &BTreeMap<String, u32> {
        &self.instances
    }

    /// Known-good releases, newest first.
    pub fn known_good(&self) -> Vec<&Release> {
        let mut good: Vec<&Release> = self
            .releases
            .iter()
            .filter(|r| r.known_good_ms.is_some())
            .collect();
        good.sort_by_key(|r| std::cmp::Reverse(r.known_good_ms));
        good
    }

    /// The last N known-good releases: never pruned, always a valid
    /// `rollback --to` target.
    pub fn pinned(&self, policy: &Policy) -> Vec<&Release> {
        self.known_good()
            .into_iter()
            .take(policy.history.keep_known_good as usize)
            .collect()
    }

    /// Whether automatic rollback applies at `now_ms`.
    pub fn auto_rollback_on(&self, policy: &Policy) -> bool {
        policy.rollback.automatic && self.auto_rollback.enabled
    }
}
