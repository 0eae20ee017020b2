//! Release gates at registration: a release's contracts checked with
//! `backout-gates` against the contracts of the release stable right now,
//! turned into the report the state machine keeps with the release.

use std::collections::BTreeMap;

use backout_gates::Class;
use backout_gates::api::{self as contract, Document};
use backout_gates::migrations::{self, Dialect, MigrationFile};
use backout_rollout::{Contracts, GateClass, GateFinding, GateReport, Release};

/// Why a release's contracts cannot be checked at all: the caller answers
/// 400 naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub field: &'static str,
    pub message: String,
}

fn class(c: Class) -> GateClass {
    match c {
        Class::Hygiene => GateClass::Hygiene,
        Class::Risky => GateClass::Risky,
        Class::Unsafe => GateClass::Unsafe,
    }
}

/// Checks `new` against `stable` (the release stable now, if any).
///
/// Migrations: the ones `stable` did not carry are new, and are checked
/// in order (with the earlier ones as context, so a table created before
/// counts as existing). A migration `stable` carried under the same name
/// with other text was changed after it ran, which no database notices.
/// API: the two documents, both directions.
pub fn check(stable: Option<&Release>, new: &Contracts) -> Result<GateReport, Unreadable> {
    let dialect: Dialect = new
        .dialect
        .as_deref()
        .unwrap_or("postgres")
        .parse()
        .map_err(|message| Unreadable {
            field: "contracts.dialect",
            message,
        })?;
    let old = stable.and_then(|r| r.contracts.as_ref());
    let mut findings = Vec::new();
    let applied: BTreeMap<&str, &str> = old
        .map(|c| {
            c.migrations
                .iter()
                .map(|m| (m.name.as_str(), m.text.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let mut fresh = Vec::new();
    for m in &new.migrations {
        match applied.get(m.name.as_str()) {
            Some(text) if *text == m.text => {}
            Some(_) => findings.push(GateFinding {
                check: "migrations".into(),
                at: m.name.clone(),
                rule: "changed_after_release".into(),
                class: GateClass::Unsafe,
                message: format!(
                    "{} differs from the migration of the same name in {}, which has already run; a database does not run a migration twice, so add a new migration instead of editing this one",
                    m.name,
                    stable.map_or("the stable release", |r| r.version.as_str())
                ),
            }),
            None => fresh.push(MigrationFile {
                name: m.name.clone(),
                sql: m.text.clone(),
            }),
        }
    }
    let report = migrations::check(&fresh, dialect);
    findings.extend(report.findings.into_iter().map(|f| GateFinding {
        check: "migrations".into(),
        at: format!("{}:{}:{}", f.file, f.line, f.column),
        rule: f.rule,
        class: class(f.class),
        message: f.message,
    }));
    if let Some(api) = &new.api {
        let new_doc = Document::parse(&api.name, &api.text).map_err(|e| Unreadable {
            field: "contracts.api",
            message: e.to_string(),
        })?;
        if let Some(old_api) = old.and_then(|c| c.api.as_ref()) {
            match Document::parse(&old_api.name, &old_api.text) {
                Ok(old_doc) => {
                    let report = contract::check(&old_doc, &new_doc);
                    findings.extend(report.changes.into_iter().map(|c| GateFinding {
                        check: "api".into(),
                        at: if c.pointer.is_empty() {
                            "/".into()
                        } else {
                            c.pointer
                        },
                        rule: c.direction.to_string(),
                        class: class(c.class),
                        message: c.message,
                    }));
                }
                Err(e) => findings.push(GateFinding {
                    check: "api".into(),
                    at: old_api.name.clone(),
                    rule: "not_understood".into(),
                    class: GateClass::Unsafe,
                    message: format!(
                        "not understood: the stable release's contract no longer parses ({e}); compare the two by hand"
                    ),
                }),
            }
        }
    }
    let worst = findings
        .iter()
        .map(|f| f.class)
        .max()
        .unwrap_or(GateClass::Safe);
    Ok(GateReport {
        against: stable.map(|r| r.version.clone()),
        verdict: worst,
        findings,
        accepted: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use backout_rollout::ContractFile;

    fn release(version: &str, contracts: Contracts) -> Release {
        Release {
            version: version.into(),
            artifact: None,
            config: Default::default(),
            registered_by: "ci".into(),
            registered_ms: 0,
            promoted_ms: None,
            known_good_ms: None,
            rolled_back_ms: None,
            outcome: None,
            contracts: Some(contracts),
            gates: None,
        }
    }

    fn sql(name: &str, text: &str) -> ContractFile {
        ContractFile {
            name: name.into(),
            text: text.into(),
        }
    }

    #[test]
    fn only_migrations_the_stable_release_did_not_carry_are_checked() {
        let v1 = release(
            "v1",
            Contracts {
                dialect: None,
                migrations: vec![sql("0001.sql", "TRUNCATE orders;")],
                api: None,
            },
        );
        let v2 = Contracts {
            dialect: None,
            migrations: vec![
                sql("0001.sql", "TRUNCATE orders;"),
                sql(
                    "0002.sql",
                    "SET lock_timeout = '1s'; ALTER TABLE orders DROP COLUMN IF EXISTS note;",
                ),
            ],
            api: None,
        };
        let report = check(Some(&v1), &v2).expect("checks");
        assert_eq!(report.against.as_deref(), Some("v1"));
        assert_eq!(report.verdict, GateClass::Unsafe);
        let rules: Vec<&str> = report.findings.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(rules, ["drop_column"], "{report:#?}");
        assert_eq!(report.findings[0].at, "0002.sql:1:26");
    }

    #[test]
    fn an_edited_migration_and_an_unreadable_contract() {
        let v1 = release(
            "v1",
            Contracts {
                dialect: None,
                migrations: vec![sql("0001.sql", "SELECT 1;")],
                api: None,
            },
        );
        let edited = Contracts {
            dialect: None,
            migrations: vec![sql("0001.sql", "SELECT 2;")],
            api: None,
        };
        let report = check(Some(&v1), &edited).expect("checks");
        assert_eq!(report.findings[0].rule, "changed_after_release");
        let broken = Contracts {
            dialect: None,
            migrations: vec![],
            api: Some(sql("openapi.json", "{\"openapi\": ")),
        };
        assert_eq!(check(None, &broken).unwrap_err().field, "contracts.api");
        let dialect = Contracts {
            dialect: Some("oracle".into()),
            ..Contracts::default()
        };
        assert_eq!(
            check(None, &dialect).unwrap_err().field,
            "contracts.dialect"
        );
    }
}
