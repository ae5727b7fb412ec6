//! Runs across a cluster: `chat.abort` and `chat.wait` for a run that
//! another gateway runs. The asking gateway asks every other member at
//! once (`<prefix>.runs.abort`, `<prefix>.runs.wait`); each answers
//! whether it knows the run (running it, or remembering how it ended), so
//! an unknown run is known to be unknown as soon as all have answered.

use super::Turns;
use crate::cluster::rpc::{self, MemberAnswer};
use crate::cluster::Membership;
use crate::protocol::types::ChatWaitResult;
use crate::protocol::{ErrorCode, RpcError};
use crate::runtime::Runtime;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long an abort waits for the other members' answers.
const ABORT_TIMEOUT: Duration = Duration::from_secs(1);
/// Extra time a wait allows beyond its own timeout for the answer to
/// cross.
const WAIT_MARGIN: Duration = Duration::from_secs(2);

#[derive(Serialize, Deserialize)]
struct Ask {
    /// The member asking, which does not answer itself.
    from: String,
    run_id: String,
    #[serde(default)]
    timeout_ms: u64,
}

#[derive(Clone, Copy)]
enum Action {
    Abort,
    Wait,
}

fn bus(rt: &Runtime) -> Option<(&Membership, async_nats::Client)> {
    let membership = rt.membership.as_ref()?;
    Some((membership, membership.nats.clone()?))
}

fn subject(membership: &Membership, action: Action) -> String {
    membership.subject(match action {
        Action::Abort => "runs.abort",
        Action::Wait => "runs.wait",
    })
}

/// Answers other gateways' aborts and waits.
pub fn serve(rt: &Runtime, turns: &Arc<Turns>) {
    let Some((membership, client)) = bus(rt) else {
        return;
    };
    for action in [Action::Abort, Action::Wait] {
        let subject = subject(membership, action);
        let me = membership.name.clone();
        let turns: Weak<Turns> = Arc::downgrade(turns);
        let client = client.clone();
        tokio::spawn(async move {
            let mut asks = match client.subscribe(subject).await {
                Ok(asks) => asks,
                Err(e) => {
                    tracing::warn!(
                        "chat: cannot take aborts and waits from the other gateways: {e}"
                    );
                    return;
                }
            };
            while let Some(message) = asks.next().await {
                let Some(turns) = turns.upgrade() else {
                    return;
                };
                let Ok(ask) = rpc::body::<Ask>(&message) else {
                    continue;
                };
                if ask.from == me {
                    continue;
                }
                let (client, me) = (client.clone(), me.clone());
                tokio::spawn(async move {
                    let known = turns.knows(&ask.run_id);
                    let answer = match action {
                        Action::Abort => {
                            serde_json::to_value(known.then(|| turns.abort(&ask.run_id)))
                        }
                        Action::Wait => {
                            let ended = match known {
                                true => {
                                    let timeout = Duration::from_millis(ask.timeout_ms);
                                    Some(turns.wait(&ask.run_id, timeout).await)
                                }
                                false => None,
                            };
                            serde_json::to_value(ended)
                        }
                    }
                    .expect("answers serialize");
                    let from = MemberAnswer { member: me, answer };
                    rpc::reply(&client, &message, Ok::<_, RpcError>(from)).await;
                });
            }
        });
    }
}

/// Asks the other members; the answer of the one that knows the run.
async fn ask<R: serde::de::DeserializeOwned>(
    rt: &Runtime,
    action: Action,
    run_id: &str,
    timeout: Duration,
    wait_ms: u64,
) -> Result<Option<R>, RpcError> {
    let Some((membership, client)) = bus(rt) else {
        return Ok(None);
    };
    let others = membership.others().await;
    if others.is_empty() {
        return Ok(None);
    }
    let ask = Ask {
        from: membership.name.clone(),
        run_id: run_id.to_string(),
        timeout_ms: wait_ms,
    };
    let answers = rpc::gather::<_, Option<R>>(
        &client,
        subject(membership, action),
        &ask,
        &others,
        timeout,
        |from| from.answer.is_some(),
    )
    .await
    .map_err(|e| {
        RpcError::new(
            ErrorCode::Unavailable,
            format!("cannot reach the other gateways: {e}"),
        )
        .with_retryable(true)
    })?;
    Ok(answers.into_iter().find_map(|from| from.answer))
}

/// Aborts the run on the gateway running it: None when no other gateway
/// knows it (or there is no bus).
pub async fn abort(rt: &Runtime, run_id: &str) -> Result<Option<bool>, RpcError> {
    ask(rt, Action::Abort, run_id, ABORT_TIMEOUT, 0).await
}

/// How the run ended, from the gateway that knows it, waiting up to
/// `timeout`: None when no other gateway knows it.
pub async fn wait(
    rt: &Runtime,
    run_id: &str,
    timeout: Duration,
) -> Result<Option<ChatWaitResult>, RpcError> {
    let wait_ms = timeout.as_millis() as u64;
    ask(rt, Action::Wait, run_id, timeout + WAIT_MARGIN, wait_ms).await
}
