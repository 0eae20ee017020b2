//! The control plane's side of the fleet protocol: the latest snapshot of
//! every service, the subscriptions of the proxies that follow them, and
//! the [`Roster`] of what those proxies answered and reported.
//!
//! Each service's controller publishes snapshots here and reads the roster
//! (when a route change is done, how ready a version is, the merged
//! windows for the judge). Sessions come from the API's WebSocket endpoint
//! or, for the proxy embedded in `backout up`, from in-process channels;
//! both run [`drive`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use backout_fleet::{FromProxy, Hello, PROTOCOL, Roster, Snapshot, ToProxy, Welcome};
use backout_proxy::follow::{Attach, Conn};
use tokio::sync::{mpsc, watch};

use crate::controller::clock::unix_ms;

/// A proxy must say hello this soon after connecting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A proxy reports every second; one silent this long is gone.
const SILENCE: Duration = Duration::from_secs(30);
/// How often a subscription hears that its control plane is alive (and
/// whether it leads).
const ALIVE_EVERY: Duration = Duration::from_secs(1);

/// Who this control plane is, as proxies are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// This process's name in the fleet (its lease holder name).
    pub name: String,
    /// Whether it leads (only the leader's controllers act; a follower
    /// serves the snapshots the leader stored).
    pub leader: bool,
    /// Where the leader's API is, when this is not it.
    pub leader_url: Option<String>,
}

/// The fleet as one control-plane process sees it.
#[derive(Debug)]
pub struct Fleet {
    services: BTreeMap<String, Feed>,
    roster: Mutex<Roster>,
    /// Bumped on every publish, so sessions look for new snapshots.
    published: watch::Sender<u64>,
    standing: watch::Sender<Standing>,
    next_session: AtomicU64,
}

#[derive(Debug)]
struct Feed {
    latest: Mutex<Option<Arc<Snapshot>>>,
    /// Bumped when the roster changes anything about the service.
    changed: watch::Sender<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Fleet {
    pub fn new(services: impl IntoIterator<Item = String>, standing: Standing) -> Arc<Fleet> {
        Arc::new(Fleet {
            services: services
                .into_iter()
                .map(|s| {
                    (
                        s,
                        Feed {
                            latest: Mutex::new(None),
                            changed: watch::channel(0).0,
                        },
                    )
                })
                .collect(),
            roster: Mutex::new(Roster::default()),
            published: watch::channel(0).0,
            standing: watch::channel(standing).0,
            next_session: AtomicU64::new(1),
        })
    }

    pub fn standing(&self) -> Standing {
        self.standing.borrow().clone()
    }

    /// Leadership changed: sessions opened from now on are told so.
    pub fn set_standing(&self, standing: Standing) {
        self.standing.send_replace(standing);
    }

    pub fn service_names(&self) -> impl Iterator<Item = &String> {
        self.services.keys()
    }

    /// Makes `snapshot` the one every follower of its service gets.
    /// Older generations than the one held are ignored.
    pub fn publish(&self, snapshot: Arc<Snapshot>) {
        let Some(feed) = self.services.get(&snapshot.service) else {
            return;
        };
        {
            let mut latest = lock(&feed.latest);
            if latest
                .as_ref()
                .is_some_and(|l| l.epoch == snapshot.epoch && l.generation >= snapshot.generation)
            {
                return;
            }
            *latest = Some(snapshot);
        }
        self.published.send_modify(|n| *n += 1);
    }

    pub fn latest(&self, service: &str) -> Option<Arc<Snapshot>> {
        self.services
            .get(service)
            .and_then(|f| lock(&f.latest).clone())
    }

    /// Changes whenever a proxy answers or reports about `service`.
    pub fn changes(&self, service: &str) -> Option<watch::Receiver<u64>> {
        self.services.get(service).map(|f| f.changed.subscribe())
    }

    /// Reads the roster.
    pub fn roster<R>(&self, f: impl FnOnce(&Roster) -> R) -> R {
        f(&lock(&self.roster))
    }

    fn touched(&self, service: &str) {
        if let Some(feed) = self.services.get(service) {
            feed.changed.send_modify(|n| *n += 1);
        }
    }

    fn touched_all(&self, services: &[String]) {
        for s in services {
            self.touched(s);
        }
    }

    /// Forgets old windows and long-gone proxies; call now and then.
    pub fn prune(&self) {
        lock(&self.roster).prune(unix_ms());
    }

    /// A door for the proxy embedded in this process.
    pub fn local_door(self: &Arc<Self>) -> Arc<dyn Attach> {
        Arc::new(LocalDoor {
            fleet: Arc::clone(self),
        })
    }

    /// The services a hello asks for, or why it cannot be served.
    fn subscription(&self, hello: &Hello) -> Result<Vec<String>, (String, String)> {
        if hello.protocol != PROTOCOL {
            return Err((
                "protocol".into(),
                format!(
                    "this control plane speaks fleet protocol {PROTOCOL}, the proxy {}; run the same backout version on both",
                    hello.protocol
                ),
            ));
        }
        if !backout_spec::is_valid_name(&hello.name) {
            return Err((
                "invalid_name".into(),
                format!(
                    "proxy name {:?} is not valid: use 1 to 63 lower-case letters, digits, `-`, `_` or `.`",
                    hello.name
                ),
            ));
        }
        if hello.services.is_empty() {
            return Ok(self.services.keys().cloned().collect());
        }
        let unknown: Vec<&String> = hello
            .services
            .iter()
            .filter(|s| !self.services.contains_key(*s))
            .collect();
        if !unknown.is_empty() {
            let known: Vec<&str> = self.services.keys().map(String::as_str).collect();
            return Err((
                "unknown_service".into(),
                format!(
                    "this control plane has no service {}; it has: {}",
                    unknown
                        .iter()
                        .map(|s| format!("{s:?}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    known.join(", ")
                ),
            ));
        }
        Ok(hello.services.clone())
    }
}

/// Serves one subscription until either side ends it: the hello, the
/// welcome, every service's current snapshot, then new snapshots as they
/// are published while the proxy's answers and reports go into the
/// roster.
pub async fn drive(
    fleet: Arc<Fleet>,
    mut incoming: mpsc::Receiver<FromProxy>,
    outgoing: mpsc::Sender<ToProxy>,
    address: String,
) {
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, incoming.recv()).await {
        Ok(Some(FromProxy::Hello(h))) => h,
        Ok(Some(_)) => {
            let _ = outgoing
                .send(ToProxy::Refused {
                    code: "hello_first".into(),
                    message: "the first message of a subscription must be a hello".into(),
                })
                .await;
            return;
        }
        _ => return,
    };
    let services = match fleet.subscription(&hello) {
        Ok(s) => s,
        Err((code, message)) => {
            tracing::warn!(proxy = %hello.name, %address, %code, "{message}");
            let _ = outgoing.send(ToProxy::Refused { code, message }).await;
            return;
        }
    };
    let session = fleet.next_session.fetch_add(1, Ordering::Relaxed);
    lock(&fleet.roster).join(session, &hello, &address, &services, unix_ms());
    fleet.touched_all(&services);
    tracing::info!(proxy = %hello.name, %address, services = ?services, "proxy subscribed");
    let standing = fleet.standing();
    let welcome = ToProxy::Welcome(Welcome {
        protocol: PROTOCOL,
        control_plane: standing.name,
        leader: standing.leader,
        leader_url: standing.leader_url,
        services: services.clone(),
    });
    let mut sent: BTreeMap<String, (String, u64)> = BTreeMap::new();
    let mut published = fleet.published.subscribe();
    let mut alive = tokio::time::interval(ALIVE_EVERY);
    alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    alive.tick().await;
    let _: Option<()> = async {
        outgoing.send(welcome).await.ok()?;
        loop {
            for s in &services {
                let Some(snap) = fleet.latest(s) else {
                    continue;
                };
                let stamp = (snap.epoch.clone(), snap.generation);
                if sent.get(s) == Some(&stamp) {
                    continue;
                }
                outgoing
                    .send(ToProxy::Snapshot(Box::new((*snap).clone())))
                    .await
                    .ok()?;
                sent.insert(s.clone(), stamp);
            }
            tokio::select! {
                changed = published.changed() => changed.ok()?,
                _ = alive.tick() => {
                    let standing = fleet.standing();
                    outgoing.send(ToProxy::Alive {
                        leader: standing.leader,
                        leader_url: standing.leader_url,
                    }).await.ok()?;
                }
                msg = tokio::time::timeout(SILENCE, incoming.recv()) => {
                    let msg = msg.ok()??;
                    let service = lock(&fleet.roster).receive(session, &msg, unix_ms());
                    if let Some(s) = service {
                        fleet.touched(&s);
                    }
                }
            }
        }
    }
    .await;
    lock(&fleet.roster).leave(session, unix_ms());
    fleet.touched_all(&services);
    tracing::info!(proxy = %hello.name, %address, "proxy unsubscribed");
}

/// In-process subscriptions for the embedded proxy.
struct LocalDoor {
    fleet: Arc<Fleet>,
}

impl Attach for LocalDoor {
    fn attach(&self) -> Result<Conn, String> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| "no async runtime".to_string())?;
        let (to_cp, from_proxy) = mpsc::channel(64);
        let (to_proxy, from_cp) = mpsc::channel(64);
        runtime.spawn(drive(
            Arc::clone(&self.fleet),
            from_proxy,
            to_proxy,
            "in-process".into(),
        ));
        Ok(Conn {
            tx: to_cp,
            rx: from_cp,
            peer: "in-process".into(),
        })
    }
}
