//! A flag file as the source of the served flag set: loaded at start,
//! watched for changes, and written by the management API.
//!
//! Watching polls the file's modification time and size (cheap, and it
//! works the same on every platform and for editors that replace the file).
//! A file that cannot be read or parsed leaves the last good flag set in
//! service and marks it stale; a file whose flags are partly broken is
//! served, with the broken flags reporting what is wrong.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use backout_flags::{DocumentError, Format, Loaded};
use serde_json::Value as Json;

use super::clock;
use super::store::FlagStore;

/// A flag file and its format.
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    format: Format,
    /// The file's modification time and size when it was last loaded, so
    /// the watcher reloads exactly when the file differs from what is served.
    loaded: Arc<Mutex<Option<Stamp>>>,
}

type Stamp = (SystemTime, u64);

/// Why the flag file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{error}")]
    Document { path: String, error: DocumentError },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot encode the flag document: {0}")]
    Encode(String),
}

impl FileSource {
    pub fn new(path: impl Into<PathBuf>) -> FileSource {
        let path = path.into();
        let format = Format::from_path(&path);
        FileSource {
            path,
            format,
            loaded: Arc::new(Mutex::new(None)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn display(&self) -> String {
        self.path.display().to_string()
    }

    /// Reads and loads the file.
    pub fn read(&self) -> Result<(Json, Loaded), SourceError> {
        let text = std::fs::read_to_string(&self.path).map_err(|source| SourceError::Read {
            path: self.display(),
            source,
        })?;
        let doc =
            backout_flags::parse(&text, self.format).map_err(|error| SourceError::Document {
                path: self.display(),
                error,
            })?;
        let mut loaded = backout_flags::load(&doc).map_err(|error| SourceError::Document {
            path: self.display(),
            error,
        })?;
        backout_flags::locate_problems(&text, self.format, &mut loaded.problems);
        Ok((doc, loaded))
    }

    /// Writes a whole document, atomically (a temporary file renamed over
    /// the old one), in the file's own format.
    pub fn write(&self, doc: &Json) -> Result<(), SourceError> {
        let text = match self.format {
            Format::Json => {
                serde_json::to_string_pretty(doc).map_err(|e| SourceError::Encode(e.to_string()))?
                    + "\n"
            }
            Format::Yaml => serde_saphyr_to_string(doc)?,
        };
        let tmp = self.path.with_extension(format!(
            "{}.tmp",
            self.path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("json")
        ));
        std::fs::write(&tmp, text).map_err(|source| SourceError::Write {
            path: self.display(),
            source,
        })?;
        std::fs::rename(&tmp, &self.path).map_err(|source| SourceError::Write {
            path: self.display(),
            source,
        })
    }

    /// Loads the file into `store`: publishes it, or on failure keeps the
    /// last good set and marks it stale. Returns the failure, if any.
    pub fn reload_into(&self, store: &FlagStore) -> Result<u64, SourceError> {
        let now = clock::unix_now();
        // Stamp before reading: a write racing with the read shows up as a
        // newer stamp and is loaded on the next tick.
        let stamp = self.stamp();
        let result = self.read();
        *self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = stamp;
        match result {
            Ok((doc, loaded)) => {
                for problem in &loaded.problems {
                    tracing::warn!("{}:{problem}", self.display());
                }
                Ok(store.publish(doc, loaded, now))
            }
            Err(error) => {
                tracing::error!("{error}; still serving the last good flag set");
                store.mark_unavailable(error.to_string(), now);
                Err(error)
            }
        }
    }

    fn stamp(&self) -> Option<Stamp> {
        let meta = std::fs::metadata(&self.path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    /// Polls the file every `interval` and reloads it when it changes
    /// (including when it disappears, which marks the served set stale).
    /// Runs until the task is dropped.
    pub async fn watch(self, store: FlagStore, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let loaded = *self
                .loaded
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if self.stamp() != loaded {
                let _ = self.reload_into(&store);
            }
        }
    }
}

fn serde_saphyr_to_string(doc: &Json) -> Result<String, SourceError> {
    serde_saphyr::to_string(doc).map_err(|e| SourceError::Encode(e.to_string()))
}
