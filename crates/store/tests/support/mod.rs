//! Fresh stores of each backend for the tests: a SQLite file in a temporary
//! directory, and a PostgreSQL schema of its own on the server that
//! `BACKOUT_TEST_POSTGRES` names (scripts/test starts one).
//!
//! Every PostgreSQL store of the tests lives in the database
//! `backout_store_tests` (created when missing) under a schema of its own,
//! dropped when the test's store is. A schema is as isolated as a database
//! for the store, and costs milliseconds where creating and dropping a
//! database costs a second (a checkpoint).
//!
//! Without `BACKOUT_TEST_POSTGRES` the PostgreSQL cases are skipped with a
//! notice, unless `BACKOUT_TEST_STRICT=1` (set by scripts/test), where that
//! is a failure.
#![allow(dead_code, clippy::unwrap_used)]

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};

use backout_store::{PgOptions, PgStore, SqliteStore, Store};
use tempfile::TempDir;

/// The database every test store lives in (one schema each).
pub const TEST_DATABASE: &str = "backout_store_tests";

/// Which backend a test store is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// The URL of the test server's admin database, or `None` (with a notice)
/// when the PostgreSQL cases are to be skipped.
pub fn postgres_admin_url() -> Option<String> {
    static NOTICE: Once = Once::new();
    match std::env::var("BACKOUT_TEST_POSTGRES") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("BACKOUT_TEST_STRICT").as_deref() != Ok("1"),
                "BACKOUT_TEST_POSTGRES is not set, and BACKOUT_TEST_STRICT=1 forbids skipping \
                 the PostgreSQL cases: run scripts/test, which starts a server"
            );
            NOTICE.call_once(|| {
                eprintln!(
                    "note: BACKOUT_TEST_POSTGRES is not set: the PostgreSQL cases are skipped \
                     (scripts/test starts a server and sets it)"
                );
            });
            None
        }
    }
}

/// `url` with its database replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    format!("{}/{database}{query}", &base[..host_end])
}

/// The URL of the tests' database, created on first use.
pub fn postgres_test_url() -> Option<String> {
    static CREATED: Once = Once::new();
    let admin = postgres_admin_url()?;
    CREATED.call_once(|| {
        let mut client = postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to BACKOUT_TEST_POSTGRES={admin}: {e}"));
        let exists = client
            .query_opt(
                "SELECT 1 FROM pg_database WHERE datname = $1",
                &[&TEST_DATABASE],
            )
            .unwrap()
            .is_some();
        if !exists {
            // Test processes race to create it: losing is fine.
            if let Err(e) = client.batch_execute(&format!("CREATE DATABASE {TEST_DATABASE}")) {
                let code = e.code().map(|c| c.code().to_owned()).unwrap_or_default();
                assert!(
                    code == "42P04" || code == "23505",
                    "cannot create the test database: {e}"
                );
            }
        }
    });
    Some(with_database(&admin, TEST_DATABASE))
}

/// A schema name no other test store has.
pub fn fresh_schema() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "t_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    )
}

pub fn pg_options(schema: &str) -> PgOptions {
    PgOptions {
        schema: schema.to_owned(),
        connections: 2,
        ..PgOptions::default()
    }
}

/// Where a test store keeps its data.
pub enum Place {
    Sqlite { _dir: TempDir, path: PathBuf },
    Postgres { url: String, schema: String },
}

/// A fresh place for a store of one backend, not opened yet (so that a
/// child process may be the first to open it); its data is removed when
/// dropped.
pub struct Fresh {
    pub kind: Kind,
    pub place: Place,
}

impl Fresh {
    pub fn sqlite() -> Fresh {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/backout.db");
        Fresh {
            kind: Kind::Sqlite,
            place: Place::Sqlite { _dir: dir, path },
        }
    }

    /// A schema of its own on the test server, or `None` when skipped.
    pub fn postgres() -> Option<Fresh> {
        let url = postgres_test_url()?;
        Some(Fresh {
            kind: Kind::Postgres,
            place: Place::Postgres {
                url,
                schema: fresh_schema(),
            },
        })
    }

    /// A fresh place of each backend (PostgreSQL only when configured).
    pub fn each() -> Vec<Fresh> {
        let mut all = vec![Fresh::sqlite()];
        all.extend(Fresh::postgres());
        all
    }

    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Sqlite => "sqlite",
            Kind::Postgres => "postgres",
        }
    }

    /// A store object on this place, as a process would open it.
    pub fn open(&self) -> Arc<dyn Store> {
        match &self.place {
            Place::Sqlite { path, .. } => Arc::new(SqliteStore::open(path).unwrap()),
            Place::Postgres { url, schema } => {
                Arc::new(PgStore::open_with(url, &pg_options(schema)).unwrap())
            }
        }
    }

    /// The location and (for PostgreSQL) the schema, for a child process.
    pub fn location(&self) -> (String, String) {
        match &self.place {
            Place::Sqlite { path, .. } => (path.display().to_string(), String::new()),
            Place::Postgres { url, schema } => (url.clone(), schema.clone()),
        }
    }

    /// Runs raw SQL on the store's tables (unqualified names), as another
    /// program could.
    pub fn raw_execute(&self, sql: &str) -> Result<u64, String> {
        match &self.place {
            Place::Sqlite { path, .. } => rusqlite::Connection::open(path)
                .and_then(|c| c.execute_batch(sql).map(|()| 0))
                .map_err(|e| e.to_string()),
            Place::Postgres { url, schema } => {
                let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
                client
                    .batch_execute(&format!("SET search_path TO {schema}"))
                    .unwrap();
                client.execute(sql, &[]).map_err(|e| {
                    e.as_db_error()
                        .map_or(e.to_string(), |d| d.message().to_owned())
                })
            }
        }
    }

    /// One integer from raw SQL.
    pub fn raw_i64(&self, sql: &str) -> i64 {
        match &self.place {
            Place::Sqlite { path, .. } => rusqlite::Connection::open(path)
                .unwrap()
                .query_row(sql, [], |r| r.get(0))
                .unwrap(),
            Place::Postgres { url, schema } => {
                let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
                client
                    .batch_execute(&format!("SET search_path TO {schema}"))
                    .unwrap();
                client.query_one(sql, &[]).unwrap().get(0)
            }
        }
    }
}

impl Drop for Fresh {
    fn drop(&mut self) {
        if let Place::Postgres { url, schema } = &self.place {
            // Best effort: a leftover schema only costs disk on a throwaway
            // server.
            if let Ok(mut client) = postgres::Client::connect(url, postgres::NoTls) {
                let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
            }
        }
    }
}

/// A fresh, opened store. Derefs to the store, and to its [`Fresh`] place
/// through `place`.
pub struct TestStore {
    pub kind: Kind,
    pub store: Arc<dyn Store>,
    // Dropped after the store, so that its schema goes last.
    pub place: Fresh,
}

impl Deref for TestStore {
    type Target = dyn Store;
    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

impl TestStore {
    fn opened(place: Fresh) -> TestStore {
        TestStore {
            kind: place.kind,
            store: place.open(),
            place,
        }
    }

    pub fn sqlite() -> TestStore {
        Self::opened(Fresh::sqlite())
    }

    /// A PostgreSQL store in a schema of its own, or `None` when skipped.
    pub fn postgres() -> Option<TestStore> {
        Fresh::postgres().map(Self::opened)
    }

    pub fn name(&self) -> &'static str {
        self.place.name()
    }

    /// Another store object on the same data, as another process would
    /// open it.
    pub fn reopen(&self) -> Arc<dyn Store> {
        self.place.open()
    }

    pub fn location(&self) -> (String, String) {
        self.place.location()
    }

    pub fn raw_execute(&self, sql: &str) -> Result<u64, String> {
        self.place.raw_execute(sql)
    }

    pub fn raw_i64(&self, sql: &str) -> i64 {
        self.place.raw_i64(sql)
    }
}

/// A fresh store of each backend (PostgreSQL only when configured).
pub fn backends() -> Vec<TestStore> {
    Fresh::each().into_iter().map(TestStore::opened).collect()
}

/// A PostgreSQL server of the test's own, which the test may stop and
/// start (the shared one must keep running for the other tests). Made with
/// the binaries of `BACKOUT_TEST_PG_BIN` (or Debian's directory), as
/// `BACKOUT_TEST_PG_USER` when running as root (initdb refuses root).
pub struct PrivateServer {
    pub url: String,
    pub port: u16,
    dir: TempDir,
    bin: PathBuf,
    user: Option<String>,
}

fn pg_bin() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("BACKOUT_TEST_PG_BIN")
        && !dir.is_empty()
    {
        return Some(PathBuf::from(dir));
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("initdb").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

impl PrivateServer {
    /// Starts one, or returns `None` when the PostgreSQL cases are skipped.
    pub fn start(extra: &[&str]) -> Option<PrivateServer> {
        postgres_admin_url()?;
        let bin = pg_bin().expect("PostgreSQL's binaries not found: set BACKOUT_TEST_PG_BIN");
        let user = is_root().then(|| {
            std::env::var("BACKOUT_TEST_PG_USER")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "backout-test".to_owned())
        });
        let dir = tempfile::tempdir().unwrap();
        if let Some(u) = &user {
            let status = std::process::Command::new("chown")
                .arg(u)
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(
                status.success(),
                "cannot give {} to {u}",
                dir.path().display()
            );
        }
        let name = user.clone().unwrap_or_else(|| {
            String::from_utf8(
                std::process::Command::new("id")
                    .arg("-un")
                    .output()
                    .unwrap()
                    .stdout,
            )
            .unwrap()
            .trim()
            .to_owned()
        });
        let mut server = PrivateServer {
            url: String::new(),
            port: 0,
            dir,
            bin,
            user,
        };
        let data = server.dir.path().join("data");
        let out = server
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                &name,
                "--auth=trust",
                "--no-sync",
                "--no-locale",
                "-E",
                "UTF8",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            server.port = port;
            if server.pg_ctl_start(extra) {
                server.url = format!("postgres://{name}@127.0.0.1:{port}/postgres");
                return Some(server);
            }
        }
        panic!(
            "the private PostgreSQL server did not start: {}",
            server.log()
        );
    }

    fn command(&self, tool: &str) -> std::process::Command {
        let path = self.bin.join(tool);
        match &self.user {
            Some(u) => {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", u, "--"]).arg(path);
                c
            }
            None => std::process::Command::new(path),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn pg_ctl_start(&self, extra: &[&str]) -> bool {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir.path().display()
        );
        for e in extra {
            options.push(' ');
            options.push_str(e);
        }
        self.command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .output()
            .unwrap()
            .status
            .success()
    }

    /// Stops the server (fast shutdown: sessions are ended at once).
    pub fn stop(&self) {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts it again on the same port, with `extra` server options.
    pub fn start_again(&self, extra: &[&str]) {
        assert!(self.pg_ctl_start(extra), "restart failed: {}", self.log());
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
