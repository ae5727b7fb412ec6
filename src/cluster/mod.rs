//! Where a gateway keeps its state and sends its events: the embedded
//! SQLite file and in-process bus, or, in cluster mode, a PostgreSQL
//! database and a NATS server shared with the other gateways.

mod bus;
mod lease;
mod members;
pub mod rpc;

pub use bus::NatsBus;
pub use lease::{wait_lost, Lease, Leases};
pub use members::{refresh as refresh_membership, spawn as spawn_membership, SESSION_LEASE_PREFIX};

use crate::bus::Bus;
use crate::config::Config;
use crate::store::{ClusterStore, PgStore, Store, Stores};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The stores and the bus the services are built on.
pub struct Backend {
    pub stores: Stores,
    pub bus: Bus,
    pub membership: Option<Arc<Membership>>,
}

/// This gateway as a member of a cluster.
pub struct Membership {
    pub name: String,
    pub lease_ms: u64,
    pub started_at_ms: u64,
    pub store: Arc<dyn ClusterStore>,
    pub leases: Leases,
    pub nats: Option<async_nats::Client>,
    /// cluster.nats.subjectPrefix.
    pub subject_prefix: String,
    /// The members seen at the last renewal, by name.
    pub seen: std::sync::Mutex<Vec<String>>,
    /// Why this gateway must stop: another process took its member name.
    displaced: tokio::sync::watch::Sender<Option<String>>,
}

impl Membership {
    /// Resolves, with the reason, once another process has taken this
    /// gateway's member name: the gateway must stop, or two would act as
    /// one member (the same leases, the same nodes).
    pub async fn displaced(&self) -> String {
        let mut displaced = self.displaced.subscribe();
        let reason = displaced
            .wait_for(Option::is_some)
            .await
            .map(|reason| reason.clone().unwrap_or_default());
        reason.unwrap_or_default()
    }

    /// Why this gateway was displaced, if it was.
    pub fn displacement(&self) -> Option<String> {
        self.displaced.borrow().clone()
    }

    /// The NATS subject `<prefix>.<topic>`.
    pub fn subject(&self, topic: &str) -> String {
        format!("{}.{topic}", self.subject_prefix)
    }

    /// The subject `<prefix>.<topic>` and the NATS client; None without
    /// a bus.
    pub fn bus(&self, topic: &str) -> Option<(String, async_nats::Client)> {
        Some((self.subject(topic), self.nats.clone()?))
    }

    /// The other members alive now, as the store has them (those seen at
    /// the last renewal if it cannot be reached).
    pub async fn others(&self) -> Vec<String> {
        if let Ok(members) = self.store.members(self.lease_ms).await {
            *self.seen.lock().expect("members seen") =
                members.into_iter().map(|m| m.name).collect();
        }
        let seen = self.seen.lock().expect("members seen");
        seen.iter().filter(|m| **m != self.name).cloned().collect()
    }
}

/// How long startup waits for NATS before giving up with a clear error.
const NATS_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Backend {
    /// One gateway: everything in the SQLite database of `state_dir`.
    pub fn embedded(store: Store) -> Backend {
        Backend {
            stores: Stores::sqlite(store),
            bus: Bus::local(),
            membership: None,
        }
    }

    /// The backend the config asks for.
    pub async fn open(config: &Config, state_dir: &Path) -> Result<Backend, String> {
        let cluster = &config.cluster;
        let Some(store_config) = &cluster.store else {
            let store = Store::open(state_dir)
                .map_err(|e| format!("cannot open the store in {}: {e}", state_dir.display()))?;
            return Ok(Backend::embedded(store));
        };
        let url = store_config.url.as_str();
        let password = store_config.password.as_ref().map(|p| p.as_str());
        let store = PgStore::connect(url, password, store_config.max_connections.get() as usize)
            .await
            .map_err(|e| format!("cannot open the PostgreSQL store at {url}: {e}"))?;
        let name = cluster
            .name
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_else(default_member_name);
        let (bus, nats) = match &cluster.nats {
            None => (Bus::local(), None),
            Some(nats) => {
                let mut options = async_nats::ConnectOptions::new()
                    .name(format!("clawgate {name}"))
                    .connection_timeout(NATS_CONNECT_TIMEOUT);
                if let Some(token) = &nats.token {
                    options = options.token(token.to_string());
                }
                let client = options.connect(nats.url.as_str()).await.map_err(|e| {
                    format!("cannot reach the NATS server at {}: {e}", nats.url.as_str())
                })?;
                let bus = NatsBus::start(
                    client.clone(),
                    nats.subject_prefix.as_str(),
                    &name,
                    crate::bus::LOCAL_CAPACITY,
                )
                .await
                .map_err(|e| format!("cannot subscribe on NATS: {e}"))?;
                (Bus::new(Arc::new(bus)), Some(client))
            }
        };
        let store = Arc::new(store);
        let lease_ms = cluster.lease_ms.max(0) as u64;
        let membership = Arc::new(Membership {
            leases: Leases::new(
                store.clone(),
                name.clone(),
                lease_ms,
                nats.clone()
                    .zip(cluster.nats.as_ref().map(|n| n.subject_prefix.as_str())),
            ),
            store: store.clone(),
            started_at_ms: crate::clock::now_ms(),
            name,
            lease_ms,
            subject_prefix: cluster
                .nats
                .as_ref()
                .map_or_else(String::new, |n| n.subject_prefix.to_string()),
            nats,
            seen: Default::default(),
            displaced: tokio::sync::watch::channel(None).0,
        });
        membership.join().await?;
        Ok(Backend {
            stores: Stores::all_in(store),
            bus,
            membership: Some(membership),
        })
    }
}

/// The host name and the process id: unique among gateways on one host.
fn default_member_name() -> String {
    format!("{}-{}", crate::discovery::host_name(), std::process::id())
}
