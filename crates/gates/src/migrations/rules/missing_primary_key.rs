//! A table without a primary key: replication, upserts and online schema
//! tools need one.

use crate::Class;
use crate::migrations::statement::Kind;
use crate::migrations::{Context, Hit};

pub(crate) fn check(ctx: &Context) -> Vec<Hit> {
    ctx.stmts
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.kind {
            Kind::CreateTable {
                table,
                primary_key: false,
                derived: false,
                ..
            } => Some(Hit {
                stmt: i,
                at: None,
                class: Class::Hygiene,
                message: format!(
                    "table {table} has no primary key; logical replication, upserts and online schema-change tools need one: add a PRIMARY KEY column (e.g. id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY)"
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
    use crate::migrations::testing::{clean, clean_in, found, found_in};

    #[test]
    fn primary_key() {
        found(
            "missing_primary_key",
            Class::Hygiene,
            "CREATE TABLE IF NOT EXISTS log (at timestamptz NOT NULL);",
        );
        found_in(
            "missing_primary_key",
            Dialect::Mysql,
            Class::Hygiene,
            "CREATE TABLE log (at datetime NOT NULL);",
        );
        clean(
            "missing_primary_key",
            "CREATE TABLE IF NOT EXISTS log (id bigint PRIMARY KEY, at timestamptz NOT NULL);",
        );
        clean(
            "missing_primary_key",
            "CREATE TABLE IF NOT EXISTS log (a int NOT NULL, b int NOT NULL, PRIMARY KEY (a, b));",
        );
        clean_in(
            "missing_primary_key",
            Dialect::Mysql,
            "CREATE TABLE log (id int AUTO_INCREMENT, PRIMARY KEY (id));",
        );
    }
}
