//! Nullable columns without a reason: NULL is a third state every reader
//! must handle. A reason is a comment on the column (`COMMENT ON COLUMN` in
//! PostgreSQL, `COMMENT '…'` in MySQL), which also documents it.

use crate::Class;
use crate::migrations::statement::{Action, Column, Kind};
use crate::migrations::{Context, Dialect, Hit};

fn needs_reason(ctx: &Context, table: &str, c: &Column) -> bool {
    !c.not_null
        && !c.primary_key
        && !c.generated
        && !c.commented
        && !ctx.commented.contains(&format!(
            "{}.{}",
            super::super::fold(table),
            c.name.to_lowercase()
        ))
}

pub(crate) fn check(ctx: &Context) -> Vec<Hit> {
    let how = match ctx.dialect {
        Dialect::Postgres => "COMMENT ON COLUMN",
        Dialect::Mysql => "a COMMENT '…' on the column",
    };
    let mut out = Vec::new();
    let mut push = |i: usize, table: &str, c: &Column| {
        out.push(Hit {
            stmt: i,
            at: c.at,
            class: Class::Hygiene,
            message: format!(
                "column {table}.{} may be NULL with no reason given; make it NOT NULL (with a default), or say why NULL is allowed with {how} (e.g. 'NULL until the backfill of release N+1')",
                c.name
            ),
        });
    };
    for (i, s) in ctx.stmts.iter().enumerate() {
        match &s.kind {
            Kind::CreateTable { table, columns, .. } => {
                for c in columns.iter().filter(|c| needs_reason(ctx, table, c)) {
                    push(i, table, c);
                }
            }
            Kind::AlterTable { table, actions, .. } => {
                for a in actions {
                    if let Action::AddColumn { column, .. } = a
                        && needs_reason(ctx, table, column)
                    {
                        push(i, table, column);
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
    fn nullable() {
        found(
            "nullable_column",
            Class::Hygiene,
            "ALTER TABLE orders ADD COLUMN note text;",
        );
        found_in(
            "nullable_column",
            Dialect::Mysql,
            Class::Hygiene,
            "ALTER TABLE orders ADD COLUMN note text;",
        );
        clean(
            "nullable_column",
            "ALTER TABLE orders ADD COLUMN note text; COMMENT ON COLUMN orders.note IS 'optional: customers need not leave one';",
        );
        clean(
            "nullable_column",
            "ALTER TABLE orders ADD COLUMN note text NOT NULL DEFAULT '';",
        );
        clean_in(
            "nullable_column",
            Dialect::Mysql,
            "ALTER TABLE orders ADD COLUMN note text COMMENT 'optional';",
        );
    }
}
