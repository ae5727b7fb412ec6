//! Paired device identities: the Ed25519 keys OpenClaw clients sign their
//! connect with. A device that proves its key and presents the gateway
//! credential is paired (at once from loopback when
//! devices.autoApproveLoopback says so, otherwise once an operator
//! approves), and from then on holds a device token per role that grants
//! the scopes approved for it.
//!
//! Device tokens are never stored: each is an HMAC of the device, the role
//! and a generation under a key kept in the state dir, outside the
//! database (in a cluster: in the shared store, so that every gateway
//! checks the same tokens). Rotating or revoking a token bumps the
//! generation.

mod cluster;
mod pairing;

pub use pairing::{Admission, Asking};

use crate::clock::now_ms;
use crate::protocol::types::{DeviceGrant, PairedDevice, Role, Scope};
use crate::protocol::{ErrorCode, Kick, RpcError};
use crate::runtime::Runtime;
use ring::hmac;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use subtle::ConstantTimeEq;

/// The file in the state dir that holds the device token key.
const KEY_FILE: &str = "device-tokens.key";
const TOKEN_PREFIX: &str = "cgd_";

pub struct DeviceService {
    rt: Runtime,
    /// Read from the state dir by load.
    key: OnceLock<hmac::Key>,
    table: Mutex<Table>,
    /// Serializes the read-change-store of device records.
    writing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Table {
    devices: BTreeMap<String, PairedDevice>,
    pending: BTreeMap<String, pairing::Pending>,
    /// Connections that use a device token, by connection id.
    live: HashMap<String, Live>,
}

struct Live {
    device_id: String,
    role: Role,
    /// The generation of the token it connected with.
    generation: u64,
    kick: Arc<Kick>,
}

/// Who asks for a rotation: its connection, and the device it proved.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub conn_id: &'a str,
    pub device: Option<&'a str>,
}

/// Who a device token belongs to and what it grants.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenOwner {
    pub device_id: String,
    pub scopes: Vec<Scope>,
}

impl DeviceService {
    pub fn new(rt: Runtime) -> Self {
        DeviceService {
            rt,
            key: OnceLock::new(),
            table: Mutex::default(),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().expect("device table")
    }

    /// Reads (or creates) the token key in the state dir and loads the
    /// paired devices; call before serving.
    pub async fn load(&self) -> Result<(), String> {
        let candidate = || {
            let mut bytes = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
                .expect("the system random source works");
            hex::encode(bytes)
        };
        // A gateway joining a cluster offers its own key, so the tokens it
        // issued keep working if it is the first.
        let local = std::fs::read_to_string(self.rt.state_dir.join(KEY_FILE))
            .ok()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty());
        let secret = match self.shared_key(local.unwrap_or_else(candidate)).await {
            Some(shared) => shared?,
            None => crate::config::load_or_create_secret(&self.rt.state_dir, KEY_FILE, candidate)
                .map_err(|e| format!("cannot read or create {KEY_FILE}: {e}"))?,
        };
        let _ = self
            .key
            .set(hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()));
        let stored = self
            .rt
            .stores
            .devices
            .devices()
            .await
            .map_err(|e| format!("cannot load the paired devices: {e}"))?;
        let mut table = self.lock();
        for device in stored {
            table.devices.insert(device.device_id.clone(), device);
        }
        Ok(())
    }

    /// The device's token for a role. It is bound to when the device was
    /// paired, so a device removed and paired again never gets its old
    /// tokens back.
    fn token(&self, device: &PairedDevice, role: Role, generation: u64) -> String {
        let key = self
            .key
            .get()
            .expect("DeviceService::load ran before serving");
        let input = format!(
            "{}\n{}\n{role}\n{generation}",
            device.device_id, device.paired_at_ms
        );
        let tag = hmac::sign(key, input.as_bytes());
        format!("{TOKEN_PREFIX}{}", hex::encode(tag.as_ref()))
    }

    /// The device whose token for `role` this is, if any.
    pub fn authenticate(&self, token: &str, role: Role) -> Option<TokenOwner> {
        self.owner(&self.lock(), token, role)
    }

    fn owner(&self, table: &Table, token: &str, role: Role) -> Option<TokenOwner> {
        if !token.starts_with(TOKEN_PREFIX) || self.key.get().is_none() {
            return None;
        }
        table.devices.values().find_map(|device| {
            let grant = device
                .roles
                .iter()
                .find(|g| g.role == role && g.token_active)?;
            let expected = self.token(device, role, grant.token_generation);
            bool::from(expected.as_bytes().ct_eq(token.as_bytes())).then(|| TokenOwner {
                device_id: device.device_id.clone(),
                scopes: grant.scopes.clone(),
            })
        })
    }

    /// Remembers a connection that authenticated with a device token, so
    /// revoking that token closes it. False when the token stopped being
    /// valid since it was checked (rotated or revoked in between): checked
    /// again under the lock a revocation takes to close connections.
    pub fn connected(&self, conn_id: &str, token: &str, role: Role, kick: Arc<Kick>) -> bool {
        let mut table = self.lock();
        let Some(owner) = self.owner(&table, token, role) else {
            return false;
        };
        let generation = table
            .devices
            .get(&owner.device_id)
            .and_then(|d| d.roles.iter().find(|g| g.role == role))
            .map_or(0, |g| g.token_generation);
        table.live.insert(
            conn_id.to_string(),
            Live {
                device_id: owner.device_id,
                role,
                generation,
                kick,
            },
        );
        true
    }

    pub fn disconnected(&self, conn_id: &str) {
        self.lock().live.remove(conn_id);
    }

    /// Whether the device is paired for this role (with any scopes).
    pub fn has_role(&self, device_id: &str, role: Role) -> bool {
        self.lock()
            .devices
            .get(device_id)
            .is_some_and(|d| d.roles.iter().any(|g| g.role == role))
    }

    pub fn list(&self) -> Vec<PairedDevice> {
        self.lock().devices.values().cloned().collect()
    }

    /// Unpairs a device and closes its token connections.
    pub async fn remove(&self, device_id: &str) -> Result<bool, RpcError> {
        let _writing = self.writing.lock().await;
        let removed = self
            .rt
            .stores
            .devices
            .remove_device(device_id.to_string())
            .await?;
        let mut table = self.lock();
        let known = table.devices.remove(device_id).is_some();
        table
            .pending
            .retain(|_, p| p.request.device_id != device_id);
        kick_where(
            &mut table,
            |_, l| l.device_id == device_id,
            "the device was removed",
        );
        drop(table);
        self.announce_change();
        Ok(removed || known)
    }

    /// Replaces the device's token for `role` (narrowing its scopes when
    /// asked) and closes the connections that used the old one. The new
    /// token is returned when the caller is the device itself.
    pub async fn rotate(
        &self,
        device_id: &str,
        role: Role,
        scopes: Option<Vec<Scope>>,
        caller: Caller<'_>,
    ) -> Result<(Vec<Scope>, Option<String>), RpcError> {
        let (grant, device) = self
            .change_grant(device_id, role, Some(caller.conn_id), |grant| {
                if let Some(asked) = &scopes {
                    let extra: Vec<String> = asked
                        .iter()
                        .filter(|s| !grant.scopes.contains(s))
                        .map(|s| s.to_string())
                        .collect();
                    if !extra.is_empty() {
                        return Err(RpcError::new(
                            ErrorCode::Forbidden,
                            format!(
                                "scopes not approved for this device: {}; approve a scope upgrade instead",
                                extra.join(", ")
                            ),
                        ));
                    }
                    grant.scopes = asked.clone();
                }
                grant.token_generation += 1;
                grant.token_active = true;
                Ok(())
            })
            .await?;
        let token = (caller.device == Some(device_id))
            .then(|| self.token(&device, role, grant.token_generation));
        Ok((grant.scopes, token))
    }

    /// Revokes the device's token for `role` and closes the connections
    /// that used it.
    pub async fn revoke(&self, device_id: &str, role: Role) -> Result<(), RpcError> {
        self.change_grant(device_id, role, None, |grant| {
            grant.token_generation += 1;
            grant.token_active = false;
            Ok(())
        })
        .await
        .map(|_| ())
    }

    async fn change_grant(
        &self,
        device_id: &str,
        role: Role,
        spare: Option<&str>,
        change: impl FnOnce(&mut DeviceGrant) -> Result<(), RpcError>,
    ) -> Result<(DeviceGrant, PairedDevice), RpcError> {
        let _writing = self.writing.lock().await;
        let _edit = self.edit_guard().await?;
        let mut device = self.lock().devices.get(device_id).cloned().ok_or_else(|| {
            RpcError::new(ErrorCode::NotFound, format!("no paired device {device_id}"))
        })?;
        let grant = device
            .roles
            .iter_mut()
            .find(|g| g.role == role)
            .ok_or_else(|| {
                RpcError::new(
                    ErrorCode::NotFound,
                    format!("device {device_id} is not paired for role {role}"),
                )
            })?;
        change(grant)?;
        let grant = grant.clone();
        self.rt.stores.devices.put_device(device.clone()).await?;
        let mut table = self.lock();
        table.devices.insert(device_id.to_string(), device.clone());
        // The caller that rotates its own token keeps its connection, so
        // the answer carrying the new token reaches it.
        let spared = |conn: &str| spare == Some(conn);
        kick_where(
            &mut table,
            |conn, l| l.device_id == device_id && l.role == role && !spared(conn),
            "the device token was replaced or revoked",
        );
        // The spared connection is the device itself, taking its new token.
        if let Some(live) = spare
            .and_then(|conn| table.live.get_mut(conn))
            .filter(|l| l.device_id == device_id && l.role == role)
        {
            live.generation = grant.token_generation;
        }
        drop(table);
        self.announce_change();
        Ok((grant, device))
    }
}

fn kick_where(table: &mut Table, matches: impl Fn(&str, &Live) -> bool, reason: &'static str) {
    table.live.retain(|conn, live| {
        if matches(conn, live) {
            live.kick.kick(reason);
            false
        } else {
            true
        }
    });
}

fn now() -> u64 {
    now_ms()
}
