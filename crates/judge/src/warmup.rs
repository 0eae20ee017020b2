//! The warm-up phase: a canary recovering from its cold start is given
//! time, a bad one is not.
//!
//! A new version often starts several times slower and with a few times
//! the errors, and settles over minutes (a JIT compiling, caches filling,
//! connection pools growing). A fixed warm-up cannot tell that from a bad
//! release: short, it rolls the recovering canary back at its first look;
//! long, it delays every real detection. What tells them apart is the
//! trend: a cold start improves, a bad release does not. So after the
//! checks' own warm-up (`warmup` of each check, 30 s by default) the phase
//! goes on for as long as the canary keeps getting measurably better
//! relative to the baseline, up to `warmup.max` (5 minutes by default).
//! While it lasts, the relative checks do not bet on the tolerance line
//! and the request guards wait; only gross error regressions roll back
//! (see the error-rate check).
//!
//! **"Better".** The canary's badness is measured per segment of
//! [`SEGMENT`] seconds (or one window, if windows are coarser) as two log
//! ratios to the baseline of the same segment: error rates (with half an
//! error added to each side) and mean log latencies, each with its
//! standard error. At the end of each segment after the checks' warm-up,
//! the newest segment is compared with the segments [`LOOKBACKS`] before
//! it (or the first, when the phase is younger): the canary is improving
//! if either ratio fell by more than [`Z`] standard errors against any of
//! them while it is still worse than the baseline. A canary that is not
//! improving ends the phase at once, so a regression present from the
//! start is judged from the end of the checks' warm-up, as before; the
//! occasional noise that looks like improvement costs it one segment.
//!
//! **Validity.** Whether the phase goes on is decided from earlier ticks
//! only, like every other choice of what to bet on, so it changes which
//! null the checks bet against but never the supermartingale property of
//! the wealth.

use crate::window::Window;
use serde::{Deserialize, Serialize};

/// Seconds per segment (at least one window).
pub const SEGMENT: f64 = 15.0;
/// How far back the newest segment is compared (s).
pub const LOOKBACKS: [f64; 4] = [30.0, 60.0, 120.0, 240.0];
/// Standard errors an improvement must clear.
pub const Z: f64 = 1.5;
/// A canary within this log ratio of the baseline (5 %) is back: the
/// phase ends even if it is still improving measurably, as it does for
/// long at high traffic, where a tail of a cold start too small to
/// matter stays significant.
pub const BACK: f64 = 0.048_790_164_169_432; // ln(1.05)
/// Segments kept: enough for the longest look-back.
const KEEP: usize = 20;

/// One segment's counts and log latencies of both groups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Segment {
    end: f64,
    nc: u64,
    ec: u64,
    nb: u64,
    eb: u64,
    canary: Moments,
    baseline: Moments,
}

/// Count, sum and sum of squares of log latencies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Moments {
    n: u64,
    sum: f64,
    sum_sq: f64,
}

impl Moments {
    fn push(&mut self, ms: f64) {
        let x = ms.max(1e-3).ln();
        self.n = self.n.saturating_add(1);
        self.sum += x;
        self.sum_sq += x * x;
    }

    /// Mean and variance of the mean.
    fn mean(&self) -> Option<(f64, f64)> {
        if self.n < 2 {
            return None;
        }
        let n = self.n as f64;
        let mean = self.sum / n;
        let var = (self.sum_sq / n - mean * mean).max(1e-6);
        Some((mean, var / n))
    }
}

/// A log ratio canary/baseline and its variance.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Ratio {
    value: f64,
    var: f64,
}

impl Segment {
    fn errors(&self) -> Option<Ratio> {
        if self.nc == 0 || self.nb == 0 || self.ec.saturating_add(self.eb) == 0 {
            return None;
        }
        let (ec, eb) = (self.ec as f64 + 0.5, self.eb as f64 + 0.5);
        Some(Ratio {
            value: (ec / self.nc as f64).ln() - (eb / self.nb as f64).ln(),
            var: 1.0 / ec + 1.0 / eb,
        })
    }

    fn latency(&self) -> Option<Ratio> {
        let (c, vc) = self.canary.mean()?;
        let (b, vb) = self.baseline.mean()?;
        Some(Ratio {
            value: c - b,
            var: vc + vb,
        })
    }
}

/// By how many standard errors `newer` is better than `older`, if it is
/// still worse than the baseline (by more than [`BACK`]).
fn improvement(older: Option<Ratio>, newer: Option<Ratio>) -> Option<(f64, f64)> {
    let (o, n) = (older?, newer?);
    if n.value <= BACK || o.value <= n.value {
        return None;
    }
    let z = (o.value - n.value) / (o.var + n.var).sqrt();
    Some((z, n.value))
}

/// Where the phase stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WarmupPhase {
    /// The checks' own warm-up: the phase lasts at least this long.
    min: f64,
    /// The phase ends at this time whatever the trend.
    max: f64,
    open: Segment,
    open_start: f64,
    /// The latest tick seen.
    last: f64,
    /// Closed segments, newest last, the first one always kept.
    closed: Vec<Segment>,
    first: Option<Segment>,
    /// Seconds per segment.
    segment: f64,
    /// Whether the trend has been judged at least once (at the end of the
    /// checks' warm-up).
    judged: bool,
    /// When the phase ended.
    ended: Option<f64>,
    /// As of the last closed segment: how far back to the baseline the
    /// improving ratio has come since the first segment (0–1).
    progress: Option<f64>,
}

impl WarmupPhase {
    /// A phase lasting at least `min` and at most `max` seconds.
    pub fn new(min: f64, max: f64) -> Self {
        WarmupPhase {
            min,
            max: max.max(min),
            // Two segments at least by the end of the checks' warm-up, so
            // a short one (2 s in a test) is not stretched to a segment.
            segment: SEGMENT.min(min / 2.0).max(1.0),
            judged: false,
            open: Segment::default(),
            open_start: 0.0,
            last: 0.0,
            closed: Vec::new(),
            first: None,
            ended: None,
            progress: None,
        }
    }

    /// Whether the phase still lasts at time `t`, as decided by the ticks
    /// before it.
    pub fn active(&self, t: f64) -> bool {
        t < self.min || (self.ended.is_none() && t < self.max)
    }

    /// Whether the phase lasts at `t` beyond the checks' own warm-up
    /// because the canary is still improving.
    pub fn extended(&self, t: f64) -> bool {
        t >= self.min && self.active(t)
    }

    /// How far back to the baseline the canary has come (0–1), as of the
    /// last segment that showed improvement.
    pub fn progress(&self) -> Option<f64> {
        self.progress
    }

    /// When the phase ended, once it has.
    pub fn ended(&self) -> Option<f64> {
        self.ended
    }

    /// The shortest the phase may last (the checks' own warm-up).
    pub fn min(&self) -> f64 {
        self.min
    }

    /// The longest the phase may last.
    pub fn max(&self) -> f64 {
        self.max
    }

    /// Called before tick `t` is judged: decides from the ticks before it
    /// whether the phase still lasts. At the end of the checks' warm-up
    /// the trend is judged at once (the segment in progress closed
    /// early), so a canary that is not improving is judged from the same
    /// tick as without the phase.
    pub fn begin(&mut self, t: f64) -> bool {
        if self.ended.is_none() {
            if t >= self.max {
                self.ended = Some(t);
            } else if t >= self.min && !self.judged {
                if self.open.nc.saturating_add(self.open.nb) > 0 {
                    let end = self.last;
                    self.close(end);
                }
                // A trend needs two segments: with windows as long as the
                // checks' warm-up (60 s from Prometheus), the phase waits
                // for the second.
                if self.closed.len() >= 2 {
                    self.judged = true;
                    self.evaluate();
                }
            }
        }
        self.active(t)
    }

    /// Closes the segment in progress at `end`.
    fn close(&mut self, end: f64) {
        let mut segment = std::mem::take(&mut self.open);
        segment.end = end;
        self.open_start = end;
        if self.first.is_none() {
            self.first = Some(segment);
        }
        self.closed.push(segment);
        if self.closed.len() > KEEP {
            self.closed.remove(0);
        }
    }

    /// Judges the trend at the newest closed segment.
    fn evaluate(&mut self) {
        let Some(newest) = self.closed.last().copied() else {
            self.ended = Some(self.last);
            return;
        };
        match self.improving(&newest) {
            Some(progress) => self.progress = Some(progress),
            None => self.ended = Some(newest.end),
        }
    }

    /// Adds the window of tick `t` (after the checks have seen it).
    pub fn update(&mut self, t: f64, window: &Window) {
        if self.ended.is_some() {
            return;
        }
        let step = t - self.last;
        self.last = t;
        let s = &mut self.open;
        s.nc = s.nc.saturating_add(window.canary.requests);
        s.ec = s.ec.saturating_add(window.canary.errors_clamped());
        s.nb = s.nb.saturating_add(window.baseline.requests);
        s.eb = s.eb.saturating_add(window.baseline.errors_clamped());
        window.canary.latencies().for_each(|v| s.canary.push(v));
        window.baseline.latencies().for_each(|v| s.baseline.push(v));
        // A segment closes once the next window would take it past its
        // length by more than half a window: with 10-second windows each
        // window is a segment, not every other one.
        if t - self.open_start + step / 2.0 < self.segment {
            return;
        }
        self.close(t);
        if self.judged {
            self.evaluate();
        }
    }

    /// Whether `newest` is better than the segments a look-back before it;
    /// if so, how far back to the baseline it has come since the first.
    fn improving(&self, newest: &Segment) -> Option<f64> {
        let first = self.first?;
        let mut best: Option<(f64, f64, f64)> = None;
        for back in LOOKBACKS {
            let older = self
                .closed
                .iter()
                .rev()
                .find(|s| newest.end - s.end >= back)
                .copied()
                .unwrap_or(first);
            if older.end >= newest.end {
                continue;
            }
            for (o, n, f) in [
                (older.errors(), newest.errors(), first.errors()),
                (older.latency(), newest.latency(), first.latency()),
            ] {
                if let Some((z, now)) = improvement(o, n)
                    && z >= Z
                    && best.is_none_or(|(bz, _, _)| z > bz)
                {
                    let start = f.map_or(now, |f| f.value);
                    best = Some((z, now, start));
                }
            }
        }
        let (_, now, start) = best?;
        let progress = if start > 0.0 {
            (1.0 - now / start).clamp(0.0, 1.0)
        } else {
            0.0
        };
        Some(progress)
    }
}

/// The verdict's words while the phase lasts beyond the checks' own
/// warm-up: the canary is improving, and how far it has come.
pub fn reason(progress: f64, max: f64) -> String {
    format!(
        "warming up: improving, {:.0}% of the way back to baseline (judged against the tolerance once it stops improving, by t = {max:.0} s at the latest)",
        100.0 * progress
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::GroupWindow;

    /// Feeds one-second windows whose canary latency and errors are
    /// `badness(t)` times the baseline's; returns when the phase ended.
    fn ended(min: f64, max: f64, badness: impl Fn(f64) -> f64) -> Option<f64> {
        let mut phase = WarmupPhase::new(min, max);
        for s in 1..=600 {
            let t = f64::from(s);
            let k = badness(t);
            let spread = [40.0, 50.0, 60.0, 70.0, 80.0];
            let group = |requests: u64, errors: f64, factor: f64| GroupWindow {
                requests,
                errors: errors.round() as u64,
                latency_ms: spread.iter().cycle().take(50).map(|v| v * factor).collect(),
                ..GroupWindow::default()
            };
            phase.begin(t);
            phase.update(
                t,
                &Window {
                    t,
                    baseline: group(1000, 10.0, 1.0),
                    canary: group(200, 2.0 * k, k),
                },
            );
        }
        phase.ended()
    }

    #[test]
    fn the_phase_lasts_while_the_canary_improves() {
        // Healthy, or bad from the start: the phase ends with the checks'
        // warm-up (at the first segment end after it).
        assert_eq!(ended(30.0, 300.0, |_| 1.0), Some(29.0));
        assert_eq!(ended(30.0, 300.0, |_| 3.0), Some(29.0));
        // A cold start settling over about two minutes: well past 30 s,
        // ended before the maximum.
        let settles = |t: f64| 1.0 + 4.0 * (-t / 25.0).exp();
        let end = ended(30.0, 300.0, settles).unwrap_or(f64::INFINITY);
        assert!((90.0..150.0).contains(&end), "ended at {end}");
        // A cold start that would settle only after the maximum: the
        // maximum ends it.
        assert_eq!(
            ended(30.0, 120.0, |t| 1.0 + 4.0 * (-t / 400.0).exp()),
            Some(120.0)
        );
    }
}
