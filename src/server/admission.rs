//! Caps on connections that have not authenticated: plain HTTP
//! connections and WebSockets before a successful connect. When a cap is
//! reached the oldest such connection is closed to make room, so a flood
//! of unauthenticated sockets can slow the owner down but never lock the
//! owner out, and never eats into the authenticated connection limit.

use crate::gateway::{client_key, ClientKey};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Default)]
pub struct Admission {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next: u64,
    /// Admitted connections by age (ids grow).
    open: BTreeMap<u64, (ClientKey, Arc<Eviction>)>,
    per_client: HashMap<ClientKey, usize>,
}

/// One unauthenticated connection's place; dropping it frees the place.
pub struct Ticket {
    id: u64,
    admission: Arc<Admission>,
    eviction: Arc<Eviction>,
}

/// Set once when a connection is closed to make room; any number of
/// tasks may wait for it.
#[derive(Default)]
pub struct Eviction {
    done: AtomicBool,
    signal: Notify,
}

impl Eviction {
    fn evict(&self) {
        self.done.store(true, Ordering::Release);
        self.signal.notify_waiters();
    }

    /// Resolves once the connection was evicted.
    pub async fn wait(&self) {
        loop {
            let notified = self.signal.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.done.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

impl Admission {
    /// Admits a connection from `ip`, closing older ones (of that client
    /// first) when a cap would be passed.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, max_total: usize, max_per_client: usize) -> Ticket {
        let key = client_key(ip);
        let eviction = Arc::new(Eviction::default());
        let mut state = self.state.lock().expect("admission lock");
        while state.per_client.get(&key).copied().unwrap_or(0) >= max_per_client.max(1) {
            let oldest = state
                .open
                .iter()
                .find(|(_, (k, _))| *k == key)
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => state.evict(id),
                None => break,
            }
        }
        while state.open.len() >= max_total.max(1) {
            let Some(id) = state.open.keys().next().copied() else {
                break;
            };
            state.evict(id);
        }
        state.next += 1;
        let id = state.next;
        state.open.insert(id, (key, Arc::clone(&eviction)));
        *state.per_client.entry(key).or_default() += 1;
        Ticket {
            id,
            admission: Arc::clone(self),
            eviction,
        }
    }

    pub fn open_count(&self) -> usize {
        self.state.lock().expect("admission lock").open.len()
    }
}

impl State {
    fn evict(&mut self, id: u64) {
        if let Some((key, eviction)) = self.remove(id) {
            tracing::info!(client = ?key, "closing the oldest unauthenticated connection to make room");
            eviction.evict();
        }
    }

    fn remove(&mut self, id: u64) -> Option<(ClientKey, Arc<Eviction>)> {
        let (key, signal) = self.open.remove(&id)?;
        if let Some(n) = self.per_client.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&key);
            }
        }
        Some((key, signal))
    }
}

impl Ticket {
    /// What tells when the connection was closed to make room for a newer one.
    pub fn eviction(&self) -> Arc<Eviction> {
        Arc::clone(&self.eviction)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.admission.state.lock().expect("admission lock");
        state.remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Waker};

    fn was_evicted(ticket: &Ticket) -> bool {
        let eviction = ticket.eviction();
        let future = std::pin::pin!(eviction.wait());
        future
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    }

    #[test]
    fn a_full_client_loses_its_oldest_connection() {
        let admission = Arc::new(Admission::default());
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.1".parse().unwrap();
        let first = admission.admit(local, 10, 2);
        let elsewhere = admission.admit(other, 10, 2);
        let second = admission.admit("127.0.0.2".parse().unwrap(), 10, 2);
        let third = admission.admit(local, 10, 2);
        assert!(was_evicted(&first));
        assert!(!was_evicted(&second) && !was_evicted(&third) && !was_evicted(&elsewhere));
        assert_eq!(admission.open_count(), 3);
    }

    #[test]
    fn a_full_gateway_loses_its_oldest_connection() {
        let admission = Arc::new(Admission::default());
        let tickets: Vec<Ticket> = (1..=3)
            .map(|i| admission.admit(format!("10.0.0.{i}").parse().unwrap(), 3, 3))
            .collect();
        let newest = admission.admit("10.0.0.9".parse().unwrap(), 3, 3);
        assert!(was_evicted(&tickets[0]));
        assert!(!was_evicted(&tickets[1]) && !was_evicted(&newest));
        drop(tickets);
        assert_eq!(admission.open_count(), 1);
    }
}
