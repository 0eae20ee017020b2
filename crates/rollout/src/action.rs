//! What the controller must do after an input.

use backout_routing::{Permille, RouteSpec, RuleSpec};
use serde::{Deserialize, Serialize};

/// The route the state wants the proxy to have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredRoute {
    pub stable: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
    pub weight: Permille,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleSpec>,
}

impl DesiredRoute {
    pub fn stable_only(version: &str) -> Self {
        DesiredRoute {
            stable: version.to_string(),
            canary: None,
            weight: Permille::ZERO,
            rules: Vec::new(),
        }
    }

    pub fn to_spec(&self) -> RouteSpec {
        RouteSpec {
            stable: self.stable.clone(),
            canary: self.canary.clone(),
            canary_weight: self.weight,
            rules: self.rules.clone(),
        }
    }

    /// Whether this route sends nothing to `version` unless it is stable.
    pub fn excludes_canary(&self) -> bool {
        self.canary.is_none() || (self.weight == Permille::ZERO && self.rules.is_empty())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Start `replicas` instances of a version (idempotent).
    Deploy {
        version: String,
        replicas: u32,
    },
    /// Ensure a version runs `replicas` instances.
    Scale {
        version: String,
        replicas: u32,
    },
    /// Stop every instance of a version.
    Teardown {
        version: String,
    },
    SetRoute(DesiredRoute),
    /// Something people should hear about.
    Notify(Notice),
}

/// A message for people: the timeline, notifications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// `rollout_started`, `step`, `paused`, `resumed`, `rollback`, `promoted`,
    /// `aborted`, `known_good`, `soak_failed`, `auto_rollback`, `deadline`.
    pub kind: String,
    pub message: String,
}
