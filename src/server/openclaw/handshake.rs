//! OpenClaw's connect: negotiate v4 (or v3 for node hosts), check the
//! device proof, then authenticate through the native connect, so
//! credentials, rate limits and grants work exactly as for native clients.

use super::convert;
use super::device::{self, Challenge};
use super::error::V4Error;
use super::types::{self as v4, ConnectErrorDetailCode as Detail, ErrorCode};
use super::{schemas, V4Event, V4Method, NODE_MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use crate::devices::{Admission, Asking};
use crate::gateway::Gateway;
use crate::nodes::DeviceNode;
use crate::protocol::types::{AuthConfigMode, ConnectResult, DevicePairingRequest, Role, Scope};
use crate::protocol::{dispatch, CallContext, ErrorCode as Native, Method, RpcError};
use data_encoding::BASE64URL_NOPAD;
use serde_json::{json, Value};

/// WebSocket close codes OpenClaw's clients read.
pub const CLOSE_PROTOCOL: u16 = 1002;
pub const CLOSE_POLICY: u16 = 1008;

/// A refused connect: the error to answer, and how to close.
#[derive(Debug)]
pub struct Refusal {
    pub error: V4Error,
    pub close: u16,
    pub reason: &'static str,
}

impl Refusal {
    fn policy(error: V4Error) -> Refusal {
        Refusal {
            error,
            close: CLOSE_POLICY,
            reason: "connect failed",
        }
    }
}

/// Answers a v4 connect with its hello-ok payload (JSON text).
pub async fn connect(
    gw: &Gateway,
    ctx: &CallContext,
    challenge: &Challenge,
    params: Value,
) -> Result<String, Refusal> {
    if let Err(violations) = schemas().validate("ConnectParams", &params) {
        let first = &violations[0];
        let at = if first.pointer.is_empty() {
            "params"
        } else {
            &first.pointer
        };
        return Err(Refusal::policy(V4Error::invalid(format!(
            "invalid connect params: {} at {at}",
            first.message
        ))));
    }
    let params: v4::ConnectParams = serde_json::from_value(params)
        .map_err(|e| Refusal::policy(V4Error::invalid(format!("invalid connect params: {e}"))))?;
    let role_name = params.role.as_ref().map_or("operator", |r| r.as_str());
    let role = match role_name {
        "operator" => Role::Operator,
        "node" => Role::Node,
        _ => return Err(Refusal::policy(V4Error::invalid("invalid role"))),
    };
    let protocol = negotiate(&params, role)?;
    let asked: Vec<String> = params.scopes.iter().map(|s| s.to_string()).collect();
    let auth = params.auth.clone().unwrap_or_default();
    let mut proven: Option<device::Device> = None;
    if let Some(proof) = &params.device {
        let signed = device::Signed {
            client_id: &params.client.id.to_string(),
            client_mode: &params.client.mode.to_string(),
            role: role_name,
            scopes: &asked,
            token: auth
                .token
                .as_deref()
                .or(auth.device_token.as_deref())
                .or(auth.bootstrap_token.as_deref()),
            platform: Some(params.client.platform.as_str()),
            device_family: params.client.device_family.as_ref().map(|f| f.as_str()),
        };
        proven = Some(
            device::verify(proof, challenge, &signed, crate::clock::now_ms())
                .map_err(Refusal::policy)?,
        );
    }
    // The verified id (lowercase hex), never the client's spelling of it.
    let device_id = proven.as_ref().map(|d| d.id.as_str());
    if role == Role::Node
        && params.commands.len().max(params.caps.len()) > crate::nodes::MAX_DECLARED
    {
        return Err(Refusal::policy(V4Error::invalid(format!(
            "invalid connect params: a node declares at most {} commands and caps",
            crate::nodes::MAX_DECLARED
        ))));
    }

    let config = gw.config();
    // A paired device reconnects with its device token (OpenClaw's client
    // sends it as auth.deviceToken, and as auth.token when it has no
    // shared token); it must be the token of the device that signed.
    let device_token = auth.device_token.as_deref().or_else(|| {
        auth.token
            .as_deref()
            .filter(|t| gw.devices.authenticate(t, role).is_some())
    });
    let granted = match device_token {
        Some(token) => device_grant(gw, ctx.remote_ip, token, role, device_id)?,
        None => crate::gateway::granted_scopes(role, &config.gateway.auth),
    };
    // OpenClaw grants what is asked; clawgate grants what is asked and the
    // credential allows, and hello-ok says which.
    let mut scopes: Vec<Scope> = Vec::new();
    for scope in asked.iter().filter_map(|s| s.parse::<Scope>().ok()) {
        if granted.contains(&scope) && !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    // A node host asks for no scopes; what it may call is its role's.
    if role == Role::Node {
        if device_id.is_none() {
            return Err(Refusal::policy(
                V4Error::new(ErrorCode::NotPaired, "device identity required")
                    .with("code", Detail::DeviceIdentityRequired.to_string()),
            ));
        }
        scopes = granted.into_iter().filter(|s| *s == Scope::Node).collect();
    }
    let mut native = json!({
        "protocol": {"min": crate::protocol::PROTOCOL_MIN_VERSION, "max": crate::protocol::PROTOCOL_VERSION},
        "client": {"name": params.client.id.to_string(), "version": params.client.version.as_str(), "platform": params.client.platform.as_str()},
        "role": role,
        "scopes": scopes,
    });
    if let Some(instance) = &params.client.instance_id {
        native["client"]["instanceId"] = instance.as_str().into();
    }
    let mut credential = serde_json::Map::new();
    match device_token {
        Some(token) => {
            credential.insert("deviceToken".into(), token.into());
        }
        None => {
            if let Some(token) = &auth.token {
                credential.insert("token".into(), token.as_str().into());
            }
            if let Some(password) = &auth.password {
                credential.insert("password".into(), password.as_str().into());
            }
        }
    }
    if !credential.is_empty() {
        native["auth"] = Value::Object(credential);
    }
    let presented = auth.token.is_some() || auth.password.is_some();
    let hello = dispatch(gw, ctx, Method::Connect, native)
        .await
        .map_err(|e| refusal(e, config.gateway.auth.mode, presented))?;
    let hello: ConnectResult = serde_json::from_str(&hello).map_err(|e| {
        Refusal::policy(V4Error::new(
            ErrorCode::Unavailable,
            format!("cannot read the native hello: {e}"),
        ))
    })?;
    // Power for a device comes only from the gateway credential: not from
    // a native node token, nor from no credential at all.
    let with_credential = ctx.grant().is_some_and(|g| g.credential.is_some());
    if role == Role::Node && ctx.node_id().is_some() {
        return Err(Refusal::policy(V4Error::invalid(
            "a node host connects with its device and the gateway credential or its device token, not a native node token",
        )));
    }
    let issued = match (&proven, device_token) {
        (Some(_), Some(token)) => Some(token.to_string()),
        (Some(proof), None) => {
            let asking = Asking {
                device_id: proof.id.clone(),
                public_key: BASE64URL_NOPAD.encode(&proof.public_key),
                display_name: params.client.display_name.as_ref().map(|n| n.to_string()),
                platform: params.client.platform.to_string(),
                client_id: params.client.id.to_string(),
                client_mode: params.client.mode.to_string(),
                role,
                scopes: hello.scopes.clone(),
                remote_ip: ctx.remote_ip,
                with_credential,
            };
            match gw.devices.admit(asking).await {
                Ok(Admission::Paired { token }) => Some(token),
                Ok(Admission::Pending(request)) => {
                    let role_known = gw.devices.has_role(&request.device_id, role);
                    return Err(pairing_required(&request, role_known));
                }
                Err(e) => return Err(Refusal::policy(V4Error::from(e))),
            }
        }
        (None, _) => None,
    };
    if let Some(device_id) = device_id {
        ctx.prove_device(device_id.to_string());
    }
    if let (Role::Node, Some(device_id)) = (role, device_id) {
        let node = DeviceNode {
            device_id: device_id.to_string(),
            name: params
                .client
                .display_name
                .as_ref()
                .map_or_else(|| params.client.id.to_string(), |n| n.to_string()),
            platform: params.client.platform.to_string(),
            caps: params.caps.iter().map(|c| c.to_string()).collect(),
            commands: params.commands.iter().map(|c| c.to_string()).collect(),
        };
        gw.nodes
            .attach_device(ctx, node)
            .await
            .map_err(|e| Refusal::policy(V4Error::from(e)))?;
    }
    Ok(hello_ok(gw, ctx, protocol, &hello, issued).to_string())
}

/// The scopes a device token grants, once it is known to belong to the
/// device that signed this connect.
fn device_grant(
    gw: &Gateway,
    ctx_ip: std::net::IpAddr,
    token: &str,
    role: Role,
    device_id: Option<&str>,
) -> Result<Vec<Scope>, Refusal> {
    let Some(device_id) = device_id else {
        return Err(Refusal::policy(
            V4Error::new(ErrorCode::NotPaired, "device identity required")
                .with("code", Detail::DeviceIdentityRequired.to_string()),
        ));
    };
    let owner = gw.devices.authenticate(token, role);
    let valid = owner.as_ref().is_some_and(|o| o.device_id == device_id);
    // A wrong device token counts against the address like a wrong token.
    if let Err(crate::gateway::AuthRefused::Limited(e)) = gw.judge_credential(ctx_ip, valid, false)
    {
        return Err(refusal(e, AuthConfigMode::Token, true));
    }
    match owner {
        Some(owner) if valid => Ok(crate::gateway::within_ceiling(
            &owner.scopes,
            role,
            &gw.config().gateway.auth,
        )),
        _ => Err(Refusal::policy(
            V4Error::connect(
                Detail::AuthDeviceTokenMismatch,
                "device token mismatch: it was not issued to this device for this role, or it was rotated or revoked",
            )
            .with("canRetryWithDeviceToken", false)
            .with("recommendedNextStep", "update_auth_credentials"),
        )),
    }
}

/// NOT_PAIRED with the request an operator approves.
fn pairing_required(request: &DevicePairingRequest, role_known: bool) -> Refusal {
    let reason = match (request.is_repair, role_known) {
        (false, _) => "not-paired",
        (true, false) => "role-upgrade",
        (true, true) => "scope-upgrade",
    };
    let mut error = V4Error::new(
        ErrorCode::NotPaired,
        format!(
            "pairing required: approve request {} with device.pair.approve (or clawgate's devices.approve)",
            request.request_id
        ),
    )
    .with("code", Detail::PairingRequired.to_string())
    .with("reason", reason)
    .with("requestId", request.request_id.as_str())
    .with("deviceId", request.device_id.as_str())
    .with("requestedRole", request.role.to_string())
    .with(
        "requestedScopes",
        request.scopes.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    )
    .with("recommendedNextStep", "wait_then_retry")
    .with("pauseReconnect", false);
    error.retryable = true;
    Refusal {
        error,
        close: CLOSE_POLICY,
        reason: "device pairing required",
    }
}

/// v4 for every client; v3 also for node hosts (role node, mode node) and
/// restart probes, as OpenClaw's gateway allows.
fn negotiate(params: &v4::ConnectParams, role: Role) -> Result<u64, Refusal> {
    let (min, max) = (params.min_protocol.get(), params.max_protocol.get());
    if min > max {
        return Err(Refusal::policy(V4Error::invalid(format!(
            "invalid connect params: minProtocol ({min}) is greater than maxProtocol ({max})"
        ))));
    }
    let mode = params.client.mode;
    let older_allowed = (role == Role::Node && mode == v4::ConnectClientMode::Node)
        || mode == v4::ConnectClientMode::Probe;
    if (min..=max).contains(&PROTOCOL_VERSION) {
        return Ok(PROTOCOL_VERSION);
    }
    if older_allowed && max >= NODE_MIN_PROTOCOL_VERSION && min <= PROTOCOL_VERSION {
        return Ok(max.min(PROTOCOL_VERSION));
    }
    Err(Refusal {
        error: V4Error::connect(Detail::ProtocolMismatch, "protocol mismatch")
            .with("clientMinProtocol", min)
            .with("clientMaxProtocol", max)
            .with("expectedProtocol", PROTOCOL_VERSION)
            .with("minimumProbeProtocol", NODE_MIN_PROTOCOL_VERSION),
        close: CLOSE_PROTOCOL,
        reason: "protocol mismatch",
    })
}

/// A refused native connect in OpenClaw's terms.
fn refusal(e: RpcError, mode: AuthConfigMode, presented: bool) -> Refusal {
    let (detail, step) = match (e.code, mode, presented) {
        (Native::RateLimited, ..) => (Detail::AuthRateLimited, "wait_then_retry"),
        (Native::Unauthorized, AuthConfigMode::Token, false) => {
            (Detail::AuthTokenMissing, "update_auth_configuration")
        }
        (Native::Unauthorized, AuthConfigMode::Token, true) => {
            (Detail::AuthTokenMismatch, "update_auth_credentials")
        }
        (Native::Unauthorized, AuthConfigMode::Password, false) => {
            (Detail::AuthPasswordMissing, "update_auth_configuration")
        }
        (Native::Unauthorized, AuthConfigMode::Password, true) => {
            (Detail::AuthPasswordMismatch, "update_auth_credentials")
        }
        (Native::Forbidden, ..) => (Detail::AuthScopeMismatch, "review_auth_configuration"),
        (Native::InvalidParams, ..) => return Refusal::policy(V4Error::from(e)),
        (Native::Unavailable, ..) => {
            let mut error = V4Error::from(e);
            error.retryable = true;
            return Refusal::policy(error);
        }
        _ => (Detail::AuthUnauthorized, "review_auth_configuration"),
    };
    let mut error = V4Error::connect(detail, e.message.clone())
        .with("canRetryWithDeviceToken", false)
        .with("recommendedNextStep", step);
    if e.code == Native::RateLimited {
        error.retryable = true;
        error.retry_after_ms = e.retry_after_ms;
    }
    Refusal::policy(error)
}

fn hello_ok(
    gw: &Gateway,
    ctx: &CallContext,
    protocol: u64,
    hello: &ConnectResult,
    device_token: Option<String>,
) -> Value {
    let config = gw.config();
    let health = &hello.snapshot.health;
    let presence = gw.rt.presence.snapshot();
    // Who is connected is for those who may read it (presence.list's scope).
    let listed = if ctx.allows(Scope::OperatorRead) {
        convert::presence(&presence)
    } else {
        Vec::new()
    };
    let limits = &config.gateway.limits;
    let auth_mode = config.gateway.auth.mode.to_string();
    // A node's own scope is implied by its role in OpenClaw's terms.
    let scopes: Vec<&Scope> = hello.scopes.iter().filter(|s| **s != Scope::Node).collect();
    let mut auth = json!({"role": hello.role, "scopes": scopes});
    if let Some(token) = device_token {
        auth["deviceToken"] = token.into();
    }
    json!({
        "type": "hello-ok",
        "protocol": protocol,
        "server": {"version": hello.server.version, "connId": hello.server.conn_id},
        "features": {
            "methods": V4Method::ALL.iter().map(|m| m.name()).collect::<Vec<_>>(),
            "events": V4Event::ALL.iter().map(|e| e.name()).collect::<Vec<_>>(),
        },
        "snapshot": {
            "presence": listed,
            "health": convert::health(health, &config.agents.default),
            "stateVersion": {"presence": presence.version, "health": health.version},
            "uptimeMs": (health.uptime * 1000.0) as u64,
            "authMode": auth_mode,
        },
        "auth": auth,
        "policy": {
            "maxPayload": limits.max_payload_bytes,
            "maxBufferedBytes": (limits.max_payload_bytes as u64).saturating_mul(limits.outbound_queue_frames as u64),
            "tickIntervalMs": config.gateway.tick_interval_ms,
        },
    })
}
