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
        V4Method::ApprovalGet => {
            let id = params["id"].as_str().unwrap_or_default();
            let pending: native::ApprovalsPendingResult =
                native_call(gw, ctx, to, json!({})).await?;
            let approval = match pending.approvals.iter().find(|a| a.id == id) {
                Some(waiting) => snapshot(waiting),
                None => {
                    let entry = answered(gw, ctx, id).await?.ok_or_else(not_found)?;
                    terminal(&Decided::from(&entry), gw)
                }
            };
            json!({ "approval": approval })
        }
        V4Method::ApprovalResolve => {
            let id = params["id"].as_str().unwrap_or_default();
            if params["kind"] != "exec" {
                return Err(not_found());
            }
            let pending: native::ApprovalsPendingResult = native_call(
                gw,
                ctx,
                crate::protocol::Method::ApprovalsPending,
                json!({}),
            )
            .await?;
            let waiting = pending.approvals.into_iter().find(|a| a.id == id);
            let answer = json!({ "id": id, "decision": params["decision"] });
            let applied =
                match native_call::<native::ApprovalsRespondResult>(gw, ctx, to, answer).await {
                    Ok(taken) => Some(taken.decision),
                    Err(e) if e.native_reason() == Some(Native::Conflict.name()) => None,
                    Err(e) if e.native_reason() == Some(Native::NotFound.name()) => {
                        return Err(not_found())
                    }
                    Err(e) => return Err(e),
                };
            let approval = match (applied, waiting) {
                // Decided by this answer: its audit entry may not be
                // written yet.
                (Some(decision), Some(waiting)) => {
                    terminal(&Decided::answered(&waiting, decision), gw)
                }
                _ => {
                    let entry = answered(gw, ctx, id).await?.ok_or_else(not_found)?;
                    terminal(&Decided::from(&entry), gw)
                }
            };
            json!({ "applied": applied.is_some(), "approval": approval })
        }
        V4Method::ApprovalHistory => {
            if params.get("kind").is_some_and(|k| k != "exec") {
                return Ok(json!({ "items": [] }));
            }
            let mut page = json!({ "limit": params.get("limit").cloned().unwrap_or(50.into()) });
            if let Some(cursor) = params.get("cursor") {
                let before: u64 =
                    cursor
                        .as_str()
                        .and_then(|c| c.parse().ok())
                        .ok_or_else(|| {
                            V4Error::invalid("cursor: pass the nextCursor of the previous page")
                        })?;
                page["before"] = before.into();
            }
            let audit: native::ApprovalsAuditResult = native_call(gw, ctx, to, page).await?;
            let items: Vec<Value> = audit
                .entries
                .iter()
                .filter(|e| e.approval_id.is_some())
                .map(|e| terminal(&Decided::from(e), gw))
                .collect();
            let mut history = json!({ "items": items });
            if let Some(next) = audit.next_before {
                history["nextCursor"] = next.to_string().into();
            }
            history
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

/// The audit entry of an answered approval (the latest 500 are searched).
async fn answered(
    gw: &Gateway,
    ctx: &CallContext,
    id: &str,
) -> Result<Option<native::ApprovalAuditEntry>, V4Error> {
    let audit: native::ApprovalsAuditResult = native_call(
        gw,
        ctx,
        crate::protocol::Method::ApprovalsAudit,
        json!({ "limit": 500 }),
    )
    .await?;
    Ok(audit
        .entries
        .into_iter()
        .find(|e| e.approval_id.as_deref() == Some(id)))
}

/// What a reviewer is shown: the command, where it runs and for whom.
fn presentation(command: &str, node: Option<&str>, agent: &str) -> Value {
    let mut shown = json!({
        "kind": "exec",
        "commandText": command,
        "host": if node.is_some() { "node" } else { "gateway" },
        "allowedDecisions": ["allow-once", "allow-always", "deny"],
    });
    if let Some(node) = node {
        shown["nodeId"] = node.into();
    }
    if !agent.is_empty() {
        shown["agentId"] = agent.into();
    }
    shown
}

/// A waiting approval as OpenClaw's unified approval snapshot.
fn snapshot(approval: &native::ExecApproval) -> Value {
    let mut shown = json!({
        "id": approval.id,
        "urlPath": format!("/approvals/{}", approval.id),
        "createdAtMs": approval.requested_at_ms,
        "expiresAtMs": approval.expires_at_ms,
        "presentation": presentation(&approval.command, approval.node_id.as_deref(), &approval.agent_id),
        "status": "pending",
    });
    if let Some(session) = &approval.session_key {
        shown["sourceSessionKey"] = session.as_str().into();
    }
    shown
}

/// An answered approval: from its audit entry, or from the request and
/// the answer just given.
struct Decided<'a> {
    id: &'a str,
    command: &'a str,
    node: Option<&'a str>,
    agent: &'a str,
    session: Option<&'a str>,
    requested_at_ms: u64,
    decided_at_ms: u64,
    decision: native::ApprovalAuditEntryDecision,
}

impl<'a> From<&'a native::ApprovalAuditEntry> for Decided<'a> {
    fn from(entry: &'a native::ApprovalAuditEntry) -> Self {
        Decided {
            id: entry.approval_id.as_deref().unwrap_or_default(),
            command: &entry.command,
            node: entry.node_id.as_deref(),
            agent: &entry.agent_id,
            session: entry.session_key.as_deref(),
            requested_at_ms: entry.requested_at_ms,
            decided_at_ms: entry.decided_at_ms,
            decision: entry.decision,
        }
    }
}

impl<'a> Decided<'a> {
    fn answered(approval: &'a native::ExecApproval, decision: native::ApprovalDecision) -> Self {
        use native::{ApprovalAuditEntryDecision as D, ApprovalDecision as A};
        Decided {
            id: &approval.id,
            command: &approval.command,
            node: approval.node_id.as_deref(),
            agent: &approval.agent_id,
            session: approval.session_key.as_deref(),
            requested_at_ms: approval.requested_at_ms,
            decided_at_ms: crate::clock::now_ms(),
            decision: match decision {
                A::AllowOnce => D::AllowOnce,
                A::AllowAlways => D::AllowAlways,
                A::Deny => D::Deny,
            },
        }
    }
}

/// An answered approval as OpenClaw's snapshot.
fn terminal(decided: &Decided, gw: &Gateway) -> Value {
    use native::ApprovalAuditEntryDecision as D;
    let id = decided.id;
    let timeout = gw.config().approvals.timeout_ms.max(1) as u64;
    let (status, decision, reason) = match decided.decision {
        // Policy decisions (allowed, denied) have no approval id and are
        // not listed; should one be, it reads as once.
        D::AllowOnce | D::Allowed => ("allowed", Some("allow-once"), "user"),
        D::AllowAlways => ("allowed", Some("allow-always"), "user"),
        D::Timeout => ("expired", None, "timeout"),
        D::Deny | D::Denied => ("denied", Some("deny"), "user"),
    };
    let mut shown = json!({
        "id": id,
        "urlPath": format!("/approvals/{id}"),
        "createdAtMs": decided.requested_at_ms,
        "expiresAtMs": decided.requested_at_ms + timeout,
        "presentation": presentation(decided.command, decided.node, decided.agent),
        "resolvedAtMs": decided.decided_at_ms,
        "status": status,
        "reason": reason,
    });
    if let Some(decision) = decision {
        shown["decision"] = decision.into();
    }
    let mut source = json!({ "agentId": decided.agent });
    if let Some(session) = decided.session {
        source["sessionKey"] = session.into();
    }
    shown["source"] = source;
    shown
}
