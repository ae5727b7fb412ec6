//! Channels that plugins provide: an account of `<plugin>.<kind>` waits
//! for its plugin to run, takes the messages the plugin reports for it
//! through the same pipeline as built-in channels (so the account's
//! policy applies whatever the plugin does), and sends the replies back
//! through the plugin.

use super::inbound::{Inbound, Reply};
use super::Link;
use crate::config::Config;
use crate::protocol::types::{
    ChannelKind, PluginChannelAccount, PluginChannelKind, PluginInbound, PluginSend,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One configured account of a plugin's channel.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginAccount {
    pub plugin: String,
    /// The kind as the plugin's manifest declares it.
    pub kind: String,
    pub id: String,
    pub config: PluginChannelAccount,
}

impl PluginAccount {
    /// `<plugin>.<kind>`, as clients and bindings name the channel.
    pub fn channel_kind(&self) -> ChannelKind {
        let name = format!("{}.{}", self.plugin, self.kind);
        // Both parts match the config's name patterns, so the pair
        // matches PluginChannelKind's.
        let kind = PluginChannelKind::try_from(name).expect("config names make a channel kind");
        ChannelKind::PluginChannelKind(kind)
    }
}

/// The enabled accounts of the enabled plugins' channels.
pub fn accounts(config: &Config) -> Vec<PluginAccount> {
    let mut all = Vec::new();
    for (plugin, settings) in config.plugins.iter().filter(|(_, p)| p.enabled) {
        for (kind, accounts) in &settings.channels {
            for (id, account) in accounts.iter().filter(|(_, a)| a.enabled) {
                all.push(PluginAccount {
                    plugin: plugin.to_string(),
                    kind: kind.to_string(),
                    id: id.to_string(),
                    config: account.clone(),
                });
            }
        }
    }
    all
}

/// How a running plugin delivers replies for its channels.
pub trait Outbox: Send + Sync {
    /// Resolves once the plugin has delivered the reply, or with why not.
    fn send(&self, send: PluginSend) -> BoxFuture<'_, Result<(), String>>;
}

/// An account's connection to its running plugin.
pub struct Opened {
    /// The messages the plugin reports for the account; closed when the
    /// plugin stops.
    pub inbound: mpsc::Receiver<PluginInbound>,
    pub outbox: Arc<dyn Outbox>,
    /// The longest reply the channel sends at once.
    pub max_chars: usize,
}

/// The plugins' side of plugin channels.
pub trait PluginChannels: Send + Sync {
    /// Waits for the plugin to run, then connects the account to it; an
    /// error when the running plugin does not provide the kind.
    fn open<'a>(&'a self, account: &'a PluginAccount) -> BoxFuture<'a, Result<Opened, String>>;
}

/// Runs one account for as long as its plugin runs.
pub async fn run(
    link: &Link,
    account: &PluginAccount,
    plugins: Arc<dyn PluginChannels>,
) -> Result<(), String> {
    let opened = plugins.open(account).await;
    drop(plugins);
    let Opened {
        mut inbound,
        outbox,
        max_chars,
    } = opened?;
    link.connected();
    link.can_send(Reply::Plugin(Replier {
        outbox: Arc::clone(&outbox),
        kind: account.kind.clone(),
        account: account.id.clone(),
        peer: String::new(),
        group: None,
        max_chars,
    }));
    let policy = super::Account::Plugin(account.clone()).policy();
    while let Some(message) = inbound.recv().await {
        let from = message.from.to_string();
        let peer = message.peer.map_or_else(|| from.clone(), |p| p.to_string());
        let group = message.group.map(|g| g.to_string());
        let reply = Reply::Plugin(Replier {
            outbox: Arc::clone(&outbox),
            kind: account.kind.clone(),
            account: account.id.clone(),
            peer: peer.clone(),
            group: group.clone(),
            max_chars,
        });
        let message = Inbound {
            from,
            peer,
            group,
            text: message.text.to_string(),
            mentioned: message.mentioned,
        };
        // A refused message is counted and logged by the pipeline.
        let _ = link.dispatch(&policy, message, reply);
    }
    Err(format!("plugin {} stopped", account.plugin))
}

/// Answers one message through the plugin.
#[derive(Clone)]
pub struct Replier {
    outbox: Arc<dyn Outbox>,
    kind: String,
    account: String,
    peer: String,
    group: Option<String>,
    max_chars: usize,
}

impl Replier {
    pub fn limit(&self) -> usize {
        self.max_chars
    }

    /// The group it answers in, else the peer.
    pub fn target(&self) -> String {
        self.group.clone().unwrap_or_else(|| self.peer.clone())
    }

    /// The same account, writing to the peer `to` directly.
    pub fn retarget(&self, to: &str) -> Result<Replier, String> {
        Ok(Replier {
            peer: to.to_string(),
            group: None,
            ..self.clone()
        })
    }

    pub async fn send(&self, text: &str, session_key: &str) -> Result<(), String> {
        self.outbox
            .send(PluginSend {
                channel: self.kind.clone(),
                account: self.account.clone(),
                peer: self.peer.clone(),
                group: self.group.clone(),
                text: text.to_string(),
                session_key: session_key.to_string(),
            })
            .await
    }
}
