//! Turns SQLite's result codes into errors that say what to do.

use std::path::Path;
use std::time::Duration;

use rusqlite::ErrorCode;

use crate::{Location, StoreError};

/// What every error needs to name: the file, and how long a busy write
/// waited.
pub(super) struct Ctx<'a> {
    pub path: &'a Path,
    pub busy_timeout: Duration,
}

impl Ctx<'_> {
    /// The file, as errors name it.
    pub fn location(&self) -> Location {
        Location::File(self.path.to_path_buf())
    }

    /// Classifies a SQLite error raised while doing `op`.
    pub fn err(&self, op: &'static str, e: rusqlite::Error) -> StoreError {
        let location = self.location();
        let rusqlite::Error::SqliteFailure(failure, message) = &e else {
            return StoreError::Backend {
                location,
                op,
                source: Box::new(e),
            };
        };
        let detail = message.clone().unwrap_or_else(|| failure.to_string());
        match failure.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StoreError::Busy {
                location,
                op,
                waited_ms: u64::try_from(self.busy_timeout.as_millis()).unwrap_or(u64::MAX),
            },
            ErrorCode::DiskFull => StoreError::DiskFull { location, op },
            ErrorCode::DatabaseCorrupt => StoreError::Corrupt { location, detail },
            ErrorCode::NotADatabase => StoreError::Foreign {
                location,
                detail: format!("not an SQLite file, or its header is damaged: {detail}"),
            },
            ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied => {
                StoreError::Access { location, detail }
            }
            ErrorCode::SystemIoFailure | ErrorCode::NoLargeFileSupport => StoreError::Io {
                location,
                op,
                detail,
            },
            _ => StoreError::Backend {
                location,
                op,
                source: Box::new(e),
            },
        }
    }

    /// A stored value that does not decode: the file was damaged or edited.
    pub fn decode(&self, what: impl Into<String>, detail: impl ToString) -> StoreError {
        StoreError::Decode {
            location: self.location(),
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}
