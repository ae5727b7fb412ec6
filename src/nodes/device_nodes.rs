//! Nodes that are paired device identities (OpenClaw node hosts). The
//! device's key is its credential, so the node's id is the device id and it
//! has no node token. Its first connect registers it with no commands; the
//! commands it declares wait for nodes.approve (or are approved at once
//! from loopback when nodes.autoApproveLoopback says so), and a later
//! connect that declares more asks again while the approved ones keep
//! working. Liveness is the connection's own (ticks), not nodes.heartbeat.

use super::pairing::{Answerer, Waiting};
use super::{Node, NodeService};
use crate::clock::now_ms;
use crate::protocol::types::{
    NodesChangedEventChange, NodesPairingResolvedEventDecision, PairingRequest,
};
use crate::protocol::{CallContext, ErrorCode, Event, RpcError};
use crate::store::StoredNode;

/// What a device node declares when it connects.
#[derive(Debug, Clone)]
pub struct DeviceNode {
    pub device_id: String,
    pub name: String,
    pub platform: String,
    pub caps: Vec<String>,
    pub commands: Vec<String>,
}

/// Commands a device node may declare: each one becomes an approval an
/// operator reads.
pub const MAX_DECLARED: usize = 256;

impl NodeService {
    /// Binds `ctx` to the device's node, registering it on its first
    /// connect, and asks for approval of declared commands not yet approved.
    pub async fn attach_device(&self, ctx: &CallContext, node: DeviceNode) -> Result<(), RpcError> {
        if node.commands.len() > MAX_DECLARED || node.caps.len() > MAX_DECLARED {
            return Err(RpcError::new(
                ErrorCode::InvalidParams,
                format!("a node declares at most {MAX_DECLARED} commands and caps"),
            ));
        }
        let writing = self.writing.lock().await;
        let known = self
            .lock()
            .nodes
            .get(&node.device_id)
            .map(|n| n.stored.clone());
        let stored = match known {
            Some(stored) => stored,
            None => {
                let stored = StoredNode {
                    id: node.device_id.clone(),
                    name: node.name.clone(),
                    platform: node.platform.clone(),
                    caps: Vec::new(),
                    commands: Vec::new(),
                    // Never a SHA-256 hex: no node token authenticates it.
                    token_hash: String::new(),
                    paired_at_ms: now_ms(),
                };
                self.rt.stores.nodes.add_node(stored.clone()).await?;
                let mut table = self.lock();
                let entry = Node {
                    stored: stored.clone(),
                    live: None,
                };
                self.rt
                    .bus
                    .publish(entry.changed(NodesChangedEventChange::Paired));
                table.nodes.entry(stored.id.clone()).or_insert(entry);
                tracing::info!(node = %stored.id, "device node registered");
                stored
            }
        };
        drop(writing);
        if !ctx.bind_node(stored.id.clone()) {
            return Err(RpcError::new(
                ErrorCode::Conflict,
                "this connection already speaks for another node",
            ));
        }
        self.connected(&stored.id, ctx);
        if let Some(live) = self
            .lock()
            .nodes
            .get_mut(&stored.id)
            .and_then(|n| n.live.as_mut())
        {
            live.heartbeats = false;
        }
        let undeclared = |c: &String| !stored.commands.contains(c);
        let wider = node.commands.iter().any(undeclared)
            || node.caps.iter().any(|c| !stored.caps.contains(c));
        if !wider {
            return Ok(());
        }
        let config = self.rt.config();
        let now = now_ms();
        let request = PairingRequest {
            request_id: format!("pair-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            node_id: Some(stored.id.clone()),
            name: node.name,
            platform: node.platform,
            caps: node.caps,
            commands: node.commands,
            remote_ip: ctx.remote_ip.to_string(),
            requested_at_ms: now,
            expires_at_ms: now + config.nodes.pairing_timeout_ms.max(1) as u64,
        };
        let request_id = request.request_id.clone();
        self.lock().pairing.insert(
            request_id.clone(),
            Waiting {
                request: request.clone(),
                conn_id: ctx.conn_id.clone(),
                answer: Answerer::Device,
            },
        );
        if config.nodes.auto_approve_loopback && ctx.remote_ip.is_loopback() {
            tracing::info!(request = %request_id, "device node commands approved from loopback by nodes.autoApproveLoopback");
            self.approve(&request_id).await?;
        } else {
            tracing::info!(request = %request_id, node = %stored.id, "device node asks for its commands");
            self.rt.bus.publish(Event::NodesPairing(request));
        }
        Ok(())
    }

    /// Approves a device node's commands: they replace what it may be sent.
    pub(super) async fn approve_device(
        &self,
        request_id: &str,
        request: PairingRequest,
    ) -> Result<String, RpcError> {
        let node_id = request.node_id.clone().unwrap_or_default();
        let _writing = self.writing.lock().await;
        let Some(mut stored) = self.lock().nodes.get(&node_id).map(|n| n.stored.clone()) else {
            return Err(RpcError::new(
                ErrorCode::NotFound,
                format!("node {node_id} was removed"),
            ));
        };
        stored.name = request.name;
        stored.platform = request.platform;
        stored.caps = request.caps;
        stored.commands = request.commands;
        self.rt.stores.nodes.add_node(stored.clone()).await?;
        {
            let mut table = self.lock();
            if let Some(node) = table.nodes.get_mut(&node_id) {
                node.stored = stored;
                self.rt
                    .bus
                    .publish(node.changed(NodesChangedEventChange::Paired));
            }
        }
        self.resolved(
            request_id,
            NodesPairingResolvedEventDecision::Approved,
            Some(node_id.clone()),
        );
        tracing::info!(node = %node_id, "device node commands approved");
        Ok(node_id)
    }
}
