//! The agent's exec tool: a command line becomes an exact argv, the
//! agent's policy decides whether it runs, is refused, or waits for a
//! person's approval; every decision goes to the audit log; what runs is
//! exactly what was approved, on the gateway host or on a node.

mod approvals;
mod argv;
mod cluster;
mod policy;
mod run;

pub use approvals::Approvals;

/// Exec decisions and runs: policy, approvals, the audit log, and the
/// host or the node that runs what was allowed.
pub struct Exec {
    rt: Runtime,
    pub approvals: Arc<Approvals>,
    nodes: Arc<NodeService>,
}

impl Exec {
    pub fn new(rt: Runtime, nodes: Arc<NodeService>) -> Self {
        let approvals = Arc::new(Approvals::new(rt.clone()));
        cluster::serve(&rt, &approvals);
        Exec {
            approvals,
            rt,
            nodes,
        }
    }
}

use crate::clock::now_ms;
use crate::nodes::NodeService;
use crate::protocol::types::{
    ApprovalAuditEntry, ApprovalAuditEntryDecision, ApprovalDecision, ExecApproval, ExecConfig,
    ExecToolParams, NodesInvokeParams,
};
use crate::runtime::Runtime;
use approvals::Outcome;
use policy::Verdict;
use serde_json::{json, Value};
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use crate::agent::Caller;

/// The node command that runs an argv.
const NODE_RUN: &str = "system.run";
/// The default working directory, inside the state dir (not the state
/// dir itself, which holds the database).
const WORKSPACE: &str = "workspace";

/// What a caller asks to run, as policy, approval and audit see it.
pub struct Request {
    /// The command as people read it (and allowlists match, word by word).
    pub command: String,
    pub argv: Vec<String>,
    pub cwd: Option<String>,
    pub node_id: Option<String>,
}

impl Request {
    /// An allow-always answer allows exactly this: the argv, in this
    /// directory, on this host or node.
    fn binding(&self) -> String {
        json!({"argv": self.argv, "cwd": self.cwd, "node": self.node_id}).to_string()
    }
}

/// The calling agent's exec policy (defaults when it has none).
pub fn policy_of(config: &crate::config::Config, agent_id: &str) -> ExecConfig {
    config
        .agents
        .extra
        .get(agent_id)
        .and_then(|a| a.exec.clone())
        .unwrap_or_else(default_policy)
}

impl Exec {
    /// Decides whether `request` may run under the agent's policy, asking a
    /// person when the policy says so, and records the decision in the audit
    /// log. Err is what the model is told; nothing may run then.
    pub async fn authorize(
        &self,
        caller: &Caller<'_>,
        policy: &ExecConfig,
        request: &Request,
    ) -> Result<(), String> {
        let allowed_for_good = self
            .rt
            .stores
            .audit
            .exec_allowed(caller.agent_id.to_string())
            .await
            .map_err(|e| e.to_string())?;
        let listed = policy
            .allowlist
            .iter()
            .any(|p| argv::pattern_matches(p, &request.argv))
            || allowed_for_good.contains(&request.binding());
        let mut entry = ApprovalAuditEntry {
            id: NonZeroU64::MIN,
            approval_id: None,
            command: request.command.clone(),
            argv: request.argv.clone(),
            cwd: request.cwd.clone(),
            agent_id: caller.agent_id.to_string(),
            session_key: Some(caller.session_key.to_string()),
            node_id: request.node_id.clone(),
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
                    command: request.command.clone(),
                    argv: request.argv.clone(),
                    cwd: request.cwd.clone(),
                    agent_id: caller.agent_id.to_string(),
                    session_key: entry.session_key.clone(),
                    node_id: request.node_id.clone(),
                    requested_at_ms: 0,
                    expires_at_ms: 0,
                };
                match self.approvals.ask(approval).await {
                    Outcome::Decided(decision, by) => {
                        entry.decided_by = Some(by);
                        entry.decision = match decision {
                            ApprovalDecision::AllowOnce => ApprovalAuditEntryDecision::AllowOnce,
                            ApprovalDecision::AllowAlways => {
                                ApprovalAuditEntryDecision::AllowAlways
                            }
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
                            self.rt.config().approvals.timeout_ms
                        ))
                    }
                }
            }
        };
        entry.decided_at_ms = now_ms();
        tracing::info!(agent = %caller.agent_id, command = %request.command, decision = %entry.decision, "exec decision");
        self.rt
            .stores
            .audit
            .record_exec_decision(entry, request.binding())
            .await
            .map_err(|e| format!("not run: the audit log could not be written ({e})"))?;
        match refusal {
            Some(refusal) => Err(refusal),
            None => Ok(()),
        }
    }

    /// Records that an operator (not an agent) had a node run a dangerous
    /// command directly; `by` names the connection.
    pub async fn audit_operator_invoke(
        &self,
        by: &str,
        request: &Request,
    ) -> Result<(), crate::store::StoreError> {
        let now = now_ms();
        let entry = ApprovalAuditEntry {
            id: NonZeroU64::MIN,
            approval_id: None,
            command: request.command.clone(),
            argv: request.argv.clone(),
            cwd: request.cwd.clone(),
            agent_id: OPERATOR.to_string(),
            session_key: None,
            node_id: request.node_id.clone(),
            decision: ApprovalAuditEntryDecision::Allowed,
            decided_by: Some(by.to_string()),
            requested_at_ms: now,
            decided_at_ms: now,
        };
        self.rt
            .stores
            .audit
            .record_exec_decision(entry, request.binding())
            .await
            .map(|_| ())
    }
}

/// The audit log's agent for commands an operator ran directly.
const OPERATOR: &str = "(operator)";

/// The params of a system.run that reads as its argv: anything else sent
/// along (an environment, another command field) would reach the node
/// without being part of what was approved.
const NODE_RUN_PARAMS: &[&str] = &["argv", "cwd", "timeoutMs"];

/// How a node command reads in approvals and the audit log: system.run
/// with only an argv (and cwd, timeout) as that argv, anything else as
/// its name and all its params.
pub fn node_request(node_id: &str, command: &str, params: Option<&Value>) -> Request {
    let plain = params
        .and_then(Value::as_object)
        .is_some_and(|p| p.keys().all(|k| NODE_RUN_PARAMS.contains(&k.as_str())));
    let argv: Option<Vec<String>> = (command == NODE_RUN && plain)
        .then(|| params?.get("argv").cloned())
        .flatten()
        .and_then(|a| serde_json::from_value(a).ok())
        .filter(|a: &Vec<String>| !a.is_empty());
    let (argv, cwd) = match argv {
        Some(argv) => {
            let cwd = params
                .and_then(|p| p.get("cwd"))
                .and_then(Value::as_str)
                .map(str::to_string);
            (argv, cwd)
        }
        None => {
            let mut argv = vec![command.to_string()];
            argv.extend(params.filter(|p| !p.is_null()).map(Value::to_string));
            (argv, None)
        }
    };
    Request {
        command: argv::display(&argv),
        argv,
        cwd,
        node_id: Some(node_id.to_string()),
    }
}

impl Exec {
    /// Runs the exec tool; an Err is what the model is told.
    pub async fn run_tool(
        &self,
        caller: &Caller<'_>,
        params: ExecToolParams,
    ) -> Result<Value, String> {
        let config = self.rt.config();
        let policy = policy_of(&config, caller.agent_id);
        let argv = argv::split(&params.command).map_err(|e| format!("invalid command: {e}"))?;
        let asked_cwd = params.cwd.as_ref().map(|c| c.to_string());
        let cwd = asked_cwd
            .clone()
            .or_else(|| policy.cwd.as_ref().map(|c| c.to_string()))
            .map(PathBuf::from)
            .unwrap_or_else(|| self.rt.state_dir.join(WORKSPACE));
        let node_id = params.node_id.map(|n| n.to_string());
        let request = Request {
            command: argv::display(&argv),
            argv: argv.clone(),
            // A node runs in its own default directory unless one is named.
            cwd: match &node_id {
                Some(_) => asked_cwd.clone(),
                None => Some(cwd.display().to_string()),
            },
            node_id: node_id.clone(),
        };
        self.authorize(caller, &policy, &request).await?;
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
                let result = self
                    .nodes
                    .invoke(params, "agent")
                    .await
                    .map_err(|e| e.message)?;
                Ok(serde_json::to_value(result).expect("result serializes"))
            }
        }
    }
}

fn default_policy() -> ExecConfig {
    serde_json::from_value(json!({})).expect("exec policy defaults")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_node_run_reads_as_its_argv_only_when_nothing_else_is_sent() {
        let plain = node_request(
            "box",
            NODE_RUN,
            Some(&json!({"argv": ["ls"], "cwd": "/tmp", "timeoutMs": 1000})),
        );
        assert_eq!(plain.argv, ["ls"]);
        assert_eq!(plain.cwd.as_deref(), Some("/tmp"));
        // Whatever else rides along is part of what is approved and
        // audited, so an allowlisted `ls` does not carry it through.
        let extra = node_request(
            "box",
            NODE_RUN,
            Some(&json!({"argv": ["ls"], "env": {"LD_PRELOAD": "/tmp/x.so"}})),
        );
        assert_eq!(extra.argv[0], NODE_RUN);
        assert!(extra.command.contains("LD_PRELOAD"), "{}", extra.command);
        assert!(extra.cwd.is_none());
    }
}
