//! Channels: how people reach the assistant. The manager runs every
//! configured account as a supervised monitor (restarted with backoff and
//! jitter when it fails), follows config reloads account by account, and
//! hands inbound messages to the pipeline in [`inbound`].

mod inbound;
mod irc;
mod outbound;
mod plugin;
mod replay;
mod telegram;
pub mod webhook;

use crate::agent::Turns;
use crate::clock::now_ms;
use crate::config::Config;
use crate::limiter::FailureLimiter;
use crate::protocol::types::{
    BuiltinChannelKind, ChannelConnectedEvent, ChannelDisconnectedEvent, ChannelHealth,
    ChannelInfo, ChannelKind, ChannelStatus, DmPolicy, GroupPolicy,
};
use crate::protocol::Event;
use crate::runtime::Runtime;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

pub use inbound::Counters;
pub use outbound::{Delivery, Target};
pub use plugin::{BoxFuture, Opened, Outbox, PluginAccount, PluginChannels};

/// One account: its kind and id.
#[derive(Clone, Debug)]
pub struct Key {
    pub kind: ChannelKind,
    pub account: String,
}

impl Key {
    fn sort_key(&self) -> (String, &str) {
        (self.kind.to_string(), &self.account)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.account == other.account
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

/// The kind of a channel built into the gateway.
pub fn builtin(kind: BuiltinChannelKind) -> ChannelKind {
    ChannelKind::BuiltinChannelKind(kind)
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.account)
    }
}

/// Who may reach the assistant through an account.
#[derive(Clone, Debug)]
pub struct Policy {
    pub dm_policy: DmPolicy,
    pub allow_from: Vec<String>,
    pub groups: Vec<String>,
    pub require_mention: bool,
    pub group_policy: GroupPolicy,
    /// Who may speak in groups under the allowlist group policy.
    pub group_allow_from: Vec<String>,
}

/// An account's config, by kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Account {
    Telegram(crate::protocol::types::TelegramAccount),
    Irc(crate::protocol::types::IrcAccount),
    Webhook(crate::protocol::types::WebhookAccount),
    Plugin(plugin::PluginAccount),
}

impl Account {
    pub fn policy(&self) -> Policy {
        macro_rules! policy {
            ($a:expr) => {
                Policy {
                    dm_policy: $a.dm_policy,
                    allow_from: $a.allow_from.clone(),
                    groups: $a.groups.clone(),
                    require_mention: $a.require_mention,
                    group_policy: $a.group_policy,
                    group_allow_from: if $a.group_allow_from.is_empty() {
                        $a.allow_from.clone()
                    } else {
                        $a.group_allow_from.clone()
                    },
                }
            };
        }
        match self {
            Account::Telegram(a) => policy!(a),
            Account::Irc(a) => policy!(a),
            Account::Webhook(a) => policy!(a),
            Account::Plugin(a) => policy!(a.config),
        }
    }
}

/// Every enabled account in the config.
fn accounts(config: &Config) -> BTreeMap<Key, Account> {
    let mut all = BTreeMap::new();
    let key = |kind, id: &String| Key {
        kind,
        account: id.clone(),
    };
    let channels = &config.channels;
    for (id, a) in channels.telegram.iter().filter(|(_, a)| a.enabled) {
        let kind = builtin(BuiltinChannelKind::Telegram);
        all.insert(key(kind, id), Account::Telegram(a.clone()));
    }
    for (id, a) in channels.irc.iter().filter(|(_, a)| a.enabled) {
        let kind = builtin(BuiltinChannelKind::Irc);
        all.insert(key(kind, id), Account::Irc(a.clone()));
    }
    for (id, a) in channels.webhook.iter().filter(|(_, a)| a.enabled) {
        let kind = builtin(BuiltinChannelKind::Webhook);
        all.insert(key(kind, id), Account::Webhook(a.clone()));
    }
    for account in plugin::accounts(config) {
        let key = Key {
            kind: account.channel_kind(),
            account: account.id.clone(),
        };
        all.insert(key, Account::Plugin(account));
    }
    all
}

/// The channel accounts: each runs as a monitor task holding a `Link`
/// back to the manager, through which it reports and answers messages.
pub struct ChannelManager {
    rt: Runtime,
    turns: Arc<Turns>,
    monitors: Mutex<BTreeMap<Key, Monitor>>,
    replays: Mutex<replay::ReplayCache>,
    /// Bad webhook signatures and unknown webhook accounts, apart from
    /// the connect limiter so webhook senders cannot lock out operators.
    webhook_failures: FailureLimiter,
    /// Where plugin channel accounts reach their plugin.
    plugins: std::sync::OnceLock<std::sync::Weak<dyn PluginChannels>>,
    /// Where each session was last written to in a direct message.
    last_direct: Mutex<outbound::LastDirect>,
}

struct Monitor {
    account: Account,
    state: Arc<Mutex<State>>,
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    sender: Sender,
}

/// How a connected account sends on its own initiative: a reply to
/// nobody yet, retargeted for each message.
type Sender = Arc<Mutex<Option<inbound::Reply>>>;

/// What a monitor reports.
#[derive(Clone, Debug)]
struct State {
    status: ChannelStatus,
    last_error: Option<String>,
    since_ms: u64,
    restarts: u64,
    next_retry_at_ms: Option<u64>,
}

/// What a running account gets from its monitor.
pub struct Link {
    pub key: Key,
    pub counters: Arc<Counters>,
    stop: watch::Receiver<bool>,
    manager: Arc<ChannelManager>,
    state: Arc<Mutex<State>>,
    sender: Sender,
}

impl Link {
    /// Lets the gateway send through this connection on its own
    /// initiative (heartbeats), until it ends.
    pub fn can_send(&self, template: inbound::Reply) {
        *self.sender.lock().expect("channel sender") = Some(template);
    }

    /// Reports that the account is connected.
    pub fn connected(&self) {
        self.manager
            .set_status(&self.key, &self.state, ChannelStatus::Connected, None);
        self.manager
            .rt
            .bus
            .publish(Event::ChannelConnected(ChannelConnectedEvent {
                channel: self.key.kind.clone(),
                account_id: self.key.account.clone(),
            }));
    }

    /// Resolves when the account is to stop.
    pub async fn stopped(&self) {
        let mut stop = self.stop.clone();
        let _ = stop.wait_for(|s| *s).await;
    }

    pub fn runtime(&self) -> &Runtime {
        &self.manager.rt
    }

    /// Hands one inbound message to the pipeline (policy, turn, reply).
    pub fn dispatch(
        &self,
        policy: &Policy,
        message: inbound::Inbound,
        reply: inbound::Reply,
    ) -> Result<(), inbound::Refused> {
        inbound::dispatch(
            &self.manager,
            &self.key,
            policy,
            &self.counters,
            message,
            reply,
        )
    }
}

/// Restart delays: 1 s doubling to 60 s, each ±20% so accounts that fail
/// together do not retry together.
fn backoff(failures: u32) -> Duration {
    let base = 1000u64.saturating_mul(1 << failures.min(6)).min(60_000);
    let jitter = (uuid::Uuid::new_v4().as_u128() % 401) as u64; // 0..=400 ‰
    Duration::from_millis(base * (800 + jitter) / 1000)
}

/// A connection that stayed up this long resets the backoff.
const STABLE: Duration = Duration::from_secs(30);

impl ChannelManager {
    pub fn new(rt: Runtime, turns: Arc<Turns>) -> Arc<Self> {
        Arc::new(ChannelManager {
            rt,
            turns,
            monitors: Mutex::default(),
            replays: Mutex::default(),
            webhook_failures: FailureLimiter::new(Duration::from_secs(60)),
            plugins: std::sync::OnceLock::new(),
            last_direct: Mutex::default(),
        })
    }

    /// Connects plugin channel accounts to the plugins (set once, by the
    /// composition root).
    pub fn set_plugins(&self, plugins: std::sync::Weak<dyn PluginChannels>) {
        let _ = self.plugins.set(plugins);
    }

    /// Starts the configured accounts, then keeps them in line with each
    /// configuration put in force until the gateway drains.
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let mut follower = self.rt.config.follow();
        self.apply();
        let manager = Arc::clone(self);
        tokio::spawn(async move {
            let shutdown = manager.rt.shutdown.clone();
            loop {
                tokio::select! {
                    change = follower.next() => match change {
                        Some(change) if change.before.channels != change.after.channels
                            || change.before.plugins != change.after.plugins => manager.apply(),
                        Some(_) => {}
                        None => return,
                    },
                    _ = shutdown.wait() => return,
                }
            }
        })
    }

    /// Starts, stops and restarts monitors so that they match the config.
    fn apply(self: &Arc<Self>) {
        let wanted = accounts(&self.rt.config());
        let mut monitors = self.monitors.lock().expect("channels");
        let gone: Vec<Key> = monitors
            .iter()
            .filter(|(key, m)| wanted.get(key).is_none_or(|account| *account != m.account))
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            if let Some(monitor) = monitors.remove(&key) {
                tracing::info!(channel = %key, "channel account stopped");
                monitor.stop.send_replace(true);
                if !wanted.contains_key(&key) {
                    self.rt.presence.channel(&key.kind, &key.account, None);
                }
            }
        }
        for (key, account) in wanted {
            if let std::collections::btree_map::Entry::Vacant(slot) = monitors.entry(key) {
                let key = slot.key().clone();
                slot.insert(self.start_account(key, account, None));
            }
        }
        drop(monitors);
        self.publish_health();
    }

    /// Restarts one account; false when it is not configured.
    pub fn restart(self: &Arc<Self>, key: &Key) -> bool {
        let mut monitors = self.monitors.lock().expect("channels");
        let Some(old) = monitors.remove(key) else {
            return false;
        };
        old.stop.send_replace(true);
        let restarts = old.state.lock().expect("channel state").restarts + 1;
        let carried = (restarts, Arc::clone(&old.counters));
        let monitor = self.start_account(key.clone(), old.account, Some(carried));
        monitors.insert(key.clone(), monitor);
        true
    }

    /// Stops every account (shutdown).
    pub fn stop_all(&self) {
        for monitor in self.monitors.lock().expect("channels").values() {
            monitor.stop.send_replace(true);
        }
    }

    pub fn status(&self) -> Vec<ChannelInfo> {
        let monitors = self.monitors.lock().expect("channels");
        monitors
            .iter()
            .map(|(key, m)| {
                let state = m.state.lock().expect("channel state").clone();
                ChannelInfo {
                    channel: key.kind.clone(),
                    account_id: key.account.clone(),
                    status: state.status,
                    last_error: state.last_error,
                    since_ms: state.since_ms,
                    restarts: state.restarts,
                    next_retry_at_ms: state.next_retry_at_ms,
                    received: m.counters.received.load(Ordering::Relaxed),
                    replied: m.counters.replied.load(Ordering::Relaxed),
                    dropped: m.counters.dropped.load(Ordering::Relaxed),
                    failed: m.counters.failed.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// The running account of this kind and id, for inbound HTTP.
    pub fn running(&self, key: &Key) -> Option<(Account, Arc<Counters>)> {
        let monitors = self.monitors.lock().expect("channels");
        let m = monitors.get(key)?;
        Some((m.account.clone(), Arc::clone(&m.counters)))
    }

    /// Whether this signed webhook request is seen for the first time;
    /// it is remembered until `forget_at` (unix seconds).
    pub fn first_delivery(
        &self,
        key: &Key,
        timestamp: u64,
        signature: Vec<u8>,
        forget_at: u64,
    ) -> bool {
        let now = now_ms() / 1000;
        self.replays.lock().expect("replays").first_delivery(
            &key.account,
            timestamp,
            signature,
            forget_at,
            now,
        )
    }

    fn publish_health(&self) {
        let channels = self
            .monitors
            .lock()
            .expect("channels")
            .iter()
            .map(|(key, m)| {
                let state = m.state.lock().expect("channel state");
                (
                    key.to_string(),
                    ChannelHealth {
                        status: state.status,
                        last_error: state.last_error.clone(),
                        since_ms: Some(state.since_ms),
                    },
                )
            })
            .collect();
        self.rt.health.set_channels(channels);
    }

    fn set_status(
        &self,
        key: &Key,
        state: &Mutex<State>,
        status: ChannelStatus,
        error: Option<String>,
    ) {
        {
            let mut state = state.lock().expect("channel state");
            if state.status != status {
                state.since_ms = now_ms();
            }
            state.status = status;
            if error.is_some() || status == ChannelStatus::Connected {
                state.last_error = error.or(state.last_error.take());
            }
            if status == ChannelStatus::Connected {
                state.next_retry_at_ms = None;
            }
        }
        tracing::debug!(channel = %key, ?status, "channel status");
        // A monitor being replaced or removed no longer speaks for the account.
        let current = self
            .monitors
            .lock()
            .expect("channels")
            .get(key)
            .is_some_and(|m| std::ptr::eq(Arc::as_ptr(&m.state), state));
        if current {
            self.rt
                .presence
                .channel(&key.kind, &key.account, Some(status));
        }
        self.publish_health();
    }

    /// Starts the supervised monitor of one account; a manual restart
    /// carries over the restart count and the message counters.
    fn start_account(
        self: &Arc<Self>,
        key: Key,
        account: Account,
        carried: Option<(u64, Arc<Counters>)>,
    ) -> Monitor {
        let (stop, stop_rx) = watch::channel(false);
        let (restarts, counters) = carried.unwrap_or_default();
        let state = Arc::new(Mutex::new(State {
            status: ChannelStatus::Starting,
            last_error: None,
            since_ms: now_ms(),
            restarts,
            next_retry_at_ms: None,
        }));
        let sender = Sender::default();
        let link = Link {
            key: key.clone(),
            counters: Arc::clone(&counters),
            stop: stop_rx,
            manager: Arc::clone(self),
            state: Arc::clone(&state),
            sender: Arc::clone(&sender),
        };
        tracing::info!(channel = %key, "channel account starting");
        let span = tracing::info_span!("channel", channel = %key);
        tokio::spawn(tracing::Instrument::instrument(
            supervise(link, account.clone()),
            span,
        ));
        Monitor {
            account,
            state,
            counters,
            stop,
            sender,
        }
    }
}

/// Runs the account until it is stopped, restarting it after failures.
/// In a cluster, an account runs only on the gateway holding its lease;
/// the others wait to take over.
async fn supervise(link: Link, account: Account) {
    let mut failures: u32 = 0;
    loop {
        let lease = match &link.manager.rt.membership {
            Some(membership) => {
                let name = format!("channel:{}", link.key);
                tokio::select! {
                    lease = membership.leases.take_over(&name) => match lease {
                        Ok(lease) => Some(lease),
                        Err(e) => {
                            tracing::warn!(channel = %link.key, "cannot take the channel lease: {e}");
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_millis(membership.lease_ms / 3)) => continue,
                                _ = link.stopped() => return,
                            }
                        }
                    },
                    _ = link.stopped() => return,
                }
            }
            None => None,
        };
        let began = tokio::time::Instant::now();
        let outcome = tokio::select! {
            outcome = run(&link, &account) => outcome,
            _ = link.stopped() => return,
            _ = lost(lease.as_ref()) => Err("another gateway took over the account (its lease lapsed)".to_string()),
        };
        drop(lease);
        link.sender.lock().expect("channel sender").take();
        if *link.stop.borrow() {
            return;
        }
        if began.elapsed() >= STABLE {
            failures = 0;
        }
        let delay = backoff(failures);
        failures = failures.saturating_add(1);
        let error = match outcome {
            Ok(()) => "the connection ended".to_string(),
            Err(e) => e,
        };
        tracing::warn!(channel = %link.key, retry_in_ms = delay.as_millis() as u64, "channel failed: {error}");
        {
            let mut state = link.state.lock().expect("channel state");
            state.restarts += 1;
            state.next_retry_at_ms = Some(now_ms() + delay.as_millis() as u64);
        }
        let status = if began.elapsed() >= STABLE {
            ChannelStatus::Disconnected
        } else {
            ChannelStatus::Error
        };
        link.manager
            .set_status(&link.key, &link.state, status, Some(error.clone()));
        link.manager
            .rt
            .bus
            .publish(Event::ChannelDisconnected(ChannelDisconnectedEvent {
                channel: link.key.kind.clone(),
                account_id: link.key.account.clone(),
                error: Some(error),
                retry_in_ms: Some(delay.as_millis() as u64),
            }));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = link.stopped() => return,
        }
    }
}

/// One connection of an account, until it fails or is stopped.
async fn run(link: &Link, account: &Account) -> Result<(), String> {
    match account {
        Account::Telegram(config) => telegram::run(link, config).await,
        Account::Irc(config) => irc::run(link, config).await,
        Account::Webhook(_) => {
            // Inbound arrives over the gateway's HTTP server.
            link.connected();
            link.stopped().await;
            Ok(())
        }
        Account::Plugin(account) => {
            let plugins = link
                .manager
                .plugins
                .get()
                .and_then(std::sync::Weak::upgrade);
            let plugins = plugins.ok_or("plugins are not available")?;
            plugin::run(link, account, plugins).await
        }
    }
}

/// Resolves when the lease is lost; never without one.
async fn lost(lease: Option<&crate::cluster::Lease>) {
    match lease {
        Some(lease) => lease.lost().await,
        None => std::future::pending().await,
    }
}
