//! A constraint added and validated in one step: the whole table is
//! scanned (or an index built) under a lock that blocks writes.

use crate::Class;
use crate::migrations::statement::{Action, ConstraintKind};
use crate::migrations::{Context, Hit};

use super::old_table_actions;

pub(crate) fn check(ctx: &Context) -> Vec<Hit> {
    old_table_actions(ctx)
        .filter_map(|(i, table, a)| {
            let Action::AddConstraint {
                name,
                kind,
                not_valid,
                using_index,
            } = a
            else {
                return None;
            };
            let shown = name.as_deref().unwrap_or("the constraint");
            let message = match kind {
                ConstraintKind::Check | ConstraintKind::ForeignKey if !not_valid => format!(
                    "adding {} {shown} to {table} checks every existing row while holding a lock that blocks writes; add it NOT VALID, then VALIDATE CONSTRAINT {shown} in a separate step, which lets writes go on",
                    kind.noun()
                ),
                ConstraintKind::Unique | ConstraintKind::PrimaryKey if !using_index => format!(
                    "adding {} {shown} to {table} builds its index while blocking writes; build a unique index CONCURRENTLY first and add the constraint USING INDEX",
                    kind.noun()
                ),
                ConstraintKind::Exclusion => format!(
                    "adding EXCLUDE {shown} to {table} builds its index while blocking writes; add it when the table is quiet"
                ),
                _ => return None,
            };
            Some(Hit {
                stmt: i,
                at: None,
                class: Class::Risky,
                message,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::Class;
    use crate::migrations::testing::{clean, found};

    #[test]
    fn validated() {
        found(
            "validated_constraint",
            Class::Risky,
            "ALTER TABLE orders ADD CONSTRAINT pos CHECK (total >= 0);",
        );
        found(
            "validated_constraint",
            Class::Risky,
            "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id);",
        );
        found(
            "validated_constraint",
            Class::Risky,
            "ALTER TABLE orders ADD CONSTRAINT u UNIQUE (code);",
        );
        clean(
            "validated_constraint",
            "ALTER TABLE orders ADD CONSTRAINT pos CHECK (total >= 0) NOT VALID;",
        );
        clean(
            "validated_constraint",
            "ALTER TABLE orders VALIDATE CONSTRAINT pos;",
        );
        clean(
            "validated_constraint",
            "ALTER TABLE orders ADD CONSTRAINT u UNIQUE USING INDEX orders_code;",
        );
    }
}
