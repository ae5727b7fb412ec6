//! The configuration: schema defaults, then the file, then `CLAWGATE_`
//! environment variables, then CLI flags; validated against
//! `schema/config.json` before anything uses it, with every error located.

mod checks;
mod diff;
mod edit;
mod env;
mod explain;
mod follow;
pub mod json5;
mod load;
mod locate;
pub mod migrate;
pub mod openclaw;
mod paths;
mod report;
pub mod secrets;
mod service;
mod token;

pub use crate::protocol::types::Config;
pub use checks::{find_agent, parse_channel_kind, MAIN_AGENT};
pub use diff::changed_pointers;
pub use edit::{remove_stale_temp_files, set_key, write_atomic};
pub use follow::{Change, Follower};
pub use load::{
    describe_origin, format_problem, hash_text, is_json, is_loopback_host, load, load_text,
    parse_text, problem, set_pointer, validate, ConfigError, Invalid, Layers, LoadOptions, Loaded,
    Override,
};
pub use meta::keys;
pub use paths::{resolve_config_path, resolve_state_dir};
pub use report::SourceFile;
pub use service::{Applied, ConfigService, ConfigWatch};
pub use token::{load_or_create_secret, load_or_create_token, read_token, token_path};

pub mod meta {
    /// Whether a change to a config path applies live or needs a restart.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Reload {
        Hot,
        Restart,
    }
    include!(concat!(env!("OUT_DIR"), "/config_meta.rs"));

    /// The reload class of a path: the mark of its longest listed prefix;
    /// unknown paths need a restart.
    pub fn reload_class(pointer: &str) -> Reload {
        RELOAD_RULES
            .iter()
            .filter(|(rule, _)| prefix_matches(rule, pointer))
            .max_by_key(|(rule, _)| rule.len())
            .map(|(_, class)| *class)
            .unwrap_or(Reload::Restart)
    }

    /// The sibling keys naming the endpoint a secret at `pointer` is sent
    /// to (x-endpoint), if it is such a secret.
    pub fn endpoint_keys(pointer: &str) -> Option<&'static [&'static str]> {
        let depth = pointer.matches('/').count();
        SECRET_ENDPOINTS
            .iter()
            .find(|(rule, _)| rule.matches('/').count() == depth && prefix_matches(rule, pointer))
            .map(|(_, keys)| *keys)
    }

    pub fn is_secret(pointer: &str) -> bool {
        let depth = pointer.matches('/').count();
        SECRET_PATHS
            .iter()
            .any(|rule| rule.matches('/').count() == depth && prefix_matches(rule, pointer))
    }

    /// Whether `rule` (segments, `*` matching any one) is `pointer` or a
    /// parent of it.
    fn prefix_matches(rule: &str, pointer: &str) -> bool {
        let mut path = pointer.split('/');
        rule.split('/')
            .all(|want| path.next().is_some_and(|got| want == "*" || want == got))
    }

    /// The concrete pointers of every secret present in `value`.
    pub fn secret_pointers(value: &serde_json::Value) -> Vec<String> {
        present(SECRET_PATHS, value)
    }

    /// The concrete pointers of every file-only value present in `value`.
    pub fn file_only_pointers(value: &serde_json::Value) -> Vec<String> {
        present(FILE_ONLY_PATHS, value)
    }

    /// The concrete pointers in `value` that `rules` (with `*` for a
    /// user-chosen key) name.
    fn present(rules: &[&str], value: &serde_json::Value) -> Vec<String> {
        fn expand(value: &serde_json::Value, rule: &[&str], at: String, out: &mut Vec<String>) {
            let Some((first, rest)) = rule.split_first() else {
                out.push(at);
                return;
            };
            let Some(map) = value.as_object() else { return };
            for (key, child) in map {
                if *first == "*" || first == key {
                    // An agent id may hold `/` or `~`.
                    expand(child, rest, crate::pointer::child(&at, key), out);
                }
            }
        }
        let mut out = Vec::new();
        for rule in rules {
            let segments: Vec<&str> = rule.split('/').skip(1).collect();
            expand(value, &segments, String::new(), &mut out);
        }
        out
    }
}

/// Names reserved for the CLI under the `CLAWGATE_` prefix; they are not config keys.
pub const RESERVED_ENV: &[&str] = &["CONFIG", "STATE_DIR", "TOKEN", "PASSWORD", "URL", "LOG"];

/// A JSON pointer as people read it: `/gateway/port` → `gateway.port`.
pub fn dotted(pointer: &str) -> String {
    if pointer.is_empty() {
        return "(top level)".to_string();
    }
    pointer.trim_start_matches('/').replace('/', ".")
}

/// A dotted key as a JSON pointer: `gateway.port` → `/gateway/port`.
pub fn pointer(dotted: &str) -> String {
    dotted.split('.').map(|s| format!("/{s}")).collect()
}

/// The effective configuration with every secret replaced.
pub fn redacted(effective: &serde_json::Value) -> serde_json::Value {
    let mut out = effective.clone();
    for path in meta::secret_pointers(effective) {
        if let Some(v) = out.pointer_mut(&path) {
            *v = serde_json::Value::from("[redacted]");
        }
    }
    out
}
