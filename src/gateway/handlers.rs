//! The method table's handlers, one line each; the work lives in the
//! module of each method family.

use super::{connect, status, Gateway};
use crate::protocol::types::*;
use crate::protocol::{CallContext, Handlers, RpcError};

impl Handlers for Gateway {
    async fn connect(
        &self,
        ctx: &CallContext,
        params: ConnectParams,
    ) -> Result<ConnectResult, RpcError> {
        connect::connect(self, ctx, params).await
    }

    async fn health(
        &self,
        _ctx: &CallContext,
        _params: HealthParams,
    ) -> Result<HealthSnapshot, RpcError> {
        Ok(self.health.snapshot())
    }

    async fn status(
        &self,
        _ctx: &CallContext,
        _params: StatusParams,
    ) -> Result<StatusResult, RpcError> {
        Ok(status::status(self))
    }
}
