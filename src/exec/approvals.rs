//! Pending exec approvals: asked of every client with the approvals
//! scope, answered by the first of them, denied when nobody answers.

use crate::clock::now_ms;
use crate::protocol::types::{
    ApprovalDecision, ApprovalsResolvedEvent, ApprovalsResolvedEventDecision, ExecApproval,
};
use crate::protocol::{CallContext, ErrorCode, Event, RpcError};
use crate::runtime::Runtime;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;

/// How many decided approvals are remembered, to tell a late answer
/// (conflict) from an unknown id (not found).
const REMEMBERED: usize = 1024;

pub struct Approvals {
    rt: Runtime,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    waiting: HashMap<String, Waiting>,
    decided: VecDeque<String>,
}

struct Waiting {
    approval: ExecApproval,
    answer: oneshot::Sender<(ApprovalDecision, String)>,
}

/// What became of a request.
pub enum Outcome {
    /// A person decided: the decision and who made it.
    Decided(ApprovalDecision, String),
    TimedOut,
}

impl Approvals {
    pub fn new(rt: Runtime) -> Self {
        Approvals {
            rt,
            state: Mutex::default(),
        }
    }

    /// Asks every approvals client and waits for the first answer, or
    /// approvals.timeoutMs.
    pub async fn ask(&self, mut approval: ExecApproval) -> Outcome {
        let timeout = self.rt.config().approvals.timeout_ms.max(1) as u64;
        approval.requested_at_ms = now_ms();
        approval.expires_at_ms = approval.requested_at_ms + timeout;
        let id = approval.id.clone();
        let (answer, answered) = oneshot::channel();
        self.state.lock().expect("approvals").waiting.insert(
            id.clone(),
            Waiting {
                approval: approval.clone(),
                answer,
            },
        );
        tracing::info!(approval = %id, command = %approval.command, agent = %approval.agent_id, "exec approval requested");
        self.rt.bus.publish(Event::ApprovalsRequested(approval));
        match tokio::time::timeout(Duration::from_millis(timeout), answered).await {
            Ok(Ok((decision, by))) => {
                self.rt.metrics.approval(decision);
                Outcome::Decided(decision, by)
            }
            Ok(Err(_)) | Err(_) => {
                self.rt
                    .metrics
                    .approval(ApprovalsResolvedEventDecision::Timeout);
                if self.finish(&id).is_some() {
                    self.rt
                        .bus
                        .publish(Event::ApprovalsResolved(ApprovalsResolvedEvent {
                            id,
                            decision: ApprovalsResolvedEventDecision::Timeout,
                            decided_by: "timeout".to_string(),
                        }));
                }
                Outcome::TimedOut
            }
        }
    }

    /// approvals.respond: the first answer wins; in a cluster, also for a
    /// request another gateway raised (sent to it over NATS).
    pub async fn respond_anywhere(
        &self,
        ctx: &CallContext,
        id: &str,
        decision: ApprovalDecision,
    ) -> Result<(), RpcError> {
        match self.respond(ctx, id, decision) {
            Err(e) if e.code == ErrorCode::NotFound => {
                match super::cluster::forward(&self.rt, id, decision, &ctx.conn_id).await {
                    Some(answer) => answer,
                    None => Err(e),
                }
            }
            answered => answered,
        }
    }

    /// approvals.respond on this gateway: the first answer wins.
    pub fn respond(
        &self,
        ctx: &CallContext,
        id: &str,
        decision: ApprovalDecision,
    ) -> Result<(), RpcError> {
        self.decide(id, decision, ctx.conn_id.clone())
    }

    /// Whether this gateway raised request `id` (pending or decided).
    pub(super) fn knows(&self, id: &str) -> bool {
        let state = self.state.lock().expect("approvals");
        state.waiting.contains_key(id) || state.decided.iter().any(|d| d == id)
    }

    /// Decides request `id` for `by`, the answering connection.
    pub(super) fn decide(
        &self,
        id: &str,
        decision: ApprovalDecision,
        by: String,
    ) -> Result<(), RpcError> {
        let Some(waiting) = self.finish(id) else {
            let decided = self
                .state
                .lock()
                .expect("approvals")
                .decided
                .iter()
                .any(|d| d == id);
            return Err(if decided {
                RpcError::new(
                    ErrorCode::Conflict,
                    format!("approval {id} was already decided"),
                )
            } else {
                RpcError::new(ErrorCode::NotFound, format!("no pending approval {id}"))
            });
        };
        self.rt
            .bus
            .publish(Event::ApprovalsResolved(ApprovalsResolvedEvent {
                id: id.to_string(),
                decision: match decision {
                    ApprovalDecision::AllowOnce => ApprovalsResolvedEventDecision::AllowOnce,
                    ApprovalDecision::AllowAlways => ApprovalsResolvedEventDecision::AllowAlways,
                    ApprovalDecision::Deny => ApprovalsResolvedEventDecision::Deny,
                },
                decided_by: by.clone(),
            }));
        // The asking turn may have ended meanwhile; the decision stands.
        let _ = waiting.answer.send((decision, by));
        Ok(())
    }

    /// approvals.pending, oldest first.
    pub fn pending(&self) -> Vec<ExecApproval> {
        let state = self.state.lock().expect("approvals");
        let mut list: Vec<ExecApproval> =
            state.waiting.values().map(|w| w.approval.clone()).collect();
        list.sort_by_key(|a| a.requested_at_ms);
        list
    }

    /// Takes a request out of the waiting set, remembering its id.
    fn finish(&self, id: &str) -> Option<Waiting> {
        let mut state = self.state.lock().expect("approvals");
        let waiting = state.waiting.remove(id)?;
        if state.decided.len() == REMEMBERED {
            state.decided.pop_front();
        }
        state.decided.push_back(id.to_string());
        Some(waiting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::EventKind;
    use crate::testing;
    use std::sync::Arc;

    fn approval(id: &str) -> ExecApproval {
        serde_json::from_value(serde_json::json!({
            "id": id, "command": "ls -la", "argv": ["ls", "-la"], "agentId": "main",
            "requestedAtMs": 0, "expiresAtMs": 0,
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn the_first_answer_decides_and_later_ones_conflict() {
        let fakes = testing::runtime(testing::config(""));
        let approvals = Arc::new(Approvals::new(fakes.rt.clone()));
        let asking = tokio::spawn({
            let approvals = Arc::clone(&approvals);
            async move { approvals.ask(approval("appr-1")).await }
        });
        while approvals.pending().is_empty() {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            fakes.bus.payloads(EventKind::ApprovalsRequested)[0]["id"],
            "appr-1"
        );
        let operator = CallContext::new("conn-a".into(), [127, 0, 0, 1].into());
        approvals
            .respond(&operator, "appr-1", ApprovalDecision::AllowOnce)
            .unwrap();
        let Outcome::Decided(decision, by) = asking.await.unwrap() else {
            panic!("not decided");
        };
        assert_eq!(
            (decision, by.as_str()),
            (ApprovalDecision::AllowOnce, "conn-a")
        );
        let late = approvals.respond(&operator, "appr-1", ApprovalDecision::Deny);
        assert_eq!(late.unwrap_err().code, ErrorCode::Conflict);
        let unknown = approvals.respond(&operator, "appr-2", ApprovalDecision::Deny);
        assert_eq!(unknown.unwrap_err().code, ErrorCode::NotFound);
        let resolved = fakes.bus.payloads(EventKind::ApprovalsResolved);
        assert_eq!(resolved.len(), 1, "{resolved:?}");
        assert_eq!(resolved[0]["decision"], "allow-once");
        assert!(approvals.pending().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn nobody_answering_is_a_timeout_announced_once() {
        let config = testing::config("[approvals]\ntimeoutMs = 5000\n");
        let fakes = testing::runtime(config);
        let approvals = Approvals::new(fakes.rt.clone());
        assert!(matches!(
            approvals.ask(approval("appr-9")).await,
            Outcome::TimedOut
        ));
        let resolved = fakes.bus.payloads(EventKind::ApprovalsResolved);
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0]["decision"], "timeout");
        let operator = CallContext::new("conn-a".into(), [127, 0, 0, 1].into());
        let late = approvals.respond(&operator, "appr-9", ApprovalDecision::AllowOnce);
        assert_eq!(late.unwrap_err().code, ErrorCode::Conflict);
    }
}
