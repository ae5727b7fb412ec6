//! Calls one gateway makes to another over NATS request/reply. A request
//! is a JSON body; the reply is the callee's result or its error, with
//! everything the caller's client would have seen from the callee.

use crate::protocol::{ErrorCode, RpcError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Reply<T> {
    Result(T),
    Error {
        code: i64,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry: Option<bool>,
    },
}

/// Why a call got no answer.
#[derive(Debug)]
pub enum Unanswered {
    /// Nobody listens on the subject.
    NoResponders,
    /// Somebody listens, but no answer came in time.
    TimedOut,
    /// The bus itself failed.
    Failed(String),
}

/// Sends `body` to `subject` and returns the answer.
pub async fn call<B: Serialize, R: DeserializeOwned>(
    client: &async_nats::Client,
    subject: String,
    body: &B,
    timeout: Duration,
) -> Result<Result<R, RpcError>, Unanswered> {
    let request = async_nats::Request::new()
        .payload(serde_json::to_vec(body).expect("calls serialize").into())
        .timeout(Some(timeout));
    let reply = client
        .send_request(subject, request)
        .await
        .map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => Unanswered::NoResponders,
            async_nats::RequestErrorKind::TimedOut => Unanswered::TimedOut,
            _ => Unanswered::Failed(e.to_string()),
        })?;
    Ok(match serde_json::from_slice::<Reply<R>>(&reply.payload) {
        Ok(Reply::Result(result)) => Ok(result),
        Ok(Reply::Error {
            code,
            message,
            data,
            retry_after_ms,
            retry,
        }) => {
            let code = ErrorCode::ALL
                .iter()
                .copied()
                .find(|c| c.code() == code)
                .unwrap_or(ErrorCode::InternalError);
            Err(RpcError {
                code,
                message,
                data: data.map(Box::new),
                retry_after_ms,
                retry,
            })
        }
        Err(e) => Err(RpcError::new(
            ErrorCode::InternalError,
            format!("another gateway's answer does not parse: {e}"),
        )),
    })
}

/// The body of a request, or the error to answer it with.
pub fn body<B: DeserializeOwned>(message: &async_nats::Message) -> Result<B, RpcError> {
    serde_json::from_slice(&message.payload).map_err(|e| {
        RpcError::new(
            ErrorCode::InvalidParams,
            format!("a request from another gateway does not parse: {e}"),
        )
    })
}

/// Answers the request `message` (if it asked for an answer).
pub async fn reply<R: Serialize>(
    client: &async_nats::Client,
    message: &async_nats::Message,
    result: Result<R, RpcError>,
) {
    let Some(to) = message.reply.clone() else {
        return;
    };
    let reply = match result {
        Ok(result) => Reply::Result(result),
        Err(e) => Reply::Error {
            code: e.code.code(),
            message: e.message,
            data: e.data.map(|d| *d),
            retry_after_ms: e.retry_after_ms,
            retry: e.retry,
        },
    };
    let body = serde_json::to_vec(&reply).expect("answers serialize");
    if let Err(e) = client.publish(to, body.into()).await {
        tracing::warn!(subject = %message.subject, "cluster: cannot answer another gateway: {e}");
    }
}
