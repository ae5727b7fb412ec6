//! clawgate: a schema-first control-plane gateway.

pub mod agent;
pub mod bounded;
pub mod bus;
pub mod channels;
pub mod cli;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod compat;
pub mod config;
pub mod cron;
pub mod devices;
pub mod discovery;
pub mod docs;
pub mod exec;
// Entry points for the fuzz targets in fuzz/, which cannot reach private items.
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod health;
pub mod heartbeat;
pub mod idempotency;
pub mod limiter;
pub mod locks;
pub mod logs;
pub mod metrics;
pub mod nodes;
pub mod pattern;
pub mod plugins;
pub mod pointer;
pub mod presence;
pub mod protocol;
pub mod runtime;
pub mod schedule;
pub mod sdk;
pub mod server;
pub mod store;
pub mod systemd;
pub mod tailscale;
#[cfg(test)]
mod testing;
pub mod tls;
