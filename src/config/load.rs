use super::{dotted, env, locate, meta, Config};
use crate::protocol::types::{AuthConfigMode, ConfigProblem, GatewayConfig, GatewayConfigBind};
use crate::protocol::Schemas;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// What to load: the file (already resolved), the environment and flags.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub path: Option<PathBuf>,
    /// `(name, value)` pairs; `CLAWGATE_` names are config layers and
    /// every name can be used by `${NAME}` in the file.
    pub env: Vec<(String, String)>,
    /// CLI flags as `(JSON pointer, value)`, applied last.
    pub overrides: Vec<(String, Value)>,
    /// The state dir of a running gateway: in auth mode token without a
    /// configured token, the token generated there is used.
    pub state_dir: Option<PathBuf>,
}

impl LoadOptions {
    pub fn from_process_env(path: Option<PathBuf>, overrides: Vec<(String, Value)>) -> Self {
        LoadOptions {
            path,
            env: std::env::vars().collect(),
            overrides,
            state_dir: None,
        }
    }
}

/// A validated configuration and where it came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    pub path: Option<PathBuf>,
    /// The effective configuration as JSON, defaults filled in.
    pub effective: Value,
    /// SHA-256 of the file content, when there is a file.
    pub file_hash: Option<String>,
}

#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read { path: PathBuf, reason: String },
    /// Values that break TOML/JSON syntax, the schema, or a rule the
    /// schema cannot express; each problem is located.
    Invalid(Vec<ConfigProblem>),
}

impl ConfigError {
    pub fn problems(&self) -> Vec<ConfigProblem> {
        match self {
            ConfigError::Read { path, reason } => vec![ConfigProblem {
                path: String::new(),
                message: format!("cannot read the file: {reason}"),
                source: Some(path.display().to_string()),
                line: None,
                column: None,
            }],
            ConfigError::Invalid(problems) => problems.clone(),
        }
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        match self {
            ConfigError::Read { .. } => "cannot read the config file".to_string(),
            ConfigError::Invalid(problems) if problems.len() == 1 => {
                format!("invalid configuration: {}", format_problem(&problems[0]))
            }
            ConfigError::Invalid(problems) => {
                format!("invalid configuration ({} problems)", problems.len())
            }
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, reason } => {
                write!(f, "cannot read config file {}: {reason}", path.display())
            }
            ConfigError::Invalid(problems) => {
                write!(f, "invalid configuration:")?;
                for p in problems {
                    write!(f, "\n  {}", format_problem(p))?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// `file:line:column: key: message`, as compilers print errors.
pub fn format_problem(p: &ConfigProblem) -> String {
    let mut out = String::new();
    if let Some(source) = &p.source {
        out.push_str(source);
        if let (Some(line), Some(column)) = (p.line, p.column) {
            out.push_str(&format!(":{line}:{column}"));
        }
        out.push_str(": ");
    }
    if !p.path.is_empty() {
        out.push_str(&p.path);
        out.push_str(": ");
    }
    out.push_str(&p.message);
    out
}

fn one_based(n: usize) -> Option<std::num::NonZeroU64> {
    std::num::NonZeroU64::new(n as u64)
}

pub fn hash_text(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Loads, merges and validates the configuration from disk.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let text = match &opts.path {
        Some(path) => Some(
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                path: path.clone(),
                reason: e.to_string(),
            })?,
        ),
        None => None,
    };
    load_text(opts, text.as_deref())
}

/// Like [`load`], with the file content already read.
pub fn load_text(opts: &LoadOptions, text: Option<&str>) -> Result<Loaded, ConfigError> {
    let file = match (&opts.path, text) {
        (Some(path), Some(text)) => Some(FileLayer { path, text }),
        _ => None,
    };
    let mut merged = match &file {
        Some(f) => {
            let mut value =
                parse_text(f.path, f.text).map_err(|p| ConfigError::Invalid(vec![p]))?;
            substitute_env_refs(&mut value, "", &opts.env).map_err(|(pointer, message)| {
                ConfigError::Invalid(vec![f.problem(&pointer, message)])
            })?;
            value
        }
        None => Value::Object(Map::new()),
    };
    let mut origins: Vec<(String, String)> = Vec::new();
    let settings = env::settings(&opts.env).map_err(|(var, message)| {
        ConfigError::Invalid(vec![ConfigProblem {
            path: String::new(),
            message,
            source: Some(format!("environment {var}")),
            line: None,
            column: None,
        }])
    })?;
    for setting in settings {
        set_pointer(&mut merged, &setting.pointer, setting.value);
        origins.push((setting.pointer, format!("environment {}", setting.var)));
    }
    for (pointer, value) in &opts.overrides {
        set_pointer(&mut merged, pointer, value.clone());
        origins.push((pointer.clone(), "command-line flag".to_string()));
    }
    if let Some(state_dir) = &opts.state_dir {
        use_generated_token(&mut merged, state_dir)?;
    }
    let config = validate(&merged).map_err(|problems| {
        let mut located: Vec<ConfigProblem> = problems
            .into_iter()
            .map(|(pointer, message)| locate_problem(&file, &origins, &pointer, message))
            .collect();
        located.sort_by_key(|p| (p.line.is_none(), p.line, p.column));
        ConfigError::Invalid(located)
    })?;
    let effective = serde_json::to_value(&config).expect("config serializes");
    Ok(Loaded {
        config,
        path: opts.path.clone(),
        effective,
        file_hash: file.map(|f| hash_text(f.text)),
    })
}

/// In auth mode token (the default) without a token, fills in the one
/// generated in the state dir, creating it on first use.
fn use_generated_token(merged: &mut Value, state_dir: &Path) -> Result<(), ConfigError> {
    let auth = merged.pointer("/gateway/auth");
    let mode = auth.and_then(|a| a.get("mode")).and_then(Value::as_str);
    let has_token = auth.and_then(|a| a.get("token")).is_some();
    if has_token || !matches!(mode, None | Some("token")) {
        return Ok(());
    }
    let token = super::load_or_create_token(state_dir).map_err(|e| {
        ConfigError::Invalid(vec![ConfigProblem {
            path: "gateway.auth.token".to_string(),
            message: format!(
                "no token is configured and none can be kept in {}: {e}",
                super::token_path(state_dir).display()
            ),
            source: None,
            line: None,
            column: None,
        }])
    })?;
    set_pointer(merged, "/gateway/auth/token", Value::String(token));
    Ok(())
}

struct FileLayer<'a> {
    path: &'a Path,
    text: &'a str,
}

impl FileLayer<'_> {
    fn problem(&self, pointer: &str, message: String) -> ConfigProblem {
        let position = locate::position(self.path, self.text, pointer);
        ConfigProblem {
            path: dotted_or_empty(pointer),
            message,
            source: Some(self.path.display().to_string()),
            line: position.and_then(|p| one_based(p.0)),
            column: position.and_then(|p| one_based(p.1)),
        }
    }
}

fn dotted_or_empty(pointer: &str) -> String {
    if pointer.is_empty() {
        String::new()
    } else {
        dotted(pointer)
    }
}

/// Names the layer a bad value came from: the flag or variable that set
/// it (or a parent of it), else its place in the file.
fn locate_problem(
    file: &Option<FileLayer<'_>>,
    origins: &[(String, String)],
    pointer: &str,
    message: String,
) -> ConfigProblem {
    let from_override = origins
        .iter()
        .rev()
        .find(|(set, _)| pointer == set || pointer.starts_with(&format!("{set}/")));
    match (from_override, file) {
        (Some((_, origin)), _) => ConfigProblem {
            path: dotted_or_empty(pointer),
            message,
            source: Some(origin.clone()),
            line: None,
            column: None,
        },
        (None, Some(file)) => file.problem(pointer, message),
        (None, None) => ConfigProblem {
            path: dotted_or_empty(pointer),
            message,
            source: None,
            line: None,
            column: None,
        },
    }
}

/// Checks a merged config value against the schema and the cross-field
/// rules, and decodes it. Problems are `(JSON pointer, message)`.
pub fn validate(value: &Value) -> Result<Config, Vec<(String, String)>> {
    if let Err(violations) = Schemas::get().validate("Config", value) {
        return Err(violations
            .into_iter()
            .map(|v| {
                let message = redact(&v.pointer, v.message);
                (v.pointer, message)
            })
            .collect());
    }
    let config: Config =
        serde_json::from_value(value.clone()).map_err(|e| vec![(String::new(), e.to_string())])?;
    let mut problems = cross_field_problems(&config.gateway);
    problems.extend(unknown_tools(&config));
    problems.extend(crate::cron::config_problems(&config));
    problems.extend(unknown_binding_agents(&config));
    problems.extend(crate::channels::config_problems(&config));
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

fn redact(pointer: &str, message: String) -> String {
    if meta::is_secret(pointer) {
        "invalid secret value (not shown)".to_string()
    } else {
        message
    }
}

fn cross_field_problems(gateway: &GatewayConfig) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let auth = &gateway.auth;
    match auth.mode {
        AuthConfigMode::Password if auth.password.is_none() => problems.push((
            "/gateway/auth/mode".into(),
            "auth mode password needs gateway.auth.password (or CLAWGATE_GATEWAY__AUTH__PASSWORD)"
                .into(),
        )),
        _ => {}
    }
    for (i, origin) in gateway.allowed_origins.iter().enumerate() {
        if let Err(why) = check_origin_entry(origin) {
            problems.push((format!("/gateway/allowedOrigins/{i}"), why));
        }
    }
    for (i, host) in gateway.allowed_hosts.iter().enumerate() {
        if let Err(why) = check_host_entry(host) {
            problems.push((format!("/gateway/allowedHosts/{i}"), why));
        }
    }
    if auth.mode == AuthConfigMode::None && gateway.http.chat_completions.enabled {
        problems.push((
            "/gateway/http/chatCompletions/enabled".into(),
            "the OpenAI-compatible API runs agent turns, so it needs a credential: \
             set gateway.auth.mode to token or password"
                .into(),
        ));
    }
    let host = listen_host(gateway);
    if auth.mode == AuthConfigMode::None && !is_loopback_host(&host) {
        let exposing = if gateway.host.is_some() {
            "/gateway/host"
        } else {
            "/gateway/bind"
        };
        problems.push((
            exposing.into(),
            format!(
                "refusing to listen on {host} without authentication: anyone on the network could control the gateway. \
                 Set gateway.auth.mode to token (with gateway.auth.token) or password, or bind to loopback"
            ),
        ));
    }
    problems
}

/// An allowedOrigins entry: `http(s)://host[:port]`, nothing else.
fn check_origin_entry(origin: &str) -> Result<(), String> {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return Err(format!(
            "{origin:?} is not an origin; write scheme://host[:port], e.g. http://ui.example:8080"
        ));
    };
    if !matches!(scheme, "http" | "https") {
        return Err(format!(
            "{origin:?}: only http and https origins can be allowed"
        ));
    }
    check_host_entry(authority.trim_end_matches('/')).map_err(|_| {
        format!(
            "{origin:?} is not an origin; write scheme://host[:port] with no path and no wildcard"
        )
    })
}

/// An allowedHosts entry: a host name or address, optionally `:port`.
fn check_host_entry(host: &str) -> Result<(), String> {
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{host:?} is not a host name; write a name or address, optionally with :port (no wildcards)"
        ))
    }
}

/// The address the listener binds to.
pub fn listen_host(gateway: &GatewayConfig) -> String {
    match (&gateway.host, gateway.bind) {
        (Some(host), _) => host.to_string(),
        (None, GatewayConfigBind::Loopback) => "127.0.0.1".to_string(),
        (None, GatewayConfigBind::Lan) => "0.0.0.0".to_string(),
    }
}

pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

pub fn is_json(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

/// Parses config text as JSON when the file name ends in .json, else
/// TOML. A syntax error is located but never quotes the offending line,
/// which may hold a secret.
pub fn parse_text(path: &Path, text: &str) -> Result<Value, ConfigProblem> {
    let located = |message: String, position: Option<(usize, usize)>| ConfigProblem {
        path: String::new(),
        message,
        source: Some(path.display().to_string()),
        line: position.and_then(|p| one_based(p.0)),
        column: position.and_then(|p| one_based(p.1)),
    };
    if is_json(path) {
        serde_json::from_str::<Value>(text).map_err(|e| {
            let message = format!("not valid JSON: {}", strip_position(&e.to_string()));
            located(message, Some((e.line(), e.column())))
        })
    } else {
        toml::from_str::<Value>(text).map_err(|e| {
            let position = e.span().map(|span| locate::line_column(text, span.start));
            located(
                format!("not valid TOML: {}", e.message().trim_end()),
                position,
            )
        })
    }
}

/// serde_json appends " at line L column C"; the position is reported separately.
fn strip_position(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |i| &message[..i])
}

/// Replaces `${NAME}` in secret values with the environment variable
/// NAME; anywhere else a `${` is an error, so no other value can carry the
/// environment back out. Err is `(pointer, message)`.
fn substitute_env_refs(
    v: &mut Value,
    pointer: &str,
    vars: &[(String, String)],
) -> Result<(), (String, String)> {
    match v {
        Value::String(s) if s.contains("${") && !meta::is_secret(pointer) => Err((
            pointer.to_string(),
            "${VAR} is read only in secret fields (the token, passwords, API keys); write this value itself"
                .to_string(),
        )),
        Value::String(s) if s.contains("${") => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let end = after
                    .find('}')
                    .ok_or_else(|| (pointer.to_string(), "unterminated ${ in value".to_string()))?;
                let name = &after[..end];
                let value = vars
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v)
                    .ok_or_else(|| {
                        (
                            pointer.to_string(),
                            format!("environment variable {name} is not set"),
                        )
                    })?;
                out.push_str(value);
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
            Ok(())
        }
        Value::Object(map) => map.iter_mut().try_for_each(|(k, child)| {
            substitute_env_refs(child, &format!("{pointer}/{}", escape(k)), vars)
        }),
        Value::Array(items) => items
            .iter_mut()
            .enumerate()
            .try_for_each(|(i, child)| substitute_env_refs(child, &format!("{pointer}/{i}"), vars)),
        _ => Ok(()),
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Sets the value at a JSON pointer, creating objects on the way; a null
/// value removes the key.
pub fn set_pointer(root: &mut Value, pointer: &str, value: Value) {
    let mut node = root;
    let segments: Vec<&str> = pointer.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let map = node.as_object_mut().expect("just made an object");
        if i + 1 == segments.len() {
            if value.is_null() {
                map.shift_remove(*segment);
            } else {
                map.insert(segment.to_string(), value);
            }
            return;
        }
        node = map
            .entry(segment.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

/// Tool names in `agents.<id>.tools` that schema/tools.json does not define.
fn unknown_tools(config: &Config) -> Vec<(String, String)> {
    let known: Vec<String> = crate::protocol::Tool::ALL
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    let mut problems = Vec::new();
    for (id, agent) in &config.agents.extra {
        for (i, name) in agent.tools.iter().enumerate() {
            if crate::protocol::Tool::from_name(name).is_none() {
                let hint = crate::protocol::closest(name, &known)
                    .map(|best| format!("; did you mean {best}?"))
                    .unwrap_or_else(|| format!("; tools: {}", known.join(", ")));
                problems.push((
                    format!("/agents/{id}/tools/{i}"),
                    format!("no tool {name}{hint}"),
                ));
            }
        }
    }
    problems
}

/// Bindings that route to an agent the config does not define.
fn unknown_binding_agents(config: &Config) -> Vec<(String, String)> {
    config
        .bindings
        .iter()
        .enumerate()
        .filter_map(|(i, binding)| {
            crate::agent::Agent::resolve(config, Some(binding.agent_id.as_str()))
                .err()
                .map(|e| (format!("/bindings/{i}/agentId"), e.message))
        })
        .collect()
}
