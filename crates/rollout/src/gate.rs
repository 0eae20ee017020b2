//! Release gates as the state machine sees them: what a release carries to
//! be checked (its migrations and API contract), the report of the checks
//! against the release that was stable when it was registered, and an
//! operator's acceptance.
//!
//! The checks themselves (`backout-gates`) run at the edge, before the
//! registration is logged, so the log holds their result and the fold
//! never depends on a parser's version.

use serde::{Deserialize, Serialize};

use backout_spec::UnsafeGate;

/// One file a release carries: a migration or a contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractFile {
    pub name: String,
    pub text: String,
}

/// What a release carries to be checked against the next one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Contracts {
    /// `postgres` or `mysql`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialect: Option<String>,
    /// The release's migrations, in the order they apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrations: Vec<ContractFile>,
    /// Its OpenAPI document or message schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ContractFile>,
}

/// The worst class found, as `backout-gates` ranks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateClass {
    Safe,
    Hygiene,
    Risky,
    Unsafe,
}

/// One finding: a migration statement or an API change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateFinding {
    /// `migrations` or `api`.
    pub check: String,
    /// `file:line:col` for a migration, a JSON pointer for the API.
    pub at: String,
    /// The migration rule, or the API direction that breaks.
    pub rule: String,
    pub class: GateClass,
    pub message: String,
}

/// The checks of one release against the release stable when it was
/// registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateReport {
    /// The stable release it was checked against; `None` for a first
    /// release, whose migrations are checked on their own.
    pub against: Option<String>,
    pub verdict: GateClass,
    pub findings: Vec<GateFinding>,
    /// An operator's acceptance: from then on the gate no longer holds
    /// the release back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<Acceptance>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acceptance {
    pub by: String,
    pub at_ms: i64,
    pub reason: String,
}

impl GateReport {
    /// What the gate does to this release under `policy`: an unsafe,
    /// unaccepted report follows the spec; anything else lets it be.
    pub fn effect(&self, policy: UnsafeGate) -> UnsafeGate {
        if self.verdict == GateClass::Unsafe && self.accepted.is_none() {
            policy
        } else {
            UnsafeGate::Allow
        }
    }

    /// The unsafe findings in a line, for pauses, pages and refusals.
    pub fn summary(&self) -> String {
        let unsafe_ones: Vec<&GateFinding> = self
            .findings
            .iter()
            .filter(|f| f.class == GateClass::Unsafe)
            .collect();
        let first = unsafe_ones
            .first()
            .map(|f| format!("{} at {}: {}", f.rule, f.at, f.message))
            .unwrap_or_default();
        let more = match unsafe_ones.len() {
            0 | 1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        format!("{first}{more}")
    }
}
