//! Exec approvals across a cluster: every gateway listens on
//! `<prefix>.approvals.respond`; an answer given on a gateway that did not
//! raise the request is sent there, and only the gateway that raised it
//! replies (its first answer wins, as on one gateway).

use super::Approvals;
use crate::cluster::rpc::{self, Unanswered};
use crate::protocol::types::ApprovalDecision;
use crate::protocol::{ErrorCode, RpcError};
use crate::runtime::Runtime;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long an answer waits for the gateway that raised the request;
/// nobody replying means no gateway has it.
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Serialize, Deserialize)]
struct Respond {
    id: String,
    decision: ApprovalDecision,
    by: String,
}

fn subject(rt: &Runtime) -> Option<(String, async_nats::Client)> {
    rt.membership.as_ref()?.bus("approvals.answers")
}

/// Answers other gateways' answers to the requests this one raised.
pub fn serve(rt: &Runtime, approvals: &Arc<Approvals>) {
    let Some((subject, client)) = subject(rt) else {
        return;
    };
    let approvals: Weak<Approvals> = Arc::downgrade(approvals);
    tokio::spawn(async move {
        let mut calls = match client.subscribe(subject).await {
            Ok(calls) => calls,
            Err(e) => {
                tracing::warn!("approvals: cannot take answers from the other gateways: {e}");
                return;
            }
        };
        while let Some(message) = calls.next().await {
            let Some(approvals) = approvals.upgrade() else {
                return;
            };
            let Ok(call) = rpc::body::<Respond>(&message) else {
                continue;
            };
            // Only the gateway that raised it answers.
            if !approvals.knows(&call.id) {
                continue;
            }
            let answer = approvals.decide(&call.id, call.decision, call.by);
            rpc::reply(&client, &message, answer).await;
        }
    });
}

/// Sends an answer to the gateway that raised request `id`. None when no
/// gateway has it (or there is no bus).
pub async fn forward(
    rt: &Runtime,
    id: &str,
    decision: ApprovalDecision,
    by: &str,
) -> Option<Result<(), RpcError>> {
    let (subject, client) = subject(rt)?;
    let call = Respond {
        id: id.to_string(),
        decision,
        by: by.to_string(),
    };
    match rpc::call(&client, subject, &call, TIMEOUT).await {
        Ok(answer) => Some(answer),
        // Nobody has it: the local answer (not found) stands.
        Err(Unanswered::NoResponders | Unanswered::TimedOut) => None,
        Err(Unanswered::Failed(e)) => Some(Err(RpcError::new(
            ErrorCode::Unavailable,
            format!("cannot reach the other gateways: {e}"),
        )
        .with_retryable(true))),
    }
}
