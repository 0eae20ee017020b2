//! A transaction that holds DDL locks on tables in use while it does more
//! work: every lock lasts until `COMMIT`. `CREATE INDEX CONCURRENTLY`
//! cannot run inside one at all.

use crate::Class;
use crate::migrations::statement::Kind;
use crate::migrations::{Context, Hit};

fn ddl_on_old_table(ctx: &Context, i: usize, kind: &Kind) -> Option<String> {
    match kind {
        Kind::AlterTable { table, .. } if !ctx.is_new(table, i) => {
            Some(format!("ALTER TABLE {table}"))
        }
        Kind::CreateIndex {
            table,
            concurrently: false,
            ..
        } if !ctx.is_new(table, i) => Some(format!("CREATE INDEX on {table}")),
        Kind::Drop { names, .. } if names.iter().any(|n| !ctx.is_new(n, i)) => {
            Some(format!("DROP {}", names.join(", ")))
        }
        _ => None,
    }
}

pub(crate) fn check(ctx: &Context) -> Vec<Hit> {
    let mut out = Vec::new();
    let mut open: Option<usize> = None;
    let mut ddl: Option<String> = None;
    let mut reported = false;
    for (i, s) in ctx.stmts.iter().enumerate() {
        match &s.kind {
            Kind::Begin => {
                open = Some(s.file);
                ddl = None;
                reported = false;
            }
            Kind::Commit => open = None,
            kind if open == Some(s.file) => {
                if let Kind::CreateIndex {
                    concurrently: true, ..
                } = kind
                {
                    out.push(Hit {
                        stmt: i,
                        at: None,
                        class: Class::Risky,
                        message: "CREATE INDEX CONCURRENTLY cannot run inside a transaction block: this migration fails here; move it out of BEGIN … COMMIT".into(),
                    });
                    continue;
                }
                let this = ddl_on_old_table(ctx, i, kind);
                let more_work = this.is_some() || matches!(kind, Kind::Modify { .. });
                if let Some(first) = &ddl
                    && more_work
                    && !reported
                {
                    reported = true;
                    out.push(Hit {
                        stmt: i,
                        at: None,
                        class: Class::Risky,
                        message: format!(
                            "this runs in the same transaction as {first}, whose lock is held until COMMIT, so the table stays blocked while it runs; commit after each lock-taking DDL statement and do data changes in their own transactions"
                        ),
                    });
                }
                if ddl.is_none() {
                    ddl = this;
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::Class;
    use crate::migrations::testing::{clean, found};

    #[test]
    fn transactions() {
        found(
            "transaction_around_ddl",
            Class::Risky,
            "BEGIN; ALTER TABLE orders ADD COLUMN region text; UPDATE orders SET region = 'eu' WHERE region IS NULL; COMMIT;",
        );
        found(
            "transaction_around_ddl",
            Class::Risky,
            "BEGIN; CREATE INDEX CONCURRENTLY i ON orders (a); COMMIT;",
        );
        clean(
            "transaction_around_ddl",
            "BEGIN; ALTER TABLE orders ADD COLUMN region text; COMMIT; BEGIN; UPDATE orders SET region = 'eu' WHERE region IS NULL; COMMIT;",
        );
        clean(
            "transaction_around_ddl",
            "ALTER TABLE orders ADD COLUMN region text; UPDATE orders SET region = 'eu' WHERE region IS NULL;",
        );
    }
}
