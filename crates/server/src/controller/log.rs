//! How rollout inputs and actions are written to the event log, and how a
//! service's state is folded back out of it.
//!
//! Only `input.*` events change state: the state machine is deterministic,
//! so replaying the inputs in order rebuilds exactly the state the running
//! controller had, and the `action.*` events next to them are the audit
//! trail of what it was told to do. Other kinds (`judge.decision`,
//! `driver.instances`, `driver.event`, `notify.failed`) are facts for the
//! timeline and for adoption after a crash.

use std::collections::{BTreeMap, BTreeSet};

use backout_rollout::{Action, Envelope, Input, Policy, ServiceState};
use backout_store::{NewEvent, StoredEvent};

use backout_driver::Instance;

/// Event kind prefix of rollout inputs.
pub const INPUT: &str = "input.";
/// Event kind prefix of rollout actions.
pub const ACTION: &str = "action.";
/// Instances a driver reported for a version (`{"version", "instances"}`).
pub const INSTANCES: &str = "driver.instances";
const DEPLOY: &str = "action.deploy";
const SCALE: &str = "action.scale";

/// The event kind of an input: `input.register_release`, `input.command`...
pub fn input_kind(input: &Input) -> String {
    let tag = serde_json::to_value(input)
        .ok()
        .and_then(|v| v.get("input").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    format!("{INPUT}{tag}")
}

fn action_kind(action: &Action) -> String {
    let tag = serde_json::to_value(action)
        .ok()
        .and_then(|v| v.get("action").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    format!("{ACTION}{tag}")
}

/// One atomic batch: the input, then each action it caused. With a key
/// the actions get derived keys, so a retried batch appends nothing twice.
pub fn batch(
    service: &str,
    env: &Envelope<'_>,
    key: Option<&str>,
    input: &Input,
    actions: &[Action],
    extra: Vec<NewEvent>,
) -> Vec<NewEvent> {
    let mut out = Vec::with_capacity(1 + actions.len() + extra.len());
    let stamp = |mut e: NewEvent, k: Option<String>| {
        if let Some(r) = env.reason {
            e = e.with_reason(r);
        }
        if let Some(k) = k {
            e = e.with_key(k);
        }
        e
    };
    let body = serde_json::to_value(input).unwrap_or(serde_json::Value::Null);
    out.push(stamp(
        NewEvent::new(service, input_kind(input), env.actor, env.at_ms, body),
        key.map(str::to_owned),
    ));
    for (i, a) in actions.iter().enumerate() {
        let body = serde_json::to_value(a).unwrap_or(serde_json::Value::Null);
        out.push(stamp(
            NewEvent::new(service, action_kind(a), "controller", env.at_ms, body),
            key.map(|k| format!("{k}/action/{i}")),
        ));
    }
    for (i, e) in extra.into_iter().enumerate() {
        let k = key.map(|k| format!("{k}/extra/{i}"));
        out.push(match k {
            Some(k) => e.with_key(k),
            None => e,
        });
    }
    out
}

/// What a fold of the log gives back besides the state.
#[derive(Debug, Default)]
pub struct Folded {
    /// The last seq folded.
    pub seq: i64,
    /// Inputs that were logged but no longer decode (a newer backout's
    /// event read by an older one): counted and reported, never guessed.
    pub undecodable: usize,
    /// The last instances each version's driver reported, for adoption.
    pub instances: BTreeMap<String, Vec<Instance>>,
    /// Versions a driver was told to run (a deploy or scale action) and
    /// not seen torn down since: a crash may have cut the operation short
    /// before its instances were reported, so they are looked for too.
    pub deployed: BTreeSet<String>,
}

/// Applies a service's logged events, in order, to `state`.
pub fn fold(
    state: &mut ServiceState,
    events: &[StoredEvent],
    policy: &Policy,
    folded: &mut Folded,
) {
    for ev in events {
        folded.seq = folded.seq.max(ev.seq);
        if let Some(_tag) = ev.kind.strip_prefix(INPUT) {
            match serde_json::from_value::<Input>(ev.body.clone()) {
                Ok(input) => {
                    let env = Envelope {
                        at_ms: ev.at_ms,
                        actor: &ev.actor,
                        reason: ev.reason.as_deref(),
                    };
                    let _ = state.apply(&env, &input, policy);
                    if let Input::TornDown { version } = &input {
                        folded.deployed.remove(version);
                    }
                }
                Err(_) => folded.undecodable += 1,
            }
        } else if ev.kind == DEPLOY || ev.kind == SCALE {
            if let Some(version) = ev.body.get("version").and_then(|v| v.as_str()) {
                folded.deployed.insert(version.to_string());
            }
        } else if ev.kind == INSTANCES {
            let version = ev.body.get("version").and_then(|v| v.as_str());
            let instances = ev
                .body
                .get("instances")
                .cloned()
                .and_then(|v| serde_json::from_value::<Vec<Instance>>(v).ok());
            if let (Some(version), Some(instances)) = (version, instances) {
                folded.instances.insert(version.to_string(), instances);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backout_rollout::Command;

    #[test]
    fn kinds_name_the_variant() {
        assert_eq!(input_kind(&Input::Tick), "input.tick");
        assert_eq!(
            input_kind(&Input::Command(Command::Approve)),
            "input.command"
        );
        assert_eq!(
            action_kind(&Action::Teardown {
                version: "v1".into()
            }),
            "action.teardown"
        );
    }

    #[test]
    fn a_deploy_is_looked_for_until_its_version_is_torn_down() {
        let ev = |seq: i64, kind: &str, body: serde_json::Value| StoredEvent {
            seq,
            batch: seq,
            service: "web".into(),
            kind: kind.into(),
            actor: "controller".into(),
            reason: None,
            idempotency_key: None,
            at_ms: seq,
            body,
        };
        let events = [
            ev(
                1,
                "action.deploy",
                serde_json::json!({"action": "deploy", "version": "v1", "replicas": 1}),
            ),
            ev(
                2,
                "action.deploy",
                serde_json::json!({"action": "deploy", "version": "v2", "replicas": 1}),
            ),
            ev(
                3,
                "action.scale",
                serde_json::json!({"action": "scale", "version": "v3", "replicas": 2}),
            ),
            ev(
                4,
                "input.torn_down",
                serde_json::json!({"input": "torn_down", "version": "v2"}),
            ),
        ];
        let mut state = ServiceState::new("web");
        let mut folded = Folded::default();
        fold(&mut state, &events, &Policy::default(), &mut folded);
        let deployed: Vec<&str> = folded.deployed.iter().map(String::as_str).collect();
        assert_eq!(deployed, ["v1", "v3"]);
        assert_eq!(folded.seq, 4);
    }

    #[test]
    fn keyed_batches_derive_keys_for_every_event() {
        let env = Envelope {
            at_ms: 5,
            actor: "alice",
            reason: Some("why"),
        };
        let actions = [
            Action::Deploy {
                version: "v2".into(),
                replicas: 1,
            },
            Action::Teardown {
                version: "v1".into(),
            },
        ];
        let b = batch("web", &env, Some("k1"), &Input::Tick, &actions, Vec::new());
        let keys: Vec<_> = b.iter().map(|e| e.idempotency_key.clone()).collect();
        assert_eq!(
            keys,
            [
                Some("k1".to_string()),
                Some("k1/action/0".into()),
                Some("k1/action/1".into())
            ]
        );
        assert!(b.iter().all(|e| e.reason.as_deref() == Some("why")));
        let keyless = batch("web", &env, None, &Input::Tick, &actions, Vec::new());
        assert!(keyless.iter().all(|e| e.idempotency_key.is_none()));
    }
}
