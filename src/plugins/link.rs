//! One run of a plugin process: start it with a clean environment, read
//! its manifest, answer with its init, then carry calls to it and events
//! from it until it exits or is stopped.

use super::manifest::{Manifest, MethodDef, PLUGIN_PROTOCOL};
use super::Callbacks;
use crate::bus::Bus;
use crate::channels::Outbox;
use crate::protocol::types::{PluginConfig, PluginInbound, PluginInit, PluginSend};
use crate::protocol::{error_frame, result_frame, ErrorCode, Method, RpcError, Schemas};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

/// The longest line a plugin may write (a frame); a longer one stops it.
const MAX_LINE: usize = 4 * 1024 * 1024;
/// Frames waiting to be written to a plugin.
const WRITE_QUEUE: usize = 1024;
/// How much nicer than the gateway plugins run (setpriority).
const PLUGIN_NICENESS: libc::c_int = 10;
/// The longest stderr line logged; the rest is cut.
const MAX_LOG_LINE: usize = 1024;

type Answer = Result<Value, RpcError>;

/// The `$defs` entry a plugin's answer to an HTTP request must match.
const HTTP_RESPONSE_DEF: &str = "PluginHttpResponse";
/// The `$defs` entries of a channel message and a call to the gateway.
const INBOUND_DEF: &str = "PluginInbound";
const CALLBACK_DEF: &str = "PluginGatewayRequest";
/// Messages of one channel account waiting for the pipeline.
const INBOUND_QUEUE: usize = 64;

/// Where a channel account's messages go: (kind, account id).
type Accounts = HashMap<(String, String), mpsc::Sender<PluginInbound>>;

/// A running plugin as callers reach it.
pub struct Link {
    pub plugin: String,
    pub manifest: Manifest,
    pub pid: Option<u32>,
    tx: mpsc::Sender<String>,
    pending: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    next_id: AtomicU64,
    inflight: Arc<Semaphore>,
    events: Mutex<RateWindow>,
    max_events_per_second: u64,
    call_timeout: Duration,
    accounts: Mutex<Accounts>,
    /// The gateway methods it may call, and the calls it has running.
    grants: Vec<String>,
    callbacks: Arc<Semaphore>,
}

/// Events counted in the current second.
#[derive(Default)]
struct RateWindow {
    second: u64,
    count: u64,
    dropped: u64,
}

/// Removes a call from the pending table when its caller stops waiting,
/// and tells the plugin it may stop working on it.
struct PendingGuard<'a> {
    link: &'a Link,
    id: String,
    answered: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        self.link
            .pending
            .lock()
            .expect("pending lock")
            .remove(&self.id);
        let _ = self
            .link
            .tx
            .try_send(json!({ "cancel": self.id }).to_string());
    }
}

impl Link {
    /// Calls `method` (already found in the manifest and allowed for the
    /// caller): checks the params, waits at most `timeout`, checks the
    /// result.
    pub async fn call(&self, method: &MethodDef, params: Value, timeout: Duration) -> Answer {
        method.check_params(&params)?;
        let request = json!({"method": method.local, "params": params});
        let result = self.request(request, &method.name, timeout).await?;
        method.check_result(&result)?;
        Ok(result)
    }

    /// Forwards an HTTP request (`PluginHttpRequest`); the answer is a
    /// checked `PluginHttpResponse`.
    pub async fn http(&self, request: Value, timeout: Duration) -> Answer {
        let what = format!("an HTTP request to /plugins/{}", self.plugin);
        let response = self
            .request(json!({ "http": request }), &what, timeout)
            .await?;
        if let Err(violations) = Schemas::get().validate(HTTP_RESPONSE_DEF, &response) {
            let v = &violations[0];
            return Err(RpcError::new(
                ErrorCode::InternalError,
                format!(
                    "plugin {} answered {what} with a response that does not match PluginHttpResponse: {} at {}",
                    self.plugin,
                    v.message,
                    if v.pointer.is_empty() { "/" } else { &v.pointer }
                ),
            ));
        }
        Ok(response)
    }

    /// Sends `frame` (given an id) under the in-flight limit and waits at
    /// most `timeout` for its answer; `what` names it in errors.
    async fn request(&self, mut frame: Value, what: &str, timeout: Duration) -> Answer {
        let Ok(_permit) = self.inflight.try_acquire() else {
            return Err(unavailable(format!(
                "plugin {} is busy: too many calls in flight (plugins.{}.maxInflight)",
                self.plugin, self.plugin
            )));
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).to_string();
        frame["id"] = Value::from(id.clone());
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .expect("pending lock")
            .insert(id.clone(), tx);
        let mut guard = PendingGuard {
            link: self,
            id,
            answered: false,
        };
        if self.tx.try_send(frame.to_string()).is_err() {
            return Err(unavailable(format!(
                "plugin {} is not reading its input",
                self.plugin
            )));
        }
        let answer = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => {
                guard.answered = true;
                answer
            }
            Ok(Err(_)) => Err(unavailable(format!(
                "plugin {} stopped during the call",
                self.plugin
            ))),
            Err(_) => Err(RpcError::new(
                ErrorCode::Timeout,
                format!(
                    "plugin {} did not answer {what} within {} ms",
                    self.plugin,
                    timeout.as_millis()
                ),
            )),
        };
        drop(guard);
        answer
    }

    /// A frame the plugin wrote after its manifest.
    fn on_frame(
        &self,
        bus: &Bus,
        gateway: Option<&std::sync::Weak<dyn Callbacks>>,
        line: &str,
    ) -> Result<(), String> {
        let frame: Value = serde_json::from_str(line)
            .map_err(|e| format!("wrote a line that is not JSON: {e}"))?;
        if let Some(local) = frame.get("event").and_then(Value::as_str) {
            self.on_event(bus, local, frame.get("data").unwrap_or(&Value::Null));
            return Ok(());
        }
        if let Some(message) = frame.get("inbound") {
            self.on_inbound(message);
            return Ok(());
        }
        if frame.get("method").is_some() {
            self.on_callback(gateway, frame);
            return Ok(());
        }
        let Some(id) = frame.get("id").and_then(Value::as_str) else {
            return Err("wrote a frame that is neither an answer nor an event".into());
        };
        let answer = if let Some(result) = frame.get("result") {
            Ok(result.clone())
        } else if let Some(error) = frame.get("error") {
            Err(self.plugin_error(error))
        } else {
            return Err(format!("answered {id} with neither result nor error"));
        };
        // An answer nobody waits for (cancelled, timed out) is dropped.
        if let Some(waiter) = self.pending.lock().expect("pending lock").remove(id) {
            let _ = waiter.send(answer);
        }
        Ok(())
    }

    /// An error the plugin answered with: its code if the protocol knows
    /// it, its message bounded, both attributed to the plugin.
    fn plugin_error(&self, error: &Value) -> RpcError {
        let message: String = error["message"]
            .as_str()
            .unwrap_or("no message")
            .chars()
            .take(1000)
            .collect();
        let code = error["code"]
            .as_i64()
            .and_then(|n| ErrorCode::ALL.iter().copied().find(|c| c.code() == n));
        match code {
            Some(code) if code != ErrorCode::InternalError => {
                let mut e = RpcError::new(code, format!("plugin {}: {message}", self.plugin));
                if let Some(data) = error.get("data").filter(|d| !d.is_null()) {
                    e = e.with_data(data.clone());
                }
                e
            }
            _ => RpcError::new(
                ErrorCode::InternalError,
                format!("plugin {} failed: {message}", self.plugin),
            ),
        }
    }

    /// A message one of its channel accounts received: to the account's
    /// pipeline, if the account is configured and running.
    fn on_inbound(&self, message: &Value) {
        if !self.within_rate() {
            return;
        }
        if let Err(violations) = Schemas::get().validate(INBOUND_DEF, message) {
            let v = &violations[0];
            tracing::warn!(plugin = %self.plugin, "dropped a channel message that does not match PluginInbound: {} at {}", v.message, v.pointer);
            return;
        }
        let Ok(message) = serde_json::from_value::<PluginInbound>(message.clone()) else {
            return;
        };
        let key = (message.channel.clone(), message.account.clone());
        let sender = self
            .accounts
            .lock()
            .expect("accounts lock")
            .get(&key)
            .cloned();
        let Some(sender) = sender else {
            tracing::warn!(plugin = %self.plugin, channel = %key.0, account = %key.1, "dropped a message for a channel account that is not configured or not running");
            return;
        };
        if sender.try_send(message).is_err() {
            tracing::warn!(plugin = %self.plugin, channel = %key.0, account = %key.1, "dropped a channel message: the account has too many waiting");
        }
    }

    /// Connects a channel account: its messages go to the returned
    /// receiver until the plugin stops.
    pub fn open_account(&self, kind: &str, account: &str) -> mpsc::Receiver<PluginInbound> {
        let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
        let key = (kind.to_string(), account.to_string());
        self.accounts.lock().expect("accounts lock").insert(key, tx);
        rx
    }

    /// A call to a gateway method: answered (in a task of its own) if the
    /// config grants it, else refused.
    fn on_callback(&self, gateway: Option<&std::sync::Weak<dyn Callbacks>>, frame: Value) {
        let id = frame.get("id").and_then(Value::as_str).map(String::from);
        let refuse = |e: RpcError| {
            let _ = self.tx.try_send(error_frame(id.as_deref(), &e));
        };
        if let Err(violations) = Schemas::get().validate(CALLBACK_DEF, &frame) {
            let v = &violations[0];
            return refuse(RpcError::new(
                ErrorCode::InvalidRequest,
                format!("not a PluginGatewayRequest: {} at {}", v.message, v.pointer),
            ));
        }
        let name = frame["method"].as_str().unwrap_or_default();
        let granted = self.grants.iter().any(|g| g == name);
        let method = Method::from_name(name).filter(|m| *m != Method::Connect);
        let method = match method {
            Some(method) if granted => method,
            _ => {
                return refuse(RpcError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "plugin {} may not call {name} (plugins.{}.grants)",
                        self.plugin, self.plugin
                    ),
                ))
            }
        };
        let Ok(permit) = Arc::clone(&self.callbacks).try_acquire_owned() else {
            return refuse(unavailable(format!(
                "plugin {} has too many calls to the gateway running (plugins.{}.maxInflight)",
                self.plugin, self.plugin
            )));
        };
        let Some(gateway) = gateway.and_then(std::sync::Weak::upgrade) else {
            return refuse(unavailable("the gateway is stopping".into()));
        };
        let id = id.unwrap_or_default();
        let params = frame
            .get("params")
            .cloned()
            .unwrap_or_else(|| Value::Object(Default::default()));
        let tx = self.tx.clone();
        let plugin = self.plugin.clone();
        tokio::spawn(async move {
            let answer = match gateway.call(&plugin, method, params).await {
                Ok(result) => result_frame(&id, &result),
                Err(e) => error_frame(Some(&id), &e),
            };
            drop(permit);
            let _ = tx.send(answer).await;
        });
    }

    fn on_event(&self, bus: &Bus, local: &str, data: &Value) {
        let Some(def) = self.manifest.events.get(local) else {
            tracing::warn!(plugin = %self.plugin, "dropped an event the manifest does not declare: {local:?}");
            return;
        };
        if !self.within_rate() {
            return;
        }
        if let Err(why) = def.check(data) {
            tracing::warn!(plugin = %self.plugin, event = %def.kind.name, "dropped an event that does not match its schema: {why}");
            return;
        }
        bus.publish_plugin(Arc::clone(&def.kind), data.to_string());
    }

    /// Counts an event against maxEventsPerSecond.
    fn within_rate(&self) -> bool {
        let now = crate::clock::now_ms() / 1000;
        let mut window = self.events.lock().expect("rate lock");
        if window.second != now {
            if window.dropped > 0 {
                tracing::warn!(plugin = %self.plugin, dropped = window.dropped, "dropped events and channel messages over maxEventsPerSecond");
            }
            *window = RateWindow {
                second: now,
                ..RateWindow::default()
            };
        }
        window.count += 1;
        if window.count > self.max_events_per_second {
            window.dropped += 1;
            return false;
        }
        true
    }
}

impl Outbox for Link {
    fn send(&self, send: PluginSend) -> crate::channels::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let what = format!("a reply for its channel {}", send.channel);
            self.request(json!({ "send": send }), &what, self.call_timeout)
                .await
                .map(|_| ())
                .map_err(|e| e.message)
        })
    }
}

pub fn unavailable(message: String) -> RpcError {
    RpcError::new(ErrorCode::Unavailable, message).with_retry_after(1000)
}

/// How one run ended.
pub enum Ended {
    /// The gateway stopped it.
    Stopped,
    /// It failed or exited; why.
    Failed(String),
}

/// Starts the plugin, and once it is running hands its link to
/// `running`; returns when it has exited or `stop` is set.
pub async fn run(
    name: &str,
    config: &PluginConfig,
    bus: &Bus,
    gateway: Option<&std::sync::Weak<dyn Callbacks>>,
    stop: &mut watch::Receiver<bool>,
    running: impl FnOnce(Arc<Link>),
) -> Ended {
    // fork and exec block; off the workers, so starting many plugins
    // does not hold up requests.
    let spawned = tokio::task::spawn_blocking({
        let config = config.clone();
        move || spawn(&config)
    })
    .await;
    let mut child = match spawned {
        Ok(Ok(child)) => child,
        Ok(Err(e)) => {
            return Ended::Failed(format!("cannot start {}: {e}", config.command.as_str()))
        }
        Err(e) => return Ended::Failed(format!("cannot start {}: {e}", config.command.as_str())),
    };
    let pid = child.id();
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Ended::Failed("cannot open the plugin's stdio".into());
    };
    tokio::spawn(log_stderr(name.to_string(), stderr));
    let mut lines = BufReader::new(stdout);
    let mut buf = Vec::new();
    let start = Duration::from_millis(config.start_timeout_ms as u64);
    let first = tokio::select! {
        line = tokio::time::timeout(start, read_line(&mut lines, &mut buf)) => line,
        _ = stopped(stop) => return stop_child(child).await,
    };
    let manifest = match first {
        Err(_) => {
            return fail(
                child,
                format!("wrote no manifest within {} ms", start.as_millis()),
            )
            .await
        }
        Ok(Err(e)) => return fail(child, e).await,
        Ok(Ok(None)) => {
            let why = exit_reason(&mut child).await;
            return fail(child, why).await;
        }
        Ok(Ok(Some(line))) => match serde_json::from_str::<Value>(&line)
            .map_err(|e| format!("the manifest is not JSON: {e}"))
            .and_then(|value| Manifest::parse(name, &value))
        {
            Ok(m) => m,
            Err(e) => return fail(child, e).await,
        },
    };
    if let Err(e) = manifest.check_config(name, config) {
        return fail(child, e).await;
    }
    let channels = config
        .channels
        .iter()
        .map(|(kind, accounts)| {
            let enabled = accounts
                .iter()
                .filter(|(_, a)| a.enabled)
                .map(|(id, a)| (id.to_string(), a.config.clone()))
                .collect();
            (kind.to_string(), enabled)
        })
        .collect();
    let init = PluginInit {
        protocol: std::num::NonZeroU64::new(PLUGIN_PROTOCOL).expect("protocol 1 or later"),
        name: name.to_string(),
        config: config.config.clone(),
        channels,
    };
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    let init = serde_json::to_string(&init).expect("init is JSON");
    let _ = tx.try_send(init);
    let writer = tokio::spawn(write_lines(stdin, rx));
    let link = Arc::new(Link {
        plugin: name.to_string(),
        manifest,
        pid,
        tx,
        pending: Mutex::default(),
        next_id: AtomicU64::new(1),
        inflight: Arc::new(Semaphore::new(config.max_inflight.get() as usize)),
        events: Mutex::default(),
        max_events_per_second: config.max_events_per_second.get(),
        call_timeout: Duration::from_millis(config.call_timeout_ms as u64),
        accounts: Mutex::default(),
        grants: config.grants.iter().map(|g| g.to_string()).collect(),
        callbacks: Arc::new(Semaphore::new(config.max_inflight.get() as usize)),
    });
    running(Arc::clone(&link));
    let ended = loop {
        tokio::select! {
            line = read_line(&mut lines, &mut buf) => match line {
                Ok(Some(line)) => {
                    if let Err(why) = link.on_frame(bus, gateway, &line) {
                        break Ended::Failed(why);
                    }
                }
                Ok(None) => break Ended::Failed(exit_reason(&mut child).await),
                Err(why) => break Ended::Failed(why),
            },
            _ = stopped(stop) => break Ended::Stopped,
        }
    };
    writer.abort();
    // Callers still waiting learn it stopped; its channel accounts, that
    // it is gone.
    link.pending.lock().expect("pending lock").clear();
    link.accounts.lock().expect("accounts lock").clear();
    match ended {
        Ended::Stopped => stop_child(child).await,
        Ended::Failed(why) => fail(child, why).await,
    }
}

/// Resolves once the stop signal is set (the guard of `wait_for` is not
/// held across the await that follows).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn spawn(config: &PluginConfig) -> std::io::Result<Child> {
    let mut command = Command::new(config.command.as_str());
    command
        .args(&config.args)
        // A clean environment: nothing of the gateway's (its token among
        // them) reaches the plugin, except PATH to find programs.
        .env_clear()
        .envs(std::env::var_os("PATH").map(|path| ("PATH".to_string(), path)))
        .envs(config.env.iter().map(|(k, v)| (k.to_string(), v.clone())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn()?;
    if let Some(pid) = child.id() {
        // Below the gateway's priority: a plugin that spins gets the CPU
        // the gateway leaves, so it cannot starve the gateway's answers.
        // SAFETY: a plain system call on a process id we own.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, pid, PLUGIN_NICENESS) };
    }
    Ok(child)
}

async fn fail(child: Child, why: String) -> Ended {
    stop_child(child).await;
    Ended::Failed(why)
}

/// Kills the process (if it still runs) and reaps it.
async fn stop_child(mut child: Child) -> Ended {
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    Ended::Stopped
}

async fn exit_reason(child: &mut Child) -> String {
    match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        Ok(Ok(status)) => format!("exited ({status})"),
        _ => "closed its output".to_string(),
    }
}

/// One line (without its newline), None at the end of the output; a line
/// longer than MAX_LINE is an error.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Option<String>, String> {
    buf.clear();
    loop {
        let available = reader
            .fill_buf()
            .await
            .map_err(|e| format!("cannot read its output: {e}"))?;
        if available.is_empty() {
            return Ok(if buf.is_empty() {
                None
            } else {
                Some(text(buf)?)
            });
        }
        let (used, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        buf.extend_from_slice(&available[..used]);
        reader.consume(used);
        if buf.len() > MAX_LINE {
            return Err(format!("wrote a line longer than {MAX_LINE} bytes"));
        }
        if done {
            buf.pop();
            return Ok(Some(text(buf)?));
        }
    }
}

fn text(buf: &[u8]) -> Result<String, String> {
    String::from_utf8(buf.to_vec()).map_err(|_| "wrote a line that is not UTF-8".to_string())
}

async fn write_lines(mut stdin: tokio::process::ChildStdin, mut rx: mpsc::Receiver<String>) {
    while let Some(mut line) = rx.recv().await {
        line.push('\n');
        if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            return;
        }
    }
}

/// Logs what the plugin writes to stderr, line by line, each cut to
/// MAX_LOG_LINE bytes (a line without end is cut, not buffered).
async fn log_stderr(plugin: String, stderr: tokio::process::ChildStderr) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        let Ok(available) = reader.fill_buf().await else {
            return;
        };
        if available.is_empty() {
            return;
        }
        let (used, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let room = MAX_LOG_LINE.saturating_sub(line.len());
        line.extend_from_slice(&available[..used.min(room)]);
        reader.consume(used);
        if done {
            let text = String::from_utf8_lossy(&line);
            tracing::info!(plugin = %plugin, "{}", text.trim_end());
            line.clear();
        }
    }
}
