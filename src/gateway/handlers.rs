//! The method table's handlers, one line each; the work lives in the
//! module of each method family.

use super::{config_rpc, connect, status, Gateway};
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

    async fn config(
        &self,
        _ctx: &CallContext,
        params: ConfigParams,
    ) -> Result<ConfigResult, RpcError> {
        config_rpc::get(self, params)
    }

    async fn config_set(
        &self,
        _ctx: &CallContext,
        params: ConfigSetParams,
    ) -> Result<ConfigSetResult, RpcError> {
        config_rpc::set(self, params).await
    }

    async fn config_reload(
        &self,
        _ctx: &CallContext,
        _params: ConfigReloadParams,
    ) -> Result<ConfigReloadResult, RpcError> {
        Ok(self.reload_config().await)
    }

    async fn config_schema(
        &self,
        _ctx: &CallContext,
        _params: ConfigSchemaParams,
    ) -> Result<ConfigSchemaResult, RpcError> {
        let serde_json::Value::Object(schema) = crate::docs::config_schema() else {
            unreachable!("the config schema is an object")
        };
        Ok(ConfigSchemaResult { schema })
    }
}
