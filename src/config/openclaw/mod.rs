//! An OpenClaw config (openclaw.json, and its cron/jobs.json) carried over
//! to a clawgate config: the gateway's port, bind and auth, agents and
//! their models, Telegram and IRC accounts with their policies, bindings,
//! the session scope, heartbeats and cron jobs. Everything else is listed
//! with the reason it was left out. The result always validates: a value
//! clawgate refuses is left out and listed too.

mod agents;
mod channels;

use serde_json::{json, Map, Value};

/// A setting that was not carried over.
#[derive(Clone, Debug, PartialEq)]
pub struct Left {
    /// Where it is in the OpenClaw config (dotted).
    pub key: String,
    pub why: String,
}

pub struct Imported {
    /// The clawgate config, as JSON.
    pub config: Value,
    pub left: Vec<Left>,
}

/// Top-level sections clawgate has no counterpart for, and why.
const NO_COUNTERPART: &[(&str, &str)] = &[
    ("messages", "message formatting and queueing are not configurable in clawgate"),
    ("commands", "chat commands (and ownerAllowFrom) are not part of clawgate"),
    ("hooks", "clawgate's inbound hooks are signed webhook channel accounts ([channels.webhook.<id>]); set one up by hand"),
    ("tools", "clawgate's tools are listed per agent (agents.<id>.tools) with their own names"),
    ("skills", "clawgate has no skills"),
    ("plugins", "clawgate plugins are separate executables with a manifest, not OpenClaw plugins"),
    ("memory", "clawgate has no memory store"),
    ("auth", "model provider logins: clawgate takes an API key per agent"),
    ("env", "set environment variables in the service that runs clawgate"),
    ("secrets", "clawgate reads secrets from ${VAR} references"),
    ("talk", "clawgate has no voice mode"),
    ("tts", "clawgate has no text to speech"),
    ("browser", "clawgate has no browser tool"),
    ("ui", "the Control UI has no settings beyond gateway.controlUi.enabled"),
    ("update", "clawgate does not update itself"),
    ("acp", "clawgate does not run ACP agents"),
    ("mcp", "clawgate does not connect to MCP servers"),
    ("wizard", "OpenClaw's own bookkeeping"),
    ("meta", "OpenClaw's own bookkeeping"),
];

/// Reads `openclaw` (and the jobs of its cron/jobs.json); `home` expands
/// `~/` in paths.
pub fn import(openclaw: &Value, jobs: Option<&Value>, home: Option<&str>) -> Imported {
    let mut run = Import {
        out: json!({"version": super::migrate::current_version()}),
        left: Vec::new(),
        home: home.map(str::to_string),
    };
    run.gateway(&openclaw["gateway"]);
    run.discovery(&openclaw["discovery"]);
    let default_agent = run.agents(openclaw);
    run.channels(&openclaw["channels"]);
    run.bindings(&openclaw["bindings"], &openclaw["channels"]);
    run.session(&openclaw["session"]);
    run.cron(&openclaw["cron"], jobs, &default_agent);
    if let Some(level) = openclaw["logging"]["level"].as_str() {
        match level {
            "error" | "warn" | "info" | "debug" | "trace" => {
                run.set(&["logging", "level"], json!(level))
            }
            other => run.leave(
                &["logging", "level"],
                format!("{other:?} is not a clawgate log level"),
            ),
        }
    }
    for (key, why) in NO_COUNTERPART {
        if openclaw.get(*key).is_some() {
            run.leave(&[key], why.to_string());
        }
    }
    run.settle();
    Imported {
        config: run.out,
        left: run.left,
    }
}

struct Import {
    out: Value,
    left: Vec<Left>,
    home: Option<String>,
}

impl Import {
    /// Sets the value at `path`; nothing when a value that is not a
    /// table is on the way.
    fn set(&mut self, path: &[&str], value: Value) {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut at = &mut self.out;
        for key in parents {
            let Some(map) = at.as_object_mut() else {
                return;
            };
            at = map.entry(key.to_string()).or_insert_with(|| json!({}));
        }
        if let Some(map) = at.as_object_mut() {
            map.insert(last.to_string(), value);
        }
    }

    fn leave(&mut self, path: &[&str], why: impl Into<String>) {
        let left = Left {
            key: path.join("."),
            why: why.into(),
        };
        // Settings inherited by several accounts are reported once.
        if !self.left.contains(&left) {
            self.left.push(left);
        }
    }

    /// Leaves `at` followed by `tail`.
    fn leave_under(&mut self, at: &[&str], tail: &[&str], why: impl Into<String>) {
        let path: Vec<&str> = at.iter().chain(tail).copied().collect();
        self.leave(&path, why);
    }

    /// Keys of `section` other than `known`, each left with `why`.
    fn leave_others(&mut self, path: &[&str], section: &Value, known: &[&str], why: &str) {
        for key in section.as_object().into_iter().flatten().map(|(k, _)| k) {
            if !known.contains(&key.as_str()) {
                let mut at = path.to_vec();
                at.push(key);
                self.leave(&at, why);
            }
        }
    }

    /// A secret as clawgate writes it: the value, or `${VAR}` for an
    /// environment SecretRef.
    fn secret(&mut self, path: &[&str], value: &Value) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            Value::Object(r) if r.get("source").and_then(Value::as_str) == Some("env") => {
                match r.get("id").and_then(Value::as_str) {
                    Some(var) => Some(format!("${{{var}}}")),
                    None => {
                        self.leave(path, "an env SecretRef without an id");
                        None
                    }
                }
            }
            _ => {
                self.leave(
                    path,
                    "only env SecretRefs carry over (as ${VAR}); file, exec and store refs do not",
                );
                None
            }
        }
    }

    /// A plain string: `${VAR}` outside a secret is not expanded by clawgate.
    fn plain(&mut self, path: &[&str], value: &Value) -> Option<String> {
        let s = value.as_str()?;
        if s.contains("${") {
            self.leave(
                path,
                "clawgate expands ${VAR} only in secrets; write the value itself",
            );
            return None;
        }
        Some(s.to_string())
    }

    fn path(&self, value: &Value) -> Option<String> {
        let s = value.as_str()?;
        Some(match (s.strip_prefix("~/"), &self.home) {
            (Some(rest), Some(home)) => format!("{}/{rest}", home.trim_end_matches('/')),
            _ => s.to_string(),
        })
    }

    fn gateway(&mut self, gateway: &Value) {
        const AT: &str = "gateway";
        if let Some(port) = gateway["port"].as_u64() {
            self.set(&[AT, "port"], json!(port));
        }
        match (gateway["bind"].as_str(), gateway["customBindHost"].as_str()) {
            (Some(bind @ ("loopback" | "lan" | "tailnet" | "auto")), _) => {
                self.set(&[AT, "bind"], json!(bind))
            }
            (Some("custom"), Some(host)) => self.set(&[AT, "host"], json!(host)),
            (Some(other), _) => self.leave(
                &[AT, "bind"],
                format!("{other}: clawgate binds loopback, lan, tailnet, auto or gateway.host (kept loopback)"),
            ),
            (None, _) => {}
        }
        if gateway["mode"].as_str() == Some("remote") {
            self.leave(
                &[AT, "mode"],
                "remote: this file configures a client of another gateway",
            );
        }
        let auth = &gateway["auth"];
        match auth["mode"].as_str() {
            Some(mode @ ("none" | "token" | "password")) => {
                self.set(&[AT, "auth", "mode"], json!(mode))
            }
            Some(other) => self.leave(
                &[AT, "auth", "mode"],
                format!("{other} is not a clawgate auth mode (token, password or none)"),
            ),
            None => {}
        }
        if let Some(allow) = auth["allowTailscale"].as_bool() {
            self.set(&[AT, "auth", "allowTailscale"], json!(allow));
        }
        for key in ["token", "password"] {
            if let Some(secret) = self.secret(&[AT, "auth", key], &auth[key]) {
                self.set(&[AT, "auth", key], json!(secret));
            }
        }
        let limit = &auth["rateLimit"];
        match (limit["maxAttempts"].as_u64(), limit["windowMs"].as_u64()) {
            (Some(n), None | Some(60_000)) => {
                self.set(&[AT, "auth", "maxFailuresPerMinute"], json!(n))
            }
            (Some(_), Some(_)) => self.leave(
                &[AT, "auth", "rateLimit"],
                "clawgate counts failures per minute; the window differs",
            ),
            _ => {}
        }
        self.leave_others(
            &[AT, "auth"],
            auth,
            &["mode", "token", "password", "rateLimit", "allowTailscale"],
            "no counterpart in clawgate's gateway.auth",
        );
        if let Some(enabled) = gateway["controlUi"]["enabled"].as_bool() {
            self.set(&[AT, "controlUi", "enabled"], json!(enabled));
        }
        self.leave_others(
            &[AT, "controlUi"],
            &gateway["controlUi"],
            &["enabled"],
            "the Control UI is served at /",
        );
        let endpoints = &gateway["http"]["endpoints"];
        if let Some(enabled) = endpoints["chatCompletions"]["enabled"].as_bool() {
            self.set(&[AT, "http", "chatCompletions", "enabled"], json!(enabled));
        }
        self.leave_others(
            &[AT, "http", "endpoints"],
            endpoints,
            &["chatCompletions"],
            "clawgate serves /v1/chat/completions only",
        );
        let tailscale = &gateway["tailscale"];
        match tailscale["mode"].as_str() {
            Some(mode @ ("off" | "serve" | "funnel")) => {
                self.set(&[AT, "tailscale", "mode"], json!(mode))
            }
            Some(other) => self.leave(
                &[AT, "tailscale", "mode"],
                format!("{other} is not a Tailscale mode (off, serve or funnel)"),
            ),
            None => {}
        }
        if let Some(reset) = tailscale["resetOnExit"].as_bool() {
            self.set(&[AT, "tailscale", "resetOnExit"], json!(reset));
        }
        self.leave_others(
            &[AT, "tailscale"],
            tailscale,
            &["mode", "resetOnExit"],
            "no counterpart in clawgate's gateway.tailscale",
        );
        let tls = &gateway["tls"];
        if let Some(enabled) = tls["enabled"].as_bool() {
            self.set(&[AT, "tls", "enabled"], json!(enabled));
        }
        if let Some(generate) = tls["autoGenerate"].as_bool() {
            self.set(&[AT, "tls", "autoGenerate"], json!(generate));
        }
        for key in ["certPath", "keyPath"] {
            if let Some(path) = self.path(&tls[key]) {
                self.set(&[AT, "tls", key], json!(path));
            }
        }
        if tls.get("caPath").is_some() {
            self.leave(
                &[AT, "tls", "caPath"],
                "clawgate's caPath makes a client certificate from that CA mandatory (mutual TLS); \
                 set it by hand if that is what it was for, and put intermediate certificates in certPath"
                    .to_string(),
            );
        }
        self.leave_others(
            &[AT, "tls"],
            tls,
            &["enabled", "autoGenerate", "certPath", "keyPath", "caPath"],
            "no counterpart in clawgate's gateway.tls",
        );
        self.leave_others(
            &[AT],
            gateway,
            &[
                "port",
                "bind",
                "mode",
                "auth",
                "controlUi",
                "http",
                "tailscale",
                "tls",
                "customBindHost",
            ],
            "no counterpart in clawgate's gateway section",
        );
    }

    fn discovery(&mut self, discovery: &Value) {
        const AT: &str = "discovery";
        match discovery["mdns"]["mode"].as_str() {
            Some(mode @ ("off" | "minimal" | "full")) => {
                self.set(&[AT, "mdns", "mode"], json!(mode))
            }
            Some(other) => self.leave(
                &[AT, "mdns", "mode"],
                format!("{other} is not an mDNS mode (off, minimal or full)"),
            ),
            None => {}
        }
        self.leave_others(
            &[AT],
            discovery,
            &["mdns"],
            "clawgate advertises on the LAN with mDNS only (no wide-area DNS-SD)",
        );
    }

    fn session(&mut self, session: &Value) {
        const AT: &str = "session";
        match session["dmScope"].as_str() {
            Some(scope @ ("main" | "per-peer" | "per-channel-peer")) => {
                self.set(&[AT, "dmScope"], json!(scope))
            }
            Some("per-account-channel-peer") => {
                self.set(&[AT, "dmScope"], json!("per-channel-peer"));
                self.leave(
                    &[AT, "dmScope"],
                    "per-account-channel-peer became per-channel-peer",
                );
            }
            Some(other) => self.leave(
                &[AT, "dmScope"],
                format!("{other} is not a clawgate dmScope"),
            ),
            None => {}
        }
        if let Some(after) = session["maintenance"]["pruneAfter"].as_str() {
            match agents::duration_seconds(after) {
                Some(seconds) if seconds > 0 => {
                    self.set(&[AT, "retentionDays"], json!(seconds.div_ceil(86_400)))
                }
                _ => self.leave(
                    &[AT, "maintenance", "pruneAfter"],
                    "not a duration clawgate reads (like 30d)",
                ),
            }
        }
        self.leave_others(
            &[AT, "maintenance"],
            &session["maintenance"],
            &["pruneAfter", "mode"],
            "clawgate prunes sessions by age only (session.retentionDays)",
        );
        if session["scope"].as_str().is_some_and(|s| s != "per-sender") {
            self.leave(
                &[AT, "scope"],
                "a global session: clawgate keeps sessions per sender, as dmScope says",
            );
        }
        if session["mainKey"].as_str().is_some_and(|k| k != "main") {
            self.leave(
                &[AT, "mainKey"],
                "clawgate's main session is always agent:<id>:main",
            );
        }
        self.leave_others(&[AT], session, &["dmScope", "maintenance", "scope", "mainKey"], "no counterpart in clawgate's sessions (no automatic resets, identity links or send policies)");
    }

    fn cron(&mut self, cron: &Value, jobs: Option<&Value>, default_agent: &str) {
        const AT: &str = "cron";
        if let Some(enabled) = cron["enabled"].as_bool() {
            self.set(&[AT, "enabled"], json!(enabled));
        }
        if let Some(n) = cron["maxConcurrentRuns"].as_u64() {
            self.set(&[AT, "maxConcurrentRuns"], json!(n));
        }
        self.leave_others(
            &[AT],
            cron,
            &["enabled", "maxConcurrentRuns", "store"],
            "no counterpart in clawgate's cron",
        );
        let list = jobs.map(|j| if j.is_array() { j } else { &j["jobs"] });
        for job in list.and_then(Value::as_array).into_iter().flatten() {
            let Some(id) = job["id"].as_str() else {
                continue;
            };
            let at = ["cron", "jobs", id];
            let payload = match job["payload"]["kind"].as_str() {
                Some("agentTurn") => {
                    json!({"kind": "agentTurn", "message": job["payload"]["message"]})
                }
                Some("systemEvent") => {
                    json!({"kind": "systemEvent", "text": job["payload"]["text"]})
                }
                other => {
                    self.leave(
                        &at,
                        format!(
                            "payload {}: clawgate runs agentTurn and systemEvent jobs",
                            other.unwrap_or("missing")
                        ),
                    );
                    continue;
                }
            };
            let s = &job["schedule"];
            let schedule = match s["kind"].as_str() {
                Some("cron") => {
                    let mut c = json!({"kind": "cron", "expr": s["expr"]});
                    if let Some(tz) = s["tz"].as_str() {
                        c["tz"] = json!(tz);
                    }
                    c
                }
                Some("every") => json!({"kind": "every", "everyMs": s["everyMs"]}),
                Some("at") => json!({"kind": "at", "at": s["at"]}),
                other => {
                    self.leave(
                        &at,
                        format!(
                            "schedule {}: clawgate schedules cron, every and at",
                            other.unwrap_or("missing")
                        ),
                    );
                    continue;
                }
            };
            let mut out = json!({"schedule": schedule, "payload": payload});
            if let Some(name) = job["name"].as_str() {
                out["name"] = json!(name);
            }
            if job["enabled"] == false {
                out["enabled"] = json!(false);
            }
            let agent = job["agentId"].as_str();
            if let Some(agent) = agent {
                out["agentId"] = json!(agent);
            }
            match (job["sessionKey"].as_str(), job["sessionTarget"].as_str()) {
                (Some(key), _) => out["sessionKey"] = json!(key),
                (None, Some("main")) if payload["kind"] == "agentTurn" => {
                    out["sessionKey"] =
                        json!(format!("agent:{}:main", agent.unwrap_or(default_agent)))
                }
                _ => {}
            }
            if let Some(seconds) = job["payload"]["timeoutSeconds"].as_u64() {
                out["timeoutMs"] = json!(seconds.saturating_mul(1000).clamp(1000, 86_400_000));
            }
            if job["delivery"]["mode"]
                .as_str()
                .is_some_and(|m| m != "none")
            {
                self.leave(&[at[0], at[1], at[2], "delivery"], "clawgate's cron keeps a run's reply in its session; use a heartbeat to reach a channel");
            }
            for key in ["description", "deleteAfterRun", "wakeMode"] {
                if !job[key].is_null() {
                    self.leave(
                        &[at[0], at[1], at[2], key],
                        "no counterpart in clawgate's cron jobs",
                    );
                }
            }
            for key in ["anchorMs", "staggerMs"] {
                if !s[key].is_null() {
                    self.leave(
                        &[at[0], at[1], at[2], "schedule", key],
                        "clawgate runs a job on its schedule as written",
                    );
                }
            }
            if s["kind"] == "cron" && s["tz"].is_null() {
                self.leave(&[at[0], at[1], at[2], "schedule", "tz"], "unset: OpenClaw used the host's time zone, clawgate uses cron.timezone, else UTC");
            }
            self.set(&at, out);
        }
    }

    /// Drops what clawgate refuses, each listed with the reason, until the
    /// config validates.
    fn settle(&mut self) {
        for _ in 0..256 {
            let problems = match super::validate(&self.out) {
                Ok(_) => return,
                Err(problems) => problems,
            };
            // One at a time: removing an item moves the items after it.
            if let Some(problem) = problems.into_iter().next() {
                let pointer = problem.pointer.clone();
                let parts: Vec<String> = pointer
                    .split('/')
                    .skip(1)
                    .map(|p| p.replace("~1", "/").replace("~0", "~"))
                    .collect();
                let removed = remove(&mut self.out, &parts);
                let key = if removed {
                    parts.join(".")
                } else {
                    "(config)".to_string()
                };
                self.left.push(Left {
                    key,
                    why: format!("left out of the clawgate config: {}", problem.message),
                });
                if !removed {
                    return;
                }
            }
        }
    }
}

/// Removes the value at `path`; false when there is none (or it is the root).
fn remove(value: &mut Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut at = value;
    for key in parents {
        at = match at {
            Value::Object(map) => match map.get_mut(key) {
                Some(v) => v,
                None => return false,
            },
            Value::Array(items) => match key.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match at {
        Value::Object(map) => map.remove(last).is_some(),
        Value::Array(items) => match last.parse::<usize>() {
            Ok(i) if i < items.len() => {
                items.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// `base` with `over`'s keys on top.
fn merge(base: &Value, over: &Map<String, Value>) -> Value {
    let mut out = base.as_object().cloned().unwrap_or_default();
    for (k, v) in over {
        out.insert(k.clone(), v.clone());
    }
    Value::Object(out)
}
