//! The `gates:` section: what a release's gate findings mean for its
//! rollout.

use serde::{Deserialize, Serialize};

/// What to do with a release whose migrations or API contract are `unsafe`
/// for the release running now (rolling the code back would not restore
/// service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnsafeGate {
    /// Refuse to roll it out until an operator accepts it with a reason.
    Refuse,
    /// Roll it out, but replace automatic rollback by pause-and-page:
    /// automation must not roll back into a schema the old code cannot
    /// read, a person decides.
    #[default]
    ManualRollback,
    /// Roll it out and roll it back as usual; the findings are only shown.
    Allow,
}

impl UnsafeGate {
    pub fn as_str(self) -> &'static str {
        match self {
            UnsafeGate::Refuse => "refuse",
            UnsafeGate::ManualRollback => "manual_rollback",
            UnsafeGate::Allow => "allow",
        }
    }
}

/// The SQL a service's migrations are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqlDialect {
    #[default]
    Postgres,
    Mysql,
}

impl SqlDialect {
    pub fn as_str(self) -> &'static str {
        match self {
            SqlDialect::Postgres => "postgres",
            SqlDialect::Mysql => "mysql",
        }
    }
}

/// The `gates:` section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatesPolicy {
    #[serde(rename = "unsafe")]
    pub on_unsafe: UnsafeGate,
    /// Where a release's migrations are, relative to the service file:
    /// `backout release -f SPEC` sends them when `--migrations` is not
    /// given.
    pub migrations: Option<String>,
    /// Where its API contract is, relative to the service file.
    pub api: Option<String>,
    pub dialect: SqlDialect,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_reads_and_defaults_to_manual_rollback() {
        let g: GatesPolicy = serde_saphyr::from_str("unsafe: refuse\n").expect("parses");
        assert_eq!(g.on_unsafe, UnsafeGate::Refuse);
        let g: GatesPolicy = serde_saphyr::from_str("{}\n").expect("parses");
        assert_eq!(g.on_unsafe, UnsafeGate::ManualRollback);
        let e = serde_saphyr::from_str::<GatesPolicy>("unsafe: maybe\n").expect_err("refused");
        assert!(e.to_string().contains("refuse"), "{e}");
        let g: GatesPolicy =
            serde_saphyr::from_str("{migrations: db/, api: openapi.yaml, dialect: mysql}\n")
                .expect("parses");
        assert_eq!(g.migrations.as_deref(), Some("db/"));
        assert_eq!(g.dialect, SqlDialect::Mysql);
        let e = serde_saphyr::from_str::<GatesPolicy>("dialect: oracle\n").expect_err("refused");
        assert!(e.to_string().contains("postgres"), "{e}");
    }
}
