//! One WebSocket connection, driven by a single task: read frames,
//! dispatch requests, forward events, and write everything through a
//! bounded outbound queue.

use super::admission::Ticket;
use super::metered::{BudgetSpent, ReadBudget};
use super::openclaw::{self, Challenge, V4Error, V4Method};
use super::outbound::Outbound;
use crate::bus::{Kind, Published};
use crate::gateway::{ConnectionSlot, Gateway};
use crate::metrics::OK;
use crate::protocol::{
    challenge_frame, dispatch, error_frame, event_frame, parse_request, result_frame, CallContext,
    ErrorCode, EventKind, Method, Request, RpcError,
};
use axum::extract::ws::{Message, WebSocket};
use futures_util::StreamExt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

/// Why the read loop ended.
enum End {
    /// The client closed or the socket failed: nothing more to send.
    Gone,
    /// Close with this code and reason after what is queued.
    Close(u16, &'static str),
    /// Like Close, after a read error that left unread bytes in the socket.
    /// Closing at once would reset the connection and the client could
    /// lose the frames just sent, so the socket lingers briefly.
    CloseLingering(u16, &'static str),
    /// The client does not read fast enough: drop it without waiting.
    Slow,
    /// Its credential no longer holds: answer the requests already
    /// running (the config.set that rotated it, say), briefly, then close
    /// with this reason. Nothing new is read.
    Revoked(&'static str),
}

/// How long a connection whose credential was revoked may take to answer
/// the requests it was already running.
const REVOKED_ANSWERS_TIMEOUT: Duration = Duration::from_secs(2);

const CLOSE_NORMAL: u16 = 1000;
/// The metrics label of every plugin event: their names come from
/// manifests, and labels stay a fixed set.
const PLUGIN_EVENT_LABEL: &str = "plugin";
const CLOSE_INVALID_DATA: u16 = 1007;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
const LINGER: Duration = Duration::from_millis(500);
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
const CLOSE_REPLY_TIMEOUT: Duration = Duration::from_secs(1);

type Response = Pin<Box<dyn Future<Output = String> + Send>>;
/// Boxed so that a connected client does not keep its space.
type PreAuthDeadline = Pin<Box<dyn Future<Output = &'static str> + Send>>;

/// Waits for the deadline while there is one.
async fn until_some(deadline: &mut Option<PreAuthDeadline>) -> &'static str {
    match deadline {
        Some(deadline) => deadline.await,
        None => std::future::pending().await,
    }
}

/// What a connection holds until its connect succeeds.
pub struct PreAuth {
    /// Its place among unauthenticated connections.
    pub ticket: Ticket,
    /// Caps the bytes its socket may read before a message is complete.
    pub budget: Arc<ReadBudget>,
    /// The Tailscale Serve identity the upgrade request claimed.
    /// Boxed: the connection's future keeps room for its arguments.
    pub serve_claim: Option<Box<crate::protocol::ServeClaim>>,
}

pub async fn run(
    gw: Arc<Gateway>,
    socket: WebSocket,
    remote: SocketAddr,
    slot: ConnectionSlot,
    pre_auth: PreAuth,
) {
    let config = gw.config();
    let limits = &config.gateway.limits;
    let mut ctx = CallContext::new(slot.conn_id.clone(), remote.ip());
    ctx.serve_claim = pre_auth.serve_claim;
    let ctx = Arc::new(ctx);
    tracing::debug!(conn = %ctx.conn_id, %remote, "connection opened");
    let mut conn = Connection {
        gw: Arc::clone(&gw),
        ctx,
        slot,
        ws: socket,
        out: Outbound::new(limits.outbound_queue_frames as usize),
        seq: 0,
        bus: None,
        tasks: JoinSet::new(),
        inflight: Arc::new(Semaphore::new(
            limits.max_inflight_per_connection.get() as usize
        )),
        inflight_limit: limits.max_inflight_per_connection.get() as usize,
        max_pre_auth_bytes: limits.max_pre_auth_payload_bytes as usize,
        handshake_timeout: Duration::from_millis(config.gateway.handshake_timeout_ms as u64),
        drain_timeout: Duration::from_millis(config.gateway.shutdown.drain_timeout_ms as u64),
        budget: Arc::clone(&pre_auth.budget),
        ticket: Some(pre_auth.ticket),
        config_seen: config,
        challenge: None,
        openclaw: false,
    };
    // Everything logged for this connection, its requests included,
    // carries its id. Instrumented one future at a time: an async block
    // around both would hold the connection twice and cost every idle
    // connection about half a kilobyte.
    let span = tracing::info_span!("conn", connId = %conn.ctx.conn_id, %remote);
    let end = tracing::Instrument::instrument(conn.serve(), span.clone()).await;
    tracing::Instrument::instrument(conn.finish(end), span).await;
}

struct Connection {
    gw: Arc<Gateway>,
    ctx: Arc<CallContext>,
    slot: ConnectionSlot,
    ws: WebSocket,
    out: Outbound,
    /// Number of the last event sent on this connection.
    seq: u64,
    /// Subscribed once connect succeeds. A stream rather than a receiver
    /// so its wait registration survives across loop turns instead of
    /// being made and undone on the shared channel every turn.
    bus: Option<BroadcastStream<Arc<Published>>>,
    /// Requests that did not finish on their first poll; each yields its
    /// response frame.
    tasks: JoinSet<String>,
    inflight: Arc<Semaphore>,
    inflight_limit: usize,
    max_pre_auth_bytes: usize,
    handshake_timeout: Duration,
    drain_timeout: Duration,
    budget: Arc<ReadBudget>,
    /// Held until connect succeeds; eviction closes the connection.
    ticket: Option<Ticket>,
    /// The config the connection's scopes were last checked against.
    config_seen: Arc<crate::config::Config>,
    /// The challenge the connection opened with, kept until connect
    /// succeeds (a device proof signs it). Boxed: a connected client does
    /// not keep its space.
    challenge: Option<Box<Challenge>>,
    /// Whether the client speaks OpenClaw's protocol v4 (its first request
    /// had `"type": "req"`) rather than the native one.
    openclaw: bool,
}

impl Connection {
    async fn serve(&mut self) -> End {
        let challenge = Challenge {
            nonce: uuid::Uuid::new_v4().to_string(),
            ts: crate::clock::now_ms(),
        };
        if let Err(end) = self.send(challenge_frame(&challenge.nonce, challenge.ts)) {
            return end;
        }
        self.challenge = Some(Box::new(challenge));
        let mut pre_auth = Some(self.pre_auth_deadline());
        let closing = closing(self.gw.shutdown_signal());
        tokio::pin!(closing);
        let kick = Arc::clone(self.ctx.kick());
        loop {
            // At the in-flight limit the connection stops reading frames,
            // but keeps writing answers and events: a busy client is
            // slowed by its own backlog, never cut off for it.
            let saturated = self.inflight.available_permits() == 0;
            // Unbiased: no source of work can starve the others.
            let step = tokio::select! {
                _ = &mut closing => return self.drain().await,
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => match done {
                    Ok(frame) => self.send(frame),
                    Err(e) => {
                        tracing::error!(conn = %self.ctx.conn_id, "request task failed: {e}");
                        Ok(())
                    }
                },
                event = next_event(&mut self.bus) => self.on_bus(event),
                frame = self.out.write_then_read(&mut self.ws, !saturated) => self.on_frame(frame).await,
                reason = until_some(&mut pre_auth) => Err(End::Close(CLOSE_POLICY, reason)),
                reason = kick.kicked() => Err(End::Close(CLOSE_POLICY, reason)),
            };
            if pre_auth.is_some() && self.ctx.grant().is_some() {
                // Connected: the timer and the eviction handle are freed
                // rather than kept for the connection's life.
                pre_auth = None;
            }
            match step {
                Ok(()) => {}
                Err(End::Revoked(why)) => return self.answer_running(why).await,
                Err(end) => return end,
            }
        }
    }

    /// Sends the answers of the requests already running (within
    /// REVOKED_ANSWERS_TIMEOUT), then closes: the credential they were
    /// made under was good when they were made.
    async fn answer_running(&mut self, why: &'static str) -> End {
        match self.finish_running(REVOKED_ANSWERS_TIMEOUT).await {
            Ok(()) => End::Close(CLOSE_POLICY, why),
            Err(end) => end,
        }
    }

    /// Resolves with the reason to close a connection that has not
    /// connected in time or was evicted to make room for others.
    fn pre_auth_deadline(&self) -> PreAuthDeadline {
        let timeout = tokio::time::sleep(self.handshake_timeout);
        let eviction = self.ticket.as_ref().map(Ticket::eviction);
        Box::pin(async move {
            let evicted = async {
                match eviction {
                    Some(eviction) => eviction.wait().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = timeout => "handshake timeout: send connect first",
                _ = evicted => "too many unauthenticated connections",
            }
        })
    }

    async fn on_frame(&mut self, frame: Option<Result<Message, axum::Error>>) -> Result<(), End> {
        if matches!(frame, Some(Ok(_))) {
            self.budget.message_done();
        }
        match frame {
            None | Some(Ok(Message::Close(_))) => Err(End::Gone),
            Some(Ok(Message::Text(text))) => self.on_text(text.as_str()).await,
            Some(Ok(Message::Binary(_))) => self.send(error_frame(
                None,
                &RpcError::new(
                    ErrorCode::InvalidRequest,
                    "binary frames are not supported; send JSON text frames",
                ),
            )),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
            Some(Err(e)) if is_too_large(&e) => self.too_large(),
            Some(Err(e)) if is_backlog(&e) => Err(End::Slow),
            Some(Err(e)) if is_invalid_utf8(&e) => {
                self.send(error_frame(
                    None,
                    &RpcError::new(
                        ErrorCode::InvalidRequest,
                        "a text frame is not valid UTF-8; the connection is closed",
                    ),
                ))?;
                Err(End::CloseLingering(CLOSE_INVALID_DATA, "invalid UTF-8"))
            }
            Some(Err(e)) => {
                tracing::debug!(conn = %self.ctx.conn_id, "socket error: {e}");
                Err(End::Gone)
            }
        }
    }

    fn too_large(&mut self) -> Result<(), End> {
        let limit = if self.ctx.grant().is_some() {
            self.gw.config().gateway.limits.max_payload_bytes as usize
        } else {
            self.max_pre_auth_bytes
        };
        self.send(error_frame(
            None,
            &RpcError::new(
                ErrorCode::PayloadTooLarge,
                format!("frame exceeds the limit of {limit} bytes; the connection is closed"),
            ),
        ))?;
        Err(End::CloseLingering(CLOSE_TOO_BIG, "frame too large"))
    }

    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        if self.ctx.grant().is_none() && text.len() > self.max_pre_auth_bytes {
            return self.too_large();
        }
        if self.ctx.grant().is_none() && !self.openclaw && openclaw::is_v4_request(text) {
            self.openclaw = true;
        }
        if self.openclaw {
            return self.on_v4_text(text).await;
        }
        let request = match parse_request(text) {
            Ok(r) => r,
            Err((id, e)) => return self.send(error_frame(id.as_deref(), &e)),
        };
        let method = Method::from_name(&request.method);
        if self.ctx.grant().is_none() {
            return self.handshake(method, request.id, request.params).await;
        }
        self.follow_config()?;
        self.ctx.touch();
        let Some(method) = method else {
            return self.on_plugin_call(request).await;
        };
        if let Some(needed) = method.scope() {
            if !self.ctx.allows(needed) {
                let e = RpcError::new(
                    ErrorCode::Forbidden,
                    format!("{} requires scope {needed}", method.name()),
                );
                self.gw
                    .rt
                    .metrics
                    .rpc(method, e.code.name(), std::time::Duration::ZERO);
                return self.send(error_frame(Some(&request.id), &e));
            }
        }
        let response: Response = Box::pin(respond(
            Arc::clone(&self.gw),
            Arc::clone(&self.ctx),
            method,
            request.id,
            request.params,
        ));
        self.launch(response).await
    }

    /// A method that is not the gateway's own: a plugin's, if its first
    /// segment names one; the gateway checks the scope here and the
    /// params and result around the call.
    async fn on_plugin_call(&mut self, request: Request) -> Result<(), End> {
        let call = match self.gw.plugins.resolve(&request.method) {
            Some(Ok(call)) => call,
            Some(Err(e)) => return self.send(error_frame(Some(&request.id), &e)),
            None => {
                let e = RpcError::method_not_found(&request.method);
                self.gw.rt.metrics.rpc_unknown(e.code.name());
                return self.send(error_frame(Some(&request.id), &e));
            }
        };
        let metrics = Arc::clone(&self.gw.rt.metrics);
        if !self.ctx.allows(call.scope()) {
            let e = RpcError::new(
                ErrorCode::Forbidden,
                format!("{} requires scope {}", call.name(), call.scope()),
            );
            metrics.plugin_rpc(call.name(), e.code.name(), std::time::Duration::ZERO);
            return self.send(error_frame(Some(&request.id), &e));
        }
        let id = request.id;
        let params = request.params;
        let response: Response = Box::pin(async move {
            let started = std::time::Instant::now();
            let name = call.name().to_string();
            let outcome = call.run(params).await;
            let code = outcome.as_ref().map_or_else(|e| e.code.name(), |_| OK);
            metrics.plugin_rpc(&name, code, started.elapsed());
            match outcome {
                Ok(result) => result_frame(&id, &result.to_string()),
                Err(e) => error_frame(Some(&id), &e),
            }
        });
        self.launch(response).await
    }

    /// Answers a request whose response is being computed: inline if it is
    /// ready at once, else in a task of its own under the in-flight limit.
    async fn launch(&mut self, mut response: Response) -> Result<(), End> {
        // Most handlers finish without waiting; answer those inline and
        // give only the rest a task of their own.
        if let Poll::Ready(frame) = response
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            return self.send(frame);
        }
        // Frames are only read while a permit is free, so this succeeds
        // at once.
        let Ok(permit) = Arc::clone(&self.inflight).acquire_owned().await else {
            return Err(End::Gone);
        };
        self.tasks.spawn(async move {
            let frame = response.await;
            drop(permit);
            frame
        });
        Ok(())
    }

    /// Before connect, only connect is served, inline; a failed connect
    /// closes the connection. Other names, known or not, get the same
    /// answer, so the method list cannot be probed without a credential.
    async fn handshake(
        &mut self,
        method: Option<Method>,
        id: String,
        params: serde_json::Value,
    ) -> Result<(), End> {
        let Some(method) = method.filter(|m| *m == Method::Connect) else {
            let e = RpcError::new(
                ErrorCode::Unauthorized,
                format!("send {} first", Method::Connect.name()),
            );
            return self.send(error_frame(Some(&id), &e));
        };
        if !self.room_for_one_more() {
            let e = RpcError::new(ErrorCode::Unavailable, "too many connections")
                .with_retry_after(1000);
            self.send(error_frame(Some(&id), &e))?;
            return Err(End::Close(CLOSE_POLICY, "too many connections"));
        }
        // Boxed: the dispatch future is as large as the largest handler's
        // (a streaming chat turn), and awaiting it inline would make every
        // idle connection's task that large.
        let span = tracing::info_span!("request", method = method.name());
        let started = std::time::Instant::now();
        let connecting = Box::pin(dispatch(&*self.gw, &self.ctx, method, params));
        let answer = tracing::Instrument::instrument(connecting, span.clone()).await;
        let outcome = answer.as_ref().map_or_else(|e| e.code.name(), |_| OK);
        self.gw.rt.metrics.rpc(method, outcome, started.elapsed());
        match answer {
            Ok(hello) => {
                span.in_scope(|| self.connected());
                self.send(result_frame(&id, &hello))
            }
            Err(e) => {
                tracing::info!(conn = %self.ctx.conn_id, remote = %self.ctx.remote_ip, "connect refused: {}", e.message);
                self.send(error_frame(Some(&id), &e))?;
                Err(End::Close(CLOSE_POLICY, "connect failed"))
            }
        }
    }

    /// After a successful connect: the connection counts under its role,
    /// reads without the pre-auth limit, and receives events.
    fn connected(&mut self) {
        if let Some(grant) = self.ctx.grant() {
            self.slot.set_role(grant.role);
            tracing::debug!(role = %grant.role, "connected");
        }
        self.ticket = None;
        self.challenge = None;
        self.budget.unlimit();
        self.bus = Some(BroadcastStream::new(self.gw.rt.bus.subscribe()));
    }

    /// Whether the gateway has room for one more connected client (logs
    /// a refusal; the caller answers in its protocol's shape).
    fn room_for_one_more(&mut self) -> bool {
        let max = self.gw.config().gateway.limits.max_connections.get() as usize;
        let room = self.slot.has_room(max);
        if !room {
            tracing::warn!(conn = %self.ctx.conn_id, "refused a connect: connection limit reached");
        }
        room
    }

    /// A frame from an OpenClaw client: connect first, then the v4
    /// methods, each mapped onto a native one.
    async fn on_v4_text(&mut self, text: &str) -> Result<(), End> {
        let request = match openclaw::parse(text) {
            Ok(request) => request,
            // Before connect OpenClaw's gateway closes without a word.
            Err(_) if self.ctx.grant().is_none() => {
                return Err(End::Close(CLOSE_POLICY, "invalid request frame"))
            }
            Err((id, e)) => {
                return self.send(openclaw::error_frame(
                    id.as_deref().unwrap_or("unknown"),
                    &e,
                ))
            }
        };
        if self.ctx.grant().is_none() {
            return self.v4_handshake(request).await;
        }
        self.follow_config()?;
        self.ctx.touch();
        let Some(method) = V4Method::from_name(&request.method) else {
            let e = if request.method == Method::Connect.name() {
                V4Error::invalid("already connected")
            } else {
                V4Error::not_served(&request.method)
            };
            return self.send(openclaw::error_frame(&request.id, &e));
        };
        if !self.ctx.allows(method.scope()) {
            let e = V4Error::missing_scope(method.scope());
            return self.send(openclaw::error_frame(&request.id, &e));
        }
        let params = match openclaw::validate(method, request.params) {
            Ok(params) => params,
            Err(e) => return self.send(openclaw::error_frame(&request.id, &e)),
        };
        if let Some(ack) = openclaw::accepted(method, &params) {
            self.send(openclaw::ok_frame(&request.id, &ack))?;
        }
        // A turn that outlives its answer holds an in-flight permit until
        // it ends; frames are only read while one is free.
        let slot = if method == V4Method::ChatSend {
            let Ok(permit) = Arc::clone(&self.inflight).acquire_owned().await else {
                return Err(End::Gone);
            };
            Some(permit)
        } else {
            None
        };
        let gw = Arc::clone(&self.gw);
        let ctx = Arc::clone(&self.ctx);
        let id = request.id;
        let span = tracing::info_span!("request", method = method.name());
        let response: Response = Box::pin(tracing::Instrument::instrument(
            async move {
                let started = std::time::Instant::now();
                let outcome = openclaw::call(Arc::clone(&gw), ctx, method, params, slot).await;
                let code = outcome.as_ref().map_or_else(V4Error::label, |_| OK);
                gw.rt.metrics.rpc(method.native(), code, started.elapsed());
                match outcome {
                    Ok(payload) => openclaw::ok_frame(&id, &payload),
                    Err(e) => openclaw::error_frame(&id, &e),
                }
            },
            span,
        ));
        self.launch(response).await
    }

    async fn v4_handshake(&mut self, request: openclaw::V4Request) -> Result<(), End> {
        if request.method != Method::Connect.name() {
            let e = V4Error::invalid("invalid handshake: first request must be connect");
            self.send(openclaw::error_frame(&request.id, &e))?;
            return Err(End::Close(CLOSE_POLICY, "invalid handshake"));
        }
        if !self.room_for_one_more() {
            let mut e = V4Error::new(
                openclaw::types::ErrorCode::Unavailable,
                "too many connections",
            );
            e.retryable = true;
            e.retry_after_ms = Some(1000);
            self.send(openclaw::error_frame(&request.id, &e))?;
            return Err(End::Close(CLOSE_POLICY, "too many connections"));
        }
        let Some(challenge) = self.challenge.take() else {
            return Err(End::Close(CLOSE_POLICY, "connect failed"));
        };
        let span = tracing::info_span!("request", method = Method::Connect.name());
        let started = std::time::Instant::now();
        let connecting = Box::pin(openclaw::connect(
            &self.gw,
            &self.ctx,
            &challenge,
            request.params,
        ));
        let answer = tracing::Instrument::instrument(connecting, span.clone()).await;
        let outcome = answer.as_ref().map_or_else(|r| r.error.label(), |_| OK);
        self.gw
            .rt
            .metrics
            .rpc(Method::Connect, outcome, started.elapsed());
        match answer {
            Ok(hello) => {
                span.in_scope(|| self.connected());
                self.send(openclaw::ok_frame(&request.id, &hello))
            }
            Err(refusal) => {
                // A refusal after the native connect granted (pairing
                // required, say): the slot's role makes its drop undo the
                // grant's traces (presence, device and node bindings).
                if let Some(grant) = self.ctx.grant() {
                    self.slot.set_role(grant.role);
                }
                tracing::info!(conn = %self.ctx.conn_id, remote = %self.ctx.remote_ip, "OpenClaw connect refused: {}", refusal.error.message);
                self.send(openclaw::error_frame(&request.id, &refusal.error))?;
                Err(End::Close(refusal.close, refusal.reason))
            }
        }
    }

    fn on_bus(
        &mut self,
        event: Option<Result<Arc<Published>, BroadcastStreamRecvError>>,
    ) -> Result<(), End> {
        match event {
            Some(Ok(event)) => {
                self.forward(&event)?;
                if event.kind == EventKind::ConfigChanged {
                    self.follow_config()?;
                }
                Ok(())
            }
            Some(Err(BroadcastStreamRecvError::Lagged(missed))) => {
                self.gw.rt.metrics.events_dropped(missed);
                Err(End::Slow)
            }
            None => Err(End::Close(CLOSE_NORMAL, "gateway closed")),
        }
    }

    /// Applies the config in force to this connection, once per change:
    /// scopes removed from the config stop working, and a connection whose
    /// credential was rotated out is closed.
    fn follow_config(&mut self) -> Result<(), End> {
        if self.gw.rt.config.is_current(&self.config_seen) {
            return Ok(());
        }
        self.config_seen = self.gw.config();
        self.follow_limits();
        let Some(grant) = self.ctx.grant() else {
            return Ok(());
        };
        match crate::gateway::revalidate(&self.config_seen.gateway.auth, grant) {
            Ok(scopes) => {
                self.ctx.restrict_to(&scopes);
                Ok(())
            }
            Err(why) => {
                tracing::info!(conn = %self.ctx.conn_id, "closing a connection: {why}");
                Err(End::Revoked(why))
            }
        }
    }

    /// Limits an open connection takes from each new config.
    fn follow_limits(&mut self) {
        let limits = &self.config_seen.gateway.limits;
        self.out.set_limit(limits.outbound_queue_frames as usize);
        let inflight = limits.max_inflight_per_connection.get() as usize;
        if inflight != self.inflight_limit {
            // Requests running now finish under the old semaphore.
            self.inflight = Arc::new(Semaphore::new(inflight));
            self.inflight_limit = inflight;
        }
    }

    fn forward(&mut self, event: &Published) -> Result<(), End> {
        if self.ctx.grant().is_none() {
            return Ok(());
        }
        if event
            .target
            .as_ref()
            .is_some_and(|target| *target != self.ctx.conn_id)
        {
            return Ok(());
        }
        if event
            .kind
            .scope()
            .is_some_and(|needed| !self.ctx.allows(needed))
        {
            return Ok(());
        }
        if self.openclaw {
            for frame in openclaw::event_frames(&self.gw, event, self.seq + 1) {
                self.seq += 1;
                self.send(frame)?;
            }
            return Ok(());
        }
        self.seq += 1;
        let frame = event_frame(event.kind.name(), &event.data, self.seq);
        self.gw.rt.metrics.event_sent(match &event.kind {
            Kind::Core(kind) => kind.name(),
            Kind::Plugin(_) => PLUGIN_EVENT_LABEL,
        });
        self.send(frame)
    }

    /// Delivers events already on the bus (gateway.closing among them),
    /// lets running requests finish within the drain timeout, then closes.
    async fn drain(&mut self) -> End {
        if let Some(mut bus) = self.bus.take() {
            let mut cx = Context::from_waker(Waker::noop());
            while let Poll::Ready(Some(Ok(event))) = bus.poll_next_unpin(&mut cx) {
                if let Err(end) = self.forward(&event) {
                    return end;
                }
            }
        }
        match self.finish_running(self.drain_timeout).await {
            Ok(()) => End::Close(CLOSE_NORMAL, "gateway shutting down"),
            Err(end) => end,
        }
    }

    /// Sends the answers of the requests running now as they finish,
    /// flushing as it goes, for at most `limit`; reading has stopped.
    async fn finish_running(&mut self, limit: Duration) -> Result<(), End> {
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                done = self.tasks.join_next() => match done {
                    None => return Ok(()),
                    Some(Ok(frame)) => self.send(frame)?,
                    Some(Err(_)) => {}
                },
                result = self.out.flush(&mut self.ws), if self.out.has_pending() => {
                    result.map_err(|_| End::Gone)?;
                }
                _ = &mut deadline => {
                    tracing::warn!(conn = %self.ctx.conn_id, "requests still running when the connection closed were abandoned");
                    return Ok(());
                }
            }
        }
    }

    fn send(&mut self, frame: String) -> Result<(), End> {
        if self.out.push(Message::Text(frame.into())) {
            Ok(())
        } else {
            Err(End::Slow)
        }
    }

    async fn finish(mut self, end: End) {
        self.tasks.abort_all();
        let conn_id = self.ctx.conn_id.clone();
        let (code, reason, linger) = match end {
            End::Slow => {
                self.gw.rt.metrics.slow_disconnect();
                tracing::warn!(conn = %conn_id, "disconnecting a client that does not keep up");
                return;
            }
            End::Gone => return,
            End::Close(code, reason) => (code, reason, false),
            End::Revoked(reason) => (CLOSE_POLICY, reason, false),
            End::CloseLingering(code, reason) => (code, reason, true),
        };
        self.out.push_close(code, reason);
        let flushed = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, self.out.flush(&mut self.ws)).await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::debug!(conn = %conn_id, "close frame not delivered");
        } else if linger {
            tokio::time::sleep(LINGER).await;
        } else {
            // Give the client a moment to answer the close handshake.
            let _ = tokio::time::timeout(CLOSE_REPLY_TIMEOUT, async {
                while self.ws.next().await.is_some() {}
            })
            .await;
        }
        tracing::debug!(conn = %conn_id, "connection closed");
    }
}

async fn respond(
    gw: Arc<Gateway>,
    ctx: Arc<CallContext>,
    method: Method,
    id: String,
    params: serde_json::Value,
) -> String {
    let span = tracing::info_span!("request", method = method.name());
    let answer = async move {
        let started = std::time::Instant::now();
        let outcome = dispatch(&*gw, &ctx, method, params).await;
        let took = started.elapsed();
        let code = outcome.as_ref().map_or_else(|e| e.code.name(), |_| OK);
        gw.rt.metrics.rpc(method, code, took);
        let ms = took.as_millis() as u64;
        match outcome {
            Ok(result) => {
                tracing::debug!(ms, "request done");
                result_frame(&id, &result)
            }
            Err(e) => {
                if e.code == ErrorCode::InternalError {
                    tracing::error!(ms, "internal error: {}", e.message);
                } else {
                    // Debug-quoted: the message may repeat what the client sent.
                    tracing::debug!(ms, code = e.code.code(), "request failed: {:?}", e.message);
                }
                error_frame(Some(&id), &e)
            }
        }
    };
    tracing::Instrument::instrument(answer, span).await
}

async fn next_event(
    bus: &mut Option<BroadcastStream<Arc<Published>>>,
) -> Option<Result<Arc<Published>, BroadcastStreamRecvError>> {
    match bus {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

async fn closing(mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|closing| *closing).await;
}

fn is_too_large(e: &axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error as WsError;
    super::outbound::ws_error(e).is_some_and(|err| match err {
        WsError::Capacity(_) => true,
        WsError::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<BudgetSpent>().is_some()),
        _ => false,
    })
}

fn is_invalid_utf8(e: &axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error as WsError;
    super::outbound::ws_error(e).is_some_and(|err| matches!(err, WsError::Utf8(_)))
}

fn is_backlog(e: &axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error as WsError;
    super::outbound::ws_error(e).is_some_and(|err| matches!(err, WsError::WriteBufferFull(_)))
}
