//! Following the configuration: a service receives each configuration put
//! in force together with the one before it and applies its own part; a
//! reload waits until every follower is done before it announces the
//! change, so a client that reacts to `config.changed` sees it applied.

use super::Config;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// One configuration put in force, numbered in order.
#[derive(Clone)]
pub(super) struct Version {
    pub number: u64,
    pub config: Arc<Config>,
}

/// Where followers report what they have applied.
#[derive(Default)]
pub(super) struct Followers {
    list: Mutex<Vec<Weak<AtomicU64>>>,
    progress: Notify,
}

impl Followers {
    fn join(&self, applied: u64) -> Arc<AtomicU64> {
        let mark = Arc::new(AtomicU64::new(applied));
        let mut list = self.list.lock().expect("followers");
        list.retain(|f| f.strong_count() > 0);
        list.push(Arc::downgrade(&mark));
        mark
    }

    fn all_reached(&self, number: u64) -> bool {
        let list = self.list.lock().expect("followers");
        list.iter()
            .filter_map(Weak::upgrade)
            .all(|applied| applied.load(Ordering::Acquire) >= number)
    }

    /// Waits until every live follower has applied version `number`;
    /// false when one has not within `limit`.
    pub async fn settled(&self, number: u64, limit: Duration) -> bool {
        tokio::time::timeout(limit, async {
            loop {
                let progress = self.progress.notified();
                tokio::pin!(progress);
                progress.as_mut().enable();
                if self.all_reached(number) {
                    return;
                }
                progress.await;
            }
        })
        .await
        .is_ok()
    }
}

/// A service's place in the line of configurations. Dropping it leaves
/// the line: reloads stop waiting for it.
pub struct Follower {
    versions: watch::Receiver<Version>,
    followers: Arc<Followers>,
    applied: Arc<AtomicU64>,
    seen: Arc<Config>,
}

impl Follower {
    pub(super) fn new(mut versions: watch::Receiver<Version>, followers: Arc<Followers>) -> Self {
        let current = versions.borrow_and_update().clone();
        let applied = followers.join(current.number);
        Follower {
            versions,
            followers,
            applied,
            seen: current.config,
        }
    }

    /// Waits for the next configuration put in force (several quick ones
    /// arrive as the last); None once the config service is gone.
    pub async fn next(&mut self) -> Option<Change<'_>> {
        self.versions.changed().await.ok()?;
        let version = self.versions.borrow_and_update().clone();
        let before = std::mem::replace(&mut self.seen, Arc::clone(&version.config));
        Some(Change {
            before,
            after: version.config,
            number: version.number,
            follower: self,
        })
    }
}

/// A new configuration for a follower to apply; it counts as applied
/// when dropped.
pub struct Change<'a> {
    pub before: Arc<Config>,
    pub after: Arc<Config>,
    number: u64,
    follower: &'a Follower,
}

impl Drop for Change<'_> {
    fn drop(&mut self) {
        self.follower.applied.store(self.number, Ordering::Release);
        self.follower.followers.progress.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Arc<Config> {
        Arc::new(crate::testing::config(""))
    }

    #[tokio::test]
    async fn a_reload_waits_for_every_follower_and_not_for_one_that_left() {
        let followers = Arc::new(Followers::default());
        let (tx, rx) = watch::channel(Version {
            number: 0,
            config: config(),
        });
        let mut quick = Follower::new(rx.clone(), Arc::clone(&followers));
        let slow = Follower::new(rx, Arc::clone(&followers));
        tx.send_replace(Version {
            number: 1,
            config: config(),
        });
        let change = quick.next().await.expect("a change");
        assert!(Arc::ptr_eq(&change.after, &tx.borrow().config));
        drop(change);
        assert!(
            !followers.settled(1, Duration::from_millis(20)).await,
            "the slow follower has not applied version 1"
        );
        drop(slow);
        assert!(followers.settled(1, Duration::from_millis(20)).await);
    }
}
