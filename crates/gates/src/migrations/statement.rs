//! What a migration statement does, in the terms the rules need: the
//! dialect front ends (`postgres.rs`, `mysql.rs`) turn each parser's tree
//! into these values, so every rule works for both dialects.

/// A table (or other relation) name as written, schema included, folded the
/// way the database folds unquoted names.
pub(crate) type Name = String;

/// One statement of one file.
#[derive(Debug, Clone)]
pub(crate) struct Stmt {
    /// Index of the file in the migration set.
    pub file: usize,
    /// Byte offset of the statement's first token in its file.
    pub offset: usize,
    /// The statement's text, as written.
    pub text: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    CreateTable {
        table: Name,
        if_not_exists: bool,
        columns: Vec<Column>,
        /// A primary key, on a column or as a table constraint.
        primary_key: bool,
        /// `CREATE TABLE … AS` or `LIKE`: columns not spelled out here.
        derived: bool,
    },
    AlterTable {
        table: Name,
        if_exists: bool,
        actions: Vec<Action>,
    },
    RenameTable {
        from: Name,
        to: String,
    },
    RenameColumn {
        table: Name,
        from: String,
        to: String,
    },
    Drop {
        what: Object,
        names: Vec<Name>,
        if_exists: bool,
        concurrently: bool,
    },
    CreateIndex {
        table: Name,
        concurrently: bool,
        if_not_exists: bool,
    },
    Truncate {
        tables: Vec<Name>,
    },
    /// `UPDATE` or `DELETE`; `guarded` when it has a `WHERE`.
    Modify {
        verb: &'static str,
        table: Name,
        guarded: bool,
    },
    SetLockTimeout,
    Begin,
    Commit,
    /// `COMMENT ON COLUMN t.c IS '…'`: the reason a column may be NULL.
    CommentOnColumn {
        table: Name,
        column: String,
    },
    /// Understood, and nothing a rollback needs to know about (`SELECT`,
    /// `INSERT`, `CREATE FUNCTION`, `GRANT`, …).
    Harmless,
    /// A construct the checks do not model: reported, never passed.
    NotUnderstood(String),
}

/// What a `DROP` drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Object {
    Table,
    View,
    MaterializedView,
    Schema,
    Index,
    /// Functions, types, sequences, …: old code may still use them.
    Other(&'static str),
}

impl Stmt {
    /// Moves the statement (and the columns it defines) by `by` bytes: for
    /// a statement parsed out of a piece of its file.
    pub fn shift(&mut self, by: usize) {
        self.offset += by;
        let columns: Vec<&mut Column> = match &mut self.kind {
            Kind::CreateTable { columns, .. } => columns.iter_mut().collect(),
            Kind::AlterTable { actions, .. } => actions
                .iter_mut()
                .filter_map(|a| match a {
                    Action::AddColumn { column, .. } => Some(column),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        for c in columns {
            c.at = c.at.map(|a| a + by);
        }
    }
}

impl Object {
    pub fn noun(self) -> &'static str {
        match self {
            Object::Table => "table",
            Object::View => "view",
            Object::MaterializedView => "materialized view",
            Object::Schema => "schema",
            Object::Index => "index",
            Object::Other(s) => s,
        }
    }
}

/// One action of an `ALTER TABLE`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    AddColumn {
        column: Column,
        if_not_exists: bool,
    },
    DropColumn {
        column: String,
        if_exists: bool,
    },
    /// MySQL's `RENAME COLUMN` and `CHANGE old new …`.
    RenameColumn {
        from: String,
        to: String,
    },
    AlterType {
        column: String,
        new_type: String,
        /// `USING expr`: the data is rewritten.
        using: bool,
    },
    SetNotNull {
        column: String,
    },
    DropNotNull,
    SetDefault {
        column: String,
        default: Default,
    },
    DropDefault {
        column: String,
    },
    AddConstraint {
        name: Option<String>,
        kind: ConstraintKind,
        /// `NOT VALID`: existing rows are checked later, by `VALIDATE`.
        not_valid: bool,
        /// `… USING INDEX idx`: built beforehand, concurrently.
        using_index: bool,
    },
    ValidateConstraint,
    DropConstraint {
        name: String,
        if_exists: bool,
    },
    /// Rewrites the whole table under an exclusive lock (`SET TABLESPACE`,
    /// `SET LOGGED`, …).
    Rewrite(&'static str),
    /// Metadata only: owner, statistics, comments, row security, ….
    Harmless,
    NotUnderstood(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConstraintKind {
    Check,
    ForeignKey,
    Unique,
    PrimaryKey,
    Exclusion,
    NotNull,
}

impl ConstraintKind {
    pub fn noun(self) -> &'static str {
        match self {
            ConstraintKind::Check => "CHECK",
            ConstraintKind::ForeignKey => "FOREIGN KEY",
            ConstraintKind::Unique => "UNIQUE",
            ConstraintKind::PrimaryKey => "PRIMARY KEY",
            ConstraintKind::Exclusion => "EXCLUDE",
            ConstraintKind::NotNull => "NOT NULL",
        }
    }
}

/// A column definition, in `CREATE TABLE` or `ADD COLUMN`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Column {
    pub name: String,
    /// The type as the parser names it, lower case (`float8`, `numeric`,
    /// `varchar`, `double`).
    pub type_name: String,
    pub not_null: bool,
    pub primary_key: bool,
    pub default: Option<Default>,
    /// Identity, serial or auto-increment: the database fills it in.
    pub generated: bool,
    /// `GENERATED ALWAYS AS (…) STORED`: computed for every existing row.
    pub stored_expression: bool,
    /// A comment on the column itself (MySQL's `COMMENT '…'`).
    pub commented: bool,
    /// Byte offset of the column's definition in its file, when the parser
    /// says.
    pub at: Option<usize>,
}

/// A column default, as far as a rollback cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Default {
    /// A constant (or a stable function such as `now()`): since PostgreSQL
    /// 11 adding it rewrites nothing.
    Constant,
    /// A volatile function: every existing row gets its own value, which
    /// rewrites the table.
    Volatile(String),
}
