//! The sessions method family, over the store.

use super::{now_ms, Gateway};
use crate::protocol::types::*;
use crate::protocol::{ErrorCode, RpcError};
use crate::store::{SessionChange, SessionFilter};

fn no_session(key: &str) -> RpcError {
    RpcError::new(ErrorCode::NotFound, format!("no session {key}"))
}

pub async fn list(gw: &Gateway, params: SessionsParams) -> Result<SessionsResult, RpcError> {
    let filter = SessionFilter {
        limit: params.limit.get() as usize,
        cursor: params.cursor,
        active_since_ms: params
            .active_minutes
            .map(|m| now_ms().saturating_sub(m.get() * 60_000)),
        search: params.search.map(|s| s.to_string()),
        agent_id: params.agent_id,
    };
    let (sessions, next_cursor) = gw
        .rt
        .stores
        .sessions
        .list_sessions(filter)
        .await
        .map_err(RpcError::from)?;
    Ok(SessionsResult {
        sessions,
        next_cursor,
    })
}

pub async fn history(
    gw: &Gateway,
    params: SessionsHistoryParams,
) -> Result<SessionsHistoryResult, RpcError> {
    let key = params.session_key.to_string();
    let (messages, next_before) = gw
        .rt
        .stores
        .sessions
        .history(key.clone(), params.limit.get() as usize, params.before)
        .await
        .map_err(RpcError::from)?
        .ok_or_else(|| no_session(&key))?;
    Ok(SessionsHistoryResult {
        session_key: key,
        messages,
        next_before,
    })
}

pub async fn patch(gw: &Gateway, params: SessionsPatchParams) -> Result<SessionInfo, RpcError> {
    let key = params.session_key.to_string();
    let change = SessionChange {
        label: params.label.into_change(),
        model: params.model.into_change(),
        thinking: params.thinking.into_change(),
    };
    gw.rt
        .stores
        .sessions
        .patch_session(key.clone(), change)
        .await
        .map_err(RpcError::from)?
        .ok_or_else(|| no_session(&key))
}

pub async fn clear(
    gw: &Gateway,
    params: SessionsClearParams,
) -> Result<SessionsClearResult, RpcError> {
    let key = params.session_key.to_string();
    // Not under a running turn, which is about to store its reply.
    let _idle = gw.turns.try_lock(key.clone()).await?;
    let keep = params.keep.unwrap_or(0) as usize;
    let (removed, kept) = gw
        .rt
        .stores
        .sessions
        .clear_session(key.clone(), keep)
        .await
        .map_err(RpcError::from)?
        .ok_or_else(|| no_session(&key))?;
    Ok(SessionsClearResult {
        session_key: key,
        removed,
        kept,
    })
}

pub async fn delete(
    gw: &Gateway,
    params: SessionsDeleteParams,
) -> Result<SessionsDeleteResult, RpcError> {
    let key = params.session_key.to_string();
    let deleted = gw
        .rt
        .stores
        .sessions
        .delete_session(key.clone())
        .await
        .map_err(RpcError::from)?;
    Ok(SessionsDeleteResult {
        session_key: key,
        deleted,
    })
}
