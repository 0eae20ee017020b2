//! Schema migrations: each statement classified by what it does to a
//! rollback of the code.
//!
//! The files of a migration set are applied in the order given (the CLI
//! sorts a directory by name). Each dialect has a front end that parses with
//! a real parser and turns the tree into [`statement::Kind`]s; the rules in
//! `rules/` look only at those, one module each.

mod mysql;
mod postgres;
mod rules;
mod statement;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Class, LineIndex, Verdict};
use statement::{Kind, Stmt};

/// Which SQL the migrations are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    #[default]
    Postgres,
    Mysql,
}

impl FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            "mysql" => Ok(Dialect::Mysql),
            other => Err(format!(
                "unknown SQL dialect {other:?}: use postgres or mysql"
            )),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
        })
    }
}

/// One migration file: its name (a path, as the user gave it) and text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationFile {
    pub name: String,
    pub sql: String,
}

/// One thing found, with where it is and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub rule: String,
    pub class: Class,
    pub message: String,
    /// The statement as written (long ones shortened).
    pub statement: String,
}

/// The findings of one migration set, and the worst class among them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationReport {
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
}

/// A statement a parser refused.
#[derive(Debug, Clone)]
pub(crate) struct ParseProblem {
    pub file: usize,
    pub offset: usize,
    pub message: String,
    /// The statement that did not parse, as written.
    pub statement: String,
}

/// What the rules see: every statement of the set, in order, with what
/// earlier statements created.
pub(crate) struct Context {
    pub dialect: Dialect,
    pub stmts: Vec<Stmt>,
    /// Tables created by the migration set, with the index of the
    /// statement that created them: old code knows nothing of them, so
    /// changing them cannot break it, and no one waits on their locks.
    created: BTreeMap<String, usize>,
    /// Columns a `COMMENT ON COLUMN` explains, as `table.column`.
    pub commented: BTreeSet<String>,
}

impl Context {
    fn new(dialect: Dialect, stmts: Vec<Stmt>) -> Context {
        let mut created = BTreeMap::new();
        let mut commented = BTreeSet::new();
        for (i, s) in stmts.iter().enumerate() {
            match &s.kind {
                Kind::CreateTable { table, .. } => {
                    created.entry(fold(table)).or_insert(i);
                }
                Kind::CommentOnColumn { table, column } => {
                    commented.insert(format!("{}.{}", fold(table), fold(column)));
                }
                _ => {}
            }
        }
        Context {
            dialect,
            stmts,
            created,
            commented,
        }
    }

    /// Whether `table` was created by an earlier statement of the set.
    pub fn is_new(&self, table: &str, before: usize) -> bool {
        self.created.get(&fold(table)).is_some_and(|i| *i < before)
    }
}

/// Names compare without case or a default schema.
fn fold(name: &str) -> String {
    let lower = name.to_lowercase();
    lower
        .strip_prefix("public.")
        .map(str::to_string)
        .unwrap_or(lower)
}

/// A rule's hit: the statement and what to say.
pub(crate) struct Hit {
    pub stmt: usize,
    /// Where in the statement's file, when more precise than the
    /// statement's start (a column of a `CREATE TABLE`).
    pub at: Option<usize>,
    pub class: Class,
    pub message: String,
}

/// A migration file that is not UTF-8 text, as a finding at its first
/// invalid byte: the parsers read text, and guessing an encoding could
/// change what a statement says. Callers pass it to [`check_with`] (with
/// the file in the set, its text empty) so the other files are still
/// checked.
pub fn not_text(name: &str, bytes: &[u8]) -> Finding {
    let valid = match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) => e.valid_up_to(),
    };
    let prefix = String::from_utf8_lossy(&bytes[..valid]);
    let (line, column) = LineIndex::new(&prefix).locate(valid);
    Finding {
        file: name.to_string(),
        line,
        column,
        rule: "not_text".into(),
        class: Class::Unsafe,
        message: format!(
            "the file is not UTF-8 text (byte 0x{:02x} here, at offset {valid}, is not), so its statements cannot be checked; save it as UTF-8 and run the check again",
            bytes.get(valid).copied().unwrap_or_default()
        ),
        statement: String::new(),
    }
}

/// Checks a migration set, files in the order given.
pub fn check(files: &[MigrationFile], dialect: Dialect) -> MigrationReport {
    check_with(files, dialect, Vec::new())
}

/// [`check`], with findings the caller made about the files (such as
/// [`not_text`]) merged in file order.
pub fn check_with(
    files: &[MigrationFile],
    dialect: Dialect,
    mut findings: Vec<Finding>,
) -> MigrationReport {
    let mut stmts = Vec::new();
    let mut problems = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let (s, p) = match dialect {
            Dialect::Postgres => postgres::parse(i, &f.sql),
            Dialect::Mysql => mysql::parse(i, &f.sql),
        };
        stmts.extend(s);
        problems.extend(p);
    }
    let ctx = Context::new(dialect, stmts);
    let indexes: Vec<LineIndex<'_>> = files.iter().map(|f| LineIndex::new(&f.sql)).collect();
    for p in problems {
        let (line, column) = indexes.get(p.file).map_or((1, 1), |x| x.locate(p.offset));
        let file = files.get(p.file);
        findings.push(Finding {
            file: file.map(|f| f.name.clone()).unwrap_or_default(),
            line,
            column,
            rule: "syntax_error".into(),
            class: Class::Unsafe,
            message: p.message,
            statement: shorten(&p.statement),
        });
    }
    for (rule, run) in rules::ALL {
        for hit in run(&ctx) {
            let Some(s) = ctx.stmts.get(hit.stmt) else {
                continue;
            };
            let at = hit.at.unwrap_or(s.offset);
            let (line, column) = indexes.get(s.file).map_or((1, 1), |x| x.locate(at));
            findings.push(Finding {
                file: files
                    .get(s.file)
                    .map(|f| f.name.clone())
                    .unwrap_or_default(),
                line,
                column,
                rule: (*rule).to_string(),
                class: hit.class,
                message: hit.message,
                statement: shorten(&s.text),
            });
        }
    }
    // File order, then position, then the graver finding first.
    let order: BTreeMap<&str, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.as_str(), i))
        .collect();
    findings.sort_by(|a, b| {
        (
            order.get(a.file.as_str()),
            a.line,
            a.column,
            std::cmp::Reverse(a.class),
            &a.rule,
        )
            .cmp(&(
                order.get(b.file.as_str()),
                b.line,
                b.column,
                std::cmp::Reverse(b.class),
                &b.rule,
            ))
    });
    MigrationReport {
        verdict: Verdict::of(findings.iter().map(|f| f.class)),
        findings,
    }
}

/// One line, at most 120 characters: enough to recognise the statement.
fn shorten(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 120 {
        let cut: String = one_line.chars().take(117).collect();
        format!("{cut}...")
    } else {
        one_line
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! The table tests' helper: one SQL text, one rule, the hits' classes
    //! and messages.
    use super::*;

    pub fn hits(rule: &str, dialect: Dialect, sql: &str) -> Vec<(Class, String)> {
        let report = check(
            &[MigrationFile {
                name: "m.sql".into(),
                sql: sql.into(),
            }],
            dialect,
        );
        let syntax: Vec<&Finding> = report
            .findings
            .iter()
            .filter(|f| f.rule == "syntax_error")
            .collect();
        assert!(syntax.is_empty(), "test SQL does not parse: {syntax:?}");
        report
            .findings
            .into_iter()
            .filter(|f| f.rule == rule)
            .map(|f| (f.class, f.message))
            .collect()
    }

    /// Asserts the rule finds `sql` (with `class`) in PostgreSQL.
    pub fn found(rule: &str, class: Class, sql: &str) {
        found_in(rule, Dialect::Postgres, class, sql);
    }

    pub fn found_in(rule: &str, dialect: Dialect, class: Class, sql: &str) {
        let h = hits(rule, dialect, sql);
        assert!(
            h.iter().any(|(c, _)| *c == class),
            "{rule} should find {class} in {sql:?}, found {h:?}"
        );
    }

    /// Asserts the rule finds nothing in `sql` (PostgreSQL).
    pub fn clean(rule: &str, sql: &str) {
        clean_in(rule, Dialect::Postgres, sql);
    }

    pub fn clean_in(rule: &str, dialect: Dialect, sql: &str) {
        let h = hits(rule, dialect, sql);
        assert!(
            h.is_empty(),
            "{rule} should find nothing in {sql:?}, found {h:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, sql: &str) -> MigrationFile {
        MigrationFile {
            name: name.into(),
            sql: sql.into(),
        }
    }

    #[test]
    fn a_file_that_does_not_parse_is_reported_where_and_the_others_are_still_checked() {
        let report = check(
            &[
                file(
                    "1.sql",
                    "ALTER TABLE t ADD COLUMN a int;\nALTER TABLE t DROP COLUM b;\nALTER TABLE t DROP COLUMN c;",
                ),
                file("2.sql", "TRUNCATE t;"),
            ],
            Dialect::Postgres,
        );
        let syntax: Vec<&Finding> = report
            .findings
            .iter()
            .filter(|f| f.rule == "syntax_error")
            .collect();
        assert_eq!(syntax.len(), 1, "{report:#?}");
        assert_eq!((syntax[0].file.as_str(), syntax[0].line), ("1.sql", 2));
        assert!(
            syntax[0].message.contains("syntax error"),
            "{}",
            syntax[0].message
        );
        // The statement after the broken one, and the next file, are checked.
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.rule == "drop_column" && f.line == 3)
        );
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.rule == "truncate" && f.file == "2.sql")
        );
        assert_eq!(report.verdict, Verdict::Unsafe);
    }

    #[test]
    fn mysql_syntax_errors_have_their_line_and_column() {
        let report = check(
            &[file(
                "1.sql",
                "ALTER TABLE t ADD COLUMN a int;\n  ALTER TABLE t FROB b;\nTRUNCATE t;",
            )],
            Dialect::Mysql,
        );
        let syntax: Vec<&Finding> = report
            .findings
            .iter()
            .filter(|f| f.rule == "syntax_error")
            .collect();
        assert_eq!(syntax.len(), 1, "{report:#?}");
        assert_eq!(syntax[0].line, 2);
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.rule == "truncate" && f.line == 3)
        );
    }

    #[test]
    fn column_findings_point_at_the_column() {
        for dialect in [Dialect::Postgres, Dialect::Mysql] {
            let report = check(
                &[file(
                    "1.sql",
                    "CREATE TABLE IF NOT EXISTS t (\n  id int PRIMARY KEY,\n  total_price double precision NOT NULL,\n  note text\n);",
                )],
                dialect,
            );
            let at = |rule: &str| {
                report
                    .findings
                    .iter()
                    .find(|f| f.rule == rule)
                    .map(|f| (f.line, f.column))
            };
            assert_eq!(at("float_money"), Some((3, 3)), "{dialect}: {report:#?}");
            assert_eq!(
                at("nullable_column"),
                Some((4, 3)),
                "{dialect}: {report:#?}"
            );
        }
    }

    #[test]
    fn a_file_that_is_not_text_is_reported_and_the_others_are_still_checked() {
        let bytes = b"SELECT 1;\nSELECT '\xff';\n";
        let report = check_with(
            &[
                file("1.sql", ""),
                file("2.sql", "SET lock_timeout = '2s'; TRUNCATE t;"),
            ],
            Dialect::Postgres,
            vec![not_text("1.sql", bytes)],
        );
        let rules: Vec<(&str, &str, u32, u32)> = report
            .findings
            .iter()
            .map(|f| (f.file.as_str(), f.rule.as_str(), f.line, f.column))
            .collect();
        assert_eq!(
            rules,
            [("1.sql", "not_text", 2, 9), ("2.sql", "truncate", 1, 26)]
        );
        assert_eq!(report.verdict, Verdict::Unsafe);
    }

    #[test]
    fn an_empty_set_is_safe() {
        let report = check(&[file("1.sql", "-- nothing yet\n")], Dialect::Postgres);
        assert_eq!(report.verdict, Verdict::Safe);
        assert!(report.findings.is_empty());
    }

    #[test]
    fn locations_point_at_the_statement_not_the_comment_before_it() {
        let report = check(
            &[file(
                "1.sql",
                "SET lock_timeout = '2s';\n-- why\n  DROP TABLE IF EXISTS t;\n",
            )],
            Dialect::Postgres,
        );
        let drop = report
            .findings
            .iter()
            .find(|f| f.rule == "drop_table")
            .expect("drop_table finding");
        assert_eq!((drop.line, drop.column), (3, 3));
        assert_eq!(drop.statement, "DROP TABLE IF EXISTS t");
    }
}
