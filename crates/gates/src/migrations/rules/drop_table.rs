//! `DROP TABLE` (or view, materialized view, schema, function, type):
//! the previous release still reads it.

use crate::Class;
use crate::migrations::statement::{Kind, Object};
use crate::migrations::{Context, Hit};

pub(crate) fn check(ctx: &Context) -> Vec<Hit> {
    let mut out = Vec::new();
    for (i, s) in ctx.stmts.iter().enumerate() {
        let Kind::Drop { what, names, .. } = &s.kind else {
            continue;
        };
        if *what == Object::Index {
            continue;
        }
        for name in names.iter().filter(|n| !ctx.is_new(n, i)) {
            out.push(Hit {
                stmt: i,
                at: None,
                class: Class::Unsafe,
                message: format!(
                    "dropping {} {name} breaks the previous release, which still uses it, so rolling the code back would not restore service; contract in two releases: first ship code that no longer uses {name}, then drop it in a later release once that code is known good",
                    what.noun()
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
    fn table() {
        found("drop_table", Class::Unsafe, "DROP TABLE orders;");
        found(
            "drop_table",
            Class::Unsafe,
            "DROP VIEW IF EXISTS order_totals;",
        );
        found("drop_table", Class::Unsafe, "DROP FUNCTION total(int);");
        found_in(
            "drop_table",
            Dialect::Mysql,
            Class::Unsafe,
            "DROP TABLE orders;",
        );
        // The expand/contract twin: a table the same set created (and old
        // code never saw) may go, and so may an index.
        clean(
            "drop_table",
            "CREATE TABLE tmp (id int PRIMARY KEY); DROP TABLE tmp;",
        );
        clean(
            "drop_table",
            "DROP INDEX CONCURRENTLY IF EXISTS orders_idx;",
        );
        clean_in(
            "drop_table",
            Dialect::Mysql,
            "CREATE TABLE tmp (id int PRIMARY KEY); DROP TABLE tmp;",
        );
    }
}
