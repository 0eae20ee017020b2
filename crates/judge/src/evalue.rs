//! The maths under the checks: likelihood ratios and bets that make
//! e-processes.
//!
//! An e-process is a running product of per-step factors whose expectation,
//! given the past, is at most 1 whenever the null hypothesis holds. Ville's
//! inequality then bounds the chance it *ever* reaches `1/α` by `α`, so the
//! judge may look after every tick without spending its error budget. Two
//! kinds of factor are used:
//!
//! * **Likelihood ratios** of a parametric model that is exact for the data
//!   ([`binomial_log_lr`], [`poisson_log_lr`]), with the alternative chosen
//!   from past data only ("predictable plug-in"): any predictable choice keeps
//!   the product an e-process, a good one makes it grow fast.
//! * **Bets** on a bounded score with known null mean ([`log_bet`]):
//!   `1 + λ (x - m)` has expectation `≤ 1` when `E[x] ≤ m` and `λ ≥ 0`, for
//!   any distribution, so no model of latency is needed.
//!
//! All functions work in logs (products of thousands of factors overflow)
//! and return finite numbers for any finite input.

/// Share of errors expected from the canary when its error rate is `ratio`
/// times the baseline's: `θ = ratio·n_c / (ratio·n_c + n_b)`.
///
/// Given the total number of errors in a tick, the canary's count is
/// Binomial(total, θ) (a Poisson-thinning fact), whatever the baseline rate
/// is. Conditioning on the total is what makes the error-rate check immune to
/// incidents and bursts that raise both groups' rates alike.
pub fn canary_share(ratio: f64, canary_requests: f64, baseline_requests: f64) -> f64 {
    let c = ratio * canary_requests;
    let total = c + baseline_requests;
    if total > 0.0 { c / total } else { 0.5 }
}

/// Inverse of [`canary_share`]: the rate ratio implied by an error share.
pub fn ratio_from_share(share: f64, canary_requests: f64, baseline_requests: f64) -> f64 {
    if share <= 0.0 || canary_requests <= 0.0 {
        return 0.0;
    }
    if share >= 1.0 {
        return f64::MAX;
    }
    share / (1.0 - share) * baseline_requests / canary_requests
}

/// `ln` of the binomial likelihood ratio of `k` successes in `n` trials
/// under success probability `p1` against `p0`.
pub fn binomial_log_lr(k: u64, n: u64, p1: f64, p0: f64) -> f64 {
    let k = k.min(n);
    let failures = (n - k) as f64;
    let k = k as f64;
    xlogy_ratio(k, p1, p0) + xlogy_ratio(failures, 1.0 - p1, 1.0 - p0)
}

/// `ln` of the Poisson likelihood ratio of `k` events over `exposure` under
/// rate `p1` against `p0`.
pub fn poisson_log_lr(k: u64, exposure: f64, p1: f64, p0: f64) -> f64 {
    xlogy_ratio(k as f64, p1, p0) - (p1 - p0) * exposure
}

/// `x · ln(a / b)` with `0 · ln(anything) = 0`, and huge-but-finite values
/// when `a` or `b` is 0 with `x > 0`, so callers never see NaN.
fn xlogy_ratio(x: f64, a: f64, b: f64) -> f64 {
    if x == 0.0 {
        return 0.0;
    }
    let a = a.max(f64::MIN_POSITIVE);
    let b = b.max(f64::MIN_POSITIVE);
    x * (a.ln() - b.ln())
}

/// `ln(1 + λ (x - m))`, the log-wealth change of betting `λ` on a score `x`
/// whose null mean is at most `m`. `λ` must keep the factor positive
/// (`λ < 1/m` for `x ≥ 0`); it is clamped just inside that range.
pub fn log_bet(lambda: f64, x: f64, m: f64) -> f64 {
    let factor = 1.0 + lambda * (x - m);
    factor.max(1e-12).ln()
}

/// Bet size from past scores ("aGRAPA", Waudby-Smith & Ramdas 2023):
/// `(μ̂ - m) / (σ̂² + (μ̂ - m)²)`, the growth-rate-optimal bet to second
/// order, clamped to `[0, max]`. A negative edge means "do not bet".
pub fn grapa_lambda(mean: f64, variance: f64, m: f64, max: f64) -> f64 {
    let edge = mean - m;
    if edge.is_nan() || edge <= 0.0 {
        return 0.0;
    }
    let lambda = edge / (variance.max(0.0) + edge * edge);
    if lambda.is_finite() {
        lambda.clamp(0.0, max)
    } else {
        max
    }
}

/// The exceedance score of one canary latency against a group of baseline
/// latencies: the fraction of baseline values `b` with `c > factor·b`, ties
/// counting one half.
///
/// If canary latencies are stochastically at most `factor` × baseline's
/// (the null of the latency check), the expected score is at most 1/2:
/// at the boundary `c = factor·b'` with `b'` distributed as `b`, the score
/// is the mid-rank probability `P(b' > b) + P(b' = b)/2 = 1/2`, and it only
/// falls as the canary gets faster.
pub fn exceedance(canary: f64, baseline: &[f64], factor: f64) -> f64 {
    if baseline.is_empty() {
        return 0.5;
    }
    let mut score = 0.0;
    for &b in baseline {
        let scaled = factor * b;
        if canary > scaled {
            score += 1.0;
        } else if canary == scaled {
            score += 0.5;
        }
    }
    score / baseline.len() as f64
}

/// The `q` quantile of sorted values with linear interpolation between
/// order statistics (NumPy's default, "type 7").
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let pos = q.clamp(0.0, 1.0) * last as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let (a, b) = (*sorted.get(lo)?, *sorted.get(hi)?);
    Some(a + (b - a) * (pos - lo as f64))
}

/// `ln(1/α)`: the log-bound an e-process must reach to reject at level α.
pub fn log_bound(alpha: f64) -> f64 {
    -(alpha.clamp(1e-300, 1.0)).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
    }

    fn check(got: f64, expected: f64) {
        assert!(close(got, expected), "got {got}, expected {expected}");
    }

    #[test]
    fn shares_and_ratios() {
        check(canary_share(1.0, 100.0, 900.0), 0.1);
        check(canary_share(2.0, 100.0, 900.0), 200.0 / 1100.0);
        check(canary_share(1.0, 0.0, 0.0), 0.5);
        check(ratio_from_share(0.1, 100.0, 900.0), 1.0);
        check(ratio_from_share(200.0 / 1100.0, 100.0, 900.0), 2.0);
        check(ratio_from_share(0.0, 100.0, 900.0), 0.0);
    }

    #[test]
    fn likelihood_ratios() {
        check(binomial_log_lr(0, 0, 0.3, 0.1), 0.0);
        check(binomial_log_lr(3, 3, 0.2, 0.1), 3.0 * 2f64.ln());
        check(binomial_log_lr(5, 3, 0.2, 0.1), 3.0 * 2f64.ln());
        check(binomial_log_lr(0, 2, 0.5, 0.75), 2.0 * 2f64.ln());
        check(poisson_log_lr(0, 100.0, 0.02, 0.01), -1.0);
        check(poisson_log_lr(2, 0.0, 0.02, 0.01), 2.0 * 2f64.ln());
        assert!(binomial_log_lr(1, 1, 0.0, 0.5).is_finite());
        assert!(binomial_log_lr(1, 1, 1.0, 0.0).is_finite());
    }

    #[test]
    fn bets() {
        check(log_bet(0.0, 1.0, 0.5), 0.0);
        check(log_bet(1.0, 1.0, 0.5), 1.5f64.ln());
        check(log_bet(2.0, 0.0, 0.5), 1e-12f64.ln());
        check(grapa_lambda(0.4, 0.1, 0.5, 1.5), 0.0);
        check(grapa_lambda(0.6, 0.09, 0.5, 1.5), 1.0);
        check(grapa_lambda(0.9, 0.0, 0.5, 1.5), 1.5);
        check(grapa_lambda(f64::NAN, 0.1, 0.5, 1.5), 0.0);
    }

    #[test]
    fn exceedances_and_quantiles() {
        check(exceedance(10.0, &[], 1.0), 0.5);
        check(exceedance(10.0, &[5.0, 10.0, 20.0], 1.0), 0.5);
        check(exceedance(10.0, &[5.0, 10.0, 20.0], 1.1), 1.0 / 3.0);
        check(exceedance(100.0, &[5.0, 10.0, 20.0], 1.1), 1.0);
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[3.0], 0.99), Some(3.0));
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.5));
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 1.0), Some(4.0));
        check(log_bound(0.01), 100f64.ln());
    }
}
