//! The MySQL front end: `sqlparser`'s MySQL dialect, its tree turned into
//! [`Kind`]s. The file is tokenized once and cut at top-level semicolons,
//! so a statement the parser refuses is reported where it starts and the
//! others are still checked.

use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, ColumnDef, ColumnOption, DataType, Expr, ObjectName,
    ObjectType, RenameTableNameKind, Set, Statement, TableConstraint,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

use super::ParseProblem;
use super::statement::{Action, Column, ConstraintKind, Default, Kind, Object, Stmt};
use crate::LineIndex;

pub(crate) fn parse(file: usize, sql: &str) -> (Vec<Stmt>, Vec<ParseProblem>) {
    let dialect = MySqlDialect {};
    let index = LineIndex::new(sql);
    let tokens = match Tokenizer::new(&dialect, sql).tokenize_with_location() {
        Ok(t) => t,
        Err(e) => {
            let offset = index.offset(e.location.line, e.location.column);
            return (
                Vec::new(),
                vec![ParseProblem {
                    file,
                    offset,
                    message: our_words(&e.message),
                    statement: String::new(),
                }],
            );
        }
    };
    let mut stmts = Vec::new();
    let mut problems = Vec::new();
    for chunk in tokens.split(|t| t.token == Token::SemiColon) {
        let Some(first) = chunk.iter().find(|t| !is_trivia(&t.token)) else {
            continue;
        };
        let start = index.offset(first.span.start.line, first.span.start.column);
        let end = chunk
            .iter()
            .rev()
            .find(|t| !is_trivia(&t.token))
            .map_or(sql.len(), |t| {
                index.offset(t.span.end.line, t.span.end.column)
            });
        let text = sql.get(start..end).unwrap_or("").trim().to_string();
        let mut own: Vec<TokenWithSpan> = chunk.to_vec();
        own.push(TokenWithSpan::wrap(Token::EOF));
        let mut parser = Parser::new(&dialect).with_tokens_with_locations(own);
        match parser.parse_statement() {
            Ok(statement) => {
                let rest = parser.peek_token();
                if rest.token != Token::EOF {
                    problems.push(ParseProblem {
                        file,
                        offset: index.offset(rest.span.start.line, rest.span.start.column),
                        message: our_words(&format!(
                            "unexpected {} after the statement",
                            rest.token
                        )),
                        statement: text,
                    });
                    continue;
                }
                stmts.push(Stmt {
                    file,
                    offset: start,
                    text,
                    kind: kind(&statement, &index),
                });
            }
            Err(e) => {
                // The token the parser stopped at; its messages end with
                // the same place as text.
                let at = parser.get_current_token().clone();
                let offset = if at.span.start.line > 0 {
                    index.offset(at.span.start.line, at.span.start.column)
                } else {
                    start
                };
                let message = e.to_string();
                let message = message
                    .split(" at Line: ")
                    .next()
                    .unwrap_or(&message)
                    .trim_start_matches("sql parser error: ")
                    .to_string();
                problems.push(ParseProblem {
                    file,
                    offset,
                    message: our_words(&message),
                    statement: text,
                });
            }
        }
    }
    (stmts, problems)
}

fn is_trivia(t: &Token) -> bool {
    matches!(
        t,
        Token::Whitespace(
            Whitespace::Space
                | Whitespace::Newline
                | Whitespace::Tab
                | Whitespace::SingleLineComment { .. }
                | Whitespace::MultiLineComment(_)
        )
    )
}

/// sqlparser is not MySQL's own parser, so a statement it refuses may be
/// valid MySQL that it does not know (`PARTITION BY` in `ALTER TABLE`):
/// the message says both.
fn our_words(parser: &str) -> String {
    format!(
        "the MySQL parser cannot read this statement ({parser}); fix it if it is wrong (or pass --dialect postgres if it is PostgreSQL); if MySQL runs it as written, the checks do not know the construct, so check by hand what it does to a rollback"
    )
}

fn name(n: &ObjectName) -> String {
    n.0.iter()
        .map(|p| p.to_string().trim_matches('`').to_string())
        .collect::<Vec<_>>()
        .join(".")
}

fn ident(i: &sqlparser::ast::Ident) -> String {
    i.value.clone()
}

/// The base type name in lower case: `double`, `decimal`, `varchar`.
fn type_name(t: &DataType) -> String {
    let shown = t.to_string().to_lowercase();
    shown
        .split(['(', ' '])
        .next()
        .unwrap_or_default()
        .to_string()
}

fn kind(s: &Statement, index: &LineIndex<'_>) -> Kind {
    match s {
        Statement::CreateTable(c) => {
            let mut columns: Vec<Column> = c.columns.iter().map(|d| column(d, index)).collect();
            let mut primary_key = columns.iter().any(|c| c.primary_key);
            for k in &c.constraints {
                if let TableConstraint::PrimaryKey(pk) = k {
                    primary_key = true;
                    let keys: Vec<String> = pk
                        .columns
                        .iter()
                        .map(|c| c.to_string().trim_matches('`').to_string())
                        .collect();
                    for col in columns.iter_mut().filter(|c| keys.contains(&c.name)) {
                        col.not_null = true;
                    }
                }
            }
            Kind::CreateTable {
                table: name(&c.name),
                if_not_exists: c.if_not_exists,
                columns,
                primary_key,
                derived: c.query.is_some() || c.like.is_some() || c.clone.is_some(),
            }
        }
        Statement::AlterTable(a) => match a.operations.as_slice() {
            // `ALTER TABLE t RENAME TO u` alone is the same rename as
            // `RENAME TABLE t TO u`.
            [AlterTableOperation::RenameTable { table_name }] => {
                let (RenameTableNameKind::To(to) | RenameTableNameKind::As(to)) = table_name;
                Kind::RenameTable {
                    from: name(&a.name),
                    to: name(to),
                }
            }
            operations => Kind::AlterTable {
                table: name(&a.name),
                if_exists: a.if_exists,
                actions: operations.iter().flat_map(|o| actions(o, index)).collect(),
            },
        },
        Statement::RenameTable(renames) => match renames.first() {
            Some(r) if renames.len() == 1 => Kind::RenameTable {
                from: name(&r.old_name),
                to: name(&r.new_name),
            },
            Some(r) => Kind::RenameTable {
                from: name(&r.old_name),
                to: format!("{} (and {} more)", name(&r.new_name), renames.len() - 1),
            },
            None => Kind::Harmless,
        },
        Statement::Drop {
            object_type,
            if_exists,
            names,
            ..
        } => {
            let what = match object_type {
                ObjectType::Table => Object::Table,
                ObjectType::View => Object::View,
                ObjectType::MaterializedView => Object::MaterializedView,
                ObjectType::Schema | ObjectType::Database => Object::Schema,
                ObjectType::Index => Object::Index,
                ObjectType::Sequence => Object::Other("sequence"),
                ObjectType::Type => Object::Other("type"),
                other => return Kind::NotUnderstood(format!("DROP {other}")),
            };
            Kind::Drop {
                what,
                names: names.iter().map(name).collect(),
                if_exists: *if_exists,
                // InnoDB drops secondary indexes online.
                concurrently: what == Object::Index,
            }
        }
        Statement::CreateIndex(i) => Kind::CreateIndex {
            table: name(&i.table_name),
            // MySQL (InnoDB) builds secondary indexes online by default.
            concurrently: true,
            if_not_exists: i.if_not_exists,
        },
        Statement::Truncate(t) => Kind::Truncate {
            tables: t.table_names.iter().map(|t| name(&t.name)).collect(),
        },
        Statement::Update(u) => Kind::Modify {
            verb: "UPDATE",
            table: u.table.relation.to_string(),
            guarded: u.selection.is_some(),
        },
        Statement::Delete(d) => Kind::Modify {
            verb: "DELETE",
            table: d.tables.first().map(name).unwrap_or_else(|| match &d.from {
                sqlparser::ast::FromTable::WithFromKeyword(t)
                | sqlparser::ast::FromTable::WithoutKeyword(t) => t
                    .first()
                    .map(|t| t.relation.to_string())
                    .unwrap_or_default(),
            }),
            guarded: d.selection.is_some(),
        },
        Statement::Set(set) => {
            let names: Vec<String> = match set {
                Set::SingleAssignment { variable, .. } => vec![name(variable)],
                Set::MultipleAssignments { assignments } => {
                    assignments.iter().map(|a| name(&a.name)).collect()
                }
                _ => Vec::new(),
            };
            if names
                .iter()
                .any(|n| n.to_lowercase().ends_with("lock_wait_timeout"))
            {
                Kind::SetLockTimeout
            } else {
                Kind::Harmless
            }
        }
        Statement::StartTransaction { .. } => Kind::Begin,
        Statement::Commit { .. } | Statement::Rollback { .. } => Kind::Commit,
        Statement::Query(_)
        | Statement::Insert(_)
        | Statement::CreateView(_)
        | Statement::CreateFunction(_)
        | Statement::CreateTrigger(_)
        | Statement::CreateSchema { .. }
        | Statement::CreateDatabase { .. }
        | Statement::Grant(_)
        | Statement::Use(_)
        | Statement::Comment { .. } => Kind::Harmless,
        other => {
            let shown = other.to_string();
            let head: Vec<&str> = shown.split_whitespace().take(2).collect();
            Kind::NotUnderstood(format!("the statement {}", head.join(" ")))
        }
    }
}

fn column(def: &ColumnDef, index: &LineIndex<'_>) -> Column {
    let start = def.name.span.start;
    let mut col = Column {
        name: ident(&def.name),
        type_name: type_name(&def.data_type),
        not_null: false,
        primary_key: false,
        default: None,
        generated: false,
        stored_expression: false,
        commented: false,
        at: (start.line > 0).then(|| index.offset(start.line, start.column)),
    };
    for opt in &def.options {
        apply_option(&mut col, &opt.option);
    }
    col
}

fn apply_option(col: &mut Column, opt: &ColumnOption) {
    match opt {
        ColumnOption::NotNull => col.not_null = true,
        ColumnOption::Null => col.not_null = false,
        ColumnOption::Default(e) => col.default = Some(default(e)),
        ColumnOption::PrimaryKey(_) => {
            col.primary_key = true;
            col.not_null = true;
        }
        ColumnOption::Generated { .. } => {
            col.generated = true;
            col.stored_expression = true;
        }
        ColumnOption::Identity(_) => col.generated = true,
        ColumnOption::Comment(_) => col.commented = true,
        ColumnOption::DialectSpecific(tokens)
            if tokens.iter().any(
                |t| matches!(t, Token::Word(w) if w.value.eq_ignore_ascii_case("AUTO_INCREMENT")),
            ) =>
        {
            col.generated = true;
        }
        _ => {}
    }
}

fn default(e: &Expr) -> Default {
    match e {
        Expr::Function(f) => {
            let fname = f.name.to_string().to_lowercase();
            if matches!(fname.as_str(), "uuid" | "rand" | "uuid_short" | "sysdate") {
                Default::Volatile(fname)
            } else {
                Default::Constant
            }
        }
        _ => Default::Constant,
    }
}

fn actions(op: &AlterTableOperation, index: &LineIndex<'_>) -> Vec<Action> {
    match op {
        AlterTableOperation::AddColumn {
            if_not_exists,
            column_def,
            ..
        } => vec![Action::AddColumn {
            column: column(column_def, index),
            if_not_exists: *if_not_exists,
        }],
        AlterTableOperation::DropColumn {
            column_names,
            if_exists,
            ..
        } => column_names
            .iter()
            .map(|c| Action::DropColumn {
                column: ident(c),
                if_exists: *if_exists,
            })
            .collect(),
        AlterTableOperation::RenameColumn {
            old_column_name,
            new_column_name,
        } => vec![Action::RenameColumn {
            from: ident(old_column_name),
            to: ident(new_column_name),
        }],
        AlterTableOperation::ChangeColumn {
            old_name,
            new_name,
            data_type,
            options,
            ..
        } => {
            let mut out = Vec::new();
            if old_name.value != new_name.value {
                out.push(Action::RenameColumn {
                    from: ident(old_name),
                    to: ident(new_name),
                });
            }
            out.extend(modify(&ident(new_name), data_type, options));
            out
        }
        AlterTableOperation::ModifyColumn {
            col_name,
            data_type,
            options,
            ..
        } => modify(&ident(col_name), data_type, options),
        AlterTableOperation::AlterColumn { column_name, op } => {
            let column = ident(column_name);
            vec![match op {
                AlterColumnOperation::SetNotNull => Action::SetNotNull { column },
                AlterColumnOperation::DropNotNull => Action::DropNotNull,
                AlterColumnOperation::SetDefault { value } => Action::SetDefault {
                    column,
                    default: default(value),
                },
                AlterColumnOperation::DropDefault => Action::DropDefault { column },
                AlterColumnOperation::SetDataType {
                    data_type, using, ..
                } => Action::AlterType {
                    column,
                    new_type: data_type.to_string().to_lowercase(),
                    using: using.is_some(),
                },
                other => Action::NotUnderstood(format!("ALTER COLUMN {other}")),
            }]
        }
        AlterTableOperation::AddConstraint {
            constraint,
            not_valid,
        } => {
            let (kind, name) = match constraint {
                TableConstraint::Unique(u) => (ConstraintKind::Unique, u.name.as_ref().map(ident)),
                TableConstraint::PrimaryKey(p) => {
                    (ConstraintKind::PrimaryKey, p.name.as_ref().map(ident))
                }
                TableConstraint::ForeignKey(f) => {
                    (ConstraintKind::ForeignKey, f.name.as_ref().map(ident))
                }
                TableConstraint::Check(c) => (ConstraintKind::Check, c.name.as_ref().map(ident)),
                TableConstraint::Index(_) | TableConstraint::FulltextOrSpatial(_) => {
                    return vec![Action::Harmless];
                }
                other => return vec![Action::NotUnderstood(format!("ADD {other}"))],
            };
            vec![Action::AddConstraint {
                name,
                kind,
                not_valid: *not_valid,
                using_index: false,
            }]
        }
        AlterTableOperation::DropConstraint {
            name, if_exists, ..
        } => vec![Action::DropConstraint {
            name: ident(name),
            if_exists: *if_exists,
        }],
        AlterTableOperation::DropForeignKey { name, .. } => vec![Action::DropConstraint {
            name: ident(name),
            if_exists: false,
        }],
        AlterTableOperation::DropIndex { .. }
        | AlterTableOperation::Algorithm { .. }
        | AlterTableOperation::Lock { .. }
        | AlterTableOperation::AutoIncrement { .. } => vec![Action::Harmless],
        // Alone it is a `RenameTable` (see `kind`); among other actions
        // the checks would lose track of which name the others use.
        AlterTableOperation::RenameTable { .. } => vec![Action::NotUnderstood(
            "ALTER TABLE … RENAME TO among other actions: old code still uses the old name; rename in a statement of its own (and see the rename_table rule)"
                .into(),
        )],
        other => vec![Action::NotUnderstood(format!("ALTER TABLE action {other}"))],
    }
}

/// `MODIFY`/`CHANGE`: the column is redefined whole, so its type, its
/// nullability and its default may all change at once. Without the old
/// definition the type change is reported, which is the conservative
/// reading; `NOT NULL` is reported as `SET NOT NULL`.
fn modify(column: &str, data_type: &DataType, options: &[ColumnOption]) -> Vec<Action> {
    let mut col = Column {
        name: column.to_string(),
        type_name: type_name(data_type),
        not_null: false,
        primary_key: false,
        default: None,
        generated: false,
        stored_expression: false,
        commented: false,
        at: None,
    };
    for o in options {
        apply_option(&mut col, o);
    }
    let mut out = vec![Action::AlterType {
        column: column.to_string(),
        new_type: data_type.to_string().to_lowercase(),
        using: false,
    }];
    if col.not_null {
        out.push(Action::SetNotNull {
            column: column.to_string(),
        });
    }
    out
}
