//! Lock-taking DDL on a table in use without a lock timeout first: the
//! statement queues behind a long query, and every query queues behind
//! it, so the service stalls.

use crate::Class;
use crate::migrations::statement::{Action, Kind, Object};
use crate::migrations::{Context, Dialect, Hit};

/// Whether the statement takes a lock that blocks reads or writes of a
/// table the previous release uses.
fn locks_old_table(ctx: &Context, i: usize, kind: &Kind) -> bool {
    match kind {
        Kind::AlterTable { table, actions, .. } => {
            !ctx.is_new(table, i) && actions.iter().any(|a| *a != Action::Harmless)
        }
        Kind::CreateIndex {
            table,
            concurrently,
            ..
        } => !concurrently && !ctx.is_new(table, i),
        Kind::Drop {
            what,
            names,
            concurrently,
            ..
        } => !(*what == Object::Index && *concurrently) && names.iter().any(|n| !ctx.is_new(n, i)),
        Kind::RenameTable { from, .. } => !ctx.is_new(from, i),
        Kind::RenameColumn { table, .. } => !ctx.is_new(table, i),
        Kind::Truncate { tables } => tables.iter().any(|t| !ctx.is_new(t, i)),
        _ => false,
    }
}

pub(crate) fn check(ctx: &Context) -> Vec<Hit> {
    let mut out = Vec::new();
    let mut file = usize::MAX;
    let mut timeout_set = false;
    let mut reported = false;
    let setting = match ctx.dialect {
        Dialect::Postgres => "SET lock_timeout = '2s';",
        Dialect::Mysql => "SET SESSION lock_wait_timeout = 2;",
    };
    for (i, s) in ctx.stmts.iter().enumerate() {
        if s.file != file {
            // A setting lasts for one session, and each file may run in
            // its own.
            file = s.file;
            timeout_set = false;
            reported = false;
        }
        if s.kind == Kind::SetLockTimeout {
            timeout_set = true;
        } else if !timeout_set && !reported && locks_old_table(ctx, i, &s.kind) {
            reported = true;
            out.push(Hit {
                stmt: i,
                at: None,
                class: Class::Risky,
                message: format!(
                    "this statement waits for its lock with no time limit, and while it waits every query on the table waits behind it; start the file with `{setting}` and retry the migration when it times out"
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::Class;
    use crate::migrations::Dialect;
    use crate::migrations::testing::{clean, clean_in, found, found_in};

    #[test]
    fn lock_timeout() {
        found(
            "missing_lock_timeout",
            Class::Risky,
            "ALTER TABLE orders ADD COLUMN note text;",
        );
        found_in(
            "missing_lock_timeout",
            Dialect::Mysql,
            Class::Risky,
            "ALTER TABLE orders ADD COLUMN note text;",
        );
        clean(
            "missing_lock_timeout",
            "SET lock_timeout = '2s'; ALTER TABLE orders ADD COLUMN note text;",
        );
        clean_in(
            "missing_lock_timeout",
            Dialect::Mysql,
            "SET SESSION lock_wait_timeout = 2; ALTER TABLE orders ADD COLUMN note text;",
        );
        clean(
            "missing_lock_timeout",
            "CREATE TABLE t (id int PRIMARY KEY); ALTER TABLE t ADD COLUMN note text;",
        );
    }
}
