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

pub async fn wait(gw: &Gateway, params: ChatWaitParams) -> ChatWaitResult {
    let waited = params.timeout_ms.unwrap_or(30_000).max(0) as u64;
    let timeout = std::time::Duration::from_millis(waited);
    gw.turns.wait(&params.run_id, timeout).await
}

pub fn abort(gw: &Gateway, params: ChatAbortParams) -> ChatAbortResult {
    let run_id = params.run_id.to_string();
    ChatAbortResult {
        aborted: gw.turns.abort(&run_id),
        run_id,
    }
}
