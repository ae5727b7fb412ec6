//! The connect handshake: protocol negotiation, authentication and the
//! grant of scopes, which always comes from the server.

use super::{AuthRefused, Gateway};
use crate::protocol::types::{
    AuthConfig, AuthConfigMode, ConnectAuth, ConnectParams, ConnectResult, ConnectResultSnapshot,
    Policy, PresenceKind, Role, Scope, ServerInfo,
};
use crate::protocol::{
    CallContext, ErrorCode, EventKind, Grant, Method, RpcError, ALL_SCOPES, SUPPORTED_PROTOCOL,
};
use serde_json::json;
use subtle::ConstantTimeEq;

pub async fn connect(
    gw: &Gateway,
    ctx: &CallContext,
    params: ConnectParams,
) -> Result<ConnectResult, RpcError> {
    if ctx.grant().is_some() {
        return Err(RpcError::new(ErrorCode::Conflict, "already connected"));
    }
    if gw.is_draining() {
        return Err(
            RpcError::new(ErrorCode::Unavailable, "the gateway is shutting down")
                .with_retry_after(1000),
        );
    }
    let protocol = negotiate(params.protocol.min.get(), params.protocol.max.get())?;
    let config = gw.config();
    let auth = &config.gateway.auth;
    // A paired node presents its own node token instead of the gateway's.
    let node_id = match (params.role, params.auth.as_ref()) {
        (Role::Node, Some(auth)) => auth
            .token
            .as_deref()
            .and_then(|token| gw.nodes.authenticate(token)),
        _ => None,
    };
    // A paired device presents the token it was issued for its role.
    let device = match (&node_id, params.auth.as_ref()) {
        (None, Some(auth)) => auth
            .device_token
            .as_deref()
            .map(|token| gw.devices.authenticate(token, params.role)),
        _ => None,
    };
    let verdict = match (&node_id, &device) {
        (Some(_), _) | (None, Some(Some(_))) => Ok(()),
        (None, Some(None)) => Err(RpcError::new(
            ErrorCode::Unauthorized,
            "invalid device token: it was not issued to a paired device for this role, or it was rotated or revoked",
        )),
        (None, None) => match authenticate(auth, params.role, params.auth.as_ref()) {
            Err(refused) => match serve_identity(gw, ctx, &params).await {
                Some(confirmed) => confirmed,
                None => Err(refused),
            },
            accepted => accepted,
        },
    };
    let device = device.flatten();
    let guessable = node_id.is_none() && device.is_none() && auth.mode == AuthConfigMode::Password;
    match gw.judge_credential(ctx.remote_ip, verdict.is_ok(), guessable) {
        Ok(()) => {}
        Err(AuthRefused::Limited(e)) => return Err(e),
        Err(AuthRefused::Invalid) => return Err(verdict.expect_err("refused as invalid")),
    }
    let granted = match &device {
        Some(owner) => within_ceiling(&owner.scopes, params.role, auth),
        None => granted_scopes(params.role, auth),
    };
    let scopes = match params.scopes {
        None => granted,
        Some(asked) => narrow(&granted, asked)?,
    };
    let grant = Grant {
        role: params.role,
        scopes: scopes.clone(),
        credential: (node_id.is_none() && device.is_none())
            .then(|| credential_digest(&config.gateway.auth))
            .flatten(),
        device: device.as_ref().map(|d| d.device_id.clone()),
    };
    let device_token = params.auth.as_ref().and_then(|a| a.device_token.as_deref());
    if let (Some(_), Some(token)) = (&device, device_token) {
        if !gw
            .devices
            .connected(&ctx.conn_id, token, params.role, ctx.kick().clone())
        {
            return Err(RpcError::new(
                ErrorCode::Unauthorized,
                "invalid device token: it was rotated or revoked during this connect",
            ));
        }
    }
    if !ctx.set_grant(grant) {
        gw.devices.disconnected(&ctx.conn_id);
        return Err(RpcError::new(ErrorCode::Conflict, "already connected"));
    }
    if let Some(node_id) = node_id {
        ctx.bind_node(node_id.clone());
        gw.nodes.connected(&node_id, ctx);
    }
    gw.rt.presence.join(crate::presence::Joining {
        conn_id: &ctx.conn_id,
        kind: match params.role {
            Role::Operator => PresenceKind::Operator,
            Role::Node => PresenceKind::Node,
        },
        client: &params.client,
        scopes: scopes.clone(),
        remote: ctx.remote_ip,
        activity: std::sync::Arc::clone(&ctx.activity),
    });
    let limits = &config.gateway.limits;
    let plugins = gw.plugins.surface();
    Ok(ConnectResult {
        protocol: std::num::NonZeroU64::from(protocol_nonzero(protocol)),
        server: ServerInfo {
            name: env!("CARGO_PKG_NAME").to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            conn_id: ctx.conn_id.clone(),
        },
        role: params.role,
        scopes,
        methods: Method::ALL
            .iter()
            .map(|m| m.name().to_string())
            .chain(plugins.methods)
            .collect(),
        events: EventKind::ALL
            .iter()
            .map(|e| e.name().to_string())
            .chain(plugins.events)
            .collect(),
        plugin_scopes: plugins.scopes,
        policy: Policy {
            max_payload_bytes: limits.max_payload_bytes as u64,
            tick_interval_ms: config.gateway.tick_interval_ms as u64,
            handshake_timeout_ms: config.gateway.handshake_timeout_ms as u64,
            outbound_queue_frames: limits.outbound_queue_frames as u64,
        },
        snapshot: ConnectResultSnapshot {
            health: gw.rt.health.snapshot(),
        },
    })
}

/// Without a credential, an operator that came through Tailscale Serve
/// gets in when the daemon confirms the user Serve named; None when the
/// connection makes no such claim.
async fn serve_identity(
    gw: &Gateway,
    ctx: &CallContext,
    params: &ConnectParams,
) -> Option<Result<(), RpcError>> {
    let claim = ctx.serve_claim.as_deref()?;
    let presented = params
        .auth
        .as_ref()
        .is_some_and(|a| a.token.is_some() || a.password.is_some());
    if presented || params.role != Role::Operator {
        return None;
    }
    Some(match gw.tailscale.confirm(claim).await {
        Ok(login) => {
            tracing::info!(%login, "authenticated through Tailscale Serve");
            Ok(())
        }
        Err(e) => {
            tracing::warn!("a Tailscale Serve identity was not confirmed: {e}");
            Err(RpcError::new(
                ErrorCode::Unauthorized,
                format!("no credential, and the Tailscale identity could not be confirmed: {e}"),
            ))
        }
    })
}

/// The highest version both sides speak.
fn negotiate(client_min: u64, client_max: u64) -> Result<u32, RpcError> {
    let (server_min, server_max) = SUPPORTED_PROTOCOL;
    if client_min > client_max {
        return Err(RpcError::new(
            ErrorCode::InvalidParams,
            format!("protocol.min ({client_min}) is greater than protocol.max ({client_max})"),
        ));
    }
    let best = client_max.min(server_max as u64);
    if best < client_min.max(server_min as u64) {
        return Err(RpcError::new(
            ErrorCode::ProtocolMismatch,
            format!(
                "no common protocol version: the client speaks {client_min}..={client_max}, the server speaks {server_min}..={server_max}"
            ),
        )
        .with_data(json!({"server": {"min": server_min, "max": server_max}})));
    }
    Ok(best as u32)
}

fn authenticate(
    auth: &AuthConfig,
    role: Role,
    presented: Option<&ConnectAuth>,
) -> Result<(), RpcError> {
    let (given, what) = match auth.mode {
        // Without a gateway credential nothing can be paired, so a node
        // gets in only with the token of an earlier pairing.
        AuthConfigMode::None if role == Role::Node => {
            return Err(RpcError::new(
                ErrorCode::Unauthorized,
                "with gateway.auth.mode none a node connects only with the node token it was paired with",
            ))
        }
        AuthConfigMode::None => return Ok(()),
        AuthConfigMode::Token => (presented.and_then(|a| a.token.as_deref()), "token"),
        AuthConfigMode::Password => (presented.and_then(|a| a.password.as_deref()), "password"),
    };
    let Some(given) = given else {
        return Err(RpcError::new(
            ErrorCode::Unauthorized,
            format!("this gateway requires auth.{what}"),
        ));
    };
    if credential_matches(auth, given) {
        Ok(())
    } else {
        Err(RpcError::new(
            ErrorCode::Unauthorized,
            format!("invalid {what}"),
        ))
    }
}

/// Everything the credential grants the role, with implied scopes spelled
/// out. Without a credential (auth mode none) an operator may read, never
/// change anything.
pub fn granted_scopes(role: Role, auth: &AuthConfig) -> Vec<Scope> {
    match role {
        Role::Node => vec![Scope::Node],
        Role::Operator => ALL_SCOPES
            .iter()
            .copied()
            .filter(|s| *s != Scope::Node)
            .filter(|s| auth.mode != AuthConfigMode::None || *s == Scope::OperatorRead)
            .filter(|s| {
                auth.scopes
                    .iter()
                    .any(|c| crate::protocol::scope_covers(*c, *s))
            })
            .collect(),
    }
}

/// A device's approved scopes, less those gateway.auth.scopes no longer
/// allows (whatever the auth mode: a device token is a credential).
pub fn within_ceiling(approved: &[Scope], role: Role, auth: &AuthConfig) -> Vec<Scope> {
    approved
        .iter()
        .copied()
        .filter(|s| {
            role == Role::Node
                || auth
                    .scopes
                    .iter()
                    .any(|c| crate::protocol::scope_covers(*c, *s))
        })
        .collect()
}

/// Whether the gateway credential grants an operator `needed` (HTTP
/// routes, which have no connect, ask this).
pub fn credential_grants(auth: &AuthConfig, needed: Scope) -> bool {
    granted_scopes(Role::Operator, auth).contains(&needed)
}

/// What an open connection may still do under the config now in force:
/// its grant narrowed to what the config grants its role. Err when the
/// gateway credential it connected with is no longer the configured one.
pub fn revalidate(auth: &AuthConfig, grant: &Grant) -> Result<Vec<Scope>, &'static str> {
    // A device token answers to the devices service, which closes its
    // connections when it is revoked; the gateway credential is not its.
    if grant.device.is_some() {
        return Ok(within_ceiling(&grant.scopes, grant.role, auth));
    }
    if let Some(presented) = grant.credential {
        let current = credential_digest(auth);
        if !current.is_some_and(|c| bool::from(c.ct_eq(&presented))) {
            return Err("the credential was rotated; connect again with the new one");
        }
    }
    Ok(granted_scopes(grant.role, auth))
}

/// A digest that changes whenever the configured credential does.
fn credential_digest(auth: &AuthConfig) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let (kind, secret) = match auth.mode {
        AuthConfigMode::None => return None,
        AuthConfigMode::Token => ("token", auth.token.as_deref()?),
        AuthConfigMode::Password => ("password", auth.password.as_deref()?),
    };
    let mut hash = Sha256::new();
    hash.update(kind.as_bytes());
    hash.update([0]);
    hash.update(secret.as_bytes());
    Some(hash.finalize().into())
}

/// The scopes the client asked for, if every one of them is granted.
fn narrow(granted: &[Scope], asked: Vec<Scope>) -> Result<Vec<Scope>, RpcError> {
    let denied: Vec<String> = asked
        .iter()
        .filter(|s| !granted.contains(s))
        .map(|s| s.to_string())
        .collect();
    if denied.is_empty() {
        Ok(asked)
    } else {
        Err(RpcError::new(
            ErrorCode::Forbidden,
            format!(
                "scopes not granted to this credential: {}",
                denied.join(", ")
            ),
        )
        .with_data(json!({ "denied": denied })))
    }
}

fn protocol_nonzero(version: u32) -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(version).expect("protocol versions start at 1")
}

/// Whether `presented` is the credential the auth mode asks for, compared
/// in constant time. Never true in mode none: there is no credential.
pub fn credential_matches(auth: &AuthConfig, presented: &str) -> bool {
    let expected = match auth.mode {
        AuthConfigMode::None => return false,
        AuthConfigMode::Token => auth.token.as_deref(),
        AuthConfigMode::Password => auth.password.as_deref(),
    };
    expected.is_some_and(|e| bool::from(e.as_bytes().ct_eq(presented.as_bytes())))
}
