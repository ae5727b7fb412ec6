//! The runtime state of one gateway and its method handlers.

pub mod chat;
mod config_rpc;
mod connect;
mod connections;
mod handlers;
mod lifecycle;
mod maintenance;
mod pairing_remote;
mod plugin_calls;
mod presence_remote;
mod reload;
mod sessions;
mod status;
mod tools;

pub use crate::config::{Applied, ConfigService};
pub use crate::limiter::{client_key, ClientKey, FailureLimiter, Limited};
pub use connect::{
    credential_grants, credential_matches, granted_scopes, revalidate, within_ceiling,
};
pub use connections::{ConnectionSlot, Connections};
pub use lifecycle::Running;

use crate::config::{Config, LoadOptions, Loaded};
use crate::health::HealthService;
use crate::protocol::types::{
    AuthConfigMode, BindInfo, GatewayClosingEvent, GatewayState, TickEvent,
};
use crate::protocol::{ErrorCode, Event, RpcError};
use crate::runtime::{Runtime, Shutdown};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Facts fixed when the gateway starts.
pub struct RuntimeInfo {
    pub started: Instant,
    pub config_path: Option<PathBuf>,
    /// Set once the listener is bound.
    pub bind: OnceLock<BindInfo>,
}

/// Applies a new log filter directive (config `logging.level`).
pub type LogControl = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

pub struct Gateway {
    pub configs: ConfigService,
    /// The handles the services share.
    pub rt: Runtime,
    pub turns: Arc<crate::agent::Turns>,
    pub cron: Arc<crate::cron::CronService>,
    pub nodes: Arc<crate::nodes::NodeService>,
    pub devices: Arc<crate::devices::DeviceService>,
    pub exec: crate::exec::Exec,
    pub channels: Arc<crate::channels::ChannelManager>,
    pub plugins: Arc<crate::plugins::PluginService>,
    pub heartbeat: Arc<crate::heartbeat::HeartbeatService>,
    /// The local Tailscale daemon (publishing, Serve identities).
    pub tailscale: crate::tailscale::Tailscale,
    /// How the periodic upkeep tasks last ran.
    pub maintenance: maintenance::MaintenanceLog,
    pub info: RuntimeInfo,
    pub connections: Connections,
    pub auth_failures: FailureLimiter,
    shutdown: watch::Sender<bool>,
    closing: AtomicBool,
    log_control: OnceLock<LogControl>,
    log_tail: OnceLock<Arc<crate::logs::LogTail>>,
}

/// Why a credential was not accepted.
pub enum AuthRefused {
    /// Too many failures lately; the error says for how long.
    Limited(RpcError),
    Invalid,
}

impl Gateway {
    /// `options` are those `loaded` came from; reloads reuse them.
    pub fn new(
        loaded: Loaded,
        options: LoadOptions,
        state_dir: PathBuf,
        backend: crate::cluster::Backend,
    ) -> Arc<Gateway> {
        let started = Instant::now();
        let config_path = loaded.path.clone();
        let configs = ConfigService::new(loaded, options);
        let config = configs.current();
        let bus = backend.bus;
        let health =
            HealthService::new(started, bus.clone(), configs.health(), config.cron.enabled);
        let metrics = crate::metrics::Metrics::new();
        metrics.set_enabled(config.gateway.http.metrics.enabled);
        let started_at_ms = now_ms();
        metrics.set_start_time(started_at_ms / 1000);
        let shutdown = watch::channel(false).0;
        let rt = Runtime {
            config: configs.watch(),
            presence: Arc::new(crate::presence::Presence::new(
                bus.clone(),
                health.presence_version(),
            )),
            bus,
            stores: backend.stores,
            health: Arc::new(health),
            metrics: Arc::new(metrics),
            http: crate::agent::http_client(),
            shutdown: Shutdown::new(shutdown.subscribe()),
            started_at_ms,
            state_dir: Arc::new(state_dir),
            membership: backend.membership,
        };
        let turns = Arc::new(crate::agent::Turns::new(rt.clone()));
        crate::agent::remote::serve(&rt, &turns);
        let channels = crate::channels::ChannelManager::new(rt.clone(), Arc::clone(&turns));
        let cron = crate::cron::CronService::new(rt.clone(), Arc::clone(&turns));
        let nodes = crate::nodes::NodeService::new(rt.clone());
        let devices = Arc::new(crate::devices::DeviceService::new(rt.clone()));
        let exec = crate::exec::Exec::new(rt.clone(), Arc::clone(&nodes));
        let plugins = crate::plugins::PluginService::new(rt.clone());
        let heartbeat = crate::heartbeat::HeartbeatService::new(
            rt.clone(),
            Arc::clone(&turns),
            Arc::clone(&channels),
        );
        let gateway = Arc::new(Gateway {
            configs,
            rt,
            turns,
            cron,
            nodes,
            devices,
            exec,
            channels,
            plugins,
            heartbeat,
            tailscale: crate::tailscale::Tailscale::default(),
            maintenance: maintenance::MaintenanceLog::default(),
            info: RuntimeInfo {
                started,
                config_path,
                bind: OnceLock::new(),
            },
            connections: Connections::default(),
            auth_failures: FailureLimiter::new(Duration::from_secs(60)),
            shutdown,
            closing: AtomicBool::new(false),
            log_control: OnceLock::new(),
            log_tail: OnceLock::new(),
        });
        let tools: Weak<dyn crate::agent::ToolRunner> = Arc::downgrade(&gateway) as _;
        gateway.turns.set_tools(tools);
        let callbacks: Weak<dyn crate::plugins::Callbacks> = Arc::downgrade(&gateway) as _;
        gateway.plugins.set_callbacks(callbacks);
        let plugins: Arc<dyn crate::channels::PluginChannels> = gateway.plugins.clone();
        gateway.channels.set_plugins(Arc::downgrade(&plugins));
        gateway
    }

    pub fn config(&self) -> Arc<Config> {
        self.configs.current()
    }

    /// Lets reloads change the log filter.
    pub fn set_log_control(&self, control: LogControl) {
        let _ = self.log_control.set(control);
    }

    /// Gives logs.tail the log lines this process keeps.
    pub fn set_log_tail(&self, tail: Arc<crate::logs::LogTail>) {
        let _ = self.log_tail.set(tail);
    }

    pub fn log_tail(&self) -> Option<&crate::logs::LogTail> {
        self.log_tail.get().map(|t| &**t)
    }

    /// Starts the drain: health turns to draining, every connected client
    /// gets gateway.closing, then the connections wind down.
    pub fn begin_shutdown(&self, reason: &str, restart_expected_ms: Option<u64>) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.rt.health.set_state(GatewayState::Draining);
        self.rt
            .bus
            .publish(Event::GatewayClosing(GatewayClosingEvent {
                reason: reason.to_string(),
                restart_expected_ms,
            }));
        // Signalled after the events are on the bus, so a connection that
        // sees the signal finds gateway.closing already queued for it.
        self.shutdown.send_replace(true);
    }

    /// Refuses an authentication attempt from `ip` while it, or everyone
    /// together, has failed too often in the last minute.
    fn check_auth_limit(&self, ip: std::net::IpAddr) -> Result<(), RpcError> {
        let auth = &self.config().gateway.auth;
        self.auth_failures
            .check(
                ip,
                auth.max_failures_per_minute.get() as usize,
                auth.max_failures_per_minute_total.get() as usize,
            )
            .map_err(|limited| {
                let whom = if limited.global {
                    "too many failed authentication attempts from all addresses; try again later"
                } else {
                    "too many failed authentication attempts from this address"
                };
                RpcError::new(ErrorCode::RateLimited, whom).with_retry_after(limited.retry_after_ms)
            })
    }

    /// Lets a credential check through the failed-auth limiter. A valid
    /// credential that cannot be guessed (a token) passes even while the
    /// limiter is closed, so other clients' failures never lock the owner
    /// out; a guessable one (a password) is only accepted while it is
    /// open. Every invalid credential is counted.
    pub fn judge_credential(
        &self,
        ip: std::net::IpAddr,
        valid: bool,
        guessable: bool,
    ) -> Result<(), AuthRefused> {
        if valid && !guessable {
            return Ok(());
        }
        self.check_auth_limit(ip).map_err(AuthRefused::Limited)?;
        if valid {
            Ok(())
        } else {
            self.record_auth_failure(ip);
            Err(AuthRefused::Invalid)
        }
    }

    /// Checks a bearer credential (HTTP routes) against the gateway's
    /// token or password, under the limiter.
    pub fn check_bearer(&self, ip: std::net::IpAddr, presented: &str) -> Result<(), AuthRefused> {
        let auth = &self.config().gateway.auth;
        let valid = credential_matches(auth, presented);
        self.judge_credential(ip, valid, auth.mode == AuthConfigMode::Password)
    }

    fn record_auth_failure(&self, ip: std::net::IpAddr) {
        let total = self
            .config()
            .gateway
            .auth
            .max_failures_per_minute_total
            .get() as usize;
        self.auth_failures.record_failure(ip, total);
    }

    /// Reads a request body within the configured size and time limits.
    pub async fn request_body(
        &self,
        body: axum::body::Body,
    ) -> Result<axum::body::Bytes, crate::bounded::BodyError> {
        let limits = self.config().gateway.limits.clone();
        crate::bounded::request_body(
            body,
            limits.max_payload_bytes as usize,
            Duration::from_millis(limits.http_body_timeout_ms as u64),
        )
        .await
    }

    pub fn is_draining(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Publishes `tick` every tickIntervalMs until shutdown.
    pub fn spawn_ticker(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let gw = Arc::clone(self);
        let period = Duration::from_millis(gw.config().gateway.tick_interval_ms as u64);
        tokio::spawn(async move {
            let mut interval =
                tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut shutdown = gw.shutdown_signal();
            loop {
                tokio::select! {
                    _ = interval.tick() => gw.rt.bus.publish(Event::Tick(TickEvent { ts: now_ms() })),
                    _ = async { let _ = shutdown.wait_for(|closing| *closing).await; } => return,
                }
            }
        })
    }
}

pub use crate::clock::now_ms;
