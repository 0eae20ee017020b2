//! [`Leases`] on SQLite: the lease row in the same file, judged on this
//! machine's clock as SQLite reads it (`julianday('now')`), which is the
//! database's clock for a file only one machine can open.

use std::time::Duration;

use rusqlite::Connection;

use super::SqliteStore;
use super::errors::Ctx;
use crate::lease::{self, Decision, Fence, LeaseRow};
use crate::{Candidate, Leadership, LeaseInfo, Leases, StoreError};

/// Milliseconds since the epoch, on SQLite's clock.
const NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";

/// The lease row; inside a write transaction it cannot change before the
/// commit.
pub(super) fn row(ctx: &Ctx<'_>, conn: &Connection) -> Result<LeaseRow, StoreError> {
    let sql =
        format!("SELECT holder, advertise, term, expires_at_ms - {NOW_MS} FROM lease WHERE id = 1");
    conn.prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_row([], |r| {
                Ok(LeaseRow {
                    holder: r.get(0)?,
                    advertise: r.get(1)?,
                    term: r.get(2)?,
                    expires_in_ms: r.get(3)?,
                })
            })
        })
        .map_err(|e| ctx.err("reading the lease", e))
}

impl Leases for SqliteStore {
    fn campaign(&self, candidate: &Candidate, ttl: Duration) -> Result<Leadership, StoreError> {
        self.fence.enter(&candidate.holder);
        let ttl_ms = lease::validate(candidate, ttl)?;
        let last_won = self.fence.last_won(&candidate.holder);
        let op = "campaigning for the lease";
        let outcome = self.transaction(op, |ctx, tx| {
            let row = row(ctx, tx)?;
            let decision = lease::decide(&row, &candidate.holder, last_won);
            let term = match decision {
                Decision::Renew => row.term,
                Decision::Take { term } => term,
                Decision::Follow => return Ok(Fence::outcome(&row, decision)),
            };
            tx.execute(
                &format!(
                    "UPDATE lease SET holder = ?1, advertise = ?2, term = ?3, \
                     expires_at_ms = {NOW_MS} + ?4 WHERE id = 1"
                ),
                (&candidate.holder, &candidate.advertise, term, ttl_ms),
            )
            .map_err(|e| ctx.err(op, e))?;
            Ok(Fence::outcome(&row, decision))
        })?;
        self.fence.campaigned(&candidate.holder, &outcome);
        Ok(outcome)
    }

    fn resign(&self, holder: &str) -> Result<(), StoreError> {
        if let Some(term) = self.fence.last_won(holder) {
            let op = "resigning the lease";
            self.transaction(op, |ctx, tx| {
                tx.execute(
                    "UPDATE lease SET holder = '', advertise = '', expires_at_ms = 0 \
                     WHERE id = 1 AND holder = ?1 AND term = ?2",
                    (holder, term),
                )
                .map_err(|e| ctx.err(op, e))
            })?;
        }
        self.fence.resigned(holder);
        Ok(())
    }

    fn leader(&self) -> Result<Option<LeaseInfo>, StoreError> {
        self.read(|ctx, conn| Ok(row(ctx, conn)?.live()))
    }
}
