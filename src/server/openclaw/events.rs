//! Native events in OpenClaw's shape: the table generated from
//! `schema/openclaw/events.json` says which native events become which v4
//! event; this module shapes their payloads.

use super::{convert, frames, V4Event};
use crate::bus::{Kind, Published};
use crate::gateway::Gateway;
use crate::protocol::types as native;
use serde_json::{json, Value};

/// The v4 frame for a native event, numbered `seq`; None when the event
/// has no v4 form.
pub fn frame(gw: &Gateway, event: &Published, seq: u64) -> Option<String> {
    let Kind::Core(kind) = &event.kind else {
        return None;
    };
    let v4 = V4Event::from_native(*kind)?;
    let (payload, state) = match v4 {
        V4Event::Tick => (event.data.clone(), None),
        V4Event::Health => {
            let health: native::HealthSnapshot = serde_json::from_str(&event.data).ok()?;
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
            let closing: Value = serde_json::from_str(&event.data).ok()?;
            let mut payload = json!({ "reason": closing["reason"] });
            if let Some(ms) = closing["restartExpectedMs"].as_u64() {
                payload["restartExpectedMs"] = ms.into();
            }
            (payload.to_string(), None)
        }
    };
    debug_assert!(
        serde_json::from_str(&payload)
            .is_ok_and(|p| super::schemas().validate(v4.payload_def(), &p).is_ok()),
        "{} sent outside its schema: {payload}",
        v4.name()
    );
    Some(frames::event_frame(v4.name(), &payload, seq, state))
}
