//! The rollout state machine and release history, as pure values.
//!
//! `(state, input) -> (state, actions)`: [`ServiceState::apply`] takes an
//! input (a command, a verdict, a tick, a readiness report…) stamped with
//! the time and the actor that the event log recorded, updates the state and
//! returns the actions to carry out. Nothing here reads a clock, opens a
//! socket or starts a process: the controller logs every input before
//! applying it, so the state of a service is always the fold of its log,
//! and replaying the log after a crash rebuilds exactly the same state.
//!
//! Besides the actions (which say what changed), the state always knows the
//! world it wants — [`ServiceState::desired_route`] and
//! [`ServiceState::desired_instances`] — so the controller can reconcile the
//! proxy and the drivers to it at any time, which is what makes every step
//! idempotent.

mod action;
mod gate;
mod input;
mod machine;
mod mttr;
mod release;
mod state;

pub use action::{Action, DesiredRoute, Notice};
pub use gate::{Acceptance, ContractFile, Contracts, GateClass, GateFinding, GateReport};
pub use input::{Command, Envelope, Input, Rejection, ReleaseGates};
pub use mttr::{MttrBreakdown, MttrSummary, RollbackKind, RollbackRecord};
pub use release::{Release, ReleaseOutcome};
pub use state::{
    AutoRollback, PauseInfo, PauseKind, Phase, Policy, Rollout, RolloutKind, RolloutOutcome,
    RolloutSummary, ServiceState, Soak, VerdictInfo,
};
