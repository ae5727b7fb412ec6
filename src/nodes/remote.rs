//! Nodes across a cluster: while a node is connected to this gateway,
//! the gateway answers invokes for it on `<prefix>.nodes.invoke.<id>`;
//! an invoke for a node not connected here is sent there, and NATS
//! routes it to the gateway that has the node (none answering: the node
//! is offline everywhere).

use super::NodeService;
use crate::cluster::rpc::{self, Unanswered};
use crate::cluster::Membership;
use crate::protocol::types::{NodesInvokeParams, NodesInvokeResult};
use crate::protocol::{ErrorCode, RpcError};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::Weak;
use std::time::Duration;
use tokio::task::JoinHandle;

#[derive(Serialize, Deserialize)]
struct Forwarded {
    params: NodesInvokeParams,
    /// Whose idempotency keys the caller's are, as on the first gateway.
    owner: String,
}

/// Extra time the first gateway waits beyond the invoke's own timeout.
const MARGIN: Duration = Duration::from_secs(2);

fn subject(membership: &Membership, node_id: &str) -> String {
    // Hex: a node id may hold characters NATS gives a meaning.
    membership.subject(&format!("nodes.invoke.{}", hex::encode(node_id)))
}

/// How long an invoke keeps asking for a node the store says is on
/// another gateway that does not answer for it yet.
const SUBSCRIBE_SETTLE: Duration = Duration::from_secs(1);

/// Stops answering for a node when its connection goes.
pub(super) struct Serving(JoinHandle<()>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl NodeService {
    /// Starts answering other gateways' invokes for `node_id`, connected
    /// here; None outside a cluster with a bus.
    pub(super) fn serve_remote(&self, node_id: &str) -> Option<Serving> {
        let membership = self.rt.membership.as_ref()?;
        let client = membership.nats.clone()?;
        let subject = subject(membership, node_id);
        let me: Weak<NodeService> = self.me.clone();
        Some(Serving(tokio::spawn(async move {
            // A queue group: a node briefly connected to two gateways (a
            // reconnect) runs each forwarded invoke once.
            let mut calls = match client.queue_subscribe(subject, "nodes".to_string()).await {
                Ok(calls) => calls,
                Err(e) => {
                    tracing::warn!("nodes: cannot take invokes from the other gateways: {e}");
                    return;
                }
            };
            while let Some(message) = calls.next().await {
                let Some(nodes) = me.upgrade() else {
                    return;
                };
                let client = client.clone();
                tokio::spawn(async move {
                    let answer = match rpc::body::<Forwarded>(&message) {
                        Ok(call) => nodes.send_and_wait(call.params, &call.owner, false).await,
                        Err(e) => Err(e),
                    };
                    rpc::reply(&client, &message, answer).await;
                });
            }
        })))
    }

    /// Sends the invoke to the gateway the node is connected to. None
    /// when there is no such gateway (or no bus): the local answer stands.
    pub(super) async fn forward(
        &self,
        params: &NodesInvokeParams,
        owner: &str,
        timeout_ms: u64,
    ) -> Option<Result<NodesInvokeResult, RpcError>> {
        let membership = self.rt.membership.as_ref()?;
        let client = membership.nats.as_ref()?;
        let call = Forwarded {
            params: params.clone(),
            owner: owner.to_string(),
        };
        let timeout = Duration::from_millis(timeout_ms) + MARGIN;
        let subject = subject(membership, &params.node_id);
        let mut answered = rpc::call(client, subject.clone(), &call, timeout).await;
        // A node that has just connected to another gateway is recorded
        // there before that gateway's subscription reaches NATS: while the
        // store says it is there, ask again for a moment.
        let settle = tokio::time::Instant::now() + SUBSCRIBE_SETTLE;
        while matches!(answered, Err(Unanswered::NoResponders))
            && tokio::time::Instant::now() < settle
            && self.connected_elsewhere(membership, &params.node_id).await
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
            answered = rpc::call(client, subject.clone(), &call, timeout).await;
        }
        match answered {
            Ok(answer) => Some(answer),
            Err(Unanswered::NoResponders) => None,
            Err(Unanswered::TimedOut) => Some(Err(RpcError::new(
                ErrorCode::Timeout,
                format!(
                    "node {} did not answer {} within {timeout_ms} ms",
                    params.node_id.as_str(),
                    params.command.as_str()
                ),
            ))),
            Err(Unanswered::Failed(e)) => Some(Err(RpcError::new(
                ErrorCode::Unavailable,
                format!(
                    "cannot reach the gateway node {} is on: {e}",
                    params.node_id.as_str()
                ),
            )
            .with_retryable(true))),
        }
    }
}

impl NodeService {
    /// Whether the shared store has `node_id` connected to another member.
    async fn connected_elsewhere(&self, membership: &Membership, node_id: &str) -> bool {
        membership
            .store
            .node_presence(membership.lease_ms)
            .await
            .is_ok_and(|presence| {
                presence
                    .iter()
                    .any(|p| p.node_id == node_id && p.member != membership.name)
            })
    }
}
