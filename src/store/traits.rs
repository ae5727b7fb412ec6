//! The store as services see it: one narrow trait per kind of record,
//! each implemented by the embedded SQLite [`Store`]. A service holds
//! only the traits it uses (in [`Stores`]), so a second implementation
//! (PostgreSQL) or a test's in-memory fake plugs in without changes
//! elsewhere.

use super::{Result, SessionChange, SessionFilter, Store, StoredNode};
use crate::protocol::types::{
    ApprovalAuditEntry, ChatMessage, ChatMessageStatus, ClusterLease, ClusterMember, CronJob,
    CronRun, HeartbeatRun, PairedDevice, SessionInfo, Usage,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a store call returns: the work happens off the caller's task.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// Declares a trait and implements it for [`Store`] by forwarding each
/// method to the inherent method of the same name.
macro_rules! store_trait {
    ($(#[$doc:meta])* $name:ident {
        $($(#[$fdoc:meta])* fn $f:ident(&self $(, $a:ident: $t:ty)*) -> $r:ty;)*
    }) => {
        $(#[$doc])*
        pub trait $name: Send + Sync {
            $($(#[$fdoc])* fn $f(&self $(, $a: $t)*) -> StoreFuture<'_, $r>;)*
        }

        impl $name for Store {
            $(fn $f(&self $(, $a: $t)*) -> StoreFuture<'_, $r> {
                Box::pin(Store::$f(self $(, $a)*))
            })*
        }
    };
}

store_trait! {
    /// Sessions and their transcripts.
    SessionStore {
        /// Stores the user's message, creating the session if new.
        fn begin_turn(&self, session_key: String, agent_id: String, run_id: String, text: String, now_ms: u64) -> ();
        /// Stores the assistant's message of the run and the usage.
        fn finish_turn(&self, session_key: String, run_id: String, text: String, status: ChatMessageStatus, usage: Usage, now_ms: u64) -> ChatMessage;
        fn session(&self, key: String) -> Option<SessionInfo>;
        fn list_sessions(&self, filter: SessionFilter) -> (Vec<SessionInfo>, Option<String>);
        /// Messages oldest first, and the cursor of the page before.
        fn history(&self, key: String, limit: usize, before: Option<u64>) -> Option<(Vec<ChatMessage>, Option<u64>)>;
        fn patch_session(&self, key: String, change: SessionChange) -> Option<SessionInfo>;
        /// Removes all but the latest `keep` messages: (removed, kept).
        fn clear_session(&self, key: String, keep: usize) -> Option<(u64, u64)>;
        fn delete_session(&self, key: String) -> bool;
    }
}

store_trait! {
    /// The results of requests with idempotency keys.
    ResultStore {
        fn idempotent_result(&self, key: String, since_ms: u64) -> Option<String>;
        fn remember_result(&self, key: String, result_json: String, now_ms: u64) -> ();
    }
}

store_trait! {
    /// Cron jobs and their runs.
    CronStore {
        fn cron_jobs(&self) -> Vec<CronJob>;
        /// Applies the writes in order, in one transaction.
        fn cron_apply(&self, writes: Vec<super::CronWrite>) -> ();
        fn cron_last_run_id(&self) -> u64;
        fn cron_runs(&self, job_id: String, limit: usize, before: Option<u64>) -> (Vec<CronRun>, Option<u64>);
        fn cron_unfinished_runs(&self) -> Vec<CronRun>;
        fn cron_run(&self, id: u64) -> Option<CronRun>;
    }
}

store_trait! {
    /// Paired nodes.
    NodeStore {
        fn nodes(&self) -> Vec<StoredNode>;
        /// Inserts, or replaces the node with the same id.
        fn add_node(&self, node: StoredNode) -> ();
        fn remove_node(&self, id: String) -> bool;
    }
}

store_trait! {
    /// Paired device identities.
    DeviceStore {
        fn devices(&self) -> Vec<PairedDevice>;
        /// Inserts or replaces the record.
        fn put_device(&self, device: PairedDevice) -> ();
        fn remove_device(&self, id: String) -> bool;
    }
}

store_trait! {
    /// The exec audit log and the commands allowed for good.
    AuditStore {
        fn exec_allowed(&self, agent_id: String) -> Vec<String>;
        fn record_exec_decision(&self, entry: ApprovalAuditEntry, binding: String) -> u64;
        fn exec_audit(&self, limit: usize, before: Option<u64>) -> (Vec<ApprovalAuditEntry>, Option<u64>);
    }
}

store_trait! {
    /// Where each channel account's inbound stream continues.
    ChannelStore {
        fn channel_offset(&self, channel: String, account: String) -> Option<i64>;
        fn set_channel_offset(&self, channel: String, account: String, next: i64) -> ();
    }
}

store_trait! {
    /// Each agent's last heartbeat.
    HeartbeatStore {
        fn last_heartbeats(&self) -> Vec<HeartbeatRun>;
        fn record_heartbeat(&self, run: HeartbeatRun) -> ();
    }
}

store_trait! {
    /// Removing what has expired.
    UpkeepStore {
        /// Drops idempotency keys older than `keys_before_ms` and audit
        /// entries older than `audit_before_ms`; returns how many of each.
        fn prune(&self, keys_before_ms: u64, audit_before_ms: Option<u64>) -> (usize, usize);
        /// Moves the write-ahead log into the database and lets SQLite
        /// refresh its query statistics; returns the pages checkpointed.
        fn compact(&self) -> u64;
        /// Deletes at most `limit` sessions last updated before
        /// `idle_before_ms`, with their transcripts; returns how many.
        fn prune_sessions(&self, idle_before_ms: u64, limit: usize) -> usize;
    }
}

/// The stores of one gateway, by kind.
#[derive(Clone)]
pub struct Stores {
    pub sessions: Arc<dyn SessionStore>,
    pub results: Arc<dyn ResultStore>,
    pub cron: Arc<dyn CronStore>,
    pub nodes: Arc<dyn NodeStore>,
    pub devices: Arc<dyn DeviceStore>,
    pub audit: Arc<dyn AuditStore>,
    pub channels: Arc<dyn ChannelStore>,
    pub heartbeats: Arc<dyn HeartbeatStore>,
    pub upkeep: Arc<dyn UpkeepStore>,
}

impl Stores {
    /// Every kind in the one SQLite database.
    pub fn sqlite(store: Store) -> Self {
        Stores::all_in(Arc::new(store))
    }

    /// Every kind kept by one implementation.
    pub fn all_in<S>(store: Arc<S>) -> Self
    where
        S: SessionStore
            + ResultStore
            + CronStore
            + NodeStore
            + DeviceStore
            + AuditStore
            + ChannelStore
            + HeartbeatStore
            + UpkeepStore
            + 'static,
    {
        Stores {
            sessions: store.clone(),
            results: store.clone(),
            cron: store.clone(),
            nodes: store.clone(),
            devices: store.clone(),
            audit: store.clone(),
            channels: store.clone(),
            heartbeats: store.clone(),
            upkeep: store,
        }
    }
}

/// What gateways in a cluster share besides the records: who is a
/// member, and leases (work only one gateway may do at a time). Kept by
/// the PostgreSQL store only: one embedded gateway needs none of it.
pub trait ClusterStore: Send + Sync {
    /// Records that `member`, the incarnation started at `started_at_ms`,
    /// is alive now. False while another incarnation under that name is:
    /// one seen within the last `stale_after_ms`.
    fn heartbeat(
        &self,
        member: String,
        version: String,
        started_at_ms: u64,
        stale_after_ms: u64,
        config: MemberConfig,
    ) -> StoreFuture<'_, bool>;
    /// Removes the member, if it is still this incarnation.
    fn leave(&self, member: String, started_at_ms: u64) -> StoreFuture<'_, ()>;
    /// The members seen within the last `within_ms`, by name.
    fn members(&self, within_ms: u64) -> StoreFuture<'_, Vec<ClusterMember>>;
    /// Takes the lease `name` for `holder` under `token` for `ttl_ms`:
    /// true when it was free or lapsed, or held by this same process (a
    /// token is `<process>:<taking>`); false while another's lease runs.
    fn acquire_lease(
        &self,
        name: String,
        holder: String,
        token: String,
        ttl_ms: u64,
    ) -> StoreFuture<'_, bool>;
    /// Extends the lease for another `ttl_ms` if it is still held under
    /// `token`; false when it was taken or released since.
    fn renew_lease(&self, name: String, token: String, ttl_ms: u64) -> StoreFuture<'_, bool>;
    /// Gives the lease up, if it is still held under `token` (not taken
    /// again since).
    fn release_lease(&self, name: String, token: String) -> StoreFuture<'_, ()>;
    /// The leases not expired, by name.
    fn leases(&self) -> StoreFuture<'_, Vec<ClusterLease>>;
    /// Records that node `node_id` is connected to `member`.
    fn node_connected(
        &self,
        node_id: String,
        member: String,
        connected_at_ms: u64,
    ) -> StoreFuture<'_, ()>;
    /// Records that node `node_id` left `member` (if it was there).
    fn node_disconnected(&self, node_id: String, member: String) -> StoreFuture<'_, ()>;
    /// Forgets every node connected to `member` (a new incarnation of it
    /// starts with none).
    fn forget_nodes_of(&self, member: String) -> StoreFuture<'_, ()>;
    /// Replaces the nodes recorded as connected to `member` with `nodes`.
    fn set_nodes_of(&self, member: String, nodes: Vec<NodePresence>) -> StoreFuture<'_, ()>;
    /// The nodes connected to members seen within the last `within_ms`.
    fn node_presence(&self, within_ms: u64) -> StoreFuture<'_, Vec<NodePresence>>;
    /// The secret `name` all members share: `candidate` when this member
    /// is the first to ask, else the one stored first.
    fn shared_secret(&self, name: String, candidate: String) -> StoreFuture<'_, String>;
}

/// What a member says of its config when it renews its membership.
#[derive(Clone, Debug, Default)]
pub struct MemberConfig {
    /// The hash of the config text in force; None on defaults.
    pub hash: Option<String>,
    /// Why the last reload was rejected, while the file holds it.
    pub error: Option<String>,
}

/// A node connected to a member of the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct NodePresence {
    pub node_id: String,
    pub member: String,
    pub connected_at_ms: u64,
}
