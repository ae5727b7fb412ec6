//! The chat methods: a turn on a session, with idempotency keys, and
//! chat.abort. The turn itself is `agent::Turns`.

use super::Gateway;
use crate::agent::{Agent, Session, TurnRequest};
use crate::idempotency;
use crate::protocol::types::{
    ChatAbortParams, ChatAbortResult, ChatParams, ChatResult, ChatWaitParams, ChatWaitResult,
};
use crate::protocol::RpcError;

pub async fn chat(gw: &Gateway, owner: &str, params: ChatParams) -> Result<ChatResult, RpcError> {
    let config = gw.config();
    let agent = Agent::resolve(&config, params.agent_id.as_deref().map(|s| s.as_str()))?;
    let session_key = params
        .session_key
        .map(|k| k.to_string())
        .unwrap_or_else(|| crate::agent::main_session_key(&agent.id));
    let session = if params.wait {
        gw.turns.lock(session_key).await?
    } else {
        gw.turns.try_lock(session_key).await?
    };
    // Checked under the session lock, so two requests with one key cannot both run.
    let idempotency_key = idempotency::key(
        crate::protocol::Method::Chat.name(),
        owner,
        params.idempotency_key.as_deref().map(String::as_str),
    );
    if let Some(earlier) =
        idempotency::replay(&*gw.rt.stores.results, idempotency_key.as_ref()).await?
    {
        return Ok(earlier);
    }
    let turn = TurnRequest {
        agent,
        session: Session::Stored(&session),
        message: params.message.to_string(),
        run_id: params.run_id.map(|r| r.to_string()),
        deadline: None,
    };
    let done = gw.turns.run(turn, &mut |_| {}).await?;
    let result = ChatResult {
        run_id: done.run_id,
        session_key: done.session_key,
        agent_id: done.agent_id,
        message: done.stored.expect("stored sessions store the reply"),
        usage: done.usage,
        stop_reason: done.stop_reason,
    };
    idempotency::remember(&*gw.rt.stores.results, idempotency_key, &result).await?;
    Ok(result)
}

/// How the run ended, waiting for it up to the timeout; in a cluster,
/// wherever it runs.
pub async fn wait(gw: &Gateway, params: ChatWaitParams) -> Result<ChatWaitResult, RpcError> {
    let waited = params.timeout_ms.unwrap_or(30_000).max(0) as u64;
    let timeout = std::time::Duration::from_millis(waited);
    let run_id = params.run_id.as_str();
    if gw.rt.membership.is_none() || gw.turns.knows(run_id) {
        return Ok(gw.turns.wait(run_id, timeout).await);
    }
    let asked = std::time::Instant::now();
    match crate::agent::remote::wait(&gw.rt, run_id, timeout).await? {
        Some(ended) => Ok(ended),
        // No other gateway knows it: it may still start here.
        None => Ok(gw
            .turns
            .wait(run_id, timeout.saturating_sub(asked.elapsed()))
            .await),
    }
}

/// Stops the run; in a cluster, wherever it runs.
pub async fn abort(gw: &Gateway, params: ChatAbortParams) -> Result<ChatAbortResult, RpcError> {
    let run_id = params.run_id.to_string();
    let aborted = gw.turns.abort(&run_id)
        || (!gw.turns.knows(&run_id)
            && crate::agent::remote::abort(&gw.rt, &run_id)
                .await?
                .unwrap_or(false));
    Ok(ChatAbortResult { aborted, run_id })
}
