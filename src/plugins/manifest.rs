//! A plugin's manifest, checked against `$defs/PluginManifest` and with
//! every schema in it compiled, so the gateway can hold the plugin's
//! params, results, events and config to them.

use crate::bus::PluginEvent;
use crate::protocol::types::{PluginConfig, PluginManifest, Scope};
use crate::protocol::{ErrorCode, RpcError, Schemas};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The plugin protocol version this gateway speaks.
pub const PLUGIN_PROTOCOL: u64 = 1;

/// The `$defs` entry a manifest must match.
const MANIFEST_DEF: &str = "PluginManifest";

/// The longest tool name model APIs accept (OpenAI's and Anthropic's).
const MAX_TOOL_NAME: usize = 64;

/// What a model calls the tool of method `<plugin>.<method>`: model APIs
/// take `[a-zA-Z0-9_-]` only, and plugin names hold no `_`.
pub fn tool_name(method: &str) -> String {
    method.replacen('.', "_", 1)
}

/// The method a tool name stands for.
pub fn tool_method(tool: &str) -> String {
    tool.replacen('_', ".", 1)
}

/// Violations shown in one error message; data.errors has them all.
const SHOWN: usize = 5;

/// A checked manifest.
pub struct Manifest {
    pub version: String,
    /// The scope HTTP requests to `/plugins/<name>/` need, if it serves any.
    pub http: Option<Scope>,
    /// By full name (`<plugin>.<method>`).
    pub methods: BTreeMap<String, Arc<MethodDef>>,
    /// By local name, as the plugin sends them.
    pub events: BTreeMap<String, EventDef>,
    /// The channel kinds it provides, by local name.
    pub channels: BTreeMap<String, ChannelDef>,
    config: jsonschema::Validator,
}

pub struct ChannelDef {
    /// The longest reply sent at once.
    pub max_chars: usize,
    config: jsonschema::Validator,
}

pub struct MethodDef {
    pub name: String,
    pub local: String,
    pub scope: Scope,
    pub summary: String,
    /// Offered to agents that list it, named [`tool_name`].
    pub tool: bool,
    /// The params schema, which is also the tool's parameters.
    pub params_schema: Value,
    params: jsonschema::Validator,
    result: jsonschema::Validator,
}

pub struct EventDef {
    pub kind: Arc<PluginEvent>,
    payload: jsonschema::Validator,
}

/// The located problems of `instance` against `validator`.
fn violations(validator: &jsonschema::Validator, instance: &Value) -> Vec<(String, String)> {
    validator
        .iter_errors(instance)
        .map(|e| (e.instance_path().to_string(), e.masked().to_string()))
        .collect()
}

/// "message at /pointer; …", the first few of them.
fn describe(problems: &[(String, String)]) -> String {
    let mut shown: Vec<String> = problems
        .iter()
        .take(SHOWN)
        .map(|(pointer, message)| {
            let at = if pointer.is_empty() { "/" } else { pointer };
            format!("{message} at {at}")
        })
        .collect();
    if problems.len() > SHOWN {
        shown.push(format!("and {} more", problems.len() - SHOWN));
    }
    shown.join("; ")
}

fn located(problems: &[(String, String)]) -> Value {
    let errors: Vec<Value> = problems
        .iter()
        .map(|(pointer, message)| json!({"pointer": pointer, "message": message}))
        .collect();
    json!({ "errors": errors })
}

fn compile(schema: &Value, at: &str) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| format!("{at} is not a usable JSON Schema: {e}"))
}

impl Manifest {
    /// Reads the manifest a plugin configured as `plugin` wrote.
    pub fn parse(plugin: &str, value: &Value) -> Result<Manifest, String> {
        if let Err(found) = Schemas::get().validate(MANIFEST_DEF, value) {
            let problems: Vec<(String, String)> =
                found.into_iter().map(|v| (v.pointer, v.message)).collect();
            return Err(format!("the manifest is invalid: {}", describe(&problems)));
        }
        let manifest: PluginManifest = serde_json::from_value(value.clone())
            .map_err(|e| format!("the manifest is invalid: {e}"))?;
        let (min, max) = (manifest.protocol.min.get(), manifest.protocol.max.get());
        if !(min..=max).contains(&PLUGIN_PROTOCOL) {
            return Err(format!(
                "the plugin speaks plugin protocol {min}..={max}; this gateway speaks {PLUGIN_PROTOCOL}"
            ));
        }
        let mut methods = BTreeMap::new();
        for (local, spec) in &manifest.methods {
            let local = local.to_string();
            let at = |part: &str| format!("/methods/{local}/{part}");
            let name = format!("{plugin}.{local}");
            if spec.tool && tool_name(&name).len() > MAX_TOOL_NAME {
                return Err(format!(
                    "{}: as a tool it would be named {}, longer than the {MAX_TOOL_NAME} characters models accept",
                    at("tool"),
                    tool_name(&name)
                ));
            }
            let def = MethodDef {
                name,
                scope: spec.scope,
                summary: spec.summary.to_string(),
                tool: spec.tool,
                params_schema: Value::Object(spec.params.clone()),
                params: compile(&Value::Object(spec.params.clone()), &at("params"))?,
                result: compile(&Value::Object(spec.result.clone()), &at("result"))?,
                local,
            };
            methods.insert(def.name.clone(), Arc::new(def));
        }
        let mut events = BTreeMap::new();
        for (local, spec) in &manifest.events {
            let local = local.to_string();
            let payload = compile(
                &Value::Object(spec.payload.clone()),
                &format!("/events/{local}/payload"),
            )?;
            let kind = Arc::new(PluginEvent {
                name: format!("{plugin}.{local}"),
                scope: spec.scope,
            });
            events.insert(local, EventDef { kind, payload });
        }
        let mut channels = BTreeMap::new();
        for (local, spec) in &manifest.channels {
            let local = local.to_string();
            let config = compile(
                &Value::Object(spec.config.clone()),
                &format!("/channels/{local}/config"),
            )?;
            let max_chars = spec.max_message_chars as usize;
            channels.insert(local, ChannelDef { max_chars, config });
        }
        Ok(Manifest {
            version: manifest.version.to_string(),
            http: manifest.http.as_ref().map(|h| h.scope),
            methods,
            events,
            channels,
            config: compile(&Value::Object(manifest.config.clone()), "/config")?,
        })
    }

    /// Checks the plugin's config section, and its channel accounts',
    /// against the manifest's schemas.
    pub fn check_config(&self, plugin: &str, config: &PluginConfig) -> Result<(), String> {
        let problems = violations(&self.config, &Value::Object(config.config.clone()));
        if !problems.is_empty() {
            return Err(format!(
                "plugins.{plugin}.config does not match the plugin's config schema: {}",
                describe(&problems)
            ));
        }
        for (kind, accounts) in &config.channels {
            let Some(def) = self.channels.get(kind.as_str()) else {
                let declared: Vec<&str> = self.channels.keys().map(String::as_str).collect();
                return Err(format!(
                    "plugins.{plugin}.channels.{}: the plugin provides no channel {} (it provides: {})",
                    kind.as_str(),
                    kind.as_str(),
                    if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
                ));
            };
            for (id, account) in accounts {
                let problems = violations(&def.config, &Value::Object(account.config.clone()));
                if !problems.is_empty() {
                    return Err(format!(
                        "plugins.{plugin}.channels.{}.{}.config does not match the channel's config schema: {}",
                        kind.as_str(),
                        id.as_str(),
                        describe(&problems)
                    ));
                }
            }
        }
        Ok(())
    }
}

impl MethodDef {
    /// Params the plugin may be given; the error is the caller's.
    pub fn check_params(&self, params: &Value) -> Result<(), RpcError> {
        let problems = violations(&self.params, params);
        if problems.is_empty() {
            return Ok(());
        }
        Err(RpcError::new(
            ErrorCode::InvalidParams,
            format!("invalid params for {}: {}", self.name, describe(&problems)),
        )
        .with_data(located(&problems)))
    }

    /// A result the caller may be given; a bad one is the plugin's fault.
    pub fn check_result(&self, result: &Value) -> Result<(), RpcError> {
        let problems = violations(&self.result, result);
        if problems.is_empty() {
            return Ok(());
        }
        let plugin = self.name.split('.').next().unwrap_or_default();
        Err(RpcError::new(
            ErrorCode::InternalError,
            format!(
                "plugin {plugin} answered {} with a result that does not match its schema: {}",
                self.name,
                describe(&problems)
            ),
        ))
    }
}

impl EventDef {
    pub fn check(&self, payload: &Value) -> Result<(), String> {
        let problems = violations(&self.payload, payload);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(describe(&problems))
        }
    }
}
