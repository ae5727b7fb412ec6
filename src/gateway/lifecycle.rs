//! Starting and stopping the services around the listener, in order.

use super::Gateway;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The background work of a started gateway.
pub struct Running {
    tasks: Vec<JoinHandle<()>>,
}

impl Gateway {
    /// Loads what the services keep in the store and starts their
    /// background work: the cron scheduler, the node watchdog, the channel
    /// accounts, the plugins (not waited for), heartbeats, ticks, store
    /// upkeep, the config file watcher, and the settings the root applies itself (log level, metrics).
    pub async fn start(self: &Arc<Self>) -> std::io::Result<Running> {
        let scheduler = self
            .cron
            .spawn_scheduler()
            .await
            .map_err(|e| std::io::Error::other(format!("cannot load the cron jobs: {e}")))?;
        self.nodes
            .load()
            .await
            .map_err(|e| std::io::Error::other(format!("cannot load the nodes: {e}")))?;
        self.devices.load().await.map_err(std::io::Error::other)?;
        // The cluster in health before the first client (with the cron
        // lease, if this gateway took it).
        if let Some(membership) = &self.rt.membership {
            crate::cluster::refresh_membership(membership, &self.rt.health).await;
        }
        let mut tasks = vec![
            scheduler,
            self.nodes.spawn_watchdog(),
            self.channels.start(),
            self.plugins.start(),
            self.heartbeat.spawn(),
            self.spawn_ticker(),
            self.spawn_maintenance(),
            self.follow_settings(),
        ];
        tasks.extend(self.spawn_config_watcher());
        tasks.extend(self.nodes.spawn_follower());
        tasks.extend(self.devices.spawn_follower());
        tasks.extend(self.serve_pairing_answers());
        tasks.extend(self.serve_presence());
        tasks.extend(self.spawn_config_follower());
        if let Some(membership) = &self.rt.membership {
            tasks.push(crate::cluster::spawn_membership(
                Arc::clone(membership),
                Arc::clone(&self.rt.health),
            ));
        }
        Ok(Running { tasks })
    }

    /// After the connections have drained: gives cron runs the rest of
    /// `drain` to finish, saves cron state, stops the channel accounts and
    /// every background task.
    pub async fn stop(&self, running: Running, drain: Duration) {
        if !self.cron.wait_idle(drain).await {
            tracing::warn!(
                "cron runs still in progress at exit are recorded as interrupted at the next start"
            );
        }
        if let Err(e) = self.cron.flush().await {
            tracing::error!("cron changes may be lost: {e}");
        }
        self.cron.resign().await;
        self.channels.stop_all();
        self.plugins.stop_all().await;
        for task in &running.tasks {
            task.abort();
        }
        // Ended, not only told to: a membership renewal in flight would
        // otherwise record this gateway again after it left.
        for task in running.tasks {
            let _ = task.await;
        }
        if let Some(membership) = &self.rt.membership {
            membership.leave().await;
        }
    }

    /// Applies the settings that belong to the process as a whole (log
    /// level, whether metrics are recorded) as each config is put in force.
    fn follow_settings(self: &Arc<Self>) -> JoinHandle<()> {
        let mut follower = self.rt.config.follow();
        let gw = Arc::clone(self);
        tokio::spawn(async move {
            let shutdown = gw.rt.shutdown.clone();
            loop {
                let change = tokio::select! {
                    change = follower.next() => change,
                    _ = shutdown.wait() => return,
                };
                let Some(change) = change else { return };
                gw.rt
                    .metrics
                    .set_enabled(change.after.gateway.http.metrics.enabled);
                if change.before.logging.level != change.after.logging.level {
                    gw.apply_log_level(&change.after.logging.level.to_string());
                }
            }
        })
    }

    fn apply_log_level(&self, level: &str) {
        if let Some(control) = self.log_control.get() {
            if let Err(e) = control(level) {
                tracing::warn!("cannot apply logging.level {level:?}: {e}");
            }
        }
    }
}
