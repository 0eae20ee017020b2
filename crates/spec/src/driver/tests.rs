use serde::Deserialize;

use super::*;
use crate::yaml::{Source, parse_yaml};

/// A document with only a `driver:` section, so that field paths and
/// locations are the ones a service file reports.
#[derive(Debug, Deserialize)]
struct Doc {
    driver: DriverFile,
}

fn parse(yaml: &str) -> Result<DriverSpec, crate::SpecError> {
    let src = Source::new("svc.yaml", yaml);
    let doc: Doc = parse_yaml(&src)?;
    doc.driver.validate(&src, "driver")
}

#[test]
fn a_full_process_driver_parses_with_defaults_filled_in() {
    let spec = parse(
        r#"
driver:
  process:
    command: "./app --port {port} --version {version}"
    replicas: 3
    env: {RUST_LOG: info, DB: "{config.db_url}"}
    workdir: bin
    ports: 20000-20999
    stop_timeout: 5s
    restart: {backoff: 200ms}
    log_max_size: 1MiB
"#,
    )
    .unwrap();
    let DriverSpec::Process(p) = spec else {
        panic!("{spec:?}")
    };
    assert_eq!(p.replicas.get(), 3);
    assert_eq!(p.ports, Some(PortRange::new(20000, 20999).unwrap()));
    assert_eq!(p.stop_timeout, Duration::from_secs(5));
    assert_eq!(p.start_timeout, ProcessSpec::DEFAULT_START_TIMEOUT);
    assert_eq!(p.restart.backoff, Duration::from_millis(200));
    assert_eq!(p.restart.max_backoff, RestartSpec::default().max_backoff);
    assert_eq!(p.log_max_size, ByteSize(1 << 20));
    assert_eq!(p.workdir.as_deref(), Some("bin"));
    let mut config = BTreeMap::new();
    config.insert("db_url".to_string(), "postgres://x".to_string());
    let vars = TemplateVars {
        service: "web",
        version: "v2",
        replica: Some(0),
        port: Some(20000),
        artifact: None,
        config: &config,
    };
    assert_eq!(
        p.command.render(&vars).unwrap(),
        ["./app", "--port", "20000", "--version", "v2"]
    );
    assert_eq!(p.env["DB"].render(&vars).unwrap(), "postgres://x");
}

#[test]
fn the_list_form_runs_without_a_shell() {
    let spec = parse("driver:\n  process:\n    command: [./app, --port, '{port}']\n").unwrap();
    let DriverSpec::Process(p) = spec else {
        panic!("{spec:?}")
    };
    assert_eq!(p.replicas.get(), 1);
    let config = BTreeMap::new();
    let vars = TemplateVars {
        service: "web",
        version: "v1",
        replica: Some(0),
        port: Some(7),
        artifact: None,
        config: &config,
    };
    assert_eq!(p.command.render(&vars).unwrap(), ["./app", "--port", "7"]);
}

#[test]
fn static_and_hooks_parse() {
    assert_eq!(
        parse("driver: {static: {}}\n").unwrap(),
        DriverSpec::Static(StaticSpec {})
    );
    assert_eq!(
        parse("driver: static\n").unwrap(),
        DriverSpec::Static(StaticSpec {})
    );
    assert_eq!(
        parse("driver: {static: }\n").unwrap(),
        DriverSpec::Static(StaticSpec {})
    );
    let spec = parse(
        "driver:\n  hooks: {deploy: ./deploy.sh, teardown: [./down.sh, '{version}'], timeout: 5s, retries: 0}\n",
    )
    .unwrap();
    let DriverSpec::Hooks(h) = spec else {
        panic!("{spec:?}")
    };
    assert_eq!(h.timeout, Duration::from_secs(5));
    assert_eq!(h.retries, 0);
    assert_eq!(h.retry_backoff, HooksSpec::DEFAULT_RETRY_BACKOFF);
    assert!(h.scale.is_none() && h.restart.is_none());
    assert_eq!(DriverSpec::Hooks(h).replicas(), Some(1));
    assert_eq!(DriverSpec::Static(StaticSpec {}).replicas(), None);
}

#[test]
fn sizes_and_ports() {
    for (text, want) in [
        ("512KiB", Ok(512 * 1024)),
        ("10MiB", Ok(10 << 20)),
        ("1GB", Ok(1_000_000_000)),
        ("7B", Ok(7)),
        ("10", Err("no unit")),
        ("10 parsecs", Err("unknown size unit")),
        ("MiB", Err("not a size")),
    ] {
        match (ByteSize::parse(text), want) {
            (Ok(got), Ok(want)) => assert_eq!(got.0, want, "{text}"),
            (Err(e), Err(fragment)) => assert!(e.contains(fragment), "{text}: {e}"),
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }
    assert_eq!(ByteSize(10 << 20).to_string(), "10MiB");
    assert_eq!(PortRange::parse("8080").unwrap().len(), 1);
    assert_eq!(PortRange::parse("20000-20999").unwrap().len(), 1000);
    assert!(PortRange::parse("9-8").is_err());
    assert!(PortRange::parse("0-8").is_err());
    assert!(PortRange::parse("a-b").is_err());
}

/// Error messages are part of the interface: one snapshot per mistake.
fn check_error(yaml: &str) -> String {
    match parse(yaml) {
        Ok(spec) => panic!("expected an error for:\n{yaml}\ngot {spec:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn error_messages() {
    let process = |body: &str| format!("driver:\n  process:\n{body}");
    insta::assert_snapshot!(check_error("driver: {}\n"), @"svc.yaml:1:9: driver: no driver chosen; write one of `process: {...}`, `static: {}`, `hooks: {...}`");
    insta::assert_snapshot!(check_error("driver: process\n"), @"svc.yaml:1:9: driver: the `process` driver needs settings; write `process: {...}`");
    insta::assert_snapshot!(check_error("driver: docker\n"), @"svc.yaml:1:1: driver: unknown variant `docker`, expected one of process, static, hooks");
    insta::assert_snapshot!(check_error("driver: {docker: {}}\n"), @"svc.yaml:1:10: driver: unknown variant `docker`, expected one of process, static, hooks");
    insta::assert_snapshot!(check_error("driver: {process: {command: ./a}, static: {}}\n"), @"svc.yaml:1:9: driver: a service has one driver; found both `process` and `static`");
    insta::assert_snapshot!(check_error("driver: {static: {endpoints: [http://a:1]}}\n"), @"svc.yaml:1:30: driver.static.endpoints: the static driver takes a version's endpoints from its release, not from the spec (hint: register them with the release: `backout release SERVICE --version V --set endpoints=http://10.0.0.5:8080,http://10.0.0.6:8080`)");
    insta::assert_snapshot!(check_error(&process("    replicas: 2\n")), @"svc.yaml:3:5: driver.process: missing field `command`");
    insta::assert_snapshot!(check_error(&process("    command: ''\n")), @r#"svc.yaml:3:14: driver.process.command: the command is empty (hint: e.g. `./app --port {port}` or `[./app, --port, "{port}"]`)"#);
    insta::assert_snapshot!(check_error(&process("    command: []\n")), @r#"svc.yaml:3:14: driver.process.command: the command list is empty or starts with an empty program name (hint: e.g. `./app --port {port}` or `[./app, --port, "{port}"]`)"#);
    insta::assert_snapshot!(check_error(&process("    command: {run: ./a}\n")), @"svc.yaml:3:14: driver.process.command: invalid type: map, expected a command: a string, or a list of arguments");
    insta::assert_snapshot!(check_error(&process("    command: 'echo ${X:-{artifact}}'\n")), @"svc.yaml:3:14: driver.process.command: a placeholder inside `${...}` cannot be passed safely; move it out of the expansion or use `env:`");
    insta::assert_snapshot!(check_error(&process("    command: \"./app 'x {port}\"\n")), @"svc.yaml:3:14: driver.process.command: the command has a `'` that is never closed");
    insta::assert_snapshot!(check_error(&process("    command: ./app --port {prot}\n")), @"svc.yaml:3:14: driver.process.command: unknown placeholder `{prot}`; known: {port}, {version}, {replica}, {service}, {artifact}, {config.KEY} (write `{{` and `}}` for literal braces)");
    insta::assert_snapshot!(check_error(&process("    command: [./app, --port, '{prot}']\n")), @"svc.yaml:3:14: driver.process.command[2]: unknown placeholder `{prot}`; known: {port}, {version}, {replica}, {service}, {artifact}, {config.KEY} (write `{{` and `}}` for literal braces)");
    insta::assert_snapshot!(check_error(&process("    command: ./a\n    replicas: 0\n")), @"svc.yaml:4:5: driver.process.replicas: invalid value: integer `0`, expected a nonzero u32");
    insta::assert_snapshot!(check_error(&process("    command: ./a\n    env: {1BAD: x}\n")), @r#"svc.yaml:4:17: driver.process.env.1BAD: "1BAD" is not an environment variable name (hint: use letters, digits and `_`, not starting with a digit, e.g. `RUST_LOG`)"#);
    insta::assert_snapshot!(check_error(&process("    command: ./a\n    env: {GOOD: '{portt}'}\n")), @"svc.yaml:4:17: driver.process.env.GOOD: unknown placeholder `{portt}`; known: {port}, {version}, {replica}, {service}, {artifact}, {config.KEY} (write `{{` and `}}` for literal braces)");
    insta::assert_snapshot!(check_error(&process("    command: ./a\n    ports: 20000-19000\n")), @"svc.yaml:4:12: driver.process.ports: port range 20000-19000 must run from 1 to 65535, low to high");
    insta::assert_snapshot!(check_error(&process("    command: ./a\n    replicas: 3\n    ports: 20000-20001\n")), @"svc.yaml:5:12: driver.process.ports: port range 20000-20001 holds 2 port(s) but 3 replicas need one each (hint: widen the range; scaling up needs room too)");
    insta::assert_snapshot!(check_error(&process("    command: ./a\n    stop_timeout: 10\n")), @"svc.yaml:4:19: driver.process.stop_timeout: a bare number (10) has no unit; write e.g. `10s` or `10ms`");
    insta::assert_snapshot!(check_error(&process("    command: ./a\n    start_timeout: 0s\n")), @"svc.yaml:4:20: driver.process.start_timeout: must be above zero (hint: a replica gets this long to accept connections on its port, e.g. `30s`)");
    insta::assert_snapshot!(check_error(&process("    command: ./a\n    restart: {backoff: 0s}\n")), @"svc.yaml:4:24: driver.process.restart.backoff: must be above zero (hint: without a pause, a replica that crashes at start would be restarted in a tight loop)");
    insta::assert_snapshot!(check_error(&process("    command: ./a\n    restart: {backoff: 5s, max_backoff: 1s}\n")), @"svc.yaml:4:41: driver.process.restart.max_backoff: max_backoff (1s) is below backoff (5s)");
    insta::assert_snapshot!(check_error(&process("    command: ./a\n    log_max_size: 10\n")), @"svc.yaml:4:19: driver.process.log_max_size: a bare number (10) has no unit; write e.g. `10B` or `10MiB`");
    insta::assert_snapshot!(check_error(&process("    command: ./a\n    log_max_size: 100B\n")), @"svc.yaml:4:19: driver.process.log_max_size: 100B is too small to hold a useful log (hint: use at least `1KiB`; the default is `10MiB`)");
    insta::assert_snapshot!(check_error(&process("    command: ./a\n    workdir: ''\n")), @"svc.yaml:4:14: driver.process.workdir: the working directory is empty (hint: leave `workdir` out to use the service file's directory)");
    insta::assert_snapshot!(check_error(&process("    command: ./a\n    colour: blue\n")), @"svc.yaml:4:5: driver.process.colour: unknown field `colour`, expected one of command, replicas, env, workdir, ports, stop_timeout, start_timeout, restart, log_max_size");
    insta::assert_snapshot!(check_error("driver:\n  hooks: {deploy: ./d.sh}\n"), @"svc.yaml:2:11: driver.hooks: missing field `teardown`");
    insta::assert_snapshot!(check_error("driver:\n  hooks: {deploy: './d.sh {port}', teardown: ./t.sh}\n"), @"svc.yaml:2:19: driver.hooks.deploy: `{port}` is not available to hooks, which run once per version and choose their own ports; known: {version}, {service}, {artifact}, {config.KEY}");
    insta::assert_snapshot!(check_error("driver:\n  hooks: {deploy: ./d.sh, teardown: ./t.sh, timeout: 0s}\n"), @"svc.yaml:2:54: driver.hooks.timeout: must be above zero (hint: a script that runs longer is killed, e.g. `60s`)");
    insta::assert_snapshot!(check_error("driver:\n  hooks: {deploy: ./d.sh, teardown: ./t.sh, retries: 1000}\n"), @"svc.yaml:2:54: driver.hooks.retries: 1000 retries is more than the 100 allowed (hint: a script that fails this often needs fixing, not retrying)");
    insta::assert_snapshot!(check_error("driver:\n  hooks: {deploy: ./d.sh, teardown: ./t.sh, retries: -1}\n"), @"svc.yaml:2:54: driver.hooks.retries: invalid u32");
}

mod release_values {
    //! No release value can change a command's shape: the number of
    //! arguments and every argument that has no release placeholder in it
    //! stay what the spec says, whatever `--artifact` and `--set` hold.

    use proptest::prelude::*;

    use super::*;

    const STRINGS: &[&str] = &[
        "./app --port {port} --artifact {artifact} --x={config.a}",
        "'BIN' demo-app --port {port} --version {version} {artifact}",
        "echo {artifact} > out; exec ./app \"{config.a}\" 'q{config.b}q' --v={version}",
        "x=$(printf '%s' \"{artifact}\") && ./app \"$x\" {config.a} `echo {config.b}`",
    ];

    fn commands() -> Vec<CommandSpec> {
        let mut out: Vec<CommandSpec> = STRINGS
            .iter()
            .map(|s| CommandSpec::parse(s, TemplateScope::Replica).unwrap())
            .collect();
        let argv = ["./app", "{artifact}", "a{config.a}b", "--port={port}"];
        out.push(CommandSpec::Argv(
            argv.iter()
                .map(|a| Template::parse(a, TemplateScope::Replica).unwrap())
                .collect(),
        ));
        out
    }

    /// Whether argument `i` of `cmd` may hold a release value.
    fn value_slot(cmd: &CommandSpec, i: usize) -> bool {
        match cmd {
            CommandSpec::Words { argv, .. } | CommandSpec::Argv(argv) => {
                argv[i].vars().any(Var::release_controlled)
            }
            CommandSpec::Shell(s) => i >= 4 && s.params()[i - 4].release_controlled(),
        }
    }

    /// Values made of what a shell cares about most, and anything else.
    fn value() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just(";".to_string()),
            Just("'".to_string()),
            Just("\"".to_string()),
            Just("$(id)".to_string()),
            Just("`id`".to_string()),
            Just(" ".to_string()),
            Just("\n".to_string()),
            Just("\\".to_string()),
            Just("{artifact}".to_string()),
            Just("${1}".to_string()),
            Just("*".to_string()),
            any::<char>().prop_map(String::from),
        ];
        prop::collection::vec(piece, 0..16).prop_map(|v| v.concat())
    }

    fn render(cmd: &CommandSpec, artifact: &str, a: &str, b: &str, version: &str) -> Vec<String> {
        let config: BTreeMap<String, String> = [
            ("a".to_string(), a.to_string()),
            ("b".to_string(), b.to_string()),
        ]
        .into();
        cmd.render(&TemplateVars {
            service: "web",
            version,
            replica: Some(0),
            port: Some(8080),
            artifact: Some(artifact),
            config: &config,
        })
        .unwrap()
    }

    proptest! {
        #[test]
        fn no_value_changes_the_argument_vector(
            artifact in value(),
            a in value(),
            b in value(),
            version in "[a-z0-9][a-z0-9._-]{0,10}",
        ) {
            for cmd in commands() {
                let base = render(&cmd, "x", "y", "z", "v1");
                let got = render(&cmd, &artifact, &a, &b, &version);
                prop_assert_eq!(base.len(), got.len(), "{}", cmd);
                for (i, (x, y)) in base.iter().zip(&got).enumerate() {
                    prop_assert!(x == y || value_slot(&cmd, i), "{cmd}: argument {i} became {y:?}");
                }
                if let CommandSpec::Shell(s) = &cmd {
                    // The script is the same text whatever the values, and
                    // each value is one whole argument after it.
                    prop_assert_eq!(&got[2], s.script());
                    for (var, value) in s.params().iter().zip(&got[4..]) {
                        let want = match var {
                            Var::Artifact => &artifact,
                            Var::Config(k) if k == "a" => &a,
                            Var::Config(_) => &b,
                            Var::Version => &version,
                            _ => continue,
                        };
                        prop_assert_eq!(value, want);
                    }
                }
            }
        }
    }
}
