//! Native results and payloads in OpenClaw's shapes.

use super::types as v4;
use crate::protocol::types as native;
use std::str::FromStr;

/// A non-empty string in one of the generated newtypes; None when empty.
fn text<T: FromStr>(value: &str) -> Option<T> {
    value.parse().ok()
}

pub fn health(snapshot: &native::HealthSnapshot, default_agent: &str) -> v4::HealthSummary {
    let healthy = snapshot.state == native::GatewayState::Ready
        && snapshot
            .channels
            .values()
            .all(|c| c.status == native::ChannelStatus::Connected);
    let mut order: Vec<String> = snapshot.channels.keys().cloned().collect();
    order.sort_unstable();
    v4::HealthSummary {
        ok: healthy.then_some(true),
        ts: Some(snapshot.timestamp),
        duration_ms: Some(0),
        channels: snapshot
            .channels
            .iter()
            .filter_map(|(id, c)| Some((id.clone(), serde_json::to_value(c).ok()?)))
            .collect(),
        channel_order: order,
        default_agent_id: Some(default_agent.to_string()),
    }
}

pub fn presence_entry(entry: &native::PresenceEntry) -> v4::PresenceEntry {
    let mode = entry.kind.to_string();
    let host = entry
        .client_name
        .clone()
        .or_else(|| entry.channel.as_ref().map(|c| c.to_string()));
    let summary = [
        host.as_deref(),
        entry.client_version.as_deref(),
        entry.platform.as_deref(),
        Some(mode.as_str()),
        entry.address.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" · ");
    v4::PresenceEntry {
        host: host.as_deref().and_then(text),
        instance_id: entry
            .instance_id
            .as_deref()
            .or(entry.account_id.as_deref())
            .and_then(text),
        ip: entry.address.as_deref().and_then(text),
        last_activity_at: Some(entry.last_activity_at_ms),
        last_input_seconds: entry.last_input_seconds,
        mode: text(&mode),
        online_since: Some(entry.connected_at_ms),
        platform: entry.platform.as_deref().and_then(text),
        reason: text(if entry.online {
            "connect"
        } else {
            "disconnect"
        }),
        roles: match entry.kind {
            native::PresenceKind::Channel => vec![],
            kind => text(&kind.to_string()).into_iter().collect(),
        },
        scopes: entry
            .scopes
            .iter()
            .filter_map(|s| text(&s.to_string()))
            .collect(),
        text: Some(summary),
        ts: entry.left_at_ms.unwrap_or(entry.last_activity_at_ms),
        version: entry.client_version.as_deref().and_then(text),
    }
}

/// Only the entries online now: OpenClaw lists who is there.
pub fn presence(snapshot: &native::PresenceSnapshot) -> Vec<v4::PresenceEntry> {
    snapshot
        .entries
        .iter()
        .filter(|e| e.online)
        .map(presence_entry)
        .collect()
}

pub fn heartbeat(run: &native::HeartbeatRun) -> v4::HeartbeatEvent {
    use native::HeartbeatOutcome as Outcome;
    use v4::HeartbeatEventStatus as Status;
    let (status, reason) = match run.outcome {
        Outcome::Delivered => (Status::Sent, run.reason.clone()),
        Outcome::Ack => (Status::OkToken, run.reason.clone()),
        Outcome::Empty => (Status::OkEmpty, run.reason.clone()),
        Outcome::Kept => (Status::Skipped, Some("target-none".to_string())),
        Outcome::Skipped => (Status::Skipped, run.reason.clone()),
        Outcome::Failed => (Status::Failed, run.reason.clone()),
    };
    v4::HeartbeatEvent {
        ts: run.at_ms,
        status,
        reason,
        preview: run.preview.clone(),
        duration_ms: run.duration_ms,
        channel: run.channel.as_ref().map(|c| c.to_string()),
        account_id: run.account_id.clone(),
        to: run.to.clone(),
    }
}

pub fn model(agent: &native::AgentInfo) -> Option<v4::ModelChoice> {
    let id = agent
        .model
        .clone()
        .unwrap_or_else(|| agent.provider.clone());
    Some(v4::ModelChoice {
        name: text(&id)?,
        id: text(&id)?,
        provider: text(&agent.provider)?,
        available: Some(true),
    })
}

/// A transcript message in OpenClaw's shape: its text as one part.
pub fn message(m: &native::ChatMessage) -> serde_json::Value {
    let mut out = serde_json::json!({
        "role": m.role.to_string(),
        "content": [{"type": "text", "text": m.content}],
        "timestamp": m.created_at_ms,
    });
    if m.status == native::ChatMessageStatus::Aborted {
        out["stopReason"] = "aborted".into();
    }
    if let Some(run) = &m.run_id {
        out["runId"] = run.as_str().into();
    }
    out
}

/// A native agent.message as OpenClaw's chat event.
pub fn chat_event(e: &native::AgentMessageEvent) -> serde_json::Value {
    let mut out = serde_json::json!({
        "runId": e.run_id,
        "sessionKey": e.session_key,
        "agentId": e.agent_id,
        "seq": e.run_seq.get(),
        "state": e.state.to_string(),
    });
    match e.state {
        native::AgentMessageEventState::Delta => {
            out["deltaText"] = e.delta.clone().unwrap_or_default().into();
        }
        native::AgentMessageEventState::Error => {
            if let Some(error) = &e.error {
                out["errorMessage"] = error.as_str().into();
            }
        }
        _ => {}
    }
    if let Some(m) = &e.message {
        out["message"] = message(m);
    }
    out
}

/// A native agent.message as OpenClaw's agent event: assistant text, or
/// the lifecycle's end or error.
pub fn agent_event(e: &native::AgentMessageEvent) -> Option<serde_json::Value> {
    use native::AgentMessageEventState as State;
    let (stream, data) = match e.state {
        State::Delta => (
            "assistant",
            serde_json::json!({ "text": e.delta.as_deref()? }),
        ),
        State::Final => ("lifecycle", serde_json::json!({ "phase": "end" })),
        State::Aborted => (
            "lifecycle",
            serde_json::json!({ "phase": "end", "aborted": true }),
        ),
        State::Error => (
            "lifecycle",
            serde_json::json!({ "phase": "error", "error": e.error.as_deref().unwrap_or("") }),
        ),
    };
    Some(serde_json::json!({
        "runId": e.run_id,
        "seq": e.run_seq.get(),
        "stream": stream,
        "ts": crate::clock::now_ms(),
        "data": data,
    }))
}

pub fn session_row(s: &native::SessionInfo) -> serde_json::Value {
    let mut row = serde_json::json!({
        "key": s.key,
        "kind": "direct",
        "agentId": s.agent_id,
        "updatedAt": s.updated_at_ms,
        "isMain": s.key == crate::agent::main_session_key(&s.agent_id),
    });
    if let Some(label) = &s.label {
        row["label"] = label.as_str().into();
    }
    row
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
