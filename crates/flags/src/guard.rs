//! Guarded flag rollouts: a variant's share of a flag grows in steps
//! (1 → 5 → 25 → 100 %) while the judge compares the requests served with
//! that variant against the requests served with the control, and the
//! variant is switched off by itself when the judge says roll back.
//!
//! This module is the pure part: [`Guard`] is the state machine (verdicts
//! and time in, flag changes out), [`GuardedRollout`] pairs it with its
//! [`Judge`], [`Tally`] folds reported outcomes into the judge's windows,
//! and [`set_share`] is the edit that moves the split. Time is always an
//! argument (`now_ms`, Unix milliseconds); the server's runtime reads the
//! clock, applies the changes and reports back when each was served.
//!
//! The cycle of one change: the guard *requests* a [`Change`] (kept in
//! [`Guard::pending`] until it is served, so an edit that failed for a
//! passing reason is simply tried again), the runtime applies it to the
//! flag file and store, and calls [`Guard::applied`] with when it began and
//! when the new flag set was swapped in. Those two stamps, with the judge's
//! onset estimate and the verdict's time, are the switch-off's MTTR.

mod split;
mod tally;
#[cfg(test)]
mod tests;

use backout_judge::{AnalysisConfig, ConfigErrors, Decision, GroupWindow, Judge, Verdict, Window};
use serde::{Deserialize, Serialize};

pub use split::{Share, SplitError, set_share, share_of};
pub use tally::{SAMPLE, Tally};

/// What to roll out, against what, in which steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub flag: String,
    /// The variant being rolled out: the judge's canary.
    pub variant: String,
    /// The variant it is measured against (the judge's baseline), and the
    /// one everybody is left with when the rollout is switched off.
    pub control: String,
    /// The variant's share at each step, strictly increasing.
    pub steps: Vec<Share>,
    /// The least time spent at each step, in milliseconds.
    pub step_ms: i64,
}

/// A plan that cannot run, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PlanError {
    pub field: &'static str,
    pub message: String,
}

impl Plan {
    pub fn validate(&self) -> Result<(), PlanError> {
        let err = |field, message: String| Err(PlanError { field, message });
        if self.variant.is_empty() || self.control.is_empty() {
            return err(
                "variant",
                "name the variant to roll out and the control variant".into(),
            );
        }
        if self.variant == self.control {
            return err(
                "control",
                format!(
                    "the control must differ from the variant rolled out (both are `{}`)",
                    self.variant
                ),
            );
        }
        let Some(first) = self.steps.first() else {
            return err("steps", "give at least one step, e.g. 1,5,25,100".into());
        };
        if *first == Share::ZERO {
            return err(
                "steps",
                "a step of 0% exposes nobody and tells the judge nothing; start at 1% or less"
                    .into(),
            );
        }
        if *first == Share::ALL {
            return err(
                "steps",
                "a first step of 100% leaves no control to compare with; start small, e.g. 1,5,25,100"
                    .into(),
            );
        }
        if let Some(w) = self.steps.windows(2).find(|w| w[1] <= w[0]) {
            return err(
                "steps",
                format!(
                    "steps must grow: {} after {} would take users back; write e.g. 1,5,25,100",
                    w[1], w[0]
                ),
            );
        }
        if self.step_ms <= 0 {
            return err(
                "step_time",
                "each step needs time for the judge to see it; e.g. 30s".into(),
            );
        }
        Ok(())
    }
}

/// Where a guarded rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// At a step, or moving to the next one.
    Stepping,
    /// Held at its step: the judge asked for a human (a warning check, or
    /// a shared incident hitting the control too).
    Paused,
    /// Done: the last step is served and the judge found nothing wrong.
    Promoted,
    /// The judge said roll back, and the variant is (being) switched off.
    RolledBack,
    /// Stopped by a human, or by a change that could not be applied.
    Aborted,
}

impl Phase {
    /// Still judging and able to move on.
    pub fn is_active(self) -> bool {
        matches!(self, Phase::Stepping | Phase::Paused)
    }
}

/// A change to the flag's split that the guard asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Identifies the request, so a late report about an older one is not
    /// taken for this one.
    pub seq: u64,
    pub kind: ChangeKind,
    /// The variant's share once the change is served.
    pub share: Share,
    /// The step this change serves (for switch-offs, the step it leaves).
    pub step: usize,
    /// Why, in a sentence, for the change history.
    pub reason: String,
    pub requested_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The first step.
    Start,
    /// A later step below 100 %.
    Step,
    /// The step to 100 %: everyone gets the variant.
    Promote,
    /// The judge said roll back: the variant's share goes to 0.
    SwitchOff,
    /// A human (or a failed step) stopped the rollout: share 0.
    Abort,
}

impl ChangeKind {
    /// The name of the change in the flag change history.
    pub fn action(self) -> &'static str {
        match self {
            ChangeKind::Start => "rollout-start",
            ChangeKind::Step => "rollout-step",
            ChangeKind::Promote => "rollout-promote",
            ChangeKind::SwitchOff => "switch-off",
            ChangeKind::Abort => "rollout-abort",
        }
    }
}

/// The judge's last word, as the guard saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    pub verdict: Verdict,
    pub reason: String,
    pub at_ms: i64,
}

/// The clock of an automatic switch-off, in Unix milliseconds.
///
/// detect: onset → verdict; decide: verdict → the edit begins; act: the
/// edit begins → the new flag set is served; verify: served → the first
/// whole second with requests reported and none of them served with the
/// variant (it needs traffic, so it may stay unknown).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mttr {
    /// When the judge estimates the problem began (`Decision::onset_t`).
    pub onset_ms: Option<i64>,
    pub verdict_ms: i64,
    pub action_ms: Option<i64>,
    pub switched_ms: Option<i64>,
    pub quiet_ms: Option<i64>,
}

/// [`Mttr`] as durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MttrPhases {
    pub detect_ms: Option<i64>,
    pub decide_ms: Option<i64>,
    pub act_ms: Option<i64>,
    pub verify_ms: Option<i64>,
    /// From the onset (or, without an estimate, the verdict) to the
    /// switch: how long users met the problem.
    pub total_ms: Option<i64>,
}

impl Mttr {
    pub fn phases(&self) -> MttrPhases {
        let span = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (Some(a), Some(b)) => Some((b - a).max(0)),
            _ => None,
        };
        MttrPhases {
            detect_ms: span(self.onset_ms, Some(self.verdict_ms)),
            decide_ms: span(Some(self.verdict_ms), self.action_ms),
            act_ms: span(self.action_ms, self.switched_ms),
            verify_ms: span(self.switched_ms, self.quiet_ms),
            total_ms: span(self.onset_ms.or(Some(self.verdict_ms)), self.switched_ms),
        }
    }
}

/// The guarded-rollout state machine of one flag.
///
/// Rules, in order of precedence:
/// * `rollback` from the judge switches the variant off at once, whatever
///   the step and whatever change is in flight;
/// * `pause` holds the step until the judge says otherwise (or a human
///   aborts);
/// * a step lasts at least `step_ms` from when it was served, and is left
///   only on `continue` or `promote`: `insufficient` holds, because a
///   variant nobody was measured on is not a healthy variant;
/// * the step to 100 % needs `promote`, the judge's proof that the variant
///   is within tolerance, because at 100 % there is no control left to
///   compare with; a last step below 100 % ends the rollout on `promote`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Guard {
    plan: Plan,
    phase: Phase,
    /// The step served (the first one until it is).
    step: usize,
    /// The variant's share known to be served.
    served: Option<Share>,
    created_ms: i64,
    /// When the first step was served: the judge's time 0.
    started_ms: Option<i64>,
    /// When the current step was served.
    step_since_ms: Option<i64>,
    pending: Option<Change>,
    next_seq: u64,
    last: Option<Seen>,
    /// Where the rollout stands, in a sentence.
    note: String,
    rollback: Option<Mttr>,
    ended_ms: Option<i64>,
    /// The last change that could not be applied, and why.
    error: Option<String>,
}

impl Guard {
    /// A rollout of `plan`, asking for its first step.
    pub fn new(plan: Plan, now_ms: i64) -> Result<Guard, PlanError> {
        plan.validate()?;
        let mut guard = Guard {
            phase: Phase::Stepping,
            step: 0,
            served: None,
            created_ms: now_ms,
            started_ms: None,
            step_since_ms: None,
            pending: None,
            next_seq: 1,
            last: None,
            note: String::new(),
            rollback: None,
            ended_ms: None,
            error: None,
            plan,
        };
        let first = guard.plan.steps[0];
        let reason = format!(
            "guarded rollout of `{}` against `{}` in steps {} of at least {}s; {}",
            guard.plan.variant,
            guard.plan.control,
            guard.steps_text(),
            guard.plan.step_ms as f64 / 1000.0,
            guard.step_label(0, first)
        );
        guard.request(now_ms, ChangeKind::Start, first, 0, reason);
        guard.note = "serving the first step".into();
        Ok(guard)
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The step served (0-based).
    pub fn step(&self) -> usize {
        self.step
    }

    pub fn served(&self) -> Option<Share> {
        self.served
    }

    pub fn started_ms(&self) -> Option<i64> {
        self.started_ms
    }

    pub fn step_since_ms(&self) -> Option<i64> {
        self.step_since_ms
    }

    pub fn ended_ms(&self) -> Option<i64> {
        self.ended_ms
    }

    /// The change waiting to be applied, if any.
    pub fn pending(&self) -> Option<&Change> {
        self.pending.as_ref()
    }

    pub fn last_verdict(&self) -> Option<&Seen> {
        self.last.as_ref()
    }

    pub fn note(&self) -> &str {
        &self.note
    }

    pub fn rollback(&self) -> Option<&Mttr> {
        self.rollback.as_ref()
    }

    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The judge's time for `now_ms`: seconds since the first step was
    /// served, or `None` before that.
    pub fn judge_t(&self, now_ms: i64) -> Option<f64> {
        self.started_ms
            .map(|s| (now_ms.saturating_sub(s)).max(0) as f64 / 1000.0)
    }

    /// Takes the judge's decision for the tick ending at `now_ms`. Returns
    /// whether the rollout's phase changed or a change was requested.
    pub fn verdict(&mut self, now_ms: i64, decision: &Decision) -> bool {
        if !self.phase.is_active() {
            return false;
        }
        let Some(started) = self.started_ms else {
            return false;
        };
        self.last = Some(Seen {
            verdict: decision.verdict,
            reason: decision.reason.clone(),
            at_ms: now_ms,
        });
        let at = self.served.unwrap_or(Share::ZERO);
        match decision.verdict {
            Verdict::Rollback => {
                let onset_ms = decision
                    .onset_t
                    .filter(|t| t.is_finite() && *t >= 0.0)
                    .map(|t| (started + (t * 1000.0).round() as i64).min(now_ms));
                self.phase = Phase::RolledBack;
                self.rollback = Some(Mttr {
                    onset_ms,
                    verdict_ms: now_ms,
                    action_ms: None,
                    switched_ms: None,
                    quiet_ms: None,
                });
                let reason = format!(
                    "the judge says roll back at {at} ({}): {}; switching `{}` off, everyone gets `{}`",
                    self.step_label(self.step, at),
                    decision.reason,
                    self.plan.variant,
                    self.plan.control
                );
                self.note = reason.clone();
                self.request(
                    now_ms,
                    ChangeKind::SwitchOff,
                    Share::ZERO,
                    self.step,
                    reason,
                );
                true
            }
            Verdict::Pause => {
                let changed = self.phase != Phase::Paused;
                self.phase = Phase::Paused;
                self.note = format!(
                    "held at {}: the judge asks for a human: {}; wait for it to change its mind, or abort",
                    self.step_label(self.step, at),
                    decision.reason
                );
                changed
            }
            verdict => {
                let resumed = self.phase == Phase::Paused;
                self.phase = Phase::Stepping;
                if self.pending.is_some() {
                    return resumed;
                }
                self.advance(now_ms, verdict, &decision.reason) || resumed
            }
        }
    }

    /// Moves to the next step when this one has lasted long enough and the
    /// verdict allows it.
    fn advance(&mut self, now_ms: i64, verdict: Verdict, reason: &str) -> bool {
        let Some(since) = self.step_since_ms else {
            return false;
        };
        let n = self.plan.steps.len();
        let at = self.plan.steps[self.step];
        let here = self.step_label(self.step, at);
        let left_ms = self.plan.step_ms - (now_ms - since);
        if left_ms > 0 {
            self.note = format!(
                "{here} for at least {}s more; the judge: {} ({reason})",
                (left_ms + 999) / 1000,
                verdict_word(verdict)
            );
            return false;
        }
        let next = self.step + 1;
        if next == n {
            // The last step is below 100 % (a step at 100 % ends the
            // rollout as soon as it is served).
            if verdict == Verdict::Promote {
                self.phase = Phase::Promoted;
                self.ended_ms = Some(now_ms);
                self.note = format!("promoted at {at}: {reason}");
                return true;
            }
            self.note = format!(
                "{here}: waiting for the judge to prove `{}` within tolerance; now {} ({reason})",
                self.plan.variant,
                verdict_word(verdict)
            );
            return false;
        }
        let to = self.plan.steps[next];
        let allowed = if to == Share::ALL {
            verdict == Verdict::Promote
        } else {
            matches!(verdict, Verdict::Continue | Verdict::Promote)
        };
        if !allowed {
            self.note = if to == Share::ALL {
                format!(
                    "{here}: 100% leaves no control to compare with, so it waits for the judge to prove `{}` within tolerance; now {} ({reason})",
                    self.plan.variant,
                    verdict_word(verdict)
                )
            } else {
                format!(
                    "{here}: waiting for the judge before {to}; now {} ({reason})",
                    verdict_word(verdict)
                )
            };
            return false;
        }
        let kind = if to == Share::ALL {
            ChangeKind::Promote
        } else {
            ChangeKind::Step
        };
        let why = format!(
            "{}; the judge: {} ({reason})",
            self.step_label(next, to),
            verdict_word(verdict)
        );
        self.note = format!("moving to {}", self.step_label(next, to));
        self.request(now_ms, kind, to, next, why);
        true
    }

    /// The change `seq` is served: the edit began at `action_ms` and the
    /// new flag set was swapped in at `served_ms`. Returns whether it was
    /// the pending change.
    pub fn applied(&mut self, seq: u64, action_ms: i64, served_ms: i64) -> bool {
        if self.pending.as_ref().is_none_or(|c| c.seq != seq) {
            return false;
        }
        let Some(change) = self.pending.take() else {
            return false;
        };
        self.served = Some(change.share);
        self.error = None;
        match change.kind {
            ChangeKind::Start | ChangeKind::Step => {
                self.step = change.step;
                self.step_since_ms = Some(served_ms);
                self.started_ms.get_or_insert(served_ms);
                self.note = format!("{} served", self.step_label(change.step, change.share));
            }
            ChangeKind::Promote => {
                self.step = change.step;
                self.step_since_ms = Some(served_ms);
                self.phase = Phase::Promoted;
                self.ended_ms = Some(served_ms);
                self.note = format!(
                    "promoted: everyone gets `{}`; {}",
                    self.plan.variant, change.reason
                );
            }
            ChangeKind::SwitchOff => {
                if let Some(m) = &mut self.rollback {
                    m.action_ms = Some(action_ms);
                    m.switched_ms = Some(served_ms);
                }
                self.ended_ms = Some(served_ms);
                self.note = format!("switched off: {}", change.reason);
            }
            ChangeKind::Abort => {
                self.ended_ms = Some(served_ms);
                self.note = format!("aborted: {}", change.reason);
            }
        }
        true
    }

    /// The change `seq` could not be applied. A `permanent` failure (the
    /// flag is gone, or its split was changed by hand so that there is no
    /// split to move) will not heal by retrying; anything else is tried
    /// again on the next tick. Returns whether the phase changed.
    pub fn failed(&mut self, seq: u64, now_ms: i64, error: &str, permanent: bool) -> bool {
        let Some(change) = self.pending.clone().filter(|c| c.seq == seq) else {
            return false;
        };
        self.error = Some(error.to_owned());
        if !permanent {
            return false;
        }
        match change.kind {
            ChangeKind::Start => {
                self.pending = None;
                self.phase = Phase::Aborted;
                self.ended_ms = Some(now_ms);
                self.note = format!("could not start: {error}; the flag is unchanged");
            }
            ChangeKind::Step | ChangeKind::Promote => {
                self.phase = Phase::Aborted;
                let reason = format!(
                    "{} could not be applied ({error}); switching `{}` off",
                    self.step_label(change.step, change.share),
                    self.plan.variant
                );
                self.note = reason.clone();
                self.request(now_ms, ChangeKind::Abort, Share::ZERO, self.step, reason);
            }
            ChangeKind::SwitchOff | ChangeKind::Abort => {
                self.pending = None;
                self.ended_ms = Some(now_ms);
                self.note = format!(
                    "could not switch `{}` off: {error}; check flag `{}` by hand",
                    self.plan.variant, self.plan.flag
                );
            }
        }
        true
    }

    /// A human stops the rollout: the variant's share goes to 0.
    pub fn abort(&mut self, now_ms: i64, actor: &str, reason: &str) -> Result<(), String> {
        if !self.phase.is_active() {
            return Err(format!(
                "the rollout of `{}` is already over ({})",
                self.plan.flag,
                phase_word(self.phase)
            ));
        }
        self.phase = Phase::Aborted;
        let why = if reason.is_empty() {
            format!("aborted by {actor}")
        } else {
            format!("aborted by {actor}: {reason}")
        };
        if self.started_ms.is_none() {
            // The first step was never served: nothing to undo.
            self.pending = None;
            self.ended_ms = Some(now_ms);
            self.note = format!("{why}, before the first step was served");
            return Ok(());
        }
        let reason = format!("{why}; switching `{}` off", self.plan.variant);
        self.note = reason.clone();
        self.request(now_ms, ChangeKind::Abort, Share::ZERO, self.step, reason);
        Ok(())
    }

    /// Traffic in the tick ending at `now_ms`, after a switch-off: the
    /// first whole tick with requests and none served with the variant
    /// verifies it.
    pub fn traffic(&mut self, now_ms: i64, control_requests: u64, variant_requests: u64) -> bool {
        let Some(m) = &mut self.rollback else {
            return false;
        };
        match m.switched_ms {
            Some(s) if m.quiet_ms.is_none() && now_ms - 1000 >= s => {
                if variant_requests == 0 && control_requests > 0 {
                    m.quiet_ms = Some(now_ms);
                    return true;
                }
                false
            }
            _ => false,
        }
    }

    fn request(
        &mut self,
        now_ms: i64,
        kind: ChangeKind,
        share: Share,
        step: usize,
        reason: String,
    ) {
        self.pending = Some(Change {
            seq: self.next_seq,
            kind,
            share,
            step,
            reason,
            requested_ms: now_ms,
        });
        self.next_seq += 1;
    }

    fn step_label(&self, step: usize, share: Share) -> String {
        format!(
            "step {}/{}: {share} `{}`",
            step + 1,
            self.plan.steps.len(),
            self.plan.variant
        )
    }

    fn steps_text(&self) -> String {
        self.plan
            .steps
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" → ")
    }
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Insufficient => "insufficient",
        Verdict::Continue => "continue",
        Verdict::Pause => "pause",
        Verdict::Rollback => "rollback",
        Verdict::Promote => "promote",
    }
}

fn phase_word(p: Phase) -> &'static str {
    match p {
        Phase::Stepping => "stepping",
        Phase::Paused => "paused",
        Phase::Promoted => "promoted",
        Phase::RolledBack => "rolled back",
        Phase::Aborted => "aborted",
    }
}

/// Why a guarded rollout cannot start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("analysis: {0}")]
    Analysis(#[from] ConfigErrors),
}

/// A guard with its judge: per-variant windows in, flag changes out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardedRollout {
    pub guard: Guard,
    judge: Judge,
    last: Option<Decision>,
}

impl GuardedRollout {
    /// A rollout of `plan`, judged with `analysis` (the same section as a
    /// service's; its per-check `warmup` and `promote_after` set how soon
    /// the judge can speak).
    pub fn new(
        plan: Plan,
        analysis: &AnalysisConfig,
        now_ms: i64,
    ) -> Result<GuardedRollout, StartError> {
        let judge = Judge::new(analysis, "analysis")?;
        Ok(GuardedRollout {
            guard: Guard::new(plan, now_ms)?,
            judge,
            last: None,
        })
    }

    /// One tick: the control's and the variant's outcomes since the last
    /// one. Returns whether the guard's phase changed or it asked for a
    /// change.
    pub fn tick(&mut self, now_ms: i64, control: GroupWindow, variant: GroupWindow) -> bool {
        if !self.guard.phase().is_active() {
            return self
                .guard
                .traffic(now_ms, control.requests, variant.requests);
        }
        let Some(t) = self.guard.judge_t(now_ms) else {
            return false;
        };
        let decision = self.judge.observe(&Window {
            t,
            baseline: control,
            canary: variant,
        });
        let changed = self.guard.verdict(now_ms, &decision);
        self.last = Some(decision);
        changed
    }

    /// The judge's last decision, with every check's report.
    pub fn last_decision(&self) -> Option<&Decision> {
        self.last.as_ref()
    }
}
