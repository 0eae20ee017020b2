//! Which control-plane process acts: the leader election over the store's
//! lease row (see `backout_store::Leases`), and the standing every
//! service's controller consults before it writes or acts.
//!
//! A process that campaigns and wins holds the lease for [`TTL`] on the
//! database's clock and renews it every [`ROUND`]. It acts only until its
//! own, more cautious deadline: `TTL - MARGIN` after the campaign that won
//! was *sent*, measured on this process's monotonic clock. So a leader that
//! cannot renew (the database is gone, the process was paused) stops acting
//! before anyone else may take the lease, and the fencing term in every
//! write catches whatever slips through (a write already in flight when
//! the process was paused).
//!
//! A single `backout up` on SQLite does not campaign: it leads alone
//! ([`Lead::alone`]).

use std::sync::Arc;
use std::time::Duration;

use backout_store::{Candidate, Leadership, LeaseInfo, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::fleet::{Fleet, Standing};

/// How long a won lease lasts on the database's clock. A dead leader is
/// replaced after about this long.
pub const TTL: Duration = Duration::from_secs(2);
/// How often the lease is renewed (and a follower tries to take it).
pub const ROUND: Duration = Duration::from_millis(400);
/// A leader stops acting this long before its lease could expire: room for
/// the campaign's round trip and for clocks that run at slightly
/// different speeds.
pub const MARGIN: Duration = Duration::from_millis(400);

/// Where this process stands, as the controllers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lead {
    /// This process holds the lease (or leads alone).
    pub leading: bool,
    /// The term won last (0: never, or alone).
    pub term: i64,
    /// Who leads, when another process does and it is known.
    pub leader: Option<LeaseInfo>,
    /// A leader must not act after this; `None` for one that leads alone.
    valid_until: Option<Instant>,
}

impl Lead {
    /// The one control plane on its own store: always leading.
    pub fn alone() -> Lead {
        Lead {
            leading: true,
            term: 0,
            leader: None,
            valid_until: None,
        }
    }

    fn follower(term: i64, leader: Option<LeaseInfo>) -> Lead {
        Lead {
            leading: false,
            term,
            leader,
            valid_until: None,
        }
    }

    /// Whether this process may act now: it leads and its lease is
    /// certainly still its own.
    pub fn acting(&self) -> bool {
        self.leading && self.valid_until.is_none_or(|t| Instant::now() < t)
    }

    /// The leader's API, for redirects, when another process leads.
    pub fn leader_url(&self) -> Option<String> {
        self.leader
            .as_ref()
            .filter(|_| !self.leading)
            .map(|l| l.advertise.clone())
            .filter(|u| !u.is_empty())
    }
}

/// The running election of one process.
#[derive(Debug)]
pub struct Election {
    pub lead: watch::Receiver<Lead>,
    task: JoinHandle<()>,
}

impl Election {
    /// Waits for the loop to resign and end (after `stop` was cancelled).
    pub async fn finished(self) {
        let _ = self.task.await;
    }
}

/// Runs the first campaign now, so that this store object is fenced
/// before anything is written through it, then campaigns every [`ROUND`]
/// until `stop` is cancelled, when it resigns the lease (a follower takes
/// over at once instead of after [`TTL`]).
pub async fn start(
    store: Arc<dyn Store>,
    candidate: Candidate,
    stop: CancellationToken,
) -> Election {
    let mut current = Lead::follower(0, None);
    round(&store, &candidate, &mut current).await;
    let (tx, lead) = watch::channel(current.clone());
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(ROUND);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            round(&store, &candidate, &mut current).await;
            tx.send_if_modified(|l| {
                let changed = *l != current;
                if changed {
                    *l = current.clone();
                }
                changed
            });
        }
        let (s, holder) = (Arc::clone(&store), candidate.holder.clone());
        match tokio::task::spawn_blocking(move || s.resign(&holder)).await {
            Ok(Ok(())) => tracing::info!(holder = %candidate.holder, "resigned the leadership"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot resign the leadership; a follower takes over once the lease expires")
            }
            Err(e) => tracing::warn!(error = %e, "cannot resign the leadership"),
        }
        tx.send_replace(Lead::follower(current.term, None));
    });
    Election { lead, task }
}

/// Keeps the fleet's standing (what proxies are told in every `alive`)
/// equal to the election's outcome, until the election ends.
pub fn tell_fleet(mut lead: watch::Receiver<Lead>, fleet: Arc<Fleet>, name: String) {
    tokio::spawn(async move {
        loop {
            let standing = {
                let l = lead.borrow_and_update();
                Standing {
                    name: name.clone(),
                    leader: l.acting(),
                    leader_url: l.leader_url(),
                }
            };
            fleet.set_standing(standing);
            if lead.changed().await.is_err() {
                return;
            }
        }
    });
}

/// One campaign, and what it means for `lead`.
async fn round(store: &Arc<dyn Store>, candidate: &Candidate, lead: &mut Lead) {
    let sent = Instant::now();
    let (s, c) = (Arc::clone(store), candidate.clone());
    let outcome = tokio::task::spawn_blocking(move || s.campaign(&c, TTL))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    match outcome {
        Ok(Leadership::Leader { term }) => {
            if !lead.leading || lead.term != term {
                tracing::info!(holder = %candidate.holder, term, "this process leads the control plane");
            }
            *lead = Lead {
                leading: true,
                term,
                leader: None,
                valid_until: Some(sent + TTL - MARGIN),
            };
        }
        Ok(Leadership::Follower { leader }) => {
            if lead.leading {
                tracing::warn!(holder = %candidate.holder, term = lead.term, leader = ?leader.as_ref().map(|l| &l.holder), "this process lost the leadership; it stops acting and follows");
            } else if leader.as_ref().map(|l| l.term) != lead.leader.as_ref().map(|l| l.term) {
                match &leader {
                    Some(l) => {
                        tracing::info!(leader = %l.holder, term = l.term, api = %l.advertise, "following the leader")
                    }
                    None => tracing::info!("no process leads right now"),
                }
            }
            *lead = Lead::follower(lead.term, leader);
        }
        Err(e) => {
            // Loud, and read-only once the lease may have run out: a
            // leader that cannot renew must not go on acting as if it
            // could.
            if lead.leading && !lead.acting() {
                tracing::error!(error = %e, "cannot reach the store to renew the leadership; this process stops acting (read-only) until the store answers again");
                *lead = Lead::follower(lead.term, None);
            } else {
                tracing::error!(error = %e, "cannot reach the store for the leader election");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_control_plane_always_acts() {
        assert!(Lead::alone().acting());
        assert_eq!(Lead::alone().leader_url(), None);
    }

    #[test]
    fn a_leader_acts_only_until_its_own_deadline() {
        let lead = |valid_until| Lead {
            leading: true,
            term: 3,
            leader: None,
            valid_until: Some(valid_until),
        };
        assert!(lead(Instant::now() + TTL - MARGIN).acting());
        assert!(!lead(Instant::now() - Duration::from_millis(1)).acting());
    }

    #[test]
    fn a_follower_names_the_leader() {
        let info = LeaseInfo {
            holder: "b".into(),
            advertise: "http://b:9900".into(),
            term: 4,
            expires_in_ms: 1000,
        };
        let lead = Lead::follower(3, Some(info));
        assert!(!lead.acting());
        assert_eq!(lead.leader_url().as_deref(), Some("http://b:9900"));
    }
}
