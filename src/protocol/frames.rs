//! Reading request frames and writing response and event frames.

use super::{ErrorCode, RpcError, Schemas};
use serde::Deserialize;
use serde_json::{json, Value};

/// A request frame that matches the RequestFrame schema.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub id: String,
    pub method: String,
    #[serde(default, deserialize_with = "super::strict::strict_value")]
    pub params: Value,
}

/// Parses one text frame. On failure returns the request id when it could
/// be read, so the error frame can still name it.
pub fn parse_request(text: &str) -> Result<Request, (Option<String>, RpcError)> {
    // Fast path: a well-formed frame decodes straight into the struct,
    // whose shape is RequestFrame's. Anything else takes the slow path,
    // which checks the frame against the schema itself for a precise error.
    if let Ok(request) = serde_json::from_str::<Request>(text) {
        return Ok(request);
    }
    // Strict: a key given twice is refused, never resolved one way here
    // and another way by whatever sits in front of the gateway.
    let value: Value = match serde_json::from_str::<super::strict::StrictValue>(text) {
        Ok(value) => value.0,
        Err(e) if e.is_data() => {
            return Err((
                None,
                RpcError::new(
                    ErrorCode::InvalidRequest,
                    format!("not a request frame: {e}"),
                ),
            ))
        }
        Err(e) => {
            return Err((
                None,
                RpcError::new(
                    ErrorCode::ParseError,
                    format!("frame is not valid JSON: {e}"),
                ),
            ))
        }
    };
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
    // Valid by the schema but not by serde.
    serde_json::from_value(value).map_err(|e| {
        (
            id,
            RpcError::new(
                ErrorCode::InvalidRequest,
                format!("not a request frame: {e}"),
            ),
        )
    })
}

/// A result frame around the result's JSON text.
pub fn result_frame(id: &str, result_json: &str) -> String {
    format!(r#"{{"id":{},"result":{result_json}}}"#, Value::from(id))
}

pub fn error_frame(id: Option<&str>, error: &RpcError) -> String {
    json!({ "id": id, "error": error.to_object() }).to_string()
}

/// The event OpenClaw's clients wait for before they send `connect`
/// (`ChallengeFrame` in schema/protocol.json).
pub const CHALLENGE_EVENT: &str = "connect.challenge";

/// The first frame on every connection, before anything is read:
/// OpenClaw's challenge, in its v4 event shape, so its clients send their
/// `connect`; it has `type` and no `seq`, so native clients skip it and
/// their event numbering still starts at 1.
pub fn challenge_frame(nonce: &str, ts: u64) -> String {
    json!({ "type": "event", "event": CHALLENGE_EVENT, "payload": { "nonce": nonce, "ts": ts } })
        .to_string()
}

/// An event frame around an already serialized payload.
pub fn event_frame(name: &str, data_json: &str, seq: u64) -> String {
    format!(
        r#"{{"event":{},"data":{data_json},"seq":{seq}}}"#,
        Value::from(name)
    )
}

#[cfg(test)]
mod challenge_tests {
    use super::*;

    #[test]
    fn the_challenge_matches_its_schema() {
        let schema: Value =
            serde_json::from_str(include_str!("../../schema/protocol.json")).unwrap();
        let defined = &schema["$defs"]["ChallengeFrame"]["properties"]["event"]["const"];
        assert_eq!(defined, CHALLENGE_EVENT);
        let frame: Value = serde_json::from_str(&challenge_frame("n1", 7)).unwrap();
        assert_eq!(
            frame,
            json!({"type": "event", "event": "connect.challenge", "payload": {"nonce": "n1", "ts": 7}})
        );
    }
}
