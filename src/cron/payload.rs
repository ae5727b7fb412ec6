//! What a run does: an agent turn in the job's session, or a system
//! event to operators.

use super::CronService;
use crate::agent::Agent;
use crate::agent::{Session, TurnRequest};
use crate::clock::now_ms;
use crate::protocol::types::{
    ChatResultStopReason, CronJob, CronPayload, SystemEventEvent, SystemEventEventSource,
};
use crate::protocol::{ErrorCode, Event};
use std::num::NonZeroU64;
use std::time::Duration;

/// How much of an agent's reply a run's summary keeps.
const SUMMARY_CHARS: usize = 200;

pub struct Done {
    pub summary: String,
    pub run_id: Option<String>,
}

pub struct Failed {
    pub error: String,
    pub run_id: Option<String>,
}

impl From<String> for Failed {
    fn from(error: String) -> Self {
        Failed {
            error,
            run_id: None,
        }
    }
}

impl CronService {
    /// Does the job's payload; an agent turn stops at `timeout`.
    pub async fn execute(
        &self,
        job: &CronJob,
        timeout: Duration,
        run_number: NonZeroU64,
    ) -> Result<Done, Failed> {
        match &job.payload {
            CronPayload::SystemEvent { text } => {
                self.rt.bus.publish(Event::SystemEvent(SystemEventEvent {
                    text: text.to_string(),
                    source: SystemEventEventSource::Cron,
                    job_id: Some(job.id.clone()),
                    ts: now_ms(),
                }));
                Ok(Done {
                    summary: summarize(text),
                    run_id: None,
                })
            }
            CronPayload::AgentTurn { message } => {
                let deadline = tokio::time::Instant::now() + timeout;
                let config = self.rt.config();
                let agent =
                    Agent::resolve(&config, job.agent_id.as_deref()).map_err(|e| e.message)?;
                let key = session_key(job);
                let session = tokio::time::timeout_at(deadline, self.turns.lock(key.clone()))
                    .await
                    .map_err(|_| {
                        format!(
                        "timed out after {} ms waiting for session {key}, busy with another run",
                        timeout.as_millis()
                    )
                    })?
                    .map_err(|e| e.message)?;
                let run_id = format!("run-cron-{}-{run_number}", uuid::Uuid::new_v4().simple());
                let request = TurnRequest {
                    agent,
                    session: Session::Stored(&session),
                    message: message.to_string(),
                    run_id: Some(run_id.clone()),
                    deadline: Some(deadline),
                };
                match self.turns.run(request, &mut |_| {}).await {
                    Ok(done) if done.stop_reason == ChatResultStopReason::Aborted => Err(Failed {
                        error: "the run was aborted (chat.abort)".to_string(),
                        run_id: Some(run_id),
                    }),
                    Ok(done) => Ok(Done {
                        summary: summarize(&done.text),
                        run_id: Some(run_id),
                    }),
                    Err(e) if e.code == ErrorCode::Timeout => Err(Failed {
                        error: format!("timed out after {} ms", timeout.as_millis()),
                        run_id: Some(run_id),
                    }),
                    Err(e) => Err(Failed {
                        error: e.message,
                        run_id: Some(run_id),
                    }),
                }
            }
        }
    }
}

/// The session of an agentTurn job.
pub fn session_key(job: &CronJob) -> String {
    job.session_key
        .clone()
        .unwrap_or_else(|| format!("cron:{}", job.id))
}

fn summarize(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(SUMMARY_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
