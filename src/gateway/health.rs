use super::now_ms;
use crate::protocol::types::{CronHealth, GatewayState, HealthSnapshot};
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
}

impl HealthService {
    pub fn new(started: Instant) -> Self {
        HealthService {
            started,
            state: Mutex::new(HealthState {
                version: 1,
                gateway: GatewayState::Ready,
            }),
        }
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

    fn build(&self, state: &HealthState) -> HealthSnapshot {
        HealthSnapshot {
            version: state.version,
            timestamp: now_ms(),
            uptime: self.started.elapsed().as_secs_f64(),
            state: state.gateway,
            channels: Default::default(),
            nodes: Vec::new(),
            cron: CronHealth {
                enabled: false,
                jobs: 0,
                next_run_at_ms: None,
            },
        }
    }
}
