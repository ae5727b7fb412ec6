//! Idempotency keys: a repeated request returns the first result.

use super::chat::store_error;
use super::{now_ms, Gateway};
use crate::protocol::{ErrorCode, RpcError};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The stored key of `client_key` for one kind of request.
pub fn key(kind: &str, client_key: Option<&str>) -> Option<String> {
    client_key.map(|k| format!("{kind}:{k}"))
}

/// The result an earlier request with this key returned, if any.
pub async fn replay<T: DeserializeOwned>(
    gw: &Gateway,
    key: Option<&String>,
) -> Result<Option<T>, RpcError> {
    let Some(key) = key else {
        return Ok(None);
    };
    let Some(json) = gw
        .store
        .idempotent_result(key.clone())
        .await
        .map_err(store_error)?
    else {
        return Ok(None);
    };
    serde_json::from_str(&json).map(Some).map_err(|e| {
        RpcError::new(
            ErrorCode::InternalError,
            format!("stored result unreadable: {e}"),
        )
    })
}

/// Keeps `result` as the answer to every later request with this key.
pub async fn remember<T: Serialize>(
    gw: &Gateway,
    key: Option<String>,
    result: &T,
) -> Result<(), RpcError> {
    let Some(key) = key else {
        return Ok(());
    };
    let json = serde_json::to_string(result).expect("results serialize");
    gw.store
        .remember_result(key, json, now_ms())
        .await
        .map_err(store_error)
}
