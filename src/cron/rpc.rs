//! The cron method family: the job table as clients see and change it.

use super::schedule::Invalid;
use super::{CronService, JobDraft, Pending};
use crate::clock::now_ms;
use crate::protocol::types::*;
use crate::protocol::{ErrorCode, Method, RpcError, SchemaViolation, ViolationKind};
use crate::store::CronWrite;

impl CronService {
    pub async fn list(&self, params: CronListParams) -> Result<CronListResult, RpcError> {
        if let Some(answer) = self.on_leader(Method::CronList, &params).await {
            return answer;
        }
        Ok(self.list_here(params))
    }

    fn list_here(&self, params: CronListParams) -> CronListResult {
        let table = self.lock();
        let mut jobs: Vec<CronJob> = table
            .jobs
            .values()
            .map(|e| e.job.clone())
            .filter(|job| params.include_disabled || job.enabled)
            .collect();
        jobs.sort_by_key(|job| {
            (
                job.state.next_run_at_ms.unwrap_or(u64::MAX),
                job.name.clone(),
            )
        });
        CronListResult {
            enabled: table.enabled,
            jobs,
        }
    }

    pub async fn add(&self, params: CronAddParams) -> Result<CronJob, RpcError> {
        if let Some(answer) = self.on_leader(Method::CronAdd, &params).await {
            return answer;
        }
        let now = now_ms();
        let is_one_shot = matches!(params.schedule, CronSchedule::At { .. });
        let draft = JobDraft {
            name: params
                .name
                .map(|n| n.to_string())
                .unwrap_or_else(|| default_name(&params.payload)),
            enabled: params.enabled.unwrap_or(true),
            schedule: params.schedule,
            payload: params.payload,
            agent_id: params.agent_id.map(|a| a.to_string()),
            session_key: params.session_key.map(|s| s.to_string()),
            delete_after_run: params.delete_after_run.unwrap_or(is_one_shot),
            timeout_ms: params.timeout_ms,
        };
        self.check_agent(Method::CronAdd, &draft)?;
        let id = format!("job-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let job = draft.into_job(id.clone(), CronJobSource::Api, now);
        let (job, stored) = {
            let mut table = self.lock();
            table
                .plan(&job, now)
                .map_err(|e| invalid(Method::CronAdd, e))?;
            table.insert(job, now);
            table.reschedule(&id, now);
            let job = table.jobs[&id].job.clone();
            self.publish_health(&table);
            let stored = self.writer.save(&job);
            (job, stored)
        };
        if let Err(e) = stored.stored().await {
            self.lock().jobs.remove(&id);
            return Err(e.into());
        }
        self.wake();
        tracing::info!(job = %id, name = %job.name, "cron job added");
        Ok(job)
    }

    pub async fn update(&self, params: CronUpdateParams) -> Result<CronJob, RpcError> {
        if let Some(answer) = self.on_leader(Method::CronUpdate, &params).await {
            return answer;
        }
        let now = now_ms();
        let (job, previous, stored) = self.change(params, now)?;
        if let Err(e) = stored.stored().await {
            self.lock().insert(previous, now);
            return Err(e.into());
        }
        self.wake();
        Ok(job)
    }

    /// Applies cron.update to the table; returns the job, the job as it was,
    /// and its queued write.
    fn change(
        &self,
        params: CronUpdateParams,
        now: u64,
    ) -> Result<(CronJob, CronJob, Pending), RpcError> {
        let id = params.id.to_string();
        let mut table = self.lock();
        let current = api_job(&table, &id)?;
        let mut draft = JobDraft::of(&current);
        if let Some(name) = params.name {
            draft.name = name.to_string();
        }
        if let Some(enabled) = params.enabled {
            draft.enabled = enabled;
        }
        if let Some(schedule) = params.schedule {
            draft.schedule = schedule;
        }
        if let Some(payload) = params.payload {
            draft.payload = payload;
        }
        if let Some(agent_id) = params.agent_id.into_change() {
            draft.agent_id = agent_id;
        }
        if let Some(session_key) = params.session_key.into_change() {
            draft.session_key = session_key;
        }
        if let Some(delete_after_run) = params.delete_after_run {
            draft.delete_after_run = delete_after_run;
        }
        if let Some(timeout_ms) = params.timeout_ms {
            draft.timeout_ms = Some(timeout_ms);
        }
        self.check_agent(Method::CronUpdate, &draft)?;
        let reschedule = draft.schedule != current.schedule || draft.enabled != current.enabled;
        let mut job = current.clone();
        draft.apply_to(&mut job);
        job.updated_at_ms = now;
        table
            .plan(&job, now)
            .map_err(|e| invalid(Method::CronUpdate, e))?;
        table.insert(job, now);
        if reschedule && !current.state.running {
            table.reschedule(&id, now);
        }
        let job = table.jobs[&id].job.clone();
        self.publish_health(&table);
        let stored = self.writer.save(&job);
        Ok((job, current, stored))
    }

    pub async fn remove(&self, params: CronRemoveParams) -> Result<CronRemoveResult, RpcError> {
        if let Some(answer) = self.on_leader(Method::CronRemove, &params).await {
            return answer;
        }
        let id = params.id.to_string();
        let stored = {
            let mut table = self.lock();
            if !table.jobs.contains_key(&id) {
                return Ok(CronRemoveResult { id, removed: false });
            }
            api_job(&table, &id)?;
            table.jobs.remove(&id);
            self.publish_health(&table);
            self.writer.queue(vec![CronWrite::DeleteJob(id.clone())])
        };
        stored.stored().await.map_err(RpcError::from)?;
        self.wake();
        tracing::info!(job = %id, "cron job removed");
        Ok(CronRemoveResult { id, removed: true })
    }

    pub async fn run(&self, params: CronRunParams) -> Result<CronRunResult, RpcError> {
        if let Some(answer) = self.on_leader(Method::CronRun, &params).await {
            return answer;
        }
        let id = params.id.to_string();
        if params.mode == CronRunParamsMode::Due {
            let table = self.lock();
            let job = &table.jobs.get(&id).ok_or_else(|| no_job(&id))?.job;
            let due = job.state.next_run_at_ms.is_some_and(|t| t <= now_ms());
            if !due {
                return Ok(CronRunResult {
                    id,
                    ran: false,
                    run: None,
                });
            }
        }
        let run = self.run_now(&id).await?;
        Ok(CronRunResult {
            id,
            ran: true,
            run: Some(run),
        })
    }

    pub async fn runs(&self, params: CronRunsParams) -> Result<CronRunsResult, RpcError> {
        if let Some(answer) = self.on_leader(Method::CronRuns, &params).await {
            return answer;
        }
        let id = params.id.to_string();
        if !self.lock().jobs.contains_key(&id) {
            return Err(no_job(&id));
        }
        let (runs, next_before) = self
            .rt
            .stores
            .cron
            .cron_runs(
                id.clone(),
                params.limit.get() as usize,
                params.before.map(|b| b.get()),
            )
            .await
            .map_err(RpcError::from)?;
        Ok(CronRunsResult {
            id,
            runs,
            next_before: next_before.and_then(std::num::NonZeroU64::new),
        })
    }
}

fn no_job(id: &str) -> RpcError {
    RpcError::new(ErrorCode::NotFound, format!("no cron job {id}"))
}

/// The job, if it exists and was added with cron.add.
fn api_job(table: &crate::cron::Table, id: &str) -> Result<CronJob, RpcError> {
    let entry = table.jobs.get(id).ok_or_else(|| no_job(id))?;
    if entry.job.source == CronJobSource::Config {
        return Err(RpcError::new(
            ErrorCode::Conflict,
            format!(
                "cron job {id} is declared in the config file (cron.jobs.{id}); change it there or with config.set"
            ),
        ));
    }
    Ok(entry.job.clone())
}

fn invalid(method: Method, e: Invalid) -> RpcError {
    RpcError::invalid_params(
        method,
        vec![SchemaViolation {
            pointer: format!("/schedule{}", e.field),
            message: e.message,
            kind: ViolationKind::Other,
        }],
    )
}

impl CronService {
    /// An agentTurn must name an agent that exists.
    fn check_agent(&self, method: Method, draft: &JobDraft) -> Result<(), RpcError> {
        if !matches!(draft.payload, CronPayload::AgentTurn { .. }) {
            return Ok(());
        }
        crate::agent::Agent::resolve(&self.rt.config(), draft.agent_id.as_deref())
            .map(|_| ())
            .map_err(|e| {
                RpcError::invalid_params(
                    method,
                    vec![SchemaViolation {
                        pointer: "/agentId".to_string(),
                        message: e.message,
                        kind: ViolationKind::Other,
                    }],
                )
            })
    }
}

/// A job's name when cron.add gives none: the start of its payload.
fn default_name(payload: &CronPayload) -> String {
    let text = match payload {
        CronPayload::AgentTurn { message } => message.as_str(),
        CronPayload::SystemEvent { text } => text.as_str(),
    };
    let words: Vec<&str> = text.split_whitespace().take(6).collect();
    let name = words.join(" ");
    match name.char_indices().nth(60) {
        Some((cut, _)) => name[..cut].to_string(),
        None => name,
    }
}
