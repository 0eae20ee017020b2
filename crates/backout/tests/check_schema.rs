//! `backout check schema` against a real PostgreSQL: release v1 (the demo
//! app, which is ready only while the column it reads exists) is started
//! through the process driver against a scratch database with the new
//! migrations applied. A migration that drops the column v1 reads fails
//! v1's readiness; its expand-only twin passes.
//!
//! The server comes from `BACKOUT_TEST_POSTGRES`
//! (`postgres://USER@127.0.0.1:PORT/postgres`, where tests may create
//! databases), which `scripts/test` starts. Without it the test is skipped
//! with a notice, or fails under `BACKOUT_TEST_STRICT=1`.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_backout");

fn server() -> Option<String> {
    match std::env::var("BACKOUT_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("BACKOUT_TEST_STRICT").is_ok_and(|v| v == "1") => {
            panic!(
                "BACKOUT_TEST_POSTGRES is not set; scripts/test starts a PostgreSQL server for this test"
            )
        }
        _ => {
            eprintln!(
                "skipped: BACKOUT_TEST_POSTGRES is not set (scripts/test starts a PostgreSQL server)"
            );
            None
        }
    }
}

/// A service whose driver runs the demo app against `{config.database_url}`,
/// reading the columns its artifact names (`orders.note` for v1), ready
/// when `/ready` says so.
fn spec(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("shop.yaml");
    let yaml = format!(
        r#"name: shop
probes:
  readiness: {{path: /ready, period: 1s, timeout: 500ms}}
driver:
  process:
    command: ["{BIN}", demo-app, --port, "{{port}}", --version, "{{version}}", --database-url, "{{config.database_url}}", --reads, "{{artifact}}"]
    stop_timeout: 5s
"#
    );
    std::fs::write(&path, yaml).expect("write spec");
    path
}

fn migrations(dir: &Path, name: &str, second: &str) -> std::path::PathBuf {
    let db = dir.join(name);
    std::fs::create_dir_all(&db).expect("mkdir");
    // What v1 was built for, then v2's migration.
    std::fs::write(
        db.join("0001_orders.sql"),
        "CREATE TABLE IF NOT EXISTS orders (id bigint PRIMARY KEY, note text);\n",
    )
    .expect("write");
    std::fs::write(db.join("0002_v2.sql"), second).expect("write");
    db
}

fn check(url: &str, spec: &Path, db: &Path) -> (i32, serde_json::Value, String) {
    let out = Command::new(BIN)
        .args(["check", "schema", "--postgres", url, "--migrations"])
        .arg(db)
        .args(["--against", "v1", "--artifact", "orders.note", "-f"])
        .arg(spec)
        .args(["--timeout", "5s", "-o", "json"])
        .output()
        .expect("run backout");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
    (out.status.code().unwrap_or(-1), v, stderr)
}

#[test]
fn the_previous_release_runs_against_the_migrated_schema() {
    let Some(url) = server() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = spec(dir.path());

    let drop = migrations(
        dir.path(),
        "contract",
        "ALTER TABLE orders DROP COLUMN note;\n",
    );
    let (code, v, stderr) = check(&url, &spec, &drop);
    assert_eq!(code, 2, "{v} {stderr}");
    assert_eq!(v["verdict"], "unsafe");
    assert_eq!(v["ready"], false);
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("did not become ready")),
        "{v}"
    );

    let expand = migrations(
        dir.path(),
        "expand",
        "ALTER TABLE orders ADD COLUMN IF NOT EXISTS region text;\n",
    );
    let (code, v, stderr) = check(&url, &spec, &expand);
    assert_eq!(code, 0, "{v} {stderr}");
    assert_eq!(v["verdict"], "safe");
    assert_eq!(v["ready"], true);

    // The scratch databases are gone again.
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'backout_check_%'",
            &[],
        )
        .expect("query")
        .get(0);
    assert_eq!(left, 0, "scratch databases left behind");
}
