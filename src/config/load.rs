use super::report::{self, SourceFile};
use super::{dotted, env, explain, keys, locate, meta, Config};
use crate::protocol::types::{
    AuthConfigMode, ConfigOrigin, ConfigOriginKind, ConfigProblem, GatewayConfig,
    GatewayConfigBind, TailscaleConfigMode, TlsConfig,
};
use crate::protocol::{closest, SchemaViolation, Schemas, ViolationKind};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// What to load: the file (already resolved), the environment and flags.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub path: Option<PathBuf>,
    /// `(name, value)` pairs; `CLAWGATE_` names are config layers and
    /// every name can be used by `${NAME}` in the file.
    pub env: Vec<(String, String)>,
    /// CLI flags, applied last.
    pub overrides: Vec<Override>,
    /// The state dir of a running gateway: in auth mode token without a
    /// configured token, the token generated there is used.
    pub state_dir: Option<PathBuf>,
}

impl LoadOptions {
    pub fn from_process_env(path: Option<PathBuf>, overrides: Vec<Override>) -> Self {
        LoadOptions {
            path,
            env: std::env::vars().collect(),
            overrides,
            state_dir: None,
        }
    }
}

/// A command-line flag that sets one config value.
#[derive(Clone, Debug)]
pub struct Override {
    /// As typed, e.g. `--port`.
    pub flag: String,
    pub pointer: String,
    pub value: Value,
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
    /// Keys of an older config version read under their new names.
    pub migrated: Vec<super::migrate::Moved>,
    pub layers: Layers,
}

/// What each layer contributed, to tell where a value came from.
#[derive(Clone, Debug, Default)]
pub struct Layers {
    file: Option<SourceFile>,
    /// The file's values, `${VAR}` references resolved.
    file_value: Value,
    /// Values set over the file, in order: environment variables, flags,
    /// the generated token.
    set_by: Vec<(String, ConfigOrigin)>,
}

impl Loaded {
    /// Where each leaf value at or under `pointer` came from, by pointer.
    pub fn origins(&self, pointer: &str) -> Vec<(String, ConfigOrigin)> {
        self.layers.origins(&self.effective, pointer)
    }
}

impl Layers {
    /// Where each leaf value of `effective` at or under `pointer` came
    /// from, by pointer.
    pub fn origins(&self, effective: &Value, pointer: &str) -> Vec<(String, ConfigOrigin)> {
        let mut leaves = Vec::new();
        if let Some(value) = effective.pointer(pointer) {
            collect_leaves(value, pointer.to_string(), &mut leaves);
        }
        leaves
            .into_iter()
            .map(|leaf| {
                let origin = self.origin_of(&leaf);
                (leaf, origin)
            })
            .collect()
    }

    fn origin_of(&self, pointer: &str) -> ConfigOrigin {
        let over = self
            .set_by
            .iter()
            .rev()
            .find(|(set, _)| pointer == set || pointer.starts_with(&format!("{set}/")));
        if let Some((_, origin)) = over {
            return origin.clone();
        }
        let Some(file) = self
            .file
            .as_ref()
            .filter(|_| self.file_value.pointer(pointer).is_some())
        else {
            return ConfigOrigin {
                kind: ConfigOriginKind::Default,
                source: None,
                line: None,
                column: None,
            };
        };
        let path = Path::new(&file.path);
        let at = locate::spans(path, &file.text, pointer)
            .and_then(|s| s.value.or(s.key))
            .map(|r| locate::line_column(&file.text, r.start));
        ConfigOrigin {
            line: at.and_then(|p| one_based(p.0)),
            column: at.and_then(|p| one_based(p.1)),
            ..origin(ConfigOriginKind::File, &file.path)
        }
    }
}

/// Pointers of every value that is not a table: scalars and lists.
fn collect_leaves(value: &Value, pointer: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                collect_leaves(child, crate::pointer::child(&pointer, key), out);
            }
        }
        _ => out.push(pointer),
    }
}

#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read { path: PathBuf, reason: String },
    /// Values that break TOML/JSON syntax, the schema, or a rule the
    /// schema cannot express; each problem is located. `file` is the text
    /// the problems point into, for rendering them.
    Invalid {
        problems: Vec<ConfigProblem>,
        file: Option<SourceFile>,
    },
}

impl ConfigError {
    pub fn invalid(problems: Vec<ConfigProblem>) -> ConfigError {
        ConfigError::Invalid {
            problems,
            file: None,
        }
    }

    pub fn problems(&self) -> Vec<ConfigProblem> {
        match self {
            ConfigError::Read { path, reason } => vec![ConfigProblem {
                source: Some(path.display().to_string()),
                ..problem("", format!("cannot read the file: {reason}"))
            }],
            ConfigError::Invalid { problems, .. } => problems.clone(),
        }
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        match self {
            ConfigError::Read { .. } => "cannot read the config file".to_string(),
            ConfigError::Invalid { problems, .. } if problems.len() == 1 => {
                format!("invalid configuration: {}", format_problem(&problems[0]))
            }
            ConfigError::Invalid { problems, .. } => {
                format!("invalid configuration ({} problems)", problems.len())
            }
        }
    }

    /// Every problem as a compiler reports errors, quoting the file with a
    /// caret under each offending value; `color` for a terminal.
    pub fn render(&self, color: bool) -> String {
        match self {
            ConfigError::Read { .. } => report::render(&self.problems(), None, color),
            ConfigError::Invalid { problems, file } => {
                report::render(problems, file.as_ref(), color)
            }
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for ConfigError {}

/// A problem with nothing but its key and message.
pub fn problem(path: &str, message: String) -> ConfigProblem {
    ConfigProblem {
        path: path.to_string(),
        message,
        source: None,
        line: None,
        column: None,
        end_line: None,
        end_column: None,
        expected: None,
        found: None,
        help: None,
    }
}

/// `file:line:column: key: message; help`, on one line.
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
    if let Some(help) = &p.help {
        out.push_str("; ");
        out.push_str(help);
    }
    out
}

/// One problem found by [`validate`], before it is located in a file.
#[derive(Clone, Debug, PartialEq)]
pub struct Invalid {
    pub pointer: String,
    pub message: String,
    /// The problem is the key itself (an unknown key), not its value.
    pub at_key: bool,
    /// The value must not be quoted: it is not known to be harmless (the
    /// value of an unknown key, or a string where no string belongs, which
    /// may be a credential pasted into the wrong place).
    pub hide_value: bool,
    pub expected: Option<String>,
    pub found: Option<String>,
    pub help: Option<String>,
}

impl Invalid {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid {
            pointer: pointer.into(),
            message: message.into(),
            at_key: false,
            hide_value: false,
            expected: None,
            found: None,
            help: None,
        }
    }

    /// The problem with no place in a file (yet).
    pub fn unplaced(self) -> ConfigProblem {
        ConfigProblem {
            expected: self.expected,
            found: self.found,
            help: self.help,
            ..problem(&dotted_or_empty(&self.pointer), self.message)
        }
    }
}

fn one_based(n: usize) -> Option<std::num::NonZeroU64> {
    std::num::NonZeroU64::new(n as u64)
}

pub fn hash_text(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
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
    let source_file = |hidden: Vec<Range<usize>>| {
        file.as_ref().map(|f| SourceFile {
            path: f.path.display().to_string(),
            text: f.text.to_string(),
            hidden,
        })
    };
    let invalid = |problems: Vec<ConfigProblem>| ConfigError::Invalid {
        problems,
        file: source_file(Vec::new()),
    };
    let mut migrated = Vec::new();
    let file_value = match &file {
        Some(f) => {
            let mut value = parse_text(f.path, f.text).map_err(|p| invalid(vec![*p]))?;
            substitute_env_refs(&mut value, "", &opts.env).map_err(|(pointer, message)| {
                invalid(vec![f.problem(Invalid::new(pointer, message))])
            })?;
            migrated = super::migrate::migrate(&mut value).map_err(|(pointer, message)| {
                invalid(vec![f.problem(Invalid::new(pointer, message))])
            })?;
            value
        }
        None => Value::Object(Map::new()),
    };
    let mut merged = file_value.clone();
    let mut set_by: Vec<(String, ConfigOrigin)> = Vec::new();
    let settings = env::settings(&opts.env).map_err(|(var, message)| {
        invalid(vec![ConfigProblem {
            source: Some(format!("environment variable {var}")),
            ..problem("", message)
        }])
    })?;
    for setting in settings {
        set_pointer(&mut merged, &setting.pointer, setting.value);
        set_by.push((setting.pointer, origin(ConfigOriginKind::Env, &setting.var)));
    }
    for o in &opts.overrides {
        set_pointer(&mut merged, &o.pointer, o.value.clone());
        set_by.push((o.pointer.clone(), origin(ConfigOriginKind::Flag, &o.flag)));
    }
    if let Some(state_dir) = &opts.state_dir {
        if let Some(generated) = use_generated_token(&mut merged, state_dir)? {
            set_by.push(generated);
        }
    }
    let config = validate(&merged).map_err(|problems| {
        let mut hidden = Vec::new();
        let mut located: Vec<ConfigProblem> = problems
            .into_iter()
            .map(|problem| {
                if let (true, Some(f)) = (problem.hide_value, &file) {
                    hidden.extend(value_spans(f, &merged, &problem.pointer));
                }
                locate_problem(&file, &set_by, problem)
            })
            .collect();
        located.sort_by_key(|p| (p.line.is_none(), p.line, p.column));
        ConfigError::Invalid {
            problems: located,
            file: source_file(hidden),
        }
    })?;
    let effective = serde_json::to_value(&config).expect("config serializes");
    Ok(Loaded {
        config,
        path: opts.path.clone(),
        effective,
        file_hash: file.as_ref().map(|f| hash_text(f.text)),
        migrated,
        layers: Layers {
            file: source_file(Vec::new()),
            file_value,
            set_by,
        },
    })
}

/// The spans of every value that is not a table at or under `pointer`
/// (of a table, its values, so its header and keys stay readable).
fn value_spans(file: &FileLayer<'_>, merged: &Value, pointer: &str) -> Vec<Range<usize>> {
    let mut leaves = Vec::new();
    if let Some(value) = merged.pointer(pointer) {
        collect_leaves(value, pointer.to_string(), &mut leaves);
    }
    leaves
        .iter()
        .filter(|leaf| !merged.pointer(leaf).is_some_and(Value::is_object))
        .filter_map(|leaf| locate::spans(file.path, file.text, leaf)?.value)
        .collect()
}

fn origin(kind: ConfigOriginKind, source: &str) -> ConfigOrigin {
    ConfigOrigin {
        kind,
        source: Some(source.to_string()),
        line: None,
        column: None,
    }
}

/// In auth mode token (the default) without a token, fills in the one
/// generated in the state dir, creating it on first use.
fn use_generated_token(
    merged: &mut Value,
    state_dir: &Path,
) -> Result<Option<(String, ConfigOrigin)>, ConfigError> {
    let auth = merged.pointer(keys::GATEWAY_AUTH);
    let mode = auth.and_then(|a| a.get("mode")).and_then(Value::as_str);
    let has_token = auth.and_then(|a| a.get("token")).is_some();
    if has_token || !matches!(mode, None | Some("token")) {
        return Ok(None);
    }
    let token_path = super::token_path(state_dir);
    let token = super::load_or_create_token(state_dir).map_err(|e| {
        ConfigError::invalid(vec![problem(
            &dotted(keys::GATEWAY_AUTH_TOKEN),
            format!(
                "no token is configured and none can be kept in {}: {e}",
                token_path.display()
            ),
        )])
    })?;
    set_pointer(merged, keys::GATEWAY_AUTH_TOKEN, Value::String(token));
    let generated = origin(
        ConfigOriginKind::Generated,
        &token_path.display().to_string(),
    );
    Ok(Some((keys::GATEWAY_AUTH_TOKEN.to_string(), generated)))
}

struct FileLayer<'a> {
    path: &'a Path,
    text: &'a str,
}

impl FileLayer<'_> {
    /// The problem placed on the key or value it is about; a value that
    /// spans several lines (a table) is pointed at by its key.
    fn problem(&self, invalid: Invalid) -> ConfigProblem {
        let spans = locate::spans(self.path, self.text, &invalid.pointer).unwrap_or_default();
        let one_line = |r: &Range<usize>| !self.text[r.clone()].contains('\n');
        let span = if invalid.at_key || !spans.exact {
            spans.key.or(spans.value)
        } else {
            let whole = spans.value.clone();
            spans.value.filter(one_line).or(spans.key).or(whole)
        };
        let start = span
            .as_ref()
            .map(|r| locate::line_column(self.text, r.start));
        let end = span.as_ref().map(|r| locate::line_column(self.text, r.end));
        ConfigProblem {
            source: Some(self.path.display().to_string()),
            line: start.and_then(|p| one_based(p.0)),
            column: start.and_then(|p| one_based(p.1)),
            end_line: end.and_then(|p| one_based(p.0)),
            end_column: end.and_then(|p| one_based(p.1)),
            ..invalid.unplaced()
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
    set_by: &[(String, ConfigOrigin)],
    invalid: Invalid,
) -> ConfigProblem {
    let pointer = &invalid.pointer;
    let from_override = set_by
        .iter()
        .rev()
        .find(|(set, _)| pointer == set || pointer.starts_with(&format!("{set}/")));
    match (from_override, file) {
        (Some((_, origin)), _) => ConfigProblem {
            source: Some(describe_origin(origin)),
            ..invalid.unplaced()
        },
        (None, Some(file)) => file.problem(invalid),
        (None, None) => invalid.unplaced(),
    }
}

/// An origin as a person reads it: `environment variable CLAWGATE_X`,
/// `flag --port`, `clawgate.toml:3:8`, `default`.
pub fn describe_origin(origin: &ConfigOrigin) -> String {
    let source = origin.source.as_deref().unwrap_or_default();
    match origin.kind {
        ConfigOriginKind::Default => "default".to_string(),
        ConfigOriginKind::Env => format!("environment variable {source}"),
        ConfigOriginKind::Flag => format!("flag {source}"),
        ConfigOriginKind::Generated => format!("generated, kept in {source}"),
        ConfigOriginKind::File => match (origin.line, origin.column) {
            (Some(line), Some(column)) => format!("{source}:{line}:{column}"),
            _ => source.to_string(),
        },
    }
}

/// Checks a merged config value against the schema and the cross-field
/// rules, and decodes it.
pub fn validate(value: &Value) -> Result<Config, Vec<Invalid>> {
    if let Err(violations) = Schemas::get().validate("Config", value) {
        let mut problems: Vec<Invalid> = Vec::new();
        for violation in violations {
            let explained = explain_violation(value, violation);
            if !problems.contains(&explained) {
                problems.push(explained);
            }
        }
        return Err(problems);
    }
    let config: Config = serde_json::from_value(value.clone())
        .map_err(|e| vec![Invalid::new(String::new(), e.to_string())])?;
    let mut problems = cross_field_problems(&config.gateway);
    problems.extend(unknown_tools(&config));
    problems.extend(super::checks::cron_problems(&config));
    problems.extend(unknown_binding_agents(&config));
    problems.extend(super::checks::irc_problems(&config));
    problems.extend(super::checks::heartbeat_problems(&config));
    problems.extend(super::checks::plugin_problems(&config));
    problems.extend(super::checks::cluster_problems(&config));
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems
            .into_iter()
            .map(|(pointer, message)| Invalid::new(pointer, message))
            .collect())
    }
}

/// A schema violation in the config's own words: expected, found, the fix.
fn explain_violation(value: &Value, violation: SchemaViolation) -> Invalid {
    let SchemaViolation {
        pointer,
        message,
        kind,
    } = violation;
    let secret = meta::is_secret(&pointer);
    match kind {
        ViolationKind::UnknownKey { key, known } => {
            let shown: String = key.chars().take(64).collect();
            let help = match closest(&key, &known) {
                Some(best) => format!("did you mean `{best}`?"),
                None if known.is_empty() => "this table takes no keys".to_string(),
                None => format!("expected one of: {}", known.join(", ")),
            };
            Invalid {
                at_key: true,
                hide_value: true,
                help: Some(help),
                ..Invalid::new(pointer, format!("unknown key `{shown}`"))
            }
        }
        ViolationKind::Value => {
            let schema = Schemas::get().schema_at("Config", &pointer);
            let given = value.pointer(&pointer).filter(|_| !secret);
            let expected = schema.and_then(explain::expected);
            let hide_value = secret || given.is_some_and(|v| !explain::may_show(schema, v));
            let found = given.map(|v| {
                if hide_value {
                    explain::kind_of(v)
                } else {
                    explain::found(v)
                }
            });
            let help = schema.zip(given).and_then(|(s, v)| explain::help(s, v));
            let message = match (&expected, &found) {
                (Some(e), Some(f)) => format!("expected {e}, found {f}"),
                (Some(e), None) if secret => {
                    format!("invalid secret value (not shown); expected {e}")
                }
                _ => redact(&pointer, message),
            };
            Invalid {
                expected,
                found,
                help,
                hide_value,
                ..Invalid::new(pointer, message)
            }
        }
        ViolationKind::Other => {
            let message = redact(&pointer, message);
            Invalid::new(pointer, message)
        }
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
            keys::GATEWAY_AUTH_MODE.into(),
            "auth mode password needs gateway.auth.password (or CLAWGATE_GATEWAY__AUTH__PASSWORD)"
                .into(),
        )),
        _ => {}
    }
    for (i, origin) in gateway.allowed_origins.iter().enumerate() {
        if let Err(why) = check_origin_entry(origin) {
            problems.push((format!("{}/{i}", keys::GATEWAY_ALLOWED_ORIGINS), why));
        }
    }
    for (i, host) in gateway.allowed_hosts.iter().enumerate() {
        if let Err(why) = check_host_entry(host) {
            problems.push((format!("{}/{i}", keys::GATEWAY_ALLOWED_HOSTS), why));
        }
    }
    if auth.mode == AuthConfigMode::None && gateway.http.chat_completions.enabled {
        problems.push((
            keys::GATEWAY_HTTP_CHAT_COMPLETIONS_ENABLED.into(),
            "the OpenAI-compatible API runs agent turns, so it needs a credential: \
             set gateway.auth.mode to token or password"
                .into(),
        ));
    }
    if auth.mode == AuthConfigMode::None {
        if let Some((key, exposed)) = exposure(gateway) {
            problems.push((
                key.into(),
                format!(
                    "refusing to listen on {exposed} without authentication: anyone on the network could control the gateway. \
                     Set gateway.auth.mode to token (with gateway.auth.token) or password, or bind to loopback"
                ),
            ));
        }
    }
    problems.extend(tls_problems(&gateway.tls));
    let tailscale = gateway.tailscale.mode;
    if tailscale != TailscaleConfigMode::Off {
        if auth.mode == AuthConfigMode::None {
            problems.push((
                keys::GATEWAY_TAILSCALE_MODE.into(),
                format!(
                    "tailscale {tailscale} publishes the gateway beyond this machine, so it needs a credential: \
                     set gateway.auth.mode to token or password"
                ),
            ));
        }
        if gateway.port == 0 {
            problems.push((
                keys::GATEWAY_PORT.into(),
                format!(
                    "tailscale {tailscale} forwards to 127.0.0.1:<port>, so the port must be fixed: \
                     with 0 a restart would pick another, and the published route would lead to whatever took the old one"
                ),
            ));
        }
        if let Some(host) = gateway.host.as_deref().filter(|h| !serves_loopback(h)) {
            problems.push((
                keys::GATEWAY_TAILSCALE_MODE.into(),
                format!(
                    "tailscale {tailscale} forwards to 127.0.0.1:<port>, but gateway.host makes the gateway listen on {host} only; \
                     remove gateway.host or use a bind mode that includes loopback"
                ),
            ));
        }
    }
    problems
}

/// gateway.tls: a certificate comes with its key, and TLS needs a pair.
fn tls_problems(tls: &TlsConfig) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    match (&tls.cert_path, &tls.key_path) {
        (Some(_), None) => problems.push((
            keys::GATEWAY_TLS_KEY_PATH.into(),
            "gateway.tls.certPath is set, so the key of its certificate is needed too".into(),
        )),
        (None, Some(_)) => problems.push((
            keys::GATEWAY_TLS_CERT_PATH.into(),
            "gateway.tls.keyPath is set, so the certificate it belongs to is needed too".into(),
        )),
        (None, None) if tls.enabled && !tls.auto_generate => problems.push((
            keys::GATEWAY_TLS_ENABLED.into(),
            "TLS needs a certificate: set gateway.tls.certPath and keyPath, or autoGenerate = true for a self-signed one".into(),
        )),
        _ => {}
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

/// The config key that makes the gateway reachable from other machines
/// and a description of where, when it does (auto is judged at bind
/// time, when it is known whether loopback can be bound).
fn exposure(gateway: &GatewayConfig) -> Option<(&'static str, String)> {
    match (&gateway.host, gateway.bind) {
        (Some(host), _) if is_loopback_host(host) => None,
        (Some(host), _) => Some((keys::GATEWAY_HOST, host.to_string())),
        (None, GatewayConfigBind::Loopback | GatewayConfigBind::Auto) => None,
        (None, GatewayConfigBind::Lan) => Some((keys::GATEWAY_BIND, "0.0.0.0".into())),
        (None, GatewayConfigBind::Tailnet) => {
            Some((keys::GATEWAY_BIND, "the Tailscale addresses".into()))
        }
    }
}

/// Whether a listener on `host` accepts connections to 127.0.0.1.
fn serves_loopback(host: &str) -> bool {
    host.parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified() || ip == IpAddr::from([127, 0, 0, 1]))
        || host.eq_ignore_ascii_case("localhost")
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
pub fn parse_text(path: &Path, text: &str) -> Result<Value, Box<ConfigProblem>> {
    let located = |message: String, span: Option<Range<usize>>| {
        let start = span.as_ref().map(|r| locate::line_column(text, r.start));
        let end = span.as_ref().map(|r| locate::line_column(text, r.end));
        Box::new(ConfigProblem {
            source: Some(path.display().to_string()),
            line: start.and_then(|p| one_based(p.0)),
            column: start.and_then(|p| one_based(p.1)),
            end_line: end.and_then(|p| one_based(p.0)),
            end_column: end.and_then(|p| one_based(p.1)),
            ..problem("", message)
        })
    };
    if is_json(path) {
        serde_json::from_str::<Value>(text).map_err(|e| {
            let message = format!("not valid JSON: {}", strip_position(&e.to_string()));
            let at = locate::offset_of(text, e.line(), e.column().max(1));
            located(message, Some(at..at))
        })
    } else {
        toml::from_str::<Value>(text).map_err(|e| {
            located(
                format!("not valid TOML: {}", e.message().trim_end()),
                e.span(),
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
            substitute_env_refs(child, &crate::pointer::child(pointer, k), vars)
        }),
        Value::Array(items) => items
            .iter_mut()
            .enumerate()
            .try_for_each(|(i, child)| substitute_env_refs(child, &format!("{pointer}/{i}"), vars)),
        _ => Ok(()),
    }
}

/// Sets the value at a JSON pointer, creating objects on the way; a null
/// value removes the key.
pub fn set_pointer(root: &mut Value, pointer: &str, value: Value) {
    let mut node = root;
    let count = crate::pointer::segments(pointer).count();
    let segments: Vec<String> = crate::pointer::segments(pointer).collect();
    for (i, segment) in segments.into_iter().enumerate() {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let map = node.as_object_mut().expect("just made an object");
        if i + 1 == count {
            if value.is_null() {
                map.shift_remove(&segment);
            } else {
                map.insert(segment, value);
            }
            return;
        }
        node = map
            .entry(segment)
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
            // `<plugin>.<method>`: a plugin method declared as a tool,
            // known once the plugin runs.
            let of_plugin = name
                .split_once('.')
                .is_some_and(|(plugin, _)| config.plugins.keys().any(|k| k.as_str() == plugin));
            if crate::protocol::Tool::from_name(name).is_none() && !of_plugin {
                let hint = crate::protocol::closest(name, &known)
                    .map(|best| format!("; did you mean {best}?"))
                    .unwrap_or_else(|| format!("; tools: {}", known.join(", ")));
                problems.push((
                    format!("{}/{id}/tools/{i}", keys::AGENTS),
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
            super::find_agent(config, Some(binding.agent_id.as_str()))
                .err()
                .map(|message| (format!("{}/{i}/agentId", keys::BINDINGS), message))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_pointer_unescapes_keys() {
        let mut root = json!({});
        set_pointer(&mut root, "/agents/a~1b~0c/model", json!("m"));
        assert_eq!(root, json!({"agents": {"a/b~c": {"model": "m"}}}));
        set_pointer(&mut root, "/agents/a~1b~0c", Value::Null);
        assert_eq!(root, json!({"agents": {}}));
    }
}

#[cfg(test)]
mod cluster_tests {
    use super::validate;
    use serde_json::json;

    fn problems(cluster: serde_json::Value) -> Vec<(String, String)> {
        match validate(&json!({ "cluster": cluster })) {
            Ok(_) => Vec::new(),
            Err(problems) => problems
                .into_iter()
                .map(|p| (p.pointer, p.message))
                .collect(),
        }
    }

    #[test]
    fn a_cluster_needs_a_shared_store_and_no_credentials_in_urls() {
        assert!(problems(json!({})).is_empty());
        assert!(problems(json!({
            "store": {"url": "postgres://clawgate@db:5432/cg", "password": "s3cret"},
            "nats": {"url": "nats://127.0.0.1:4222", "token": "t"},
        }))
        .is_empty());
        let bus_alone = problems(json!({"nats": {"url": "nats://127.0.0.1:4222"}}));
        assert_eq!(bus_alone[0].0, "/cluster/nats");
        assert!(
            bus_alone[0].1.contains("needs cluster.store"),
            "{bus_alone:?}"
        );
        let password = problems(json!({"store": {"url": "postgres://u:hunter2@db/cg"}}));
        assert_eq!(password[0].0, "/cluster/store/url");
        assert!(password[0].1.contains("cluster.store.password"));
        assert!(!password[0].1.contains("hunter2"), "never echoed");
        let nats_user = problems(json!({
            "store": {"url": "postgres://db/cg"},
            "nats": {"url": "nats://u:p@127.0.0.1:4222"},
        }));
        assert_eq!(nats_user[0].0, "/cluster/nats/url");
        let open_bus = problems(json!({
            "store": {"url": "postgres://db/cg"},
            "nats": {"url": "nats://10.0.0.5:4222"},
        }));
        assert_eq!(open_bus[0].0, "/cluster/nats/token", "{open_bus:?}");
        for local in [
            "nats://127.0.0.1:4222",
            "nats://localhost:4222",
            "nats://[::1]:4222",
        ] {
            let ok = problems(json!({
                "store": {"url": "postgres://db/cg"},
                "nats": {"url": local},
            }));
            assert!(ok.is_empty(), "{local}: {ok:?}");
        }
        let not_postgres = problems(json!({"store": {"url": "mysql://db/cg"}}));
        assert_eq!(not_postgres[0].0, "/cluster/store/url");
    }
}
