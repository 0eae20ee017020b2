//! Binary floating point for money: 0.1 + 0.2 is not 0.3, and sums drift.

use crate::Class;
use crate::migrations::statement::{Action, Column, Kind};
use crate::migrations::{Context, Hit};

/// Words in a column name that say it holds money.
const MONEY: &[&str] = &[
    "price", "amount", "cost", "total", "balance", "fee", "tax", "salary", "wage", "payment",
    "charge", "credit", "debit", "refund", "revenue", "money", "invoice", "discount", "subtotal",
];

const FLOATS: &[&str] = &[
    "float4",
    "float8",
    "real",
    "double",
    "float",
    "double precision",
];

fn is_float(type_name: &str) -> bool {
    FLOATS.contains(&type_name.trim())
}

/// Words that make a money word name a ratio instead (`tax_rate`,
/// `discount_pct`): a ratio in a float is no accounting error.
const RATIO: &[&str] = &["rate", "ratio", "pct", "percent", "percentage", "factor"];

/// The words of a column name: split at `_`, `-`, digits and camelCase
/// humps, lower case (`unitPrice2` → `unit`, `price`).
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for ch in name.chars() {
        if !ch.is_alphabetic() {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            prev_lower = false;
            continue;
        }
        if ch.is_uppercase() && prev_lower && !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        prev_lower = ch.is_lowercase();
        word.extend(ch.to_lowercase());
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// Whether a column name says money: one of its words is a money word
/// (or its plural), and none says ratio. Whole words, so `coffee_count`
/// and `feedback` are not fees.
fn money(name: &str) -> bool {
    let words = words(name);
    let is = |w: &str, list: &[&str]| {
        list.iter()
            .any(|m| w == *m || w.strip_suffix('s') == Some(m) || w.strip_suffix("es") == Some(m))
    };
    words.iter().any(|w| is(w, MONEY)) && !words.iter().any(|w| is(w, RATIO))
}

fn hit(stmt: usize, at: Option<usize>, table: &str, column: &str, type_name: &str) -> Hit {
    Hit {
        stmt,
        at,
        class: Class::Hygiene,
        message: format!(
            "{table}.{column} looks like money but is {type_name}, a binary floating-point type in which 0.1 + 0.2 is not 0.3; use numeric(precision, scale) (DECIMAL in MySQL), or an integer number of cents"
        ),
    }
}

pub(crate) fn check(ctx: &Context) -> Vec<Hit> {
    let mut out = Vec::new();
    let flagged = |c: &Column| is_float(&c.type_name) && money(&c.name);
    for (i, s) in ctx.stmts.iter().enumerate() {
        match &s.kind {
            Kind::CreateTable { table, columns, .. } => {
                for c in columns.iter().filter(|c| flagged(c)) {
                    out.push(hit(i, c.at, table, &c.name, &c.type_name));
                }
            }
            Kind::AlterTable { table, actions, .. } => {
                for a in actions {
                    match a {
                        Action::AddColumn { column, .. } if flagged(column) => {
                            out.push(hit(i, column.at, table, &column.name, &column.type_name));
                        }
                        Action::AlterType {
                            column, new_type, ..
                        } if money(column)
                            && is_float(new_type.split('(').next().unwrap_or_default()) =>
                        {
                            out.push(hit(i, None, table, column, new_type));
                        }
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
    fn money_in_floats() {
        found(
            "float_money",
            Class::Hygiene,
            "CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, unit_price double precision NOT NULL);",
        );
        found(
            "float_money",
            Class::Hygiene,
            "ALTER TABLE orders ADD COLUMN shipping_fee real NOT NULL DEFAULT 0;",
        );
        found_in(
            "float_money",
            Dialect::Mysql,
            Class::Hygiene,
            "CREATE TABLE items (id int PRIMARY KEY, total_amount DOUBLE NOT NULL);",
        );
        clean(
            "float_money",
            "CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, unit_price numeric(12,2) NOT NULL);",
        );
        clean(
            "float_money",
            "CREATE TABLE IF NOT EXISTS points (id int PRIMARY KEY, x double precision NOT NULL);",
        );
        clean_in(
            "float_money",
            Dialect::Mysql,
            "CREATE TABLE items (id int PRIMARY KEY, total_amount DECIMAL(12,2) NOT NULL);",
        );
    }

    #[test]
    fn money_is_a_whole_word_and_not_a_ratio() {
        found(
            "float_money",
            Class::Hygiene,
            "ALTER TABLE orders ADD COLUMN \"unitPrice\" real NOT NULL DEFAULT 0;",
        );
        found(
            "float_money",
            Class::Hygiene,
            "ALTER TABLE orders ADD COLUMN fees2 float8 NOT NULL DEFAULT 0;",
        );
        for name in [
            "coffee_count",
            "feedback_score",
            "tax_rate",
            "discount_pct",
            "totally",
        ] {
            clean(
                "float_money",
                &format!("ALTER TABLE orders ADD COLUMN {name} float8 NOT NULL DEFAULT 0;"),
            );
        }
    }

    #[test]
    fn words_of_a_name() {
        assert_eq!(super::words("unitPrice2_total"), ["unit", "price", "total"]);
        assert_eq!(super::words("HTTPStatus"), ["httpstatus"]);
        assert_eq!(super::words("shipping-fee"), ["shipping", "fee"]);
    }
}
