//! OpenClaw's exec.approval.* methods and events on the native approvals:
//! the same waiting commands, the same first-answer-wins, in OpenClaw's
//! shape (an entry with the request inside).

use super::error::V4Error;
use super::methods::native_call;
use super::types::ErrorCode;
use super::V4Method;
use crate::gateway::Gateway;
use crate::protocol::types as native;
use crate::protocol::{CallContext, ErrorCode as Native};
use serde_json::{json, Value};

pub async fn call(
    gw: &Gateway,
    ctx: &CallContext,
    method: V4Method,
    params: Value,
) -> Result<Value, V4Error> {
    let to = method.native();
    Ok(match method {
        V4Method::ExecApprovalList => {
            let pending: native::ApprovalsPendingResult =
                native_call(gw, ctx, to, json!({})).await?;
            Value::Array(pending.approvals.iter().map(entry).collect())
        }
        V4Method::ExecApprovalGet => {
            let pending: native::ApprovalsPendingResult =
                native_call(gw, ctx, to, json!({})).await?;
            let id = params["id"].as_str().unwrap_or_default();
            match pending.approvals.iter().find(|a| a.id == id) {
                Some(approval) => entry(approval),
                None => return Err(not_found()),
            }
        }
        V4Method::ExecApprovalResolve => {
            let answer = json!({ "id": params["id"], "decision": params["decision"] });
            match native_call::<native::ApprovalsRespondResult>(gw, ctx, to, answer).await {
                Ok(_) => json!({ "ok": true }),
                // Unknown, or answered already: either way not waiting.
                Err(e)
                    if e.native_reason() == Some(Native::NotFound.name())
                        || e.native_reason() == Some(Native::Conflict.name()) =>
                {
                    return Err(not_found())
                }
                Err(e) => return Err(e),
            }
        }
        _ => unreachable!("{} is not an approval method", method.name()),
    })
}

fn not_found() -> V4Error {
    V4Error::new(
        ErrorCode::ApprovalNotFound,
        "unknown or expired approval id",
    )
}

/// A waiting approval as exec.approval.list and .requested show it.
pub fn entry(approval: &native::ExecApproval) -> Value {
    let mut request = json!({
        "command": approval.command,
        "commandArgv": approval.argv,
        "host": if approval.node_id.is_some() { "node" } else { "gateway" },
        "agentId": approval.agent_id,
    });
    for (key, value) in [
        ("cwd", &approval.cwd),
        ("nodeId", &approval.node_id),
        ("sessionKey", &approval.session_key),
    ] {
        if let Some(v) = value {
            request[key] = v.as_str().into();
        }
    }
    json!({
        "approvalKind": "exec",
        "id": approval.id,
        "request": request,
        "createdAtMs": approval.requested_at_ms,
        "expiresAtMs": approval.expires_at_ms,
    })
}

/// A decision as exec.approval.resolved shows it: an approval nobody
/// answered in time counts as denied.
pub fn resolved(event: &native::ApprovalsResolvedEvent) -> Value {
    let timed_out = event.decision == native::ApprovalsResolvedEventDecision::Timeout;
    json!({
        "id": event.id,
        "decision": if timed_out { "deny".to_string() } else { event.decision.to_string() },
        "resolvedBy": if timed_out { "timeout" } else { event.decided_by.as_str() },
        "ts": crate::clock::now_ms(),
    })
}
