//! [`Snapshots`] on SQLite.

use rusqlite::OptionalExtension;

use super::SqliteStore;
use super::events::last_seq;
use crate::{Snapshot, Snapshots, StoreError};

/// Snapshots kept per service: the newest, and one before it in case the
/// newest turns out unusable to a reader.
const KEEP: i64 = 2;

impl Snapshots for SqliteStore {
    fn save_snapshot(
        &self,
        service: &str,
        up_to_seq: i64,
        body: &serde_json::Value,
    ) -> Result<(), StoreError> {
        crate::snapshot::validate_service(service)?;
        let op = "saving a snapshot";
        let body = serde_json::to_string(body).map_err(|e| StoreError::Backend {
            location: crate::Location::File(self.path.clone()),
            op,
            source: Box::new(e),
        })?;
        self.write(op, |ctx, tx| {
            let last = last_seq(ctx, tx)?;
            if up_to_seq > last || up_to_seq < 0 {
                return Err(StoreError::SnapshotAhead {
                    service: service.to_owned(),
                    up_to_seq,
                    last_seq: last,
                });
            }
            tx.execute(
                "INSERT OR REPLACE INTO snapshots (service, up_to_seq, body) VALUES (?1, ?2, ?3)",
                (service, up_to_seq, &body),
            )
            .map_err(|e| ctx.err(op, e))?;
            tx.execute(
                "DELETE FROM snapshots WHERE service = ?1 AND up_to_seq NOT IN \
                 (SELECT up_to_seq FROM snapshots WHERE service = ?1 \
                  ORDER BY up_to_seq DESC LIMIT ?2)",
                (service, KEEP),
            )
            .map_err(|e| ctx.err(op, e))?;
            Ok(())
        })
    }

    fn latest_snapshot(&self, service: &str) -> Result<Option<Snapshot>, StoreError> {
        let op = "reading a snapshot";
        self.read(|ctx, conn| {
            let row: Option<(i64, String)> = conn
                .prepare_cached(
                    "SELECT up_to_seq, body FROM snapshots WHERE service = ?1 \
                     ORDER BY up_to_seq DESC LIMIT 1",
                )
                .and_then(|mut s| s.query_row([service], |r| Ok((r.get(0)?, r.get(1)?))))
                .optional()
                .map_err(|e| ctx.err(op, e))?;
            row.map(|(up_to_seq, body)| {
                let body = serde_json::from_str(&body).map_err(|e| {
                    ctx.decode(
                        format!("the snapshot of {service:?} up to seq {up_to_seq}"),
                        e,
                    )
                })?;
                Ok(Snapshot {
                    service: service.to_owned(),
                    up_to_seq,
                    body,
                })
            })
            .transpose()
        })
    }
}
