//! Turns PostgreSQL's errors (SQLSTATE codes, lost connections) into
//! errors that say what to do.

use postgres::error::SqlState;

use crate::{Location, StoreError};

/// The error's text with its cause and, for a server error, its detail
/// and hint.
fn detail(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = db.message().to_owned();
        if let Some(d) = db.detail() {
            text.push_str(&format!(" ({d})"));
        }
        if let Some(h) = db.hint() {
            text.push_str(&format!("; hint: {h}"));
        }
        return text;
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// Classifies an error raised while doing `op`.
pub(super) fn classify(
    location: &Location,
    op: &'static str,
    e: postgres::Error,
    lock_timeout_ms: u64,
) -> StoreError {
    let location = location.clone();
    let text = detail(&e);
    let Some(code) = e.code() else {
        let shown = e.to_string();
        return if shown.starts_with("error performing TLS handshake") {
            StoreError::Access {
                location,
                detail: format!(
                    "{text}; the store does not speak TLS to PostgreSQL yet: use \
                     sslmode=disable or prefer, over a network you trust"
                ),
            }
        } else if shown.starts_with("authentication error") {
            StoreError::Access {
                location,
                detail: text,
            }
        } else if e.is_closed()
            || shown.starts_with("error connecting")
            || shown.starts_with("error communicating")
            || shown.starts_with("timeout")
        {
            StoreError::Unreachable {
                location,
                op,
                detail: text,
            }
        } else {
            StoreError::Backend {
                location,
                op,
                source: Box::new(e),
            }
        };
    };
    let code = code.clone();
    if code == SqlState::DISK_FULL {
        StoreError::DiskFull { location, op }
    } else if code == SqlState::LOCK_NOT_AVAILABLE || code == SqlState::QUERY_CANCELED {
        StoreError::Busy {
            location,
            op,
            waited_ms: lock_timeout_ms,
        }
    } else if code == SqlState::DATA_CORRUPTED || code == SqlState::INDEX_CORRUPTED {
        StoreError::Corrupt {
            location,
            detail: text,
        }
    } else if code == SqlState::INVALID_PASSWORD
        || code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        || code == SqlState::INSUFFICIENT_PRIVILEGE
        || code == SqlState::INVALID_CATALOG_NAME
        || code == SqlState::READ_ONLY_SQL_TRANSACTION
    {
        StoreError::Access {
            location,
            detail: text,
        }
    } else if code == SqlState::ADMIN_SHUTDOWN
        || code == SqlState::CRASH_SHUTDOWN
        || code == SqlState::CANNOT_CONNECT_NOW
        || code == SqlState::TOO_MANY_CONNECTIONS
        || code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
        || code.code().starts_with("08")
    {
        StoreError::Unreachable {
            location,
            op,
            detail: text,
        }
    } else {
        StoreError::Backend {
            location,
            op,
            source: Box::new(e),
        }
    }
}
