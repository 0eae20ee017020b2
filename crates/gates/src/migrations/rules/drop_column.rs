//! `DROP COLUMN`: the previous release still selects or writes it.

use crate::Class;
use crate::migrations::statement::Action;
use crate::migrations::{Context, Hit};

use super::old_table_actions;

pub(crate) fn check(ctx: &Context) -> Vec<Hit> {
    old_table_actions(ctx)
        .filter_map(|(i, table, a)| match a {
            Action::DropColumn { column, .. } => Some(Hit {
                stmt: i,
                at: None,
                class: Class::Unsafe,
                message: format!(
                    "dropping column {table}.{column} breaks the previous release, which still reads or writes it, so rolling the code back would not restore service; contract in two releases: ship code that no longer uses {column} (and make it nullable or give it a default so that code's inserts work), then drop it in a later release"
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
    fn drop_column() {
        found(
            "drop_column",
            Class::Unsafe,
            "ALTER TABLE orders DROP COLUMN note;",
        );
        found(
            "drop_column",
            Class::Unsafe,
            "ALTER TABLE orders DROP COLUMN IF EXISTS note;",
        );
        found_in(
            "drop_column",
            Dialect::Mysql,
            Class::Unsafe,
            "ALTER TABLE orders DROP COLUMN note;",
        );
        // The expand step of the same change: the column stays, it only
        // stops being required.
        clean(
            "drop_column",
            "ALTER TABLE orders ALTER COLUMN note DROP NOT NULL;",
        );
        clean_in(
            "drop_column",
            Dialect::Mysql,
            "ALTER TABLE orders MODIFY note text NULL;",
        );
        clean(
            "drop_column",
            "CREATE TABLE t (id int PRIMARY KEY, a int); ALTER TABLE t DROP COLUMN a;",
        );
    }
}
