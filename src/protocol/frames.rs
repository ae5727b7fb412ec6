//! Reading request frames and writing response and event frames.

use super::{ErrorCode, RpcError, Schemas};
use serde_json::{json, Value};

/// A request frame that passed the RequestFrame schema.
#[derive(Debug)]
pub struct Request {
    pub id: String,
    pub method: String,
    pub params: Value,
}

/// Parses one text frame. On failure returns the request id when it could
/// be read, so the error frame can still name it.
pub fn parse_request(text: &str) -> Result<Request, (Option<String>, RpcError)> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        (
            None,
            RpcError::new(
                ErrorCode::ParseError,
                format!("frame is not valid JSON: {e}"),
            ),
        )
    })?;
    let id = value.get("id").and_then(Value::as_str).map(str::to_string);
    if let Err(violations) = Schemas::get().validate("RequestFrame", &value) {
        let detail: Vec<Value> = violations
            .iter()
            .map(|v| json!({"pointer": v.pointer, "message": v.message}))
            .collect();
        let first = &violations[0];
        let at = if first.pointer.is_empty() {
            "the frame".to_string()
        } else {
            first.pointer.clone()
        };
        return Err((
            id,
            RpcError::new(
                ErrorCode::InvalidRequest,
                format!("not a request frame: {} at {at}", first.message),
            )
            .with_data(json!({ "errors": detail })),
        ));
    }
    let Value::Object(mut map) = value else {
        unreachable!("the RequestFrame schema requires an object")
    };
    Ok(Request {
        id: id.unwrap_or_default(),
        method: map
            .remove("method")
            .and_then(|m| m.as_str().map(str::to_string))
            .unwrap_or_default(),
        params: map.remove("params").unwrap_or(Value::Null),
    })
}

pub fn result_frame(id: &str, result: Value) -> String {
    json!({ "id": id, "result": result }).to_string()
}

pub fn error_frame(id: Option<&str>, error: &RpcError) -> String {
    json!({ "id": id, "error": error.to_object() }).to_string()
}

/// An event frame from an already serialized payload.
pub fn event_frame(name: &str, data_json: &str, seq: u64) -> String {
    format!(
        r#"{{"event":{},"data":{data_json},"seq":{seq}}}"#,
        Value::from(name)
    )
}
