//! Reading v4 request frames and writing response and event frames.

use super::error::V4Error;
use serde::Deserialize;
use serde_json::{json, Value};

/// A request frame (`RequestFrame` in schema/openclaw/protocol.json).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V4Request {
    #[serde(rename = "type")]
    _type: RequestType,
    pub id: String,
    pub method: String,
    #[serde(default)]
    pub params: Value,
    #[serde(default)]
    traceparent: Option<String>,
}

#[derive(Debug, Deserialize)]
enum RequestType {
    #[serde(rename = "req")]
    Req,
}

/// Whether a text frame is a v4 request (`"type": "req"`, which a native
/// request never carries): the first frame decides a connection's protocol.
pub fn is_v4_request(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
    }
    text.contains("\"type\"")
        && serde_json::from_str::<Probe>(text).is_ok_and(|p| p.kind.as_deref() == Some("req"))
}

/// Parses one text frame. On failure returns the request id when it could
/// be read, so the error can still name it.
pub fn parse(text: &str) -> Result<V4Request, (Option<String>, V4Error)> {
    match serde_json::from_str::<V4Request>(text) {
        Ok(request) if request.id.is_empty() || request.method.is_empty() => Err((
            None,
            V4Error::invalid("invalid request frame: id and method must be non-empty strings"),
        )),
        Ok(request) if request.traceparent.as_ref().is_some_and(|t| t.len() > 128) => Err((
            Some(request.id),
            V4Error::invalid("invalid request frame: traceparent is longer than 128 characters"),
        )),
        Ok(request) => Ok(request),
        Err(e) => {
            let id = serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string))
                .filter(|id| !id.is_empty());
            Err((id, V4Error::invalid(format!("invalid request frame: {e}"))))
        }
    }
}

/// A successful response around the payload's JSON text.
pub fn ok_frame(id: &str, payload_json: &str) -> String {
    format!(
        r#"{{"type":"res","id":{},"ok":true,"payload":{payload_json}}}"#,
        Value::from(id)
    )
}

pub fn error_frame(id: &str, error: &V4Error) -> String {
    json!({ "type": "res", "id": id, "ok": false, "error": error.to_value() }).to_string()
}

/// An event frame around an already serialized payload; presence and
/// health events carry the state versions.
pub fn event_frame(name: &str, payload_json: &str, seq: u64, state: Option<(u64, u64)>) -> String {
    match state {
        None => format!(
            r#"{{"type":"event","event":{},"payload":{payload_json},"seq":{seq}}}"#,
            Value::from(name)
        ),
        Some((presence, health)) => format!(
            r#"{{"type":"event","event":{},"payload":{payload_json},"seq":{seq},"stateVersion":{{"presence":{presence},"health":{health}}}}}"#,
            Value::from(name)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_told_apart_and_parsed_strictly() {
        assert!(is_v4_request(r#"{"type":"req","id":"1","method":"m"}"#));
        assert!(!is_v4_request(r#"{"id":"1","method":"m"}"#));
        assert!(!is_v4_request(r#"{"type":"event","event":"x"}"#));
        assert!(!is_v4_request("not json"));
        let ok = parse(r#"{"type":"req","id":"a","method":"m","params":{"probe":true}}"#).unwrap();
        assert_eq!((ok.id.as_str(), ok.method.as_str()), ("a", "m"));
        let (id, e) = parse(r#"{"type":"req","id":"b","method":"m","extra":1}"#).unwrap_err();
        assert_eq!(id.as_deref(), Some("b"));
        assert!(e.message.contains("extra"), "{}", e.message);
        assert!(parse(r#"{"type":"req","id":"","method":"m"}"#).is_err());
    }

    #[test]
    fn frames_have_the_v4_shape() {
        let f: Value = serde_json::from_str(&ok_frame("7", r#"{"a":1}"#)).unwrap();
        assert_eq!(
            f,
            json!({"type":"res","id":"7","ok":true,"payload":{"a":1}})
        );
        let f: Value = serde_json::from_str(&event_frame("e", "{}", 3, Some((4, 5)))).unwrap();
        assert_eq!(f["stateVersion"], json!({"presence":4,"health":5}));
        assert_eq!(f["seq"], 3);
    }
}
