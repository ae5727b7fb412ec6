//! Rules about a configuration that its schema cannot state: cron
//! expressions and time zones, agents that must exist, IRC senders that
//! must be more than a nick. Each returns `(JSON pointer, message)`.

use super::keys;
use crate::clock::now_ms;
use crate::protocol::types::{AgentConfig, ChannelKind, Config, CronPayload};

/// The agent id used when nothing is configured: the offline echo agent.
pub const MAIN_AGENT: &str = "main";

/// The agent named `id`, else `agents.default`: its id and its config
/// (None for the built-in `main` when no agents are configured); the
/// error names the agents there are.
pub fn find_agent<'a>(
    config: &'a Config,
    id: Option<&'a str>,
) -> Result<(&'a str, Option<&'a AgentConfig>), String> {
    let id = id.unwrap_or(config.agents.default.as_str());
    if let Some(agent) = config.agents.extra.get(id) {
        return Ok((id, Some(agent)));
    }
    if id == MAIN_AGENT && config.agents.extra.is_empty() {
        return Ok((MAIN_AGENT, None));
    }
    let mut known: Vec<&str> = config.agents.extra.keys().map(String::as_str).collect();
    known.sort_unstable();
    let known = if known.is_empty() {
        "none (main is the offline echo agent)".to_string()
    } else {
        known.join(", ")
    };
    Err(format!("no agent {id}; configured agents: {known}"))
}

/// Problems with `cron` in a config that the schema cannot see: time
/// zones, cron expressions, RFC 3339 times and agent ids, as
/// `(JSON pointer, message)`.
pub fn cron_problems(config: &Config) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let default_tz = config.cron.timezone.as_ref().map(|t| t.to_string());
    if let Some(tz) = &default_tz {
        if let Err(message) = crate::schedule::parse_tz(tz) {
            problems.push((keys::CRON_TIMEZONE.to_string(), message));
        }
    }
    let default_tz = default_tz.filter(|tz| crate::schedule::parse_tz(tz).is_ok());
    let now = now_ms();
    let mut ids: Vec<&String> = config.cron.jobs.keys().collect();
    ids.sort();
    for id in ids {
        let job = &config.cron.jobs[id];
        let at = crate::pointer::child(keys::CRON_JOBS, id);
        if let Err(e) = crate::schedule::Plan::new(&job.schedule, default_tz.as_deref(), now, now) {
            problems.push((format!("{at}/schedule{}", e.field), e.message));
        }
        if let CronPayload::AgentTurn { .. } = job.payload {
            let agent = job.agent_id.as_ref().map(|a| a.as_str());
            if let Err(message) = find_agent(config, agent) {
                let field = if agent.is_some() {
                    "agentId"
                } else {
                    "payload"
                };
                problems.push((format!("{at}/{field}"), message));
            }
        }
    }
    problems
}

/// A channel kind by name: built-in, or `<plugin>.<kind>`.
pub fn parse_channel_kind(kind: &str) -> Option<ChannelKind> {
    serde_json::from_value(serde_json::Value::String(kind.to_string())).ok()
}

/// Heartbeat settings the schema cannot check: the target names a
/// channel kind (with a recipient), the active hours' time zone exists.
pub fn heartbeat_problems(config: &Config) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for (id, agent) in &config.agents.extra {
        let Some(heartbeat) = &agent.heartbeat else {
            continue;
        };
        let at = format!("{}/heartbeat", crate::pointer::child(keys::AGENTS, id));
        let target = heartbeat.target.as_str();
        if !matches!(target, "last" | "none") {
            if parse_channel_kind(target).is_none() {
                problems.push((
                    format!("{at}/target"),
                    format!("{target:?} is not last, none or a channel kind (telegram, irc, webhook, <plugin>.<kind>)"),
                ));
            } else if heartbeat.to.is_none() {
                problems.push((
                    format!("{at}/to"),
                    format!("target {target} needs to: the chat, nick or peer to write to"),
                ));
            } else if target == "telegram"
                && heartbeat
                    .to
                    .as_ref()
                    .is_some_and(|to| to.parse::<i64>().is_err())
            {
                problems.push((
                    format!("{at}/to"),
                    "a Telegram chat is its numeric id, e.g. 123456789 or -1001234567890"
                        .to_string(),
                ));
            }
        }
        if let Some(tz) = heartbeat
            .active_hours
            .as_ref()
            .and_then(|h| h.timezone.as_ref())
        {
            if let Err(message) = crate::schedule::parse_tz(tz) {
                problems.push((format!("{at}/activeHours/timezone"), message));
            }
        }
    }
    problems
}

/// IRC allowFrom entries that name a nick alone: anyone can take a nick,
/// so only `nick!user@host` (patterns allowed) identifies a sender.
pub fn irc_problems(config: &Config) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for (id, account) in &config.channels.irc {
        let lists = [
            ("allowFrom", Some(&account.allow_from)),
            ("groupAllowFrom", Some(&account.group_allow_from)),
        ];
        for (list, entries) in lists {
            for (i, entry) in entries.into_iter().flatten().enumerate() {
                if !(entry.contains('!') && entry.contains('@')) {
                    problems.push((
                        format!("{}/{id}/{list}/{i}", keys::CHANNELS_IRC),
                        format!(
                            "{entry:?} is a nick alone, which anyone can take: write nick!user@host, e.g. {entry}!*@home.example.net"
                        ),
                    ));
                }
            }
        }
    }
    problems
}

/// Plugin names that would put a plugin's methods or events beside the
/// gateway's own: the first segment of any core method or event name.
pub fn plugin_problems(config: &Config) -> Vec<(String, String)> {
    use crate::protocol::{EventKind, Method, Tool};
    // A plugin's tools reach models as <plugin>_<method>, beside the
    // built-in tools (sessions_list, node_invoke, …).
    let reserved: std::collections::BTreeSet<&str> = Method::ALL
        .iter()
        .map(|m| m.name())
        .chain(EventKind::ALL.iter().map(|e| e.name()))
        .filter_map(|name| name.split('.').next())
        .chain(Tool::ALL.iter().filter_map(|t| t.name().split('_').next()))
        .collect();
    let mut problems: Vec<(String, String)> = config
        .plugins
        .keys()
        .filter(|name| reserved.contains(name.as_str()))
        .map(|name| {
            (
                crate::pointer::child(keys::PLUGINS, name),
                format!(
                    "{} is the gateway's own namespace; name the plugin otherwise (reserved: {})",
                    name.as_str(),
                    reserved.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            )
        })
        .collect();
    for (name, plugin) in &config.plugins {
        for (i, grant) in plugin.grants.iter().enumerate() {
            let at = format!("{}/grants/{i}", crate::pointer::child(keys::PLUGINS, name));
            match Method::from_name(grant) {
                Some(Method::Connect) => problems.push((at, "connect cannot be granted".into())),
                Some(_) => {}
                None => {
                    let known: Vec<String> =
                        Method::ALL.iter().map(|m| m.name().to_string()).collect();
                    let hint = crate::protocol::closest(grant, &known)
                        .map(|best| format!("; did you mean {best}?"))
                        .unwrap_or_default();
                    problems.push((at, format!("no gateway method {}{hint}", grant.as_str())));
                }
            }
        }
    }
    for (i, binding) in config.bindings.iter().enumerate() {
        let Some(ChannelKind::PluginChannelKind(kind)) = &binding.match_.channel else {
            continue;
        };
        let plugin = kind.split_once('.').unwrap_or_default().0;
        if !config.plugins.keys().any(|name| name.as_str() == plugin) {
            problems.push((
                format!("{}/{i}/match/channel", keys::BINDINGS),
                format!(
                    "{} is a plugin's channel, and no plugin {plugin} is configured",
                    kind.as_str()
                ),
            ));
        }
    }
    problems.sort();
    problems
}

/// Problems with `cluster`: a bus without a shared store, credentials
/// written into URLs (where logs and error messages would show them),
/// a store URL PostgreSQL cannot read.
pub fn cluster_problems(config: &Config) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let cluster = &config.cluster;
    if cluster.nats.is_some() && cluster.store.is_none() {
        problems.push((
            keys::CLUSTER_NATS.to_string(),
            "a NATS bus needs cluster.store: gateways that share events must share their state (set cluster.store.url)".to_string(),
        ));
    }
    if let Some(store) = &cluster.store {
        let url = store.url.as_str();
        if userinfo(url).is_some_and(|user| user.contains(':')) {
            problems.push((
                keys::CLUSTER_STORE_URL.to_string(),
                "the URL carries a password; put it in cluster.store.password (prefer ${PGPASSWORD}), which is masked and never logged".to_string(),
            ));
        } else if let Err(e) = url.parse::<tokio_postgres::Config>() {
            problems.push((
                keys::CLUSTER_STORE_URL.to_string(),
                format!("not a PostgreSQL URL: {e}"),
            ));
        }
    }
    if let Some(nats) = &cluster.nats {
        let url = nats.url.as_str();
        if userinfo(url).is_some() {
            problems.push((
                keys::CLUSTER_NATS_URL.to_string(),
                "the URL carries a credential; put the token in cluster.nats.token (prefer ${NATS_TOKEN}), which is masked and never logged".to_string(),
            ));
        } else if nats.token.is_none() && !is_loopback_url(url) {
            problems.push((
                keys::CLUSTER_NATS_TOKEN.to_string(),
                "a NATS server beyond loopback needs a token: whoever can publish on it can answer exec approvals, invoke nodes and add cron jobs (run nats-server with --auth and set cluster.nats.token)".to_string(),
            ));
        }
    }
    problems
}

/// Whether a URL names a loopback host (localhost, 127.0.0.0/8, ::1).
fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The `user[:password]` part of a URL's authority, if any.
fn userinfo(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.rsplit_once('@').map(|(user, _)| user)
}
