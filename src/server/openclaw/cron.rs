//! The cron methods and events of v4: native cron jobs and runs in
//! OpenClaw's job and run-log shapes.

use super::error::V4Error;
use super::methods::native_call;
use super::V4Method;
use crate::gateway::Gateway;
use crate::protocol::{CallContext, Method};
use serde_json::{json, Value};

/// Runs one of the cron methods on validated params.
pub async fn call(
    gw: &Gateway,
    ctx: &CallContext,
    method: V4Method,
    params: &Value,
) -> Result<Value, V4Error> {
    let native_method = method.native();
    Ok(match method {
        V4Method::CronList => {
            let list: Value = native_call(gw, ctx, native_method, json!({})).await?;
            let wanted = |job: &&Value| cron_job_wanted(job, params);
            let all: Vec<&Value> = list["jobs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(wanted)
                .collect();
            let offset = params.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
            let limit = params.get("limit").and_then(Value::as_u64).unwrap_or(200) as usize;
            let main = |key: &str| is_main_session(key);
            let jobs: Vec<Value> = all
                .iter()
                .skip(offset)
                .take(limit)
                .map(|job| cron_job(job, main))
                .collect();
            let next = offset.saturating_add(jobs.len());
            let more = next < all.len();
            json!({
                "jobs": jobs,
                "total": all.len(),
                "offset": offset,
                "limit": limit,
                "hasMore": more,
                "nextOffset": if more { Value::from(next) } else { Value::Null },
                "snapshotRevision": snapshot_revision(&list),
            })
        }
        V4Method::CronGet => {
            let id = job_id(params)?;
            cron_job(&current_job(gw, ctx, id).await?, is_main_session)
        }
        V4Method::CronStatus => {
            let list: Value = native_call(gw, ctx, native_method, json!({})).await?;
            let jobs = list["jobs"].as_array().map_or(0, Vec::len);
            let next = list["jobs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|j| j["enabled"] == true)
                .filter_map(|j| j["state"]["nextRunAtMs"].as_u64())
                .min();
            let mut status = json!({ "enabled": list["enabled"], "jobs": jobs });
            if let Some(next) = next {
                status["nextWakeAtMs"] = next.into();
            }
            status
        }
        V4Method::CronRuns => {
            let id = job_id(params)?;
            let mut query = json!({ "id": id });
            if let Some(limit) = params.get("limit") {
                query["limit"] = limit.clone();
            }
            let runs: Value = native_call(gw, ctx, native_method, query).await?;
            let entries: Vec<Value> = runs["runs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(cron_run)
                .collect();
            json!({
                "entries": entries,
                "total": entries.len(),
                "offset": 0,
                "limit": params.get("limit").and_then(Value::as_u64).unwrap_or(50),
                "hasMore": runs.get("nextBefore").is_some(),
            })
        }
        V4Method::CronRun => {
            let id = job_id(params)?;
            let mode = match params.get("mode").and_then(Value::as_str) {
                Some("due") => "due",
                Some("if-enabled") => {
                    let list: Value = native_call(gw, ctx, Method::CronList, json!({})).await?;
                    let enabled = list["jobs"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|j| j["id"] == id && j["enabled"] == true);
                    if !enabled {
                        return Ok(json!({ "ok": true, "ran": false }));
                    }
                    "force"
                }
                _ => "force",
            };
            let run: Value =
                native_call(gw, ctx, native_method, json!({ "id": id, "mode": mode })).await?;
            let mut result = json!({ "ok": true, "ran": run["ran"] });
            if let Some(status) = run["run"]["status"].as_str().filter(|s| *s != "running") {
                result["status"] = status.into();
            }
            result
        }
        V4Method::CronAdd => {
            let mut job = job_fields(gw, params, None)?;
            job["name"] = params["name"].clone();
            let added: Value = native_call(gw, ctx, native_method, job).await?;
            cron_job(&added, is_main_session)
        }
        V4Method::CronUpdate => {
            let id = job_id(params)?;
            let patch = &params["patch"];
            let current = current_job(gw, ctx, id).await?;
            let mut change = job_fields(gw, patch, Some(&current))?;
            change["id"] = id.into();
            if let Some(name) = patch.get("name") {
                change["name"] = name.clone();
            }
            let updated: Value = native_call(gw, ctx, native_method, change).await?;
            cron_job(&updated, is_main_session)
        }
        V4Method::CronRemove => {
            let id = job_id(params)?;
            let removed: Value = native_call(gw, ctx, native_method, json!({ "id": id })).await?;
            json!({ "ok": true, "removed": removed["removed"] })
        }
        _ => unreachable!("not a cron method: {}", method.name()),
    })
}

/// The native job with this id, or OpenClaw's not-found error.
async fn current_job(gw: &Gateway, ctx: &CallContext, id: &str) -> Result<Value, V4Error> {
    let list: Value = native_call(gw, ctx, Method::CronList, json!({})).await?;
    list["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|job| job["id"] == id)
        .cloned()
        .ok_or_else(|| {
            V4Error::invalid(format!("cron job not found: {id}"))
                .with("code", "CRON_JOB_NOT_FOUND")
                .with("jobId", id)
        })
}

/// The native cron.add fields for OpenClaw's job fields, or the
/// cron.update fields for a patch of the `current` native job.
fn job_fields(gw: &Gateway, fields: &Value, current: Option<&Value>) -> Result<Value, V4Error> {
    for refused in ["pacing", "trigger"] {
        if fields.get(refused).is_some_and(|v| !v.is_null()) {
            return Err(V4Error::invalid(format!(
                "{refused} is not served: clawgate's cron jobs run on their schedule alone"
            )));
        }
    }
    let mut job = json!({});
    for key in ["enabled", "deleteAfterRun"] {
        if let Some(v) = fields.get(key) {
            job[key] = v.clone();
        }
    }
    let default_agent = || gw.config().agents.default.to_string();
    let agent_of = |job: &Value| {
        job["agentId"]
            .as_str()
            .map_or_else(default_agent, String::from)
    };
    let before = current.map(agent_of);
    let agent = match fields.get("agentId") {
        Some(Value::String(agent)) => {
            job["agentId"] = agent.as_str().into();
            agent.clone()
        }
        Some(_) => {
            job["agentId"] = Value::Null;
            default_agent()
        }
        None => before.clone().unwrap_or_else(default_agent),
    };
    if let Some(schedule) = fields.get("schedule") {
        job["schedule"] = native_schedule(schedule)?;
    }
    if let Some(payload) = fields.get("payload") {
        let (payload, timeout) = native_payload(payload, current.map(|c| &c["payload"]))?;
        job["payload"] = payload;
        if let Some(ms) = timeout {
            job["timeoutMs"] = ms.into();
        }
    }
    match fields.get("sessionTarget").and_then(Value::as_str) {
        Some(target) => {
            job["sessionKey"] = match target {
                "main" => crate::agent::main_session_key(&agent).into(),
                "isolated" => Value::Null,
                "current" => match fields.get("sessionKey").and_then(Value::as_str) {
                    Some(key) => key.into(),
                    None => {
                        return Err(V4Error::invalid(
                            "sessionTarget current needs sessionKey: the session it stands for",
                        ))
                    }
                },
                other => other.trim_start_matches("session:").into(),
            };
        }
        // A job on its agent's main session follows the agent it moves to.
        None => {
            if let (Some(current), Some(before)) = (current, &before) {
                let was_main = current["sessionKey"] == crate::agent::main_session_key(before);
                if was_main && agent != *before {
                    job["sessionKey"] = crate::agent::main_session_key(&agent).into();
                }
            }
        }
    }
    if current.is_none() {
        // A new job has no value to reset: its default is the key left out.
        if let Some(map) = job.as_object_mut() {
            map.retain(|_, v| !v.is_null());
        }
    }
    Ok(job)
}

/// OpenClaw's schedule as a native one.
fn native_schedule(schedule: &Value) -> Result<Value, V4Error> {
    let mut native = match schedule["kind"].as_str() {
        Some("at") => json!({ "kind": "at", "at": schedule["at"] }),
        Some("every") => json!({ "kind": "every", "everyMs": schedule["everyMs"] }),
        Some("cron") => json!({ "kind": "cron", "expr": schedule["expr"] }),
        other => {
            return Err(V4Error::invalid(format!(
                "schedule kind {} is not served: clawgate schedules at, every and cron jobs",
                other.unwrap_or("(none)")
            )))
        }
    };
    for key in ["anchorMs", "tz"] {
        if let Some(v) = schedule
            .get(key)
            .filter(|v| v.as_str() != Some("") && !v.is_null())
        {
            native[key] = v.clone();
        }
    }
    Ok(native)
}

/// OpenClaw's payload as a native one and its timeout in ms; the fields a
/// partial payload leaves out come from `current`.
fn native_payload(
    payload: &Value,
    current: Option<&Value>,
) -> Result<(Value, Option<u64>), V4Error> {
    let kind = payload["kind"].as_str().unwrap_or("");
    let from = |key: &str| {
        payload
            .get(key)
            .or_else(|| {
                current
                    .filter(|c| c["kind"] == kind)
                    .and_then(|c| c.get(key))
            })
            .cloned()
    };
    match kind {
        "agentTurn" => {
            let overridden = ["model", "fallbacks", "thinking"]
                .into_iter()
                .chain((payload["toolsAllowIsDefault"] != true).then_some("toolsAllow"))
                .find(|key| payload.get(*key).is_some_and(|v| !v.is_null()));
            if let Some(key) = overridden {
                return Err(V4Error::invalid(format!(
                    "payload.{key} is not served: clawgate's cron jobs run the agent as configured"
                )));
            }
            let message = from("message")
                .ok_or_else(|| V4Error::invalid("an agentTurn payload needs message"))?;
            let timeout = payload
                .get("timeoutSeconds")
                .and_then(Value::as_f64)
                .filter(|s| *s > 0.0)
                .map(|s| ((s * 1000.0) as u64).clamp(1000, 86_400_000));
            Ok((json!({ "kind": "agentTurn", "message": message }), timeout))
        }
        "systemEvent" => {
            let text =
                from("text").ok_or_else(|| V4Error::invalid("a systemEvent payload needs text"))?;
            Ok((json!({ "kind": "systemEvent", "text": text }), None))
        }
        other => Err(V4Error::invalid(format!(
            "payload kind {other} is not served: clawgate runs agentTurn and systemEvent jobs"
        ))),
    }
}

/// Names one state of the whole job list: every job's id and the time its
/// definition last changed.
fn snapshot_revision(list: &Value) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for job in list["jobs"].as_array().into_iter().flatten() {
        hash.update(job["id"].as_str().unwrap_or("").as_bytes());
        hash.update(job["updatedAtMs"].as_u64().unwrap_or(0).to_be_bytes());
    }
    hex::encode(&hash.finalize()[..12])
}

/// The job a cron method names (OpenClaw calls it id or jobId).
fn job_id(params: &Value) -> Result<&str, V4Error> {
    params
        .get("id")
        .or_else(|| params.get("jobId"))
        .and_then(Value::as_str)
        .ok_or_else(|| V4Error::invalid("the job: give id (or jobId)"))
}

/// Whether a native cron job passes cron.list's filters.
fn cron_job_wanted(job: &Value, params: &Value) -> bool {
    let enabled = job["enabled"] == true;
    let state = params
        .get("enabled")
        .and_then(Value::as_str)
        .unwrap_or("all");
    let include_disabled = params.get("includeDisabled") != Some(&Value::Bool(false));
    let query = params
        .get("query")
        .and_then(Value::as_str)
        .map(str::to_lowercase)
        .filter(|q| !q.is_empty());
    (enabled || include_disabled)
        && match state {
            "enabled" => enabled,
            "disabled" => !enabled,
            _ => true,
        }
        && params
            .get("agentId")
            .and_then(Value::as_str)
            .is_none_or(|agent| job["agentId"] == agent)
        && query.is_none_or(|q| {
            [&job["id"], &job["name"]]
                .iter()
                .filter_map(|v| v.as_str())
                .any(|text| text.to_lowercase().contains(&q))
        })
}

/// Whether a session key is some agent's main session.
fn is_main_session(key: &str) -> bool {
    key.strip_prefix("agent:")
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(agent, _)| key == crate::agent::main_session_key(agent))
}

/// A native cron job (as JSON) in OpenClaw's job shape.
pub fn cron_job(
    job: &serde_json::Value,
    main_sessions: impl Fn(&str) -> bool,
) -> serde_json::Value {
    use serde_json::{json, Value};
    let schedule = &job["schedule"];
    let schedule = match schedule["kind"].as_str() {
        Some("every") => {
            let mut s = json!({"kind": "every", "everyMs": schedule["everyMs"]});
            if let Some(anchor) = schedule.get("anchorMs") {
                s["anchorMs"] = anchor.clone();
            }
            s
        }
        Some("at") => json!({"kind": "at", "at": schedule["at"]}),
        _ => {
            let mut s = json!({"kind": "cron", "expr": schedule["expr"]});
            if let Some(tz) = schedule.get("tz") {
                s["tz"] = tz.clone();
            }
            s
        }
    };
    let payload = &job["payload"];
    let mut payload = match payload["kind"].as_str() {
        Some("systemEvent") => json!({"kind": "systemEvent", "text": payload["text"]}),
        _ => json!({"kind": "agentTurn", "message": payload["message"]}),
    };
    if let Some(ms) = job["timeoutMs"].as_u64() {
        if payload["kind"] == "agentTurn" {
            payload["timeoutSeconds"] = (ms as f64 / 1000.0).into();
        }
    }
    let target = match job["sessionKey"].as_str() {
        None => "isolated".to_string(),
        Some(key) if main_sessions(key) => "main".to_string(),
        Some(key) => format!("session:{key}"),
    };
    let state = &job["state"];
    let mut out_state = serde_json::Map::new();
    for key in [
        "nextRunAtMs",
        "lastRunAtMs",
        "lastError",
        "lastDurationMs",
        "consecutiveErrors",
    ] {
        if let Some(v) = state.get(key) {
            out_state.insert(key.to_string(), v.clone());
        }
    }
    if let Some(status) = state["lastStatus"].as_str().filter(|s| *s != "running") {
        out_state.insert("lastRunStatus".into(), status.into());
    }
    if state["running"] == true {
        if let Some(at) = state.get("lastRunAtMs") {
            out_state.insert("runningAtMs".into(), at.clone());
        }
    }
    let mut out = json!({
        "id": job["id"],
        "name": job["name"],
        "enabled": job["enabled"],
        "createdAtMs": job["createdAtMs"],
        "updatedAtMs": job["updatedAtMs"],
        "schedule": schedule,
        "sessionTarget": target,
        "wakeMode": "now",
        "payload": payload,
        "state": Value::Object(out_state),
        "deleteAfterRun": job["deleteAfterRun"],
    });
    for key in ["agentId", "sessionKey"] {
        if let Some(v) = job
            .get(key)
            .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
        {
            out[key] = v.clone();
        }
    }
    out
}

/// A native cron run (as JSON) as an OpenClaw run log entry; None while it
/// runs.
pub fn cron_run(run: &serde_json::Value) -> Option<serde_json::Value> {
    let status = run["status"].as_str().filter(|s| *s != "running")?;
    let mut entry = serde_json::json!({
        "ts": run.get("finishedAtMs").unwrap_or(&run["startedAtMs"]),
        "jobId": run["jobId"],
        "action": "finished",
        "status": status,
        "runAtMs": run["startedAtMs"],
    });
    for key in ["error", "summary", "sessionKey", "runId", "durationMs"] {
        if let Some(v) = run.get(key) {
            entry[key] = v.clone();
        }
    }
    Some(entry)
}

/// A native cron.started or cron.finished (as JSON) as OpenClaw's cron event.
pub fn cron_event(native: &serde_json::Value) -> serde_json::Value {
    use serde_json::json;
    let mut event = match native.get("run") {
        Some(run) => {
            let mut e = cron_run(run).unwrap_or_else(|| json!({"ts": run["startedAtMs"]}));
            e["action"] = "finished".into();
            if let Some(next) = native.get("nextRunAtMs") {
                e["nextRunAtMs"] = next.clone();
            }
            e
        }
        None => {
            let mut e = json!({
                "action": "started",
                "ts": native["startedAtMs"],
                "runAtMs": native["startedAtMs"],
            });
            if let Some(key) = native.get("sessionKey") {
                e["sessionKey"] = key.clone();
            }
            e
        }
    };
    event["jobId"] = native["jobId"].clone();
    event["jobName"] = native["name"].clone();
    event
}
