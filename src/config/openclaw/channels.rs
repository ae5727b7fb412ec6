//! Telegram and IRC accounts with their policies, and bindings.

use super::Import;
use serde_json::{json, Map, Value};

impl Import {
    pub(super) fn channels(&mut self, channels: &Value) {
        for (kind, section) in channels.as_object().into_iter().flatten() {
            match kind.as_str() {
                "telegram" => self.telegram(section),
                "irc" => self.irc(section),
                "defaults" => self.leave_others(
                    &["channels", "defaults"],
                    section,
                    &[],
                    "channel defaults are set per account in clawgate",
                ),
                other => self.leave(
                    &["channels", other],
                    format!("clawgate has no {other} channel"),
                ),
            }
        }
    }

    /// The accounts of a channel section: the root one (when it has its
    /// own credential, or there are no others) and `accounts.<id>`, each
    /// over the root's settings.
    fn accounts(section: &Value, credential: &str) -> Vec<(String, Value, Vec<String>)> {
        let root_id = section["defaultAccount"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let mut out = Vec::new();
        let named = section["accounts"].as_object();
        let base: Map<String, Value> = section
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| !matches!(k.as_str(), "accounts" | "defaultAccount"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !section[credential].is_null() || named.is_none_or(|n| n.is_empty()) {
            out.push((root_id, Value::Object(base.clone()), vec![]));
        }
        for (id, account) in named.into_iter().flatten() {
            let mut merged = base.clone();
            merged.remove(credential);
            for (k, v) in account.as_object().into_iter().flatten() {
                merged.insert(k.clone(), v.clone());
            }
            out.push((
                id.clone(),
                Value::Object(merged),
                vec!["accounts".to_string(), id.clone()],
            ));
        }
        out
    }

    /// dmPolicy, allowFrom, groupPolicy, groupAllowFrom, groups and
    /// requireMention, common to Telegram and IRC.
    fn policy(
        &mut self,
        kind: &str,
        id: &str,
        account: &Value,
        own: &Value,
        at: &[&str],
        strip: &[&str],
    ) {
        // An inherited setting is reported where it is written: the section.
        let root = ["channels", kind];
        let written = |key: &str| -> &[&str] {
            if own.get(key).is_some() {
                at
            } else {
                &root
            }
        };
        let set =
            |me: &mut Import, key: &str, value: Value| me.set(&["channels", kind, id, key], value);
        let senders = |list: &Value| -> Vec<String> {
            list.as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .map(|s| {
                    strip
                        .iter()
                        .fold(s, |s, p| s.strip_prefix(p).map(str::to_string).unwrap_or(s))
                })
                .collect()
        };
        if account["enabled"] == false {
            set(self, "enabled", json!(false));
        }
        match account["dmPolicy"].as_str() {
            Some(p @ ("open" | "allowlist" | "disabled")) => set(self, "dmPolicy", json!(p)),
            Some("pairing") | None => {
                set(self, "dmPolicy", json!("allowlist"));
                let why = "pairing became allowlist: clawgate has no pairing codes; add each person to allowFrom";
                self.leave_under(written("dmPolicy"), &["dmPolicy"], why);
            }
            Some(other) => {
                self.leave_under(
                    written("dmPolicy"),
                    &["dmPolicy"],
                    format!("{other} is not a clawgate dmPolicy"),
                );
            }
        }
        let allow = senders(&account["allowFrom"]);
        if !allow.is_empty() {
            set(self, "allowFrom", json!(allow));
        }
        let group_allow = senders(&account["groupAllowFrom"]);
        if !group_allow.is_empty() {
            set(self, "groupAllowFrom", json!(group_allow));
        }
        let groups = account["groups"].as_object();
        let mut listed: Vec<String> = Vec::new();
        let mut require_mention = true;
        for (group, settings) in groups.into_iter().flatten() {
            if group == "*" {
                if let Some(r) = settings["requireMention"].as_bool() {
                    require_mention = r;
                }
                self.leave_under(
                    written("groups"),
                    &["groups", "*"],
                    "clawgate lists allowed groups one by one; any group (*) is not carried over",
                );
                continue;
            }
            listed.push(group.clone());
            let extra: Vec<&String> = settings
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
                .filter(|k| *k != "requireMention")
                .collect();
            let differs = settings["requireMention"]
                .as_bool()
                .is_some_and(|r| r != require_mention);
            if !extra.is_empty() || differs {
                self.leave_under(written("groups"), &["groups", group], "per-group settings: clawgate applies the account's requireMention and allowlists to every group");
            }
        }
        match account["groupPolicy"].as_str() {
            Some("disabled") => listed.clear(),
            Some(p @ ("open" | "allowlist")) => set(self, "groupPolicy", json!(p)),
            _ => {}
        }
        if !listed.is_empty() {
            set(self, "groups", json!(listed));
        }
        set(self, "requireMention", json!(require_mention));
    }

    fn telegram(&mut self, section: &Value) {
        const KIND: &str = "telegram";
        let handled = [
            "enabled",
            "botToken",
            "dmPolicy",
            "allowFrom",
            "groupAllowFrom",
            "groups",
            "groupPolicy",
            "apiRoot",
            "accounts",
            "defaultAccount",
        ];
        let accounts = Self::accounts(section, "botToken");
        if !accounts.iter().any(|(_, _, sub)| sub.is_empty()) {
            self.leave_others(
                &["channels", KIND],
                section,
                &handled,
                "no counterpart in clawgate's Telegram accounts",
            );
        }
        for (id, account, sub) in accounts {
            let mut at: Vec<&str> = vec!["channels", KIND];
            at.extend(sub.iter().map(String::as_str));
            let mut token_at = at.clone();
            token_at.push("botToken");
            let token = match self.secret(&token_at, &account["botToken"]) {
                Some(token) => token,
                None if sub.is_empty() => "${TELEGRAM_BOT_TOKEN}".to_string(),
                None => {
                    self.leave(&at, "an account without botToken");
                    continue;
                }
            };
            self.set(&["channels", KIND, &id, "token"], json!(token));
            if let Some(api) = self.plain(&at, &account["apiRoot"]) {
                self.set(&["channels", KIND, &id, "apiBase"], json!(api));
            }
            let own: &Value = if sub.is_empty() {
                section
            } else {
                &section["accounts"][&id]
            };
            self.policy(KIND, &id, &account, own, &at, &["telegram:", "tg:"]);
            self.leave_others(
                &at,
                own,
                &handled,
                "no counterpart in clawgate's Telegram accounts",
            );
        }
    }

    fn irc(&mut self, section: &Value) {
        const KIND: &str = "irc";
        let handled = [
            "enabled",
            "host",
            "port",
            "tls",
            "nick",
            "password",
            "channels",
            "dmPolicy",
            "allowFrom",
            "groupAllowFrom",
            "groups",
            "groupPolicy",
            "accounts",
            "defaultAccount",
        ];
        let accounts = Self::accounts(section, "host");
        if !accounts.iter().any(|(_, _, sub)| sub.is_empty()) {
            self.leave_others(
                &["channels", KIND],
                section,
                &handled,
                "no counterpart in clawgate's IRC accounts",
            );
        }
        for (id, account, sub) in accounts {
            let mut at: Vec<&str> = vec!["channels", KIND];
            at.extend(sub.iter().map(String::as_str));
            let (Some(host), Some(nick)) = (account["host"].as_str(), account["nick"].as_str())
            else {
                self.leave(&at, "an account without host and nick");
                continue;
            };
            self.set(&["channels", KIND, &id, "server"], json!(host));
            self.set(&["channels", KIND, &id, "nick"], json!(nick));
            let tls = account["tls"].as_bool().unwrap_or(true);
            self.set(&["channels", KIND, &id, "tls"], json!(tls));
            let port = account["port"]
                .as_u64()
                .unwrap_or(if tls { 6697 } else { 6667 });
            self.set(&["channels", KIND, &id, "port"], json!(port));
            let mut password_at = at.clone();
            password_at.push("password");
            if let Some(password) = self.secret(&password_at, &account["password"]) {
                self.set(&["channels", KIND, &id, "password"], json!(password));
            }
            let joined: Vec<&str> = account["channels"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !joined.is_empty() {
                self.set(&["channels", KIND, &id, "channels"], json!(joined));
            }
            let own: &Value = if sub.is_empty() {
                section
            } else {
                &section["accounts"][&id]
            };
            self.policy(KIND, &id, &account, own, &at, &[]);
            self.leave_others(
                &at,
                own,
                &handled,
                "no counterpart in clawgate's IRC accounts",
            );
        }
    }

    pub(super) fn bindings(&mut self, bindings: &Value, channels: &Value) {
        let mut out = Vec::new();
        for (i, binding) in bindings.as_array().into_iter().flatten().enumerate() {
            let index = i.to_string();
            let at = ["bindings", index.as_str()];
            if binding["type"].as_str().is_some_and(|t| t != "route") {
                self.leave(&at, "only route bindings carry over");
                continue;
            }
            let m = &binding["match"];
            let Some(channel @ ("telegram" | "irc")) = m["channel"].as_str() else {
                self.leave(
                    &at,
                    format!(
                        "clawgate has no {} channel",
                        m["channel"].as_str().unwrap_or("such")
                    ),
                );
                continue;
            };
            let Some(agent) = binding["agentId"].as_str() else {
                self.leave(&at, "a binding without agentId");
                continue;
            };
            let mut matched = json!({"channel": channel});
            match m["accountId"].as_str() {
                Some("*") => {}
                Some(account) => matched["accountId"] = json!(account),
                None => {
                    let default = channels[channel]["defaultAccount"]
                        .as_str()
                        .unwrap_or("default");
                    matched["accountId"] = json!(default);
                }
            }
            let peer = &m["peer"];
            match (peer["kind"].as_str(), peer["id"].as_str()) {
                (Some("direct"), Some(id)) => matched["peer"] = json!(id),
                (Some(_), Some(id)) => matched["group"] = json!(id),
                _ => {}
            }
            for key in ["guildId", "teamId", "roles"] {
                if !m[key].is_null() {
                    self.leave(
                        &[at[0], at[1], "match", key],
                        "clawgate's channels have no guilds, teams or roles",
                    );
                }
            }
            if !binding["session"].is_null() {
                self.leave(
                    &[at[0], at[1], "session"],
                    "per-binding session scopes: clawgate has one session.dmScope",
                );
            }
            out.push(json!({"agentId": agent, "match": matched}));
        }
        // OpenClaw tries a peer match first, then an exact account, then
        // any account; clawgate takes the first match in order.
        out.sort_by_key(|b| {
            let m = &b["match"];
            match (m.get("peer").or(m.get("group")), m.get("accountId")) {
                (Some(_), _) => 0,
                (None, Some(_)) => 1,
                (None, None) => 2,
            }
        });
        if !out.is_empty() {
            self.set(&["bindings"], json!(out));
        }
    }
}
