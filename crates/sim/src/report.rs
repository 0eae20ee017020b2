//! Many runs per family, summarised per rule.

use crate::run::{Tolerances, run, run_seed};
use crate::scenario::{Family, TtdGoal};
use backout_judge::Judge;
use serde::Serialize;

/// One rule's record over a family's runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleSummary {
    /// Rule name (`backout`, `argo`, ...).
    pub rule: &'static str,
    /// Runs.
    pub runs: usize,
    /// Share of runs rolled back at any time (healthy families) or before
    /// the regression started (regression families): false rollbacks.
    pub false_rollback_rate: f64,
    /// Regression families: share of runs rolled back after the onset.
    pub detection_rate: Option<f64>,
    /// Median seconds from onset to rollback over *all* runs, a missed
    /// regression counting as never: `None` when fewer than half detect.
    pub median_time_to_detect: Option<f64>,
    /// Mean excess canary errors served from onset to rollback (or end).
    pub mean_excess_errors: Option<f64>,
    /// backout only: median time to first `promote` verdict, over runs that
    /// reached one (healthy families).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median_time_to_promote: Option<f64>,
    /// backout only: share of runs that reached `promote`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promote_rate: Option<f64>,
}

/// All rules over one family.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FamilyReport {
    /// Family name.
    pub family: &'static str,
    /// What it models.
    pub description: &'static str,
    /// Healthy or regression family.
    pub healthy: bool,
    /// Seconds per window the rules were fed.
    pub window_s: u32,
    /// What the median time to detect is held against.
    pub ttd_goal: TtdGoal,
    /// backout first, then the peers, then the oracle.
    pub rules: Vec<RuleSummary>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    let mid = if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    };
    mid.is_finite().then_some(mid)
}

/// Runs `runs` rollouts of each family at each window size (seconds per
/// window; seeds derived from `seed`, the family's index in `all` and the
/// run index, so every window size sees the same traffic) and summarises
/// each rule. Reports come family by family, window sizes side by side.
pub fn simulate(
    families: &[(usize, Family)],
    judge: &Judge,
    tol: Tolerances,
    runs: usize,
    seed: u64,
    windows: &[u32],
) -> Vec<FamilyReport> {
    let windows = if windows.is_empty() {
        &[1][..]
    } else {
        windows
    };
    families
        .iter()
        .flat_map(|&(index, family)| windows.iter().map(move |&w| (index, family, w)))
        .map(|(index, family, window_s)| {
            let results: Vec<_> = (0..runs)
                .map(|r| run(&family, judge, tol, run_seed(seed, index, r), window_s))
                .collect();
            // Rules in order of first appearance: a rule may judge only
            // some scenarios (the fixed warm-up twin).
            let mut names: Vec<&'static str> = Vec::new();
            for (n, _) in results.iter().flat_map(|r| &r.outcomes) {
                if !names.contains(n) {
                    names.push(n);
                }
            }
            let rules = names
                .iter()
                .map(|&rule| {
                    let outcomes: Vec<_> = results
                        .iter()
                        .filter_map(|r| {
                            let (_, o) = r.outcomes.iter().find(|(n, _)| *n == rule)?;
                            Some((r.scenario.onset, *o))
                        })
                        .collect();
                    let n = outcomes.len().max(1) as f64;
                    let false_rollbacks = outcomes
                        .iter()
                        .filter(|(onset, o)| {
                            o.rollback_at.is_some_and(|t| family.healthy || t < *onset)
                        })
                        .count();
                    let delays: Vec<f64> = if family.healthy {
                        Vec::new()
                    } else {
                        outcomes
                            .iter()
                            .map(|(onset, o)| {
                                o.rollback_at
                                    .filter(|t| t >= onset)
                                    .map_or(f64::INFINITY, |t| t - onset)
                            })
                            .collect()
                    };
                    let detected = delays.iter().filter(|d| d.is_finite()).count();
                    let is_judge = rule == "backout";
                    let promotes: Vec<f64> =
                        outcomes.iter().filter_map(|(_, o)| o.promote_at).collect();
                    RuleSummary {
                        rule,
                        runs: outcomes.len(),
                        false_rollback_rate: false_rollbacks as f64 / n,
                        detection_rate: (!family.healthy).then(|| detected as f64 / n),
                        median_time_to_detect: median(delays),
                        mean_excess_errors: (!family.healthy).then(|| {
                            outcomes.iter().map(|(_, o)| o.excess_errors).sum::<f64>() / n
                        }),
                        median_time_to_promote: if is_judge {
                            median(promotes.clone())
                        } else {
                            None
                        },
                        promote_rate: is_judge.then(|| promotes.len() as f64 / n),
                    }
                })
                .collect();
            FamilyReport {
                family: family.name,
                description: family.description,
                healthy: family.healthy,
                window_s,
                ttd_goal: family.ttd_goal,
                rules,
            }
        })
        .collect()
}

/// Formats reports as a plain-text table, one row per family and rule.
pub fn table(reports: &[FamilyReport]) -> String {
    let mut out = format!(
        "{:<18} {:>4} {:<12} {:>6} {:>9} {:>8} {:>9} {:>10} {:>9}\n",
        "family", "win", "rule", "runs", "false-rb", "detect", "ttd-p50", "excess-err", "promote"
    );
    let pct = |v: f64| format!("{:.1}%", 100.0 * v);
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("-".to_owned(), f);
    for r in reports {
        for s in &r.rules {
            out.push_str(&format!(
                "{:<18} {:>4} {:<12} {:>6} {:>9} {:>8} {:>9} {:>10} {:>9}\n",
                r.family,
                format!("{}s", r.window_s),
                s.rule,
                s.runs,
                pct(s.false_rollback_rate),
                opt(s.detection_rate, &pct),
                opt(s.median_time_to_detect, &|v| format!("{v:.0}s")),
                opt(s.mean_excess_errors, &|v| format!("{v:.1}")),
                opt(s.median_time_to_promote, &|v| format!("{v:.0}s")),
            ));
        }
    }
    out
}

/// How backout fares against the goals in one family.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Goal {
    /// Family name.
    pub family: &'static str,
    /// Seconds per window.
    pub window_s: u32,
    /// What is required, in words.
    pub goal: String,
    /// What backout achieved, in words.
    pub achieved: String,
    /// Whether the goal is met.
    pub met: bool,
}

/// Checks each family against the goals: healthy families at most 1 %
/// false rollbacks; regression families at least 95 % detection and a
/// median time to detect within the larger of a third of the best peer's
/// and 1.5× the oracle SPRT's, or, for families whose goal is the oracle
/// alone ([`TtdGoal::TwiceOracle`]: rare errors, where every peer is
/// hopeless or reckless), within 2× the oracle SPRT's.
pub fn goals(reports: &[FamilyReport]) -> Vec<Goal> {
    let mut out = Vec::new();
    for r in reports {
        let Some(ours) = r.rules.iter().find(|s| s.rule == "backout") else {
            continue;
        };
        if r.healthy {
            out.push(Goal {
                family: r.family,
                window_s: r.window_s,
                goal: "false rollbacks ≤ 1%".into(),
                achieved: format!("{:.1}%", 100.0 * ours.false_rollback_rate),
                met: ours.false_rollback_rate <= 0.01,
            });
            continue;
        }
        let detection = ours.detection_rate.unwrap_or(0.0);
        out.push(Goal {
            family: r.family,
            window_s: r.window_s,
            goal: "detection ≥ 95%".into(),
            achieved: format!("{:.1}%", 100.0 * detection),
            met: detection >= 0.95,
        });
        let best_peer = r
            .rules
            .iter()
            .filter(|s| !s.rule.starts_with("backout") && !s.rule.starts_with("sprt"))
            .filter_map(|s| s.median_time_to_detect.map(|t| (t, s.rule)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let oracle = r
            .rules
            .iter()
            .find(|s| s.rule == "sprt-oracle")
            .and_then(|s| s.median_time_to_detect);
        let target = match (r.ttd_goal, best_peer, oracle) {
            (TtdGoal::TwiceOracle, _, Some(o)) => Some(2.0 * o),
            (TtdGoal::TwiceOracle, _, None) => None,
            (TtdGoal::PeersOrOracle, best_peer, oracle) => match (best_peer, oracle) {
                (Some((p, _)), Some(o)) => Some((p / 3.0).max(1.5 * o)),
                (Some((p, _)), None) => Some(p / 3.0),
                (None, Some(o)) => Some(1.5 * o),
                (None, None) => None,
            },
        };
        let peer_text = best_peer
            .map_or("no peer detects in half the runs".to_owned(), |(p, n)| {
                format!("best peer {n} {p:.0}s")
            });
        let ratio_only = r
            .rules
            .iter()
            .find(|s| s.rule == "sprt-ratio")
            .and_then(|s| s.median_time_to_detect);
        let oracle_text = match (oracle, ratio_only) {
            (Some(o), Some(q)) if (q - o).abs() >= 1.0 => {
                format!("oracle {o:.0}s, {q:.0}s knowing only the ratio")
            }
            (Some(o), _) => format!("oracle {o:.0}s"),
            _ => "oracle n/a".to_owned(),
        };
        let ttd = ours.median_time_to_detect;
        out.push(Goal {
            family: r.family,
            window_s: r.window_s,
            goal: match r.ttd_goal {
                TtdGoal::PeersOrOracle => format!(
                    "median time to detect ≤ {} ({peer_text}; {oracle_text})",
                    target.map_or("-".to_owned(), |t| format!("{t:.0}s"))
                ),
                TtdGoal::TwiceOracle => format!(
                    "median time to detect ≤ {} (2× {oracle_text}; {peer_text})",
                    target.map_or("-".to_owned(), |t| format!("{t:.0}s"))
                ),
            },
            achieved: ttd.map_or("never (median)".to_owned(), |t| format!("{t:.0}s")),
            met: match (ttd, target) {
                (Some(t), Some(target)) => t <= target,
                (Some(_), None) => true,
                _ => false,
            },
        });
        // What the warm-up phase costs a regression present from the
        // start: at most 10 s of median time to detect.
        if let Some(fixed) = r.rules.iter().find(|s| s.rule == "backout-fixed") {
            let limit = fixed.median_time_to_detect.map(|f| f + 10.0);
            out.push(Goal {
                family: r.family,
                window_s: r.window_s,
                goal: format!(
                    "median time to detect ≤ {} (the fixed warm-up's {} + 10 s)",
                    limit.map_or("-".to_owned(), |t| format!("{t:.0}s")),
                    fixed
                        .median_time_to_detect
                        .map_or("never".to_owned(), |t| format!("{t:.0}s"))
                ),
                achieved: ttd.map_or("never (median)".to_owned(), |t| format!("{t:.0}s")),
                met: match (ttd, limit) {
                    (Some(t), Some(l)) => t <= l,
                    (_, None) => true,
                    (None, Some(_)) => false,
                },
            });
        }
    }
    out
}

/// Formats goals as a plain-text list.
pub fn goals_table(goals: &[Goal]) -> String {
    let mut out = String::new();
    for g in goals {
        out.push_str(&format!(
            "{:<4} {:<18} {:>4} {} — got {}\n",
            if g.met { "ok" } else { "MISS" },
            g.family,
            format!("{}s", g.window_s),
            g.goal,
            g.achieved
        ));
    }
    out
}
