//! The record of flag changes: who changed which flag, when, why, and what
//! it was before and after.
//!
//! Behind a trait so it can move onto the shared event log (SQLite) that the
//! rollout timeline uses; for now standalone mode appends JSON lines to a
//! file next to the flag file (`flags.json` → `flags.json.events.jsonl`).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

#[cfg(test)]
mod tests {
    use super::*;

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
