use super::{types, ErrorCode, Method, SchemaViolation};
use serde_json::{json, Value};

/// A failed call, as it goes on the wire in an error frame.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcError {
    pub code: ErrorCode,
    pub message: String,
    /// Boxed: errors travel through Results on hot paths and stay small.
    pub data: Option<Box<Value>>,
    pub retry_after_ms: Option<u64>,
    /// Overrides whether the code alone says retrying may help.
    pub retry: Option<bool>,
}

impl RpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
            retry_after_ms: None,
            retry: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(Box::new(data));
        self
    }

    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retry = Some(retryable);
        self
    }

    pub fn with_retry_after(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }

    pub fn invalid_params(method: Method, violations: Vec<SchemaViolation>) -> Self {
        let first = violations
            .first()
            .map(|v| format!(": {} at {}", v.message, display_pointer(&v.pointer)))
            .unwrap_or_default();
        let errors: Vec<Value> = violations
            .iter()
            .map(|v| json!({"pointer": v.pointer, "message": v.message}))
            .collect();
        RpcError::new(
            ErrorCode::InvalidParams,
            format!("invalid params for {}{first}", method.name()),
        )
        .with_data(json!({ "errors": errors }))
    }

    pub fn method_not_found(name: &str) -> Self {
        let shown: String = name.chars().take(64).collect();
        RpcError::new(
            ErrorCode::MethodNotFound,
            format!("unknown method: {shown}"),
        )
    }

    /// Whether retrying the same request later may succeed.
    pub fn retryable(&self) -> bool {
        self.retry.unwrap_or(matches!(
            self.code,
            ErrorCode::Unavailable | ErrorCode::RateLimited | ErrorCode::Timeout
        ))
    }

    pub fn to_object(&self) -> types::ErrorObject {
        types::ErrorObject {
            code: self.code.code(),
            message: self.message.clone(),
            data: self.data.as_deref().cloned(),
            retryable: self.retryable().then_some(true),
            retry_after_ms: self.retry_after_ms,
        }
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code.name(),
            self.code.code(),
            self.message
        )
    }
}

impl std::error::Error for RpcError {}

fn display_pointer(pointer: &str) -> &str {
    if pointer.is_empty() {
        "the top level"
    } else {
        pointer
    }
}
