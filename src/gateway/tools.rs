//! The agent tools of schema/tools.json, run against the gateway's state.

use super::Gateway;
use crate::exec::Caller;
use crate::protocol::types::{
    CronAddParams, CronAddToolParams, CronJob, CronListParams, CronPayload, CronRemoveParams,
    CronRemoveToolParams, CronSchedule, NodeInvokeToolParams, NodesInvokeParams,
    SessionHistoryToolParams, SessionsListToolParams,
};
use crate::protocol::{Method, Schemas, Tool};
use crate::store::SessionFilter;
use serde_json::{json, Value};

impl crate::agent::ToolRunner for Gateway {
    fn run<'a>(
        &'a self,
        caller: Caller<'a>,
        tool: Tool,
        arguments: Value,
    ) -> crate::agent::turn::ToolFuture<'a> {
        Box::pin(async move { run(self, &caller, tool, arguments).await })
    }

    fn plugin_tools(&self, configured: &[String]) -> Vec<(String, String, Value)> {
        self.plugins.tools(configured)
    }

    fn run_plugin<'a>(
        &'a self,
        name: &'a str,
        arguments: Value,
    ) -> crate::agent::turn::ToolFuture<'a> {
        Box::pin(async move { self.plugins.run_tool(name, arguments).await })
    }
}

/// Runs one tool call; an Err is shown to the model, which may recover.
pub async fn run(
    gw: &Gateway,
    caller: &Caller<'_>,
    tool: Tool,
    args: Value,
) -> Result<Value, String> {
    let agent_id = caller.agent_id;
    if let Err(violations) = Schemas::get().validate(tool.params_def(), &args) {
        let v = &violations[0];
        return Err(format!(
            "invalid arguments: {} at {}",
            v.message,
            if v.pointer.is_empty() {
                "/"
            } else {
                &v.pointer
            }
        ));
    }
    match tool {
        Tool::SessionsList => {
            let params: SessionsListToolParams = decode(args)?;
            // An agent sees its own sessions only: a stranger who talks to
            // it must not reach the owner's other conversations through it.
            let filter = SessionFilter {
                limit: params.limit.get() as usize,
                search: params.search.map(|s| s.to_string()),
                agent_id: Some(agent_id.to_string()),
                ..SessionFilter::default()
            };
            let (sessions, _) = gw
                .rt
                .stores
                .sessions
                .list_sessions(filter)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json!({ "sessions": sessions }))
        }
        Tool::SessionHistory => {
            let params: SessionHistoryToolParams = decode(args)?;
            let key = params.session_key.to_string();
            let owner = gw
                .rt
                .stores
                .sessions
                .session(key.clone())
                .await
                .map_err(|e| e.to_string())?
                .map(|s| s.agent_id);
            if owner.as_deref() != Some(agent_id) {
                return Err(format!("no session {key}"));
            }
            let (messages, _) = gw
                .rt
                .stores
                .sessions
                .history(key.clone(), params.limit.get() as usize, None)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no session {key}"))?;
            let messages: Vec<Value> = messages
                .into_iter()
                .map(|m| json!({"role": m.role, "content": m.content, "createdAtMs": m.created_at_ms}))
                .collect();
            Ok(json!({ "sessionKey": key, "messages": messages }))
        }
        Tool::CronAdd => cron_add(gw, agent_id, decode(args)?).await,
        Tool::Exec => gw.exec.run_tool(caller, decode(args)?).await,
        Tool::NodeInvoke => {
            let p: NodeInvokeToolParams = decode(args)?;
            let config = gw.config();
            let command = p.command.to_string();
            let allowed = config.agents.extra.get(agent_id).is_some_and(|a| {
                crate::pattern::any_matches(
                    a.allow_node_commands.iter().map(|c| c.as_str()),
                    &command,
                )
            });
            if !allowed {
                return Err(format!(
                    "this agent may not invoke {command} on nodes (agents.{agent_id}.allowNodeCommands)"
                ));
            }
            if crate::nodes::is_dangerous(&config, &command) {
                let request = crate::exec::node_request(&p.node_id, &command, p.params.as_ref());
                let policy = crate::exec::policy_of(&config, agent_id);
                gw.exec.authorize(caller, &policy, &request).await?;
            }
            let params = NodesInvokeParams {
                node_id: p.node_id.to_string().parse().map_err(|e| format!("{e}"))?,
                command: p.command.to_string().parse().map_err(|e| format!("{e}"))?,
                params: p.params,
                timeout_ms: None,
                idempotency_key: None,
            };
            let result = gw
                .nodes
                .invoke(params, "agent")
                .await
                .map_err(|e| e.message)?;
            Ok(serde_json::to_value(result).expect("result serializes"))
        }
        Tool::CronList => {
            let params = CronListParams {
                include_disabled: true,
            };
            let jobs = gw.cron.list(params).await.map_err(|e| e.message)?.jobs;
            let jobs: Vec<Value> = jobs
                .iter()
                .filter(|job| job_agent(gw, job) == agent_id)
                .map(describe_job)
                .collect();
            Ok(json!({ "jobs": jobs }))
        }
        Tool::CronRemove => {
            let params: CronRemoveToolParams = decode(args)?;
            let id = params.id.to_string();
            let own = gw
                .cron
                .list(CronListParams {
                    include_disabled: true,
                })
                .await
                .map_err(|e| e.message)?
                .jobs
                .iter()
                .any(|job| job.id == id && job_agent(gw, job) == agent_id);
            if !own {
                return Err(format!("no job {id} of this agent"));
            }
            let params = CronRemoveParams {
                id: params.id.to_string().parse().map_err(|e| format!("{e}"))?,
            };
            let removed = gw.cron.remove(params).await.map_err(|e| e.message)?;
            Ok(json!({ "id": removed.id, "removed": removed.removed }))
        }
    }
}

/// Schedules an agentTurn for the calling agent, through cron.add.
async fn cron_add(gw: &Gateway, agent_id: &str, p: CronAddToolParams) -> Result<Value, String> {
    let schedule = match (p.expr, p.every_ms, p.at) {
        (Some(expr), None, None) => {
            let mut s = json!({"kind": "cron", "expr": expr});
            if let Some(tz) = p.tz {
                s["tz"] = json!(tz);
            }
            s
        }
        (None, Some(every_ms), None) => json!({"kind": "every", "everyMs": every_ms}),
        (None, None, Some(at)) => json!({"kind": "at", "at": at}),
        _ => return Err("give exactly one of expr, everyMs or at".to_string()),
    };
    let mut params = json!({
        "schedule": schedule,
        "payload": {"kind": "agentTurn", "message": p.message},
        "agentId": agent_id,
    });
    if let Some(name) = p.name {
        params["name"] = json!(name);
    }
    if let Err(violations) = Schemas::get().validate(Method::CronAdd.params_def(), &params) {
        let v = &violations[0];
        return Err(format!("invalid job: {} at {}", v.message, v.pointer));
    }
    let params: CronAddParams = decode(params)?;
    let job = gw.cron.add(params).await.map_err(|e| e.message)?;
    Ok(describe_job(&job))
}

/// The agent a job's turns run as (agents.default when it names none).
fn job_agent(gw: &Gateway, job: &CronJob) -> String {
    job.agent_id
        .as_ref()
        .map(|a| a.to_string())
        .unwrap_or_else(|| gw.config().agents.default.to_string())
}

/// A job as a model reads it: times in RFC 3339, in the job's zone.
fn describe_job(job: &CronJob) -> Value {
    let tz = match &job.schedule {
        CronSchedule::Cron { tz, .. } => tz.as_ref().map(|t| t.to_string()),
        _ => None,
    };
    let time = |ms: Option<u64>| ms.map(|ms| crate::cron::schedule::local_time(ms, tz.as_deref()));
    let task = match &job.payload {
        CronPayload::AgentTurn { message } => json!({"message": message}),
        CronPayload::SystemEvent { text } => json!({"systemEvent": text}),
    };
    json!({
        "id": job.id,
        "name": job.name,
        "enabled": job.enabled,
        "schedule": job.schedule,
        "task": task,
        "nextRunAt": time(job.state.next_run_at_ms),
        "lastRunAt": time(job.state.last_run_at_ms),
        "lastStatus": job.state.last_status,
        "lastError": job.state.last_error,
    })
}

fn decode<T: serde::de::DeserializeOwned>(args: Value) -> Result<T, String> {
    serde_json::from_value(args).map_err(|e| format!("invalid arguments: {e}"))
}
