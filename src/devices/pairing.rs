//! Device pairing: a device that proved its key and presented the gateway
//! credential is admitted when its role and scopes are approved; otherwise
//! a request waits for devices.approve (or is approved at once from
//! loopback). Requests live in memory and lapse pairingTimeoutMs after the
//! device last asked; a device that asks again reuses its request.

use super::{now, DeviceService, Table};
use crate::protocol::types::{
    DeviceGrant, DevicePairingRequest, DevicesPairingResolvedEvent,
    DevicesPairingResolvedEventDecision as Decision, PairedDevice, Role, Scope,
};
use crate::protocol::{ErrorCode, Event, RpcError};
use std::net::IpAddr;

/// Requests waiting at once: each is a device a peer made up, so bounded.
const MAX_PENDING: usize = 64;

/// What a connecting device asks for.
#[derive(Debug, Clone)]
pub struct Asking {
    pub device_id: String,
    pub public_key: String,
    pub display_name: Option<String>,
    pub platform: String,
    pub client_id: String,
    pub client_mode: String,
    pub role: Role,
    /// The scopes it asked for that the credential grants.
    pub scopes: Vec<Scope>,
    pub remote_ip: IpAddr,
    /// Whether it presented the gateway credential (not auth mode none).
    pub with_credential: bool,
}

/// The outcome of a connect with a device.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Paired for the role and scopes: the device's token.
    Paired { token: String },
    /// Waiting for an operator.
    Pending(Box<DevicePairingRequest>),
}

pub(super) struct Pending {
    pub(super) request: DevicePairingRequest,
}

impl DeviceService {
    /// Admits a device, asking for approval when it is new or wants a role
    /// or scopes not yet approved.
    pub async fn admit(&self, asking: Asking) -> Result<Admission, RpcError> {
        let _writing = self.writing.lock().await;
        let config = self.rt.config();
        let known = self.lock().devices.get(&asking.device_id).cloned();
        let approved = known.as_ref().and_then(|d| {
            d.roles
                .iter()
                .find(|g| g.role == asking.role)
                .filter(|g| asking.scopes.iter().all(|s| g.scopes.contains(s)))
                .cloned()
        });
        if let (Some(mut device), Some(grant)) = (known.clone(), approved) {
            if !grant.token_active {
                // A revoked token is replaced once the device shows the
                // gateway credential again.
                let _edit = self.edit_guard().await?;
                let stored = self.lock().devices.get(&asking.device_id).cloned();
                device = stored.ok_or_else(|| {
                    RpcError::new(
                        ErrorCode::Conflict,
                        "the device was removed meanwhile; connect again to ask for pairing",
                    )
                })?;
                for g in device.roles.iter_mut().filter(|g| g.role == asking.role) {
                    g.token_active = true;
                }
                self.rt.stores.devices.put_device(device.clone()).await?;
                self.lock()
                    .devices
                    .insert(device.device_id.clone(), device.clone());
                self.announce_change();
            }
            let generation = device
                .roles
                .iter()
                .find(|g| g.role == asking.role)
                .map_or(grant.token_generation, |g| g.token_generation);
            return Ok(Admission::Paired {
                token: self.token(&device, asking.role, generation),
            });
        }
        let auto = config.devices.auto_approve_loopback
            && asking.with_credential
            && asking.remote_ip.is_loopback();
        // An approval that needs no one is not announced as a request.
        let request = self.ask(
            &asking,
            known.is_some(),
            config.devices.pairing_timeout_ms,
            !auto,
        )?;
        if !auto {
            return Ok(Admission::Pending(Box::new(request)));
        }
        tracing::info!(device = %asking.device_id, role = %asking.role, "device paired from loopback (devices.autoApproveLoopback)");
        let device = self.pair(&request.request_id).await?;
        let generation = device
            .roles
            .iter()
            .find(|g| g.role == asking.role)
            .map_or(0, |g| g.token_generation);
        Ok(Admission::Paired {
            token: self.token(&device, asking.role, generation),
        })
    }

    /// The device's request for this role, made or refreshed; a new one is
    /// published when `announce`.
    fn ask(
        &self,
        asking: &Asking,
        is_repair: bool,
        timeout_ms: i64,
        announce: bool,
    ) -> Result<DevicePairingRequest, RpcError> {
        let now = now();
        let mut table = self.lock();
        self.expire(&mut table, now);
        let expires_at_ms = now + timeout_ms.max(1000) as u64;
        let existing = table
            .pending
            .values_mut()
            .find(|p| p.request.device_id == asking.device_id && p.request.role == asking.role);
        if let Some(pending) = existing {
            let request = &mut pending.request;
            for scope in &asking.scopes {
                if !request.scopes.contains(scope) {
                    request.scopes.push(*scope);
                }
            }
            request.expires_at_ms = expires_at_ms;
            request.remote_ip = asking.remote_ip.to_string();
            return Ok(request.clone());
        }
        if table.pending.len() >= MAX_PENDING {
            return Err(RpcError::new(
                ErrorCode::Unavailable,
                format!("{MAX_PENDING} device pairing requests are already waiting; answer or let them lapse first"),
            )
            .with_retry_after(60_000));
        }
        let request = DevicePairingRequest {
            request_id: format!("dev-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            device_id: asking.device_id.clone(),
            public_key: asking.public_key.clone(),
            display_name: asking.display_name.clone(),
            platform: Some(asking.platform.clone()),
            client_id: asking.client_id.clone(),
            client_mode: asking.client_mode.clone(),
            role: asking.role,
            scopes: asking.scopes.clone(),
            remote_ip: asking.remote_ip.to_string(),
            is_repair,
            requested_at_ms: now,
            expires_at_ms,
        };
        table.pending.insert(
            request.request_id.clone(),
            Pending {
                request: request.clone(),
            },
        );
        tracing::info!(request = %request.request_id, device = %request.device_id, remote = %request.remote_ip, "device pairing requested");
        if announce {
            self.rt.bus.publish(Event::DevicesPairing(request.clone()));
        }
        Ok(request)
    }

    /// Requests still waiting, oldest first.
    pub fn pending(&self) -> Vec<DevicePairingRequest> {
        let mut table = self.lock();
        self.expire(&mut table, now());
        let mut requests: Vec<_> = table.pending.values().map(|p| p.request.clone()).collect();
        requests.sort_by_key(|r| r.requested_at_ms);
        requests
    }

    fn expire(&self, table: &mut Table, now: u64) {
        let lapsed: Vec<String> = table
            .pending
            .iter()
            .filter(|(_, p)| p.request.expires_at_ms <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in lapsed {
            if let Some(p) = table.pending.remove(&id) {
                self.resolved(&p.request, Decision::Expired);
            }
        }
    }

    fn resolved(&self, request: &DevicePairingRequest, decision: Decision) {
        self.rt
            .bus
            .publish(Event::DevicesPairingResolved(DevicesPairingResolvedEvent {
                request_id: request.request_id.clone(),
                device_id: request.device_id.clone(),
                decision,
                ts: now(),
            }));
    }

    /// Whether the pairing request waits on this gateway.
    pub fn holds_request(&self, request_id: &str) -> bool {
        let mut table = self.lock();
        self.expire(&mut table, now());
        table.pending.contains_key(request_id)
    }

    fn take(&self, request_id: &str) -> Result<DevicePairingRequest, RpcError> {
        let mut table = self.lock();
        self.expire(&mut table, now());
        table
            .pending
            .remove(request_id)
            .map(|p| p.request)
            .ok_or_else(|| {
                RpcError::new(
                    ErrorCode::NotFound,
                    format!("no device pairing request {request_id} is waiting"),
                )
            })
    }

    /// devices.approve: pairs the device for the role and scopes asked
    /// (adding to what it had); its next connect succeeds.
    pub async fn approve(&self, request_id: &str) -> Result<PairedDevice, RpcError> {
        let _writing = self.writing.lock().await;
        self.pair(request_id).await
    }

    /// Approves a request; the caller holds `writing`.
    async fn pair(&self, request_id: &str) -> Result<PairedDevice, RpcError> {
        let request = self.take(request_id)?;
        let _edit = match self.edit_guard().await {
            Ok(edit) => edit,
            Err(e) => {
                // Not stored: the request waits again rather than vanish.
                self.lock().pending.insert(
                    request.request_id.clone(),
                    Pending {
                        request: request.clone(),
                    },
                );
                return Err(e);
            }
        };
        let now = now();
        let known = self.lock().devices.get(&request.device_id).cloned();
        let mut device = known.unwrap_or_else(|| PairedDevice {
            device_id: request.device_id.clone(),
            public_key: request.public_key.clone(),
            display_name: None,
            platform: None,
            client_id: None,
            client_mode: None,
            roles: Vec::new(),
            paired_at_ms: now,
        });
        device.display_name = request.display_name.clone().or(device.display_name);
        device.platform = request.platform.clone().or(device.platform);
        device.client_id = Some(request.client_id.clone());
        device.client_mode = Some(request.client_mode.clone());
        match device.roles.iter_mut().find(|g| g.role == request.role) {
            Some(grant) => {
                for scope in &request.scopes {
                    if !grant.scopes.contains(scope) {
                        grant.scopes.push(*scope);
                    }
                }
                grant.approved_at_ms = now;
                grant.token_active = true;
            }
            None => device.roles.push(DeviceGrant {
                role: request.role,
                scopes: request.scopes.clone(),
                approved_at_ms: now,
                token_generation: 0,
                token_active: true,
            }),
        }
        if let Err(e) = self.rt.stores.devices.put_device(device.clone()).await {
            // Not stored: the request waits again rather than vanish.
            self.lock()
                .pending
                .insert(request.request_id.clone(), Pending { request });
            return Err(e.into());
        }
        self.lock()
            .devices
            .insert(device.device_id.clone(), device.clone());
        self.announce_change();
        self.resolved(&request, Decision::Approved);
        Ok(device)
    }

    /// devices.reject: the request is dropped; the device may ask again.
    pub fn reject(&self, request_id: &str) -> Result<DevicePairingRequest, RpcError> {
        let request = self.take(request_id)?;
        self.resolved(&request, Decision::Rejected);
        Ok(request)
    }
}
