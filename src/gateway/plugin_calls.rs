//! Plugins calling the gateway methods their config grants: each call
//! runs as if a client holding just that method's scope had made it.

use super::Gateway;
use crate::channels::BoxFuture;
use crate::protocol::types::Role;
use crate::protocol::{dispatch, CallContext, ErrorCode, Grant, Method, RpcError};
use serde_json::Value;
use std::net::Ipv4Addr;

impl crate::plugins::Callbacks for Gateway {
    fn call<'a>(
        &'a self,
        plugin: &'a str,
        method: Method,
        params: Value,
    ) -> BoxFuture<'a, Result<String, RpcError>> {
        Box::pin(async move {
            let ctx = CallContext::new(format!("plugin:{plugin}"), Ipv4Addr::LOCALHOST.into());
            ctx.set_grant(Grant {
                role: Role::Operator,
                scopes: method.scope().into_iter().collect(),
                credential: None,
                device: None,
            });
            let started = std::time::Instant::now();
            let outcome = dispatch(self, &ctx, method, params).await;
            let code = outcome
                .as_ref()
                .map_or_else(|e| e.code.name(), |_| crate::metrics::OK);
            self.rt.metrics.rpc(method, code, started.elapsed());
            if let Err(e) = &outcome {
                if e.code == ErrorCode::InternalError {
                    tracing::error!(
                        plugin,
                        method = method.name(),
                        "internal error: {}",
                        e.message
                    );
                }
            }
            outcome
        })
    }
}
