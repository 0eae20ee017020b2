//! The leader lease and its fencing term: how several control-plane
//! processes on one database agree on which of them writes.
//!
//! The database holds one lease row: the holder's name, the API URL it
//! advertises, the term and the moment the lease expires. Each process
//! calls [`Leases::campaign`] every second or so. A campaign takes the lease
//! when it is free or expired, raising the term by one; renews it when this
//! store object already holds it; and otherwise reports who leads. Expiry is
//! judged on the database's clock only, so machines whose clocks disagree
//! still agree on who leads.
//!
//! Time alone cannot keep a paused process from writing: a process stopped
//! (SIGSTOP, a long GC pause, a frozen VM) after its last renewal wakes up
//! believing it still leads. So every write of a store object that has
//! campaigned is **fenced**: in the write's own transaction, under a lock
//! that a takeover must wait for, the store checks that the lease row still
//! carries the term and holder this object last won, and otherwise writes
//! nothing and fails with [`StoreError::Fenced`]. A takeover therefore
//! either waits for a write in flight to commit, or the write sees the new
//! term and is refused: no write of term N lands after term N+1 began.
//!
//! A retried batch whose every event is already stored (by idempotency
//! key) is answered from a read, without a write transaction, fenced or
//! not: nothing is written, and "applied earlier at seq N" is true whoever
//! leads.
//!
//! A store object that never campaigned is unfenced (a single `backout up`,
//! the CLI writing tokens into a local file): leases cost nothing to those
//! who do not use them.
//!
//! Holder names should be unique per running process. A fresh store object
//! (one that has won no term yet) that finds the lease held under its own
//! name takes it over at once with a new term, because that is its own
//! earlier incarnation, restarted before the lease expired; the earlier
//! object, if it still runs, is fenced from then on.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// The control plane's election, on the database.
pub trait Leases: Send + Sync {
    /// One round of the control plane's election, on the database's clock
    /// (never the caller's: machines' clocks may be skewed). Takes the lease
    /// when it is free or expired (the term goes up by one), renews it when
    /// `candidate.holder` already holds it, and otherwise reports who leads.
    ///
    /// The first call fences this store object, whatever its outcome (an
    /// error included): from then on its writes succeed only while it holds
    /// the term it last won.
    fn campaign(&self, candidate: &Candidate, ttl: Duration) -> Result<Leadership, StoreError>;

    /// Gives the lease up (clean shutdown), so a follower can take over at
    /// once. Releases only a lease this store object holds under `holder`;
    /// otherwise it does nothing. This object's writes are refused from
    /// then on, until it wins again.
    fn resign(&self, holder: &str) -> Result<(), StoreError>;

    /// Who leads now, if anyone (for followers' redirects and `status`).
    fn leader(&self) -> Result<Option<LeaseInfo>, StoreError>;
}

/// A process standing for the leadership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// Unique per running process, e.g. `host-a:4100` or a configured name.
    pub holder: String,
    /// The API URL others should use while this process leads.
    pub advertise: String,
}

impl Candidate {
    /// A candidate named `holder` that advertises `advertise`.
    pub fn new(holder: impl Into<String>, advertise: impl Into<String>) -> Self {
        Candidate {
            holder: holder.into(),
            advertise: advertise.into(),
        }
    }
}

/// The outcome of a campaign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Leadership {
    /// This process leads, under this term, until the lease expires.
    Leader { term: i64 },
    /// Another process leads (`leader`), or nobody could be seen to.
    Follower { leader: Option<LeaseInfo> },
}

/// The lease as the database holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub holder: String,
    pub advertise: String,
    /// Raised by one at every takeover, never lowered.
    pub term: i64,
    /// Milliseconds until the lease expires, on the database's clock.
    pub expires_in_ms: i64,
}

/// The longest lease a campaign may ask for: a leader that dies holding a
/// longer one would leave the control plane without a writer for too long.
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// The lease row as a backend reads it (inside its transaction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LeaseRow {
    pub holder: String,
    pub advertise: String,
    pub term: i64,
    /// Negative once expired; an empty holder means the lease is free.
    pub expires_in_ms: i64,
}

impl LeaseRow {
    /// The lease as the public API shows it, when somebody holds it.
    pub fn live(&self) -> Option<LeaseInfo> {
        (!self.holder.is_empty() && self.expires_in_ms > 0).then(|| LeaseInfo {
            holder: self.holder.clone(),
            advertise: self.advertise.clone(),
            term: self.term,
            expires_in_ms: self.expires_in_ms,
        })
    }
}

/// What a campaign does with the row it locked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// This object holds the lease: extend it, same term.
    Renew,
    /// Take the lease under this (new) term.
    Take { term: i64 },
    /// Someone else holds it.
    Follow,
}

/// The election rule, shared by both backends. `last_won` is the last term
/// this store object won under `candidate`'s name, if any.
pub(crate) fn decide(row: &LeaseRow, holder: &str, last_won: Option<i64>) -> Decision {
    let free = row.holder.is_empty() || row.expires_in_ms <= 0;
    let take = Decision::Take { term: row.term + 1 };
    if row.holder == holder {
        match last_won {
            Some(term) if term == row.term => Decision::Renew,
            // Our own name, but a term this object never won: a fresh
            // object is a restart of the process that held it, so it takes
            // over; an object that did win earlier lost to a newer
            // incarnation and only takes the lease once that one lets it
            // expire.
            None => take,
            Some(_) if free => take,
            Some(_) => Decision::Follow,
        }
    } else if free {
        take
    } else {
        Decision::Follow
    }
}

/// Checks a campaign's arguments before any I/O.
pub(crate) fn validate(candidate: &Candidate, ttl: Duration) -> Result<i64, StoreError> {
    let invalid = |what: &str, detail: &str| StoreError::InvalidValue {
        what: what.to_owned(),
        detail: detail.to_owned(),
    };
    if candidate.holder.is_empty() {
        return Err(invalid(
            "lease holder",
            "it is empty; name the process, e.g. its host and port",
        ));
    }
    for (what, value) in [
        ("lease holder", &candidate.holder),
        ("advertised URL", &candidate.advertise),
    ] {
        if value.len() > 512 {
            return Err(invalid(what, "it is longer than 512 bytes"));
        }
        if value.contains('\0') {
            return Err(invalid(what, "it contains a NUL character"));
        }
    }
    let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    if ms < 1 || ttl > MAX_TTL {
        return Err(invalid(
            "lease ttl",
            &format!(
                "{ttl:?} is out of range; give between 1 ms and {} s",
                MAX_TTL.as_secs()
            ),
        ));
    }
    Ok(ms)
}

/// Where a store object stands in the election.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Never campaigned: writes are not checked.
    Unfenced,
    /// Won `term` as `holder`: writes check that the row still says so.
    Leader { holder: String, term: i64 },
    /// Lost, resigned or was fenced: writes are refused.
    Follower {
        holder: String,
        last_won: Option<i64>,
    },
}

/// What a write must do about fencing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// This object never campaigned.
    None,
    /// The lease row must carry this holder and term, checked in the
    /// write's transaction.
    Lease { holder: String, term: i64 },
    /// This object follows: refuse without writing.
    Refuse { last_won: i64 },
}

/// A store object's fencing state. Backends keep one per store object.
#[derive(Debug)]
pub(crate) struct Fence(Mutex<State>);

impl Default for Fence {
    fn default() -> Self {
        Fence(Mutex::new(State::Unfenced))
    }
}

impl Fence {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is replaced whole under the lock, never left half-made.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the next write must check.
    pub fn check(&self) -> Check {
        match &*self.state() {
            State::Unfenced => Check::None,
            State::Leader { holder, term } => Check::Lease {
                holder: holder.clone(),
                term: *term,
            },
            State::Follower { last_won, .. } => Check::Refuse {
                last_won: last_won.unwrap_or(0),
            },
        }
    }

    /// A campaign begins: an unfenced object is fenced from now on, as a
    /// follower until it wins.
    pub fn enter(&self, holder: &str) {
        let mut state = self.state();
        if *state == State::Unfenced {
            *state = State::Follower {
                holder: holder.to_owned(),
                last_won: None,
            };
        }
    }

    /// The last term this object won under `holder`'s name.
    pub fn last_won(&self, holder: &str) -> Option<i64> {
        match &*self.state() {
            State::Leader { holder: h, term } if h == holder => Some(*term),
            State::Follower {
                holder: h,
                last_won,
            } if h == holder => *last_won,
            _ => None,
        }
    }

    /// Records a committed campaign.
    pub fn campaigned(&self, holder: &str, outcome: &Leadership) {
        let mut state = self.state();
        *state = match outcome {
            Leadership::Leader { term } => State::Leader {
                holder: holder.to_owned(),
                term: *term,
            },
            Leadership::Follower { .. } => {
                let last_won = match &*state {
                    State::Leader { holder: h, term } if h == holder => Some(*term),
                    State::Follower {
                        holder: h,
                        last_won,
                    } if h == holder => *last_won,
                    _ => None,
                };
                State::Follower {
                    holder: holder.to_owned(),
                    last_won,
                }
            }
        };
    }

    /// A write found the lease moved on from `term`: follow from now on.
    pub fn lost(&self, term: i64) {
        let mut state = self.state();
        if let State::Leader { holder, term: t } = &*state
            && *t == term
        {
            *state = State::Follower {
                holder: holder.clone(),
                last_won: Some(term),
            };
        }
    }

    /// This object resigned (or had nothing to resign): it follows now.
    pub fn resigned(&self, holder: &str) {
        let mut state = self.state();
        let last_won = match &*state {
            State::Leader { holder: h, term } if h == holder => Some(*term),
            State::Follower {
                holder: h,
                last_won,
            } if h == holder => *last_won,
            _ => None,
        };
        *state = State::Follower {
            holder: holder.to_owned(),
            last_won,
        };
    }

    /// The result of a campaign that found `row` and decided `decision`.
    pub fn outcome(row: &LeaseRow, decision: Decision) -> Leadership {
        match decision {
            Decision::Renew => Leadership::Leader { term: row.term },
            Decision::Take { term } => Leadership::Leader { term },
            Decision::Follow => Leadership::Follower { leader: row.live() },
        }
    }
}

/// The refusal of a write that found `row` instead of `term` under the
/// lock.
pub(crate) fn fenced(term: i64, row: &LeaseRow) -> StoreError {
    StoreError::Fenced {
        term,
        leader: row.live(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(holder: &str, term: i64, expires_in_ms: i64) -> LeaseRow {
        LeaseRow {
            holder: holder.to_owned(),
            advertise: format!("http://{holder}"),
            term,
            expires_in_ms,
        }
    }

    fn show(d: Decision) -> String {
        match d {
            Decision::Renew => "renew".to_owned(),
            Decision::Take { term } => format!("take {term}"),
            Decision::Follow => "follow".to_owned(),
        }
    }

    /// `check(row, me, last_won, expected)`: the decision of candidate `me`
    /// that last won `last_won`, on a lease row (holder, term, ms left).
    fn check(row_: (&str, i64, i64), me: &str, last_won: Option<i64>, expected: &str) {
        let got = show(decide(&row(row_.0, row_.1, row_.2), me, last_won));
        assert_eq!(got, expected, "row {row_:?}, {me} last won {last_won:?}");
    }

    #[test]
    fn the_election_rule() {
        // A fresh database: nobody ever held it.
        check(("", 0, -1_000), "a", None, "take 1");
        // Free after a resignation, and expired: anyone takes it.
        check(("", 4, -1), "b", None, "take 5");
        check(("a", 4, 0), "b", None, "take 5");
        check(("a", 4, -30_000), "b", Some(2), "take 5");
        // Held by someone else: follow.
        check(("a", 4, 1), "b", None, "follow");
        check(("a", 4, 10_000), "b", Some(3), "follow");
        // Mine, the term I won: renew, expired or not (nobody took it).
        check(("a", 4, 500), "a", Some(4), "renew");
        check(("a", 4, -500), "a", Some(4), "renew");
        // Mine by name but I never won: my restart takes over at once.
        check(("a", 4, 9_000), "a", None, "take 5");
        // Mine by name, a term I did not win: a newer incarnation holds
        // it; wait for it to expire.
        check(("a", 5, 9_000), "a", Some(4), "follow");
        check(("a", 5, -1), "a", Some(4), "take 6");
    }

    #[test]
    fn fence_states() {
        let fence = Fence::default();
        assert_eq!(fence.check(), Check::None);
        assert_eq!(fence.last_won("a"), None);
        fence.enter("a");
        assert_eq!(fence.check(), Check::Refuse { last_won: 0 });
        let follower = Leadership::Follower { leader: None };
        fence.campaigned("a", &follower);
        assert_eq!(fence.check(), Check::Refuse { last_won: 0 });
        fence.campaigned("a", &Leadership::Leader { term: 3 });
        assert_eq!(
            fence.check(),
            Check::Lease {
                holder: "a".to_owned(),
                term: 3
            }
        );
        assert_eq!(fence.last_won("a"), Some(3));
        assert_eq!(fence.last_won("b"), None);
        // A write that saw another term only demotes the term it checked.
        fence.lost(2);
        assert_eq!(fence.last_won("a"), Some(3));
        assert!(matches!(fence.check(), Check::Lease { .. }));
        fence.lost(3);
        assert_eq!(fence.check(), Check::Refuse { last_won: 3 });
        assert_eq!(fence.last_won("a"), Some(3));
        // Losing a campaign keeps the memory of the last term won.
        fence.campaigned("a", &follower);
        assert_eq!(fence.last_won("a"), Some(3));
        fence.campaigned("a", &Leadership::Leader { term: 7 });
        // Entering another campaign changes nothing until it commits.
        fence.enter("a");
        assert_eq!(fence.last_won("a"), Some(7));
        assert!(matches!(fence.check(), Check::Lease { term: 7, .. }));
        fence.resigned("a");
        assert_eq!(fence.check(), Check::Refuse { last_won: 7 });
    }

    #[test]
    fn campaign_arguments() {
        let ok = Candidate::new("a", "http://a:4100");
        assert_eq!(validate(&ok, Duration::from_secs(5)).unwrap(), 5000);
        let err = |c: &Candidate, ttl: Duration| validate(c, ttl).unwrap_err().to_string();
        assert_eq!(
            err(&Candidate::new("", "x"), Duration::from_secs(1)),
            "invalid lease holder: it is empty; name the process, e.g. its host and port; \
             nothing was written"
        );
        assert_eq!(
            err(&Candidate::new("a\0", "x"), Duration::from_secs(1)),
            "invalid lease holder: it contains a NUL character; nothing was written"
        );
        assert_eq!(
            err(&ok, Duration::ZERO),
            "invalid lease ttl: 0ns is out of range; give between 1 ms and 3600 s; nothing was \
             written"
        );
        err(&ok, Duration::from_secs(3601));
        err(
            &Candidate::new("a", "u".repeat(513)),
            Duration::from_secs(1),
        );
    }

    #[test]
    fn fenced_messages() {
        let leader = row("b", 8, 4000);
        assert_eq!(
            fenced(7, &leader).to_string(),
            "this process lost the leadership (it last led at term 7); b leads at term 8 (API \
             http://b): nothing was written. Only the leader writes: send the request to the \
             leader, or wait until this process wins an election"
        );
        assert_eq!(
            fenced(0, &row("", 8, -1)).to_string(),
            "this process is not the leader; no process leads right now: nothing was written. \
             Only the leader writes: send the request to the leader, or wait until this process \
             wins an election"
        );
    }
}
