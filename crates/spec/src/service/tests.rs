use super::*;

const GOOD: &str = r#"
name: web
listen: 127.0.0.1:8080
hosts: [Web.Example.com]
path_prefix: /web/
strip_prefix: true
sticky: {header: x-user-id}
version_header: X-Backout-Version
timeouts: {connect: 500ms, request: 10s}
breaker: {failure_rate: 40, min_requests: 10}
pools:
  v1:
    endpoints: [http://127.0.0.1:9001, http://127.0.0.1:9003]
    probes:
      readiness: {path: /ready, period: 1s, timeout: 500ms, failure_threshold: 2}
  v2:
    protocol: h2c
    endpoints: [http://127.0.0.1:9002]
    breaker: {consecutive_failures: 3}
    bulkhead: {max_concurrent: 50}
route:
  stable: v1
  canary: v2
  canary_weight: 12.5
  rules:
    - {header: x-group, equals: staff, to: canary}
"#;

#[test]
fn a_full_service_parses_with_defaults_filled_in() {
    let spec = ServiceSpec::parse(&Source::new("web.yaml", GOOD)).unwrap();
    assert_eq!(spec.name, "web");
    assert_eq!(spec.hosts, ["web.example.com"]);
    assert_eq!(spec.path_prefix.as_deref(), Some("/web"));
    assert_eq!(spec.version_header.as_deref(), Some("x-backout-version"));
    assert_eq!(spec.timeouts.connect, Duration::from_millis(500));
    let v1 = &spec.pools["v1"];
    assert_eq!(v1.endpoints.len(), 2);
    assert_eq!(v1.breaker.failure_rate, 40.0, "service default applies");
    assert_eq!(v1.breaker.min_requests, 10);
    let ready = v1.probes.readiness.as_ref().unwrap();
    assert_eq!(ready.failure_threshold.get(), 2);
    assert_eq!(ready.success_threshold.get(), 1);
    let v2 = &spec.pools["v2"];
    assert_eq!(v2.protocol, Protocol::H2c);
    assert_eq!(
        v2.breaker.consecutive_failures, 3,
        "pool overrides the service default"
    );
    assert_eq!(
        v2.breaker.failure_rate, 50.0,
        "a pool's own section starts from built-in defaults"
    );
    assert_eq!(v2.bulkhead.max_concurrent.get(), 50);
    assert_eq!(spec.route.unwrap().canary_weight.get(), 125);
}

/// Error messages are part of the interface: one snapshot per mistake.
fn check_error(yaml: &str) -> String {
    match ServiceSpec::parse(&Source::new("svc.yaml", yaml)) {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

const POOLS: &str = "pools:\n  v1:\n    endpoints: [http://127.0.0.1:1]\n  v2:\n    endpoints: [http://127.0.0.1:2]\n";

#[test]
fn error_messages() {
    let with = |extra: &str| format!("name: web\n{POOLS}{extra}");
    insta::assert_snapshot!(check_error(""), @"svc.yaml:1:1: unexpected end of input");
    insta::assert_snapshot!(check_error("name: web\npools: {v1: {endpoints: [http://a:1]}}\n"), @"svc.yaml:2:8: route: a service with `pools` needs a `route` between them (hint: e.g. `route: {stable: v1}`)");
    insta::assert_snapshot!(check_error(&with("route: {stable: v1}\ncolour: blue\n")), @"svc.yaml:8:1: colour: unknown field `colour`, expected one of name, listen, hosts, path_prefix, strip_prefix, sticky, version_header, timeouts, trusted_proxies, tls, upstream_tls, probes, breaker, bulkhead, outlier, pools, route, strategy, analysis, rollback, history, gates, notifications, driver");
    insta::assert_snapshot!(check_error(&with("route: {stable: v3}\n")), @r#"svc.yaml:7:17: route.stable: unknown pool "v3"; known pools: v1, v2"#);
    insta::assert_snapshot!(check_error(&with("route: {stable: v1, canary: v2, canary_weight: 101}\n")), @"svc.yaml:7:48: route.canary_weight: weight must be between 0 and 100 percent; got 101");
    insta::assert_snapshot!(check_error(&with("route: {stable: v1, canary: v2, canary_weight: 1.25}\n")), @"svc.yaml:7:48: route.canary_weight: weight has a resolution of 0.1 percent; got 1.25 (use e.g. 1.3)");
    insta::assert_snapshot!(check_error(&with("route: {stable: v1, canary: v2, rules: [{header: x, regex: '(', to: canary}]}\n")), @"svc.yaml:7:60: route.rules[0].regex: rule 0: invalid regex: regex parse error: ( ^ error: unclosed group");
    insta::assert_snapshot!(check_error("name: Web!\npools: {v1: {endpoints: [http://a:1]}}\nroute: {stable: v1}\n"), @r#"svc.yaml:1:7: name: service name "Web!" is not a valid name (hint: use 1 to 63 lower-case letters, digits, `-`, `_` or `.`, starting with a letter or digit)"#);
    insta::assert_snapshot!(check_error("name: web\npools: {v1: {endpoints: ['ftp://a:1']}}\nroute: {stable: v1}\n"), @r#"svc.yaml:2:26: pools.v1.endpoints[0]: endpoint "ftp://a:1" uses scheme `ftp`; only `http` and `https` are supported; write it as `http://host:port` or `https://host:port`, e.g. `http://127.0.0.1:9001`"#);
    insta::assert_snapshot!(check_error("name: web\npools: {v1: {protocol: h2c, endpoints: ['http://a:1', 'https://a:2']}}\nroute: {stable: v1}\n"), @"svc.yaml:2:55: pools.v1.endpoints[1]: https://a:2 is reached over TLS, but `protocol: h2c` is HTTP/2 without TLS (hint: https:// endpoints speak HTTP/1.1: leave `protocol` out, or use http:// for h2c)");
    insta::assert_snapshot!(check_error("name: web\npools: {v1: {endpoints: []}}\nroute: {stable: v1}\n"), @"svc.yaml:2:25: pools.v1.endpoints: a pool needs at least one endpoint (hint: e.g. `endpoints: [http://127.0.0.1:9001]`)");
    insta::assert_snapshot!(check_error("name: web\npools: {}\nroute: {stable: v1}\n"), @"svc.yaml:2:8: pools: `pools` is empty (hint: list at least one version pool, e.g. `pools: {v1: {endpoints: [http://127.0.0.1:9001]}}`, or leave `pools` out and let releases create them (`backout up`))");
    insta::assert_snapshot!(check_error("name: web\ntimeouts: {connect: 5}\npools: {v1: {endpoints: [http://a:1]}}\nroute: {stable: v1}\n"), @"svc.yaml:2:21: timeouts.connect: a bare number (5) has no unit; write e.g. `5s` or `5ms`");
    insta::assert_snapshot!(check_error("name: web\npools:\n  v1:\n    endpoints: [http://a:1]\n    probes:\n      liveness: {path: /live, success_threshold: 2}\nroute: {stable: v1}\n"), @"svc.yaml:6:50: pools.v1.probes.liveness.success_threshold: must be 1 for startup and liveness probes; got 2 (hint: as in Kubernetes: one success proves the process is up)");
    insta::assert_snapshot!(check_error("name: web\npools:\n  v1:\n    endpoints: [http://a:1]\n    probes:\n      readiness: {path: /r, period: 1s, timeout: 2s}\nroute: {stable: v1}\n"), @"svc.yaml:6:50: pools.v1.probes.readiness.timeout: probe timeout 2s must be above zero and at most the period (1s) (hint: a probe that can outlast its period overlaps the next one)");
    insta::assert_snapshot!(check_error("name: web\npools:\n  v1:\n    endpoints: [http://a:1]\n    breaker: {failure_rate: 0}\nroute: {stable: v1}\n"), @"svc.yaml:5:29: pools.v1.breaker.failure_rate: failure rate is a percentage above 0 and at most 100; got 0 (hint: e.g. `failure_rate: 50` opens the breaker when half the requests fail)");
    insta::assert_snapshot!(check_error("name: web\npools:\n  v1:\n    endpoints: [http://a:1]\n    bulkhead: {max_concurrent: 0}\nroute: {stable: v1}\n"), @"svc.yaml:5:16: pools.v1.bulkhead.max_concurrent: invalid value: integer `0`, expected a nonzero u32");
    insta::assert_snapshot!(check_error("name: web\npath_prefix: api\npools: {v1: {endpoints: [http://a:1]}}\nroute: {stable: v1}\n"), @r#"svc.yaml:2:14: path_prefix: "api" must start with `/` (hint: e.g. `/api`)"#);
    insta::assert_snapshot!(check_error("name: web\nlisten: localhost\npools: {v1: {endpoints: [http://a:1]}}\nroute: {stable: v1}\n"), @"svc.yaml:2:9: listen: invalid socket address syntax");
    insta::assert_snapshot!(check_error("name: web\nsticky: {ip: 1}\npools: {v1: {endpoints: [http://a:1]}}\nroute: {stable: v1}\n"), @"svc.yaml:2:10: sticky: unknown variant `ip`, expected one of header, cookie, client_addr");
    insta::assert_snapshot!(check_error("name: [web\n"), @"svc.yaml:1:7: name: expected string scalar");
}

const MANAGED: &str = r#"
name: shop
strategy:
  progress_deadline: 5m
  steps:
    - set_weight: 5
    - match: {header: x-employee, equals: "true"}
    - analysis: {duration: 2m}
    - approve
    - set_weight: 50
    - pause: 1m
analysis:
  alpha: 0.02
rollback: {automatic: true, capacity: gradual}
history: {keep_known_good: 3}
notifications: [{webhook: "http://127.0.0.1:9/hook", events: [rollback]}]
driver:
  process: {command: "./app --port {port} --version {version}", replicas: 2}
"#;

#[test]
fn a_managed_service_has_no_pools_but_a_strategy() {
    let spec = ServiceSpec::parse(&Source::new("shop.yaml", MANAGED)).unwrap();
    assert!(spec.pools.is_empty() && spec.route.is_none());
    assert_eq!(spec.strategy.steps.len(), 6);
    assert_eq!(spec.strategy.progress_deadline, Duration::from_secs(300));
    assert_eq!(spec.analysis.alpha, 0.02);
    assert_eq!(spec.rollback.capacity, crate::CapacityMode::Gradual);
    assert_eq!(spec.history.keep_known_good, 3);
    assert_eq!(spec.notifications.len(), 1);
    assert_eq!(spec.driver.as_ref().and_then(|d| d.replicas()), Some(2));
    // Defaults everywhere else.
    let bare = ServiceSpec::parse(&Source::new("bare.yaml", "name: bare\n")).unwrap();
    assert_eq!(bare.strategy, crate::Strategy::default());
}

#[test]
fn managed_mistakes_are_located() {
    insta::assert_snapshot!(check_error("name: shop\nstrategy:\n  steps:\n    - set_weight: 50\n    - set_weight: 10\n"), @"svc.yaml:5:7: strategy.steps[1]: weights must not go down: 10% after 50% (hint: to send less traffic to the canary, roll back; a rollout only moves forward)");
    insta::assert_snapshot!(check_error("name: shop\nstrategy:\n  progress_deadline: 1m\n  steps:\n    - pause: 5m\n"), @"svc.yaml:5:7: strategy.steps[0]: a pause of 5m is longer than the progress deadline (1m), which would abort the rollout (hint: shorten the pause, raise `strategy.progress_deadline`, or use `pause: {}` to wait for a human)");
    insta::assert_snapshot!(check_error("name: shop\nstrategy:\n  steps:\n    - set_wieght: 5\n"), @"svc.yaml:4:7: strategy.steps[0]: unknown step `set_wieght`; steps are set_weight, pause, approve, analysis, match");
    insta::assert_snapshot!(check_error("name: shop\nanalysis:\n  alpha: 7\n"), @"svc.yaml:3:10: analysis.alpha: must be between 0 and 1, exclusive (got 7); 1% is written 0.01");
    insta::assert_snapshot!(check_error("name: shop\ndriver: {process: {command: \"./app --port {prot}\"}}\n"), @"svc.yaml:2:29: driver.process.command: unknown placeholder `{prot}`; known: {port}, {version}, {replica}, {service}, {artifact}, {config.KEY} (write `{{` and `}}` for literal braces)");
    insta::assert_snapshot!(check_error("name: shop\nrollback: {capacity: sometimes}\n"), @"svc.yaml:2:22: rollback.capacity: unknown variant `sometimes`, expected one of scale_first, gradual");
}

/// The examples the README points to stay valid.
#[test]
fn shipped_examples_parse() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml")
            && path.file_name().is_some_and(|n| n != "flags.yaml")
        {
            let text = std::fs::read_to_string(&path).unwrap();
            if !text.contains("\npools:") && !text.contains("\ndriver:") {
                continue; // not a service file
            }
            ServiceSpec::parse(&Source::new(path.display().to_string(), text))
                .unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    assert!(seen >= 1);
}

/// What used to be accepted and silently misbehave, each refused where it
/// was written, with what is allowed.
#[test]
fn quiet_mistakes_are_refused() {
    let two = |extra: &str| {
        format!(
            "name: web\npools:\n  v1: {{endpoints: [http://127.0.0.1:9001]}}\n  v2: {{endpoints: [http://127.0.0.1:9002]}}\nroute: {{stable: v1, canary: v2}}\n{extra}"
        )
    };
    insta::assert_snapshot!(check_error(&two("timeouts: {connect: 0s}\n")), @"svc.yaml:6:21: timeouts.connect: must be above zero (hint: no connection is made in no time; the default is `2s`)");
    insta::assert_snapshot!(check_error(&two("timeouts: {request: 0ms}\n")), @"svc.yaml:6:21: timeouts.request: must be above zero (hint: every request would time out; the default is `30s`)");
    insta::assert_snapshot!(check_error(&two("notifications: [{webhook: \"hooks slack\", events: [rollback]}]\n")), @r#"svc.yaml:6:27: notifications[0].webhook: "hooks slack" is not an http or https URL (hint: e.g. `https://hooks.example.com/backout`)"#);
    insta::assert_snapshot!(check_error(&two("notifications: [{webhook: \"https://h.example/x\", events: [rolback]}]\n")), @r#"svc.yaml:6:59: notifications[0].events[0]: unknown event "rolback"; the events are aborted, approved, auto_rollback, break_glass, canary_ready, capacity_timeout, deadline, gates, gates_accepted, known_good, page, paused, promote, promote_full, promoted, resumed, rollback, rolled_back, rollout_started, soak_failed, soak_interrupted, step, weight (hint: leave `events` out to hear about every event)"#);
    insta::assert_snapshot!(check_error(&two("sticky: {header: \"x user\"}\n")), @r#"svc.yaml:6:18: sticky.header: "x user" is not a valid HTTP header name; use letters, digits and `-`, e.g. `x-user-id`"#);
    insta::assert_snapshot!(check_error(&two("sticky: {cookie: \"a;b\"}\n")), @r#"svc.yaml:6:18: sticky.cookie: "a;b" is not a valid cookie name; use letters, digits and `-` or `_`, e.g. `uid`"#);
    insta::assert_snapshot!(check_error("name: web\npools:\n  v1: {endpoints: [http://127.0.0.1:9001]}\n  v2: {endpoints: [http://127.0.0.1:9002]}\nroute: {stable: v1, canary: v2, canary_weight: \"10\"}\n"), @r#"svc.yaml:5:48: route.canary_weight: a weight is a number, not the text "10"; write it without quotes, e.g. `10`"#);
    insta::assert_snapshot!(check_error("name: web\nstrategy:\n  steps:\n    - set_weight: \"10\"\n"), @r#"svc.yaml:4:19: strategy.steps[0].set_weight: a weight is a number, not the text "10"; write it without quotes, e.g. `10`"#);
    insta::assert_snapshot!(check_error("name: web\npools:\n  v1: {endpoints: [http://127.0.0.1:9001, http://127.0.0.1:9001]}\nroute: {stable: v1}\n"), @"svc.yaml:3:43: pools.v1.endpoints[1]: endpoint http://127.0.0.1:9001 is listed twice (hint: list each endpoint once; to give one more traffic, use weights between pools, not repeats)");
    // A rule's mistake is reported at the rule, not at `route:`.
    insta::assert_snapshot!(check_error("name: web\npools:\n  v1: {endpoints: [http://127.0.0.1:9001]}\n  v2: {endpoints: [http://127.0.0.1:9002]}\nroute:\n  stable: v1\n  canary: v2\n  rules:\n    - {header: x-a, equals: b, to: canary}\n    - {header: x-a, regex: \"(\", to: canary}\n"), @"svc.yaml:10:28: route.rules[1].regex: rule 1: invalid regex: regex parse error: ( ^ error: unclosed group");
    // The YAML library's advice is about its own options; ours is about the file.
    insta::assert_snapshot!(check_error("name: web\nname: other\n"), @"svc.yaml:2:1: `name` is written twice in the same mapping; keep one of them");
    insta::assert_snapshot!(check_error("name: web\npools:\n  v1: {endpoints: [http://127.0.0.1:9001]}\n  v1: {endpoints: [http://127.0.0.1:9002]}\nroute: {stable: v1}\n"), @"svc.yaml:4:3: pools: `v1` is written twice in the same mapping; keep one of them");
}

#[test]
fn tls_files_are_relative_to_the_service_file() {
    let yaml = "name: web\ntls: {cert: certs/web.pem, key: /etc/keys/web.key}\npools: {v1: {endpoints: [http://a:1]}}\nroute: {stable: v1}\n";
    let spec = ServiceSpec::parse(&Source::new("conf/web.yaml", yaml)).unwrap();
    let tls = spec.tls.unwrap();
    assert_eq!(tls.cert, std::path::Path::new("conf/certs/web.pem"));
    assert_eq!(tls.key, std::path::Path::new("/etc/keys/web.key"));
    insta::assert_snapshot!(check_error("name: web\ntls: {cert: '', key: k.pem}\npools: {v1: {endpoints: [http://a:1]}}\nroute: {stable: v1}\n"), @"svc.yaml:2:13: tls.cert: empty path; give the file that holds its certificate chain (PEM) (hint: e.g. `/etc/backout/tls/shop.pem`)");
    insta::assert_snapshot!(check_error("name: web\ntls: {cert: c.pem}\npools: {v1: {endpoints: [http://a:1]}}\nroute: {stable: v1}\n"), @"svc.yaml:2:7: tls: missing field `key`");
}
