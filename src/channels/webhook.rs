//! Signed webhooks: `POST /hooks/<accountId>` with `{peer, text, group?}`,
//! signed with `X-Clawgate-Timestamp` and `X-Clawgate-Signature:
//! sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">`; replies are
//! POSTed to the account's replyUrl, signed the same way.

use super::inbound::{dispatch, Inbound, Refused, Reply};
use super::{Account, ChannelManager, Key};
use crate::protocol::types::{BuiltinChannelKind, WebhookAccount};
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub const TIMESTAMP_HEADER: &str = "x-clawgate-timestamp";
pub const SIGNATURE_HEADER: &str = "x-clawgate-signature";
/// How old a request's timestamp may be; a request is accepted at most
/// once within this window.
pub const MAX_AGE_SECS: u64 = 300;
/// How far ahead of the gateway's clock a timestamp may be (clock drift).
const MAX_AHEAD_SECS: u64 = 30;

/// `sha256=<hex>` of `<timestamp>.<body>` under `secret`.
pub fn sign(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a request's timestamp window and signature (in constant time).
pub fn verify(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: u64,
) -> Result<(), &'static str> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let timestamp: u64 = header(TIMESTAMP_HEADER)
        .ok_or("missing X-Clawgate-Timestamp")?
        .parse()
        .map_err(|_| "X-Clawgate-Timestamp is not unix seconds")?;
    if timestamp.saturating_add(MAX_AGE_SECS) < now_secs {
        return Err("X-Clawgate-Timestamp is more than 5 minutes old");
    }
    if timestamp > now_secs.saturating_add(MAX_AHEAD_SECS) {
        return Err("X-Clawgate-Timestamp is in the future");
    }
    let given = header(SIGNATURE_HEADER)
        .and_then(|s| s.strip_prefix("sha256="))
        .ok_or("missing X-Clawgate-Signature: sha256=<hex>")?;
    let given = hex::decode(given).map_err(|_| "the signature is not hex")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&given).map_err(|_| "bad signature")
}

/// The request's timestamp and signature, which together name it for the
/// replay check (call after [`verify`]).
fn request_id(headers: &HeaderMap) -> (u64, Vec<u8>) {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let timestamp = header(TIMESTAMP_HEADER)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let signature = header(SIGNATURE_HEADER)
        .and_then(|s| s.strip_prefix("sha256="))
        .and_then(|hex| hex::decode(hex).ok())
        .unwrap_or_default();
    (timestamp, signature)
}

fn now_secs() -> u64 {
    crate::clock::now_ms() / 1000
}

/// `POST /hooks/{account}`.
pub async fn receive(
    State(channels): State<Arc<ChannelManager>>,
    Path(account): Path<String>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let key = Key {
        kind: super::builtin(BuiltinChannelKind::Webhook),
        account,
    };
    let settings = channels.rt.config();
    let auth = &settings.gateway.auth;
    let per_client = auth.max_failures_per_minute.get() as usize;
    let total = auth.max_failures_per_minute_total.get() as usize;
    if let Err(limited) = channels
        .webhook_failures
        .check(remote.ip(), per_client, total)
    {
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many refused webhook requests; try again later".into(),
        );
        let seconds = limited.retry_after_ms.div_ceil(1000).to_string();
        if let Ok(value) = seconds.parse() {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        return response;
    }
    let Some((Account::Webhook(config), counters)) = channels.running(&key) else {
        // Counted like a bad signature, so account names cannot be probed.
        channels.webhook_failures.record_failure(remote.ip(), total);
        return error(
            StatusCode::NOT_FOUND,
            format!("no webhook account {}", key.account),
        );
    };
    let limits = &settings.gateway.limits;
    let body = crate::bounded::request_body(
        body,
        limits.max_payload_bytes as usize,
        Duration::from_millis(limits.http_body_timeout_ms as u64),
    );
    let body = match body.await {
        Ok(body) => body,
        Err(e) => return error(e.status, e.message),
    };
    let now = now_secs();
    if let Err(why) = verify(config.secret.as_str(), &headers, &body, now) {
        channels.webhook_failures.record_failure(remote.ip(), total);
        counters.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(channel = %key, %remote, "webhook refused: {why}");
        return error(StatusCode::UNAUTHORIZED, why.to_string());
    }
    let (timestamp, signature) = request_id(&headers);
    if !channels.first_delivery(&key, timestamp, signature, now + MAX_AGE_SECS + 1) {
        counters.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(channel = %key, %remote, "webhook refused: a replay of an earlier request");
        return error(
            StatusCode::CONFLICT,
            "this signed request was already delivered; sign each request anew".into(),
        );
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        peer: String,
        text: String,
        group: Option<String>,
    }
    let message: Body = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"peer\", \"text\", \"group\"?}}: {e}"),
            )
        }
    };
    let reply = Reply::Webhook(Replier::new(
        channels.rt.http.clone(),
        &config,
        &message.peer,
    ));
    let inbound = Inbound {
        from: message.peer.clone(),
        peer: message.peer,
        group: message.group,
        text: message.text,
        // A webhook message is addressed to the assistant by definition.
        mentioned: true,
    };
    let taken = dispatch(
        &channels,
        &key,
        &Account::Webhook(config).policy(),
        &counters,
        inbound,
        reply,
    );
    match taken {
        Err(Refused::Busy) => {
            let mut response = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many messages of this account are pending; retry later".into(),
            );
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                "5".parse().expect("digits"),
            );
            response
        }
        // Refused by the policy: accepted and dropped, like every channel,
        // so the sender learns nothing about the allowlist.
        Ok(()) | Err(Refused::Policy(_)) => {
            (StatusCode::ACCEPTED, Json(json!({"accepted": true}))).into_response()
        }
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// Posts replies to the account's replyUrl.
#[derive(Clone)]
pub struct Replier {
    http: reqwest::Client,
    url: Option<String>,
    secret: String,
    peer: String,
}

impl Replier {
    /// The account's sender, writing to `peer`.
    pub fn new(http: reqwest::Client, config: &WebhookAccount, peer: &str) -> Replier {
        Replier {
            http,
            url: config.reply_url.as_ref().map(|u| u.to_string()),
            secret: config.secret.to_string(),
            peer: peer.to_string(),
        }
    }

    pub fn target(&self) -> String {
        self.peer.clone()
    }

    pub fn retarget(&self, peer: &str) -> Replier {
        Replier {
            peer: peer.to_string(),
            ..self.clone()
        }
    }

    pub async fn send(&self, text: &str, session_key: &str) -> Result<(), String> {
        let Some(url) = &self.url else {
            return Err("the account has no replyUrl".into());
        };
        let body = json!({"peer": self.peer, "text": text, "sessionKey": session_key}).to_string();
        let timestamp = now_secs();
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(
                SIGNATURE_HEADER,
                sign(&self.secret, timestamp, body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| format!("posting the reply to {url}: {e}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "{url} answered the reply with {}",
                response.status()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(timestamp: &str, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(TIMESTAMP_HEADER, timestamp.parse().unwrap());
        headers.insert(SIGNATURE_HEADER, signature.parse().unwrap());
        headers
    }

    #[test]
    fn the_time_window_holds_at_the_edges_of_u64() {
        let now = 1_800_000_000;
        // Found by the webhook fuzz target: this used to overflow.
        let far = headers(&u64::MAX.to_string(), "sha256=00");
        assert_eq!(
            verify("s", &far, b"", now),
            Err("X-Clawgate-Timestamp is in the future")
        );
        let old = headers("0", "sha256=00");
        assert_eq!(
            verify("s", &old, b"", now),
            Err("X-Clawgate-Timestamp is more than 5 minutes old")
        );
        let body = b"{}";
        let signed = headers(&now.to_string(), &sign("s", now, body));
        assert_eq!(verify("s", &signed, body, now + MAX_AGE_SECS), Ok(()));
        assert!(verify("s", &signed, body, now + MAX_AGE_SECS + 1).is_err());
    }
}
