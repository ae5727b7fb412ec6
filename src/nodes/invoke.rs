//! Invocations: an operator (or an agent's tool) asks a node to run a
//! command; the node gets nodes.invoke.request on its connection alone
//! and answers with nodes.result.

use super::{NodeService, Table};
use crate::idempotency;
use crate::protocol::types::{
    NodesInvokeParams, NodesInvokeRequestEvent, NodesInvokeResult, NodesResultParams,
    NodesResultResult,
};
use crate::protocol::{CallContext, ErrorCode, Event, RpcError};
use serde_json::Value;
use std::time::Duration;
use tokio::sync::oneshot;

/// An invocation waiting for the node's answer.
pub(super) struct Waiting {
    node_id: String,
    answer: oneshot::Sender<Result<Answer, String>>,
}

struct Answer {
    ok: bool,
    payload: Option<Value>,
    error: Option<String>,
}

impl NodeService {
    /// nodes.invoke: checks the command, sends it to the node, waits.
    /// `owner` names whose idempotency keys the caller's are.
    pub async fn invoke(
        &self,
        params: NodesInvokeParams,
        owner: &str,
    ) -> Result<NodesInvokeResult, RpcError> {
        let result = self.send_and_wait(params, owner, true).await;
        self.rt.metrics.node_invoke(match &result {
            Ok(answer) if answer.ok => crate::metrics::OK,
            Ok(_) => "failed",
            Err(e) => e.code.name(),
        });
        result
    }

    /// `may_forward`: a node not connected here may be on another
    /// gateway of the cluster (false for an invoke forwarded here).
    pub(super) async fn send_and_wait(
        &self,
        params: NodesInvokeParams,
        owner: &str,
        may_forward: bool,
    ) -> Result<NodesInvokeResult, RpcError> {
        let idempotency_key = idempotency::key(
            crate::protocol::Method::NodesInvoke.name(),
            owner,
            params.idempotency_key.as_deref().map(String::as_str),
        );
        // Two requests with one key: the second waits for the first and gets
        // its result, so the node runs the command once.
        let _once = match &idempotency_key {
            Some(key) => Some(self.once.lock(key).await),
            None => None,
        };
        if let Some(earlier) =
            idempotency::replay(&*self.rt.stores.results, idempotency_key.as_ref()).await?
        {
            return Ok(earlier);
        }
        let config = self.rt.config();
        let node_id = params.node_id.to_string();
        let command = params.command.to_string();
        let timeout_ms = params
            .timeout_ms
            .unwrap_or(config.nodes.invoke_timeout_ms)
            .max(1) as u64;
        let invoke_id = format!("inv-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let (answer, answered) = oneshot::channel();
        let not_here = {
            let mut table = self.lock();
            match table.nodes.get(&node_id) {
                None => Some(RpcError::new(
                    ErrorCode::NotFound,
                    format!("no node {node_id}"),
                )),
                Some(node) => {
                    if !node.stored.commands.contains(&command) {
                        return Err(RpcError::new(
                            ErrorCode::Forbidden,
                            format!(
                                "node {node_id} did not declare the command {command}; it declared: {}",
                                node.stored.commands.join(", ")
                            ),
                        ));
                    }
                    if !crate::pattern::any_matches(
                        config.nodes.allow_commands.iter().map(|p| p.as_str()),
                        &command,
                    ) {
                        return Err(RpcError::new(
                            ErrorCode::Forbidden,
                            format!("the command {command} is not in nodes.allowCommands"),
                        ));
                    }
                    match &node.live {
                        None => Some(
                            RpcError::new(
                                ErrorCode::Unavailable,
                                format!("node {node_id} is offline"),
                            )
                            .with_retryable(true),
                        ),
                        Some(live) => {
                            self.rt.bus.publish_to(
                                &live.conn_id,
                                Event::NodesInvokeRequest(NodesInvokeRequestEvent {
                                    invoke_id: invoke_id.clone(),
                                    node_id: node_id.clone(),
                                    command: command.clone(),
                                    params: params.params.clone(),
                                    timeout_ms,
                                }),
                            );
                            table.invokes.insert(
                                invoke_id.clone(),
                                Waiting {
                                    node_id: node_id.clone(),
                                    answer,
                                },
                            );
                            None
                        }
                    }
                }
            }
        };
        if let Some(local) = not_here {
            // Another gateway may have the node: it checks and runs the
            // invoke, and keeps its result under the same key.
            if may_forward {
                if let Some(answer) = self.forward(&params, owner, timeout_ms).await {
                    return answer;
                }
            }
            return Err(local);
        }
        let answer = tokio::time::timeout(Duration::from_millis(timeout_ms), answered).await;
        let answer = match answer {
            Ok(Ok(Ok(answer))) => answer,
            Ok(Ok(Err(why))) => {
                return Err(RpcError::new(ErrorCode::Unavailable, why).with_retryable(true))
            }
            Ok(Err(_)) | Err(_) => {
                self.lock().invokes.remove(&invoke_id);
                return Err(RpcError::new(
                    ErrorCode::Timeout,
                    format!("node {node_id} did not answer {command} within {timeout_ms} ms"),
                ));
            }
        };
        let result = NodesInvokeResult {
            invoke_id,
            node_id,
            ok: answer.ok,
            payload: answer.payload,
            error: answer.error,
        };
        idempotency::remember(&*self.rt.stores.results, idempotency_key, &result).await?;
        Ok(result)
    }

    /// nodes.result: hands a node's answer to the waiting caller.
    pub fn result(
        &self,
        ctx: &CallContext,
        params: NodesResultParams,
    ) -> Result<NodesResultResult, RpcError> {
        let node_id = bound_node(ctx)?;
        self.heard(node_id);
        let invoke_id = params.invoke_id.to_string();
        let mut table = self.lock();
        let waiting = match table.invokes.get(&invoke_id) {
            Some(w) if w.node_id == node_id => table.invokes.remove(&invoke_id),
            _ => None,
        };
        let Some(waiting) = waiting else {
            tracing::warn!(node = %node_id, invoke = %invoke_id, "late or unknown invoke result discarded");
            return Ok(NodesResultResult { accepted: false });
        };
        let answer = Answer {
            ok: params.ok,
            payload: params.payload,
            error: params.error.map(|e| e.to_string()),
        };
        let accepted = waiting.answer.send(Ok(answer)).is_ok();
        Ok(NodesResultResult { accepted })
    }
}

/// The node a connection speaks for; node methods other than
/// nodes.register need one.
pub fn bound_node(ctx: &CallContext) -> Result<&str, RpcError> {
    ctx.node_id().ok_or_else(|| {
        RpcError::new(
            ErrorCode::Unauthorized,
            "this connection is not a paired node: pair with nodes.register, or connect with the node token",
        )
    })
}

/// Fails every invocation waiting on `node_id`.
pub(super) fn fail_waiting(table: &mut Table, node_id: &str, why: &str) {
    let ids: Vec<String> = table
        .invokes
        .iter()
        .filter(|(_, w)| w.node_id == node_id)
        .map(|(id, _)| id.clone())
        .collect();
    for id in ids {
        if let Some(waiting) = table.invokes.remove(&id) {
            let _ = waiting.answer.send(Err(format!("node {node_id}: {why}")));
        }
    }
}
