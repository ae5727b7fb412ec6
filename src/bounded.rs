//! Bounded reads of what peers send: request bodies from clients and
//! response bodies from upstreams never grow past a limit, and a client
//! that trickles its body in is cut off.

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use futures_util::StreamExt;
use std::time::Duration;

/// Why a request body could not be read.
#[derive(Debug)]
pub struct BodyError {
    pub status: StatusCode,
    pub message: String,
}

/// Reads a request body of at most `max` bytes within `timeout`.
pub async fn request_body(body: Body, max: usize, timeout: Duration) -> Result<Bytes, BodyError> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, max)).await {
        Err(_) => Err(BodyError {
            status: StatusCode::REQUEST_TIMEOUT,
            message: format!(
                "the request body did not arrive within {} ms",
                timeout.as_millis()
            ),
        }),
        Ok(Err(e)) if is_length_limit(&e) => Err(BodyError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("the request body is larger than {max} bytes"),
        }),
        Ok(Err(e)) => Err(BodyError {
            status: StatusCode::BAD_REQUEST,
            message: format!("cannot read the request body: {e}"),
        }),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// The largest upstream answer read whole (a Bot API reply, an error
/// body, a provider's non-streamed answer).
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Reads an upstream response body of at most `max` bytes; a longer body
/// is an error, never a larger allocation.
pub async fn response_body(response: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!("the answer is larger than {max} bytes"));
    }
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| e.without_url().to_string())?;
        if body.len() + chunk.len() > max {
            return Err(format!("the answer is larger than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
