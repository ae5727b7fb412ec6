use super::{scope_covers, types, ALL_SCOPES};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::Notify;

/// What a successful connect grants a connection.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub role: types::Role,
    pub scopes: Vec<types::Scope>,
    /// A digest of the gateway credential the client presented; None
    /// when it presented none (auth mode none), its own node token or a
    /// device token.
    pub credential: Option<[u8; 32]>,
    /// The paired device whose token it presented.
    pub device: Option<String>,
}

impl Grant {
    pub fn allows(&self, needed: types::Scope) -> bool {
        self.scopes.iter().any(|held| scope_covers(*held, needed))
    }
}

/// The set of scopes `held` covers, one bit per scope of ALL_SCOPES.
pub fn covered_mask(held: &[types::Scope]) -> u32 {
    ALL_SCOPES
        .iter()
        .enumerate()
        .filter(|(_, needed)| held.iter().any(|h| scope_covers(*h, **needed)))
        .fold(0, |mask, (i, _)| mask | (1 << i))
}

fn bit(scope: types::Scope) -> u32 {
    ALL_SCOPES
        .iter()
        .position(|s| *s == scope)
        .map_or(0, |i| 1 << i)
}

/// An upgrade request that says it came through Tailscale Serve for this
/// tailnet user; the gateway asks the daemon before believing it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeClaim {
    pub login: String,
    /// The tailnet address Serve forwarded for.
    pub client: IpAddr,
}

/// The facts about the connection a call arrives on.
#[derive(Debug)]
pub struct CallContext {
    pub conn_id: String,
    pub remote_ip: IpAddr,
    grant: OnceLock<Grant>,
    /// The scopes the connection holds now: its grant, narrowed by the
    /// config in force (scopes removed from gateway.auth.scopes stop
    /// working on open connections too).
    live: AtomicU32,
    /// The paired node this connection speaks for, once known.
    node: OnceLock<String>,
    /// The device whose key this connection proved it holds (an OpenClaw
    /// device signature), whatever credential it used.
    device: OnceLock<String>,
    kick: Arc<Kick>,
    /// When the connection last sent a request (ms since the epoch).
    pub activity: Arc<AtomicU64>,
    /// What its upgrade request claimed, when it came through Tailscale
    /// Serve and gateway.auth.allowTailscale is on (boxed: rare, and
    /// every idle connection would pay for it inline).
    pub serve_claim: Option<Box<ServeClaim>>,
}

/// Lets the gateway close a connection from outside (a removed node, a
/// node that missed its heartbeats).
#[derive(Debug, Default)]
pub struct Kick {
    reason: OnceLock<&'static str>,
    signal: Notify,
}

impl Kick {
    /// Asks the connection to close with this reason; the first reason wins.
    pub fn kick(&self, reason: &'static str) {
        let _ = self.reason.set(reason);
        self.signal.notify_one();
    }

    /// Resolves once kicked, with the reason.
    pub async fn kicked(&self) -> &'static str {
        self.signal.notified().await;
        self.reason
            .get()
            .copied()
            .unwrap_or("closed by the gateway")
    }
}

impl CallContext {
    pub fn new(conn_id: String, remote_ip: IpAddr) -> Self {
        CallContext {
            conn_id,
            remote_ip,
            grant: OnceLock::new(),
            live: AtomicU32::new(0),
            node: OnceLock::new(),
            device: OnceLock::new(),
            kick: Arc::new(Kick::default()),
            activity: Arc::default(),
            serve_claim: None,
        }
    }

    /// Records a request, for presence.
    pub fn touch(&self) {
        self.activity
            .store(crate::clock::now_ms(), Ordering::Relaxed);
    }

    /// The node this connection is, once paired or authenticated as one.
    pub fn node_id(&self) -> Option<&str> {
        self.node.get().map(String::as_str)
    }

    /// Binds the connection to a node; false if it already is bound.
    pub fn bind_node(&self, id: String) -> bool {
        self.node.set(id).is_ok()
    }

    /// Records the device the connection proved it holds the key of.
    pub fn prove_device(&self, id: String) {
        let _ = self.device.set(id);
    }

    /// The device this connection speaks for: the one it proved, else the
    /// one whose device token it presented.
    pub fn device_id(&self) -> Option<&str> {
        self.device
            .get()
            .map(String::as_str)
            .or_else(|| self.grant()?.device.as_deref())
    }

    pub fn kick(&self) -> &Arc<Kick> {
        &self.kick
    }

    /// The grant, once connect has succeeded.
    pub fn grant(&self) -> Option<&Grant> {
        self.grant.get()
    }

    /// Records the grant of a successful connect; false if one was already set.
    pub fn set_grant(&self, grant: Grant) -> bool {
        let mask = covered_mask(&grant.scopes);
        let set = self.grant.set(grant).is_ok();
        if set {
            self.live.store(mask, Ordering::Release);
        }
        set
    }

    /// Whether the connection may use `needed` now.
    pub fn allows(&self, needed: types::Scope) -> bool {
        self.live.load(Ordering::Acquire) & bit(needed) != 0
    }

    /// Narrows what the connection may do to what `held` covers (never
    /// beyond its grant).
    pub fn restrict_to(&self, held: &[types::Scope]) {
        let granted = self.grant().map_or(0, |g| covered_mask(&g.scopes));
        self.live
            .store(granted & covered_mask(held), Ordering::Release);
    }
}
