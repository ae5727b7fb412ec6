//! Cron in a cluster: one gateway, the holder of the `cron` lease, keeps
//! the job table and runs the scheduler; the others forward the cron
//! methods to it over NATS, and one of them takes over (loading the table
//! from the shared store and settling the runs left unfinished) when its
//! lease lapses. So each due slot fires once across the cluster.

use super::CronService;
use crate::cluster::rpc::{self, Unanswered};
use crate::cluster::{Lease, Membership};
use crate::protocol::{ErrorCode, Method, RpcError};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const LEASE: &str = "cron";

/// How long a forwarded call may take: `cron.run` waits for the run.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const RUN_TIMEOUT: Duration = Duration::from_secs(15 * 60);

#[derive(Serialize, Deserialize)]
struct Call {
    method: String,
    params: Value,
}

fn subject(membership: &Membership) -> String {
    membership.subject("cron.call")
}

impl CronService {
    /// Whether this gateway keeps the job table: always when it runs
    /// alone, while it holds the cron lease in a cluster.
    pub(super) fn leads(&self) -> bool {
        self.rt.membership.is_none() || self.leading.load(Ordering::Acquire)
    }

    /// Takes the cron lease if it is free and loads the table: a gateway
    /// that starts alone leads cron before it serves. The lease, if taken.
    pub(super) async fn try_lead(
        &self,
        membership: &Membership,
    ) -> Result<Option<Lease>, crate::store::StoreError> {
        let Some(lease) = membership.leases.try_acquire(LEASE).await? else {
            return Ok(None);
        };
        self.load().await?;
        Ok(Some(lease))
    }

    /// Leads cron with `first` (loaded already) or, when another gateway
    /// leads, waits for the lease, loads the table, answers forwarded
    /// calls and schedules until the lease is lost; then waits again.
    pub(super) async fn lead_when_possible(
        self: Arc<Self>,
        membership: Arc<Membership>,
        mut first: Option<Lease>,
    ) {
        let pause = Duration::from_millis(membership.lease_ms / 3);
        loop {
            let lease = match first.take() {
                Some(lease) => lease,
                None => {
                    let lease = match membership.leases.take_over(LEASE).await {
                        Ok(lease) => lease,
                        Err(e) => {
                            tracing::warn!("cron: cannot take the cron lease: {e}");
                            tokio::time::sleep(pause).await;
                            continue;
                        }
                    };
                    if let Err(e) = self.load().await {
                        tracing::error!("cron: cannot load the jobs: {e}");
                        drop(lease);
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                    lease
                }
            };
            tracing::info!(member = %membership.name, "cron: this gateway runs the cluster's cron jobs");
            let lost = lease.lost_signal();
            *self.lease.lock().expect("cron lease") = Some(lease);
            self.leading.store(true, Ordering::Release);
            // A queue group: while an old and a new leader overlap, each
            // call reaches one of them, never both.
            let responder = match &membership.nats {
                Some(client) => match client
                    .queue_subscribe(subject(&membership), LEASE.to_string())
                    .await
                {
                    Ok(calls) => Some(tokio::spawn(
                        Arc::clone(&self).answer(client.clone(), calls),
                    )),
                    Err(e) => {
                        tracing::warn!("cron: cannot take calls from the other gateways: {e}");
                        None
                    }
                },
                None => None,
            };
            *self.responder.lock().expect("cron responder") = responder;
            let scheduler = self.spawn_loop();
            let shutdown = self.rt.shutdown.clone();
            tokio::select! {
                _ = crate::cluster::wait_lost(lost) => {}
                // Draining: keep the lease (and the runs) until `resign`.
                _ = shutdown.wait() => std::future::pending::<()>().await,
            }
            tracing::warn!("cron: the cron lease was lost; another gateway runs the jobs now");
            self.leading.store(false, Ordering::Release);
            self.lease.lock().expect("cron lease").take();
            scheduler.abort();
            if let Some(responder) = self.responder.lock().expect("cron responder").take() {
                responder.abort();
            }
        }
    }

    /// Gives the cron lease up (at shutdown, after the runs ended), so
    /// another gateway takes over at once.
    pub async fn resign(&self) {
        self.leading.store(false, Ordering::Release);
        if let Some(responder) = self.responder.lock().expect("cron responder").take() {
            responder.abort();
        }
        let lease = self.lease.lock().expect("cron lease").take();
        if let Some(lease) = lease {
            lease.release().await;
        }
    }

    async fn answer(
        self: Arc<Self>,
        client: async_nats::Client,
        mut calls: async_nats::Subscriber,
    ) {
        while let Some(message) = calls.next().await {
            let cron = Arc::clone(&self);
            let client = client.clone();
            tokio::spawn(async move {
                let answer = match rpc::body::<Call>(&message) {
                    Ok(call) => cron.dispatch(call).await,
                    Err(e) => Err(e),
                };
                rpc::reply(&client, &message, answer).await;
            });
        }
    }

    async fn dispatch(&self, call: Call) -> Result<Value, RpcError> {
        // Never passed on: a gateway that stopped leading says so, and the
        // caller tries again (the new leader answers).
        if !self.leads() {
            return Err(RpcError::new(
                ErrorCode::Unavailable,
                "the gateway running the cron jobs is changing; try again shortly",
            ));
        }
        fn params<P: DeserializeOwned>(value: Value) -> Result<P, RpcError> {
            serde_json::from_value(value)
                .map_err(|e| RpcError::new(ErrorCode::InvalidParams, e.to_string()))
        }
        fn value<R: Serialize>(result: Result<R, RpcError>) -> Result<Value, RpcError> {
            result.map(|r| serde_json::to_value(r).expect("results serialize"))
        }
        match Method::from_name(&call.method) {
            Some(Method::CronList) => value(self.list(params(call.params)?).await),
            Some(Method::CronAdd) => value(self.add(params(call.params)?).await),
            Some(Method::CronUpdate) => value(self.update(params(call.params)?).await),
            Some(Method::CronRemove) => value(self.remove(params(call.params)?).await),
            Some(Method::CronRun) => value(self.run(params(call.params)?).await),
            Some(Method::CronRuns) => value(self.runs(params(call.params)?).await),
            _ => Err(RpcError::new(
                ErrorCode::MethodNotFound,
                format!("{} is not a cron method", call.method),
            )),
        }
    }

    /// In a cluster, on a gateway that does not lead cron: the answer of
    /// the gateway that does. None when this gateway answers itself.
    pub(super) async fn on_leader<P: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        params: &P,
    ) -> Option<Result<R, RpcError>> {
        if self.leads() {
            return None;
        }
        let membership = self.rt.membership.as_ref()?;
        Some(forward(membership, method, params).await)
    }
}

async fn forward<P: Serialize, R: DeserializeOwned>(
    membership: &Membership,
    method: Method,
    params: &P,
) -> Result<R, RpcError> {
    let unavailable = |why: String| RpcError::new(ErrorCode::Unavailable, why);
    let Some(client) = &membership.nats else {
        return Err(unavailable(
            "cron jobs run on the gateway holding the cron lease, and without cluster.nats this gateway cannot reach it".into(),
        ));
    };
    let call = Call {
        method: method.name().to_string(),
        params: serde_json::to_value(params).expect("params serialize"),
    };
    let timeout = if method == Method::CronRun {
        RUN_TIMEOUT
    } else {
        CALL_TIMEOUT
    };
    let answer: Result<Value, RpcError> = rpc::call(client, subject(membership), &call, timeout)
        .await
        .map_err(|e| match e {
            Unanswered::NoResponders => unavailable(
                "no gateway runs the cron jobs right now (one takes over within cluster.leaseMs); try again shortly".into(),
            ),
            Unanswered::TimedOut => RpcError::new(
                ErrorCode::Timeout,
                "the gateway running the cron jobs did not answer in time",
            ),
            Unanswered::Failed(e) => {
                unavailable(format!("cannot reach the gateway running the cron jobs: {e}"))
            }
        })?;
    serde_json::from_value(answer?)
        .map_err(|e| RpcError::new(ErrorCode::InternalError, format!("a forwarded answer: {e}")))
}
