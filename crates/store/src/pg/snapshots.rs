//! [`Snapshots`] on PostgreSQL.

use super::PgStore;
use super::events::last_seq;
use crate::{Snapshot, Snapshots, StoreError};

/// Snapshots kept per service: the newest, and one before it in case the
/// newest turns out unusable to a reader.
const KEEP: i64 = 2;

impl Snapshots for PgStore {
    fn save_snapshot(
        &self,
        service: &str,
        up_to_seq: i64,
        body: &serde_json::Value,
    ) -> Result<(), StoreError> {
        crate::snapshot::validate_service(service)?;
        let op = "saving a snapshot";
        let body = serde_json::to_string(body).map_err(|e| StoreError::Backend {
            location: self.location.clone(),
            op,
            source: Box::new(e),
        })?;
        let service = service.to_owned();
        self.write(op, move |db| {
            let last = last_seq(db)?;
            if up_to_seq > last || up_to_seq < 0 {
                return Err(StoreError::SnapshotAhead {
                    service,
                    up_to_seq,
                    last_seq: last,
                });
            }
            db.execute(
                op,
                "INSERT INTO backout.snapshots (service, up_to_seq, body) VALUES ($1, $2, $3) \
                 ON CONFLICT (service, up_to_seq) DO UPDATE SET body = excluded.body",
                &[&service, &up_to_seq, &body],
            )?;
            db.execute(
                op,
                "DELETE FROM backout.snapshots WHERE service = $1 AND up_to_seq NOT IN \
                 (SELECT up_to_seq FROM backout.snapshots WHERE service = $1 \
                  ORDER BY up_to_seq DESC LIMIT $2)",
                &[&service, &KEEP],
            )?;
            Ok(())
        })
    }

    fn latest_snapshot(&self, service: &str) -> Result<Option<Snapshot>, StoreError> {
        let op = "reading a snapshot";
        let service = service.to_owned();
        self.read(op, move |db| {
            if service.contains('\0') {
                return Ok(None);
            }
            let row = db.query_opt(
                op,
                "SELECT up_to_seq, body FROM backout.snapshots WHERE service = $1 \
                 ORDER BY up_to_seq DESC LIMIT 1",
                &[&service],
            )?;
            let Some(row) = row else { return Ok(None) };
            let what = || format!("the snapshot of {service:?}");
            let up_to_seq: i64 = db.get(&row, 0, what)?;
            let body: String = db.get(&row, 1, what)?;
            let body = serde_json::from_str(&body).map_err(|e| StoreError::Decode {
                location: db.shared.location.clone(),
                what: format!("the snapshot of {service:?} up to seq {up_to_seq}"),
                detail: e.to_string(),
            })?;
            Ok(Some(Snapshot {
                service: service.clone(),
                up_to_seq,
                body,
            }))
        })
    }
}
