//! How a rollout moves users onto a new release: the steps (names as in
//! Argo Rollouts), the progress deadline, the soak before a release counts
//! as known good, and what a rollback may do about capacity.

use std::fmt;
use std::time::Duration as StdDuration;

use backout_routing::{MatchRule, Permille, RuleSpec, Target};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// One step of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Send this share of traffic to the canary.
    SetWeight(Permille),
    /// Hold for a while, or (no duration) until someone resumes or approves.
    Pause(Option<Duration>),
    /// A manual gate: wait for `backout approve`.
    Approve,
    /// Hold until the judge has enough evidence to promote; after
    /// `duration` without it, do what `on_timeout` says.
    Analysis(AnalysisStep),
    /// Send requests that match these rules to the canary (e.g. employees
    /// first), on top of the weight.
    Match(Vec<RuleSpec>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisStep {
    pub duration: Duration,
    #[serde(default)]
    pub on_timeout: OnTimeout,
}

/// What an analysis step does when its time is up and the judge has
/// neither promoted nor rolled back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// Ask a human (the safe default: no evidence is not good evidence).
    #[default]
    Pause,
    /// Carry on to the next step.
    Continue,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::SetWeight(w) => write!(f, "set_weight {w}"),
            Step::Pause(Some(d)) => write!(f, "pause {d}"),
            Step::Pause(None) => f.write_str("pause until resumed"),
            Step::Approve => f.write_str("approve"),
            Step::Analysis(a) => write!(f, "analysis up to {}", a.duration),
            Step::Match(rules) => write!(
                f,
                "match ({} rule{})",
                rules.len(),
                if rules.len() == 1 { "" } else { "s" }
            ),
        }
    }
}

/// A rule in a `match` step: where to look and how to compare; the target
/// is always the canary.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchFile {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    cookie: Option<String>,
    #[serde(default)]
    equals: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    regex: Option<String>,
}

impl MatchFile {
    fn into_rule(self) -> Result<RuleSpec, String> {
        let spec = RuleSpec {
            header: self.header,
            cookie: self.cookie,
            equals: self.equals,
            prefix: self.prefix,
            regex: self.regex,
            to: Target::Canary,
        };
        MatchRule::compile(spec.clone()).map_err(|e| e.to_string())?;
        Ok(spec)
    }
}

/// One or several rules.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(MatchFile),
    Many(Vec<MatchFile>),
}

/// `pause: 30s` or `pause: {}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PauseArg {
    For(Duration),
    Open {},
}

const STEP_KINDS: &str = "set_weight, pause, approve, analysis, match";

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Step;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "a step: one of {STEP_KINDS}, e.g. `set_weight: 10` or `pause: 30s`"
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Step, E> {
                match v {
                    "approve" => Ok(Step::Approve),
                    "pause" => Ok(Step::Pause(None)),
                    other => Err(E::custom(format!(
                        "unknown step `{other}`; steps are {STEP_KINDS} (only approve and pause may be written alone)"
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Step, A::Error> {
                let Some(kind) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(format!(
                        "an empty step; write one of {STEP_KINDS}"
                    )));
                };
                let step = match kind.as_str() {
                    "set_weight" => Step::SetWeight(map.next_value()?),
                    "pause" => match map.next_value::<PauseArg>() {
                        Ok(PauseArg::For(d)) => Step::Pause(Some(d)),
                        Ok(PauseArg::Open {}) => Step::Pause(None),
                        Err(_) => {
                            return Err(de::Error::custom(
                                "`pause` takes a duration (`pause: 30s`) or `{}` to wait for a human",
                            ));
                        }
                    },
                    "approve" => {
                        map.next_value::<de::IgnoredAny>()?;
                        Step::Approve
                    }
                    "analysis" => Step::Analysis(map.next_value()?),
                    "match" => {
                        let rules = match map.next_value::<OneOrMany>() {
                            Ok(OneOrMany::One(r)) => vec![r],
                            Ok(OneOrMany::Many(rs)) => rs,
                            Err(_) => {
                                return Err(de::Error::custom(
                                    "`match` takes a rule such as `{header: x-employee, equals: \"true\"}` or a list of them",
                                ));
                            }
                        };
                        Step::Match(
                            rules
                                .into_iter()
                                .map(MatchFile::into_rule)
                                .collect::<Result<_, _>>()
                                .map_err(de::Error::custom)?,
                        )
                    }
                    other => {
                        return Err(de::Error::custom(format!(
                            "unknown step `{other}`; steps are {STEP_KINDS}"
                        )));
                    }
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "a step has exactly one kind; found `{kind}` and `{extra}`: put them in separate list items"
                    )));
                }
                Ok(step)
            }
        }
        d.deserialize_any(V)
    }
}

/// The whole strategy, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Strategy {
    pub steps: Vec<Step>,
    /// A rollout that makes no progress (canary never ready, or not ready
    /// again) for this long is aborted with the reason. Waiting for a human
    /// does not count.
    pub progress_deadline: Duration,
    /// Healthy time at 100% before a release becomes last known good.
    pub soak: Duration,
    /// Time given to in-flight requests before a version that lost its
    /// traffic is torn down.
    pub drain: Duration,
    /// Instances per version.
    pub replicas: u32,
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy {
            steps: vec![
                Step::SetWeight(Permille::new(50).unwrap_or_default()),
                Step::Analysis(AnalysisStep {
                    duration: Duration::from_secs(300),
                    on_timeout: OnTimeout::Pause,
                }),
                Step::SetWeight(Permille::new(250).unwrap_or_default()),
                Step::Analysis(AnalysisStep {
                    duration: Duration::from_secs(300),
                    on_timeout: OnTimeout::Pause,
                }),
                Step::SetWeight(Permille::new(500).unwrap_or_default()),
                Step::Pause(Some(Duration::from_secs(60))),
            ],
            progress_deadline: Duration::from_secs(600),
            soak: Duration::from_secs(300),
            drain: Duration::from_secs(5),
            replicas: 1,
        }
    }
}

/// The strategy as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StrategyFile {
    #[serde(default)]
    steps: Option<Vec<Step>>,
    #[serde(default)]
    progress_deadline: Option<Duration>,
    #[serde(default)]
    soak: Option<Duration>,
    #[serde(default)]
    drain: Option<Duration>,
    #[serde(default)]
    replicas: Option<u32>,
}

/// A problem with the strategy that parsing could not see, with the path
/// of the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StrategyError {
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl StrategyFile {
    pub(crate) fn validate(self) -> Result<Strategy, StrategyError> {
        let d = Strategy::default();
        let s = Strategy {
            steps: self.steps.unwrap_or(d.steps),
            progress_deadline: self.progress_deadline.unwrap_or(d.progress_deadline),
            soak: self.soak.unwrap_or(d.soak),
            drain: self.drain.unwrap_or(d.drain),
            replicas: self.replicas.unwrap_or(d.replicas),
        };
        let err = |path: String, message: String, hint: Option<&str>| StrategyError {
            path,
            message,
            hint: hint.map(str::to_string),
        };
        if s.replicas == 0 {
            return Err(err(
                "strategy.replicas".into(),
                "a version needs at least one instance".into(),
                Some("e.g. `replicas: 2`"),
            ));
        }
        if s.progress_deadline.get() < StdDuration::from_secs(1) {
            return Err(err(
                "strategy.progress_deadline".into(),
                format!(
                    "{} is too short for any canary to start",
                    s.progress_deadline
                ),
                Some("e.g. `progress_deadline: 10m`"),
            ));
        }
        let mut last_weight = Permille::ZERO;
        for (i, step) in s.steps.iter().enumerate() {
            let path = format!("strategy.steps[{i}]");
            match step {
                Step::SetWeight(w) => {
                    if *w < last_weight {
                        return Err(err(
                            path,
                            format!("weights must not go down: {w} after {last_weight}"),
                            Some(
                                "to send less traffic to the canary, roll back; a rollout only moves forward",
                            ),
                        ));
                    }
                    last_weight = *w;
                }
                Step::Pause(Some(p)) if *p > s.progress_deadline => {
                    return Err(err(
                        path,
                        format!(
                            "a pause of {p} is longer than the progress deadline ({}), which would abort the rollout",
                            s.progress_deadline
                        ),
                        Some(
                            "shorten the pause, raise `strategy.progress_deadline`, or use `pause: {}` to wait for a human",
                        ),
                    ));
                }
                Step::Analysis(a) if a.duration > s.progress_deadline => {
                    return Err(err(
                        path,
                        format!(
                            "an analysis of up to {} is longer than the progress deadline ({})",
                            a.duration, s.progress_deadline
                        ),
                        Some("shorten the analysis or raise `strategy.progress_deadline`"),
                    ));
                }
                Step::Analysis(a) if a.duration.get().is_zero() => {
                    return Err(err(
                        path,
                        "an analysis step needs a duration above zero".into(),
                        None,
                    ));
                }
                _ => {}
            }
        }
        Ok(s)
    }
}

/// What a rollback may do when stable lacks capacity for all the traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapacityMode {
    /// Scale stable up first, then move all traffic (up to `capacity_timeout`).
    #[default]
    ScaleFirst,
    /// Move traffic back as fast as stable's ready endpoints allow.
    Gradual,
}

/// The `rollback:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RollbackPolicy {
    /// Roll back by itself on a `rollback` verdict (default on). Can also be
    /// switched off at run time, with a reason and an expiry.
    pub automatic: bool,
    pub capacity: CapacityMode,
    /// How long a scale-first rollback waits for stable before it moves
    /// traffic anyway.
    pub capacity_timeout: Duration,
}

impl Default for RollbackPolicy {
    fn default() -> Self {
        RollbackPolicy {
            automatic: true,
            capacity: CapacityMode::ScaleFirst,
            capacity_timeout: Duration::from_secs(30),
        }
    }
}

/// The `history:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryPolicy {
    /// The last N known-good releases are pinned: never pruned, always
    /// available to `backout rollback --to`.
    pub keep_known_good: u32,
}

impl Default for HistoryPolicy {
    fn default() -> Self {
        HistoryPolicy { keep_known_good: 5 }
    }
}

/// Where to tell people about rollout events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    /// POST each event as JSON to this URL.
    pub webhook: String,
    /// Only these event kinds (one of [`Notification::EVENTS`]); all when
    /// empty.
    #[serde(default)]
    pub events: Vec<String>,
}

impl Notification {
    /// Every kind of event a rollout announces (the `kind` of a notice).
    /// A name outside this list is refused when the spec is read: a typo
    /// would mean no alerts at all.
    pub const EVENTS: &'static [&'static str] = &[
        "aborted",
        "approved",
        "auto_rollback",
        "break_glass",
        "canary_ready",
        "capacity_timeout",
        "deadline",
        "gates",
        "gates_accepted",
        "known_good",
        "page",
        "paused",
        "promote",
        "promote_full",
        "promoted",
        "resumed",
        "rollback",
        "rolled_back",
        "rollout_started",
        "soak_failed",
        "soak_interrupted",
        "step",
        "weight",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(yaml: &str) -> Result<Vec<Step>, String> {
        serde_saphyr::from_str::<Vec<Step>>(yaml).map_err(|e| e.without_snippet().to_string())
    }

    fn check(yaml: &str, expected: Result<&[Step], &str>) {
        match (steps(yaml), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{yaml}"),
            (Err(e), Err(fragment)) => assert!(e.contains(fragment), "{yaml}: {e}"),
            (got, want) => panic!("{yaml}: got {got:?}, want {want:?}"),
        }
    }

    fn pct(p: f64) -> Permille {
        Permille::from_percent(p).unwrap()
    }

    #[test]
    fn step_forms() {
        check("- set_weight: 5\n", Ok(&[Step::SetWeight(pct(5.0))]));
        check("- set_weight: 12.5\n", Ok(&[Step::SetWeight(pct(12.5))]));
        check(
            "- pause: 30s\n",
            Ok(&[Step::Pause(Some(Duration::from_secs(30)))]),
        );
        check("- pause: {}\n", Ok(&[Step::Pause(None)]));
        check("- pause\n", Ok(&[Step::Pause(None)]));
        check("- approve\n", Ok(&[Step::Approve]));
        check("- approve: {}\n", Ok(&[Step::Approve]));
        check(
            "- analysis: {duration: 2m}\n",
            Ok(&[Step::Analysis(AnalysisStep {
                duration: Duration::from_secs(120),
                on_timeout: OnTimeout::Pause,
            })]),
        );
        let staff = RuleSpec {
            header: Some("x-employee".into()),
            cookie: None,
            equals: Some("true".into()),
            prefix: None,
            regex: None,
            to: Target::Canary,
        };
        check(
            "- match: {header: x-employee, equals: 'true'}\n",
            Ok(&[Step::Match(vec![staff.clone()])]),
        );
        check(
            "- match: [{header: x-employee, equals: 'true'}]\n",
            Ok(&[Step::Match(vec![staff])]),
        );
    }

    #[test]
    fn step_mistakes() {
        check("- set_weight: 101\n", Err("between 0 and 100"));
        check("- set_wieght: 5\n", Err("unknown step `set_wieght`"));
        check("- {set_weight: 5, pause: 1s}\n", Err("exactly one kind"));
        check("- pause: soon\n", Err("`pause` takes a duration"));
        check("- resume\n", Err("unknown step `resume`"));
        check("- match: {header: x, regex: '('}\n", Err("invalid regex"));
        check("- match: {header: x}\n", Err("exactly one of `equals`"));
        check("- analysis: {}\n", Err("missing field `duration`"));
    }

    fn check_strategy(yaml: &str, expected: Result<(), &str>) {
        let file: StrategyFile = serde_saphyr::from_str(yaml).unwrap();
        match (file.validate(), expected) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(fragment)) => assert!(
                format!("{}: {}", e.path, e.message).contains(fragment),
                "{yaml}: {e:?}"
            ),
            (got, want) => panic!("{yaml}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn strategies_that_make_no_sense() {
        check_strategy("steps: [{set_weight: 10}, {set_weight: 50}]\n", Ok(()));
        check_strategy(
            "steps: [{set_weight: 50}, {set_weight: 10}]\n",
            Err("strategy.steps[1]: weights must not go down: 10% after 50%"),
        );
        check_strategy(
            "progress_deadline: 1m\nsteps: [{pause: 2m}]\n",
            Err("strategy.steps[0]: a pause of 2m is longer than the progress deadline (1m)"),
        );
        check_strategy("progress_deadline: 1m\nsteps: [{pause: {}}]\n", Ok(()));
        check_strategy(
            "progress_deadline: 1m\nsteps: [{analysis: {duration: 5m}}]\n",
            Err("strategy.steps[0]: an analysis of up to 5m"),
        );
        check_strategy("replicas: 0\n", Err("strategy.replicas"));
        check_strategy("steps: []\n", Ok(()));
    }
}
