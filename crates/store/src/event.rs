//! The append-only event log: the one source of truth for rollouts.
//!
//! Every input and action of a rollout is appended here before it takes
//! effect, and a rollout's state is a fold of its events. The log therefore
//! promises three things, whatever the backend:
//!
//! * **Durable**: `append` returns only after the batch is on stable storage
//!   (fsync'd); an acknowledged event survives a SIGKILL or a power cut.
//! * **Atomic and ordered**: a batch is stored all or nothing, and its new
//!   events get consecutive `seq`s. `seq`s start at 1 and have no gaps, so
//!   "read everything after seq N" never misses an event.
//! * **Once**: an event whose idempotency key is already stored is not
//!   appended again; the stored event is returned in its place, so a retried
//!   command is applied once.
//!
//! The log has no subscriptions: the process that appends knows what it
//! appended, and any other reader polls `read(after_seq)` (cheap: `seq` is
//! the primary key).

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// An event to append. The store assigns its `seq`.
///
/// Its strings may hold any Unicode but NUL (U+0000), which PostgreSQL's
/// text type cannot store; the body may hold anything JSON can.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// The service the event belongs to, or `""` for events of no service
    /// (token changes, system notices).
    pub service: String,
    /// Dotted name of what happened, e.g. `release.registered`,
    /// `input.command`, `action.set_route`. Must not be empty.
    pub kind: String,
    /// Who caused it: a token's name, `controller`, `system`, `cli:alice`.
    pub actor: String,
    /// Why, in the actor's words, when a human gave a reason.
    pub reason: Option<String>,
    /// Makes the append idempotent: unique across the whole log when present.
    ///
    /// Keyless events of a batch are appended every time the batch is, so a
    /// retried batch that mixes a keyed input with keyless actions would
    /// append the actions twice. Give derived events derived keys (for
    /// example `"{input_key}/1"`) or append them only when the keyed input
    /// was not a duplicate.
    pub idempotency_key: Option<String>,
    /// Wall-clock milliseconds since the Unix epoch, given by the caller:
    /// time is an input, the store reads no clock.
    pub at_ms: i64,
    /// The typed payload, opaque to the store. It reads back exactly
    /// (floats included).
    pub body: serde_json::Value,
}

impl NewEvent {
    /// An event with no reason and no idempotency key.
    pub fn new(
        service: impl Into<String>,
        kind: impl Into<String>,
        actor: impl Into<String>,
        at_ms: i64,
        body: serde_json::Value,
    ) -> Self {
        NewEvent {
            service: service.into(),
            kind: kind.into(),
            actor: actor.into(),
            reason: None,
            idempotency_key: None,
            at_ms,
            body,
        }
    }

    /// Sets the idempotency key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets the reason.
    #[must_use]
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Checks what every backend must refuse, before any I/O.
    pub(crate) fn validate(&self, index: usize) -> Result<(), StoreError> {
        let invalid = |detail: &str| StoreError::InvalidEvent {
            index,
            detail: detail.to_owned(),
        };
        if self.kind.is_empty() {
            return Err(invalid(
                "`kind` is empty; name what happened, e.g. `input.command`",
            ));
        }
        if self.idempotency_key.as_deref() == Some("") {
            return Err(invalid(
                "`idempotency_key` is empty; give a unique key or none",
            ));
        }
        // PostgreSQL's text cannot hold NUL, and no name or reason needs
        // one; bodies can (JSON escapes it).
        for (field, value) in [
            ("service", Some(&self.service)),
            ("kind", Some(&self.kind)),
            ("actor", Some(&self.actor)),
            ("reason", self.reason.as_ref()),
            ("idempotency_key", self.idempotency_key.as_ref()),
        ] {
            if value.is_some_and(|v| v.contains('\0')) {
                return Err(invalid(&format!(
                    "`{field}` contains a NUL character (U+0000); remove it"
                )));
            }
        }
        Ok(())
    }
}

/// An event as stored in the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Position in the log: 1, 2, 3, … with no gaps.
    pub seq: i64,
    /// The `seq` of the first event appended by the same `append` call. The
    /// events of one batch share it and have consecutive `seq`s, so readers
    /// can see the atomic groups.
    pub batch: i64,
    pub service: String,
    pub kind: String,
    pub actor: String,
    pub reason: Option<String>,
    pub idempotency_key: Option<String>,
    pub at_ms: i64,
    pub body: serde_json::Value,
}

/// One result of an append, in the order of the batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Appended {
    /// The stored event: the new one, or for a duplicate the one stored
    /// earlier with the same idempotency key.
    pub event: StoredEvent,
    /// The idempotency key was already stored, so nothing was appended for
    /// this event: the operation was applied by an earlier call.
    pub duplicate: bool,
}

/// The answer to a batch whose every event has a key that is already
/// stored, from the stored events by key (`None` when one is missing): all
/// duplicates, or [`StoreError::KeyReused`]. Backends answer such a retry
/// from a read, without a write transaction (so it costs no commit, and a
/// fenced store may answer it too: nothing is written).
pub(crate) fn all_duplicates(
    events: &[NewEvent],
    stored: &std::collections::HashMap<String, StoredEvent>,
) -> Option<Result<Vec<Appended>, StoreError>> {
    let mut out = Vec::with_capacity(events.len());
    for ev in events {
        let earlier = stored.get(ev.idempotency_key.as_deref()?)?;
        out.push((ev, earlier));
    }
    Some(
        out.into_iter()
            .map(|(ev, earlier)| {
                if earlier.service != ev.service || earlier.kind != ev.kind {
                    return Err(key_reused(ev, earlier));
                }
                Ok(Appended {
                    event: earlier.clone(),
                    duplicate: true,
                })
            })
            .collect(),
    )
}

/// The refusal of `ev`, whose key already belongs to `earlier`.
pub(crate) fn key_reused(ev: &NewEvent, earlier: &StoredEvent) -> StoreError {
    let describe = |kind: &str, service: &str| format!("a {kind:?} event of service {service:?}");
    StoreError::KeyReused {
        key: ev.idempotency_key.clone().unwrap_or_default(),
        seq: earlier.seq,
        stored: describe(&earlier.kind, &earlier.service),
        attempted: describe(&ev.kind, &ev.service),
    }
}

/// The append-only event log.
///
/// Implementations are synchronous (they do blocking I/O: call them from a
/// blocking thread, e.g. `tokio::task::spawn_blocking`) and shareable
/// between threads. Every backend must serialise appends so that `seq`s are
/// consecutive and gap-free, and must never update or delete an event.
pub trait EventLog: Send + Sync {
    /// Appends a batch atomically (all or nothing) and durably (on stable
    /// storage before it returns), giving its new events consecutive `seq`s.
    ///
    /// An event whose idempotency key is already stored (by an earlier call
    /// or earlier in the same batch) is not appended again: the stored event
    /// is returned in its place with `duplicate: true`. Reusing a key for an
    /// event of another service or kind is refused with
    /// [`StoreError::KeyReused`], and the whole batch with it. An empty batch
    /// appends nothing.
    fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, StoreError>;

    /// Up to `limit` events with `seq > after_seq`, in `seq` order.
    fn read(&self, after_seq: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError>;

    /// Up to `limit` events of one service with `seq > after_seq`, in `seq`
    /// order.
    fn read_service(
        &self,
        service: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The newest `limit` events (of one service when `service` is given),
    /// in `seq` order: what `backout events` shows, like `tail`, without
    /// paging through the whole log first.
    fn read_newest(
        &self,
        service: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The event stored with this idempotency key, if any: lets an API say
    /// whether a command was applied without retrying it.
    fn find_key(&self, key: &str) -> Result<Option<StoredEvent>, StoreError>;

    /// The `seq` of the last event, or 0 for an empty log.
    fn last_seq(&self) -> Result<i64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: &str, key: Option<&str>, expected: &str) {
        let mut ev = NewEvent::new("svc", kind, "test", 0, serde_json::Value::Null);
        ev.idempotency_key = key.map(str::to_owned);
        let got = match ev.validate(3) {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, expected, "kind {kind:?} key {key:?}");
    }

    #[test]
    fn validation() {
        check("input.command", None, "ok");
        check("input.command", Some("k"), "ok");
        check(
            "",
            None,
            "event 3 of the batch is invalid: `kind` is empty; name what happened, e.g. \
             `input.command`; nothing of the batch was appended",
        );
        check(
            "x",
            Some(""),
            "event 3 of the batch is invalid: `idempotency_key` is empty; give a unique key or \
             none; nothing of the batch was appended",
        );
        check(
            "a\0b",
            None,
            "event 3 of the batch is invalid: `kind` contains a NUL character (U+0000); remove \
             it; nothing of the batch was appended",
        );
        check(
            "x",
            Some("k\0"),
            "event 3 of the batch is invalid: `idempotency_key` contains a NUL character \
             (U+0000); remove it; nothing of the batch was appended",
        );
        let mut ev = NewEvent::new("svc", "x", "test", 0, serde_json::json!("a\0b"));
        ev.validate(0).unwrap();
        ev.reason = Some("\0".to_owned());
        ev.validate(0).unwrap_err();
    }
}
