//! `DROP DEFAULT`: the previous release may rely on it for the rows it
//! inserts.

use crate::Class;
use crate::migrations::statement::Action;
use crate::migrations::{Context, Hit};

use super::old_table_actions;

pub(crate) fn check(ctx: &Context) -> Vec<Hit> {
    old_table_actions(ctx)
        .filter_map(|(i, table, a)| match a {
            Action::DropDefault { column } => Some(Hit {
                stmt: i,
                at: None,
                class: Class::Unsafe,
                message: format!(
                    "dropping the default of {table}.{column} breaks the previous release if its inserts leave {column} out (they then fail, or store NULL); keep the default until no release that relies on it can come back"
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
    fn drop_default() {
        found(
            "drop_default",
            Class::Unsafe,
            "ALTER TABLE orders ALTER COLUMN status DROP DEFAULT;",
        );
        found_in(
            "drop_default",
            Dialect::Mysql,
            Class::Unsafe,
            "ALTER TABLE orders ALTER COLUMN status DROP DEFAULT;",
        );
        clean(
            "drop_default",
            "ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'new';",
        );
    }
}
