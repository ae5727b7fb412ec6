//! Native events in OpenClaw's shape: the table generated from
//! `schema/openclaw/events.json` says which native events become which v4
//! events; this module shapes their payloads.

use super::{convert, frames, V4Event};
use crate::bus::{Kind, Published};
use crate::gateway::Gateway;
use crate::protocol::types as native;
use serde_json::{json, Value};

/// The v4 frames for a native event (none, one or more), numbered from
/// `seq`.
pub fn frames(gw: &Gateway, event: &Published, seq: u64) -> Vec<String> {
    let Kind::Core(kind) = &event.kind else {
        return Vec::new();
    };
    V4Event::from_native(*kind)
        .iter()
        .filter_map(|v4| payload(gw, *v4, &event.data).map(|p| (*v4, p)))
        .enumerate()
        .map(|(i, (v4, (payload, state)))| {
            debug_assert!(
                serde_json::from_str(&payload)
                    .is_ok_and(|p| super::schemas().validate(v4.payload_def(), &p).is_ok()),
                "{} sent outside its schema: {payload}",
                v4.name()
            );
            frames::event_frame(v4.name(), &payload, seq + i as u64, state)
        })
        .collect()
}

type Payload = (String, Option<(u64, u64)>);

fn payload(gw: &Gateway, v4: V4Event, data: &str) -> Option<Payload> {
    Some(match v4 {
        V4Event::Tick => (data.to_string(), None),
        V4Event::Health => {
            let health: native::HealthSnapshot = serde_json::from_str(data).ok()?;
            let payload = convert::health(&health, &gw.config().agents.default);
            (
                json!(payload).to_string(),
                Some((health.presence_version, health.version)),
            )
        }
        V4Event::Presence => {
            let presence = gw.rt.presence.snapshot();
            let payload = json!({ "presence": convert::presence(&presence) });
            (
                payload.to_string(),
                Some((presence.version, gw.rt.health.version())),
            )
        }
        V4Event::Shutdown => {
            let closing: Value = serde_json::from_str(data).ok()?;
            let mut payload = json!({ "reason": closing["reason"] });
            if let Some(ms) = closing["restartExpectedMs"].as_u64() {
                payload["restartExpectedMs"] = ms.into();
            }
            (payload.to_string(), None)
        }
        V4Event::Cron => {
            let native: Value = serde_json::from_str(data).ok()?;
            (super::cron::cron_event(&native).to_string(), None)
        }
        V4Event::ConfigChanged => {
            let mut native: Value = serde_json::from_str(data).ok()?;
            native["ts"] = crate::clock::now_ms().into();
            (native.to_string(), None)
        }
        V4Event::DevicePairRequested => {
            let request: native::DevicePairingRequest = serde_json::from_str(data).ok()?;
            (super::pairing::requested(&request).to_string(), None)
        }
        V4Event::DevicePairResolved => (data.to_string(), None),
        V4Event::ExecApprovalRequested => {
            let approval: native::ExecApproval = serde_json::from_str(data).ok()?;
            (super::approvals::entry(&approval).to_string(), None)
        }
        V4Event::ExecApprovalResolved => {
            let resolved: native::ApprovalsResolvedEvent = serde_json::from_str(data).ok()?;
            (super::approvals::resolved(&resolved).to_string(), None)
        }
        V4Event::NodeInvokeRequest => {
            let event: native::NodesInvokeRequestEvent = serde_json::from_str(data).ok()?;
            (super::nodes::invoke_request(&event).to_string(), None)
        }
        V4Event::NodePairRequested => {
            let request: native::PairingRequest = serde_json::from_str(data).ok()?;
            (super::nodes::requested(&request).to_string(), None)
        }
        V4Event::NodePairResolved => {
            let mut resolved: Value = serde_json::from_str(data).ok()?;
            resolved["ts"] = crate::clock::now_ms().into();
            (resolved.to_string(), None)
        }
        V4Event::Chat => {
            let message: native::AgentMessageEvent = serde_json::from_str(data).ok()?;
            (convert::chat_event(&message).to_string(), None)
        }
        V4Event::Agent => {
            let message: native::AgentMessageEvent = serde_json::from_str(data).ok()?;
            (convert::agent_event(&message)?.to_string(), None)
        }
    })
}
