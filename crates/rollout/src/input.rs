//! What can happen to a service: every input the state machine accepts.

use std::collections::BTreeMap;

use backout_judge::Verdict;
use backout_routing::Permille;
use serde::{Deserialize, Serialize};

use crate::gate::{Contracts, GateReport};

/// When an input happened and who caused it, as the event log recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// Wall-clock milliseconds.
    pub at_ms: i64,
    pub actor: &'a str,
    pub reason: Option<&'a str>,
}

/// A human (or script) telling the rollout what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Pass a manual gate (`approve` step, open `pause`, or an analysis
    /// that timed out).
    Approve,
    /// Hold the rollout where it is.
    Pause,
    /// Lift a pause.
    Resume,
    /// Send everything back to stable and stop, without calling it an
    /// incident.
    Abort,
    /// Break-glass: canary to 0% at once. With `to`, go to that pinned
    /// known-good release instead, without analysis.
    Rollback {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    /// Skip the current step; with `full`, go straight to 100% (an audited
    /// break-glass forward).
    Promote {
        #[serde(default)]
        full: bool,
    },
    /// Hold the canary at this share of the traffic by hand: the rollout
    /// pauses there (the judge keeps watching) until `resume`, which goes
    /// on with the current step.
    SetWeight { weight: Permille },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    /// A new immutable release.
    RegisterRelease {
        version: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        artifact: Option<String>,
        #[serde(default)]
        config: BTreeMap<String, String>,
        /// What it carries to be checked, and the checks' report against
        /// the release stable at registration (computed before logging).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gates: Option<Box<ReleaseGates>>,
    },
    /// An operator accepts a release's gate findings (the envelope's reason
    /// says why): the gate no longer holds it back.
    AcceptGates {
        version: String,
        reason: String,
    },
    /// A release's contracts checked again, against the release stable now
    /// (it changed since the release was registered): the new report
    /// replaces the old one, and an acceptance of the old one lapses.
    RecheckGates {
        version: String,
        report: GateReport,
    },
    /// Roll out a registered release (the first one goes straight to 100%).
    StartRollout {
        version: String,
    },
    Command(Command),
    /// Turn automatic rollback off (with an expiry) or back on.
    SetAutoRollback {
        enabled: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until_ms: Option<i64>,
    },
    /// Time passes (timed pauses, deadlines, soak, drain).
    Tick,
    /// The judge's latest verdict on the canary.
    Verdict {
        verdict: Verdict,
        reason: String,
        /// When the judge thinks the regression started, if it knows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        onset_ms: Option<i64>,
    },
    /// How many of a version's instances can take traffic.
    Readiness {
        version: String,
        ready: u32,
        total: u32,
    },
    /// A driver gave up deploying a version.
    DeployFailed {
        version: String,
        error: String,
    },
    /// The proxy switched to this route at `applied_at_ms`.
    RouteApplied {
        stable: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        canary: Option<String>,
        weight_permille: u16,
        generation: u64,
        applied_at_ms: i64,
    },
    /// A version's instances are gone.
    TornDown {
        version: String,
    },
    /// After a rollback, the service's error rate is back at the level the
    /// stable version had before.
    Recovered,
    /// Stable's health during a soak (absolute guards).
    SoakHealth {
        ok: bool,
        reason: String,
    },
}

/// A release's contracts and their report, as registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseGates {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contracts: Option<Contracts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<GateReport>,
}

/// Why an input does not apply to the current state. The API refuses such
/// inputs before they are logged; the state machine ignores them if they
/// are logged anyway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    /// Machine-readable: `not_found`, `conflict`, `invalid`.
    pub code: &'static str,
    pub message: String,
}

impl Rejection {
    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Rejection {
            code: "conflict",
            message: message.into(),
        }
    }
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Rejection {
            code: "not_found",
            message: message.into(),
        }
    }
}
