//! The PostgreSQL front end: PostgreSQL's own parser (libpg_query, through
//! `pg_query`), its tree turned into [`Kind`]s.

use pg_query::NodeEnum;
use pg_query::protobuf::{
    AlterTableType, ColumnDef, ConstrType, Constraint, Node, ObjectType, RangeVar, Token,
    TransactionStmtKind, TypeName, VariableSetKind, a_const,
};

use super::ParseProblem;
use super::statement::{Action, Column, ConstraintKind, Default, Kind, Object, Stmt};

/// Parses one file. A file PostgreSQL's parser refuses is split with its
/// scanner, so the statements that do parse are still checked and the one
/// that does not is reported where it starts.
pub(crate) fn parse(file: usize, sql: &str) -> (Vec<Stmt>, Vec<ParseProblem>) {
    let tokens = pg_query::scan(sql).map(|s| s.tokens).unwrap_or_default();
    match pg_query::parse(sql, pg_query::ParserOptions::DEFAULT) {
        Ok(tree) => {
            let stmts = tree
                .protobuf
                .stmts
                .iter()
                .map(|raw| {
                    let start = usize::try_from(raw.stmt_location).unwrap_or(0);
                    let end = match usize::try_from(raw.stmt_len) {
                        Ok(0) | Err(_) => sql.len(),
                        Ok(len) => (start + len).min(sql.len()),
                    };
                    statement(file, sql, &tokens, start, end, raw.stmt.as_deref())
                })
                .collect();
            (stmts, Vec::new())
        }
        Err(whole) => {
            let pieces = match pg_query::split_with_scanner(sql) {
                Ok(pieces) => pieces,
                Err(_) => {
                    return (
                        Vec::new(),
                        vec![ParseProblem {
                            file,
                            offset: first_token(&tokens, 0, sql.len()).unwrap_or(0),
                            message: our_words(&error_text(&whole)),
                            statement: String::new(),
                        }],
                    );
                }
            };
            let mut stmts = Vec::new();
            let mut problems = Vec::new();
            for piece in pieces {
                // The pieces are slices of `sql`; their offsets follow.
                let start = (piece.as_ptr() as usize).saturating_sub(sql.as_ptr() as usize);
                let end = (start + piece.len()).min(sql.len());
                match pg_query::parse(piece, pg_query::ParserOptions::DEFAULT) {
                    Ok(tree) => {
                        let piece_tokens =
                            pg_query::scan(piece).map(|s| s.tokens).unwrap_or_default();
                        for raw in &tree.protobuf.stmts {
                            let s = usize::try_from(raw.stmt_location).unwrap_or(0);
                            let e = match usize::try_from(raw.stmt_len) {
                                Ok(0) | Err(_) => piece.len(),
                                Ok(len) => (s + len).min(piece.len()),
                            };
                            let mut st =
                                statement(file, piece, &piece_tokens, s, e, raw.stmt.as_deref());
                            st.shift(start);
                            stmts.push(st);
                        }
                    }
                    Err(e) => {
                        let text = error_text(&e);
                        let offset = near_token(sql, &tokens, start, end, &text)
                            .or_else(|| first_token(&tokens, start, end))
                            .unwrap_or(start);
                        let from = first_token(&tokens, start, end).unwrap_or(start);
                        problems.push(ParseProblem {
                            file,
                            offset,
                            message: our_words(&text),
                            statement: sql.get(from..end).unwrap_or_default().to_string(),
                        });
                    }
                }
            }
            if problems.is_empty() {
                // The whole file failed but every piece parsed: say so
                // rather than pass it.
                problems.push(ParseProblem {
                    file,
                    offset: 0,
                    message: our_words(&error_text(&whole)),
                    statement: String::new(),
                });
            }
            (stmts, problems)
        }
    }
}

fn error_text(e: &pg_query::Error) -> String {
    match e {
        pg_query::Error::Parse(m) => m.clone(),
        other => other.to_string(),
    }
}

fn our_words(parser: &str) -> String {
    format!(
        "PostgreSQL's parser cannot read this statement ({parser}); fix the statement (or pass --dialect mysql if it is MySQL) and run the check again"
    )
}

/// The offset of the first token (not a comment) in `start..end`.
fn first_token(
    tokens: &[pg_query::protobuf::ScanToken],
    start: usize,
    end: usize,
) -> Option<usize> {
    tokens
        .iter()
        .filter(|t| t.token != Token::SqlComment as i32 && t.token != Token::CComment as i32)
        .map(|t| usize::try_from(t.start).unwrap_or(0))
        .find(|s| *s >= start && *s < end)
}

/// The token a `syntax error at or near "X"` names, within `start..end`.
fn near_token(
    sql: &str,
    tokens: &[pg_query::protobuf::ScanToken],
    start: usize,
    end: usize,
    message: &str,
) -> Option<usize> {
    let near = message.split_once("at or near \"")?.1.rsplit_once('"')?.0;
    tokens
        .iter()
        .map(|t| {
            (
                usize::try_from(t.start).unwrap_or(0),
                usize::try_from(t.end).unwrap_or(0),
            )
        })
        .find(|(s, e)| *s >= start && *e <= end && sql.get(*s..*e) == Some(near))
        .map(|(s, _)| s)
}

fn statement(
    file: usize,
    sql: &str,
    tokens: &[pg_query::protobuf::ScanToken],
    start: usize,
    end: usize,
    node: Option<&Node>,
) -> Stmt {
    let offset = first_token(tokens, start, end).unwrap_or(start);
    let text = sql.get(offset..end).unwrap_or("").trim().to_string();
    let kind = match node.and_then(|n| n.node.as_ref()) {
        Some(n) => kind(n),
        None => Kind::NotUnderstood("an empty statement".into()),
    };
    Stmt {
        file,
        offset,
        text,
        kind,
    }
}

fn name(rv: Option<&RangeVar>) -> String {
    match rv {
        Some(rv) if !rv.schemaname.is_empty() => format!("{}.{}", rv.schemaname, rv.relname),
        Some(rv) => rv.relname.clone(),
        None => String::new(),
    }
}

/// The strings of a list node (`schema.table`, `table.column`).
fn strings(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .filter_map(|n| match n.node.as_ref() {
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            _ => None,
        })
        .collect()
}

fn dotted(node: &Node) -> String {
    match node.node.as_ref() {
        Some(NodeEnum::List(l)) => strings(&l.items).join("."),
        Some(NodeEnum::String(s)) => s.sval.clone(),
        Some(NodeEnum::TypeName(t)) => type_name(Some(t)),
        _ => String::new(),
    }
}

fn type_name(t: Option<&TypeName>) -> String {
    let Some(t) = t else { return String::new() };
    let names = strings(&t.names);
    // `pg_catalog.float8`: the catalog prefix says nothing.
    names
        .iter()
        .rfind(|n| n.as_str() != "pg_catalog")
        .cloned()
        .unwrap_or_default()
        .to_lowercase()
}

fn kind(n: &NodeEnum) -> Kind {
    match n {
        NodeEnum::CreateStmt(c) => create_table(c),
        NodeEnum::CreateTableAsStmt(c) => Kind::CreateTable {
            table: c
                .into
                .as_ref()
                .map(|i| name(i.rel.as_ref()))
                .unwrap_or_default(),
            if_not_exists: c.if_not_exists,
            columns: Vec::new(),
            primary_key: false,
            derived: true,
        },
        NodeEnum::AlterTableStmt(a) => alter_table(a),
        NodeEnum::RenameStmt(r) => rename(r),
        NodeEnum::DropStmt(d) => drop(d),
        NodeEnum::IndexStmt(i) => Kind::CreateIndex {
            table: name(i.relation.as_ref()),
            concurrently: i.concurrent,
            if_not_exists: i.if_not_exists,
        },
        NodeEnum::TruncateStmt(t) => Kind::Truncate {
            tables: t
                .relations
                .iter()
                .filter_map(|n| match n.node.as_ref() {
                    Some(NodeEnum::RangeVar(rv)) => Some(name(Some(rv))),
                    _ => None,
                })
                .collect(),
        },
        NodeEnum::UpdateStmt(u) => Kind::Modify {
            verb: "UPDATE",
            table: name(u.relation.as_ref()),
            guarded: u.where_clause.is_some(),
        },
        NodeEnum::DeleteStmt(d) => Kind::Modify {
            verb: "DELETE",
            table: name(d.relation.as_ref()),
            guarded: d.where_clause.is_some(),
        },
        NodeEnum::VariableSetStmt(v) => {
            let sets = v.kind == VariableSetKind::VarSetValue as i32;
            if sets && v.name.eq_ignore_ascii_case("lock_timeout") {
                Kind::SetLockTimeout
            } else {
                Kind::Harmless
            }
        }
        NodeEnum::TransactionStmt(t) => match TransactionStmtKind::try_from(t.kind) {
            Ok(TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart) => {
                Kind::Begin
            }
            Ok(TransactionStmtKind::TransStmtCommit | TransactionStmtKind::TransStmtRollback) => {
                Kind::Commit
            }
            _ => Kind::Harmless,
        },
        NodeEnum::CommentStmt(c) if c.objtype == ObjectType::ObjectColumn as i32 => {
            let parts = c.object.as_deref().map(dotted).unwrap_or_default();
            match parts.rsplit_once('.') {
                Some((table, column)) => Kind::CommentOnColumn {
                    table: table.to_string(),
                    column: column.to_string(),
                },
                None => Kind::Harmless,
            }
        }
        // Adding objects old code does not know about, reading, writing
        // rows, and permissions: nothing a rollback trips over.
        NodeEnum::SelectStmt(_)
        | NodeEnum::InsertStmt(_)
        | NodeEnum::CommentStmt(_)
        | NodeEnum::CreateFunctionStmt(_)
        | NodeEnum::CreateTrigStmt(_)
        | NodeEnum::ViewStmt(_)
        | NodeEnum::CreateSeqStmt(_)
        | NodeEnum::AlterSeqStmt(_)
        | NodeEnum::CreateSchemaStmt(_)
        | NodeEnum::CreateExtensionStmt(_)
        | NodeEnum::CreateEnumStmt(_)
        | NodeEnum::CompositeTypeStmt(_)
        | NodeEnum::CreateDomainStmt(_)
        | NodeEnum::CreatePolicyStmt(_)
        | NodeEnum::GrantStmt(_)
        | NodeEnum::GrantRoleStmt(_)
        | NodeEnum::AlterOwnerStmt(_)
        | NodeEnum::AlterDefaultPrivilegesStmt(_)
        | NodeEnum::VariableShowStmt(_)
        | NodeEnum::CreateStatsStmt(_)
        | NodeEnum::ExplainStmt(_) => Kind::Harmless,
        // Adding a value to an enum is additive; old code never writes it.
        NodeEnum::AlterEnumStmt(e) if e.new_val.is_empty() || !e.old_val.is_empty() => {
            Kind::NotUnderstood(
                "ALTER TYPE … RENAME VALUE: old code may still write the old name".into(),
            )
        }
        NodeEnum::AlterEnumStmt(_) => Kind::Harmless,
        NodeEnum::DoStmt(_) => {
            Kind::NotUnderstood("a DO block runs code the checks cannot see into".into())
        }
        other => Kind::NotUnderstood(format!("the statement {}", statement_name(other))),
    }
}

/// A readable name for a statement kind the checks do not model:
/// `ClusterStmt` becomes `CLUSTER`.
fn statement_name(n: &NodeEnum) -> String {
    let debug = format!("{n:?}");
    let head = debug.split('(').next().unwrap_or("statement");
    words(head.strip_suffix("Stmt").unwrap_or(head))
}

/// `AttachPartition` → `ATTACH PARTITION`: the parser's names for
/// constructs, in SQL's words.
fn words(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.extend(c.to_uppercase());
    }
    out
}

fn create_table(c: &pg_query::protobuf::CreateStmt) -> Kind {
    let mut columns = Vec::new();
    let mut primary_key = false;
    let mut derived =
        c.of_typename.is_some() || !c.inh_relations.is_empty() || c.partbound.is_some();
    for elt in &c.table_elts {
        match elt.node.as_ref() {
            Some(NodeEnum::ColumnDef(def)) => {
                let col = column(def);
                primary_key |= col.primary_key;
                columns.push(col);
            }
            Some(NodeEnum::Constraint(k)) if k.contype == ConstrType::ConstrPrimary as i32 => {
                primary_key = true;
                // The key's columns are NOT NULL by construction.
                let keys = strings(&k.keys);
                for col in columns.iter_mut().filter(|c| keys.contains(&c.name)) {
                    col.not_null = true;
                }
            }
            Some(NodeEnum::TableLikeClause(_)) => derived = true,
            _ => {}
        }
    }
    for k in &c.constraints {
        if let Some(NodeEnum::Constraint(k)) = k.node.as_ref()
            && k.contype == ConstrType::ConstrPrimary as i32
        {
            primary_key = true;
        }
    }
    Kind::CreateTable {
        table: name(c.relation.as_ref()),
        if_not_exists: c.if_not_exists,
        columns,
        primary_key,
        derived,
    }
}

fn column(def: &ColumnDef) -> Column {
    let type_name = type_name(def.type_name.as_ref());
    let mut col = Column {
        name: def.colname.clone(),
        generated: matches!(
            type_name.as_str(),
            "serial" | "bigserial" | "smallserial" | "serial4" | "serial8" | "serial2"
        ) || !def.identity.is_empty(),
        type_name,
        not_null: def.is_not_null,
        primary_key: false,
        default: def.raw_default.as_deref().map(default),
        stored_expression: false,
        commented: false,
        at: usize::try_from(def.location).ok(),
    };
    for k in &def.constraints {
        let Some(NodeEnum::Constraint(k)) = k.node.as_ref() else {
            continue;
        };
        match ConstrType::try_from(k.contype) {
            Ok(ConstrType::ConstrNotnull) => col.not_null = true,
            Ok(ConstrType::ConstrPrimary) => {
                col.primary_key = true;
                col.not_null = true;
            }
            Ok(ConstrType::ConstrDefault) => {
                col.default = Some(k.raw_expr.as_deref().map_or(Default::Constant, default));
            }
            Ok(ConstrType::ConstrIdentity) => col.generated = true,
            Ok(ConstrType::ConstrGenerated) => {
                col.generated = true;
                col.stored_expression = true;
            }
            _ => {}
        }
    }
    col
}

/// Functions whose value differs per row: a default calling one is
/// computed for every existing row, which rewrites the table.
const VOLATILE: &[&str] = &[
    "random",
    "gen_random_uuid",
    "uuid_generate_v4",
    "uuid_generate_v1",
    "clock_timestamp",
    "timeofday",
    "nextval",
    "txid_current",
    "setseed",
];

fn default(expr: &Node) -> Default {
    let mut volatile = None;
    walk(expr, &mut |n| {
        if let NodeEnum::FuncCall(f) = n {
            let fname = strings(&f.funcname).last().cloned().unwrap_or_default();
            if VOLATILE.contains(&fname.to_lowercase().as_str()) && volatile.is_none() {
                volatile = Some(fname);
            }
        }
    });
    volatile.map_or(Default::Constant, Default::Volatile)
}

/// Visits the expression nodes a default can hold.
fn walk(node: &Node, f: &mut impl FnMut(&NodeEnum)) {
    let Some(n) = node.node.as_ref() else { return };
    f(n);
    match n {
        NodeEnum::FuncCall(c) => c.args.iter().for_each(|a| walk(a, f)),
        NodeEnum::TypeCast(c) => {
            if let Some(a) = c.arg.as_deref() {
                walk(a, f);
            }
        }
        NodeEnum::AExpr(e) => {
            for side in [e.lexpr.as_deref(), e.rexpr.as_deref()]
                .into_iter()
                .flatten()
            {
                walk(side, f);
            }
        }
        NodeEnum::CoalesceExpr(c) => c.args.iter().for_each(|a| walk(a, f)),
        NodeEnum::List(l) => l.items.iter().for_each(|a| walk(a, f)),
        _ => {}
    }
}

fn alter_table(a: &pg_query::protobuf::AlterTableStmt) -> Kind {
    let objtype = ObjectType::try_from(a.objtype).unwrap_or(ObjectType::Undefined);
    if !matches!(objtype, ObjectType::ObjectTable | ObjectType::Undefined) {
        return match objtype {
            ObjectType::ObjectIndex | ObjectType::ObjectSequence => Kind::Harmless,
            _ => Kind::NotUnderstood(format!(
                "ALTER on a {}",
                words(
                    format!("{objtype:?}")
                        .strip_prefix("Object")
                        .unwrap_or_default()
                )
                .to_lowercase()
            )),
        };
    }
    let actions = a
        .cmds
        .iter()
        .filter_map(|c| match c.node.as_ref() {
            Some(NodeEnum::AlterTableCmd(cmd)) => Some(action(cmd)),
            _ => None,
        })
        .collect();
    Kind::AlterTable {
        table: name(a.relation.as_ref()),
        if_exists: a.missing_ok,
        actions,
    }
}

fn action(cmd: &pg_query::protobuf::AlterTableCmd) -> Action {
    use AlterTableType as T;
    let column = cmd.name.clone();
    let Ok(t) = T::try_from(cmd.subtype) else {
        return Action::NotUnderstood("an ALTER TABLE action this parser version added".into());
    };
    match t {
        T::AtAddColumn => match cmd.def.as_deref().and_then(|d| d.node.as_ref()) {
            Some(NodeEnum::ColumnDef(def)) => Action::AddColumn {
                column: column_of(def),
                if_not_exists: cmd.missing_ok,
            },
            _ => Action::NotUnderstood("ADD COLUMN without a column definition".into()),
        },
        T::AtDropColumn => Action::DropColumn {
            column,
            if_exists: cmd.missing_ok,
        },
        T::AtAlterColumnType => {
            let (new_type, using) = match cmd.def.as_deref().and_then(|d| d.node.as_ref()) {
                Some(NodeEnum::ColumnDef(def)) => {
                    (full_type(def.type_name.as_ref()), def.raw_default.is_some())
                }
                _ => (String::new(), false),
            };
            Action::AlterType {
                column,
                new_type,
                using,
            }
        }
        T::AtSetNotNull => Action::SetNotNull { column },
        T::AtDropNotNull => Action::DropNotNull,
        T::AtColumnDefault => match cmd.def.as_deref() {
            Some(expr) => Action::SetDefault {
                column,
                default: default(expr),
            },
            None => Action::DropDefault { column },
        },
        T::AtAddConstraint => match cmd.def.as_deref().and_then(|d| d.node.as_ref()) {
            Some(NodeEnum::Constraint(k)) => add_constraint(k),
            _ => Action::NotUnderstood("ADD CONSTRAINT without a constraint".into()),
        },
        T::AtValidateConstraint => Action::ValidateConstraint,
        T::AtDropConstraint => Action::DropConstraint {
            name: column,
            if_exists: cmd.missing_ok,
        },
        T::AtSetTableSpace => Action::Rewrite("SET TABLESPACE"),
        T::AtSetLogged => Action::Rewrite("SET LOGGED"),
        T::AtSetUnLogged => Action::Rewrite("SET UNLOGGED"),
        T::AtSetAccessMethod => Action::Rewrite("SET ACCESS METHOD"),
        T::AtChangeOwner
        | T::AtSetStatistics
        | T::AtSetOptions
        | T::AtResetOptions
        | T::AtSetStorage
        | T::AtSetCompression
        | T::AtSetRelOptions
        | T::AtResetRelOptions
        | T::AtReplaceRelOptions
        | T::AtEnableRowSecurity
        | T::AtDisableRowSecurity
        | T::AtForceRowSecurity
        | T::AtNoForceRowSecurity
        | T::AtClusterOn
        | T::AtDropCluster
        | T::AtReplicaIdentity
        | T::AtEnableTrig
        | T::AtEnableAlwaysTrig
        | T::AtEnableReplicaTrig
        | T::AtEnableTrigAll
        | T::AtEnableTrigUser
        | T::AtAddIdentity
        | T::AtSetIdentity => Action::Harmless,
        other => Action::NotUnderstood(format!(
            "ALTER TABLE … {}",
            words(format!("{other:?}").strip_prefix("At").unwrap_or_default())
        )),
    }
}

/// A column of `ADD COLUMN`: the same as in `CREATE TABLE`.
fn column_of(def: &ColumnDef) -> Column {
    column(def)
}

/// The type with its modifiers, for messages (`varchar(20)`).
fn full_type(t: Option<&TypeName>) -> String {
    let base = type_name(t);
    let mods: Vec<String> = t
        .map(|t| {
            t.typmods
                .iter()
                .filter_map(|m| match m.node.as_ref() {
                    Some(NodeEnum::AConst(c)) => match c.val.as_ref() {
                        Some(a_const::Val::Ival(i)) => Some(i.ival.to_string()),
                        _ => None,
                    },
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if mods.is_empty() {
        base
    } else {
        format!("{base}({})", mods.join(","))
    }
}

fn add_constraint(k: &Constraint) -> Action {
    let kind = match ConstrType::try_from(k.contype) {
        Ok(ConstrType::ConstrCheck) => ConstraintKind::Check,
        Ok(ConstrType::ConstrForeign) => ConstraintKind::ForeignKey,
        Ok(ConstrType::ConstrUnique) => ConstraintKind::Unique,
        Ok(ConstrType::ConstrPrimary) => ConstraintKind::PrimaryKey,
        Ok(ConstrType::ConstrExclusion) => ConstraintKind::Exclusion,
        Ok(ConstrType::ConstrNotnull) => ConstraintKind::NotNull,
        _ => return Action::NotUnderstood("a constraint of an unusual kind".into()),
    };
    Action::AddConstraint {
        name: (!k.conname.is_empty()).then(|| k.conname.clone()),
        kind,
        not_valid: k.skip_validation,
        using_index: !k.indexname.is_empty(),
    }
}

fn rename(r: &pg_query::protobuf::RenameStmt) -> Kind {
    match ObjectType::try_from(r.rename_type) {
        Ok(ObjectType::ObjectTable | ObjectType::ObjectView | ObjectType::ObjectMatview) => {
            Kind::RenameTable {
                from: name(r.relation.as_ref()),
                to: r.newname.clone(),
            }
        }
        Ok(ObjectType::ObjectColumn) => Kind::RenameColumn {
            table: name(r.relation.as_ref()),
            from: r.subname.clone(),
            to: r.newname.clone(),
        },
        // Renaming an index or a constraint changes nothing code reads.
        Ok(ObjectType::ObjectIndex | ObjectType::ObjectTabconstraint) => Kind::Harmless,
        Ok(other) => Kind::NotUnderstood(format!(
            "renaming a {}: old code may still use the old name",
            words(
                format!("{other:?}")
                    .strip_prefix("Object")
                    .unwrap_or_default()
            )
            .to_lowercase()
        )),
        Err(_) => Kind::NotUnderstood("a rename of an unknown object".into()),
    }
}

fn drop(d: &pg_query::protobuf::DropStmt) -> Kind {
    let what = match ObjectType::try_from(d.remove_type) {
        Ok(ObjectType::ObjectTable) => Object::Table,
        Ok(ObjectType::ObjectView) => Object::View,
        Ok(ObjectType::ObjectMatview) => Object::MaterializedView,
        Ok(ObjectType::ObjectSchema) => Object::Schema,
        Ok(ObjectType::ObjectIndex) => Object::Index,
        Ok(ObjectType::ObjectFunction | ObjectType::ObjectProcedure) => Object::Other("function"),
        Ok(ObjectType::ObjectType) => Object::Other("type"),
        Ok(ObjectType::ObjectSequence) => Object::Other("sequence"),
        Ok(ObjectType::ObjectTrigger) => Object::Other("trigger"),
        // Dropping a policy, an extension, a domain, ...: not modelled.
        Ok(other) => {
            return Kind::NotUnderstood(format!(
                "DROP of a {}",
                words(
                    format!("{other:?}")
                        .strip_prefix("Object")
                        .unwrap_or_default()
                )
                .to_lowercase()
            ));
        }
        Err(_) => return Kind::NotUnderstood("DROP of an unknown object".into()),
    };
    Kind::Drop {
        what,
        names: d.objects.iter().map(dotted).collect(),
        if_exists: d.missing_ok,
        concurrently: d.concurrent,
    }
}
