//! Constructs the checks do not model. What cannot be shown harmless to a
//! rollback is reported as unsafe, so the default gate pauses and pages
//! rather than rolling back into it automatically: check it by hand and
//! accept the release with a reason.

use crate::Class;
use crate::migrations::statement::{Action, Kind};
use crate::migrations::{Context, Hit};

fn hit(stmt: usize, what: &str) -> Hit {
    Hit {
        stmt,
        at: None,
        class: Class::Unsafe,
        message: format!(
            "not understood: {what}; the checks cannot tell what it does to a rollback, so check by hand that the previous release still works against the result"
        ),
    }
}

pub(crate) fn check(ctx: &Context) -> Vec<Hit> {
    let mut out = Vec::new();
    for (i, s) in ctx.stmts.iter().enumerate() {
        match &s.kind {
            Kind::NotUnderstood(what) => out.push(hit(i, what)),
            Kind::AlterTable { actions, .. } => {
                for a in actions {
                    if let Action::NotUnderstood(what) = a {
                        out.push(hit(i, what));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::Class;
    use crate::migrations::Dialect;
    use crate::migrations::testing::{clean, found, found_in};

    #[test]
    fn unknown_constructs_are_findings() {
        found(
            "not_understood",
            Class::Unsafe,
            "DO $$ BEGIN EXECUTE 'DROP TABLE orders'; END $$;",
        );
        found(
            "not_understood",
            Class::Unsafe,
            "ALTER TABLE orders ATTACH PARTITION orders_2024 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');",
        );
        found(
            "not_understood",
            Class::Unsafe,
            "CLUSTER orders USING orders_pkey;",
        );
        found_in(
            "not_understood",
            Dialect::Mysql,
            Class::Unsafe,
            "LOCK TABLES orders WRITE;",
        );
        clean(
            "not_understood",
            "CREATE FUNCTION one() RETURNS int LANGUAGE sql AS 'SELECT 1';",
        );
        clean("not_understood", "INSERT INTO orders (id) VALUES (1);");
        clean("not_understood", "ALTER TYPE mood ADD VALUE 'meh';");
    }
}
