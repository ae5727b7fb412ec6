//! The agent's exec tool: a command line becomes an exact argv, the
//! agent's policy decides whether it runs, is refused, or waits for a
//! person's approval; every decision goes to the audit log; what runs is
//! exactly what was approved, on the gateway host or on a node.

mod approvals;
mod argv;
mod policy;
mod run;

pub use approvals::Approvals;

use crate::gateway::{now_ms, Gateway};
use crate::protocol::types::{
    ApprovalAuditEntry, ApprovalAuditEntryDecision, ApprovalDecision, ExecApproval, ExecConfig,
    ExecToolParams, NodesInvokeParams,
};
use approvals::Outcome;
use policy::Verdict;
use serde_json::{json, Value};
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::time::Duration;

/// Who is calling a tool.
pub struct Caller<'a> {
    pub agent_id: &'a str,
    pub session_key: &'a str,
}

/// The node command that runs an argv.
const NODE_RUN: &str = "system.run";
/// The default working directory, inside the state dir (not the state
/// dir itself, which holds the database).
const WORKSPACE: &str = "workspace";

/// Runs the exec tool; an Err is what the model is told.
pub async fn exec_tool(
    gw: &Gateway,
    caller: &Caller<'_>,
    params: ExecToolParams,
) -> Result<Value, String> {
    let config = gw.config();
    let policy = config
        .agents
        .extra
        .get(caller.agent_id)
        .and_then(|a| a.exec.clone())
        .unwrap_or_else(default_policy);
    let argv = argv::split(&params.command).map_err(|e| format!("invalid command: {e}"))?;
    let command = argv::display(&argv);
    let asked_cwd = params.cwd.as_ref().map(|c| c.to_string());
    let cwd = asked_cwd
        .clone()
        .or_else(|| policy.cwd.as_ref().map(|c| c.to_string()))
        .map(PathBuf::from)
        .unwrap_or_else(|| gw.info.state_dir.join(WORKSPACE));
    let node_id = params.node_id.map(|n| n.to_string());
    let allowed_for_good = gw
        .store
        .exec_allowed(caller.agent_id.to_string())
        .await
        .map_err(|e| e.to_string())?;
    let listed = crate::pattern::any_matches(policy.allowlist.iter().map(|p| p.as_str()), &command)
        || allowed_for_good.contains(&command);
    let mut entry = ApprovalAuditEntry {
        id: NonZeroU64::MIN,
        approval_id: None,
        command: command.clone(),
        argv: argv.clone(),
        // A node runs in its own default directory unless one is named.
        cwd: match &node_id {
            Some(_) => asked_cwd.clone(),
            None => Some(cwd.display().to_string()),
        },
        agent_id: caller.agent_id.to_string(),
        session_key: Some(caller.session_key.to_string()),
        node_id: node_id.clone(),
        decision: ApprovalAuditEntryDecision::Allowed,
        decided_by: Some("policy".to_string()),
        requested_at_ms: now_ms(),
        decided_at_ms: 0,
    };
    let refusal = match policy::verdict(policy.security, policy.ask, listed) {
        Verdict::Run => None,
        Verdict::Deny(why) => {
            entry.decision = ApprovalAuditEntryDecision::Denied;
            Some(format!("not run: {why}"))
        }
        Verdict::Ask => {
            let id = format!("appr-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
            entry.approval_id = Some(id.clone());
            let approval = ExecApproval {
                id,
                command: command.clone(),
                argv: argv.clone(),
                cwd: entry.cwd.clone(),
                agent_id: caller.agent_id.to_string(),
                session_key: entry.session_key.clone(),
                node_id: node_id.clone(),
                requested_at_ms: 0,
                expires_at_ms: 0,
            };
            match gw.approvals.ask(gw, approval).await {
                Outcome::Decided(decision, by) => {
                    entry.decided_by = Some(by);
                    entry.decision = match decision {
                        ApprovalDecision::AllowOnce => ApprovalAuditEntryDecision::AllowOnce,
                        ApprovalDecision::AllowAlways => ApprovalAuditEntryDecision::AllowAlways,
                        ApprovalDecision::Deny => ApprovalAuditEntryDecision::Deny,
                    };
                    (decision == ApprovalDecision::Deny)
                        .then(|| "not run: a person denied this command".to_string())
                }
                Outcome::TimedOut => {
                    entry.decided_by = Some("timeout".to_string());
                    entry.decision = ApprovalAuditEntryDecision::Timeout;
                    Some(format!(
                        "not run: nobody approved the command within {} ms",
                        config.approvals.timeout_ms
                    ))
                }
            }
        }
    };
    entry.decided_at_ms = now_ms();
    tracing::info!(agent = %caller.agent_id, command = %command, decision = %entry.decision, "exec decision");
    gw.store
        .record_exec_decision(entry)
        .await
        .map_err(|e| format!("not run: the audit log could not be written ({e})"))?;
    if let Some(refusal) = refusal {
        return Err(refusal);
    }
    let timeout_ms = params
        .timeout_ms
        .unwrap_or(policy.timeout_ms)
        .min(policy.timeout_ms)
        .max(1) as u64;
    match node_id {
        None => {
            if params.cwd.is_none() && policy.cwd.is_none() {
                std::fs::create_dir_all(&cwd)
                    .map_err(|e| format!("cannot create {}: {e}", cwd.display()))?;
            }
            run::on_host(
                &argv,
                &cwd,
                Duration::from_millis(timeout_ms),
                policy.max_output_bytes.max(0) as usize,
            )
            .await
        }
        Some(node_id) => {
            let params = NodesInvokeParams {
                node_id: node_id.parse().map_err(|e| format!("{e}"))?,
                command: NODE_RUN.parse().expect("a valid command"),
                params: Some(json!({"argv": argv, "cwd": asked_cwd, "timeoutMs": timeout_ms})),
                // The node gets the command's time plus a margin to answer.
                timeout_ms: Some((timeout_ms + 5_000).min(600_000) as i64),
                idempotency_key: None,
            };
            let result = crate::nodes::invoke(gw, params)
                .await
                .map_err(|e| e.message)?;
            Ok(serde_json::to_value(result).expect("result serializes"))
        }
    }
}

fn default_policy() -> ExecConfig {
    serde_json::from_value(json!({})).expect("exec policy defaults")
}
