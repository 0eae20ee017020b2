//! `TRUNCATE`: the data is gone, and no rollback of the code brings it
//! back.

use crate::Class;
use crate::migrations::statement::Kind;
use crate::migrations::{Context, Hit};

pub(crate) fn check(ctx: &Context) -> Vec<Hit> {
    let mut out = Vec::new();
    for (i, s) in ctx.stmts.iter().enumerate() {
        let Kind::Truncate { tables } = &s.kind else {
            continue;
        };
        for t in tables.iter().filter(|t| !ctx.is_new(t, i)) {
            out.push(Hit {
                stmt: i,
                at: None,
                class: Class::Unsafe,
                message: format!(
                    "TRUNCATE {t} deletes every row, and rolling the code back brings none of them back; delete in batches with a WHERE that names what goes, after a backup, or move the rows to an archive table first"
                ),
            });
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
    fn truncate() {
        found("truncate", Class::Unsafe, "TRUNCATE orders;");
        found_in(
            "truncate",
            Dialect::Mysql,
            Class::Unsafe,
            "TRUNCATE TABLE orders;",
        );
        clean(
            "truncate",
            "DELETE FROM orders WHERE created < '2020-01-01';",
        );
    }
}
