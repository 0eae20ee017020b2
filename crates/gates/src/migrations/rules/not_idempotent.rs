//! Statements that fail when the migration is run again (after a partial
//! failure, or by a retrying deploy): no `IF [NOT] EXISTS`.

use crate::Class;
use crate::migrations::statement::{Action, Kind};
use crate::migrations::{Context, Dialect, Hit};

fn hit(stmt: usize, what: String, fix: &str) -> Hit {
    Hit {
        stmt,
        at: None,
        class: Class::Risky,
        message: format!(
            "{what} fails if the migration runs again after a partial failure, which leaves the schema half-way between releases; write {fix}"
        ),
    }
}

/// Whether an earlier statement of the same file drops constraint `name`
/// of `table` with `IF EXISTS`: PostgreSQL has no `ADD CONSTRAINT IF NOT
/// EXISTS`, and that is how a re-run stays possible.
fn dropped_first(ctx: &Context, i: usize, table: &str, name: &str) -> bool {
    let Some(file) = ctx.stmts.get(i).map(|s| s.file) else {
        return false;
    };
    ctx.stmts[..i]
        .iter()
        .filter(|s| s.file == file)
        .any(|s| match &s.kind {
            Kind::AlterTable {
                table: t, actions, ..
            } if t.eq_ignore_ascii_case(table) => actions.iter().any(|a| {
                matches!(a, Action::DropConstraint { name: n, if_exists: true }
                    if n.eq_ignore_ascii_case(name))
            }),
            _ => false,
        })
}

pub(crate) fn check(ctx: &Context) -> Vec<Hit> {
    let mut out = Vec::new();
    for (i, s) in ctx.stmts.iter().enumerate() {
        match &s.kind {
            Kind::CreateTable {
                table,
                if_not_exists: false,
                ..
            } => out.push(hit(
                i,
                format!("CREATE TABLE {table}"),
                "CREATE TABLE IF NOT EXISTS",
            )),
            Kind::CreateIndex {
                if_not_exists: false,
                ..
            } if ctx.dialect == Dialect::Postgres => {
                out.push(hit(i, "CREATE INDEX".into(), "CREATE INDEX IF NOT EXISTS"))
            }
            Kind::Drop {
                what,
                names,
                if_exists: false,
                ..
            } => out.push(hit(
                i,
                format!("DROP {} {}", what.noun().to_uppercase(), names.join(", ")),
                "DROP … IF EXISTS",
            )),
            // MySQL has no IF [NOT] EXISTS for columns.
            Kind::AlterTable { table, actions, .. } if ctx.dialect == Dialect::Postgres => {
                for a in actions {
                    match a {
                        Action::AddColumn {
                            column,
                            if_not_exists: false,
                        } => out.push(hit(
                            i,
                            format!("ADD COLUMN {table}.{}", column.name),
                            "ADD COLUMN IF NOT EXISTS",
                        )),
                        Action::DropColumn {
                            column,
                            if_exists: false,
                        } => out.push(hit(
                            i,
                            format!("DROP COLUMN {table}.{column}"),
                            "DROP COLUMN IF EXISTS",
                        )),
                        Action::DropConstraint {
                            name,
                            if_exists: false,
                        } => out.push(hit(
                            i,
                            format!("DROP CONSTRAINT {name}"),
                            "DROP CONSTRAINT IF EXISTS",
                        )),
                        Action::AddConstraint {
                            name: Some(name), ..
                        } if !dropped_first(ctx, i, table, name) => out.push(hit(
                            i,
                            format!("ADD CONSTRAINT {name}"),
                            &format!(
                                "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}; before it (there is no ADD CONSTRAINT IF NOT EXISTS)"
                            ),
                        )),
                        _ => {}
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
    use crate::migrations::testing::{clean, clean_in, found, found_in};

    #[test]
    fn idempotent() {
        found(
            "not_idempotent",
            Class::Risky,
            "CREATE TABLE t (id int PRIMARY KEY);",
        );
        found(
            "not_idempotent",
            Class::Risky,
            "ALTER TABLE orders ADD COLUMN note text;",
        );
        found(
            "not_idempotent",
            Class::Risky,
            "CREATE INDEX CONCURRENTLY i ON orders (a);",
        );
        found_in(
            "not_idempotent",
            Dialect::Mysql,
            Class::Risky,
            "CREATE TABLE t (id int PRIMARY KEY);",
        );
        clean(
            "not_idempotent",
            "CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY);",
        );
        clean(
            "not_idempotent",
            "ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;",
        );
        clean(
            "not_idempotent",
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON orders (a);",
        );
        found(
            "not_idempotent",
            Class::Risky,
            "ALTER TABLE orders ADD CONSTRAINT pos CHECK (n > 0) NOT VALID;",
        );
        clean(
            "not_idempotent",
            "ALTER TABLE orders DROP CONSTRAINT IF EXISTS pos;\nALTER TABLE orders ADD CONSTRAINT pos CHECK (n > 0) NOT VALID;",
        );
        clean_in(
            "not_idempotent",
            Dialect::Mysql,
            "ALTER TABLE orders ADD COLUMN note text;",
        );
    }
}
