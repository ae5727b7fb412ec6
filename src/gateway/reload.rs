//! Config reload: the file watcher, and what a reload tells the world
//! (config.changed or config.reload.failed, health, the log) once the
//! services that follow the config have applied it.

use super::{now_ms, Applied, Gateway};
use crate::bus::Kind;
use crate::config::{hash_text, ConfigError};
use crate::protocol::types::{
    ConfigChangedEvent, ConfigReloadFailedEvent, ConfigReloadResult, ReloadConfigMode,
};
use crate::protocol::{Event, EventKind};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// The longest a reload waits for the services to apply a new config
/// before it announces the change anyway.
const SETTLE_LIMIT: Duration = Duration::from_secs(5);
/// The shortest interval between two looks at the file.
const MIN_POLL: Duration = Duration::from_millis(50);

impl Gateway {
    /// Reads the config file now and applies it.
    pub async fn reload_config(&self) -> ConfigReloadResult {
        let _guard = self.configs.lock().await;
        let Some(path) = self.configs.path().map(|p| p.to_path_buf()) else {
            return ConfigReloadResult {
                ok: true,
                hash: None,
                changed: Vec::new(),
                restart_required: Vec::new(),
                error: None,
                errors: Vec::new(),
            };
        };
        match tokio::fs::read_to_string(&path).await {
            Ok(text) => reload_result(
                self.apply_config_locked(&text).await,
                Some(hash_text(&text)),
            ),
            Err(e) => {
                let error = ConfigError::Read {
                    path,
                    reason: e.to_string(),
                };
                self.configs.record_unreadable(&error, now_ms());
                self.rt.metrics.config_reload("unreadable");
                self.announce_failure(None, &error);
                reload_result(Err(error), None)
            }
        }
    }

    /// Applies new file content and announces the outcome. Call with the
    /// config lock held.
    pub(super) async fn apply_config_locked(&self, text: &str) -> Result<Applied, ConfigError> {
        let result = self.configs.apply_text(text, now_ms());
        match &result {
            Ok(applied) => {
                // Each service applies its own part; announce once they have.
                if !self.configs.settled(SETTLE_LIMIT).await {
                    tracing::warn!(
                        "a service had not applied the new config within {SETTLE_LIMIT:?}"
                    );
                }
                self.rt.metrics.config_reload("applied");
                self.announce_applied(applied)
            }
            Err(error) => {
                self.rt.metrics.config_reload("rejected");
                self.announce_failure(Some(hash_text(text)), error)
            }
        }
        result
    }

    fn announce_applied(&self, applied: &Applied) {
        if applied.changed.is_empty() {
            tracing::info!("config file re-read: no effective change");
        } else {
            tracing::info!(changed = ?applied.changed, "config reloaded");
        }
        if !applied.restart_required.is_empty() {
            tracing::warn!(keys = ?applied.restart_required, "config changes that take effect only after a restart");
        }
        // Health first, so a client that reacts to the event reads the new state.
        self.rt.health.set_config(self.configs.health());
        self.rt
            .bus
            .publish(Event::ConfigChanged(ConfigChangedEvent {
                hash: applied.hash.clone().unwrap_or_default(),
                changed: applied.changed.clone(),
                restart_required: applied.restart_required.clone(),
            }));
    }

    fn announce_failure(&self, hash: Option<String>, error: &ConfigError) {
        tracing::warn!("config reload rejected, keeping the last good config: {error}");
        self.rt.health.set_config(self.configs.health());
        self.rt
            .bus
            .publish(Event::ConfigReloadFailed(ConfigReloadFailedEvent {
                hash,
                error: error.summary(),
                errors: error.problems(),
            }));
    }

    /// Watches the config file by content: every `reload.debounceMs` it
    /// looks, and applies a new content once it has stayed the same for
    /// one more interval. Renames, deletes and re-creates are all just
    /// content changes; a missing file is waited for.
    pub fn spawn_config_watcher(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let path = self.configs.path()?.to_path_buf();
        let gw = Arc::clone(self);
        Some(tokio::spawn(async move {
            let mut shutdown = gw.shutdown_signal();
            loop {
                let config = gw.config();
                let interval =
                    Duration::from_millis(config.gateway.reload.debounce_ms as u64).max(MIN_POLL);
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = shutdown.wait_for(|closing| *closing) => return,
                }
                // The mode in force now, not before the sleep (and again
                // before applying: an edit may have turned reloads off).
                if gw.config().gateway.reload.mode == ReloadConfigMode::Off {
                    continue;
                }
                let Ok(text) = tokio::fs::read_to_string(&path).await else {
                    continue;
                };
                let hash = hash_text(&text);
                if gw.configs.attempted_hash().as_deref() == Some(hash.as_str()) {
                    continue;
                }
                tokio::time::sleep(interval).await;
                let settled = tokio::fs::read_to_string(&path).await.ok();
                if settled.as_deref() != Some(text.as_str()) {
                    continue;
                }
                let _guard = gw.configs.lock().await;
                let off = gw.config().gateway.reload.mode == ReloadConfigMode::Off;
                if !off && gw.configs.attempted_hash().as_deref() != Some(hash.as_str()) {
                    let _ = gw.apply_config_locked(&text).await;
                }
            }
        }))
    }
}

impl Gateway {
    /// In a cluster: when another gateway applies a config (its
    /// `config.changed` crosses the bus), this one reads its own file now
    /// rather than at its next look. Gateways that share the file apply
    /// the change together, each validating it itself; each reports what
    /// it runs on in `health.cluster.members` (`configHash`,
    /// `configError`).
    pub fn spawn_config_follower(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        self.rt.membership.as_ref()?;
        let path = self.configs.path()?.to_path_buf();
        let mut events = self.rt.bus.subscribe();
        let gw = Arc::clone(self);
        Some(tokio::spawn(async move {
            loop {
                let announced = match events.recv().await {
                    Ok(event) if event.kind == Kind::Core(EventKind::ConfigChanged) => {
                        serde_json::from_str::<ConfigChangedEvent>(&event.data)
                            .map(|e| e.hash)
                            .ok()
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => None,
                    Err(RecvError::Closed) => return,
                };
                // Its own announcements carry the hash it has.
                let Some(hash) = announced else { continue };
                if gw.configs.attempted_hash().as_deref() == Some(hash.as_str())
                    || gw.config().gateway.reload.mode == ReloadConfigMode::Off
                {
                    continue;
                }
                let Ok(text) = tokio::fs::read_to_string(&path).await else {
                    continue;
                };
                // A file being written now is left to the watcher, which
                // applies it once it stays the same.
                tokio::time::sleep(MIN_POLL).await;
                if tokio::fs::read_to_string(&path).await.ok().as_deref() != Some(text.as_str()) {
                    continue;
                }
                // Applied only when this gateway's file changed: gateways
                // with files of their own do not echo each other.
                let _guard = gw.configs.lock().await;
                if gw.configs.attempted_hash().as_deref() != Some(hash_text(&text).as_str()) {
                    tracing::info!(
                        "config: another gateway applied a new config; reading this one's file now"
                    );
                    let _ = gw.apply_config_locked(&text).await;
                }
            }
        }))
    }
}

pub(super) fn reload_result(
    result: Result<Applied, ConfigError>,
    hash: Option<String>,
) -> ConfigReloadResult {
    match result {
        Ok(applied) => ConfigReloadResult {
            ok: true,
            hash: applied.hash,
            changed: applied.changed,
            restart_required: applied.restart_required,
            error: None,
            errors: Vec::new(),
        },
        Err(error) => ConfigReloadResult {
            ok: false,
            hash,
            changed: Vec::new(),
            restart_required: Vec::new(),
            error: Some(error.summary()),
            errors: error.problems(),
        },
    }
}
