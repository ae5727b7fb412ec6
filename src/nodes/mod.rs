//! Device nodes: the registry of paired nodes and their live connections,
//! pairing, invocations, and the heartbeat watchdog.
//!
//! A node connects with role `node`. With the gateway credential it may
//! only ask to pair (`nodes.register`); once paired it connects with its
//! own node token, which the store keeps only as a SHA-256 hash.

mod device_nodes;
mod follow;
mod invoke;
mod pairing;
mod presence;
mod remote;

pub use device_nodes::{DeviceNode, MAX_DECLARED};
pub use invoke::bound_node;

use crate::clock::now_ms;
use crate::locks::KeyedLocks;
use crate::protocol::types::{NodeHealth, NodeInfo, NodesChangedEvent, NodesChangedEventChange};
use crate::protocol::{CallContext, Event, Kick};
use crate::runtime::Runtime;
use crate::store::{StoreError, StoredNode};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub struct NodeService {
    rt: Runtime,
    table: Mutex<Table>,
    /// Invocations by idempotency key, so a repeated one waits for the first.
    once: KeyedLocks,
    /// Serializes changes that read a node, store it and update the table,
    /// so that an approval storing a row it read before cannot undo a
    /// removal.
    writing: tokio::sync::Mutex<()>,
    /// In a cluster: records which nodes are connected here.
    presence: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<presence::Change>>,
    /// This service, for the tasks answering other gateways' invokes.
    me: std::sync::Weak<NodeService>,
}

#[derive(Default)]
struct Table {
    nodes: BTreeMap<String, Node>,
    pairing: BTreeMap<String, pairing::Waiting>,
    invokes: HashMap<String, invoke::Waiting>,
}

struct Node {
    stored: StoredNode,
    live: Option<Live>,
}

/// A node's current connection.
struct Live {
    conn_id: String,
    kick: Arc<Kick>,
    remote_ip: IpAddr,
    connected_at_ms: u64,
    last_heard_ms: u64,
    /// False for a device node, whose liveness is its connection's.
    heartbeats: bool,
    /// In a cluster: answering other gateways' invokes for the node.
    _remote: Option<remote::Serving>,
}

impl NodeService {
    pub fn new(rt: Runtime) -> Arc<Self> {
        Arc::new_cyclic(|me| NodeService {
            rt,
            table: Mutex::default(),
            once: KeyedLocks::default(),
            writing: tokio::sync::Mutex::new(()),
            presence: std::sync::OnceLock::new(),
            me: me.clone(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().expect("node table")
    }
}

impl Node {
    fn info(&self) -> NodeInfo {
        let live = self.live.as_ref();
        NodeInfo {
            node_id: self.stored.id.clone(),
            name: self.stored.name.clone(),
            platform: self.stored.platform.clone(),
            caps: self.stored.caps.clone(),
            commands: self.stored.commands.clone(),
            online: live.is_some(),
            paired_at_ms: self.stored.paired_at_ms,
            connected_at_ms: live.map(|l| l.connected_at_ms),
            last_heartbeat_at_ms: live.map(|l| l.last_heard_ms),
            remote_ip: live.map(|l| l.remote_ip.to_string()),
            gateway: None,
        }
    }

    fn changed(&self, change: NodesChangedEventChange) -> Event {
        Event::NodesChanged(NodesChangedEvent {
            node_id: self.stored.id.clone(),
            name: self.stored.name.clone(),
            online: self.live.is_some(),
            change,
        })
    }
}

/// The hex SHA-256 of a node token, as stored.
fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `command` is one of nodes.dangerousCommands: it runs code or
/// changes the node, so it goes through the exec policy and the audit log.
pub fn is_dangerous(config: &crate::config::Config, command: &str) -> bool {
    crate::pattern::any_matches(
        config.nodes.dangerous_commands.iter().map(|p| p.as_str()),
        command,
    )
}

/// A new node token: 244 random bits.
fn new_token() -> String {
    format!(
        "cgn_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl NodeService {
    /// Loads the paired nodes; call before serving.
    pub async fn load(&self) -> Result<(), StoreError> {
        let stored = self.rt.stores.nodes.nodes().await?;
        let mut table = self.lock();
        for node in stored {
            table.nodes.insert(
                node.id.clone(),
                Node {
                    stored: node,
                    live: None,
                },
            );
        }
        Ok(())
    }

    /// The node whose token this is, if any.
    pub fn authenticate(&self, token: &str) -> Option<String> {
        let hash = token_hash(token);
        self.lock()
            .nodes
            .values()
            .find(|n| n.stored.token_hash == hash)
            .map(|n| n.stored.id.clone())
    }

    /// Records that `ctx` is now node `node_id`'s connection; an older
    /// connection of the same node is closed.
    pub fn connected(&self, node_id: &str, ctx: &CallContext) {
        let now = now_ms();
        let mut table = self.lock();
        let Some(node) = table.nodes.get_mut(node_id) else {
            return;
        };
        if let Some(old) = node.live.take() {
            old.kick
                .kick("replaced by a newer connection of the same node");
        }
        node.live = Some(Live {
            conn_id: ctx.conn_id.clone(),
            kick: Arc::clone(ctx.kick()),
            remote_ip: ctx.remote_ip,
            connected_at_ms: now,
            last_heard_ms: now,
            heartbeats: true,
            _remote: self.serve_remote(node_id),
        });
        self.record_presence(presence::Change::Connected {
            node_id: node_id.to_string(),
            at_ms: now,
        });
        self.rt
            .bus
            .publish(node.changed(NodesChangedEventChange::Connected));
        self.publish_health(&table);
    }

    /// Forgets connection `conn_id`: its node goes offline, calls waiting on
    /// it fail, and a pairing request it made lapses.
    pub fn disconnected(&self, conn_id: &str) {
        let mut table = self.lock();
        self.drop_requests_of(&mut table, conn_id);
        let Some(node) = table
            .nodes
            .values_mut()
            .find(|n| n.live.as_ref().is_some_and(|l| l.conn_id == conn_id))
        else {
            return;
        };
        node.live = None;
        let id = node.stored.id.clone();
        self.record_presence(presence::Change::Left {
            node_id: id.clone(),
        });
        self.rt
            .bus
            .publish(node.changed(NodesChangedEventChange::Disconnected));
        invoke::fail_waiting(&mut table, &id, "the node disconnected before answering");
        self.publish_health(&table);
    }

    /// Notes that the node was heard from now.
    pub fn heard(&self, node_id: &str) {
        let mut table = self.lock();
        if let Some(live) = table.nodes.get_mut(node_id).and_then(|n| n.live.as_mut()) {
            live.last_heard_ms = now_ms();
        }
    }

    pub fn list(&self) -> Vec<NodeInfo> {
        let table = self.lock();
        let mut nodes: Vec<NodeInfo> = table.nodes.values().map(Node::info).collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name).then(a.node_id.cmp(&b.node_id)));
        nodes
    }

    /// Unpairs a node: forgets its token and closes its connection.
    pub async fn remove(&self, node_id: &str) -> Result<bool, StoreError> {
        let _writing = self.writing.lock().await;
        if !self
            .rt
            .stores
            .nodes
            .remove_node(node_id.to_string())
            .await?
        {
            return Ok(false);
        }
        let mut table = self.lock();
        if let Some(mut node) = table.nodes.remove(node_id) {
            if let Some(live) = node.live.take() {
                live.kick.kick("the node was removed");
                self.record_presence(presence::Change::Left {
                    node_id: node_id.to_string(),
                });
            }
            self.rt
                .bus
                .publish(node.changed(NodesChangedEventChange::Removed));
        }
        invoke::fail_waiting(&mut table, node_id, "the node was removed");
        self.publish_health(&table);
        tracing::info!(node = %node_id, "node removed");
        Ok(true)
    }

    /// Marks offline, and disconnects, every node not heard from within
    /// nodes.heartbeatTimeoutMs. Runs until the gateway shuts down.
    pub fn spawn_watchdog(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let nodes = Arc::clone(self);
        tokio::spawn(async move {
            let shutdown = nodes.rt.shutdown.clone();
            loop {
                let timeout = nodes.rt.config().nodes.heartbeat_timeout_ms.max(1) as u64;
                let period = Duration::from_millis((timeout / 4).clamp(50, 1000));
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = shutdown.wait() => return,
                }
                let now = now_ms();
                let mut table = nodes.lock();
                let mut missed = Vec::new();
                for node in table.nodes.values_mut() {
                    if node.live.as_ref().is_some_and(|l| {
                        l.heartbeats && now.saturating_sub(l.last_heard_ms) > timeout
                    }) {
                        let live = node.live.take().expect("checked");
                        live.kick.kick("heartbeat missed");
                        nodes.record_presence(presence::Change::Left {
                            node_id: node.stored.id.clone(),
                        });
                        tracing::warn!(node = %node.stored.id, "node missed its heartbeats; marked offline");
                        nodes
                            .rt
                            .bus
                            .publish(node.changed(NodesChangedEventChange::HeartbeatMissed));
                        missed.push(node.stored.id.clone());
                    }
                }
                for id in &missed {
                    invoke::fail_waiting(&mut table, id, "the node stopped answering heartbeats");
                }
                if !missed.is_empty() {
                    nodes.publish_health(&table);
                }
            }
        })
    }

    fn publish_health(&self, table: &Table) {
        let online: Vec<NodeHealth> = table
            .nodes
            .values()
            .filter_map(|n| {
                let live = n.live.as_ref()?;
                Some(NodeHealth {
                    id: n.stored.id.clone(),
                    name: Some(n.stored.name.clone()),
                    last_seen_ms: live.last_heard_ms,
                })
            })
            .collect();
        self.rt.health.set_nodes(online);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::types::{
        NodesInvokeParams, NodesRegisterParams, NodesResultParams, Role, Scope,
    };
    use crate::protocol::{ErrorCode, EventKind, Grant};
    use crate::testing;
    use serde_json::{json, Value};

    fn device(conn: &str) -> CallContext {
        let ctx = CallContext::new(conn.into(), [192, 168, 1, 20].into());
        ctx.set_grant(Grant {
            role: Role::Node,
            scopes: vec![Scope::Node],
            credential: None,
            device: None,
        });
        ctx
    }

    /// Pairs a device that declares `system.run`, approving as an operator.
    async fn pair(nodes: &Arc<NodeService>, ctx: &CallContext) -> (String, String) {
        let params: NodesRegisterParams = serde_json::from_value(json!({
            "name": "kitchen", "platform": "linux", "caps": [], "commands": ["system.run"],
        }))
        .unwrap();
        let asking = nodes.register(ctx, params);
        let approving = async {
            loop {
                if let Some(request) = nodes.pending().first() {
                    return nodes.approve(&request.request_id).await.unwrap();
                }
                tokio::task::yield_now().await;
            }
        };
        let (result, approved) = tokio::join!(asking, approving);
        let result = result.unwrap();
        assert_eq!(result.node_id, approved);
        (result.node_id, result.token)
    }

    #[tokio::test]
    async fn a_paired_node_is_stored_by_token_hash_and_comes_online() {
        let fakes = testing::runtime(testing::config(""));
        let nodes = NodeService::new(fakes.rt.clone());
        let ctx = device("conn-1");
        let (node_id, token) = pair(&nodes, &ctx).await;
        let stored = fakes.store.nodes.lock().unwrap().clone();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].token_hash, token_hash(&token));
        assert_ne!(
            stored[0].token_hash, token,
            "the token itself is never stored"
        );
        assert_eq!(
            nodes.authenticate(&token).as_deref(),
            Some(node_id.as_str())
        );
        assert_eq!(nodes.authenticate("cgn_guess"), None);
        let changes: Vec<Value> = fakes
            .bus
            .payloads(EventKind::NodesChanged)
            .into_iter()
            .map(|e| e["change"].clone())
            .collect();
        assert_eq!(changes, [json!("paired"), json!("connected")]);
        assert_eq!(fakes.rt.health.snapshot().nodes.len(), 1);
        nodes.disconnected("conn-1");
        assert!(!nodes.list()[0].online);
        assert!(fakes.rt.health.snapshot().nodes.is_empty());
    }

    #[tokio::test]
    async fn an_invoke_goes_to_the_nodes_connection_and_its_answer_comes_back() {
        let fakes = testing::runtime(testing::config("[nodes]\nallowCommands = [\"system.*\"]\n"));
        let nodes = NodeService::new(fakes.rt.clone());
        let ctx = device("conn-7");
        let (node_id, _) = pair(&nodes, &ctx).await;
        let params: NodesInvokeParams = serde_json::from_value(json!({
            "nodeId": node_id, "command": "system.run", "params": {"argv": ["uptime"]},
        }))
        .unwrap();
        let invoking = nodes.invoke(params.clone(), "operator");
        let answering = async {
            let request = loop {
                if let Some(request) = fakes.bus.payloads(EventKind::NodesInvokeRequest).pop() {
                    break request;
                }
                tokio::task::yield_now().await;
            };
            let answer: NodesResultParams = serde_json::from_value(json!({
                "invokeId": request["invokeId"], "ok": true, "payload": {"stdout": "up 3 days"},
            }))
            .unwrap();
            nodes.result(&ctx, answer).unwrap()
        };
        let (result, answered) = tokio::join!(invoking, answering);
        assert!(answered.accepted);
        let result = result.unwrap();
        assert!(result.ok);
        assert_eq!(result.payload, Some(json!({"stdout": "up 3 days"})));
        let targets = fakes.bus.targets(EventKind::NodesInvokeRequest);
        assert_eq!(
            targets,
            [Some("conn-7".to_string())],
            "sent to the node alone"
        );
        nodes.disconnected("conn-7");
        let offline = nodes.invoke(params, "operator").await.unwrap_err();
        assert_eq!(offline.code, ErrorCode::Unavailable);
    }
}
