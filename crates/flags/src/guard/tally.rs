//! One variant's outcomes over one tick, in the judge's shape.

use backout_judge::GroupWindow;
use serde::{Deserialize, Serialize};

/// The most latencies a tick keeps per variant, as the proxy does: the
/// judge wants a uniform sample, not every value.
pub const SAMPLE: usize = 200;

/// Requests, errors and a uniform latency sample of one variant since the
/// last [`Tally::take`].
///
/// The sample is a reservoir (Algorithm R) driven by a small seeded
/// generator, so it is uniform however many reports arrive and the same
/// reports give the same sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    requests: u64,
    errors: u64,
    sample: Vec<f64>,
    /// Latencies offered to the reservoir this tick.
    offered: u64,
    rng: u64,
}

impl Tally {
    /// Adds a report of `requests` requests, `errors` of them failed, with
    /// some of their latencies. Errors beyond the requests are clamped, and
    /// latencies no clock can produce (negative, NaN, infinite) are dropped.
    pub fn add(&mut self, requests: u64, errors: u64, latencies_ms: &[f64]) {
        self.requests = self.requests.saturating_add(requests);
        self.errors = self.errors.saturating_add(errors.min(requests));
        for &v in latencies_ms {
            if !(v.is_finite() && v >= 0.0) {
                continue;
            }
            self.offered += 1;
            if self.sample.len() < SAMPLE {
                self.sample.push(v);
            } else {
                let j = self.next() % self.offered;
                if let Some(slot) = self.sample.get_mut(j as usize) {
                    *slot = v;
                }
            }
        }
    }

    pub fn requests(&self) -> u64 {
        self.requests
    }

    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// The tick's window; the tally starts over.
    pub fn take(&mut self) -> GroupWindow {
        let window = GroupWindow {
            requests: self.requests,
            errors: self.errors,
            latency_ms: std::mem::take(&mut self.sample),
            metrics: Default::default(),
        };
        self.requests = 0;
        self.errors = 0;
        self.offered = 0;
        window
    }

    /// SplitMix64.
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_clamp_and_start_over() {
        let mut t = Tally::default();
        t.add(10, 2, &[5.0, f64::NAN, -1.0, f64::INFINITY, 7.0]);
        t.add(1, 5, &[]);
        let w = t.take();
        assert_eq!(
            (w.requests, w.errors, w.latency_ms),
            (11, 3, vec![5.0, 7.0])
        );
        assert_eq!(t.take(), GroupWindow::default());
    }

    #[test]
    fn the_sample_is_bounded_and_uniform() {
        let mut t = Tally::default();
        // 10 000 latencies 0..10 000 one at a time: a uniform sample of 200
        // has a mean near 5 000 (standard error about 200).
        for i in 0..10_000 {
            t.add(1, 0, &[f64::from(i)]);
        }
        let w = t.take();
        assert_eq!(w.requests, 10_000);
        assert_eq!(w.latency_ms.len(), SAMPLE);
        let mean = w.latency_ms.iter().sum::<f64>() / SAMPLE as f64;
        assert!((4_200.0..5_800.0).contains(&mean), "mean {mean}");
    }
}
