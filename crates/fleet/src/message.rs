//! The messages of a subscription, one JSON object each, tagged by
//! `type`.
//!
//! A proxy opens the stream with [`Hello`]; the control plane answers with
//! [`Welcome`] and the current [`Snapshot`] of every service the proxy
//! follows, then a new snapshot whenever one changes. The proxy answers
//! each snapshot with an `ack` carrying the generation it applied, or a
//! `nack` with the reason it could not (it keeps serving the previous
//! one), and sends a [`Report`] of each service a few times a second:
//! its pools' health and the one-second windows completed since. The
//! control plane says `alive` every second, with whether it leads, so a
//! proxy notices a dead control plane in seconds and a new leader at
//! once.

use std::collections::BTreeMap;

use backout_spec::EndpointUrl;
use serde::{Deserialize, Serialize};

use crate::snapshot::Snapshot;
use crate::window::WindowView;

/// The protocol's version. A peer that speaks another one is refused with
/// a message that says which.
pub const PROTOCOL: u32 = 1;

/// What a proxy sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromProxy {
    Hello(Hello),
    Ack {
        service: String,
        generation: u64,
    },
    Nack {
        service: String,
        generation: u64,
        reason: String,
    },
    Report(Report),
}

/// What the control plane sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToProxy {
    Welcome(Welcome),
    Snapshot(Box<Snapshot>),
    /// The subscription cannot be served (unknown service, wrong
    /// protocol). The proxy keeps the state it has and tries again later.
    Refused {
        code: String,
        message: String,
    },
    /// Every second: the control plane is there, and whether it leads. A
    /// proxy whose control plane stopped leading moves to `leader_url`,
    /// so the leader counts it when it waits for a route change to be
    /// served.
    Alive {
        leader: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader_url: Option<String>,
    },
}

/// The first message of a subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    /// The proxy's name (`--name`), unique in the fleet: a proxy that
    /// connects under a name already connected replaces it (a restart).
    pub name: String,
    /// The services to follow; empty follows every service.
    #[serde(default)]
    pub services: Vec<String>,
    /// The generation held of each service (from the state file), so the
    /// control plane can tell a proxy that is behind.
    #[serde(default)]
    pub have: BTreeMap<String, u64>,
    /// Where the proxy serves traffic, for `backout status`.
    #[serde(default)]
    pub listen: Vec<String>,
}

/// The control plane's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub protocol: u32,
    /// Which control-plane process answers (its lease holder name).
    pub control_plane: String,
    /// Whether it leads. A follower serves the snapshots the leader last
    /// stored; `leader_url` says where the leader is, and the proxy moves
    /// there when it can.
    pub leader: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_url: Option<String>,
    /// The services this subscription covers.
    pub services: Vec<String>,
}

/// One service's state on one proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub service: String,
    /// The generation the proxy serves.
    pub generation: u64,
    /// The proxy's wall clock when it sent this, in Unix milliseconds: the
    /// control plane corrects the windows' times by the difference to its
    /// own clock, so machines with skewed clocks still line up.
    pub now_ms: u64,
    /// Canary traffic is going to stable because the canary cannot take it.
    #[serde(default)]
    pub canary_fallback: bool,
    pub pools: Vec<PoolReport>,
}

/// One pool's health on one proxy, and its windows completed since the
/// last report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolReport {
    pub version: String,
    pub breaker: BreakerState,
    pub endpoints: Vec<EndpointReport>,
    #[serde(default)]
    pub in_flight: u32,
    /// Complete windows, oldest first. After a reconnect the proxy sends
    /// the last minute's again; the control plane keeps one per second, so
    /// a window sent twice counts once.
    #[serde(default)]
    pub windows: Vec<WindowView>,
}

/// One endpoint's health on one proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointReport {
    pub url: EndpointUrl,
    /// Can take traffic now: started, live, ready and not ejected.
    pub available: bool,
    /// The liveness probe passes (true without one).
    pub live: bool,
    /// The startup probe failed its threshold.
    #[serde(default)]
    pub startup_failed: bool,
}

/// A pool's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_json() {
        let ack = FromProxy::Ack {
            service: "shop".into(),
            generation: 7,
        };
        let json = serde_json::to_string(&ack).expect("serialise");
        assert_eq!(json, r#"{"type":"ack","service":"shop","generation":7}"#);
        let hello: FromProxy =
            serde_json::from_str(r#"{"type":"hello","protocol":1,"name":"edge-1"}"#)
                .expect("a hello with defaults");
        assert_eq!(
            hello,
            FromProxy::Hello(Hello {
                protocol: 1,
                name: "edge-1".into(),
                services: vec![],
                have: BTreeMap::new(),
                listen: vec![],
            })
        );
        let refused = ToProxy::Refused {
            code: "unknown_service".into(),
            message: "no service \"x\"".into(),
        };
        let back: ToProxy =
            serde_json::from_str(&serde_json::to_string(&refused).expect("serialise"))
                .expect("parse");
        assert_eq!(back, refused);
    }
}
