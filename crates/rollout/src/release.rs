//! Releases: immutable records of what was shipped, and what became of it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::gate::{Contracts, GateReport};

/// One registered release of a service. What it *is* (version, artifact,
/// config, who, when) never changes; what *happened* to it is appended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub version: String,
    pub artifact: Option<String>,
    /// `backout release --set KEY=VALUE` pairs, e.g. static endpoints.
    pub config: BTreeMap<String, String>,
    pub registered_by: String,
    pub registered_ms: i64,
    /// When it took all traffic.
    pub promoted_ms: Option<i64>,
    /// When it had soaked healthy at 100%: last known good from then on.
    pub known_good_ms: Option<i64>,
    /// When traffic was taken away from it by a rollback.
    pub rolled_back_ms: Option<i64>,
    pub outcome: Option<ReleaseOutcome>,
    /// The migrations and API contract it carries, so the next release
    /// can be checked against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contracts: Option<Contracts>,
    /// Its gate report against the release stable when it was registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gates: Option<GateReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseOutcome {
    Promoted,
    RolledBack,
    Aborted,
}

impl Release {
    /// Whether registering `other` under the same version is a retry of
    /// this one (allowed, no effect) rather than a different release under
    /// a reused name (refused: releases are immutable).
    pub fn same_content(
        &self,
        artifact: &Option<String>,
        config: &BTreeMap<String, String>,
        contracts: &Option<Contracts>,
    ) -> bool {
        self.artifact == *artifact && self.config == *config && self.contracts == *contracts
    }
}
