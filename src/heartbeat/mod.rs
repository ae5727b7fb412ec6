//! The heartbeat: per agent, every so often and within its active hours,
//! a turn with the heartbeat prompt in the agent's session. A reply that
//! is more than an acknowledgement is delivered to a channel. Runs are
//! planned from the last one (kept in the store), never caught up: after
//! downtime longer than the interval, one runs at start.

pub mod rules;

use crate::agent::{Agent, Session, TurnRequest, Turns};
use crate::channels::{ChannelManager, Target};
use crate::clock::now_ms;
use crate::config::Config;
use crate::protocol::types::{
    ChatResultStopReason, HeartbeatConfig, HeartbeatOutcome, HeartbeatRun, HeartbeatStatus,
};
use crate::protocol::{ErrorCode, Event, RpcError};
use crate::runtime::Runtime;
use rules::{Meaning, Window};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// How much of a reply a run's preview keeps.
const PREVIEW_CHARS: usize = 200;
/// The checklist file in an agent's workspace.
const CHECKLIST: &str = "HEARTBEAT.md";
/// How long a turn running at shutdown gets to end after being aborted.
const ABORT_GRACE: Duration = Duration::from_secs(2);

pub struct HeartbeatService {
    rt: Runtime,
    turns: Arc<Turns>,
    channels: Arc<ChannelManager>,
    agents: Mutex<BTreeMap<String, Beat>>,
    /// Wakes the scheduler when heartbeats are turned on or off.
    changed: Notify,
}

/// One agent's schedule.
#[derive(Default)]
struct Beat {
    /// Turned off by heartbeat.set.
    off: bool,
    every: Option<String>,
    next_at_ms: Option<u64>,
    /// When the latest heartbeat began, recorded or still running.
    began_at_ms: Option<u64>,
    last: Option<HeartbeatRun>,
}

impl HeartbeatService {
    pub fn new(rt: Runtime, turns: Arc<Turns>, channels: Arc<ChannelManager>) -> Arc<Self> {
        Arc::new(HeartbeatService {
            rt,
            turns,
            channels,
            agents: Mutex::default(),
            changed: Notify::new(),
        })
    }

    /// Each configured agent's heartbeat (only `agent`'s when given).
    pub fn statuses(&self, agent: Option<&str>) -> Result<Vec<HeartbeatStatus>, RpcError> {
        let config = self.rt.config();
        let ids = agent_ids(&config, agent)?;
        let agents = self.agents.lock().expect("heartbeats");
        Ok(ids
            .iter()
            .map(|id| status(&config, id, agents.get(id)))
            .collect())
    }

    /// Turns heartbeats on or off for `agent`, else every agent.
    pub fn set_enabled(
        &self,
        enabled: bool,
        agent: Option<&str>,
    ) -> Result<Vec<HeartbeatStatus>, RpcError> {
        let config = self.rt.config();
        let ids = agent_ids(&config, agent)?;
        {
            let mut agents = self.agents.lock().expect("heartbeats");
            let now = now_ms();
            for id in &ids {
                let beat = agents.entry(id.clone()).or_default();
                if beat.off == enabled {
                    beat.off = !enabled;
                    beat.next_at_ms = enabled
                        .then(|| {
                            interval_of(&config, id).map(|every| now + every.as_millis() as u64)
                        })
                        .flatten();
                }
            }
        }
        tracing::info!(agents = ?ids, enabled, "heartbeats turned {}", if enabled { "on" } else { "off" });
        self.changed.notify_one();
        self.statuses(agent)
    }

    /// Runs heartbeats as they fall due, each in its own task (a hanging
    /// turn holds up only its own agent), following config reloads, until
    /// the gateway drains; heartbeats running then are aborted.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let service = Arc::clone(self);
        let mut follower = self.rt.config.follow();
        tokio::spawn(async move {
            let shutdown = service.rt.shutdown.clone();
            let mut running: JoinSet<()> = JoinSet::new();
            let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
            service.load().await;
            service.plan(&service.rt.config());
            loop {
                let sleep = match service.next_due() {
                    Some(at) => Duration::from_millis(at.saturating_sub(now_ms())),
                    None => Duration::from_secs(24 * 60 * 60),
                };
                tokio::select! {
                    _ = tokio::time::sleep(sleep) => {
                        for agent in service.due(now_ms()) {
                            let run_id = format!("run-hb-{}", uuid::Uuid::new_v4().simple());
                            in_flight.lock().expect("heartbeats").insert(run_id.clone());
                            let (service, in_flight) = (Arc::clone(&service), Arc::clone(&in_flight));
                            running.spawn(async move {
                                let run = service.beat(&agent, &run_id).await;
                                in_flight.lock().expect("heartbeats").remove(&run_id);
                                service.record(run).await;
                            });
                        }
                    }
                    Some(_) = running.join_next(), if !running.is_empty() => {}
                    change = follower.next() => match change {
                        Some(change) => service.plan(&change.after),
                        None => break,
                    },
                    _ = service.changed.notified() => {}
                    _ = shutdown.wait() => break,
                }
            }
            for run_id in in_flight.lock().expect("heartbeats").iter() {
                service.turns.abort(run_id);
            }
            let _ = tokio::time::timeout(ABORT_GRACE, async {
                while running.join_next().await.is_some() {}
            })
            .await;
        })
    }

    /// The last heartbeat of each agent, as stored.
    async fn load(&self) {
        match self.rt.stores.heartbeats.last_heartbeats().await {
            Ok(runs) => {
                let mut agents = self.agents.lock().expect("heartbeats");
                for run in runs {
                    let beat = agents.entry(run.agent_id.clone()).or_default();
                    beat.began_at_ms = Some(run.at_ms);
                    beat.last = Some(run);
                }
            }
            Err(e) => tracing::warn!(
                "cannot read the last heartbeats; each starts one interval from now: {e}"
            ),
        }
    }

    /// Brings the schedules in line with `config`: a new or changed
    /// interval counts from the last heartbeat (at the earliest now, so a
    /// heartbeat missed while down runs once), else from now; agents gone
    /// are forgotten.
    fn plan(&self, config: &Config) {
        let now = now_ms();
        let mut agents = self.agents.lock().expect("heartbeats");
        agents.retain(|id, _| config.agents.extra.contains_key(id));
        for id in config.agents.extra.keys() {
            let every = every_of(config, id);
            let beat = agents.entry(id.clone()).or_default();
            let off = beat.off;
            if beat.every != every || (beat.next_at_ms.is_none() && !off) {
                let last = beat.began_at_ms;
                beat.next_at_ms =
                    interval_of(config, id)
                        .filter(|_| !off)
                        .map(|every| match last {
                            Some(at) => (at + every.as_millis() as u64).max(now),
                            None => now + every.as_millis() as u64,
                        });
                beat.every = every;
            }
        }
    }

    fn next_due(&self) -> Option<u64> {
        let agents = self.agents.lock().expect("heartbeats");
        agents.values().filter_map(|b| b.next_at_ms).min()
    }

    /// The agents due at `now`, each planned one interval on.
    fn due(&self, now: u64) -> Vec<String> {
        let config = self.rt.config();
        let mut agents = self.agents.lock().expect("heartbeats");
        let mut due = Vec::new();
        for (id, beat) in agents.iter_mut() {
            if beat.next_at_ms.is_some_and(|at| at <= now) {
                beat.next_at_ms =
                    interval_of(&config, id).map(|every| now + every.as_millis() as u64);
                beat.began_at_ms = Some(now);
                due.push(id.clone());
            }
        }
        due
    }

    async fn record(&self, run: HeartbeatRun) {
        match run.outcome {
            HeartbeatOutcome::Failed => {
                tracing::warn!(agent = %run.agent_id, reason = ?run.reason, "heartbeat failed")
            }
            outcome => {
                tracing::info!(agent = %run.agent_id, %outcome, reason = ?run.reason, "heartbeat ran")
            }
        }
        self.rt.bus.publish(Event::Heartbeat(run.clone()));
        {
            let mut agents = self.agents.lock().expect("heartbeats");
            let beat = agents.entry(run.agent_id.clone()).or_default();
            // A run that began before the one shown does not replace it.
            if beat
                .last
                .as_ref()
                .is_some_and(|last| last.at_ms > run.at_ms)
            {
                return;
            }
            beat.last = Some(run.clone());
        }
        if let Err(e) = self.rt.stores.heartbeats.record_heartbeat(run).await {
            tracing::warn!("the heartbeat is not stored; after a restart it may run early: {e}");
        }
    }

    /// One heartbeat of `agent`: the turn, and the delivery of its reply.
    async fn beat(&self, agent: &str, run_id: &str) -> HeartbeatRun {
        let started = Instant::now();
        let mut run = HeartbeatRun {
            agent_id: agent.to_string(),
            at_ms: now_ms(),
            outcome: HeartbeatOutcome::Skipped,
            delivered: false,
            reason: None,
            session_key: None,
            run_id: None,
            channel: None,
            account_id: None,
            to: None,
            preview: None,
            duration_ms: None,
        };
        let outcome = self.turn_and_delivery(agent, run_id, &mut run).await;
        if let Err((outcome, reason)) = outcome {
            run.outcome = outcome;
            run.reason = Some(reason);
        }
        run.duration_ms = Some(started.elapsed().as_millis() as u64);
        run
    }

    async fn turn_and_delivery(
        &self,
        agent_id: &str,
        run_id: &str,
        run: &mut HeartbeatRun,
    ) -> Result<(), (HeartbeatOutcome, String)> {
        use HeartbeatOutcome::{Failed, Skipped};
        let config = self.rt.config();
        let settings = heartbeat_of(&config, agent_id)
            .ok_or((Skipped, "no heartbeat is configured".to_string()))?
            .clone();
        if let Some(window) = window(&config, &settings) {
            if !window.contains(run.at_ms) {
                return Err((
                    Skipped,
                    format!("outside active hours {}", window.describe()),
                ));
            }
        }
        let agent = Agent::resolve(&config, Some(agent_id)).map_err(|e| (Failed, e.message))?;
        let token = settings.ack_token.to_string();
        let checklist = match &settings.prompt {
            Some(_) => None,
            None => self.checklist(&config, agent_id).await,
        };
        if checklist.as_deref().is_some_and(rules::checklist_is_empty) {
            return Err((Skipped, format!("{CHECKLIST} lists nothing to do")));
        }
        let prompt = rules::prompt(
            settings.prompt.as_deref().map(|p| p.as_str()),
            &token,
            checklist.as_deref(),
        );
        let session_key = settings
            .session
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_else(|| crate::agent::main_session_key(agent_id));
        run.session_key = Some(session_key.clone());
        let session = self
            .turns
            .try_lock(session_key.clone())
            .await
            .map_err(|e| (Skipped, e.message))?;
        let timeout = agent
            .config
            .as_ref()
            .map_or(120_000, |a| a.timeout_ms.max(1) as u64);
        run.run_id = Some(run_id.to_string());
        let request = TurnRequest {
            agent,
            session: Session::Stored(&session),
            message: prompt,
            run_id: Some(run_id.to_string()),
            deadline: Some(tokio::time::Instant::now() + Duration::from_millis(timeout)),
        };
        let done = self
            .turns
            .run(request, &mut |_| {})
            .await
            .map_err(|e| (Failed, e.message))?;
        drop(session);
        if done.stop_reason == ChatResultStopReason::Aborted {
            return Err((Failed, "the turn was aborted".to_string()));
        }
        run.preview = Some(preview(&done.text));
        let ack_max = settings.ack_max_chars.max(0) as usize;
        let text = match rules::meaning(&done.text, &token, ack_max) {
            Meaning::Empty => return Err((HeartbeatOutcome::Empty, "the reply was empty".into())),
            Meaning::Ack => {
                run.outcome = HeartbeatOutcome::Ack;
                return Ok(());
            }
            Meaning::Report(text) => text,
        };
        let Some(target) = target(&settings) else {
            run.outcome = HeartbeatOutcome::Kept;
            return Ok(());
        };
        let delivery = self
            .channels
            .deliver(&target, &text, &session_key)
            .await
            .map_err(|reason| (Failed, reason))?;
        run.channel = Some(delivery.key.kind.clone());
        run.account_id = Some(delivery.key.account.clone());
        run.to = Some(delivery.to.clone());
        delivery.sent.map_err(|reason| (Failed, reason))?;
        run.delivered = true;
        run.outcome = HeartbeatOutcome::Delivered;
        Ok(())
    }

    /// The agent's HEARTBEAT.md, when there is one (at most
    /// MAX_CHECKLIST_BYTES of it).
    async fn checklist(&self, config: &Config, agent: &str) -> Option<String> {
        let path = workspace(config, &self.rt.state_dir, agent).join(CHECKLIST);
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot read the heartbeat checklist: {e}");
                return None;
            }
        };
        let mut bytes = Vec::new();
        let read = file
            .take(rules::MAX_CHECKLIST_BYTES as u64)
            .read_to_end(&mut bytes)
            .await;
        if let Err(e) = read {
            tracing::warn!(path = %path.display(), "cannot read the heartbeat checklist: {e}");
            return None;
        }
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// The agents `agent` names: itself (which must exist), else every
/// configured one.
fn agent_ids(config: &Config, agent: Option<&str>) -> Result<Vec<String>, RpcError> {
    match agent {
        Some(id) if config.agents.extra.contains_key(id) => Ok(vec![id.to_string()]),
        Some(id) => Err(RpcError::new(
            ErrorCode::NotFound,
            crate::config::find_agent(config, Some(id))
                .err()
                .unwrap_or_else(|| {
                    format!("agent {id} is the built-in echo agent, which has no heartbeat")
                }),
        )),
        None => Ok(config.agents.extra.keys().cloned().collect()),
    }
}

fn status(config: &Config, id: &str, beat: Option<&Beat>) -> HeartbeatStatus {
    let every = every_of(config, id);
    HeartbeatStatus {
        agent_id: id.to_string(),
        configured: every.is_some(),
        enabled: beat.is_none_or(|b| !b.off),
        every,
        next_at_ms: beat.and_then(|b| b.next_at_ms),
        last: beat.and_then(|b| b.last.clone()),
    }
}

fn heartbeat_of<'a>(config: &'a Config, agent: &str) -> Option<&'a HeartbeatConfig> {
    config.agents.extra.get(agent)?.heartbeat.as_ref()
}

fn every_of(config: &Config, agent: &str) -> Option<String> {
    heartbeat_of(config, agent)?
        .every
        .as_ref()
        .map(|e| e.to_string())
}

fn interval_of(config: &Config, agent: &str) -> Option<Duration> {
    rules::interval(&every_of(config, agent)?)
}

/// The active hours, in their zone (else cron.timezone, else UTC).
fn window(config: &Config, settings: &HeartbeatConfig) -> Option<Window> {
    let hours = settings.active_hours.as_ref()?;
    let zone = hours
        .timezone
        .as_ref()
        .map(|t| t.to_string())
        .or_else(|| config.cron.timezone.as_ref().map(|t| t.to_string()));
    let tz = match zone {
        Some(name) => crate::schedule::parse_tz(&name).ok()?,
        None => chrono_tz::Tz::UTC,
    };
    Window::new(&hours.start, &hours.end, tz)
}

/// Where a report goes; None for target none.
pub fn target(settings: &HeartbeatConfig) -> Option<Target> {
    match settings.target.as_str() {
        "none" => None,
        "last" => Some(Target::Last),
        kind => Some(Target::Channel {
            kind: crate::config::parse_channel_kind(kind)?,
            account: settings.account_id.as_ref().map(|a| a.to_string()),
            to: settings.to.as_ref().map(|t| t.to_string())?,
        }),
    }
}

/// The agent's working directory.
pub fn workspace(config: &Config, state_dir: &std::path::Path, agent: &str) -> PathBuf {
    match config
        .agents
        .extra
        .get(agent)
        .and_then(|a| a.workspace.as_ref())
    {
        Some(dir) => PathBuf::from(dir.as_str()),
        None => state_dir.join("workspace").join(agent),
    }
}

fn preview(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
