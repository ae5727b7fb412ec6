//! Errors in OpenClaw's shape: a string code, a message, and details
//! whose `code` narrows it.

use super::types::{ConnectErrorDetailCode, ErrorCode, MethodErrorDetailCode};
use crate::protocol::{self, RpcError};
use serde_json::{json, Map, Value};

/// A failed request, as a v4 response carries it.
#[derive(Clone, Debug, PartialEq)]
pub struct V4Error {
    pub code: ErrorCode,
    pub message: String,
    /// Boxed: errors travel through Results and stay small.
    pub details: Option<Box<Map<String, Value>>>,
    pub retryable: bool,
    pub retry_after_ms: Option<u64>,
}

impl V4Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        V4Error {
            code,
            message: message.into(),
            details: None,
            retryable: false,
            retry_after_ms: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        V4Error::new(ErrorCode::InvalidRequest, message)
    }

    /// The native error code this came from (details.reason), if any.
    pub fn native_reason(&self) -> Option<&str> {
        self.details.as_ref()?.get("reason")?.as_str()
    }

    /// Adds a fact to details.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details
            .get_or_insert_with(Default::default)
            .insert(key.to_string(), value.into());
        self
    }

    /// A failed connect: INVALID_REQUEST with this details.code.
    pub fn connect(detail: ConnectErrorDetailCode, message: impl Into<String>) -> Self {
        V4Error::invalid(message).with("code", detail.to_string())
    }

    pub fn missing_scope(scope: protocol::types::Scope) -> Self {
        V4Error::new(ErrorCode::Forbidden, format!("missing scope: {scope}"))
            .with("code", MethodErrorDetailCode::MissingScope.to_string())
            .with("missingScope", scope.to_string())
            .with("requiredScopes", json!([scope.to_string()]))
    }

    pub fn not_served(method: &str) -> Self {
        let shown: String = method.chars().take(64).collect();
        // Exactly OpenClaw's text: its node host and CLI compare it to
        // fall back quietly; details.code says clawgate does not serve it.
        V4Error::invalid(format!("unknown method: {shown}"))
            .with("code", MethodErrorDetailCode::MethodNotServed.to_string())
    }

    /// The metrics label of its code.
    pub fn label(&self) -> &'static str {
        match self.code {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotPaired => "not_paired",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::ApprovalNotFound => "not_found",
        }
    }

    pub fn to_value(&self) -> Value {
        let mut error = json!({ "code": self.code.to_string(), "message": self.message });
        if let Some(details) = &self.details {
            error["details"] = Value::Object((**details).clone());
        }
        if self.retryable {
            error["retryable"] = Value::Bool(true);
        }
        if let Some(ms) = self.retry_after_ms {
            error["retryAfterMs"] = ms.into();
        }
        error
    }
}

impl From<RpcError> for V4Error {
    /// A native error in v4 terms: forbidden stays FORBIDDEN, what may
    /// pass with time is UNAVAILABLE, the rest INVALID_REQUEST; the native
    /// code is kept in details.reason and its data's fields alongside.
    fn from(e: RpcError) -> Self {
        use protocol::ErrorCode as Native;
        let code = match e.code {
            Native::Forbidden => ErrorCode::Forbidden,
            Native::Unavailable
            | Native::RateLimited
            | Native::Timeout
            | Native::UpstreamError
            | Native::InternalError => ErrorCode::Unavailable,
            _ => ErrorCode::InvalidRequest,
        };
        let retryable = e.retryable();
        let mut details = Map::new();
        if let Some(Value::Object(data)) = e.data.map(|d| *d) {
            details.extend(data.into_iter().filter(|(k, _)| k != "code"));
        }
        details.insert("reason".to_string(), e.code.name().into());
        V4Error {
            code,
            message: e.message,
            details: Some(Box::new(details)),
            retryable,
            retry_after_ms: e.retry_after_ms,
        }
    }
}
