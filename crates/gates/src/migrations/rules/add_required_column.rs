//! A new `NOT NULL` column without a default: the previous release's
//! inserts do not name it and fail.

use crate::Class;
use crate::migrations::statement::Action;
use crate::migrations::{Context, Hit};

use super::old_table_actions;

pub(crate) fn check(ctx: &Context) -> Vec<Hit> {
    old_table_actions(ctx)
        .filter_map(|(i, table, a)| match a {
            Action::AddColumn { column, .. }
                if column.not_null && column.default.is_none() && !column.generated =>
            {
                Some(Hit {
                    stmt: i,
                    at: column.at,
                    class: Class::Unsafe,
                    message: format!(
                        "the new column {table}.{} is NOT NULL without a default, so the previous release's inserts, which do not name it, fail; add it with a DEFAULT (or nullable), backfill, and require it only once no release that omits it can come back",
                        column.name
                    ),
                })
            }
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
    fn required_column() {
        found(
            "add_required_column",
            Class::Unsafe,
            "ALTER TABLE orders ADD COLUMN region text NOT NULL;",
        );
        found_in(
            "add_required_column",
            Dialect::Mysql,
            Class::Unsafe,
            "ALTER TABLE orders ADD COLUMN region varchar(20) NOT NULL;",
        );
        clean(
            "add_required_column",
            "ALTER TABLE orders ADD COLUMN region text NOT NULL DEFAULT 'eu';",
        );
        clean(
            "add_required_column",
            "ALTER TABLE orders ADD COLUMN id2 bigint GENERATED ALWAYS AS IDENTITY;",
        );
        clean_in(
            "add_required_column",
            Dialect::Mysql,
            "ALTER TABLE orders ADD COLUMN region varchar(20) NOT NULL DEFAULT 'eu';",
        );
    }
}
