//! Native results and payloads in OpenClaw's shapes.

use super::types as v4;
use crate::protocol::types as native;
use serde_json::{json, Value};
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

/// A native chat.wait answer as OpenClaw's agent.wait answer.
pub fn run_wait(ended: &native::ChatWaitResult) -> Value {
    use native::ChatWaitResultStatus as S;
    let timed_out = ended.error.as_ref().is_some_and(|e| e.code == "timeout");
    let status = match ended.status {
        S::Complete => "ok",
        S::Running | S::Unknown => "timeout",
        S::Error if timed_out => "timeout",
        S::Aborted | S::Error => "error",
    };
    let mut answer = json!({ "runId": ended.run_id, "status": status });
    if let Some(at) = ended.started_at_ms {
        answer["startedAt"] = at.into();
    }
    if let Some(at) = ended.ended_at_ms {
        answer["endedAt"] = at.into();
    }
    if let Some(error) = &ended.error {
        answer["error"] = error.message.as_str().into();
    }
    if ended.status == S::Aborted {
        answer["error"] = "aborted".into();
        answer["stopReason"] = "aborted".into();
    } else if timed_out {
        answer["stopReason"] = "timeout".into();
    }
    answer
}

/// A clawgate log line (tracing's JSON) with the keys OpenClaw's log
/// readers look for first: time, level (lower case), subsystem, message.
pub fn log_line(line: &str) -> String {
    let Ok(Value::Object(ours)) = serde_json::from_str::<Value>(line) else {
        return line.to_string();
    };
    let mut theirs = serde_json::Map::new();
    if let Some(time) = ours.get("timestamp") {
        theirs.insert("time".into(), time.clone());
    }
    if let Some(level) = ours.get("level").and_then(Value::as_str) {
        theirs.insert("level".into(), level.to_lowercase().into());
    }
    if let Some(target) = ours.get("target") {
        theirs.insert("subsystem".into(), target.clone());
    }
    if let Some(Value::Object(fields)) = ours.get("fields") {
        for (key, value) in fields {
            theirs.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    for (key, value) in ours {
        if !matches!(key.as_str(), "timestamp" | "level" | "target" | "fields") {
            theirs.entry(key).or_insert(value);
        }
    }
    Value::Object(theirs).to_string()
}
