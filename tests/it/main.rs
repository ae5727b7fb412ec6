//! Integration tests: each starts the real `clawgate` binary on an
//! ephemeral port and talks to it over real sockets.

mod approvals;
mod architecture;
mod browser;
mod channels;
mod chat;
mod chat_cli;
mod cli;
mod compat;
mod config_errors;
mod config_rpc;
mod crash;
mod cron;
mod errors;
mod events;
mod fake_anthropic;
mod fake_openai;
mod fake_telegram;
mod handshake;
mod hot_keys;
mod methods;
mod metrics;
mod nodes;
mod openai_api;
mod plugins;
mod providers;
mod reload;
mod robustness;
mod schema;
mod sdk;
mod security;
mod service;
mod sessions;
mod shutdown;
mod support;
mod wire;
