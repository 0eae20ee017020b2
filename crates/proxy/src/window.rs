//! Per-version one-second windows for the last 15 minutes: counts by
//! outcome and a bounded uniform sample of latencies, which is what the
//! judge's rank tests need.
//!
//! Pure: the caller passes the wall-clock time and the random source.

pub use backout_fleet::window::{
    Classes, ErrorCauses, RESERVOIR, RejectionCounts, UpstreamCounts, WINDOW_MS, WindowView,
};

use crate::outcome::{Outcome, Rejection, UpstreamFailure};

/// 15 minutes of one-second windows.
pub const WINDOWS: usize = 900;

#[derive(Debug, Clone, Default)]
struct Window {
    /// Unix milliseconds of the window's start; 0 means never used.
    start_ms: u64,
    requests: u64,
    errors: u64,
    classes: [u64; 5],
    upstream: [u64; UpstreamFailure::ALL.len()],
    downstream: u64,
    rejected: [u64; 3],
    causes: [u64; 4],
    latency_seen: u64,
    latency_sum_us: u64,
    latency_max_us: u64,
    /// Algorithm R reservoir of latencies in microseconds.
    sample_us: Vec<u32>,
}

/// A ring of one-second windows.
#[derive(Debug, Clone)]
pub struct WindowRing {
    slots: Vec<Window>,
}

impl Default for WindowRing {
    fn default() -> Self {
        WindowRing {
            slots: vec![Window::default(); WINDOWS],
        }
    }
}

impl WindowRing {
    /// Records one finished request at `now_ms` (Unix milliseconds).
    pub fn record(&mut self, now_ms: u64, outcome: &Outcome, rng: &mut fastrand::Rng) {
        let start = now_ms - now_ms % WINDOW_MS;
        let idx = ((start / WINDOW_MS) % WINDOWS as u64) as usize;
        let w = &mut self.slots[idx];
        if w.start_ms != start {
            // Reuse the slot (and its sample's allocation) for the new second.
            let mut sample = std::mem::take(&mut w.sample_us);
            sample.clear();
            *w = Window {
                start_ms: start,
                sample_us: sample,
                ..Window::default()
            };
        }
        w.requests += 1;
        if outcome.is_error() {
            w.errors += 1;
        }
        if let Some(c) = outcome.class() {
            w.classes[c] += 1;
        }
        if let Some(f) = outcome.upstream_failure {
            w.upstream[f as usize] += 1;
        }
        if outcome.downstream_failure {
            w.downstream += 1;
        }
        if let Some(r) = outcome.rejection {
            w.rejected[r as usize] += 1;
        }
        if let Some(cause) = cause(outcome) {
            w.causes[cause] += 1;
        }
        if let Some(us) = outcome.latency_us {
            w.latency_seen += 1;
            w.latency_sum_us += us;
            w.latency_max_us = w.latency_max_us.max(us);
            let us32 = u32::try_from(us).unwrap_or(u32::MAX);
            if w.sample_us.len() < RESERVOIR {
                w.sample_us.push(us32);
            } else {
                let j = rng.u64(0..w.latency_seen);
                if (j as usize) < RESERVOIR {
                    w.sample_us[j as usize] = us32;
                }
            }
        }
    }

    /// Windows starting at or after `since_ms`, oldest first, within the
    /// last 15 minutes of `now_ms`.
    pub fn since(&self, since_ms: u64, now_ms: u64) -> Vec<WindowView> {
        let oldest = now_ms.saturating_sub(WINDOWS as u64 * WINDOW_MS);
        let current = now_ms - now_ms % WINDOW_MS;
        let mut out: Vec<WindowView> = self
            .slots
            .iter()
            .filter(|w| {
                w.start_ms != 0
                    && w.start_ms >= since_ms
                    && w.start_ms > oldest
                    && w.start_ms <= current
            })
            .map(|w| view(w, w.start_ms < current))
            .collect();
        out.sort_by_key(|w| w.start_ms);
        out
    }
}

/// Index into `Window::causes`, in `ErrorCauses` field order.
fn cause(o: &Outcome) -> Option<usize> {
    if o.downstream_failure {
        None
    } else if o.rejection.is_some() {
        Some(2)
    } else if o.upstream_failure.is_some() {
        Some(1)
    } else {
        match o.status {
            Some(s) if s >= 500 => Some(0),
            Some(s) if s >= 400 => Some(3),
            _ => None,
        }
    }
}

fn view(w: &Window, complete: bool) -> WindowView {
    let ms = |us: u64| us as f64 / 1000.0;
    WindowView {
        start_ms: w.start_ms,
        complete,
        requests: w.requests,
        errors: w.errors,
        responses: Classes {
            c1: w.classes[0],
            c2: w.classes[1],
            c3: w.classes[2],
            c4: w.classes[3],
            c5: w.classes[4],
        },
        upstream_failures: UpstreamCounts {
            connect: w.upstream[UpstreamFailure::Connect as usize],
            reset: w.upstream[UpstreamFailure::Reset as usize],
            timeout: w.upstream[UpstreamFailure::Timeout as usize],
            tls: w.upstream[UpstreamFailure::Tls as usize],
        },
        downstream_failures: w.downstream,
        rejected: RejectionCounts {
            bulkhead: w.rejected[Rejection::Bulkhead as usize],
            breaker: w.rejected[Rejection::Breaker as usize],
            no_endpoint: w.rejected[Rejection::NoEndpoint as usize],
        },
        error_causes: ErrorCauses {
            http_5xx: w.causes[0],
            upstream: w.causes[1],
            rejected: w.causes[2],
            http_4xx: w.causes[3],
        },
        latency_ms: w.sample_us.iter().map(|&us| ms(u64::from(us))).collect(),
        latency_count: w.latency_seen,
        latency_sum_ms: ms(w.latency_sum_us),
        latency_max_ms: ms(w.latency_max_us),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(latency_us: u64) -> Outcome {
        Outcome {
            status: Some(200),
            upstream_failure: None,
            downstream_failure: false,
            rejection: None,
            latency_us: Some(latency_us),
        }
    }

    #[test]
    fn counts_land_in_their_second() {
        let mut ring = WindowRing::default();
        let mut rng = fastrand::Rng::with_seed(1);
        let t0 = 1_700_000_000_000;
        ring.record(t0 + 10, &ok(1_000), &mut rng);
        ring.record(
            t0 + 999,
            &Outcome {
                status: Some(503),
                ..ok(2_000)
            },
            &mut rng,
        );
        ring.record(
            t0 + 1_000,
            &Outcome {
                status: Some(404),
                ..ok(3_000)
            },
            &mut rng,
        );
        ring.record(
            t0 + 1_500,
            &Outcome {
                status: Some(502),
                upstream_failure: Some(UpstreamFailure::Connect),
                latency_us: None,
                ..ok(0)
            },
            &mut rng,
        );
        ring.record(
            t0 + 1_600,
            &Outcome {
                status: None,
                downstream_failure: true,
                ..ok(10)
            },
            &mut rng,
        );
        let w = ring.since(0, t0 + 1_700);
        assert_eq!(w.len(), 2);
        assert_eq!(
            (w[0].start_ms, w[0].complete, w[0].requests, w[0].errors),
            (t0, true, 2, 1)
        );
        assert_eq!(w[0].responses.c5, 1);
        assert_eq!(w[0].latency_ms, vec![1.0, 2.0]);
        assert_eq!((w[1].complete, w[1].requests, w[1].errors), (false, 3, 1));
        assert_eq!(
            (
                w[1].responses.c4,
                w[1].upstream_failures.connect,
                w[1].downstream_failures
            ),
            (1, 1, 1)
        );
        assert_eq!(ring.since(t0 + 1_000, t0 + 1_700).len(), 1);
    }

    #[test]
    fn old_windows_expire_and_slots_are_reused() {
        let mut ring = WindowRing::default();
        let mut rng = fastrand::Rng::with_seed(1);
        let t0 = 1_700_000_000_000;
        ring.record(t0, &ok(1), &mut rng);
        let later = t0 + WINDOWS as u64 * WINDOW_MS;
        assert!(
            ring.since(0, later).is_empty(),
            "15 minutes later the window is gone"
        );
        ring.record(later, &ok(2), &mut rng);
        let w = ring.since(0, later);
        assert_eq!(
            (w.len(), w[0].requests, w[0].latency_ms.clone()),
            (1, 1, vec![0.002])
        );
    }

    #[test]
    fn the_reservoir_is_bounded_and_uniform() {
        let mut ring = WindowRing::default();
        let mut rng = fastrand::Rng::with_seed(7);
        let t0 = 1_700_000_000_000;
        for i in 0..10_000u64 {
            ring.record(t0, &ok(i), &mut rng);
        }
        let w = &ring.since(0, t0 + 2_000)[0];
        assert_eq!(w.latency_ms.len(), RESERVOIR);
        assert_eq!(w.latency_count, 10_000);
        // A uniform sample of 0..10 000 µs has a mean near 5 ms.
        let mean = w.latency_ms.iter().sum::<f64>() / RESERVOIR as f64;
        assert!((mean - 5.0).abs() < 0.8, "mean {mean}");
        assert_eq!(w.latency_max_ms, 9.999);
    }
}
