use super::Gateway;
use crate::protocol::types::{ConnectionCounts, Role};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Counts of open connections, by role once connect succeeds.
#[derive(Default)]
pub struct Connections {
    total: AtomicUsize,
    operators: AtomicUsize,
    nodes: AtomicUsize,
    next_id: AtomicU64,
    closed: Notify,
}

impl Connections {
    pub fn counts(&self) -> ConnectionCounts {
        ConnectionCounts {
            operator: self.operators.load(Ordering::Relaxed) as u64,
            node: self.nodes.load(Ordering::Relaxed) as u64,
            total: self.total.load(Ordering::Relaxed) as u64,
        }
    }

    fn role_counter(&self, role: Role) -> &AtomicUsize {
        match role {
            Role::Operator => &self.operators,
            Role::Node => &self.nodes,
        }
    }

    /// Waits until every connection has closed, or `timeout` passes.
    /// Returns whether all closed.
    pub async fn wait_all_closed(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.closed.notified();
            if self.total.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.total.load(Ordering::Acquire) == 0;
            }
        }
    }
}

/// One open connection's place in the count; frees it when dropped.
pub struct ConnectionSlot {
    gateway: Arc<Gateway>,
    pub conn_id: String,
    role: Option<Role>,
}

impl ConnectionSlot {
    /// Counts a new socket. Unauthenticated sockets are capped by the
    /// server's admission; the connection limit applies at connect.
    pub fn open(gateway: &Arc<Gateway>) -> ConnectionSlot {
        let conns = &gateway.connections;
        conns.total.fetch_add(1, Ordering::AcqRel);
        let id = conns.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        ConnectionSlot {
            gateway: Arc::clone(gateway),
            conn_id: format!("c{id}-{:08x}", rand_suffix()),
            role: None,
        }
    }

    /// Whether another connection may authenticate under a limit of `max`.
    pub fn has_room(&self, max: usize) -> bool {
        let conns = &self.gateway.connections;
        conns.operators.load(Ordering::Relaxed) + conns.nodes.load(Ordering::Relaxed) < max
    }

    pub fn set_role(&mut self, role: Role) {
        if self.role.is_none() {
            self.gateway
                .connections
                .role_counter(role)
                .fetch_add(1, Ordering::Relaxed);
            self.role = Some(role);
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if self.role == Some(Role::Node) {
            self.gateway.nodes.disconnected(&self.conn_id);
        }
        if self.role.is_some() {
            self.gateway.devices.disconnected(&self.conn_id);
            self.gateway.rt.presence.leave(&self.conn_id);
        }
        let conns = &self.gateway.connections;
        if let Some(role) = self.role {
            conns.role_counter(role).fetch_sub(1, Ordering::Relaxed);
        }
        conns.total.fetch_sub(1, Ordering::AcqRel);
        conns.closed.notify_waiters();
    }
}

fn rand_suffix() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}
