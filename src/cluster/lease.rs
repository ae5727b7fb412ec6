//! Leases in the shared store: work only one gateway may do at a time (a
//! session's turn, a channel account). The holder renews its lease at a
//! third of its life; a gateway that dies stops renewing, and the lease
//! lapses for another to take. Expiry is the store's clock; a lease is
//! renewed and released only under the token of its taking, so a late
//! renewal or release never touches a newer taking. With NATS, a release
//! is announced on `<prefix>.leases.released.<hex name>`, so a gateway
//! waiting for the lease takes it at once rather than at its next look.

use crate::store::{ClusterStore, StoreError};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long a waiting gateway sleeps between attempts, at most.
const MAX_POLL: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub struct Leases {
    store: Arc<dyn ClusterStore>,
    member: String,
    /// Names this process in its tokens: another process under the same
    /// member name (a restart, a misconfigured twin) cannot renew, release
    /// or take over what this one holds.
    process: Arc<str>,
    ttl_ms: u64,
    releases: Option<Releases>,
}

/// Where releases are announced.
#[derive(Clone)]
struct Releases {
    client: async_nats::Client,
    prefix: String,
}

impl Releases {
    /// One subject per lease: a waiter hears only of its own. Hex, as a
    /// lease name may hold characters NATS gives a meaning.
    fn subject(&self, name: &str) -> String {
        format!("{}.leases.released.{}", self.prefix, hex::encode(name))
    }

    async fn announce(&self, name: &str) {
        let subject = self.subject(name);
        if let Err(e) = self.client.publish(subject, Default::default()).await {
            tracing::debug!(lease = %name, "cluster: cannot announce a release: {e}");
        }
    }
}

impl Leases {
    /// `bus`: the NATS client and subject prefix releases are announced
    /// with, if any.
    pub fn new(
        store: Arc<dyn ClusterStore>,
        member: String,
        ttl_ms: u64,
        bus: Option<(async_nats::Client, &str)>,
    ) -> Self {
        Leases {
            store,
            member,
            process: uuid::Uuid::new_v4().simple().to_string().into(),
            ttl_ms,
            releases: bus.map(|(client, prefix)| Releases {
                client,
                prefix: prefix.to_string(),
            }),
        }
    }

    pub fn member(&self) -> &str {
        &self.member
    }

    /// The lease `name` if nobody else holds it.
    pub async fn try_acquire(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let token = format!("{}:{}", self.process, uuid::Uuid::new_v4().simple());
        let asked = Instant::now();
        let taken = self
            .store
            .acquire_lease(
                name.to_string(),
                self.member.clone(),
                token.clone(),
                self.ttl_ms,
            )
            .await?;
        Ok(taken.then(|| self.hold(name, token, asked)))
    }

    /// Waits until the lease `name` is free and takes it: for work held
    /// briefly (a turn), so it looks again within 200 ms.
    pub async fn acquire(&self, name: &str) -> Result<Lease, StoreError> {
        self.acquire_polling(name, MAX_POLL).await
    }

    /// Waits until the lease `name` lapses or is released, and takes it:
    /// for work held until its gateway stops (a channel account), so it
    /// looks again every third of the lease's life rather than burden the
    /// store with the polls of every gateway standing by.
    pub async fn take_over(&self, name: &str) -> Result<Lease, StoreError> {
        let third = Duration::from_millis(self.ttl_ms / 3).max(MAX_POLL);
        self.acquire_polling(name, third).await
    }

    async fn acquire_polling(&self, name: &str, at_most: Duration) -> Result<Lease, StoreError> {
        let mut pause = Duration::from_millis(10);
        // A long wait listens before its first try, so no release can
        // fall between; a turn's first try usually succeeds, and listens
        // only after a miss.
        let mut released = None;
        if at_most > MAX_POLL {
            released = self.listen(name).await;
        }
        loop {
            if let Some(lease) = self.try_acquire(name).await? {
                return Ok(lease);
            }
            // Listening from the first miss on: a release announced from
            // now on ends the pause at once.
            if released.is_none() {
                released = self.listen(name).await;
            }
            let announced = async {
                match released.as_mut() {
                    Some(released) => {
                        if released.next().await.is_none() {
                            std::future::pending::<()>().await
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => pause = (pause * 2).min(at_most),
                _ = announced => {}
            }
        }
    }

    /// The release announcements of lease `name`, from now on.
    async fn listen(&self, name: &str) -> Option<async_nats::Subscriber> {
        let releases = self.releases.as_ref()?;
        let released = releases
            .client
            .subscribe(releases.subject(name))
            .await
            .ok()?;
        // Subscribed at the server before the next try.
        let _ = releases.client.flush().await;
        Some(released)
    }

    fn hold(&self, name: &str, token: String, asked: Instant) -> Lease {
        let leases = self.clone();
        let lease_name = name.to_string();
        let renew_token = token.clone();
        let (lost_tx, lost) = watch::channel(false);
        let renewer = tokio::spawn(async move {
            let ttl = Duration::from_millis(leases.ttl_ms);
            let every = ttl / 3;
            // Until when the lease is surely ours: counted from before the
            // last taking or renewal that succeeded. Past it another
            // gateway may hold it, so the work it guards must stop.
            let mut held_until = asked + ttl;
            // After a failed renewal, tries again sooner: a short store
            // outage then costs no lease.
            let mut wait = every;
            loop {
                let next = Instant::now() + wait;
                let renew = async {
                    tokio::time::sleep_until(next).await;
                    let attempt = Instant::now();
                    let renewed = leases
                        .store
                        .renew_lease(lease_name.clone(), renew_token.clone(), leases.ttl_ms)
                        .await;
                    (attempt, renewed)
                };
                let (attempt, renewed) = tokio::select! {
                    done = renew => done,
                    _ = tokio::time::sleep_until(held_until) => {
                        tracing::warn!(lease = %lease_name, "cluster: a lease lapsed: it could not be renewed in time");
                        let _ = lost_tx.send(true);
                        return;
                    }
                };
                wait = if renewed.is_ok() { every } else { ttl / 10 };
                match renewed {
                    Ok(true) => held_until = attempt + ttl,
                    Ok(false) => {
                        tracing::warn!(lease = %lease_name, "cluster: lost a lease: it lapsed and was taken again");
                        let _ = lost_tx.send(true);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(lease = %lease_name, "cluster: cannot renew a lease: {e}")
                    }
                }
            }
        });
        Lease {
            name: name.to_string(),
            store: Arc::clone(&self.store),
            releases: self.releases.clone(),
            token,
            renewer,
            lost,
        }
    }
}

/// A held lease: renewed while it lives, released when dropped.
pub struct Lease {
    name: String,
    store: Arc<dyn ClusterStore>,
    releases: Option<Releases>,
    token: String,
    renewer: JoinHandle<()>,
    lost: watch::Receiver<bool>,
}

impl Lease {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A signal that turns true when the lease is lost.
    pub fn lost_signal(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }

    /// Gives the lease up now, and waits until the store has it.
    pub async fn release(mut self) {
        self.renewer.abort();
        let name = std::mem::take(&mut self.name);
        let token = std::mem::take(&mut self.token);
        give_up(&*self.store, self.releases.take(), name, token).await;
    }

    /// Resolves when the lease is lost (taken by another gateway after it
    /// lapsed, or not renewable for its whole life).
    pub async fn lost(&self) {
        wait_lost(self.lost.clone()).await
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
        if self.name.is_empty() {
            return; // released already
        }
        let store = Arc::clone(&self.store);
        let releases = self.releases.take();
        let name = std::mem::take(&mut self.name);
        let token = std::mem::take(&mut self.token);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { give_up(&*store, releases, name, token).await });
        }
    }
}

/// Releases the lease taken under `token`, and tells the gateways waiting
/// for it.
async fn give_up(
    store: &dyn ClusterStore,
    releases: Option<Releases>,
    name: String,
    token: String,
) {
    match store.release_lease(name.clone(), token).await {
        Ok(()) => {
            if let Some(releases) = releases {
                releases.announce(&name).await;
            }
        }
        Err(e) => {
            tracing::warn!(lease = %name, "cluster: cannot release a lease (it lapses by itself): {e}")
        }
    }
}

/// Resolves when a lease's [`Lease::lost_signal`] turns true.
pub async fn wait_lost(mut lost: watch::Receiver<bool>) {
    loop {
        if *lost.borrow_and_update() {
            return;
        }
        if lost.changed().await.is_err() {
            // The renewer ended without losing it: the lease was dropped.
            return std::future::pending().await;
        }
    }
}
