use super::now_ms;
use crate::protocol::types::{
    ChannelHealth, ConfigHealth, CronHealth, GatewayState, HealthSnapshot, NodeHealth,
};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

/// The health snapshot and its version, which increases on every change.
pub struct HealthService {
    started: Instant,
    state: Mutex<HealthState>,
}

struct HealthState {
    version: u64,
    gateway: GatewayState,
    config: ConfigHealth,
    cron: CronHealth,
    nodes: Vec<NodeHealth>,
    channels: BTreeMap<String, ChannelHealth>,
}

impl HealthService {
    pub fn new(started: Instant, config: ConfigHealth, cron_enabled: bool) -> Self {
        HealthService {
            started,
            state: Mutex::new(HealthState {
                version: 1,
                gateway: GatewayState::Ready,
                config,
                cron: CronHealth {
                    enabled: cron_enabled,
                    jobs: 0,
                    running: 0,
                    next_run_at_ms: None,
                    failing: Vec::new(),
                },
                nodes: Vec::new(),
                channels: BTreeMap::new(),
            }),
        }
    }

    /// Records the outcome of a config reload; returns the new snapshot.
    pub fn set_config(&self, config: ConfigHealth) -> HealthSnapshot {
        let mut state = self.state.lock().expect("health lock");
        state.config = config;
        state.version += 1;
        self.build(&state)
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        let state = self.state.lock().expect("health lock");
        self.build(&state)
    }

    /// Changes the gateway state; returns the new snapshot if it changed.
    pub fn set_state(&self, gateway: GatewayState) -> Option<HealthSnapshot> {
        let mut state = self.state.lock().expect("health lock");
        if state.gateway == gateway {
            return None;
        }
        state.gateway = gateway;
        state.version += 1;
        Some(self.build(&state))
    }

    /// Records the cron section; returns the new snapshot when anything
    /// but the next run time changed (that one moves with every run).
    pub fn set_cron(&self, cron: CronHealth) -> Option<HealthSnapshot> {
        let mut state = self.state.lock().expect("health lock");
        let material = CronHealth {
            next_run_at_ms: state.cron.next_run_at_ms,
            ..cron.clone()
        };
        let changed = material != state.cron;
        state.cron = cron;
        if !changed {
            return None;
        }
        state.version += 1;
        Some(self.build(&state))
    }

    /// Records the online nodes; returns the new snapshot when the set
    /// changed (a node's lastSeenMs alone does not count).
    pub fn set_nodes(&self, nodes: Vec<NodeHealth>) -> Option<HealthSnapshot> {
        let mut state = self.state.lock().expect("health lock");
        let ids = |list: &[NodeHealth]| -> Vec<(String, Option<String>)> {
            list.iter()
                .map(|n| (n.id.clone(), n.name.clone()))
                .collect()
        };
        let changed = ids(&nodes) != ids(&state.nodes);
        state.nodes = nodes;
        if !changed {
            return None;
        }
        state.version += 1;
        Some(self.build(&state))
    }

    /// Records the channel accounts; returns the new snapshot when any changed.
    pub fn set_channels(
        &self,
        channels: BTreeMap<String, ChannelHealth>,
    ) -> Option<HealthSnapshot> {
        let mut state = self.state.lock().expect("health lock");
        if state.channels == channels {
            return None;
        }
        state.channels = channels;
        state.version += 1;
        Some(self.build(&state))
    }

    fn build(&self, state: &HealthState) -> HealthSnapshot {
        HealthSnapshot {
            version: state.version,
            timestamp: now_ms(),
            uptime: self.started.elapsed().as_secs_f64(),
            state: state.gateway,
            channels: state.channels.clone().into_iter().collect(),
            nodes: state.nodes.clone(),
            cron: state.cron.clone(),
            config: state.config.clone(),
        }
    }
}
