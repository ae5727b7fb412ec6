//! Idempotency keys: a repeated request returns the first result, for a
//! day. Keys belong to the credential that used them, so nobody can read
//! another caller's result by guessing its key.

use crate::clock::now_ms;
use crate::protocol::{CallContext, ErrorCode, RpcError};
use crate::store::ResultStore;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// How long a key returns its first result.
pub const TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// Whose keys a caller's are: its node, the credential it connected with,
/// or nobody's in particular.
pub fn owner(ctx: &CallContext) -> String {
    if let Some(node) = ctx.node_id() {
        return format!("node:{node}");
    }
    match ctx.grant().and_then(|g| g.credential) {
        Some(digest) => {
            format!("cred:{}", hex::encode(&digest[..8]))
        }
        None => "anonymous".to_string(),
    }
}

/// The stored key of `client_key` for one kind of request by `owner`.
pub fn key(kind: &str, owner: &str, client_key: Option<&str>) -> Option<String> {
    client_key.map(|k| format!("{kind}:{owner}:{k}"))
}

/// The result an earlier request with this key returned, if any.
pub async fn replay<T: DeserializeOwned>(
    store: &dyn ResultStore,
    key: Option<&String>,
) -> Result<Option<T>, RpcError> {
    let Some(key) = key else {
        return Ok(None);
    };
    let Some(json) = store
        .idempotent_result(key.clone(), now_ms().saturating_sub(TTL_MS))
        .await
        .map_err(RpcError::from)?
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
    store: &dyn ResultStore,
    key: Option<String>,
    result: &T,
) -> Result<(), RpcError> {
    let Some(key) = key else {
        return Ok(());
    };
    let json = serde_json::to_string(result).expect("results serialize");
    store
        .remember_result(key, json, now_ms())
        .await
        .map_err(RpcError::from)
}
