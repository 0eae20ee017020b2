//! The record of flag changes: who changed which flag, when, why, and what
//! it was before and after.
//!
//! Behind a trait with two homes. Under `backout up` flag changes go to the
//! control plane's event log ([`StoreEventLog`]), so they sit on the same
//! timeline as rollouts and a metric change can be lined up with the flag
//! change that caused it. The standalone `backout flags serve` has no
//! event log of its own and appends JSON lines to a file next to the flag
//! file (`flags.json` → `flags.json.events.jsonl`).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use backout_store::{NewEvent, Store, StoredEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// One change to one flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagEvent {
    /// Unix milliseconds.
    pub at_ms: i64,
    pub actor: String,
    /// `create`, `update`, `delete`, `kill` or `revive`; a guarded rollout
    /// records `rollout-start`, `rollout-step`, `rollout-promote`,
    /// `rollout-abort`, `switch-off` and `switched-off` (the MTTR record).
    pub action: String,
    pub flag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub before: Option<Json>,
    pub after: Option<Json>,
    /// For the automatic switch-off of a guarded rollout: its MTTR clock
    /// (timestamps and phases in milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mttr: Option<Json>,
}

/// Where flag events go.
pub trait FlagEventLog: Send + Sync {
    /// Appends one event; it must be durable when this returns.
    fn append(&self, event: &FlagEvent) -> std::io::Result<()>;
    /// Every event, oldest first.
    fn read_all(&self) -> std::io::Result<Vec<FlagEvent>>;
}

/// An append-only JSON-lines file.
pub struct JsonlEventLog {
    path: PathBuf,
    lock: Mutex<()>,
}

impl JsonlEventLog {
    pub fn new(path: impl Into<PathBuf>) -> JsonlEventLog {
        JsonlEventLog {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    /// The log that belongs to a flag file.
    pub fn beside(flag_file: &Path) -> JsonlEventLog {
        let mut name = flag_file.as_os_str().to_owned();
        name.push(".events.jsonl");
        JsonlEventLog::new(PathBuf::from(name))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl FlagEventLog for JsonlEventLog {
    fn append(&self, event: &FlagEvent) -> std::io::Result<()> {
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(&line)?;
        file.sync_data()
    }

    fn read_all(&self) -> std::io::Result<Vec<FlagEvent>> {
        let file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut events = Vec::new();
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let event = serde_json::from_str(&line).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}:{}: not a flag event: {e}", self.path.display(), i + 1),
                )
            })?;
            events.push(event);
        }
        Ok(events)
    }
}

/// The `service` of flag events in the control plane's log. Service names
/// start with a letter or digit, so no service can take it.
pub const FLAGS_SERVICE: &str = "@flags";
/// Flag events are logged as `flag.<action>`: `flag.kill`, `flag.update`…
pub const KIND_PREFIX: &str = "flag.";

/// Flag changes in the control plane's event log, one event per change:
/// service [`FLAGS_SERVICE`], kind `flag.<action>`, the actor and reason
/// as recorded, and the rest of the [`FlagEvent`] as the body.
pub struct StoreEventLog {
    store: Arc<dyn Store>,
}

impl StoreEventLog {
    pub fn new(store: Arc<dyn Store>) -> StoreEventLog {
        StoreEventLog { store }
    }

    fn decode(e: &StoredEvent) -> Option<FlagEvent> {
        let action = e.kind.strip_prefix(KIND_PREFIX)?;
        let body = &e.body;
        Some(FlagEvent {
            at_ms: e.at_ms,
            actor: e.actor.clone(),
            action: action.to_owned(),
            flag: body.get("flag")?.as_str()?.to_owned(),
            reason: e.reason.clone(),
            before: body.get("before").cloned().filter(|v| !v.is_null()),
            after: body.get("after").cloned().filter(|v| !v.is_null()),
            mttr: body.get("mttr").cloned().filter(|v| !v.is_null()),
        })
    }
}

impl FlagEventLog for StoreEventLog {
    fn append(&self, event: &FlagEvent) -> std::io::Result<()> {
        let mut body = serde_json::json!({
            "flag": event.flag,
            "before": event.before,
            "after": event.after,
        });
        if let Some(m) = &event.mttr {
            body["mttr"] = m.clone();
        }
        let mut new = NewEvent::new(
            FLAGS_SERVICE,
            format!("{KIND_PREFIX}{}", event.action),
            &event.actor,
            event.at_ms,
            body,
        );
        new.reason = event.reason.clone();
        // The store syncs every commit: durable when this returns.
        self.store
            .append(vec![new])
            .map(drop)
            .map_err(std::io::Error::other)
    }

    fn read_all(&self) -> std::io::Result<Vec<FlagEvent>> {
        const PAGE: usize = 1000;
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self
                .store
                .read_service(FLAGS_SERVICE, after, PAGE)
                .map_err(std::io::Error::other)?;
            let Some(last) = page.last() else {
                return Ok(out);
            };
            after = last.seq;
            out.extend(page.iter().filter_map(StoreEventLog::decode));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_control_planes_log_keeps_flag_events_beside_the_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(
            backout_store::SqliteStore::open(dir.path().join("backout.db")).expect("open"),
        );
        let log = StoreEventLog::new(Arc::clone(&store));
        assert_eq!(log.read_all().expect("empty"), vec![]);
        let kill = FlagEvent {
            at_ms: 10,
            actor: "t-operator".into(),
            action: "kill".into(),
            flag: "new-checkout".into(),
            reason: Some("5xx spike".into()),
            before: Some(serde_json::json!({"state": "ENABLED"})),
            after: Some(serde_json::json!({"state": "DISABLED"})),
            mttr: None,
        };
        let switched_off = FlagEvent {
            at_ms: 20,
            actor: "guard".into(),
            action: "switched-off".into(),
            flag: "new-checkout".into(),
            reason: None,
            before: None,
            after: None,
            mttr: Some(serde_json::json!({"detect_ms": 900})),
        };
        log.append(&kill).expect("append");
        // A rollout's event in between is not a flag event.
        store
            .append(vec![NewEvent::new(
                "shop",
                "input.command",
                "ann",
                15,
                serde_json::json!({}),
            )])
            .expect("append");
        log.append(&switched_off).expect("append");
        assert_eq!(log.read_all().expect("read"), vec![kill, switched_off]);
        let all = store.read(0, 10).expect("read");
        let kinds: Vec<(&str, &str)> = all
            .iter()
            .map(|e| (e.service.as_str(), e.kind.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("@flags", "flag.kill"),
                ("shop", "input.command"),
                ("@flags", "flag.switched-off")
            ]
        );
        assert_eq!(all[0].reason.as_deref(), Some("5xx spike"));
    }

    #[test]
    fn appends_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = JsonlEventLog::beside(&dir.path().join("flags.json"));
        assert!(log.path().ends_with("flags.json.events.jsonl"));
        assert_eq!(log.read_all().expect("empty"), vec![]);
        let event = FlagEvent {
            at_ms: 1,
            actor: "ann".into(),
            action: "kill".into(),
            flag: "f".into(),
            reason: Some("5xx spike".into()),
            before: Some(serde_json::json!({"state": "ENABLED"})),
            after: Some(serde_json::json!({"state": "DISABLED"})),
            mttr: None,
        };
        log.append(&event).expect("append");
        log.append(&event).expect("append");
        assert_eq!(log.read_all().expect("read"), vec![event.clone(), event]);
        std::fs::write(log.path(), "{\"nope\": 1}\n").expect("write");
        let err = log.read_all().expect_err("bad line");
        assert!(err.to_string().contains(":1: not a flag event"), "{err}");
    }
}
