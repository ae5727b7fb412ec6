use super::Gateway;
use crate::protocol::types::{BindInfo, StatusResult};
use crate::protocol::PROTOCOL_VERSION;

pub fn status(gw: &Gateway) -> StatusResult {
    let config = gw.config();
    let bind = gw.info.bind.get().cloned().unwrap_or_else(|| BindInfo {
        mode: config.gateway.bind.to_string(),
        host: String::new(),
        port: config.gateway.port,
        addresses: Vec::new(),
        reason: "not listening yet".to_string(),
    });
    StatusResult {
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: std::num::NonZeroU64::new(PROTOCOL_VERSION as u64)
            .expect("protocol versions start at 1"),
        uptime: gw.info.started.elapsed().as_secs_f64(),
        started_at: gw.rt.started_at_ms,
        bind,
        auth_mode: config.gateway.auth.mode.to_string(),
        tls: gw.rt.health.tls(),
        connections: gw.connections.counts(),
        config_path: gw
            .info
            .config_path
            .as_ref()
            .map(|p| p.display().to_string()),
        state_dir: gw.rt.state_dir.display().to_string(),
        config: gw.configs.health(),
        agents: agents(&config),
        plugins: gw.plugins.statuses(),
        maintenance: gw.maintenance.statuses(),
    }
}

fn agents(config: &crate::config::Config) -> Vec<crate::protocol::types::AgentInfo> {
    use crate::agent::Agent;
    use crate::protocol::types::AgentInfo;
    let default = config.agents.default.as_str();
    let mut ids: Vec<&str> = config.agents.extra.keys().map(String::as_str).collect();
    if ids.is_empty() {
        ids.push(crate::agent::MAIN);
    }
    ids.sort_unstable();
    ids.into_iter()
        .filter_map(|id| Agent::resolve(config, Some(id)).ok())
        .map(|agent| AgentInfo {
            default: agent.id == default,
            offline: agent.is_offline(),
            provider: agent.provider.to_string(),
            model: agent.config.as_ref().and_then(|c| c.model.clone()),
            id: agent.id,
        })
        .collect()
}
