//! The agent tools of schema/tools.json, run against the gateway's state.

use super::Gateway;
use crate::protocol::types::{SessionHistoryToolParams, SessionsListToolParams};
use crate::protocol::{Schemas, Tool};
use crate::store::SessionFilter;
use serde_json::{json, Value};

/// Runs one tool call; an Err is shown to the model, which may recover.
pub async fn run(gw: &Gateway, tool: Tool, args: Value) -> Result<Value, String> {
    if let Err(violations) = Schemas::get().validate(tool.params_def(), &args) {
        let v = &violations[0];
        return Err(format!(
            "invalid arguments: {} at {}",
            v.message,
            if v.pointer.is_empty() {
                "/"
            } else {
                &v.pointer
            }
        ));
    }
    match tool {
        Tool::SessionsList => {
            let params: SessionsListToolParams = decode(args)?;
            let filter = SessionFilter {
                limit: params.limit.get() as usize,
                search: params.search.map(|s| s.to_string()),
                ..SessionFilter::default()
            };
            let (sessions, _) = gw
                .store
                .list_sessions(filter)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json!({ "sessions": sessions }))
        }
        Tool::SessionHistory => {
            let params: SessionHistoryToolParams = decode(args)?;
            let key = params.session_key.to_string();
            let (messages, _) = gw
                .store
                .history(key.clone(), params.limit.get() as usize, None)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no session {key}"))?;
            let messages: Vec<Value> = messages
                .into_iter()
                .map(|m| json!({"role": m.role, "content": m.content, "createdAtMs": m.created_at_ms}))
                .collect();
            Ok(json!({ "sessionKey": key, "messages": messages }))
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(args: Value) -> Result<T, String> {
    serde_json::from_value(args).map_err(|e| format!("invalid arguments: {e}"))
}
