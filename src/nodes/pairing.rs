//! Pairing: a device asks (nodes.register, which waits), an operator
//! answers (nodes.approve / nodes.reject), or the request lapses.

use super::{new_token, token_hash, Node, NodeService, Table};
use crate::clock::now_ms;
use crate::protocol::types::{
    NodesChangedEventChange, NodesPairingResolvedEvent, NodesPairingResolvedEventDecision,
    NodesRegisterParams, NodesRegisterResult, PairingRequest, Role,
};
use crate::protocol::{CallContext, ErrorCode, Event, RpcError};
use crate::store::StoredNode;
use std::time::Duration;
use tokio::sync::oneshot;

/// A request waiting for an answer.
pub(super) struct Waiting {
    pub(super) request: PairingRequest,
    pub(super) conn_id: String,
    pub(super) answer: Answerer,
}

/// Who hears the answer.
pub(super) enum Answerer {
    /// A nodes.register call, waiting.
    Caller(oneshot::Sender<Answer>),
    /// A connected device node (an OpenClaw node host) asking for its
    /// declared commands: approval widens the commands it may be sent.
    Device,
}

pub(super) enum Answer {
    Approved { node_id: String, token: String },
    Rejected(Option<String>),
}

impl NodeService {
    /// nodes.register: waits for the operator's answer (or approves at once
    /// from loopback when nodes.autoApproveLoopback says so).
    pub async fn register(
        &self,
        ctx: &CallContext,
        params: NodesRegisterParams,
    ) -> Result<NodesRegisterResult, RpcError> {
        if let Some(node_id) = ctx.node_id() {
            return Err(RpcError::new(
                ErrorCode::Conflict,
                format!("this connection is already paired as {node_id}"),
            ));
        }
        if ctx.grant().map(|g| g.role) != Some(Role::Node) {
            return Err(RpcError::new(ErrorCode::Forbidden, "only a node can pair"));
        }
        let config = self.rt.config();
        let now = now_ms();
        let timeout = config.nodes.pairing_timeout_ms.max(1) as u64;
        let request_id = format!("pair-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let request = PairingRequest {
            request_id: request_id.clone(),
            node_id: None,
            name: params.name.to_string(),
            platform: params.platform.to_string(),
            caps: params.caps.iter().map(|c| c.to_string()).collect(),
            commands: params.commands.iter().map(|c| c.to_string()).collect(),
            remote_ip: ctx.remote_ip.to_string(),
            requested_at_ms: now,
            expires_at_ms: now + timeout,
        };
        let (answer, answered) = oneshot::channel();
        self.lock().pairing.insert(
            request_id.clone(),
            Waiting {
                request: request.clone(),
                conn_id: ctx.conn_id.clone(),
                answer: Answerer::Caller(answer),
            },
        );
        if config.nodes.auto_approve_loopback && ctx.remote_ip.is_loopback() {
            tracing::info!(request = %request_id, "pairing from loopback approved by nodes.autoApproveLoopback");
            self.approve(&request_id).await?;
        } else {
            tracing::info!(request = %request_id, name = %request.name, remote = %request.remote_ip, "pairing requested");
            self.rt.bus.publish(Event::NodesPairing(request));
        }
        let answer = tokio::time::timeout(Duration::from_millis(timeout), answered).await;
        match answer {
            Ok(Ok(Answer::Approved { node_id, token })) => {
                ctx.bind_node(node_id.clone());
                self.connected(&node_id, ctx);
                Ok(NodesRegisterResult { node_id, token })
            }
            Ok(Ok(Answer::Rejected(reason))) => Err(RpcError::new(
                ErrorCode::Forbidden,
                match reason {
                    Some(reason) => format!("pairing rejected: {reason}"),
                    None => "pairing rejected".to_string(),
                },
            )),
            Ok(Err(_)) | Err(_) => {
                if self.lock().pairing.remove(&request_id).is_some() {
                    self.resolved(
                        &request_id,
                        NodesPairingResolvedEventDecision::Expired,
                        None,
                    );
                }
                Err(RpcError::new(
                    ErrorCode::Timeout,
                    format!("no operator answered the pairing request within {timeout} ms"),
                ))
            }
        }
    }

    /// nodes.approve: creates the node and answers the waiting device (or
    /// widens a device node's commands).
    pub async fn approve(&self, request_id: &str) -> Result<String, RpcError> {
        let waiting = self.take(request_id)?;
        let answer = match waiting.answer {
            Answerer::Caller(answer) => answer,
            Answerer::Device => return self.approve_device(request_id, waiting.request).await,
        };
        let token = new_token();
        let request = &waiting.request;
        let stored = StoredNode {
            id: format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            name: request.name.clone(),
            platform: request.platform.clone(),
            caps: request.caps.clone(),
            commands: request.commands.clone(),
            token_hash: token_hash(&token),
            paired_at_ms: now_ms(),
        };
        let node_id = stored.id.clone();
        if let Err(e) = self.rt.stores.nodes.add_node(stored.clone()).await {
            let _ = answer.send(Answer::Rejected(Some(
                "the gateway could not store the pairing".into(),
            )));
            return Err(e.into());
        }
        {
            let mut table = self.lock();
            let node = Node { stored, live: None };
            self.rt
                .bus
                .publish(node.changed(NodesChangedEventChange::Paired));
            table.nodes.insert(node_id.clone(), node);
        }
        self.resolved(
            request_id,
            NodesPairingResolvedEventDecision::Approved,
            Some(node_id.clone()),
        );
        tracing::info!(node = %node_id, "node paired");
        let answer_to = answer;
        let answer = Answer::Approved {
            node_id: node_id.clone(),
            token,
        };
        if answer_to.send(answer).is_err() {
            // The device gave up in the meantime; it never got the token.
            let _ = self.remove(&node_id).await;
            return Err(RpcError::new(
                ErrorCode::NotFound,
                format!("the device of pairing request {request_id} is gone"),
            ));
        }
        Ok(node_id)
    }

    /// nodes.reject: the waiting device gets forbidden.
    pub fn reject(&self, request_id: &str, reason: Option<String>) -> Result<(), RpcError> {
        let waiting = self.take(request_id)?;
        if let Answerer::Caller(answer) = waiting.answer {
            let _ = answer.send(Answer::Rejected(reason));
        }
        self.resolved(
            request_id,
            NodesPairingResolvedEventDecision::Rejected,
            None,
        );
        Ok(())
    }

    /// nodes.pending, oldest first.
    pub fn pending(&self) -> Vec<PairingRequest> {
        let mut requests: Vec<PairingRequest> = self
            .lock()
            .pairing
            .values()
            .map(|w| w.request.clone())
            .collect();
        requests.sort_by_key(|r| r.requested_at_ms);
        requests
    }

    /// Requests made on a connection that closed lapse with it.
    pub(super) fn drop_requests_of(&self, table: &mut Table, conn_id: &str) {
        let gone: Vec<String> = table
            .pairing
            .iter()
            .filter(|(_, w)| w.conn_id == conn_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            table.pairing.remove(&id);
            self.resolved(&id, NodesPairingResolvedEventDecision::Expired, None);
        }
    }

    pub(super) fn resolved(
        &self,
        request_id: &str,
        decision: NodesPairingResolvedEventDecision,
        node_id: Option<String>,
    ) {
        self.rt
            .bus
            .publish(Event::NodesPairingResolved(NodesPairingResolvedEvent {
                request_id: request_id.to_string(),
                decision,
                node_id,
            }));
    }

    /// Whether the pairing request waits on this gateway.
    pub fn holds_request(&self, request_id: &str) -> bool {
        self.lock().pairing.contains_key(request_id)
    }

    /// Takes a pending request out of the table, to answer it.
    fn take(&self, request_id: &str) -> Result<Waiting, RpcError> {
        self.lock().pairing.remove(request_id).ok_or_else(|| {
            RpcError::new(
                ErrorCode::NotFound,
                format!("no pending pairing request {request_id}"),
            )
        })
    }
}
