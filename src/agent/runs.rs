//! The runs going on and the runs that ended lately, by run id: a running
//! one can be aborted, and any can be waited for until it ends
//! (`chat.wait`, OpenClaw's `agent.wait`).

use super::turn::TurnDone;
use crate::clock::now_ms;
use crate::protocol::types::{
    ChatResultStopReason, ChatWaitResult, ChatWaitResultError, ChatWaitResultStatus,
};
use crate::protocol::RpcError;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// How many ended runs are remembered, and for how long.
const ENDED_KEPT: usize = 1024;
const ENDED_FOR_MS: u64 = 10 * 60 * 1000;

pub struct Runs {
    running: Mutex<HashMap<String, Running>>,
    ended: Mutex<VecDeque<ChatWaitResult>>,
    /// Bumped whenever a run ends, to wake whoever waits.
    endings: watch::Sender<u64>,
}

struct Running {
    /// None once the turn is past the point where it can be stopped.
    abort: Option<watch::Sender<bool>>,
    started_at_ms: u64,
}

impl Default for Runs {
    fn default() -> Self {
        Runs {
            running: Mutex::default(),
            ended: Mutex::default(),
            endings: watch::Sender::new(0),
        }
    }
}

impl Runs {
    /// Claims the run id; None when a run with this id is running already.
    pub fn start(&self, run_id: &str) -> Option<RunGuard<'_>> {
        let (abort, aborted) = watch::channel(false);
        // A run id used again (a retry) is waited for anew. Not under the
        // running lock: `record` takes the two the other way round.
        if !self.is_running(run_id) {
            self.ended
                .lock()
                .expect("runs")
                .retain(|r| r.run_id != run_id);
        }
        let mut running = self.running.lock().expect("runs");
        if running.contains_key(run_id) {
            return None;
        }
        let started_at_ms = now_ms();
        running.insert(
            run_id.to_string(),
            Running {
                abort: Some(abort),
                started_at_ms,
            },
        );
        Some(RunGuard {
            runs: self,
            run_id: run_id.to_string(),
            started_at_ms,
            aborted,
            ended: false,
        })
    }

    /// Whether the run is running here, or ended here lately.
    pub fn knows(&self, run_id: &str) -> bool {
        self.is_running(run_id) || self.ended(run_id).is_some()
    }

    pub fn is_running(&self, run_id: &str) -> bool {
        self.running.lock().expect("runs").contains_key(run_id)
    }

    pub fn abort(&self, run_id: &str) -> bool {
        let running = self.running.lock().expect("runs");
        running
            .get(run_id)
            .and_then(|r| r.abort.as_ref())
            .is_some_and(|abort| abort.send(true).is_ok())
    }

    /// How the run ended, waiting up to `timeout` for it to end.
    pub async fn wait(&self, run_id: &str, timeout: Duration) -> ChatWaitResult {
        let mut endings = self.endings.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(ended) = self.ended(run_id) {
                return ended;
            }
            let woke = tokio::time::timeout_at(deadline, endings.changed()).await;
            if !matches!(woke, Ok(Ok(()))) {
                break;
            }
        }
        // It may have ended just as the wait did.
        if let Some(ended) = self.ended(run_id) {
            return ended;
        }
        let started = self
            .running
            .lock()
            .expect("runs")
            .get(run_id)
            .map(|r| r.started_at_ms);
        ChatWaitResult {
            run_id: run_id.to_string(),
            status: if started.is_some() {
                ChatWaitResultStatus::Running
            } else {
                ChatWaitResultStatus::Unknown
            },
            started_at_ms: started,
            ended_at_ms: None,
            error: None,
        }
    }

    fn ended(&self, run_id: &str) -> Option<ChatWaitResult> {
        let ended = self.ended.lock().expect("runs");
        ended.iter().rev().find(|r| r.run_id == run_id).cloned()
    }

    fn record(&self, run_id: &str, started_at_ms: u64, outcome: Outcome) {
        let ended_at_ms = now_ms();
        let (status, error) = match outcome {
            Outcome::Stopped(ChatResultStopReason::Aborted) | Outcome::Cancelled => {
                (ChatWaitResultStatus::Aborted, None)
            }
            Outcome::Stopped(_) => (ChatWaitResultStatus::Complete, None),
            Outcome::Failed(code, message) => (
                ChatWaitResultStatus::Error,
                Some(ChatWaitResultError { code, message }),
            ),
        };
        {
            let mut ended = self.ended.lock().expect("runs");
            while ended.len() >= ENDED_KEPT
                || ended
                    .front()
                    .is_some_and(|r| r.ended_at_ms.unwrap_or(0) + ENDED_FOR_MS < ended_at_ms)
            {
                ended.pop_front();
            }
            ended.push_back(ChatWaitResult {
                run_id: run_id.to_string(),
                status,
                started_at_ms: Some(started_at_ms),
                ended_at_ms: Some(ended_at_ms),
                error,
            });
            self.running.lock().expect("runs").remove(run_id);
        }
        self.endings.send_modify(|n| *n = n.wrapping_add(1));
    }
}

enum Outcome {
    Stopped(ChatResultStopReason),
    Failed(String, String),
    /// The turn's future was dropped before it ended.
    Cancelled,
}

/// A claimed run: aborted through [`Runs::abort`]; ended with
/// [`RunGuard::end`], or, when dropped first, recorded as aborted.
pub struct RunGuard<'a> {
    runs: &'a Runs,
    run_id: String,
    started_at_ms: u64,
    aborted: watch::Receiver<bool>,
    ended: bool,
}

impl RunGuard<'_> {
    /// Resolves when the run is aborted.
    pub async fn aborted(&mut self) {
        let _ = self.aborted.wait_for(|a| *a).await;
    }

    /// The turn can no longer be stopped (its reply is being stored):
    /// chat.abort now answers false for it.
    pub fn settled(&self) {
        if let Some(running) = self
            .runs
            .running
            .lock()
            .expect("runs")
            .get_mut(&self.run_id)
        {
            running.abort = None;
        }
    }

    /// Records how the turn ended and releases its id.
    pub fn end(mut self, result: &Result<TurnDone, RpcError>) {
        self.ended = true;
        let outcome = match result {
            Ok(done) => Outcome::Stopped(done.stop_reason),
            Err(e) => Outcome::Failed(e.code.name().to_string(), e.message.clone()),
        };
        self.runs.record(&self.run_id, self.started_at_ms, outcome);
    }
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.runs
                .record(&self.run_id, self.started_at_ms, Outcome::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    #[tokio::test]
    async fn a_wait_ends_when_the_run_ends_and_remembers_how() {
        let runs = std::sync::Arc::new(Runs::default());
        let unknown = runs.wait("run-a", Duration::ZERO).await;
        assert_eq!(unknown.status, ChatWaitResultStatus::Unknown);
        let guard = runs.start("run-a").unwrap();
        assert!(runs.start("run-a").is_none(), "one run per id");
        let waiting = {
            let runs = runs.clone();
            tokio::spawn(async move { runs.wait("run-a", Duration::from_secs(5)).await })
        };
        let running = runs.wait("run-a", Duration::from_millis(10)).await;
        assert_eq!(running.status, ChatWaitResultStatus::Running);
        guard.end(&Err(RpcError::new(ErrorCode::Timeout, "too slow")));
        let ended = waiting.await.unwrap();
        assert_eq!(ended.status, ChatWaitResultStatus::Error);
        assert_eq!(ended.error.unwrap().code, "timeout");
        assert!(ended.ended_at_ms.unwrap() >= ended.started_at_ms.unwrap());
        assert!(!runs.is_running("run-a"));
        // A dropped turn counts as aborted.
        drop(runs.start("run-b").unwrap());
        let dropped = runs.wait("run-b", Duration::ZERO).await;
        assert_eq!(dropped.status, ChatWaitResultStatus::Aborted);
        // A retry under the same id is waited for anew.
        let retry = runs.start("run-b").unwrap();
        let waited = runs.wait("run-b", Duration::ZERO).await;
        assert_eq!(waited.status, ChatWaitResultStatus::Running);
        retry.settled();
        assert!(!runs.abort("run-b"), "past the point of stopping");
    }
}
