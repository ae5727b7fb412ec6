//! The health snapshot: each service reports its own section, and every
//! change is published as `health.changed` from here, and only here.

use crate::bus::Bus;
use crate::clock::now_ms;
use crate::protocol::types::{
    ChannelHealth, ClusterHealth, ConfigHealth, CronHealth, GatewayState, HealthSnapshot,
    NodeHealth, PluginHealth, SidecarHealth, SidecarHealthName, TlsInfo,
};
use crate::protocol::Event;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The health snapshot and its version, which increases on every change.
pub struct HealthService {
    started: Instant,
    bus: Bus,
    state: Mutex<HealthState>,
    /// Moved by presence; shown here without a new health version.
    presence_version: Arc<AtomicU64>,
}

struct HealthState {
    version: u64,
    gateway: GatewayState,
    config: ConfigHealth,
    cron: CronHealth,
    nodes: Vec<NodeHealth>,
    channels: BTreeMap<String, ChannelHealth>,
    plugins: BTreeMap<String, PluginHealth>,
    sidecars: Vec<SidecarHealth>,
    cluster: Option<ClusterHealth>,
    tls: Option<TlsInfo>,
}

impl HealthService {
    pub fn new(started: Instant, bus: Bus, config: ConfigHealth, cron_enabled: bool) -> Self {
        HealthService {
            started,
            bus,
            presence_version: Arc::default(),
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
                plugins: BTreeMap::new(),
                sidecars: Vec::new(),
                cluster: None,
                tls: None,
            }),
        }
    }

    /// The presence version counter, for presence to move.
    pub fn presence_version(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.presence_version)
    }

    /// Records the outcome of a config reload.
    pub fn set_config(&self, config: ConfigHealth) {
        let mut state = self.state.lock().expect("health lock");
        state.config = config;
        self.changed(&mut state);
    }

    /// The config section as it stands.
    pub fn config(&self) -> ConfigHealth {
        self.state.lock().expect("health lock").config.clone()
    }

    /// The health version now.
    pub fn version(&self) -> u64 {
        self.state.lock().expect("health lock").version
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        let state = self.state.lock().expect("health lock");
        self.build(&state)
    }

    /// Changes the gateway state.
    pub fn set_state(&self, gateway: GatewayState) {
        let mut state = self.state.lock().expect("health lock");
        if state.gateway != gateway {
            state.gateway = gateway;
            self.changed(&mut state);
        }
    }

    /// Records the cron section; a change to anything but the next run
    /// time is published (that one moves with every run).
    pub fn set_cron(&self, cron: CronHealth) {
        let mut state = self.state.lock().expect("health lock");
        let material = CronHealth {
            next_run_at_ms: state.cron.next_run_at_ms,
            ..cron.clone()
        };
        let changed = material != state.cron;
        state.cron = cron;
        if changed {
            self.changed(&mut state);
        }
    }

    /// Records the online nodes; a change of the set is published (a
    /// node's lastSeenMs alone does not count).
    pub fn set_nodes(&self, nodes: Vec<NodeHealth>) {
        let mut state = self.state.lock().expect("health lock");
        let ids = |list: &[NodeHealth]| -> Vec<(String, Option<String>)> {
            list.iter()
                .map(|n| (n.id.clone(), n.name.clone()))
                .collect()
        };
        let changed = ids(&nodes) != ids(&state.nodes);
        state.nodes = nodes;
        if changed {
            self.changed(&mut state);
        }
    }

    /// Records the channel accounts.
    pub fn set_channels(&self, channels: BTreeMap<String, ChannelHealth>) {
        let mut state = self.state.lock().expect("health lock");
        if state.channels != channels {
            state.channels = channels;
            self.changed(&mut state);
        }
    }

    /// Records the plugins.
    pub fn set_plugins(&self, plugins: BTreeMap<String, PluginHealth>) {
        let mut state = self.state.lock().expect("health lock");
        if state.plugins != plugins {
            state.plugins = plugins;
            self.changed(&mut state);
        }
    }

    /// Records the state of one sidecar (Tailscale publishing, discovery).
    pub fn set_sidecar(&self, sidecar: SidecarHealth) {
        let mut state = self.state.lock().expect("health lock");
        let name: SidecarHealthName = sidecar.name;
        match state.sidecars.iter_mut().find(|s| s.name == name) {
            Some(known) if *known == sidecar => return,
            Some(known) => *known = sidecar,
            None => {
                state.sidecars.push(sidecar);
                state.sidecars.sort_by_key(|s| s.name.to_string());
            }
        }
        self.changed(&mut state);
    }

    /// Records this gateway's view of its cluster. Renewal times alone
    /// do not make a new version; members, holders and states do.
    pub fn set_cluster(&self, cluster: ClusterHealth) {
        let mut state = self.state.lock().expect("health lock");
        let same = state
            .cluster
            .as_ref()
            .is_some_and(|known| cluster_shape(known) == cluster_shape(&cluster));
        state.cluster = Some(cluster);
        if !same {
            self.changed(&mut state);
        }
    }

    /// Records the served TLS certificate and the last look at its files.
    pub fn set_tls(&self, tls: TlsInfo) {
        let mut state = self.state.lock().expect("health lock");
        if state.tls.as_ref() != Some(&tls) {
            state.tls = Some(tls);
            self.changed(&mut state);
        }
    }

    pub fn tls(&self) -> Option<TlsInfo> {
        self.state.lock().expect("health lock").tls.clone()
    }

    /// A new version, published under the lock so that subscribers see
    /// the versions in order.
    fn changed(&self, state: &mut HealthState) {
        state.version += 1;
        self.bus.publish(Event::HealthChanged(self.build(state)));
    }

    fn build(&self, state: &HealthState) -> HealthSnapshot {
        HealthSnapshot {
            version: state.version,
            presence_version: self.presence_version.load(Ordering::Relaxed),
            timestamp: now_ms(),
            uptime: self.started.elapsed().as_secs_f64(),
            state: state.gateway,
            channels: state.channels.clone().into_iter().collect(),
            plugins: state.plugins.clone().into_iter().collect(),
            nodes: state.nodes.clone(),
            cron: state.cron.clone(),
            config: state.config.clone(),
            sidecars: state.sidecars.clone(),
            cluster: state.cluster.clone(),
            tls: state.tls.clone(),
        }
    }
}

/// What a cluster view is without its renewal times.
fn cluster_shape(cluster: &ClusterHealth) -> ClusterHealth {
    let mut shape = cluster.clone();
    for member in &mut shape.members {
        member.last_seen_ms = 0;
    }
    for lease in &mut shape.leases {
        lease.expires_at_ms = 0;
    }
    shape
}

#[cfg(test)]
mod tests {
    use crate::protocol::types::{GatewayState, NodeHealth};
    use crate::protocol::EventKind;
    use crate::testing;

    #[test]
    fn only_a_real_change_is_published_with_a_new_version() {
        let fakes = testing::runtime(testing::config(""));
        let health = &fakes.rt.health;
        let node = |seen| NodeHealth {
            id: "node-1".into(),
            name: Some("kitchen".into()),
            last_seen_ms: seen,
        };
        health.set_nodes(vec![node(1)]);
        health.set_nodes(vec![node(2)]); // only lastSeenMs moved
        health.set_state(GatewayState::Ready); // already ready
        health.set_state(GatewayState::Draining);
        let published = fakes.bus.payloads(EventKind::HealthChanged);
        let versions: Vec<u64> = published
            .iter()
            .map(|h| h["version"].as_u64().unwrap())
            .collect();
        assert_eq!(versions, [2, 3]);
        assert_eq!(published[1]["state"], "draining");
        assert_eq!(health.snapshot().version, 3);
        assert_eq!(health.snapshot().nodes[0].last_seen_ms, 2);
    }
}
