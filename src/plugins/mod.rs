//! Out-of-process plugins: the gateway starts one process per
//! `[plugins.<name>]`, supervises it (restart with backoff, stop on
//! removal), and exposes the methods and events its manifest declares as
//! `<name>.<method>`, holding every call, result and event to the
//! manifest's schemas. A plugin never shares the gateway's process,
//! environment or credential. See the README's Plugins section for the
//! protocol.

mod link;
mod manifest;

pub use link::Link;
pub use manifest::{tool_method, tool_name, Manifest, MethodDef, PLUGIN_PROTOCOL};

use crate::channels::{BoxFuture, Opened, PluginAccount, PluginChannels};
use crate::protocol::types::{
    ConfigPluginsKey, PluginConfig, PluginHealth, PluginState, PluginStatus, Scope,
};
use crate::protocol::{Event, Method, RpcError};
use crate::runtime::Runtime;
use link::{unavailable, Ended};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The first restart waits this long; each failure in a row doubles it.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run this long forgives the failures before it.
const STABLE_RUN: Duration = Duration::from_secs(60);

/// The gateway methods plugins may call back, as the composition root
/// provides them.
pub trait Callbacks: Send + Sync {
    /// Runs `method` for `plugin` (whose grants allow it): checks the
    /// params and answers with the result's JSON.
    fn call<'a>(
        &'a self,
        plugin: &'a str,
        method: Method,
        params: Value,
    ) -> BoxFuture<'a, Result<String, RpcError>>;
}

/// How often a channel account waiting for its plugin looks it up again
/// (the plugin may have been replaced by a config change).
const LOOKUP_AGAIN: Duration = Duration::from_secs(1);

/// One configured plugin and its supervisor.
struct Plugin {
    config: PluginConfig,
    status: Mutex<PluginStatus>,
    /// The running process, when it runs.
    link: watch::Sender<Option<Arc<Link>>>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

pub struct PluginService {
    rt: Runtime,
    plugins: Mutex<BTreeMap<String, Arc<Plugin>>>,
    gateway: OnceLock<Weak<dyn Callbacks>>,
    /// Held from reading the statuses to recording them in health, so a
    /// report read before a change cannot land after that change's.
    reporting: Mutex<()>,
}

/// What the running plugins add to the protocol.
#[derive(Default)]
pub struct Surface {
    pub methods: Vec<String>,
    pub events: Vec<String>,
    pub scopes: std::collections::HashMap<String, Scope>,
}

/// A call to a plugin method the caller may make once its scope allows.
pub struct Call {
    link: Arc<Link>,
    method: Arc<MethodDef>,
    timeout: Duration,
}

impl Call {
    pub fn scope(&self) -> Scope {
        self.method.scope
    }

    pub fn name(&self) -> &str {
        &self.method.name
    }

    pub async fn run(self, params: Value) -> Result<Value, RpcError> {
        self.link.call(&self.method, params, self.timeout).await
    }
}

/// A plugin that serves HTTP, for one request.
pub struct HttpTarget {
    pub scope: Scope,
    link: Arc<Link>,
    timeout: Duration,
}

impl HttpTarget {
    /// Forwards a `PluginHttpRequest`; the answer is a checked
    /// `PluginHttpResponse`.
    pub async fn forward(&self, request: Value) -> Result<Value, RpcError> {
        self.link.http(request, self.timeout).await
    }
}

impl PluginService {
    pub fn new(rt: Runtime) -> Arc<PluginService> {
        Arc::new(PluginService {
            rt,
            plugins: Mutex::default(),
            gateway: OnceLock::new(),
            reporting: Mutex::default(),
        })
    }

    /// Lets plugins call the gateway methods their grants name (set
    /// once, by the composition root).
    pub fn set_callbacks(&self, gateway: Weak<dyn Callbacks>) {
        let _ = self.gateway.set(gateway);
    }

    /// Starts the configured plugins, without waiting for any of them,
    /// and follows the config: a plugin added, removed or changed is
    /// started, stopped or restarted alone.
    pub fn start(self: &Arc<Self>) -> JoinHandle<()> {
        let mut follower = self.rt.config.follow();
        self.sync(&self.rt.config().plugins);
        let service = Arc::clone(self);
        tokio::spawn(async move {
            let shutdown = service.rt.shutdown.clone();
            loop {
                let change = tokio::select! {
                    change = follower.next() => change,
                    _ = shutdown.wait() => return,
                };
                let Some(change) = change else { return };
                if change.before.plugins != change.after.plugins {
                    service.sync(&change.after.plugins);
                }
            }
        })
    }

    fn sync(self: &Arc<Self>, wanted: &HashMap<ConfigPluginsKey, PluginConfig>) {
        let mut plugins = self.plugins.lock().expect("plugins lock");
        let gone: Vec<String> = plugins
            .iter()
            .filter(|(name, p)| {
                wanted
                    .iter()
                    .find(|(k, _)| k.as_str() == name.as_str())
                    .is_none_or(|(_, config)| *config != p.config)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(plugin) = plugins.remove(&name) {
                plugin.stop.send_replace(true);
            }
        }
        let mut disabled = Vec::new();
        for (name, config) in wanted {
            let name = name.as_str();
            if plugins.contains_key(name) {
                continue;
            }
            let plugin = Arc::new(Plugin {
                config: config.clone(),
                status: Mutex::new(PluginStatus {
                    name: name.to_string(),
                    state: PluginState::Disabled,
                    version: None,
                    pid: None,
                    since_ms: Some(crate::clock::now_ms()),
                    restarts: 0,
                    methods: Vec::new(),
                    events: Vec::new(),
                    last_error: None,
                }),
                link: watch::channel(None).0,
                stop: watch::channel(false).0,
                task: Mutex::default(),
            });
            if config.enabled {
                let task =
                    tokio::spawn(Arc::clone(self).supervise(name.to_string(), Arc::clone(&plugin)));
                *plugin.task.lock().expect("task lock") = Some(task);
            } else {
                disabled.push(Arc::clone(&plugin));
            }
            plugins.insert(name.to_string(), plugin);
        }
        // Publishing reads the table: after the lock is released.
        drop(plugins);
        for plugin in disabled {
            self.publish(&plugin);
        }
        self.report_health();
    }

    /// Runs the plugin until it is stopped, restarting it with backoff
    /// each time it fails.
    async fn supervise(self: Arc<Self>, name: String, plugin: Arc<Plugin>) {
        let mut stop = plugin.stop.subscribe();
        let mut failures: u32 = 0;
        loop {
            self.set_state(&plugin, PluginState::Starting, None, None);
            let started = Instant::now();
            let gateway = self.gateway.get();
            let ended = link::run(&name, &plugin.config, &self.rt.bus, gateway, &mut stop, |link| {
                plugin.link.send_replace(Some(Arc::clone(&link)));
                self.set_state(&plugin, PluginState::Running, Some(&link), None);
                tracing::info!(plugin = %name, pid = link.pid, version = %link.manifest.version, "plugin running");
            })
            .await;
            plugin.link.send_replace(None);
            let why = match ended {
                Ended::Stopped => {
                    self.set_state(&plugin, PluginState::Stopped, None, None);
                    return;
                }
                Ended::Failed(why) => why,
            };
            tracing::warn!(plugin = %name, "plugin failed: {why}");
            if started.elapsed() >= STABLE_RUN {
                failures = 0;
            }
            failures += 1;
            plugin.status.lock().expect("status lock").restarts += 1;
            self.set_state(&plugin, PluginState::Failed, None, Some(why));
            let backoff = FIRST_BACKOFF
                .saturating_mul(1 << (failures - 1).min(16))
                .min(MAX_BACKOFF);
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = link::stopped(&mut stop) => {
                    self.set_state(&plugin, PluginState::Stopped, None, None);
                    return;
                }
            }
        }
    }

    fn set_state(
        &self,
        plugin: &Plugin,
        state: PluginState,
        link: Option<&Link>,
        error: Option<String>,
    ) {
        {
            let mut status = plugin.status.lock().expect("status lock");
            status.state = state;
            status.since_ms = Some(crate::clock::now_ms());
            status.pid = link.and_then(|l| l.pid).map(u64::from);
            status.methods = link
                .map(|l| l.manifest.methods.keys().cloned().collect())
                .unwrap_or_default();
            status.events = link
                .map(|l| {
                    l.manifest
                        .events
                        .values()
                        .map(|e| e.kind.name.clone())
                        .collect()
                })
                .unwrap_or_default();
            if let Some(l) = link {
                status.version = Some(l.manifest.version.clone());
            }
            if error.is_some() {
                status.last_error = error;
            }
        }
        self.publish(plugin);
    }

    fn publish(&self, plugin: &Plugin) {
        let status = plugin.status.lock().expect("status lock").clone();
        self.rt.bus.publish(Event::PluginChanged(status));
        self.report_health();
    }

    /// Puts every plugin's state in the health snapshot.
    fn report_health(&self) {
        let _reporting = self.reporting.lock().expect("reporting lock");
        let plugins = self
            .statuses()
            .into_iter()
            .map(|s| {
                let health = PluginHealth {
                    state: s.state,
                    restarts: s.restarts,
                    last_error: s.last_error,
                };
                (s.name, health)
            })
            .collect();
        self.rt.health.set_plugins(plugins);
    }

    /// Where a method that is not the gateway's own goes: None when its
    /// first segment names no configured plugin, else the call or why it
    /// cannot be made now.
    pub fn resolve(&self, method: &str) -> Option<Result<Call, RpcError>> {
        let (prefix, _) = method.split_once('.')?;
        let plugin = Arc::clone(self.plugins.lock().expect("plugins lock").get(prefix)?);
        let link = plugin.link.borrow().clone();
        let Some(link) = link else {
            let status = plugin.status.lock().expect("status lock").clone();
            let why = match status.state {
                PluginState::Disabled => {
                    format!("plugin {prefix} is disabled (plugins.{prefix}.enabled)")
                }
                PluginState::Failed => format!(
                    "plugin {prefix} failed and is being restarted: {}",
                    status.last_error.unwrap_or_default()
                ),
                _ => format!("plugin {prefix} is starting"),
            };
            return Some(Err(unavailable(why)));
        };
        let Some(def) = link.manifest.methods.get(method) else {
            return Some(Err(RpcError::method_not_found(method)));
        };
        Some(Ok(Call {
            method: Arc::clone(def),
            timeout: Duration::from_millis(plugin.config.call_timeout_ms as u64),
            link,
        }))
    }

    /// The tools of running plugins that an agent's tools list
    /// (`configured`) names, as (name for the model, description,
    /// parameters schema).
    pub fn tools(&self, configured: &[String]) -> Vec<(String, String, Value)> {
        configured
            .iter()
            .filter_map(|method| match self.resolve(method) {
                Some(Ok(call)) if call.method.tool => Some((
                    tool_name(method),
                    call.method.summary.clone(),
                    call.method.params_schema.clone(),
                )),
                _ => None,
            })
            .collect()
    }

    /// Runs a plugin tool for an agent, by its name for the model; the
    /// error is shown to the model.
    pub async fn run_tool(&self, tool: &str, arguments: Value) -> Result<Value, String> {
        let method = tool_method(tool);
        match self.resolve(&method) {
            Some(Ok(call)) if call.method.tool => call.run(arguments).await.map_err(|e| e.message),
            Some(Err(e)) => Err(e.message),
            _ => Err(format!("no tool {tool}")),
        }
    }

    /// Where an HTTP request to `/plugins/<name>/…` goes: None when no
    /// running or starting plugin of that name serves HTTP (unknown
    /// plugins included), else the plugin and the scope it needs, or why
    /// it cannot answer now.
    pub fn http_target(&self, name: &str) -> Option<Result<HttpTarget, RpcError>> {
        let plugin = Arc::clone(self.plugins.lock().expect("plugins lock").get(name)?);
        let link = plugin.link.borrow().clone();
        let Some(link) = link else {
            return Some(Err(unavailable(format!("plugin {name} is not running"))));
        };
        let scope = link.manifest.http?;
        Some(Ok(HttpTarget {
            scope,
            timeout: Duration::from_millis(plugin.config.call_timeout_ms as u64),
            link,
        }))
    }

    /// The running process of plugin `name`, once it runs.
    async fn running(&self, name: &str) -> Arc<Link> {
        loop {
            let plugin = self
                .plugins
                .lock()
                .expect("plugins lock")
                .get(name)
                .cloned();
            let Some(plugin) = plugin else {
                tokio::time::sleep(LOOKUP_AGAIN).await;
                continue;
            };
            let mut link = plugin.link.subscribe();
            let waited = tokio::time::timeout(LOOKUP_AGAIN, link.wait_for(Option::is_some)).await;
            if let Ok(Ok(running)) = waited {
                if let Some(link) = running.clone() {
                    return link;
                }
            }
        }
    }

    /// Every plugin, by name.
    pub fn statuses(&self) -> Vec<PluginStatus> {
        let plugins = self.plugins.lock().expect("plugins lock");
        plugins
            .values()
            .map(|p| p.status.lock().expect("status lock").clone())
            .collect()
    }

    /// The methods and events of the running plugins, for the hello:
    /// their names, and the scope each needs.
    pub fn surface(&self) -> Surface {
        let links: Vec<Arc<Link>> = {
            let plugins = self.plugins.lock().expect("plugins lock");
            plugins
                .values()
                .filter_map(|p| p.link.borrow().clone())
                .collect()
        };
        let mut surface = Surface::default();
        for link in links {
            for (name, def) in &link.manifest.methods {
                surface.methods.push(name.clone());
                surface.scopes.insert(name.clone(), def.scope);
            }
            for def in link.manifest.events.values() {
                surface.events.push(def.kind.name.clone());
                surface.scopes.insert(def.kind.name.clone(), def.kind.scope);
            }
        }
        surface
    }

    /// Stops every plugin and waits (boundedly) for their processes.
    pub async fn stop_all(&self) {
        let plugins: Vec<Arc<Plugin>> = {
            let mut map = self.plugins.lock().expect("plugins lock");
            std::mem::take(&mut *map).into_values().collect()
        };
        for plugin in &plugins {
            plugin.stop.send_replace(true);
        }
        for plugin in plugins {
            let task = plugin.task.lock().expect("task lock").take();
            if let Some(task) = task {
                let _ = tokio::time::timeout(Duration::from_secs(6), task).await;
            }
        }
    }
}

impl PluginChannels for PluginService {
    fn open<'a>(&'a self, account: &'a PluginAccount) -> BoxFuture<'a, Result<Opened, String>> {
        Box::pin(async move {
            let link = self.running(&account.plugin).await;
            let Some(def) = link.manifest.channels.get(&account.kind) else {
                return Err(format!(
                    "plugin {} provides no channel {}",
                    account.plugin, account.kind
                ));
            };
            let max_chars = def.max_chars;
            let inbound = link.open_account(&account.kind, &account.id);
            Ok(Opened {
                inbound,
                outbox: link,
                max_chars,
            })
        })
    }
}
