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
            json!({
                "jobs": jobs,
                "total": all.len(),
                "offset": offset,
                "limit": limit,
                "hasMore": offset.saturating_add(limit) < all.len(),
            })
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
        V4Method::CronRemove => {
            let id = job_id(params)?;
            let removed: Value = native_call(gw, ctx, native_method, json!({ "id": id })).await?;
            json!({ "ok": true, "removed": removed["removed"] })
        }
        _ => unreachable!("not a cron method: {}", method.name()),
    })
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
