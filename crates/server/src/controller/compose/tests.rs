//! `check(situation, expected)`: a state (the versions wanted, the route
//! desired), what runs, the previous snapshot, and what the fleet finds
//! ready, against the pools and route of the composed snapshot.

use std::collections::BTreeMap;

use backout_rollout::{DesiredRoute, ServiceState};
use backout_routing::Permille;
use backout_spec::{EndpointUrl, ServiceSpec, Source};

use super::*;

fn spec() -> ServiceSpec {
    ServiceSpec::parse(&Source::new(
        "shop.yaml",
        "name: shop\ndriver: {static: {}}\n".to_string(),
    ))
    .expect("spec")
}

fn url(port: u16) -> EndpointUrl {
    EndpointUrl::parse(&format!("http://127.0.0.1:{port}")).expect("url")
}

fn instance(version: &str, port: u16) -> Instance {
    Instance {
        id: format!("shop-{version}-{port}"),
        service: "shop".into(),
        version: version.into(),
        replica: 0,
        endpoint: url(port),
        pid: None,
        started_at_ms: 0,
        cmdline: Vec::new(),
    }
}

/// `wanted`: versions the state wants; `route`: `stable` or
/// `stable>canary@weight`; `running`: `version:port,port`.
fn situation(
    wanted: &[&str],
    route: Option<&str>,
    running: &[(&str, &[u16])],
) -> (ServiceState, BTreeMap<String, Vec<Instance>>) {
    let mut st = ServiceState::new("shop");
    for w in wanted {
        st.instances.insert((*w).to_string(), 1);
    }
    st.route = route.map(|r| match r.split_once('>') {
        None => DesiredRoute::stable_only(r),
        Some((stable, rest)) => {
            let (canary, weight) = rest.split_once('@').expect("canary@weight");
            DesiredRoute {
                stable: stable.into(),
                canary: Some(canary.into()),
                weight: Permille::from_percent(weight.parse().expect("weight")).expect("weight"),
                rules: Vec::new(),
            }
        }
    });
    let running = running
        .iter()
        .map(|(v, ports)| {
            (
                (*v).to_string(),
                ports.iter().map(|p| instance(v, *p)).collect(),
            )
        })
        .collect();
    (st, running)
}

fn show(c: &Composed) -> String {
    let pools: Vec<String> = c
        .config
        .pools
        .iter()
        .map(|(v, p)| {
            let eps: Vec<String> = p
                .spec
                .endpoints
                .iter()
                .map(|e| {
                    let port = e.authority().port_u16().unwrap_or(0);
                    if p.ready.contains(e) {
                        format!("{port}*")
                    } else {
                        port.to_string()
                    }
                })
                .collect();
            format!("{v}[{}]", eps.join(","))
        })
        .collect();
    let route = match &c.config.route {
        None => "none".to_string(),
        Some(r) => match &r.canary {
            None => r.stable.clone(),
            Some(can) => format!("{}>{can}@{}", r.stable, r.canary_weight),
        },
    };
    format!(
        "{} route {route}{}",
        pools.join(" "),
        if c.desired.is_some() {
            " (desired)"
        } else {
            ""
        }
    )
}

fn check(
    (state, running): (ServiceState, BTreeMap<String, Vec<Instance>>),
    previous: Option<&Composed>,
    ready: &[u16],
    expected: &str,
) -> Composed {
    let composed = compose(
        &spec(),
        &state,
        &running,
        previous.map(|p| &p.config),
        |_, e| {
            let port = e.authority().port_u16().unwrap_or(0);
            if ready.is_empty() {
                None
            } else {
                Some(ready.contains(&port))
            }
        },
    );
    assert_eq!(show(&composed), expected);
    composed
}

#[test]
fn pools_of_running_wanted_versions_and_the_desired_route() {
    check(situation(&[], None, &[]), None, &[], " route none");
    check(
        situation(&["v1"], None, &[("v1", &[1])]),
        None,
        &[],
        "v1[1] route none",
    );
    check(
        situation(&["v1"], Some("v1"), &[("v1", &[1, 2])]),
        None,
        &[1],
        "v1[1*,2] route v1 (desired)",
    );
    check(
        situation(
            &["v1", "v2"],
            Some("v1>v2@10"),
            &[("v1", &[1]), ("v2", &[2])],
        ),
        None,
        &[1, 2],
        "v1[1*] v2[2*] route v1>v2@10% (desired)",
    );
    // Running but no longer wanted: no pool.
    check(
        situation(&["v1"], Some("v1"), &[("v1", &[1]), ("v2", &[2])]),
        None,
        &[],
        "v1[1] route v1 (desired)",
    );
}

#[test]
fn a_canary_not_back_yet_gets_nothing_and_stable_everything() {
    check(
        situation(&["v1", "v2"], Some("v1>v2@10"), &[("v1", &[1])]),
        None,
        &[],
        "v1[1] route v1",
    );
}

#[test]
fn a_pool_the_previous_route_uses_stays_until_a_route_without_it() {
    let before = check(
        situation(&["v1"], Some("v1"), &[("v1", &[1])]),
        None,
        &[1],
        "v1[1*] route v1 (desired)",
    );
    // v2 is promoted, but its instances are not reported yet: v1 keeps
    // serving, and its pool stays although it is no longer wanted.
    check(
        situation(&["v2"], Some("v2"), &[]),
        Some(&before),
        &[],
        "v1[1*] route v1",
    );
    // Once v2 runs, the route moves and v1's pool goes.
    check(
        situation(&["v2"], Some("v2"), &[("v2", &[2])]),
        Some(&before),
        &[2],
        "v2[2*] route v2 (desired)",
    );
}

#[test]
fn readiness_nobody_reported_keeps_the_previous_snapshots_word() {
    let before = check(
        situation(&["v1"], Some("v1"), &[("v1", &[1, 2])]),
        None,
        &[1],
        "v1[1*,2] route v1 (desired)",
    );
    check(
        situation(&["v1"], Some("v1"), &[("v1", &[1, 2])]),
        Some(&before),
        &[],
        "v1[1*,2] route v1 (desired)",
    );
    check(
        situation(&["v1"], Some("v1"), &[("v1", &[1, 2])]),
        Some(&before),
        &[2],
        "v1[1,2*] route v1 (desired)",
    );
}
