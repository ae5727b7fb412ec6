use super::{dotted, env, meta, Config};
use crate::protocol::types::{AuthConfigMode, GatewayConfig, GatewayConfigBind};
use crate::protocol::Schemas;
use serde_json::{Map, Value};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// What to load: the file (already resolved), the environment and flags.
#[derive(Default)]
pub struct LoadOptions {
    pub path: Option<PathBuf>,
    /// `(name, value)` pairs; only `CLAWGATE_` names are read.
    pub env: Vec<(String, String)>,
    /// CLI flags as `(JSON pointer, value)`, applied last.
    pub overrides: Vec<(String, Value)>,
}

impl LoadOptions {
    pub fn from_process_env(path: Option<PathBuf>, overrides: Vec<(String, Value)>) -> Self {
        LoadOptions {
            path,
            env: std::env::vars().collect(),
            overrides,
        }
    }
}

/// A validated configuration and where it came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    pub path: Option<PathBuf>,
}

/// One problem with one config path.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// JSON pointer of the offending value.
    pub pointer: String,
    pub message: String,
}

#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read { path: PathBuf, reason: String },
    /// The file is not valid TOML or JSON.
    Syntax { path: PathBuf, reason: String },
    /// An environment variable could not be used.
    Env(String),
    /// Values that break the schema or a rule the schema cannot express.
    Invalid {
        source: String,
        problems: Vec<Problem>,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, reason } => {
                write!(f, "cannot read config file {}: {reason}", path.display())
            }
            ConfigError::Syntax { path, reason } => {
                write!(f, "config file {} is not valid: {reason}", path.display())
            }
            ConfigError::Env(reason) => write!(f, "{reason}"),
            ConfigError::Invalid { source, problems } => {
                write!(f, "invalid configuration ({source}):")?;
                for p in problems {
                    write!(f, "\n  {}: {}", dotted(&p.pointer), p.message)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Loads, merges and validates the configuration.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let mut merged = match &opts.path {
        Some(path) => {
            let mut file = read_file(path)?;
            substitute_env_refs(&mut file, "", &opts.env)?;
            file
        }
        None => Value::Object(Map::new()),
    };
    for setting in env::settings(&opts.env).map_err(ConfigError::Env)? {
        set_pointer(&mut merged, &setting.pointer, setting.value);
    }
    for (pointer, value) in &opts.overrides {
        set_pointer(&mut merged, pointer, value.clone());
    }
    let source = describe_source(opts.path.as_deref());
    let config = validate(&merged).map_err(|problems| ConfigError::Invalid {
        source: source.clone(),
        problems,
    })?;
    Ok(Loaded {
        config,
        path: opts.path.clone(),
    })
}

/// Checks a merged config value against the schema and the cross-field
/// rules, and decodes it.
pub fn validate(value: &Value) -> Result<Config, Vec<Problem>> {
    if let Err(violations) = Schemas::get().validate("Config", value) {
        return Err(violations
            .into_iter()
            .map(|v| Problem {
                message: redact(&v.pointer, v.message),
                pointer: v.pointer,
            })
            .collect());
    }
    let config: Config = serde_json::from_value(value.clone()).map_err(|e| {
        vec![Problem {
            pointer: String::new(),
            message: e.to_string(),
        }]
    })?;
    let problems = cross_field_problems(&config.gateway);
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

fn cross_field_problems(gateway: &GatewayConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    let auth = &gateway.auth;
    match auth.mode {
        AuthConfigMode::Token if auth.token.is_none() => problems.push(Problem {
            pointer: "/gateway/auth/token".into(),
            message: "auth mode token needs gateway.auth.token (or CLAWGATE_GATEWAY__AUTH__TOKEN)".into(),
        }),
        AuthConfigMode::Password if auth.password.is_none() => problems.push(Problem {
            pointer: "/gateway/auth/password".into(),
            message: "auth mode password needs gateway.auth.password (or CLAWGATE_GATEWAY__AUTH__PASSWORD)".into(),
        }),
        _ => {}
    }
    let host = listen_host(gateway);
    if auth.mode == AuthConfigMode::None && !is_loopback_host(&host) {
        problems.push(Problem {
            pointer: "/gateway/auth/mode".into(),
            message: format!(
                "refusing to listen on {host} without authentication: anyone on the network could control the gateway. \
                 Set gateway.auth.mode to token (with gateway.auth.token) or password, or bind to loopback"
            ),
        });
    }
    problems
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

fn describe_source(path: Option<&Path>) -> String {
    match path {
        Some(p) => format!("{}, environment and flags", p.display()),
        None => "defaults, environment and flags".to_string(),
    }
}

fn read_file(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    parse_text(path, &text)
}

/// Parses config text as JSON when the file name ends in .json, else TOML.
pub fn parse_text(path: &Path, text: &str) -> Result<Value, ConfigError> {
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let parsed = if is_json {
        serde_json::from_str::<Value>(text).map_err(|e| e.to_string())
    } else {
        toml::from_str::<Value>(text).map_err(|e| e.to_string().trim_end().to_string())
    };
    parsed.map_err(|reason| ConfigError::Syntax {
        path: path.to_path_buf(),
        reason,
    })
}

/// Replaces `${NAME}` in string values with the environment variable NAME.
fn substitute_env_refs(
    v: &mut Value,
    pointer: &str,
    vars: &[(String, String)],
) -> Result<(), ConfigError> {
    match v {
        Value::String(s) if s.contains("${") => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let end = after.find('}').ok_or_else(|| {
                    ConfigError::Env(format!("{}: unterminated ${{ in value", dotted(pointer)))
                })?;
                let name = &after[..end];
                let value = vars
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v)
                    .ok_or_else(|| {
                        ConfigError::Env(format!(
                            "{}: environment variable {name} is not set",
                            dotted(pointer)
                        ))
                    })?;
                out.push_str(value);
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
            Ok(())
        }
        Value::Object(map) => map
            .iter_mut()
            .try_for_each(|(k, child)| substitute_env_refs(child, &format!("{pointer}/{k}"), vars)),
        Value::Array(items) => items
            .iter_mut()
            .enumerate()
            .try_for_each(|(i, child)| substitute_env_refs(child, &format!("{pointer}/{i}"), vars)),
        _ => Ok(()),
    }
}

/// Sets the value at a JSON pointer, creating objects on the way.
fn set_pointer(root: &mut Value, pointer: &str, value: Value) {
    let mut node = root;
    let segments: Vec<&str> = pointer.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let map = node.as_object_mut().expect("just made an object");
        if i + 1 == segments.len() {
            map.insert(segment.to_string(), value);
            return;
        }
        node = map
            .entry(segment.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}
