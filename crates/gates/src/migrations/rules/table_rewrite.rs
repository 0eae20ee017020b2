//! Changes that rewrite a whole table under an exclusive lock: a new
//! column with a volatile default or a stored expression, `SET TABLESPACE`,
//! `SET LOGGED`, ….

use crate::Class;
use crate::migrations::statement::{Action, Default};
use crate::migrations::{Context, Hit};

use super::old_table_actions;

pub(crate) fn check(ctx: &Context) -> Vec<Hit> {
    old_table_actions(ctx)
        .filter_map(|(i, table, a)| {
            let why = match a {
                Action::AddColumn { column, .. } => match &column.default {
                    Some(Default::Volatile(f)) => format!(
                        "adding {table}.{} with the volatile default {f}() computes it for every existing row",
                        column.name
                    ),
                    _ if column.stored_expression => format!(
                        "adding the stored generated column {table}.{} computes it for every existing row",
                        column.name
                    ),
                    _ => return None,
                },
                Action::Rewrite(what) => format!("{what} on {table}"),
                _ => return None,
            };
            Some(Hit {
                stmt: i,
                at: None,
                class: Class::Risky,
                message: format!(
                    "{why}: the table is rewritten under an exclusive lock, so reads and writes wait; add the column without a default (or with a constant one), set the default afterwards, and backfill in batches"
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::Class;
    use crate::migrations::testing::{clean, found};

    #[test]
    fn rewrite() {
        found(
            "table_rewrite",
            Class::Risky,
            "ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid();",
        );
        found(
            "table_rewrite",
            Class::Risky,
            "ALTER TABLE orders SET TABLESPACE fast;",
        );
        found(
            "table_rewrite",
            Class::Risky,
            "ALTER TABLE orders ADD COLUMN total2 numeric GENERATED ALWAYS AS (total * 2) STORED;",
        );
        clean(
            "table_rewrite",
            "ALTER TABLE orders ADD COLUMN token uuid; ALTER TABLE orders ALTER COLUMN token SET DEFAULT gen_random_uuid();",
        );
        clean(
            "table_rewrite",
            "ALTER TABLE orders ADD COLUMN created timestamptz DEFAULT now();",
        );
    }
}
