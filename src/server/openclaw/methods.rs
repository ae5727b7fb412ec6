//! The v4 methods: each validates its params against its schema in
//! `schema/openclaw/methods.json`, calls the native method the table
//! names, and answers in OpenClaw's shape.

use super::convert;
use super::error::V4Error;
use super::{schemas, V4Method};
use crate::gateway::Gateway;
use crate::protocol::types as native;
use crate::protocol::{dispatch, CallContext, RpcError};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// Runs one v4 method; the payload as JSON text.
pub async fn call(
    gw: &Gateway,
    ctx: &CallContext,
    method: V4Method,
    params: Value,
) -> Result<String, V4Error> {
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
    let native_method = method.native();
    let answer = dispatch(gw, ctx, native_method, json!({})).await?;
    let payload = match method {
        V4Method::Status => return Ok(answer),
        V4Method::Health => {
            let health: native::HealthSnapshot = read(&answer)?;
            json!(convert::health(&health, &gw.config().agents.default))
        }
        V4Method::SystemPresence => {
            let presence: native::PresenceSnapshot = read(&answer)?;
            json!(convert::presence(&presence))
        }
        V4Method::LastHeartbeat => {
            let result: native::HeartbeatLastResult = read(&answer)?;
            let last = result
                .heartbeats
                .iter()
                .filter_map(|h| h.last.as_ref())
                .max_by_key(|run| run.at_ms);
            json!(last.map(convert::heartbeat))
        }
        V4Method::ModelsList => {
            let status: native::StatusResult = read(&answer)?;
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
    };
    debug_assert!(
        schemas().validate(method.result_def(), &payload).is_ok(),
        "{} answered outside its schema: {payload}",
        method.name()
    );
    Ok(payload.to_string())
}

fn read<T: DeserializeOwned>(answer: &str) -> Result<T, V4Error> {
    serde_json::from_str(answer).map_err(|e| {
        V4Error::from(RpcError::new(
            crate::protocol::ErrorCode::InternalError,
            format!("cannot read the native result: {e}"),
        ))
    })
}
