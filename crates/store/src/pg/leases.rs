//! [`Leases`] on PostgreSQL: the lease row, judged on the database
//! server's clock (`now()`), so the clocks of the machines running backout
//! never matter.

use std::time::Duration;

use postgres::Row;

use super::PgStore;
use super::pool::Db;
use crate::lease::{self, Decision, Fence, LeaseRow};
use crate::{Candidate, Leadership, LeaseInfo, Leases, StoreError};

fn decode(db: &Db<'_>, row: &Row) -> Result<LeaseRow, StoreError> {
    let what = || "the lease".to_owned();
    Ok(LeaseRow {
        holder: db.get(row, 0, what)?,
        advertise: db.get(row, 1, what)?,
        term: db.get(row, 2, what)?,
        expires_in_ms: db.get(row, 3, what)?,
    })
}

/// The lease row, locked FOR SHARE until the end of the transaction: a
/// campaign (FOR UPDATE) cannot change it before this write commits.
pub(super) fn row_for_share(db: &mut Db<'_>) -> Result<LeaseRow, StoreError> {
    let row = db.query_one(
        "checking the lease",
        "SELECT holder, advertise, term, \
                (extract(epoch FROM expires_at - now()) * 1000)::bigint \
         FROM backout.lease WHERE id = 1 FOR SHARE",
        &[],
    )?;
    decode(db, &row)
}

impl Leases for PgStore {
    fn campaign(&self, candidate: &Candidate, ttl: Duration) -> Result<Leadership, StoreError> {
        self.fence.enter(&candidate.holder);
        let ttl_ms = lease::validate(candidate, ttl)?;
        let last_won = self.fence.last_won(&candidate.holder);
        let op = "campaigning for the lease";
        let c = candidate.clone();
        let outcome = self.transaction(op, move |db| {
            // FOR UPDATE waits for the writes that hold the row FOR SHARE.
            let row = db.query_one(
                op,
                "SELECT holder, advertise, term, \
                        (extract(epoch FROM expires_at - now()) * 1000)::bigint \
                 FROM backout.lease WHERE id = 1 FOR UPDATE",
                &[],
            )?;
            let row = decode(db, &row)?;
            let decision = lease::decide(&row, &c.holder, last_won);
            let term = match decision {
                Decision::Renew => row.term,
                Decision::Take { term } => term,
                Decision::Follow => return Ok(Fence::outcome(&row, decision)),
            };
            db.execute(
                op,
                "UPDATE backout.lease SET holder = $1, advertise = $2, term = $3, \
                 expires_at = now() + $4::bigint * interval '1 millisecond' WHERE id = 1",
                &[&c.holder, &c.advertise, &term, &ttl_ms],
            )?;
            Ok(Fence::outcome(&row, decision))
        })?;
        self.fence.campaigned(&candidate.holder, &outcome);
        Ok(outcome)
    }

    fn resign(&self, holder: &str) -> Result<(), StoreError> {
        if let Some(term) = self.fence.last_won(holder) {
            let op = "resigning the lease";
            let holder = holder.to_owned();
            self.transaction(op, move |db| {
                db.execute(
                    op,
                    "UPDATE backout.lease SET holder = '', advertise = '', expires_at = 'epoch' \
                     WHERE id = 1 AND holder = $1 AND term = $2",
                    &[&holder, &term],
                )
            })?;
        }
        self.fence.resigned(holder);
        Ok(())
    }

    fn leader(&self) -> Result<Option<LeaseInfo>, StoreError> {
        let op = "reading the lease";
        self.read(op, move |db| {
            let row = db.query_one(
                op,
                "SELECT holder, advertise, term, \
                        (extract(epoch FROM expires_at - now()) * 1000)::bigint \
                 FROM backout.lease WHERE id = 1",
                &[],
            )?;
            Ok(decode(db, &row)?.live())
        })
    }
}
