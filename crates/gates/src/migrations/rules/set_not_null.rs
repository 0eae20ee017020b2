//! `SET NOT NULL` on an existing column: the previous release may insert
//! rows without it.

use crate::Class;
use crate::migrations::statement::{Action, ConstraintKind};
use crate::migrations::{Context, Hit};

use super::old_table_actions;

pub(crate) fn check(ctx: &Context) -> Vec<Hit> {
    old_table_actions(ctx)
        .filter_map(|(i, table, a)| {
            let column = match a {
                Action::SetNotNull { column } => column.clone(),
                Action::AddConstraint {
                    kind: ConstraintKind::NotNull,
                    name,
                    ..
                } => name.clone().unwrap_or_else(|| "a column".into()),
                _ => return None,
            };
            Some(Hit {
                stmt: i,
                at: None,
                class: Class::Unsafe,
                message: format!(
                    "making {table}.{column} NOT NULL breaks the previous release if it inserts rows without {column}, and scans the whole table under an exclusive lock; instead give {column} a default the old code's inserts get, or add CHECK ({column} IS NOT NULL) NOT VALID and VALIDATE it, and set NOT NULL only once no release that omits {column} can come back"
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::Class;
    use crate::migrations::Dialect;
    use crate::migrations::testing::{clean, found, found_in};

    #[test]
    fn set_not_null() {
        found(
            "set_not_null",
            Class::Unsafe,
            "ALTER TABLE orders ALTER COLUMN email SET NOT NULL;",
        );
        found_in(
            "set_not_null",
            Dialect::Mysql,
            Class::Unsafe,
            "ALTER TABLE orders MODIFY email varchar(200) NOT NULL;",
        );
        clean(
            "set_not_null",
            "ALTER TABLE orders ADD CONSTRAINT email_nn CHECK (email IS NOT NULL) NOT VALID;",
        );
        clean(
            "set_not_null",
            "ALTER TABLE orders ALTER COLUMN email DROP NOT NULL;",
        );
    }
}
