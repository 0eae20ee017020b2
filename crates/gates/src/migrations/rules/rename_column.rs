//! Renaming a column: the previous release still uses the old name.

use crate::Class;
use crate::migrations::statement::{Action, Kind};
use crate::migrations::{Context, Hit};

use super::old_table_actions;

fn hit(stmt: usize, table: &str, from: &str, to: &str) -> Hit {
    Hit {
        stmt,
        at: None,
        class: Class::Unsafe,
        message: format!(
            "renaming column {table}.{from} to {to} breaks the previous release, which still uses {from}; expand and contract instead: add {to}, write both columns from the new release and backfill, move reads to {to}, and drop {from} in a later release"
        ),
    }
}

pub(crate) fn check(ctx: &Context) -> Vec<Hit> {
    let mut out: Vec<Hit> = ctx
        .stmts
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.kind {
            Kind::RenameColumn { table, from, to } if !ctx.is_new(table, i) => {
                Some(hit(i, table, from, to))
            }
            _ => None,
        })
        .collect();
    out.extend(old_table_actions(ctx).filter_map(|(i, table, a)| match a {
        Action::RenameColumn { from, to } => Some(hit(i, table, from, to)),
        _ => None,
    }));
    out
}

#[cfg(test)]
mod tests {
    use crate::Class;
    use crate::migrations::Dialect;
    use crate::migrations::testing::{clean, found, found_in};

    #[test]
    fn rename_column() {
        found(
            "rename_column",
            Class::Unsafe,
            "ALTER TABLE orders RENAME COLUMN note TO comment;",
        );
        found_in(
            "rename_column",
            Dialect::Mysql,
            Class::Unsafe,
            "ALTER TABLE orders RENAME COLUMN note TO comment;",
        );
        found_in(
            "rename_column",
            Dialect::Mysql,
            Class::Unsafe,
            "ALTER TABLE orders CHANGE note comment text;",
        );
        clean(
            "rename_column",
            "ALTER TABLE orders ADD COLUMN comment text;",
        );
    }
}
