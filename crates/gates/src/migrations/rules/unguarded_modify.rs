//! `UPDATE` or `DELETE` without `WHERE` on an existing table: every row
//! changes, and a rollback of the code cannot undo it.

use crate::Class;
use crate::migrations::statement::Kind;
use crate::migrations::{Context, Hit};

pub(crate) fn check(ctx: &Context) -> Vec<Hit> {
    ctx.stmts
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.kind {
            Kind::Modify {
                verb,
                table,
                guarded: false,
            } if !ctx.is_new(table, i) => Some(Hit {
                stmt: i,
                at: None,
                class: Class::Unsafe,
                message: format!(
                    "{verb} without WHERE changes every row of {table}, and rolling the code back does not undo it; guard it with a WHERE that names the rows (e.g. WHERE new_col IS NULL for a backfill), and keep what the previous release reads intact"
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
    use crate::migrations::testing::{clean, clean_in, found, found_in};

    #[test]
    fn unguarded() {
        found(
            "unguarded_modify",
            Class::Unsafe,
            "UPDATE orders SET status = 'done';",
        );
        found("unguarded_modify", Class::Unsafe, "DELETE FROM orders;");
        found_in(
            "unguarded_modify",
            Dialect::Mysql,
            Class::Unsafe,
            "UPDATE orders SET status = 'done';",
        );
        clean(
            "unguarded_modify",
            "UPDATE orders SET region = 'eu' WHERE region IS NULL;",
        );
        clean_in(
            "unguarded_modify",
            Dialect::Mysql,
            "DELETE FROM orders WHERE id = 3;",
        );
    }
}
