//! The onset estimate (`Decision::onset_t`) on noisy synthetic traffic:
//! when the judge says a regression started, against when it did.
//!
//! Every run is seeded, so the bands below were measured, not guessed:
//! `cargo test --release -p backout-judge --test onset -- --ignored
//! --nocapture` prints the spread over 200 seeds per family.

use backout_judge::{Decision, GroupWindow, Judge, Verdict, Window};
use std::collections::BTreeMap;

/// SplitMix64: a small deterministic generator, so every run reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn binomial(&mut self, n: u64, p: f64) -> u64 {
        (0..n).map(|_| u64::from(self.uniform() < p)).sum()
    }

    /// Log-normal with the given median and σ = 0.5 (Box–Muller).
    fn lognormal(&mut self, median: f64) -> f64 {
        let (u, v) = (self.uniform().max(f64::MIN_POSITIVE), self.uniform());
        let z = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
        median * (0.5 * z).exp()
    }
}

/// A family of runs: both groups at a 1 % error rate and 50 ms median
/// latency until `from`, then the canary's error rate and latency are
/// multiplied. Ticks are one second; the tick stamped `t` covers
/// `(t − 1, t]`, so the first bad tick is `from + 1`.
#[derive(Clone, Copy, Debug)]
struct Family {
    baseline_rps: u64,
    canary_rps: u64,
    errors: f64,
    latency: f64,
    from: f64,
}

impl Family {
    const fn errors(factor: f64, from: f64) -> Self {
        Family {
            baseline_rps: 1000,
            canary_rps: 100,
            errors: factor,
            latency: 1.0,
            from,
        }
    }
}

/// The default judge on one seeded run, up to its first rollback.
fn first_rollback(family: Family, seed: u64) -> Option<Decision> {
    let mut rng = Rng(seed);
    let mut judge = Judge::with_defaults();
    for s in 1..=900 {
        let t = f64::from(s);
        let (errors, latency) = if t > family.from {
            (family.errors, family.latency)
        } else {
            (1.0, 1.0)
        };
        let mut group = |requests: u64, errors: f64, latency: f64| GroupWindow {
            requests,
            errors: rng.binomial(requests, 0.01 * errors),
            latency_ms: (0..requests.min(200))
                .map(|_| rng.lognormal(50.0 * latency))
                .collect(),
            ..GroupWindow::default()
        };
        let baseline = group(family.baseline_rps, 1.0, 1.0);
        let canary = group(family.canary_rps, errors, latency);
        let d = judge.observe(&Window {
            t,
            baseline,
            canary,
        });
        if d.verdict == Verdict::Rollback {
            return Some(d);
        }
    }
    None
}

/// Runs `seeds` of `family`; every run must roll back with an onset in
/// `within` and no later than its verdict, and the median onset must fall
/// in `median`.
fn check(family: Family, seeds: u64, within: (f64, f64), median: (f64, f64)) {
    let mut onsets = Vec::new();
    for seed in 0..seeds {
        let d = first_rollback(family, seed)
            .unwrap_or_else(|| panic!("{family:?} seed {seed}: no rollback"));
        let onset = d
            .onset_t
            .unwrap_or_else(|| panic!("{family:?} seed {seed}: rollback without onset: {d:?}"));
        assert!(
            onset <= d.t,
            "{family:?} seed {seed}: onset {onset} after the verdict at {}",
            d.t
        );
        assert!(
            (within.0..=within.1).contains(&onset),
            "{family:?} seed {seed}: onset {onset} outside {within:?} (verdict at {})",
            d.t
        );
        onsets.push(onset);
    }
    onsets.sort_by(f64::total_cmp);
    let mid = onsets[onsets.len() / 2];
    assert!(
        (median.0..=median.1).contains(&mid),
        "{family:?}: median onset {mid} outside {median:?}"
    );
}

#[test]
fn dates_a_late_regression_near_its_start() {
    // Errors 5× from t = 200 (first bad tick 201). Measured over 200
    // seeds: onset 196–206, median 201; verdict 204–209.
    check(
        Family::errors(5.0, 200.0),
        40,
        (190.0, 215.0),
        (199.0, 204.0),
    );
    // A fainter 2× regression takes longer to judge and is dated more
    // loosely. Measured: onset 5–95 % 194–231, median 203; verdict median 243.
    check(
        Family::errors(2.0, 200.0),
        40,
        (150.0, 290.0),
        (195.0, 215.0),
    );
    // Latency 1.5× from t = 200. Measured: onset 201–202.
    check(
        Family {
            latency: 1.5,
            ..Family::errors(1.0, 200.0)
        },
        40,
        (195.0, 210.0),
        (200.0, 204.0),
    );
}

#[test]
fn dates_a_regression_from_the_start_at_the_warm_up_end() {
    // Bad from the first tick: the judge takes evidence only after the
    // 30 s warm-up, so that is the onset it can vouch for. Measured: 30–33.
    check(Family::errors(5.0, 0.0), 40, (30.0, 35.0), (30.0, 31.0));
}

#[test]
fn dates_a_guard_from_the_start_of_its_breach() {
    // The canary's breaker opens at tick 101 and stays open: the guard
    // must see it for 10 s, rolls back at 111 and dates it to 101. When
    // the baseline's opens too, the pause is dated the same way.
    for (both, verdict) in [(false, Verdict::Rollback), (true, Verdict::Pause)] {
        let mut judge = Judge::with_defaults();
        let mut first = None;
        for s in 1..=200 {
            let t = f64::from(s);
            let open = if t > 100.0 { 1.0 } else { 0.0 };
            let group = |requests, errors, open: f64| GroupWindow {
                requests,
                errors,
                latency_ms: vec![50.0; 10],
                metrics: BTreeMap::from([("breaker_open".to_owned(), open)]),
            };
            let d = judge.observe(&Window {
                t,
                baseline: group(1000, 10, if both { open } else { 0.0 }),
                canary: group(100, 1, open),
            });
            match d.verdict {
                Verdict::Rollback | Verdict::Pause => {
                    assert_eq!(d.verdict, verdict, "{d:?}");
                    first.get_or_insert(d);
                }
                _ => assert_eq!(d.onset_t, None, "t = {t}: {d:?}"),
            }
        }
        let d = first.expect("a verdict");
        assert_eq!((d.t, d.onset_t), (111.0, Some(101.0)), "{}", d.reason);
    }
}

#[test]
fn healthy_canaries_have_no_onset() {
    let healthy = Family::errors(1.0, f64::INFINITY);
    for seed in 0..5 {
        assert!(first_rollback(healthy, seed).is_none(), "seed {seed}");
    }
    let d = serde_json::to_value(Judge::with_defaults().observe(&Window::default()))
        .expect("serialises");
    assert!(d.get("onset_t").is_none(), "{d}");
}

/// Prints the spread of onsets and verdicts over 200 seeds per family.
#[test]
#[ignore = "measurement: run in release with --nocapture"]
fn measure() {
    let families = [
        ("errors 5x at 200", Family::errors(5.0, 200.0)),
        (
            "errors 5x at 200, 20 rps",
            Family {
                baseline_rps: 200,
                canary_rps: 20,
                ..Family::errors(5.0, 200.0)
            },
        ),
        ("errors 2x at 200", Family::errors(2.0, 200.0)),
        ("errors 5x from 0", Family::errors(5.0, 0.0)),
        (
            "latency 1.5x at 200",
            Family {
                latency: 1.5,
                ..Family::errors(1.0, 200.0)
            },
        ),
    ];
    for (name, family) in families {
        let (mut onsets, mut verdicts) = (Vec::new(), Vec::new());
        for seed in 0..200 {
            if let Some(d) = first_rollback(family, seed) {
                verdicts.push(d.t);
                onsets.extend(d.onset_t);
            }
        }
        onsets.sort_by(f64::total_cmp);
        verdicts.sort_by(f64::total_cmp);
        let q = |v: &[f64], p: f64| {
            v.get(((v.len().max(1) - 1) as f64 * p).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        println!(
            "{name}: {} runs with onset; onset min {} p5 {} p50 {} p95 {} max {}; verdict p5 {} p50 {} p95 {}",
            onsets.len(),
            q(&onsets, 0.0),
            q(&onsets, 0.05),
            q(&onsets, 0.5),
            q(&onsets, 0.95),
            q(&onsets, 1.0),
            q(&verdicts, 0.05),
            q(&verdicts, 0.5),
            q(&verdicts, 0.95)
        );
    }
}
