//! Runs across a cluster: `chat.abort` and `chat.wait` for a run that
//! another gateway runs. Every gateway listens on `<prefix>.runs.abort`
//! and `<prefix>.runs.wait`; only the gateway that knows the run (running
//! it, or remembering how it ended) answers.

use super::Turns;
use crate::cluster::rpc::{self, Unanswered};
use crate::protocol::types::ChatWaitResult;
use crate::protocol::{ErrorCode, RpcError};
use crate::runtime::Runtime;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long an abort waits for the gateway running the run; no answer
/// means no gateway runs it.
const ABORT_TIMEOUT: Duration = Duration::from_secs(1);
/// Extra time a wait allows beyond its own timeout for the answer to
/// cross.
const WAIT_MARGIN: Duration = Duration::from_secs(2);

#[derive(Serialize, Deserialize)]
struct Ask {
    run_id: String,
    #[serde(default)]
    timeout_ms: u64,
}

fn bus(rt: &Runtime) -> Option<(&str, async_nats::Client)> {
    let membership = rt.membership.as_ref()?;
    Some((&membership.subject_prefix, membership.nats.clone()?))
}

/// Answers other gateways' aborts and waits for the runs this one knows.
pub fn serve(rt: &Runtime, turns: &Arc<Turns>) {
    let Some((prefix, client)) = bus(rt) else {
        return;
    };
    for (action, subject) in [
        (Action::Abort, format!("{prefix}.runs.abort")),
        (Action::Wait, format!("{prefix}.runs.wait")),
    ] {
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
                if !turns.knows(&ask.run_id) {
                    continue;
                }
                let client = client.clone();
                tokio::spawn(async move {
                    match action {
                        Action::Abort => {
                            let aborted = turns.abort(&ask.run_id);
                            rpc::reply(&client, &message, Ok::<_, RpcError>(aborted)).await
                        }
                        Action::Wait => {
                            let timeout = Duration::from_millis(ask.timeout_ms);
                            let ended = turns.wait(&ask.run_id, timeout).await;
                            rpc::reply(&client, &message, Ok::<_, RpcError>(ended)).await
                        }
                    }
                });
            }
        });
    }
}

#[derive(Clone, Copy)]
enum Action {
    Abort,
    Wait,
}

fn unreachable(e: String) -> RpcError {
    RpcError::new(
        ErrorCode::Unavailable,
        format!("cannot reach the other gateways: {e}"),
    )
    .with_retryable(true)
}

/// Aborts the run on the gateway running it: None when none does (or
/// there is no bus).
pub async fn abort(rt: &Runtime, run_id: &str) -> Option<Result<bool, RpcError>> {
    let (prefix, client) = bus(rt)?;
    let ask = Ask {
        run_id: run_id.to_string(),
        timeout_ms: 0,
    };
    let subject = format!("{prefix}.runs.abort");
    match rpc::call(&client, subject, &ask, ABORT_TIMEOUT).await {
        Ok(answer) => Some(answer),
        Err(Unanswered::NoResponders | Unanswered::TimedOut) => None,
        Err(Unanswered::Failed(e)) => Some(Err(unreachable(e))),
    }
}

/// How the run ended, from the gateway that knows it, waiting up to
/// `timeout`. Err(None) when no gateway knows it (at once when no other
/// gateway listens, else after `timeout` and a margin).
pub async fn wait(
    rt: &Runtime,
    run_id: &str,
    timeout: Duration,
) -> Result<ChatWaitResult, Option<RpcError>> {
    let Some((prefix, client)) = bus(rt) else {
        return Err(None);
    };
    let ask = Ask {
        run_id: run_id.to_string(),
        timeout_ms: timeout.as_millis() as u64,
    };
    let subject = format!("{prefix}.runs.wait");
    match rpc::call(&client, subject, &ask, timeout + WAIT_MARGIN).await {
        Ok(answer) => answer.map_err(Some),
        Err(Unanswered::NoResponders | Unanswered::TimedOut) => Err(None),
        Err(Unanswered::Failed(e)) => Err(Some(unreachable(e))),
    }
}
