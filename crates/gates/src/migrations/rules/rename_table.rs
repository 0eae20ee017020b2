//! Renaming a table: the previous release still uses the old name.

use crate::Class;
use crate::migrations::statement::Kind;
use crate::migrations::{Context, Hit};

pub(crate) fn check(ctx: &Context) -> Vec<Hit> {
    ctx.stmts
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.kind {
            Kind::RenameTable { from, to } if !ctx.is_new(from, i) => Some(Hit {
                stmt: i,
                at: None,
                class: Class::Unsafe,
                message: format!(
                    "renaming {from} to {to} breaks the previous release, which still uses {from}; expand and contract instead: create {to} (or a view named {to} over {from}), write both from the new release, move reads, and drop {from} in a later release"
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
    use crate::migrations::testing::{clean, found, found_in};

    #[test]
    fn rename() {
        found(
            "rename_table",
            Class::Unsafe,
            "ALTER TABLE orders RENAME TO purchases;",
        );
        found_in(
            "rename_table",
            Dialect::Mysql,
            Class::Unsafe,
            "RENAME TABLE orders TO purchases;",
        );
        found_in(
            "rename_table",
            Dialect::Mysql,
            Class::Unsafe,
            "ALTER TABLE orders RENAME TO purchases;",
        );
        clean(
            "rename_table",
            "CREATE VIEW purchases AS SELECT * FROM orders;",
        );
        clean(
            "rename_table",
            "ALTER INDEX orders_idx RENAME TO purchases_idx;",
        );
    }
}
