//! The handles services share: built once by the composition root
//! (`gateway`), cloned into each service, which keeps the ones it uses.
//! Nothing here knows any service.

use crate::bus::Bus;
use crate::config::{Config, ConfigWatch};
use crate::health::HealthService;
use crate::metrics::Metrics;
use crate::store::Stores;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone)]
pub struct Runtime {
    pub config: ConfigWatch,
    pub bus: Bus,
    pub stores: Stores,
    pub health: Arc<HealthService>,
    pub presence: Arc<crate::presence::Presence>,
    pub metrics: Arc<Metrics>,
    /// The HTTP client for model providers and channel APIs.
    pub http: reqwest::Client,
    pub shutdown: Shutdown,
    /// Facts fixed at start.
    pub started_at_ms: u64,
    pub state_dir: Arc<PathBuf>,
    /// This gateway's place in a cluster; None when it runs alone.
    pub membership: Option<Arc<crate::cluster::Membership>>,
}

impl Runtime {
    pub fn config(&self) -> Arc<Config> {
        self.config.get()
    }
}

/// The gateway's drain signal, as a service sees it.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn new(signal: watch::Receiver<bool>) -> Self {
        Shutdown(signal)
    }

    /// Whether the gateway is draining.
    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the gateway starts draining.
    pub async fn wait(&self) {
        let mut signal = self.0.clone();
        let _ = signal.wait_for(|closing| *closing).await;
    }

    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.0.clone()
    }
}
