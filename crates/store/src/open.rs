//! One entry point for both backends: a location string in, a store out.

use std::sync::Arc;

use crate::{PgStore, SqliteStore, Store, StoreError};

/// Whether `location` names a PostgreSQL database (`postgres://…` or
/// `postgresql://…`) rather than a SQLite file.
pub fn is_postgres_url(location: &str) -> bool {
    let lower = location.trim_start().to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// Opens the store at `location`: a `postgres://` or `postgresql://` URL
/// opens a [`PgStore`] on that database, anything else is the path of a
/// SQLite file ([`SqliteStore`], created with its directories if missing).
///
/// Another URL scheme (`mysql://…`, a misspelt `postgress://…`) is refused
/// rather than taken for a file name. Errors name the location, never a
/// password in it.
pub fn open(location: &str) -> Result<Arc<dyn Store>, StoreError> {
    if is_postgres_url(location) {
        return Ok(Arc::new(PgStore::open(location)?));
    }
    if let Some((scheme, _)) = location.split_once("://")
        && !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err(StoreError::BadLocation {
            location: redact(location),
            detail: format!(
                "the store speaks PostgreSQL (postgres://USER@HOST:PORT/DATABASE) or SQLite (a \
                 file path), not {scheme}://"
            ),
        });
    }
    if location.trim().is_empty() {
        return Err(StoreError::BadLocation {
            location: String::new(),
            detail: "it is empty; give a postgres:// URL or the path of a SQLite file".to_owned(),
        });
    }
    Ok(Arc::new(SqliteStore::open(location)?))
}

/// `location` with any password replaced by `***`: in the user-info part
/// (`scheme://user:secret@host`) and in a `password=` query parameter.
pub fn redact(location: &str) -> String {
    let mut out = location.to_owned();
    if let Some(start) = out.find("://").map(|i| i + 3) {
        let authority_end = out[start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| start + i);
        if let Some(at) = out[start..authority_end].rfind('@').map(|i| start + i)
            && let Some(colon) = out[start..at].find(':').map(|i| start + i)
        {
            out.replace_range(colon + 1..at, "***");
        }
    }
    if let Some(q) = out.find('?') {
        let (base, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{base}{}", query.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        for (url, shown) in [
            ("postgres://u:pw@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h/db", "postgres://h/db"),
            ("postgres://u:p@ss:w@h/db", "postgres://u:***@h/db"),
            (
                "postgresql://u:pw@h/db?password=x&sslmode=disable",
                "postgresql://u:***@h/db?password=***&sslmode=disable",
            ),
            ("postgres://h/db?PASSWORD=x", "postgres://h/db?PASSWORD=***"),
            ("postgres://h/db?user=u", "postgres://h/db?user=u"),
            ("backout-data/backout.db", "backout-data/backout.db"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }

    #[test]
    fn schemes() {
        assert!(is_postgres_url("postgres://h/db"));
        assert!(is_postgres_url("PostgreSQL://h/db"));
        assert!(!is_postgres_url("postgres.db"));
        assert!(!is_postgres_url("data/postgres://x"));
        let err = |loc: &str| open(loc).unwrap_err().to_string();
        assert_eq!(
            err("mysql://root:hunter2@db/backout"),
            "cannot use \"mysql://root:***@db/backout\" as a store: the store speaks PostgreSQL \
             (postgres://USER@HOST:PORT/DATABASE) or SQLite (a file path), not mysql://"
        );
        assert!(err("postgress://h/db").contains("not postgress://"));
        assert!(err("").contains("it is empty"));
    }
}
