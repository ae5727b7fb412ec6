//! Agents: their models (through models.providers), workspaces, timeouts
//! and heartbeats.

use super::{merge, Import};
use serde_json::{json, Value};

impl Import {
    /// The agents; returns the default agent's id.
    pub(super) fn agents(&mut self, openclaw: &Value) -> String {
        let agents = &openclaw["agents"];
        let defaults = &agents["defaults"];
        let mut list: Vec<(String, Value)> = match (&agents["list"], &agents["entries"]) {
            (Value::Array(list), _) => list
                .iter()
                .filter_map(|a| Some((a["id"].as_str()?.to_string(), a.clone())))
                .collect(),
            (_, Value::Object(entries)) => entries
                .iter()
                .map(|(id, a)| (id.clone(), a.clone()))
                .collect(),
            _ => Vec::new(),
        };
        // agents.default names the default agent in clawgate, so no agent
        // can be called that.
        if list.iter().any(|(id, _)| id == "default") {
            self.leave(
                &["agents", "default"],
                "an agent called default clashes with clawgate's agents.default; rename it",
            );
            list.retain(|(id, _)| id != "default");
        }
        if list.is_empty() && !defaults["model"].is_null() {
            list.push(("main".to_string(), json!({})));
        }
        let default = list
            .iter()
            .find(|(_, a)| a["default"] == true)
            .or(list.first())
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| "main".to_string());
        if !list.is_empty() {
            self.set(&["agents", "default"], json!(default));
        }
        let providers = openclaw["models"]["providers"].clone();
        let any_own_heartbeat = list.iter().any(|(_, a)| a["heartbeat"].is_object());
        let kind = if agents["list"].is_array() {
            "list"
        } else {
            "entries"
        };
        for (index, (id, agent)) in list.iter().enumerate() {
            let index = index.to_string();
            let at: Vec<&str> = if kind == "list" {
                vec!["agents", kind, &index]
            } else {
                vec!["agents", kind, id]
            };
            self.agent(id, agent, defaults, &providers, &at);
            let heartbeat = match (&agent["heartbeat"], any_own_heartbeat) {
                (Value::Object(own), _) => Some(merge(&defaults["heartbeat"], own)),
                (_, false) if defaults["heartbeat"].is_object() => {
                    Some(defaults["heartbeat"].clone())
                }
                _ => None,
            };
            if let Some(heartbeat) = heartbeat {
                let mut hb_at = at.clone();
                hb_at.push("heartbeat");
                self.heartbeat(id, &heartbeat, defaults, &hb_at);
            }
        }
        self.leave_others(
            &["agents", "defaults"],
            defaults,
            &[
                "model",
                "workspace",
                "timeoutSeconds",
                "heartbeat",
                "userTimezone",
            ],
            "no counterpart in clawgate's agent settings",
        );
        default
    }

    fn agent(&mut self, id: &str, agent: &Value, defaults: &Value, providers: &Value, at: &[&str]) {
        let model = if agent["model"].is_null() {
            &defaults["model"]
        } else {
            &agent["model"]
        };
        let (primary, fallbacks) = match model {
            Value::String(s) => (Some(s.as_str()), None),
            Value::Object(m) => (m.get("primary").and_then(Value::as_str), m.get("fallbacks")),
            _ => (None, None),
        };
        let mut model_at = at.to_vec();
        model_at.push("model");
        if fallbacks
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
        {
            self.leave(&model_at, "fallback models: a clawgate agent has one model");
        }
        match primary.map(|m| resolve_model(m, providers)) {
            Some(Ok(resolved)) => {
                for (key, value) in resolved {
                    self.set(&["agents", id, key], value);
                }
            }
            Some(Err(why)) => {
                self.leave(&model_at, why);
                self.set(&["agents", id, "provider"], json!("echo"));
            }
            None => {
                self.leave(
                    &model_at,
                    "no model: the agent answers with the offline echo provider",
                );
                self.set(&["agents", id, "provider"], json!("echo"));
            }
        }
        let workspace = if agent["workspace"].is_null() {
            &defaults["workspace"]
        } else {
            &agent["workspace"]
        };
        if let Some(dir) = self.path(workspace) {
            self.set(&["agents", id, "workspace"], json!(dir));
        }
        let timeout = agent["timeoutSeconds"]
            .as_u64()
            .or(defaults["timeoutSeconds"].as_u64());
        if let Some(seconds) = timeout {
            self.set(
                &["agents", id, "timeoutMs"],
                json!(seconds.saturating_mul(1000).clamp(100, 3_600_000)),
            );
        }
        self.leave_others(
            at,
            agent,
            &["id", "default", "model", "workspace", "timeoutSeconds", "heartbeat"],
            "no counterpart in clawgate's agent settings (identity and behaviour come from the system prompt)",
        );
    }

    fn heartbeat(&mut self, agent: &str, heartbeat: &Value, defaults: &Value, at: &[&str]) {
        let put = |me: &mut Import, key: &str, value: Value| {
            me.set(&["agents", agent, "heartbeat", key], value)
        };
        let key_at = |key: &'static str| -> Vec<&str> { at.iter().copied().chain([key]).collect() };
        // OpenClaw's default interval is 30m; a bare number is minutes.
        let every = match &heartbeat["every"] {
            Value::Null => Some(1800),
            Value::Number(n) => n.as_u64().map(|m| m.saturating_mul(60)),
            Value::String(s) if s.trim().chars().all(|c| c.is_ascii_digit()) => {
                s.trim().parse::<u64>().ok().map(|m| m.saturating_mul(60))
            }
            Value::String(s) => duration_seconds(s),
            _ => None,
        };
        match every {
            Some(0) => {
                self.leave(
                    &key_at("every"),
                    "0: the heartbeat is off, so none was written",
                );
                return;
            }
            Some(seconds) if seconds <= 999_999 * 3600 => {
                put(self, "every", json!(every_text(seconds)))
            }
            _ => {
                self.leave(
                    at,
                    "every is not a duration clawgate reads (like 30m): no heartbeat was written",
                );
                return;
            }
        }
        let hours = &heartbeat["activeHours"];
        if let (Some(start), Some(end)) = (hours["start"].as_str(), hours["end"].as_str()) {
            if start == end {
                self.leave(&key_at("activeHours"), "an empty window (start = end) never runs in OpenClaw: no heartbeat was written");
                if let Some(map) = self.out["agents"][agent].as_object_mut() {
                    map.remove("heartbeat");
                }
                return;
            }
            let mut window = json!({"start": start, "end": end});
            // Unset means the user's zone, as in OpenClaw.
            match hours["timezone"].as_str().unwrap_or("user") {
                "user" => match defaults["userTimezone"].as_str() {
                    Some(tz) => window["timezone"] = json!(tz),
                    None => self.leave(
                        &key_at("activeHours"),
                        "the user's time zone (agents.defaults.userTimezone) is not set: clawgate takes cron.timezone, else UTC",
                    ),
                },
                "local" => self.leave(
                    &key_at("activeHours"),
                    "timezone local: clawgate takes cron.timezone, else UTC; name the zone",
                ),
                tz => window["timezone"] = json!(tz),
            }
            put(self, "activeHours", window);
        }
        if let Some(prompt) = self.plain(&key_at("prompt"), &heartbeat["prompt"]) {
            put(self, "prompt", json!(prompt));
        }
        match heartbeat["target"].as_str() {
            Some("owner") => {
                put(self, "target", json!("last"));
                self.leave(
                    &key_at("target"),
                    "owner became last: clawgate delivers to where the owner last wrote from",
                );
            }
            Some(target @ ("last" | "none")) => put(self, "target", json!(target)),
            Some(target @ ("telegram" | "irc")) => {
                put(self, "target", json!(target));
                for key in ["to", "accountId"] {
                    if let Some(value) = heartbeat[key].as_str() {
                        put(self, key, json!(value));
                    }
                }
            }
            Some(other) => {
                put(self, "target", json!("none"));
                self.leave(
                    &key_at("target"),
                    format!("clawgate has no {other} channel: the heartbeat keeps its reports (target none)"),
                );
            }
            // OpenClaw's (classic) default delivers nothing.
            None => put(self, "target", json!("none")),
        }
        if let Some(n) = heartbeat["ackMaxChars"].as_u64() {
            put(self, "ackMaxChars", json!(n));
        }
        match heartbeat["session"].as_str() {
            None | Some("main") => {}
            Some(full) if full.contains(':') => put(self, "session", json!(full)),
            Some(name) => put(self, "session", json!(format!("agent:{agent}:{name}"))),
        }
        for (key, _) in heartbeat.as_object().into_iter().flatten() {
            if ![
                "every",
                "activeHours",
                "prompt",
                "target",
                "to",
                "accountId",
                "ackMaxChars",
                "session",
            ]
            .contains(&key.as_str())
            {
                let mut p = at.to_vec();
                p.push(key);
                self.leave(&p, "no counterpart in clawgate's heartbeat");
            }
        }
    }
}

/// A model reference `provider/model` as clawgate agent settings.
fn resolve_model(reference: &str, providers: &Value) -> Result<Vec<(&'static str, Value)>, String> {
    let (provider, model) = reference
        .split_once('/')
        .ok_or_else(|| format!("{reference}: a model is named <provider>/<model>"))?;
    let model = json!(model);
    if let Some(custom) = providers.get(provider) {
        let api = custom["api"].as_str().unwrap_or("openai-completions");
        let kind = match api {
            "openai-completions" | "openai" | "ollama" => "openai",
            "anthropic-messages" => "anthropic",
            other => return Err(format!("provider {provider} speaks {other}; clawgate speaks OpenAI chat completions and Anthropic messages")),
        };
        let mut out = vec![("provider", json!(kind)), ("model", model)];
        if let Some(base) = custom["baseUrl"].as_str() {
            let base = if api == "ollama" && !base.trim_end_matches('/').ends_with("/v1") {
                format!("{}/v1", base.trim_end_matches('/'))
            } else {
                base.to_string()
            };
            out.push(("baseUrl", json!(base)));
        }
        match &custom["apiKey"] {
            Value::String(key) => out.push(("apiKey", json!(key))),
            Value::Object(r) if r.get("source").and_then(Value::as_str) == Some("env") => {
                if let Some(var) = r.get("id").and_then(Value::as_str) {
                    out.push(("apiKey", json!(format!("${{{var}}}"))));
                }
            }
            _ => {}
        }
        return Ok(out);
    }
    match provider {
        "openai" => Ok(vec![("provider", json!("openai")), ("model", model), ("apiKey", json!("${OPENAI_API_KEY}"))]),
        "anthropic" => Ok(vec![("provider", json!("anthropic")), ("model", model), ("apiKey", json!("${ANTHROPIC_API_KEY}"))]),
        "ollama" => Ok(vec![("provider", json!("openai")), ("model", model), ("baseUrl", json!("http://127.0.0.1:11434/v1"))]),
        other => Err(format!("provider {other}: clawgate speaks to OpenAI-compatible and Anthropic endpoints; declare it under models.providers with a baseUrl")),
    }
}

/// `30m`, `1h30m`, `2d`, `45s`, `90` (seconds) → seconds.
pub(super) fn duration_seconds(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Ok(n) = text.parse::<u64>() {
        return Some(n);
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().ok()?;
        number.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    number.is_empty().then_some(total)
}

/// Seconds as clawgate's heartbeat interval: whole hours, minutes or seconds.
fn every_text(seconds: u64) -> String {
    if seconds % 3600 == 0 {
        format!("{}h", seconds / 3600)
    } else if seconds % 60 == 0 {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_openclaw_writes_them() {
        assert_eq!(duration_seconds("30m"), Some(1800));
        assert_eq!(duration_seconds("1h30m"), Some(5400));
        assert_eq!(duration_seconds("30d"), Some(30 * 86_400));
        assert_eq!(duration_seconds("0m"), Some(0));
        assert_eq!(duration_seconds("soon"), None);
        assert_eq!(every_text(5400), "90m");
        assert_eq!(every_text(7200), "2h");
    }

    #[test]
    fn models_resolve_to_providers() {
        let providers = json!({"vllm": {"baseUrl": "http://127.0.0.1:8000/v1", "apiKey": "${VLLM_KEY}"},
                               "box": {"baseUrl": "http://box:11434", "api": "ollama"},
                               "g": {"api": "google-generative-ai"}});
        let vllm = resolve_model("vllm/qwen", &providers).unwrap();
        assert!(vllm.contains(&("baseUrl", json!("http://127.0.0.1:8000/v1"))));
        assert!(vllm.contains(&("apiKey", json!("${VLLM_KEY}"))));
        let ollama = resolve_model("box/llama3", &providers).unwrap();
        assert!(ollama.contains(&("baseUrl", json!("http://box:11434/v1"))));
        assert!(resolve_model("g/gemini", &providers)
            .unwrap_err()
            .contains("google-generative-ai"));
        let claude = resolve_model("anthropic/claude-sonnet-4-6", &providers).unwrap();
        assert!(claude.contains(&("provider", json!("anthropic"))));
        assert!(resolve_model("mistral/large", &providers).is_err());
    }
}
