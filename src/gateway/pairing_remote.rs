//! Pairing answers across a cluster: a node or a device asks the gateway
//! it connected to, and the request's event reaches operators on every
//! gateway. An answer given on another gateway is sent to all on
//! `<prefix>.pairing.answer`; the gateway holding the request runs it and
//! replies with the outcome, the others reply that they do not hold it.

use super::Gateway;
use crate::cluster::rpc::{self, MemberAnswer, Outcome};
use crate::protocol::types::{
    DevicesApproveResult, DevicesRejectResult, NodesApproveResult, NodesRejectResult,
};
use crate::protocol::{ErrorCode, RpcError};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long an answer waits for the other gateways.
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Serialize, Deserialize)]
struct Asked {
    /// The member asking, which does not answer itself.
    from: String,
    answer: Answer,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "answer")]
pub(super) enum Answer {
    NodeApprove {
        request_id: String,
    },
    NodeReject {
        request_id: String,
        reason: Option<String>,
    },
    DeviceApprove {
        request_id: String,
    },
    DeviceReject {
        request_id: String,
    },
}

impl Answer {
    fn request_id(&self) -> &str {
        match self {
            Answer::NodeApprove { request_id }
            | Answer::NodeReject { request_id, .. }
            | Answer::DeviceApprove { request_id }
            | Answer::DeviceReject { request_id } => request_id,
        }
    }

    fn held_by(&self, gw: &Gateway) -> bool {
        match self {
            Answer::NodeApprove { request_id } | Answer::NodeReject { request_id, .. } => {
                gw.nodes.holds_request(request_id)
            }
            Answer::DeviceApprove { request_id } | Answer::DeviceReject { request_id } => {
                gw.devices.holds_request(request_id)
            }
        }
    }
}

fn bus(gw: &Gateway) -> Option<(String, async_nats::Client)> {
    gw.rt.membership.as_ref()?.bus("pairing.answer")
}

impl Gateway {
    /// Runs a pairing answer on this gateway.
    pub(super) async fn answer_pairing_here(&self, answer: Answer) -> Result<Value, RpcError> {
        fn value<R: Serialize>(result: R) -> Value {
            serde_json::to_value(result).expect("results serialize")
        }
        Ok(match answer {
            Answer::NodeApprove { request_id } => {
                let node_id = self.nodes.approve(&request_id).await?;
                value(NodesApproveResult {
                    request_id,
                    node_id,
                })
            }
            Answer::NodeReject { request_id, reason } => {
                self.nodes.reject(&request_id, reason)?;
                value(NodesRejectResult { request_id })
            }
            Answer::DeviceApprove { request_id } => {
                let device = self.devices.approve(&request_id).await?;
                value(DevicesApproveResult { request_id, device })
            }
            Answer::DeviceReject { request_id } => {
                let request = self.devices.reject(&request_id)?;
                value(DevicesRejectResult {
                    request_id: request.request_id,
                    device_id: request.device_id,
                })
            }
        })
    }

    /// Answers a pairing request wherever it waits: here, or (in a
    /// cluster) on the gateway holding it.
    pub(super) async fn answer_pairing<R: serde::de::DeserializeOwned>(
        &self,
        answer: Answer,
    ) -> Result<R, RpcError> {
        let here = if answer.held_by(self) || bus(self).is_none() {
            self.answer_pairing_here(answer).await
        } else {
            let id = answer.request_id().to_string();
            match self.forward(answer).await {
                Some(answered) => answered,
                None => Err(RpcError::new(
                    ErrorCode::NotFound,
                    format!("no pending pairing request {id} on any gateway"),
                )),
            }
        };
        serde_json::from_value(here?)
            .map_err(|e| RpcError::new(ErrorCode::InternalError, e.to_string()))
    }

    async fn forward(&self, answer: Answer) -> Option<Result<Value, RpcError>> {
        let (subject, client) = bus(self)?;
        let membership = self.rt.membership.as_ref()?;
        let others = membership.others().await;
        if others.is_empty() {
            return None;
        }
        let asked = Asked {
            from: membership.name.clone(),
            answer,
        };
        let answers = rpc::gather::<_, Option<Outcome<Value>>>(
            &client,
            subject,
            &asked,
            &others,
            TIMEOUT,
            |from| from.answer.is_some(),
        )
        .await;
        match answers {
            Ok(answers) => answers
                .into_iter()
                .find_map(|from| from.answer)
                .map(Outcome::into_result),
            Err(e) => Some(Err(RpcError::new(
                ErrorCode::Unavailable,
                format!("cannot reach the other gateways: {e}"),
            )
            .with_retryable(true))),
        }
    }

    /// In a cluster: answers the pairing answers other gateways send for
    /// the requests this one holds.
    pub(super) fn serve_pairing_answers(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        let (subject, client) = bus(self)?;
        let gw: Weak<Gateway> = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            let mut answers = match client.subscribe(subject).await {
                Ok(answers) => answers,
                Err(e) => {
                    tracing::warn!("pairing: cannot take answers from the other gateways: {e}");
                    return;
                }
            };
            while let Some(message) = answers.next().await {
                let Some(gw) = gw.upgrade() else { return };
                let Ok(asked) = rpc::body::<Asked>(&message) else {
                    continue;
                };
                let Some(me) = gw.rt.membership.as_ref().map(|m| m.name.clone()) else {
                    return;
                };
                if asked.from == me {
                    continue;
                }
                let client = client.clone();
                tokio::spawn(async move {
                    let outcome = match asked.answer.held_by(&gw) {
                        true => Some(Outcome::from(gw.answer_pairing_here(asked.answer).await)),
                        false => None,
                    };
                    let from = MemberAnswer {
                        member: me,
                        answer: outcome,
                    };
                    rpc::reply(&client, &message, Ok::<_, RpcError>(from)).await;
                });
            }
        }))
    }
}
