//! Fakes for in-process tests of the services: a bus that records what
//! it is sent, stores kept in memory, and a runtime built from them.

use crate::bus::{Bus, EventBus, Kind, LocalBus, Published, Subscription};
use crate::config::{Config, ConfigWatch, LoadOptions};
use crate::health::HealthService;
use crate::metrics::Metrics;
use crate::protocol::types::{
    ApprovalAuditEntry, ChatMessage, ChatMessageRole, ChatMessageStatus, ConfigHealth, CronJob,
    CronRun, HeartbeatRun, PairedDevice, SessionInfo, Usage,
};
use crate::protocol::EventKind;
use crate::runtime::{Runtime, Shutdown};
use crate::store::{
    AuditStore, ChannelStore, CronStore, CronWrite, DeviceStore, HeartbeatStore, NodeStore, Result,
    ResultStore, SessionChange, SessionFilter, SessionStore, StoreFuture, StoredNode, Stores,
    UpkeepStore,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// A configuration from TOML text, as the gateway would load it.
pub fn config(toml: &str) -> Config {
    let options = LoadOptions {
        path: Some("test.toml".into()),
        ..LoadOptions::default()
    };
    crate::config::load_text(&options, Some(toml))
        .unwrap_or_else(|e| panic!("test config: {e}"))
        .config
}

/// A bus that keeps every event it is sent, and still delivers them.
pub struct RecordingBus {
    sent: Mutex<Vec<(Kind, Value, Option<String>)>>,
    local: LocalBus,
}

impl RecordingBus {
    pub fn new() -> Arc<Self> {
        Arc::new(RecordingBus {
            sent: Mutex::default(),
            local: LocalBus::new(1024),
        })
    }

    /// The payloads of the events of `kind` so far, oldest first.
    pub fn payloads(&self, kind: EventKind) -> Vec<Value> {
        let sent = self.sent.lock().unwrap();
        sent.iter()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, v, _)| v.clone())
            .collect()
    }

    /// The names of every event so far, oldest first.
    pub fn names(&self) -> Vec<String> {
        let sent = self.sent.lock().unwrap();
        sent.iter().map(|(k, _, _)| k.name().to_string()).collect()
    }

    /// The connection each event of `kind` was addressed to.
    pub fn targets(&self, kind: EventKind) -> Vec<Option<String>> {
        let sent = self.sent.lock().unwrap();
        sent.iter()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, _, t)| t.clone())
            .collect()
    }
}

impl EventBus for RecordingBus {
    fn send(&self, published: Published) {
        let payload = serde_json::from_str(&published.data).expect("events are JSON");
        self.sent
            .lock()
            .unwrap()
            .push((published.kind.clone(), payload, published.target.clone()));
        self.local.send(published);
    }

    fn subscribe(&self) -> Subscription {
        self.local.subscribe()
    }
}

/// Every kind of record in memory.
#[derive(Default)]
pub struct MemoryStore {
    sessions: Mutex<BTreeMap<String, (SessionInfo, Vec<ChatMessage>)>>,
    results: Mutex<HashMap<String, String>>,
    pub nodes: Mutex<Vec<StoredNode>>,
    devices: Mutex<BTreeMap<String, PairedDevice>>,
    pub cron_writes: Mutex<Vec<CronWrite>>,
    audit: Mutex<Vec<(ApprovalAuditEntry, String)>>,
    offsets: Mutex<HashMap<(String, String), i64>>,
    heartbeats: Mutex<BTreeMap<String, HeartbeatRun>>,
}

fn ready<'a, T: Send + 'a>(value: Result<T>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

impl SessionStore for MemoryStore {
    fn begin_turn(
        &self,
        session_key: String,
        agent_id: String,
        run_id: String,
        text: String,
        now_ms: u64,
    ) -> StoreFuture<'_, ()> {
        let mut sessions = self.sessions.lock().unwrap();
        let (info, messages) = sessions.entry(session_key.clone()).or_insert_with(|| {
            let info = SessionInfo {
                key: session_key,
                agent_id,
                label: None,
                model: None,
                thinking: None,
                created_at_ms: now_ms,
                updated_at_ms: now_ms,
                message_count: 0,
            };
            (info, Vec::new())
        });
        messages.push(ChatMessage {
            id: messages.len() as u64 + 1,
            role: ChatMessageRole::User,
            content: text,
            status: ChatMessageStatus::Complete,
            run_id: Some(run_id),
            created_at_ms: now_ms,
            usage: None,
        });
        info.message_count += 1;
        info.updated_at_ms = now_ms;
        ready(Ok(()))
    }

    fn finish_turn(
        &self,
        session_key: String,
        run_id: String,
        text: String,
        status: ChatMessageStatus,
        usage: Usage,
        now_ms: u64,
    ) -> StoreFuture<'_, ChatMessage> {
        let mut sessions = self.sessions.lock().unwrap();
        let (info, messages) = sessions.get_mut(&session_key).expect("begun");
        let message = ChatMessage {
            id: messages.len() as u64 + 1,
            role: ChatMessageRole::Assistant,
            content: text,
            status,
            run_id: Some(run_id),
            created_at_ms: now_ms,
            usage: Some(usage),
        };
        messages.push(message.clone());
        info.message_count += 1;
        ready(Ok(message))
    }

    fn session(&self, key: String) -> StoreFuture<'_, Option<SessionInfo>> {
        let sessions = self.sessions.lock().unwrap();
        ready(Ok(sessions.get(&key).map(|(info, _)| info.clone())))
    }

    fn list_sessions(
        &self,
        filter: SessionFilter,
    ) -> StoreFuture<'_, (Vec<SessionInfo>, Option<String>)> {
        let sessions = self.sessions.lock().unwrap();
        let list = sessions
            .values()
            .map(|(info, _)| info.clone())
            .filter(|i| filter.agent_id.as_ref().is_none_or(|a| *a == i.agent_id))
            .take(filter.limit)
            .collect();
        ready(Ok((list, None)))
    }

    fn history(
        &self,
        key: String,
        limit: usize,
        _before: Option<u64>,
    ) -> StoreFuture<'_, Option<(Vec<ChatMessage>, Option<u64>)>> {
        let sessions = self.sessions.lock().unwrap();
        ready(Ok(sessions.get(&key).map(|(_, messages)| {
            let skip = messages.len().saturating_sub(limit);
            (messages[skip..].to_vec(), None)
        })))
    }

    fn patch_session(
        &self,
        key: String,
        change: SessionChange,
    ) -> StoreFuture<'_, Option<SessionInfo>> {
        let mut sessions = self.sessions.lock().unwrap();
        ready(Ok(sessions.get_mut(&key).map(|(info, _)| {
            if let Some(model) = change.model {
                info.model = model;
            }
            if let Some(label) = change.label {
                info.label = label;
            }
            if let Some(thinking) = change.thinking {
                info.thinking = thinking;
            }
            info.clone()
        })))
    }

    fn clear_session(&self, key: String, keep: usize) -> StoreFuture<'_, Option<(u64, u64)>> {
        let mut sessions = self.sessions.lock().unwrap();
        ready(Ok(sessions.get_mut(&key).map(|(info, messages)| {
            let removed = messages.len().saturating_sub(keep);
            messages.drain(..removed);
            info.message_count = messages.len() as u64;
            (removed as u64, messages.len() as u64)
        })))
    }

    fn delete_session(&self, key: String) -> StoreFuture<'_, bool> {
        ready(Ok(self.sessions.lock().unwrap().remove(&key).is_some()))
    }
}

impl ResultStore for MemoryStore {
    fn idempotent_result(&self, key: String, _since_ms: u64) -> StoreFuture<'_, Option<String>> {
        ready(Ok(self.results.lock().unwrap().get(&key).cloned()))
    }

    fn remember_result(&self, key: String, json: String, _now_ms: u64) -> StoreFuture<'_, ()> {
        self.results.lock().unwrap().insert(key, json);
        ready(Ok(()))
    }
}

impl NodeStore for MemoryStore {
    fn nodes(&self) -> StoreFuture<'_, Vec<StoredNode>> {
        ready(Ok(self.nodes.lock().unwrap().clone()))
    }

    fn add_node(&self, node: StoredNode) -> StoreFuture<'_, ()> {
        let mut nodes = self.nodes.lock().unwrap();
        nodes.retain(|n| n.id != node.id);
        nodes.push(node);
        ready(Ok(()))
    }

    fn remove_node(&self, id: String) -> StoreFuture<'_, bool> {
        let mut nodes = self.nodes.lock().unwrap();
        let before = nodes.len();
        nodes.retain(|n| n.id != id);
        ready(Ok(nodes.len() != before))
    }
}

impl DeviceStore for MemoryStore {
    fn devices(&self) -> StoreFuture<'_, Vec<PairedDevice>> {
        ready(Ok(self.devices.lock().unwrap().values().cloned().collect()))
    }

    fn put_device(&self, device: PairedDevice) -> StoreFuture<'_, ()> {
        let id = device.device_id.clone();
        self.devices.lock().unwrap().insert(id, device);
        ready(Ok(()))
    }

    fn remove_device(&self, id: String) -> StoreFuture<'_, bool> {
        ready(Ok(self.devices.lock().unwrap().remove(&id).is_some()))
    }
}

/// Keeps the writes it is given; holds no jobs or runs of its own.
impl CronStore for MemoryStore {
    fn cron_jobs(&self) -> StoreFuture<'_, Vec<CronJob>> {
        ready(Ok(Vec::new()))
    }

    fn cron_apply(&self, writes: Vec<CronWrite>) -> StoreFuture<'_, ()> {
        self.cron_writes.lock().unwrap().extend(writes);
        ready(Ok(()))
    }

    fn cron_last_run_id(&self) -> StoreFuture<'_, u64> {
        ready(Ok(0))
    }

    fn cron_runs(
        &self,
        _job_id: String,
        _limit: usize,
        _before: Option<u64>,
    ) -> StoreFuture<'_, (Vec<CronRun>, Option<u64>)> {
        ready(Ok((Vec::new(), None)))
    }

    fn cron_unfinished_runs(&self) -> StoreFuture<'_, Vec<CronRun>> {
        ready(Ok(Vec::new()))
    }

    fn cron_run(&self, _id: u64) -> StoreFuture<'_, Option<CronRun>> {
        ready(Ok(None))
    }
}

impl AuditStore for MemoryStore {
    fn exec_allowed(&self, _agent_id: String) -> StoreFuture<'_, Vec<String>> {
        ready(Ok(Vec::new()))
    }

    fn record_exec_decision(
        &self,
        entry: ApprovalAuditEntry,
        binding: String,
    ) -> StoreFuture<'_, u64> {
        let mut audit = self.audit.lock().unwrap();
        audit.push((entry, binding));
        ready(Ok(audit.len() as u64))
    }

    fn exec_audit(
        &self,
        limit: usize,
        _before: Option<u64>,
    ) -> StoreFuture<'_, (Vec<ApprovalAuditEntry>, Option<u64>)> {
        let audit = self.audit.lock().unwrap();
        let entries = audit.iter().rev().take(limit).map(|(e, _)| e.clone());
        ready(Ok((entries.collect(), None)))
    }
}

impl ChannelStore for MemoryStore {
    fn channel_offset(&self, channel: String, account: String) -> StoreFuture<'_, Option<i64>> {
        let offsets = self.offsets.lock().unwrap();
        ready(Ok(offsets.get(&(channel, account)).copied()))
    }

    fn set_channel_offset(
        &self,
        channel: String,
        account: String,
        next: i64,
    ) -> StoreFuture<'_, ()> {
        self.offsets
            .lock()
            .unwrap()
            .insert((channel, account), next);
        ready(Ok(()))
    }
}

impl HeartbeatStore for MemoryStore {
    fn last_heartbeats(&self) -> StoreFuture<'_, Vec<HeartbeatRun>> {
        ready(Ok(self
            .heartbeats
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect()))
    }

    fn record_heartbeat(&self, run: HeartbeatRun) -> StoreFuture<'_, ()> {
        let mut runs = self.heartbeats.lock().unwrap();
        runs.insert(run.agent_id.clone(), run);
        ready(Ok(()))
    }
}

impl UpkeepStore for MemoryStore {
    fn prune(
        &self,
        _keys_before: u64,
        _audit_before: Option<u64>,
    ) -> StoreFuture<'_, (usize, usize)> {
        ready(Ok((0, 0)))
    }

    fn compact(&self) -> StoreFuture<'_, u64> {
        ready(Ok(0))
    }

    fn prune_sessions(&self, _idle_before: u64, _limit: usize) -> StoreFuture<'_, usize> {
        ready(Ok(0))
    }
}

/// A runtime of fakes: `config` as given, a recording bus, memory stores.
pub struct Fakes {
    pub rt: Runtime,
    pub bus: Arc<RecordingBus>,
    pub store: Arc<MemoryStore>,
    /// Send true to start the drain.
    pub shutdown: tokio::sync::watch::Sender<bool>,
}

pub fn runtime(config: Config) -> Fakes {
    let bus = RecordingBus::new();
    let store = Arc::new(MemoryStore::default());
    let handle = Bus::new(bus.clone());
    let health = ConfigHealth {
        hash: None,
        reload_ok: true,
        last_reload_at_ms: None,
        last_error: None,
        errors: Vec::new(),
        restart_required: Vec::new(),
    };
    let cron_enabled = config.cron.enabled;
    let shutdown = tokio::sync::watch::channel(false).0;
    let rt = Runtime {
        config: ConfigWatch::fixed(config),
        bus: handle.clone(),
        stores: Stores::all_in(store.clone()),
        presence: Arc::new(crate::presence::Presence::new(
            handle.clone(),
            Arc::default(),
        )),
        health: Arc::new(HealthService::new(
            std::time::Instant::now(),
            handle,
            health,
            cron_enabled,
        )),
        metrics: Arc::new(Metrics::new()),
        http: crate::agent::http_client(),
        shutdown: Shutdown::new(shutdown.subscribe()),
        started_at_ms: crate::clock::now_ms(),
        state_dir: Arc::new(std::env::temp_dir()),
        membership: None,
    };
    Fakes {
        rt,
        bus,
        store,
        shutdown,
    }
}
