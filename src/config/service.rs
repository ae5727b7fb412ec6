//! The configuration in force, and how a new file content replaces it:
//! hot keys apply at once, restart keys keep their running value until
//! the next start, and an invalid content never replaces anything.

use super::follow::{Follower, Followers, Version};
use super::meta::{reload_class, Reload};
use super::{
    changed_pointers, dotted, load_text, set_pointer, validate, Config, ConfigError, Layers,
    LoadOptions, Loaded,
};
use crate::protocol::types::{ConfigHealth, ConfigOrigin};
use arc_swap::ArcSwap;
use serde_json::Value;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub struct ConfigService {
    current: Arc<ArcSwap<Config>>,
    /// Each configuration put in force, for the services that follow it.
    versions: tokio::sync::watch::Sender<Version>,
    followers: Arc<Followers>,
    state: Mutex<State>,
    options: LoadOptions,
    /// Serializes reloads and edits.
    apply: tokio::sync::Mutex<()>,
}

struct State {
    /// The effective configuration in force.
    running: Value,
    /// The effective configuration of the last valid file content; differs
    /// from `running` in restart keys not yet applied.
    file: Value,
    /// Hash of the file content in force.
    hash: Option<String>,
    /// Hash of the last file content read, valid or not.
    attempted: Option<String>,
    /// Where the values of `file` came from.
    layers: Layers,
    health: ConfigHealth,
}

/// What applying a new file content did.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    pub hash: Option<String>,
    /// Dotted keys whose value in the file changed.
    pub changed: Vec<String>,
    /// The subset of `changed` that waits for a restart.
    pub restart_required: Vec<String>,
}

impl ConfigService {
    pub fn new(loaded: Loaded, options: LoadOptions) -> Self {
        let health = ConfigHealth {
            hash: loaded.file_hash.clone(),
            reload_ok: true,
            last_reload_at_ms: None,
            last_error: None,
            errors: Vec::new(),
            restart_required: Vec::new(),
        };
        let config = Arc::new(loaded.config);
        ConfigService {
            current: Arc::new(ArcSwap::new(Arc::clone(&config))),
            versions: tokio::sync::watch::channel(Version { number: 0, config }).0,
            followers: Arc::default(),
            state: Mutex::new(State {
                running: loaded.effective.clone(),
                file: loaded.effective,
                hash: loaded.file_hash.clone(),
                attempted: loaded.file_hash,
                layers: loaded.layers,
                health,
            }),
            options,
            apply: tokio::sync::Mutex::new(()),
        }
    }

    pub fn current(&self) -> Arc<Config> {
        self.current.load_full()
    }

    /// A read-only handle on the configuration in force, for services.
    pub fn watch(&self) -> ConfigWatch {
        ConfigWatch {
            current: Arc::clone(&self.current),
            versions: self.versions.subscribe(),
            followers: Arc::clone(&self.followers),
        }
    }

    /// Waits until every follower has applied the configuration in force;
    /// false when one has not within `limit`.
    pub async fn settled(&self, limit: std::time::Duration) -> bool {
        let number = self.versions.borrow().number;
        self.followers.settled(number, limit).await
    }

    pub fn path(&self) -> Option<&Path> {
        self.options.path.as_deref()
    }

    pub fn options(&self) -> &LoadOptions {
        &self.options
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("config state lock")
    }

    pub fn hash(&self) -> Option<String> {
        self.state().hash.clone()
    }

    /// Hash of the last file content read for a reload, valid or not.
    pub fn attempted_hash(&self) -> Option<String> {
        self.state().attempted.clone()
    }

    pub fn running(&self) -> Value {
        self.state().running.clone()
    }

    /// Where each value in force at or under `pointer` came from.
    pub fn origins(&self, pointer: &str) -> Vec<(String, ConfigOrigin)> {
        let state = self.state();
        state.layers.origins(&state.running, pointer)
    }

    pub fn health(&self) -> ConfigHealth {
        self.state().health.clone()
    }

    /// Held while a reload or an edit runs.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.apply.lock().await
    }

    /// Validates `text` as the new file content and, if valid, puts its
    /// hot keys in force. Call with the lock held.
    pub fn apply_text(&self, text: &str, now_ms: u64) -> Result<Applied, ConfigError> {
        let hash = crate::config::hash_text(text);
        let result = self.try_apply(text);
        let mut state = self.state();
        state.attempted = Some(hash);
        state.health.last_reload_at_ms = Some(now_ms);
        match &result {
            Ok(applied) => {
                state.health.reload_ok = true;
                state.health.last_error = None;
                state.health.errors = Vec::new();
                state.health.hash = applied.hash.clone();
            }
            Err(e) => {
                state.health.reload_ok = false;
                state.health.last_error = Some(e.summary());
                state.health.errors = e.problems();
            }
        }
        result
    }

    fn try_apply(&self, text: &str) -> Result<Applied, ConfigError> {
        let candidate = load_text(&self.options, Some(text))?;
        for moved in &candidate.migrated {
            tracing::warn!("config: {moved}");
        }
        let mut state = self.state();
        let changed = changed_pointers(&state.file, &candidate.effective);
        let pending: Vec<String> = changed_pointers(&state.running, &candidate.effective)
            .into_iter()
            .filter(|p| reload_class(p) == Reload::Restart)
            .collect();
        let mut next = candidate.effective.clone();
        for pointer in &pending {
            let running = state
                .running
                .pointer(pointer)
                .cloned()
                .unwrap_or(Value::Null);
            set_pointer(&mut next, pointer, running);
        }
        let config = validate(&next).map_err(|problems| {
            ConfigError::invalid(
                problems
                    .into_iter()
                    .map(|invalid| {
                        let mut problem = invalid.unplaced();
                        problem.message.push_str(
                            " (with restart-only keys kept at their running values until a restart)",
                        );
                        problem.source = self.path().map(|p| p.display().to_string());
                        problem
                    })
                    .collect(),
            )
        })?;
        let config = Arc::new(config);
        self.current.store(Arc::clone(&config));
        self.versions.send_modify(|version| {
            version.number += 1;
            version.config = config;
        });
        state.running = next;
        state.file = candidate.effective;
        state.layers = candidate.layers;
        state.hash = candidate.file_hash.clone();
        state.health.restart_required = pending.iter().map(|p| dotted(p)).collect();
        Ok(Applied {
            hash: candidate.file_hash,
            restart_required: changed
                .iter()
                .filter(|p| reload_class(p) == Reload::Restart)
                .map(|p| dotted(p))
                .collect(),
            changed: changed.iter().map(|p| dotted(p)).collect(),
        })
    }

    /// Records a file that could not be read at all.
    pub fn record_unreadable(&self, error: &ConfigError, now_ms: u64) {
        let mut state = self.state();
        state.attempted = None;
        state.health.last_reload_at_ms = Some(now_ms);
        state.health.reload_ok = false;
        state.health.last_error = Some(error.summary());
        state.health.errors = error.problems();
    }
}

/// The configuration in force, as a service sees it: read it at any time
/// (lock-free), or follow each new one as it is put in force.
#[derive(Clone)]
pub struct ConfigWatch {
    current: Arc<ArcSwap<Config>>,
    versions: tokio::sync::watch::Receiver<Version>,
    followers: Arc<Followers>,
}

impl ConfigWatch {
    /// A handle on a fixed configuration (tests, tools).
    pub fn fixed(config: Config) -> Self {
        let config = Arc::new(config);
        ConfigWatch {
            current: Arc::new(ArcSwap::new(Arc::clone(&config))),
            versions: tokio::sync::watch::channel(Version { number: 0, config }).1,
            followers: Arc::default(),
        }
    }

    pub fn get(&self) -> Arc<Config> {
        self.current.load_full()
    }

    /// Whether `seen` is the config in force (cheaper than `get`).
    pub fn is_current(&self, seen: &Arc<Config>) -> bool {
        Arc::ptr_eq(&self.current.load(), seen)
    }

    /// Follows every configuration put in force from now on: a reload
    /// announces a change only once each follower has applied it.
    pub fn follow(&self) -> Follower {
        Follower::new(self.versions.clone(), Arc::clone(&self.followers))
    }
}
