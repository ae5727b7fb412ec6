//! The method table's handlers, one line each; the work lives in the
//! module of each method family.

use super::pairing_remote::Answer;
use super::{chat, config_rpc, connect, sessions, status, Gateway};
use crate::protocol::types::*;
use crate::protocol::{CallContext, ErrorCode, Handlers, RpcError};

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
        Ok(self.rt.health.snapshot())
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

    async fn config_patch(
        &self,
        _ctx: &CallContext,
        params: ConfigPatchParams,
    ) -> Result<ConfigPatchResult, RpcError> {
        config_rpc::patch(self, params).await
    }

    async fn config_file(
        &self,
        _ctx: &CallContext,
        _params: ConfigFileParams,
    ) -> Result<ConfigFileResult, RpcError> {
        config_rpc::file(self)
    }

    async fn config_validate(
        &self,
        _ctx: &CallContext,
        params: ConfigValidateParams,
    ) -> Result<ConfigValidateResult, RpcError> {
        Ok(config_rpc::validate(self, params))
    }

    async fn config_write(
        &self,
        _ctx: &CallContext,
        params: ConfigWriteParams,
    ) -> Result<ConfigWriteResult, RpcError> {
        config_rpc::write(self, params).await
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

    async fn logs_tail(
        &self,
        _ctx: &CallContext,
        params: LogsTailParams,
    ) -> Result<LogsTailResult, RpcError> {
        let Some(tail) = self.log_tail() else {
            return Err(RpcError::new(
                ErrorCode::Unavailable,
                "this gateway keeps no log lines (its logging is not set up by clawgate run)",
            ));
        };
        let read = tail.tail(
            params.cursor,
            params.limit.map_or(500, |n| n.get() as usize),
            params.max_bytes.map_or(250_000, |n| n.get() as usize),
        );
        Ok(LogsTailResult {
            cursor: read.cursor,
            size: read.size,
            lines: read.lines,
            truncated: read.truncated,
            reset: read.reset,
            skipped_bytes: read.skipped_bytes,
        })
    }

    async fn chat(&self, ctx: &CallContext, params: ChatParams) -> Result<ChatResult, RpcError> {
        chat::chat(self, &crate::idempotency::owner(ctx), params).await
    }

    async fn chat_abort(
        &self,
        _ctx: &CallContext,
        params: ChatAbortParams,
    ) -> Result<ChatAbortResult, RpcError> {
        chat::abort(self, params).await
    }

    async fn chat_wait(
        &self,
        _ctx: &CallContext,
        params: ChatWaitParams,
    ) -> Result<ChatWaitResult, RpcError> {
        chat::wait(self, params).await
    }

    async fn sessions(
        &self,
        _ctx: &CallContext,
        params: SessionsParams,
    ) -> Result<SessionsResult, RpcError> {
        sessions::list(self, params).await
    }

    async fn sessions_history(
        &self,
        _ctx: &CallContext,
        params: SessionsHistoryParams,
    ) -> Result<SessionsHistoryResult, RpcError> {
        sessions::history(self, params).await
    }

    async fn sessions_patch(
        &self,
        _ctx: &CallContext,
        params: SessionsPatchParams,
    ) -> Result<SessionInfo, RpcError> {
        sessions::patch(self, params).await
    }

    async fn sessions_clear(
        &self,
        _ctx: &CallContext,
        params: SessionsClearParams,
    ) -> Result<SessionsClearResult, RpcError> {
        sessions::clear(self, params).await
    }

    async fn sessions_delete(
        &self,
        _ctx: &CallContext,
        params: SessionsDeleteParams,
    ) -> Result<SessionsDeleteResult, RpcError> {
        sessions::delete(self, params).await
    }

    async fn cron_list(
        &self,
        _ctx: &CallContext,
        params: CronListParams,
    ) -> Result<CronListResult, RpcError> {
        self.cron.list(params).await
    }

    async fn cron_add(
        &self,
        _ctx: &CallContext,
        params: CronAddParams,
    ) -> Result<CronJob, RpcError> {
        self.cron.add(params).await
    }

    async fn cron_update(
        &self,
        _ctx: &CallContext,
        params: CronUpdateParams,
    ) -> Result<CronJob, RpcError> {
        self.cron.update(params).await
    }

    async fn cron_remove(
        &self,
        _ctx: &CallContext,
        params: CronRemoveParams,
    ) -> Result<CronRemoveResult, RpcError> {
        self.cron.remove(params).await
    }

    async fn cron_run(
        &self,
        _ctx: &CallContext,
        params: CronRunParams,
    ) -> Result<CronRunResult, RpcError> {
        self.cron.run(params).await
    }

    async fn cron_runs(
        &self,
        _ctx: &CallContext,
        params: CronRunsParams,
    ) -> Result<CronRunsResult, RpcError> {
        self.cron.runs(params).await
    }

    async fn nodes_register(
        &self,
        ctx: &CallContext,
        params: NodesRegisterParams,
    ) -> Result<NodesRegisterResult, RpcError> {
        self.nodes.register(ctx, params).await
    }

    async fn nodes_heartbeat(
        &self,
        ctx: &CallContext,
        _params: NodesHeartbeatParams,
    ) -> Result<NodesHeartbeatResult, RpcError> {
        let node_id = crate::nodes::bound_node(ctx)?;
        self.nodes.heard(node_id);
        Ok(NodesHeartbeatResult {
            node_id: node_id.to_string(),
            ts: super::now_ms(),
        })
    }

    async fn nodes_result(
        &self,
        ctx: &CallContext,
        params: NodesResultParams,
    ) -> Result<NodesResultResult, RpcError> {
        self.nodes.result(ctx, params)
    }

    async fn nodes_list(
        &self,
        _ctx: &CallContext,
        _params: NodesListParams,
    ) -> Result<NodesListResult, RpcError> {
        Ok(NodesListResult {
            nodes: self.nodes.list_everywhere().await,
        })
    }

    async fn devices_list(
        &self,
        _ctx: &CallContext,
        _params: DevicesListParams,
    ) -> Result<DevicesListResult, RpcError> {
        Ok(DevicesListResult {
            devices: self.devices.list(),
            pending: self.devices.pending(),
        })
    }

    async fn devices_approve(
        &self,
        _ctx: &CallContext,
        params: DevicesApproveParams,
    ) -> Result<DevicesApproveResult, RpcError> {
        self.answer_pairing(Answer::DeviceApprove {
            request_id: params.request_id.to_string(),
        })
        .await
    }

    async fn devices_reject(
        &self,
        _ctx: &CallContext,
        params: DevicesRejectParams,
    ) -> Result<DevicesRejectResult, RpcError> {
        self.answer_pairing(Answer::DeviceReject {
            request_id: params.request_id.to_string(),
        })
        .await
    }

    async fn devices_remove(
        &self,
        _ctx: &CallContext,
        params: DevicesRemoveParams,
    ) -> Result<DevicesRemoveResult, RpcError> {
        let device_id = params.device_id.to_string();
        let removed = self.devices.remove(&device_id).await?;
        // A node host's node is the device's: it goes with it, approved
        // commands and all, so pairing the key again starts over.
        self.nodes
            .remove(&device_id)
            .await
            .map_err(RpcError::from)?;
        Ok(DevicesRemoveResult { device_id, removed })
    }

    async fn devices_rotate_token(
        &self,
        ctx: &CallContext,
        params: DevicesRotateTokenParams,
    ) -> Result<DevicesRotateTokenResult, RpcError> {
        let device_id = params.device_id.to_string();
        let caller = crate::devices::Caller {
            conn_id: &ctx.conn_id,
            device: ctx.device_id(),
        };
        let (scopes, token) = self
            .devices
            .rotate(&device_id, params.role, params.scopes, caller)
            .await?;
        Ok(DevicesRotateTokenResult {
            device_id,
            role: params.role,
            scopes,
            rotated_at_ms: crate::clock::now_ms(),
            token,
        })
    }

    async fn devices_revoke_token(
        &self,
        _ctx: &CallContext,
        params: DevicesRevokeTokenParams,
    ) -> Result<DevicesRevokeTokenResult, RpcError> {
        let device_id = params.device_id.to_string();
        self.devices.revoke(&device_id, params.role).await?;
        Ok(DevicesRevokeTokenResult {
            device_id,
            role: params.role,
            revoked_at_ms: crate::clock::now_ms(),
        })
    }

    async fn nodes_pending(
        &self,
        _ctx: &CallContext,
        _params: NodesPendingParams,
    ) -> Result<NodesPendingResult, RpcError> {
        Ok(NodesPendingResult {
            requests: self.nodes.pending(),
        })
    }

    async fn nodes_approve(
        &self,
        _ctx: &CallContext,
        params: NodesApproveParams,
    ) -> Result<NodesApproveResult, RpcError> {
        self.answer_pairing(Answer::NodeApprove {
            request_id: params.request_id.to_string(),
        })
        .await
    }

    async fn nodes_reject(
        &self,
        _ctx: &CallContext,
        params: NodesRejectParams,
    ) -> Result<NodesRejectResult, RpcError> {
        self.answer_pairing(Answer::NodeReject {
            request_id: params.request_id.to_string(),
            reason: params.reason.map(|r| r.to_string()),
        })
        .await
    }

    async fn nodes_remove(
        &self,
        _ctx: &CallContext,
        params: NodesRemoveParams,
    ) -> Result<NodesRemoveResult, RpcError> {
        let node_id = params.node_id.to_string();
        let removed = self.nodes.remove(&node_id).await.map_err(RpcError::from)?;
        Ok(NodesRemoveResult { node_id, removed })
    }

    async fn nodes_invoke(
        &self,
        ctx: &CallContext,
        params: NodesInvokeParams,
    ) -> Result<NodesInvokeResult, RpcError> {
        let command = params.command.to_string();
        if crate::nodes::is_dangerous(&self.config(), &command) {
            if !ctx.allows(Scope::OperatorAdmin) {
                return Err(RpcError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "{command} runs code on the node: invoking it needs operator.admin (nodes.dangerousCommands)"
                    ),
                ));
            }
            let request =
                crate::exec::node_request(&params.node_id, &command, params.params.as_ref());
            self.exec
                .audit_operator_invoke(&ctx.conn_id, &request)
                .await
                .map_err(RpcError::from)?;
        }
        self.nodes
            .invoke(params, &crate::idempotency::owner(ctx))
            .await
    }

    async fn channels_status(
        &self,
        _ctx: &CallContext,
        _params: ChannelsStatusParams,
    ) -> Result<ChannelsStatusResult, RpcError> {
        Ok(ChannelsStatusResult {
            channels: self.channels.status(),
        })
    }

    async fn plugins_status(
        &self,
        _ctx: &CallContext,
        _params: PluginsStatusParams,
    ) -> Result<PluginsStatusResult, RpcError> {
        Ok(PluginsStatusResult {
            plugins: self.plugins.statuses(),
        })
    }

    async fn channels_restart(
        &self,
        _ctx: &CallContext,
        params: ChannelsRestartParams,
    ) -> Result<ChannelsRestartResult, RpcError> {
        let key = crate::channels::Key {
            kind: params.channel,
            account: params.account_id.to_string(),
        };
        if !self.channels.restart(&key) {
            return Err(RpcError::new(
                crate::protocol::ErrorCode::NotFound,
                format!("no running channel account {key}"),
            ));
        }
        Ok(ChannelsRestartResult {
            channel: key.kind.clone(),
            account_id: key.account,
        })
    }

    async fn presence_list(
        &self,
        _ctx: &CallContext,
        _params: PresenceListParams,
    ) -> Result<PresenceSnapshot, RpcError> {
        Ok(self.presence_everywhere().await)
    }

    async fn presence_report(
        &self,
        ctx: &CallContext,
        params: PresenceReportParams,
    ) -> Result<PresenceReportResult, RpcError> {
        let last_input = params.last_input_seconds.map(|s| s as u64);
        let text = params.text.map(|t| t.to_string());
        Ok(PresenceReportResult {
            version: self.rt.presence.report(&ctx.conn_id, last_input, text)?,
        })
    }

    async fn heartbeat_last(
        &self,
        _ctx: &CallContext,
        params: HeartbeatLastParams,
    ) -> Result<HeartbeatLastResult, RpcError> {
        let agent = params.agent_id.as_ref().map(|a| a.as_str());
        Ok(HeartbeatLastResult {
            heartbeats: self.heartbeat.statuses(agent)?,
        })
    }

    async fn heartbeat_set(
        &self,
        _ctx: &CallContext,
        params: HeartbeatSetParams,
    ) -> Result<HeartbeatSetResult, RpcError> {
        let agent = params.agent_id.as_ref().map(|a| a.as_str());
        Ok(HeartbeatSetResult {
            heartbeats: self.heartbeat.set_enabled(params.enabled, agent)?,
        })
    }

    async fn approvals_pending(
        &self,
        _ctx: &CallContext,
        _params: ApprovalsPendingParams,
    ) -> Result<ApprovalsPendingResult, RpcError> {
        Ok(ApprovalsPendingResult {
            approvals: self.exec.approvals.pending(),
        })
    }

    async fn approvals_respond(
        &self,
        ctx: &CallContext,
        params: ApprovalsRespondParams,
    ) -> Result<ApprovalsRespondResult, RpcError> {
        let id = params.id.to_string();
        self.exec
            .approvals
            .respond_anywhere(ctx, &id, params.decision)
            .await?;
        Ok(ApprovalsRespondResult {
            id,
            decision: params.decision,
        })
    }

    async fn approvals_audit(
        &self,
        _ctx: &CallContext,
        params: ApprovalsAuditParams,
    ) -> Result<ApprovalsAuditResult, RpcError> {
        let (entries, next_before) = self
            .rt
            .stores
            .audit
            .exec_audit(params.limit.get() as usize, params.before.map(|b| b.get()))
            .await
            .map_err(RpcError::from)?;
        Ok(ApprovalsAuditResult {
            entries,
            next_before: next_before.and_then(std::num::NonZeroU64::new),
        })
    }
}
