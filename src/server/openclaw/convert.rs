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
