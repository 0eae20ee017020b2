//! `backout check schema`: the previous release (N-1) run for real against
//! a scratch PostgreSQL database with the new migrations applied, started
//! through the spec's driver, with its readiness probe and smoke requests.
//! This is "CI runs the N-1 code against the post-migration schema".
//!
//! The scratch database is created and dropped by this command; its name
//! is generated here, never taken from input. The migrations run as they
//! would in production: they are the user's SQL, executed as written.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use backout_driver::{self as driver, DeployRequest, DriverContext};
use backout_spec::{ServiceSpec, Source};
use clap::Args as ClapArgs;
use serde::Serialize;

use super::{Output, read_migrations};

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// A PostgreSQL server where the scratch database may be created:
    /// `postgres://USER@HOST:PORT/DB` (the database is only used to create
    /// and drop the scratch one).
    #[arg(long, value_name = "URL")]
    postgres: String,
    /// The new release's migrations: a directory of `.sql` files (name
    /// order) or files.
    #[arg(long, value_name = "PATH", required = true)]
    migrations: Vec<PathBuf>,
    /// The release to run against the migrated schema: the one a rollback
    /// would go back to.
    #[arg(long, value_name = "VERSION")]
    against: String,
    /// VERSION's artifact, as it was registered (`backout release
    /// --artifact`): `{artifact}` in the driver's command.
    #[arg(long)]
    artifact: Option<String>,
    /// The service file whose driver starts the release and whose
    /// readiness probe decides.
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    file: PathBuf,
    /// Release settings, as `backout release --set`. The scratch database's
    /// URL is `{config.database_url}` in the driver's command.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// A path to GET once ready; it must answer 2xx. Repeatable.
    #[arg(long, value_name = "PATH")]
    smoke: Vec<String>,
    /// How long the release has to become ready, e.g. `30s`.
    #[arg(long, default_value = "30s")]
    timeout: String,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, Serialize)]
struct Smoke {
    path: String,
    status: Option<u16>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Outcome {
    verdict: &'static str,
    version: String,
    ready: bool,
    smoke: Vec<Smoke>,
    message: String,
}

pub fn run(a: Args) -> miette::Result<ExitCode> {
    match check(&a) {
        Ok(outcome) => {
            match a.output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&outcome).unwrap_or_default()
                ),
                Output::Text => {
                    for s in &outcome.smoke {
                        match (s.status, &s.error) {
                            (Some(code), _) => println!("smoke GET {} → {code}", s.path),
                            (None, Some(e)) => println!("smoke GET {} → {e}", s.path),
                            (None, None) => {}
                        }
                    }
                    println!("{}: {}", outcome.verdict, outcome.message);
                }
            }
            Ok(ExitCode::from(if outcome.verdict == "safe" {
                0
            } else {
                2
            }))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(3))
        }
    }
}

/// A random suffix without reading the clock: the standard library seeds
/// each `RandomState` from the operating system.
fn random_suffix() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

fn check(a: &Args) -> Result<Outcome, String> {
    let timeout = backout_spec::Duration::parse(&a.timeout)
        .map_err(|e| format!("--timeout: {e}"))?
        .get();
    let mut config = BTreeMap::new();
    for kv in &a.set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--set {kv:?}: write KEY=VALUE"))?;
        config.insert(k.to_string(), v.to_string());
    }
    let text = std::fs::read_to_string(&a.file)
        .map_err(|e| format!("{}: cannot read the service file: {e}", a.file.display()))?;
    let spec = ServiceSpec::parse(&Source::new(a.file.display().to_string(), text))
        .map_err(|e| format!("{:?}", miette::Report::new(e)))?;
    let Some(driver_spec) = spec.driver.clone() else {
        return Err(format!(
            "{}: the service has no driver: section, so the release cannot be started",
            a.file.display()
        ));
    };
    if spec.pool_defaults.probes.readiness.is_none() && a.smoke.is_empty() {
        return Err(format!(
            "{}: the service has no readiness probe and no --smoke path was given, so nothing would tell a working {} from a broken one; add probes.readiness or --smoke",
            a.file.display(),
            a.against
        ));
    }
    let files = read_migrations(&a.migrations)?;
    let mut base = reqwest::Url::parse(&a.postgres).map_err(|e| {
        format!(
            "--postgres {:?}: not a URL ({e}); write postgres://USER@HOST:PORT/DB",
            a.postgres
        )
    })?;
    if !matches!(base.scheme(), "postgres" | "postgresql") {
        return Err("--postgres: the URL must start with postgres://".into());
    }
    let scratch = format!("backout_check_{}", random_suffix());
    base.set_path(&format!("/{scratch}"));
    let scratch_url = base.to_string();
    config.insert("database_url".into(), scratch_url.clone());

    let mut admin = postgres::Client::connect(&a.postgres, postgres::NoTls)
        .map_err(|e| format!("--postgres: cannot connect: {e}"))?;
    // The name is ours (letters, digits and `_`), quoted all the same.
    admin
        .batch_execute(&format!("CREATE DATABASE \"{scratch}\""))
        .map_err(|e| format!("cannot create the scratch database: {e}"))?;
    let result = run_against(a, &spec, driver_spec, &files, &scratch_url, config, timeout);
    let dropped = admin.batch_execute(&format!(
        "DROP DATABASE IF EXISTS \"{scratch}\" WITH (FORCE)"
    ));
    if let Err(e) = dropped {
        eprintln!("warning: could not drop the scratch database {scratch}: {e}");
    }
    result
}

fn run_against(
    a: &Args,
    spec: &ServiceSpec,
    driver_spec: backout_spec::DriverSpec,
    files: &[backout_gates::migrations::MigrationFile],
    scratch_url: &str,
    config: BTreeMap<String, String>,
    timeout: Duration,
) -> Result<Outcome, String> {
    let mut db = postgres::Client::connect(scratch_url, postgres::NoTls)
        .map_err(|e| format!("cannot connect to the scratch database: {e}"))?;
    for f in files {
        db.batch_execute(&f.sql)
            .map_err(|e| format!("{}: the migration failed on PostgreSQL: {e}", f.name))?;
    }
    drop(db);
    let base_dir = a
        .file
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.to_path_buf()
            }
        })
        .unwrap_or_else(|| PathBuf::from("."));
    let data_dir = std::env::temp_dir().join(format!("backout-check-schema-{}", random_suffix()));
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| format!("{}: cannot create it: {e}", data_dir.display()))?;
    let readiness = spec
        .pool_defaults
        .probes
        .readiness
        .as_ref()
        .map(|p| p.path.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let outcome = runtime.block_on(async {
        let drv = driver::build(
            &driver_spec,
            DriverContext {
                data_dir: data_dir.clone(),
                base_dir,
                gate: backout_driver::Gate::open(),
            },
        );
        let mut req = DeployRequest::new(&spec.name, &a.against, 1);
        req.config = config;
        req.artifact = a.artifact.clone();
        let instances = match drv.deploy(&req).await {
            Ok(i) => i,
            Err(e) => {
                return Ok(Outcome {
                    verdict: "unsafe",
                    version: a.against.clone(),
                    ready: false,
                    smoke: Vec::new(),
                    message: format!(
                        "{} did not start against the migrated schema ({e}): rolling back to it after these migrations would not restore service",
                        a.against
                    ),
                });
            }
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())?;
        let mut ready = true;
        if let Some(path) = &readiness {
            for i in &instances {
                let url = format!("{}{path}", i.endpoint);
                let ok = tokio::time::timeout(timeout, async {
                    loop {
                        if let Ok(r) = client.get(&url).send().await
                            && r.status().is_success()
                        {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                })
                .await
                .is_ok();
                ready &= ok;
            }
        }
        let mut smoke = Vec::new();
        if ready {
            for path in &a.smoke {
                let Some(i) = instances.first() else { break };
                let url = format!("{}{path}", i.endpoint);
                smoke.push(match client.get(&url).send().await {
                    Ok(r) => Smoke {
                        path: path.clone(),
                        status: Some(r.status().as_u16()),
                        error: None,
                    },
                    Err(e) => Smoke {
                        path: path.clone(),
                        status: None,
                        error: Some(e.to_string()),
                    },
                });
            }
        }
        if let Err(e) = drv.teardown(&spec.name, &a.against).await {
            eprintln!("warning: could not stop {}: {e}", a.against);
        }
        let smoke_ok = smoke
            .iter()
            .all(|s| s.status.is_some_and(|c| (200..300).contains(&c)));
        let (verdict, message) = if !ready {
            (
                "unsafe",
                format!(
                    "{} did not become ready within {} against the migrated schema (readiness probe {}): rolling back to it after these migrations would not restore service; make the migrations expand-only (contract in a later release)",
                    a.against,
                    a.timeout,
                    readiness.as_deref().unwrap_or("-")
                ),
            )
        } else if !smoke_ok {
            (
                "unsafe",
                format!(
                    "{} became ready against the migrated schema, but a smoke request failed: rolling back to it after these migrations would not fully restore service",
                    a.against
                ),
            )
        } else {
            (
                "safe",
                format!(
                    "{} runs against the migrated schema: ready{}",
                    a.against,
                    if smoke.is_empty() {
                        String::new()
                    } else {
                        format!(", {} smoke request(s) answered 2xx", smoke.len())
                    }
                ),
            )
        };
        Ok::<Outcome, String>(Outcome {
            verdict,
            version: a.against.clone(),
            ready,
            smoke,
            message,
        })
    });
    let _ = std::fs::remove_dir_all(&data_dir);
    outcome
}
