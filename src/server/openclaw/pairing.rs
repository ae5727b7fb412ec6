//! OpenClaw's device.pair.* and device.token.* methods and events, on the
//! native devices.* methods: the params pass through (the names match),
//! the answers and events take OpenClaw's shape.

use super::error::V4Error;
use super::methods::native_call;
use super::V4Method;
use crate::gateway::Gateway;
use crate::protocol::types as native;
use crate::protocol::CallContext;
use serde_json::{json, Value};

pub async fn call(
    gw: &Gateway,
    ctx: &CallContext,
    method: V4Method,
    params: Value,
) -> Result<Value, V4Error> {
    let to = method.native();
    Ok(match method {
        V4Method::DevicePairList => {
            let list: native::DevicesListResult = native_call(gw, ctx, to, json!({})).await?;
            json!({
                "pending": list.pending.iter().map(pending).collect::<Vec<_>>(),
                "paired": list.devices.iter().map(paired).collect::<Vec<_>>(),
            })
        }
        V4Method::DevicePairApprove => {
            let approved: native::DevicesApproveResult = native_call(gw, ctx, to, params).await?;
            json!({ "requestId": approved.request_id, "device": paired(&approved.device) })
        }
        V4Method::DevicePairReject => {
            let rejected: native::DevicesRejectResult = native_call(gw, ctx, to, params).await?;
            json!({ "requestId": rejected.request_id, "deviceId": rejected.device_id })
        }
        V4Method::DevicePairRemove => {
            let removed: native::DevicesRemoveResult = native_call(gw, ctx, to, params).await?;
            if !removed.removed {
                return Err(V4Error::invalid("unknown deviceId"));
            }
            json!({ "deviceId": removed.device_id })
        }
        V4Method::DeviceTokenRotate => {
            let rotated: native::DevicesRotateTokenResult =
                native_call(gw, ctx, to, params).await?;
            let mut answer = json!({
                "deviceId": rotated.device_id,
                "role": rotated.role,
                "scopes": rotated.scopes,
                "rotatedAtMs": rotated.rotated_at_ms,
                "tokenDelivery": "withheld-cross-device",
            });
            if let Some(token) = rotated.token {
                answer["token"] = token.into();
                answer["tokenDelivery"] = "in-band".into();
            }
            answer
        }
        V4Method::DeviceTokenRevoke => {
            let revoked: native::DevicesRevokeTokenResult =
                native_call(gw, ctx, to, params).await?;
            json!({ "deviceId": revoked.device_id, "role": revoked.role, "revokedAtMs": revoked.revoked_at_ms })
        }
        _ => unreachable!("{} is not a device method", method.name()),
    })
}

/// A waiting request, as device.pair.list and device.pair.requested show it.
pub fn pending(request: &native::DevicePairingRequest) -> Value {
    let mut entry = json!({
        "requestId": request.request_id,
        "deviceId": request.device_id,
        "publicKey": request.public_key,
        "clientId": request.client_id,
        "clientMode": request.client_mode,
        "role": request.role,
        "roles": [request.role],
        "scopes": request.scopes,
        "remoteIp": request.remote_ip,
        "isRepair": request.is_repair,
        "ts": request.requested_at_ms,
        "expiresAtMs": request.expires_at_ms,
    });
    for (key, value) in [
        ("displayName", &request.display_name),
        ("platform", &request.platform),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            entry[key] = v.into();
        }
    }
    entry
}

/// The request event: the list entry without its expiry.
pub fn requested(request: &native::DevicePairingRequest) -> Value {
    let mut event = pending(request);
    if let Some(fields) = event.as_object_mut() {
        fields.remove("expiresAtMs");
    }
    event
}

fn paired(device: &native::PairedDevice) -> Value {
    let mut scopes: Vec<native::Scope> = Vec::new();
    for scope in device.roles.iter().flat_map(|g| &g.scopes) {
        if !scopes.contains(scope) {
            scopes.push(*scope);
        }
    }
    let mut entry = json!({
        "deviceId": device.device_id,
        "publicKey": device.public_key,
        "roles": device.roles.iter().map(|g| g.role).collect::<Vec<_>>(),
        "scopes": scopes,
        "tokens": device.roles.iter().map(|g| json!({
            "role": g.role, "scopes": g.scopes, "active": g.token_active,
        })).collect::<Vec<_>>(),
        "createdAtMs": device.paired_at_ms,
        "approvedAtMs": device.roles.iter().map(|g| g.approved_at_ms).max().unwrap_or(device.paired_at_ms),
    });
    if let Some(first) = device.roles.first() {
        entry["role"] = json!(first.role);
    }
    for (key, value) in [
        ("displayName", &device.display_name),
        ("platform", &device.platform),
        ("clientId", &device.client_id),
        ("clientMode", &device.client_mode),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            entry[key] = v.into();
        }
    }
    entry
}
