//! The rules, one module each. A rule looks at the whole migration set
//! (some need to know what an earlier statement created) and returns its
//! hits; `check` adds file, line and column.

mod add_required_column;
mod change_column_type;
mod drop_column;
mod drop_default;
mod drop_table;
mod float_money;
mod index_not_concurrent;
mod missing_lock_timeout;
mod missing_primary_key;
mod not_idempotent;
mod not_understood;
mod nullable_column;
mod rename_column;
mod rename_table;
mod set_not_null;
mod table_rewrite;
mod transaction_around_ddl;
mod truncate;
mod unguarded_modify;
mod validated_constraint;

use super::statement::{Action, Kind};
use super::{Context, Hit};

type Rule = fn(&Context) -> Vec<Hit>;

/// Every rule, by name. The name is what a finding's `rule` says.
pub(crate) const ALL: &[(&str, Rule)] = &[
    // unsafe: the previous release breaks against the new schema.
    ("drop_table", drop_table::check),
    ("rename_table", rename_table::check),
    ("drop_column", drop_column::check),
    ("rename_column", rename_column::check),
    ("change_column_type", change_column_type::check),
    ("set_not_null", set_not_null::check),
    ("add_required_column", add_required_column::check),
    ("drop_default", drop_default::check),
    ("truncate", truncate::check),
    ("unguarded_modify", unguarded_modify::check),
    ("not_understood", not_understood::check),
    // risky: rollback stays possible, running it can hurt.
    ("index_not_concurrent", index_not_concurrent::check),
    ("table_rewrite", table_rewrite::check),
    ("validated_constraint", validated_constraint::check),
    ("missing_lock_timeout", missing_lock_timeout::check),
    ("not_idempotent", not_idempotent::check),
    ("transaction_around_ddl", transaction_around_ddl::check),
    // hygiene: the seeds' schema checks.
    ("missing_primary_key", missing_primary_key::check),
    ("nullable_column", nullable_column::check),
    ("float_money", float_money::check),
];

/// Every `ALTER TABLE` action on a table that existed before the set:
/// (statement index, table, action). Tables the set creates are new to
/// old code, so what happens to them cannot break it.
pub(crate) fn old_table_actions(ctx: &Context) -> impl Iterator<Item = (usize, &str, &Action)> {
    ctx.stmts.iter().enumerate().flat_map(move |(i, s)| {
        let (table, actions): (&str, &[Action]) = match &s.kind {
            Kind::AlterTable { table, actions, .. } if !ctx.is_new(table, i) => {
                (table.as_str(), actions.as_slice())
            }
            _ => ("", &[]),
        };
        actions.iter().map(move |a| (i, table, a))
    })
}
