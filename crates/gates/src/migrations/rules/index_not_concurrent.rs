//! `CREATE INDEX` or `DROP INDEX` without `CONCURRENTLY` on a table in
//! use: writes wait for the whole build.

use crate::Class;
use crate::migrations::statement::{Kind, Object};
use crate::migrations::{Context, Hit};

pub(crate) fn check(ctx: &Context) -> Vec<Hit> {
    ctx.stmts
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.kind {
            Kind::CreateIndex {
                table,
                concurrently: false,
                ..
            } if !ctx.is_new(table, i) => Some(Hit {
                stmt: i,
                at: None,
                class: Class::Risky,
                message: format!(
                    "building an index on {table} without CONCURRENTLY blocks every write to it until the build ends; use CREATE INDEX CONCURRENTLY (outside a transaction), so neither the release nor a rollback waits on it"
                ),
            }),
            Kind::Drop {
                what: Object::Index,
                concurrently: false,
                names,
                ..
            } => Some(Hit {
                stmt: i,
                at: None,
                class: Class::Risky,
                message: format!(
                    "dropping index {} without CONCURRENTLY takes an exclusive lock on its table; use DROP INDEX CONCURRENTLY",
                    names.join(", ")
                ),
            }),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::Class;
    use crate::migrations::Dialect;
    use crate::migrations::testing::{clean, clean_in, found};

    #[test]
    fn concurrently() {
        found(
            "index_not_concurrent",
            Class::Risky,
            "CREATE INDEX orders_user ON orders (user_id);",
        );
        found(
            "index_not_concurrent",
            Class::Risky,
            "DROP INDEX orders_user;",
        );
        clean(
            "index_not_concurrent",
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_user ON orders (user_id);",
        );
        clean(
            "index_not_concurrent",
            "DROP INDEX CONCURRENTLY IF EXISTS orders_user;",
        );
        clean(
            "index_not_concurrent",
            "CREATE TABLE t (id int PRIMARY KEY, u int); CREATE INDEX t_u ON t (u);",
        );
        // InnoDB builds secondary indexes online.
        clean_in(
            "index_not_concurrent",
            Dialect::Mysql,
            "CREATE INDEX orders_user ON orders (user_id);",
        );
    }
}
