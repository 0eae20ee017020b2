//! One second of one version's traffic, as a proxy reports it: counts by
//! outcome, which side failed, and a bounded uniform sample of latencies.
//!
//! This is the wire form shared by the proxy's admin API, the fleet
//! protocol's reports and the judge's providers. [`merge`] adds up the
//! same second as seen by several proxies.

use serde::{Deserialize, Serialize};

/// Latencies kept per window (a uniform sample of all of its requests).
pub const RESERVOIR: usize = 200;
/// The length of a window.
pub const WINDOW_MS: u64 = 1000;

/// One window as reported to the judge and the admin API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowView {
    pub start_ms: u64,
    /// False for the window still filling.
    pub complete: bool,
    pub requests: u64,
    /// 5xx responses, upstream failures and rejections (never client faults).
    pub errors: u64,
    pub responses: Classes,
    pub upstream_failures: UpstreamCounts,
    pub downstream_failures: u64,
    pub rejected: RejectionCounts,
    /// Each request once, by what went wrong, so a consumer can choose
    /// which causes count as errors.
    pub error_causes: ErrorCauses,
    /// Uniform sample (at most [`RESERVOIR`]) of this window's latencies.
    pub latency_ms: Vec<f64>,
    /// How many latencies the sample was drawn from.
    pub latency_count: u64,
    pub latency_sum_ms: f64,
    pub latency_max_ms: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Classes {
    #[serde(rename = "1xx")]
    pub c1: u64,
    #[serde(rename = "2xx")]
    pub c2: u64,
    #[serde(rename = "3xx")]
    pub c3: u64,
    #[serde(rename = "4xx")]
    pub c4: u64,
    #[serde(rename = "5xx")]
    pub c5: u64,
}

/// Mutually exclusive causes: a rejected request is not also counted as a
/// 5xx, an upstream failure not also as the 502 the proxy answered with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorCauses {
    /// 5xx answered by the application itself.
    pub http_5xx: u64,
    /// Connect failures, resets, timeouts and TLS failures of the version.
    pub upstream: u64,
    /// Refused by the proxy for the version (bulkhead, breaker, no endpoint).
    pub rejected: u64,
    /// 4xx answered by the application: not errors by default.
    pub http_4xx: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpstreamCounts {
    pub connect: u64,
    pub reset: u64,
    pub timeout: u64,
    /// TLS handshakes with `https://` endpoints that failed (a certificate
    /// refused). Absent from reports of proxies that predate it.
    #[serde(default)]
    pub tls: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RejectionCounts {
    pub bulkhead: u64,
    pub breaker: u64,
    pub no_endpoint: u64,
}

impl WindowView {
    /// An empty, complete window starting at `start_ms`.
    pub fn empty(start_ms: u64) -> Self {
        WindowView {
            start_ms,
            complete: true,
            requests: 0,
            errors: 0,
            responses: Classes::default(),
            upstream_failures: UpstreamCounts::default(),
            downstream_failures: 0,
            rejected: RejectionCounts::default(),
            error_causes: ErrorCauses::default(),
            latency_ms: Vec::new(),
            latency_count: 0,
            latency_sum_ms: 0.0,
            latency_max_ms: 0.0,
        }
    }
}

/// The same second seen by several proxies, as one window starting at
/// `start_ms`: counts add up, and the latency sample takes from each
/// part a share proportional to the latencies it was drawn from, so a
/// proxy with little traffic does not weigh as much as a busy one.
/// Complete only if every part is. Deterministic: the parts' samples are
/// already uniform, so an even stride through each keeps them so.
pub fn merge(start_ms: u64, parts: &[&WindowView]) -> WindowView {
    let mut out = WindowView::empty(start_ms);
    for w in parts {
        out.complete &= w.complete;
        out.requests += w.requests;
        out.errors += w.errors;
        out.responses.c1 += w.responses.c1;
        out.responses.c2 += w.responses.c2;
        out.responses.c3 += w.responses.c3;
        out.responses.c4 += w.responses.c4;
        out.responses.c5 += w.responses.c5;
        out.upstream_failures.connect += w.upstream_failures.connect;
        out.upstream_failures.reset += w.upstream_failures.reset;
        out.upstream_failures.timeout += w.upstream_failures.timeout;
        out.upstream_failures.tls += w.upstream_failures.tls;
        out.downstream_failures += w.downstream_failures;
        out.rejected.bulkhead += w.rejected.bulkhead;
        out.rejected.breaker += w.rejected.breaker;
        out.rejected.no_endpoint += w.rejected.no_endpoint;
        out.error_causes.http_5xx += w.error_causes.http_5xx;
        out.error_causes.upstream += w.error_causes.upstream;
        out.error_causes.rejected += w.error_causes.rejected;
        out.error_causes.http_4xx += w.error_causes.http_4xx;
        out.latency_count += w.latency_count;
        out.latency_sum_ms += w.latency_sum_ms;
        if w.latency_max_ms > out.latency_max_ms {
            out.latency_max_ms = w.latency_max_ms;
        }
    }
    let sampled: usize = parts.iter().map(|w| w.latency_ms.len()).sum();
    if sampled <= RESERVOIR {
        for w in parts {
            out.latency_ms.extend_from_slice(&w.latency_ms);
        }
        return out;
    }
    let total = out.latency_count.max(1) as f64;
    for w in parts {
        let share = (RESERVOIR as f64 * w.latency_count as f64 / total).round() as usize;
        let take = share.min(w.latency_ms.len());
        if take == 0 {
            continue;
        }
        let stride = w.latency_ms.len() as f64 / take as f64;
        out.latency_ms.extend(
            (0..take).filter_map(|i| w.latency_ms.get((i as f64 * stride) as usize).copied()),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start: u64, requests: u64, errors: u64, latencies: &[f64], count: u64) -> WindowView {
        WindowView {
            requests,
            errors,
            error_causes: ErrorCauses {
                http_5xx: errors,
                ..ErrorCauses::default()
            },
            latency_ms: latencies.to_vec(),
            latency_count: count,
            latency_sum_ms: latencies.iter().sum(),
            latency_max_ms: latencies.iter().copied().fold(0.0, f64::max),
            ..WindowView::empty(start)
        }
    }

    #[test]
    fn counts_add_up_and_small_samples_are_kept_whole() {
        let a = window(1000, 10, 1, &[1.0, 2.0], 2);
        let b = window(1000, 5, 2, &[3.0], 1);
        let m = merge(1000, &[&a, &b]);
        assert_eq!((m.requests, m.errors, m.error_causes.http_5xx), (15, 3, 3));
        assert_eq!(m.latency_ms, vec![1.0, 2.0, 3.0]);
        assert_eq!((m.latency_count, m.latency_max_ms), (3, 3.0));
        assert!(m.complete);
    }

    #[test]
    fn large_samples_are_weighted_by_the_traffic_they_stand_for() {
        let busy: Vec<f64> = vec![1.0; RESERVOIR];
        let quiet: Vec<f64> = vec![9.0; RESERVOIR];
        let a = window(0, 9000, 0, &busy, 9000);
        let b = window(0, 1000, 0, &quiet, 1000);
        let m = merge(0, &[&a, &b]);
        assert_eq!(m.latency_ms.len(), RESERVOIR);
        let slow = m.latency_ms.iter().filter(|&&l| l == 9.0).count();
        assert_eq!(
            slow,
            RESERVOIR / 10,
            "a tenth of the traffic, a tenth of the sample"
        );
    }

    #[test]
    fn an_incomplete_part_makes_the_merge_incomplete() {
        let mut a = window(0, 1, 0, &[], 0);
        a.complete = false;
        let b = window(0, 1, 0, &[], 0);
        assert!(!merge(0, &[&a, &b]).complete);
        assert!(merge(0, &[]).complete, "no part, nothing missing");
    }
}
