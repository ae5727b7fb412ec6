//! The v4 methods: each validates its params against its schema in
//! `schema/openclaw/methods.json`, calls the native method the table
//! names, and answers in OpenClaw's shape.

use super::convert;
use super::error::V4Error;
use super::{schemas, V4Method};
use crate::gateway::Gateway;
use crate::protocol::types as native;
use crate::protocol::{
    decode_params, dispatch, CallContext, ErrorCode, Handlers, Method, RpcError,
};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// Checks params against the method's schema; missing params are `{}`.
pub fn validate(method: V4Method, params: Value) -> Result<Value, V4Error> {
    let params = match params {
        Value::Null => json!({}),
        other => other,
    };
    if let Err(violations) = schemas().validate(method.params_def(), &params) {
        let first = &violations[0];
        let at = if first.pointer.is_empty() {
            "params"
        } else {
            &first.pointer
        };
        return Err(V4Error::invalid(format!(
            "invalid {} params: {} at {at}",
            method.name(),
            first.message
        )));
    }
    Ok(params)
}

/// The first answer of a method that answers twice (agent: accepted now,
/// the reply when the turn ends); None for the others.
pub fn accepted(method: V4Method, params: &Value) -> Option<String> {
    (method == V4Method::Agent).then(|| {
        json!({
            "runId": run_id(text(params, "idempotencyKey")),
            "status": "accepted",
            "acceptedAt": crate::clock::now_ms(),
        })
        .to_string()
    })
}

/// Runs one v4 method on validated params; the payload as JSON text.
///
/// `slot` is the connection's in-flight permit for a turn that goes on
/// after the answer (chat.send): held until the turn ends, so such turns
/// count against the connection's in-flight limit like any request.
pub async fn call(
    gw: Arc<Gateway>,
    ctx: Arc<CallContext>,
    method: V4Method,
    params: Value,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<String, V4Error> {
    let native_method = method.native();
    // Without params the native handler is called directly: no trip
    // through JSON.
    let none = native_method;
    let payload = match method {
        V4Method::Status => return encode(method, &gw.status(&ctx, no_params(none)?).await?),
        V4Method::Health => {
            let health = gw.health(&ctx, no_params(none)?).await?;
            let summary = convert::health(&health, &gw.config().agents.default);
            return encode(method, &summary);
        }
        V4Method::SystemPresence => {
            let presence = gw.presence_list(&ctx, no_params(none)?).await?;
            return encode(method, &convert::presence(&presence));
        }
        V4Method::LastHeartbeat => {
            let result = gw.heartbeat_last(&ctx, no_params(none)?).await?;
            let last = result
                .heartbeats
                .iter()
                .filter_map(|h| h.last.as_ref())
                .max_by_key(|run| run.at_ms);
            return encode(method, &last.map(convert::heartbeat));
        }
        V4Method::ModelsList => {
            let status = gw.status(&ctx, no_params(none)?).await?;
            let only = params.get("agentId").and_then(Value::as_str);
            let mut models: Vec<_> = status
                .agents
                .iter()
                .filter(|a| only.is_none_or(|id| a.id == id))
                .filter_map(convert::model)
                .collect();
            models.sort_by(|a, b| (&a.provider, &a.id).cmp(&(&b.provider, &b.id)));
            models.dedup_by(|a, b| a.provider == b.provider && a.id == b.id);
            json!({ "models": models })
        }
        V4Method::CronList
        | V4Method::CronGet
        | V4Method::CronAdd
        | V4Method::CronUpdate
        | V4Method::CronStatus
        | V4Method::CronRuns
        | V4Method::CronRun
        | V4Method::CronRemove => {
            let payload = super::cron::call(&gw, &ctx, method, &params).await?;
            return encode(method, &payload);
        }
        V4Method::ExecApprovalList
        | V4Method::ExecApprovalGet
        | V4Method::ExecApprovalResolve
        | V4Method::ApprovalGet
        | V4Method::ApprovalResolve
        | V4Method::ApprovalHistory => super::approvals::call(&gw, &ctx, method, params).await?,
        V4Method::NodeList
        | V4Method::NodeDescribe
        | V4Method::NodeInvoke
        | V4Method::NodeInvokeResult
        | V4Method::NodeEvent
        | V4Method::NodePairList
        | V4Method::NodePairApprove
        | V4Method::NodePairReject
        | V4Method::NodePairRemove => super::nodes::call(&gw, &ctx, method, params).await?,
        V4Method::DevicePairList
        | V4Method::DevicePairApprove
        | V4Method::DevicePairReject
        | V4Method::DevicePairRemove
        | V4Method::DeviceTokenRotate
        | V4Method::DeviceTokenRevoke => super::pairing::call(&gw, &ctx, method, params).await?,
        V4Method::ConfigGet => {
            let config = Handlers::config(&*gw, &ctx, no_params(native_method)?).await?;
            json!({
                "path": config.path,
                "exists": config.path.is_some(),
                "valid": true,
                "config": config.value,
                "hash": config.hash,
            })
        }
        V4Method::ConfigSet | V4Method::ConfigApply | V4Method::ConfigPatch => {
            config_edit(&gw, &ctx, method, &params).await?
        }
        V4Method::LogsTail => {
            let tail: native::LogsTailResult =
                native_call(&gw, &ctx, native_method, params.clone()).await?;
            json!({
                "file": "memory",
                "cursor": tail.cursor,
                "size": tail.size,
                "lines": tail.lines.iter().map(|l| convert::log_line(l)).collect::<Vec<_>>(),
                "truncated": tail.truncated,
                "reset": tail.reset,
                "skippedBytes": tail.skipped_bytes,
            })
        }
        V4Method::ConfigSchema => {
            let schema = gw.config_schema(&ctx, no_params(native_method)?).await?;
            json!({
                "schema": schema.schema,
                "uiHints": {},
                "version": env!("CARGO_PKG_VERSION"),
                "generatedAt": env!("CARGO_PKG_VERSION"),
            })
        }
        V4Method::SessionsPatch => {
            let mut patch = json!({ "sessionKey": params["key"] });
            for (ours, theirs) in [
                ("label", "label"),
                ("model", "model"),
                ("thinking", "thinkingLevel"),
            ] {
                if let Some(v) = params.get(theirs) {
                    patch[ours] = v.clone();
                }
            }
            let session: native::SessionInfo = native_call(&gw, &ctx, native_method, patch).await?;
            json!({ "ok": true, "key": session.key, "entry": convert::session_row(&session) })
        }
        V4Method::SessionsReset => {
            let cleared: native::SessionsClearResult = native_call(
                &gw,
                &ctx,
                native_method,
                json!({ "sessionKey": params["key"] }),
            )
            .await?;
            json!({ "ok": true, "key": cleared.session_key, "removed": cleared.removed })
        }
        V4Method::SessionsCompact => {
            let key = &params["key"];
            let Some(keep) = params.get("maxLines") else {
                return encode(
                    method,
                    &json!({
                        "ok": false,
                        "key": key,
                        "compacted": false,
                        "reason": "clawgate does not summarise transcripts; give maxLines to keep only the latest messages",
                    }),
                );
            };
            let trimmed: native::SessionsClearResult = native_call(
                &gw,
                &ctx,
                native_method,
                json!({ "sessionKey": key, "keep": keep.as_u64().unwrap_or(u64::MAX).min(100_000) }),
            )
            .await?;
            json!({
                "ok": true,
                "key": trimmed.session_key,
                "compacted": trimmed.removed > 0,
                "kept": trimmed.kept,
            })
        }
        V4Method::SessionsDelete => {
            let deleted: native::SessionsDeleteResult = native_call(
                &gw,
                &ctx,
                native_method,
                json!({ "sessionKey": params["key"] }),
            )
            .await?;
            json!({ "ok": true, "key": deleted.session_key, "deleted": deleted.deleted, "archived": [] })
        }
        V4Method::ChatSend => chat_send(gw, ctx, &params, slot)?,
        V4Method::AgentWait => {
            let timeout = params
                .get("timeoutMs")
                .and_then(Value::as_u64)
                .unwrap_or(30_000)
                .min(600_000);
            let wait = json!({ "runId": params["runId"], "timeoutMs": timeout });
            let ended: native::ChatWaitResult = native_call(&gw, &ctx, native_method, wait).await?;
            convert::run_wait(&ended)
        }
        V4Method::ChatAbort => {
            let Some(run) = params.get("runId").and_then(Value::as_str) else {
                return Err(V4Error::invalid(
                    "chat.abort needs runId: clawgate stops a run by its id (the chat.send idempotencyKey)",
                ));
            };
            let result: native::ChatAbortResult =
                native_call(&gw, &ctx, native_method, json!({ "runId": run })).await?;
            let stopped: Vec<&str> = result.aborted.then_some(run).into_iter().collect();
            json!({ "ok": true, "aborted": result.aborted, "runIds": stopped })
        }
        V4Method::SessionsGet => {
            let Some(key) = params.get("key").or_else(|| params.get("sessionKey")) else {
                return Err(V4Error::invalid("sessions.get needs key (or sessionKey)"));
            };
            let limit = params.get("limit").cloned().unwrap_or(200.into());
            let query = json!({ "sessionKey": key, "limit": limit });
            let messages =
                match native_call::<native::SessionsHistoryResult>(&gw, &ctx, native_method, query)
                    .await
                {
                    Ok(history) => history.messages.iter().map(convert::message).collect(),
                    Err(e) if e.native_reason() == Some(ErrorCode::NotFound.name()) => Vec::new(),
                    Err(e) => return Err(e),
                };
            json!({ "messages": messages })
        }
        V4Method::ChatHistory => {
            let mut query = json!({ "sessionKey": params["sessionKey"] });
            if let Some(limit) = params.get("limit") {
                query["limit"] = limit.clone();
            }
            let history: native::SessionsHistoryResult =
                native_call(&gw, &ctx, native_method, query).await?;
            json!({
                "sessionKey": history.session_key,
                "messages": history.messages.iter().map(convert::message).collect::<Vec<_>>(),
            })
        }
        V4Method::SessionsList => {
            let mut query = json!({});
            if let Some(limit) = params.get("limit").and_then(Value::as_u64) {
                query["limit"] = limit.min(1000).into();
            }
            for key in ["activeMinutes", "agentId"] {
                if let Some(v) = params.get(key) {
                    query[key] = v.clone();
                }
            }
            if let Some(search) = params
                .get("search")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                query["search"] = search.into();
            }
            let list: native::SessionsResult = native_call(&gw, &ctx, native_method, query).await?;
            let rows: Vec<Value> = list.sessions.iter().map(convert::session_row).collect();
            json!({ "count": rows.len(), "sessions": rows })
        }
        V4Method::Agent => {
            let started = std::time::Instant::now();
            let run = run_id(text(&params, "idempotencyKey"));
            let mut turn = json!({
                "message": params["message"],
                "idempotencyKey": text(&params, "idempotencyKey"),
                "runId": run,
            });
            for key in ["agentId", "sessionKey"] {
                if let Some(v) = params
                    .get(key)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                {
                    turn[key] = v.into();
                }
            }
            let done: native::ChatResult = native_call(&gw, &ctx, native_method, turn).await?;
            let aborted = done.stop_reason == native::ChatResultStopReason::Aborted;
            json!({
                "runId": done.run_id,
                "status": if aborted { "aborted" } else { "ok" },
                "summary": if aborted { "aborted" } else { "completed" },
                "result": {
                    "payloads": [{ "text": done.message.content }],
                    "meta": {
                        "sessionKey": done.session_key,
                        "agentId": done.agent_id,
                        "durationMs": started.elapsed().as_millis() as u64,
                    },
                },
            })
        }
    };
    encode(method, &payload)
}

/// The payload as JSON text; in debug builds, checked against its schema.
/// config.set and config.apply (the whole file) and config.patch (a merge
/// patch), guarded by the file's hash, in OpenClaw's messages.
async fn config_edit(
    gw: &Gateway,
    ctx: &CallContext,
    method: V4Method,
    params: &Value,
) -> Result<Value, V4Error> {
    let Some(base) = params.get("baseHash") else {
        return Err(V4Error::invalid(
            "config base hash required; re-run config.get and retry",
        ));
    };
    let edit = if method == V4Method::ConfigPatch {
        let patch = match crate::config::json5::parse(text(params, "raw")) {
            Ok(patch @ Value::Object(_)) => patch,
            Ok(_) => {
                return Err(V4Error::invalid(
                    "raw must be an object: a merge patch of clawgate's config",
                ))
            }
            Err(e) => return Err(V4Error::invalid(format!("raw is not valid JSON5: {e}"))),
        };
        let mut edit = json!({ "patch": patch, "baseHash": base });
        if let Some(paths) = params.get("replacePaths") {
            edit["replacePaths"] = paths.clone();
        }
        edit
    } else {
        json!({ "text": params["raw"], "baseHash": base })
    };
    let written: native::ConfigWriteResult = match native_call(gw, ctx, method.native(), edit).await
    {
        Ok(written) => written,
        Err(e) if e.native_reason() == Some(ErrorCode::Conflict.name()) => {
            return Err(V4Error::invalid(
                "config changed since last load; re-run config.get and retry",
            ))
        }
        Err(e) => return Err(e),
    };
    let config = Handlers::config(gw, ctx, no_params(Method::Config)?).await?;
    Ok(json!({
        "ok": true,
        "path": config.path,
        "hash": written.hash,
        "changed": written.changed,
        "restartRequired": written.restart_required,
    }))
}

fn encode<T: serde::Serialize>(method: V4Method, payload: &T) -> Result<String, V4Error> {
    debug_assert!(
        serde_json::to_value(payload)
            .is_ok_and(|p| schemas().validate(method.result_def(), &p).is_ok()),
        "{} answered outside its schema",
        method.name()
    );
    serde_json::to_string(payload).map_err(|e| {
        V4Error::from(RpcError::new(
            ErrorCode::InternalError,
            format!("cannot encode the result: {e}"),
        ))
    })
}

type Turn = Pin<Box<dyn Future<Output = Result<String, RpcError>> + Send>>;

/// Starts the turn and answers at once; the turn goes on in a task of its
/// own and reports through its events. A turn that fails before it
/// starts (an unknown agent, say) fails the request instead.
fn chat_send(
    gw: Arc<Gateway>,
    ctx: Arc<CallContext>,
    params: &Value,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<Value, V4Error> {
    let key = text(params, "idempotencyKey");
    let run = run_id(key);
    if gw.turns.is_running(&run) {
        return Ok(json!({ "runId": run, "status": "in_flight" }));
    }
    let native = json!({
        "message": params["message"],
        "sessionKey": params["sessionKey"],
        "idempotencyKey": key,
        "runId": run,
    });
    let mut turn: Turn = Box::pin(async move { dispatch(&*gw, &ctx, Method::Chat, native).await });
    let status = match turn.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Err(e)) => return Err(e.into()),
        Poll::Ready(Ok(_)) => "ok",
        Poll::Pending => {
            let span = tracing::Span::current();
            let running = async move {
                if let Err(e) = turn.await {
                    tracing::info!("an OpenClaw chat.send turn failed: {}", e.message);
                }
                drop(slot);
            };
            tokio::spawn(tracing::Instrument::instrument(running, span));
            "started"
        }
    };
    Ok(json!({ "runId": run, "status": status }))
}

/// The native method's params when the client gives none.
fn no_params<T: DeserializeOwned>(method: Method) -> Result<T, RpcError> {
    decode_params(method, Value::Null)
}

fn text<'a>(params: &'a Value, key: &str) -> &'a str {
    params.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The run id for a client's idempotency key: the key itself when it is a
/// valid run id (OpenClaw's clients send UUIDs), else one derived from it.
fn run_id(key: &str) -> String {
    let valid = key.len() <= 128
        && key.starts_with(|c: char| c.is_ascii_alphanumeric())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
    if valid {
        key.to_string()
    } else {
        use sha2::{Digest, Sha256};
        format!("run-{}", &hex::encode(Sha256::digest(key.as_bytes()))[..32])
    }
}

pub(super) async fn native_call<T: DeserializeOwned>(
    gw: &Gateway,
    ctx: &CallContext,
    method: Method,
    params: Value,
) -> Result<T, V4Error> {
    let answer = dispatch(gw, ctx, method, params).await?;
    serde_json::from_str(&answer).map_err(|e| {
        V4Error::from(RpcError::new(
            ErrorCode::InternalError,
            format!("cannot read the native result: {e}"),
        ))
    })
}
