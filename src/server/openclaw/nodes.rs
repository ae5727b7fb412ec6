//! OpenClaw's node.* methods and events on the native nodes.* ones: an
//! operator lists, approves and invokes nodes; a node host answers
//! node.invoke.request with node.invoke.result.

use super::error::V4Error;
use super::methods::native_call;
use super::types::ErrorCode;
use super::V4Method;
use crate::gateway::Gateway;
use crate::protocol::types as native;
use crate::protocol::CallContext;
use serde_json::{json, Value};

pub async fn call(
    gw: &Gateway,
    ctx: &CallContext,
    method: V4Method,
    params: Value,
) -> Result<Value, V4Error> {
    let to = method.native();
    Ok(match method {
        V4Method::NodeList => {
            let mut nodes = list(gw, ctx).await?;
            nodes.sort_by_key(|n| !n.online);
            json!({ "ts": crate::clock::now_ms(), "nodes": nodes.iter().map(entry).collect::<Vec<_>>() })
        }
        V4Method::NodeDescribe => {
            let wanted = params["nodeId"].as_str().unwrap_or_default();
            let nodes = list(gw, ctx).await?;
            let Some(node) = nodes.iter().find(|n| n.node_id == wanted) else {
                return Err(V4Error::invalid("unknown nodeId"));
            };
            let mut described = entry(node);
            described["ts"] = crate::clock::now_ms().into();
            described
        }
        V4Method::NodeInvoke => {
            let mut invoke = json!({
                "nodeId": params["nodeId"],
                "command": params["command"],
                "idempotencyKey": params["idempotencyKey"],
            });
            if let Some(args) = params.get("params") {
                invoke["params"] = args.clone();
            }
            if let Some(ms) = params.get("timeoutMs").and_then(Value::as_u64) {
                invoke["timeoutMs"] = ms.clamp(100, 600_000).into();
            }
            let answer: native::NodesInvokeResult = native_call(gw, ctx, to, invoke).await?;
            if !answer.ok {
                let why = answer.error.unwrap_or_else(|| "the node failed".into());
                let mut error = V4Error::new(ErrorCode::Unavailable, why.clone())
                    .with("nodeError", json!({ "message": why }))
                    .with("nodeCommandDispatched", true);
                error.retryable = false;
                return Err(error);
            }
            let text = answer.payload.as_ref().map(Value::to_string);
            json!({
                "ok": true,
                "nodeId": answer.node_id,
                "command": params["command"],
                "payload": answer.payload,
                "payloadJSON": text,
            })
        }
        V4Method::NodeInvokeResult => {
            let payload = match (&params["payloadJSON"], params.get("payload")) {
                (Value::String(text), _) => Some(serde_json::from_str(text).unwrap_or(json!(text))),
                (_, Some(payload)) => Some(payload.clone()),
                _ => None,
            };
            let mut result = json!({ "invokeId": params["id"], "ok": params["ok"] });
            if let Some(payload) = payload {
                result["payload"] = payload;
            }
            if let Some(error) = params.get("error") {
                let text = match (error["code"].as_str(), error["message"].as_str()) {
                    (Some(code), Some(message)) => format!("{code}: {message}"),
                    (code, message) => message.or(code).unwrap_or("failed").to_string(),
                };
                result["error"] = text.chars().take(10_000).collect::<String>().into();
            }
            let answered: native::NodesResultResult = native_call(gw, ctx, to, result).await?;
            let mut answer = json!({ "ok": true });
            if !answered.accepted {
                answer["ignored"] = true.into();
            }
            answer
        }
        V4Method::NodeEvent => {
            let _: native::NodesHeartbeatResult = native_call(gw, ctx, to, json!({})).await?;
            json!({ "ok": true, "event": params["event"], "handled": false, "reason": "not recorded by clawgate" })
        }
        V4Method::NodePairList => {
            let pending: native::NodesPendingResult = native_call(gw, ctx, to, json!({})).await?;
            let paired = list(gw, ctx).await?;
            json!({
                "pending": pending.requests.iter().map(requested).collect::<Vec<_>>(),
                "paired": paired.iter().map(entry).collect::<Vec<_>>(),
            })
        }
        V4Method::NodePairApprove => {
            let approved: native::NodesApproveResult = native_call(gw, ctx, to, params).await?;
            let nodes = list(gw, ctx).await?;
            let node = nodes.iter().find(|n| n.node_id == approved.node_id);
            json!({
                "requestId": approved.request_id,
                "node": node.map(entry).unwrap_or_else(|| json!({
                    "nodeId": approved.node_id, "caps": [], "commands": [], "paired": true, "connected": false,
                })),
            })
        }
        V4Method::NodePairReject => {
            let rejected: native::NodesRejectResult = native_call(gw, ctx, to, params).await?;
            json!({ "requestId": rejected.request_id })
        }
        V4Method::NodePairRemove => {
            let removed: native::NodesRemoveResult = native_call(gw, ctx, to, params).await?;
            if !removed.removed {
                return Err(V4Error::invalid("unknown nodeId"));
            }
            json!({ "nodeId": removed.node_id })
        }
        _ => unreachable!("{} is not a node method", method.name()),
    })
}

async fn list(gw: &Gateway, ctx: &CallContext) -> Result<Vec<native::NodeInfo>, V4Error> {
    let listed: native::NodesListResult =
        native_call(gw, ctx, crate::protocol::Method::NodesList, json!({})).await?;
    Ok(listed.nodes)
}

fn entry(node: &native::NodeInfo) -> Value {
    let mut entry = json!({
        "nodeId": node.node_id,
        "caps": node.caps,
        "commands": node.commands,
        "paired": true,
        "connected": node.online,
        "approvedAtMs": node.paired_at_ms,
    });
    for (key, value) in [("displayName", &node.name), ("platform", &node.platform)] {
        if !value.is_empty() {
            entry[key] = value.as_str().into();
        }
    }
    if let Some(ip) = &node.remote_ip {
        entry["remoteIp"] = ip.as_str().into();
    }
    if let Some(ms) = node.connected_at_ms {
        entry["connectedAtMs"] = ms.into();
    }
    if let Some(ms) = node.last_heartbeat_at_ms {
        entry["lastSeenAtMs"] = ms.into();
    }
    entry
}

/// A waiting request, as node.pair.list and node.pair.requested show it.
pub fn requested(request: &native::PairingRequest) -> Value {
    let mut entry = json!({
        "requestId": request.request_id,
        "displayName": request.name,
        "platform": request.platform,
        "caps": request.caps,
        "commands": request.commands,
        "remoteIp": request.remote_ip,
        "ts": request.requested_at_ms,
        "expiresAtMs": request.expires_at_ms,
    });
    if let Some(node) = &request.node_id {
        entry["nodeId"] = node.as_str().into();
    }
    entry
}

/// The invocation as the node host reads it.
pub fn invoke_request(event: &native::NodesInvokeRequestEvent) -> Value {
    let mut request = json!({
        "id": event.invoke_id,
        "nodeId": event.node_id,
        "command": event.command,
        "timeoutMs": event.timeout_ms,
    });
    if let Some(params) = &event.params {
        request["paramsJSON"] = params.to_string().into();
    }
    request
}
