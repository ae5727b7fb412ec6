//! Calls one gateway makes to another over NATS request/reply. A request
//! is a JSON body; the reply is the callee's result or its error, with
//! everything the caller's client would have seen from the callee.

use crate::protocol::{ErrorCode, RpcError};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// A result as it crosses: the value, or the error with everything the
/// caller's client would have seen.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome<T> {
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

impl<T> std::convert::From<Result<T, RpcError>> for Outcome<T> {
    fn from(result: Result<T, RpcError>) -> Self {
        match result {
            Ok(result) => Outcome::Result(result),
            Err(e) => Outcome::Error {
                code: e.code.code(),
                message: e.message,
                data: e.data.map(|d| *d),
                retry_after_ms: e.retry_after_ms,
                retry: e.retry,
            },
        }
    }
}

impl<T> Outcome<T> {
    pub fn into_result(self) -> Result<T, RpcError> {
        match self {
            Outcome::Result(result) => Ok(result),
            Outcome::Error {
                code,
                message,
                data,
                retry_after_ms,
                retry,
            } => {
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
        }
    }
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
    Ok(match serde_json::from_slice::<Outcome<R>>(&reply.payload) {
        Ok(outcome) => outcome.into_result(),
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
    let reply = Outcome::from(result);
    let body = serde_json::to_vec(&reply).expect("answers serialize");
    if let Err(e) = client.publish(to, body.into()).await {
        tracing::warn!(subject = %message.subject, "cluster: cannot answer another gateway: {e}");
    }
}

/// An answer to [`gather`]: which member gives it, and what.
#[derive(Serialize, Deserialize)]
pub struct MemberAnswer<T> {
    pub member: String,
    pub answer: T,
}

/// Asks every gateway listening on `subject` at once and gathers the
/// answers (`MemberAnswer<R>`) until `done` says one is enough, every member in
/// `expected` has answered, or `timeout` passes.
pub async fn gather<B: Serialize, R: DeserializeOwned>(
    client: &async_nats::Client,
    subject: String,
    body: &B,
    expected: &[String],
    timeout: Duration,
    mut done: impl FnMut(&MemberAnswer<R>) -> bool,
) -> Result<Vec<MemberAnswer<R>>, String> {
    let inbox = client.new_inbox();
    let mut answers = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| e.to_string())?;
    let payload = serde_json::to_vec(body).expect("calls serialize");
    client
        .publish_with_reply(subject, inbox, payload.into())
        .await
        .map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut waiting: std::collections::HashSet<&str> =
        expected.iter().map(String::as_str).collect();
    let mut gathered = Vec::new();
    while !waiting.is_empty() {
        let Ok(Some(message)) = tokio::time::timeout_at(deadline, answers.next()).await else {
            break;
        };
        let Ok(Outcome::Result(answer)) =
            serde_json::from_slice::<Outcome<MemberAnswer<R>>>(&message.payload)
        else {
            continue;
        };
        waiting.remove(answer.member.as_str());
        let enough = done(&answer);
        gathered.push(answer);
        if enough {
            break;
        }
    }
    Ok(gathered)
}
