//! `ALTER COLUMN … TYPE` (MySQL `MODIFY`/`CHANGE`): the previous release
//! may write values the new type refuses, or read a type it does not
//! expect, and the change usually rewrites the table too.

use crate::Class;
use crate::migrations::statement::Action;
use crate::migrations::{Context, Hit};

use super::old_table_actions;

pub(crate) fn check(ctx: &Context) -> Vec<Hit> {
    old_table_actions(ctx)
        .filter_map(|(i, table, a)| match a {
            Action::AlterType { column, new_type, .. } => Some(Hit {
                stmt: i,
                at: None,
                class: Class::Unsafe,
                message: format!(
                    "changing the type of {table}.{column} to {new_type} can break the previous release (it may write values the new type refuses, or read a type it does not expect) and rewrites the table under an exclusive lock; expand and contract instead: add a new column of type {new_type}, write both from the new release and backfill, move reads, and drop {column} in a later release"
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
    fn change_type() {
        found(
            "change_column_type",
            Class::Unsafe,
            "ALTER TABLE orders ALTER COLUMN code TYPE varchar(10);",
        );
        found(
            "change_column_type",
            Class::Unsafe,
            "ALTER TABLE orders ALTER COLUMN n SET DATA TYPE bigint USING n::bigint;",
        );
        found_in(
            "change_column_type",
            Dialect::Mysql,
            Class::Unsafe,
            "ALTER TABLE orders MODIFY code varchar(10);",
        );
        clean(
            "change_column_type",
            "ALTER TABLE orders ADD COLUMN code_v2 varchar(10);",
        );
    }
}
