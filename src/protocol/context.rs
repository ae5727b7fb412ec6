use super::{scope_covers, types};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use tokio::sync::Notify;

/// What a successful connect grants a connection.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub role: types::Role,
    pub scopes: Vec<types::Scope>,
}

impl Grant {
    pub fn allows(&self, needed: types::Scope) -> bool {
        self.scopes.iter().any(|held| scope_covers(*held, needed))
    }
}

/// The facts about the connection a call arrives on.
#[derive(Debug)]
pub struct CallContext {
    pub conn_id: String,
    pub remote_ip: IpAddr,
    grant: OnceLock<Grant>,
    /// The paired node this connection speaks for, once known.
    node: OnceLock<String>,
    kick: Arc<Kick>,
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
            node: OnceLock::new(),
            kick: Arc::new(Kick::default()),
        }
    }

    /// The node this connection is, once paired or authenticated as one.
    pub fn node_id(&self) -> Option<&str> {
        self.node.get().map(String::as_str)
    }

    /// Binds the connection to a node; false if it already is bound.
    pub fn bind_node(&self, id: String) -> bool {
        self.node.set(id).is_ok()
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
        self.grant.set(grant).is_ok()
    }
}
