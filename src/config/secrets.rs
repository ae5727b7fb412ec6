//! Secrets in config edits made over RPC. A client with the admin scope
//! may change the config, but must not learn its secrets: the editor
//! sees them masked, a secret stays bound to the endpoint it is sent to
//! (moving the endpoint needs the secret typed again), and an edit cannot
//! introduce `${VAR}` references that would read the gateway's
//! environment into a value sent elsewhere.

use super::load::parse_text;
use super::meta::{endpoint_keys, secret_pointers};
use super::{dotted, locate, set_key};
use crate::protocol::types::ConfigProblem;
use serde_json::Value;
use std::path::Path;

/// What `config.file` shows instead of a secret's value; `config.write`
/// and `config.validate` read it as "the value already in the file".
pub const MASK: &str = "[redacted]";

fn is_env_ref(value: &Value) -> bool {
    value.as_str().is_some_and(|s| s.contains("${"))
}

/// The file text with every literal secret replaced by [`MASK`];
/// `${VAR}` references are names, not secrets, and stay.
pub fn mask_file(path: &Path, text: &str) -> Result<String, String> {
    let raw = parse_text(path, text).map_err(|p| {
        let line = p.line.map(|l| format!(" (line {l})")).unwrap_or_default();
        format!(
            "the config file does not parse{line}, so its secrets cannot be masked: fix it on disk"
        )
    })?;
    let mut out = text.to_string();
    for pointer in secret_pointers(&raw) {
        if raw
            .pointer(&pointer)
            .is_some_and(|v| v.is_string() && !is_env_ref(v))
        {
            out = set_key(path, &out, &pointer, &Value::from(MASK))?;
        }
    }
    Ok(out)
}

/// `sent` with each [`MASK`] at a secret key replaced by the value at that
/// key in `current` (the file on disk).
pub fn unmask(path: &Path, current: &str, sent: &str) -> Result<String, Vec<ConfigProblem>> {
    let Ok(sent_raw) = parse_text(path, sent) else {
        // Not parseable: validation reports it, with its position.
        return Ok(sent.to_string());
    };
    let current_raw = parse_text(path, current).unwrap_or(Value::Null);
    let mut out = sent.to_string();
    let mut problems = Vec::new();
    for pointer in secret_pointers(&sent_raw) {
        if sent_raw.pointer(&pointer).and_then(Value::as_str) != Some(MASK) {
            continue;
        }
        match current_raw.pointer(&pointer) {
            Some(kept) => match set_key(path, &out, &pointer, kept) {
                Ok(text) => out = text,
                Err(e) => problems.push(problem(path, sent, &pointer, e)),
            },
            None => problems.push(problem(
                path,
                sent,
                &pointer,
                format!("{MASK} keeps the value already in the file, and the file has none here; write the secret itself"),
            )),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Secrets an edit would expose. `current` is the file on disk, `sent` the
/// text as the client sent it (masked values included); `before` and
/// `after` are the effective configs (defaults and environment applied)
/// before and after the edit.
pub fn exposure_problems(
    path: &Path,
    current: &str,
    sent: &str,
    before: &Value,
    after: &Value,
) -> Vec<ConfigProblem> {
    let Ok(sent_raw) = parse_text(path, sent) else {
        return Vec::new();
    };
    let current_raw = parse_text(path, current).unwrap_or(Value::Null);
    let mut problems = Vec::new();
    for pointer in secret_pointers(&sent_raw) {
        let given = sent_raw.pointer(&pointer);
        if given.is_some_and(is_env_ref) && given != current_raw.pointer(&pointer) {
            problems.push(problem(
                path,
                sent,
                &pointer,
                "a ${VAR} reference can only be added by editing the file on disk: over RPC it would read the gateway's environment into a value it sends elsewhere".to_string(),
            ));
        }
    }
    for pointer in secret_pointers(after) {
        let Some(keys) = endpoint_keys(&pointer) else {
            continue;
        };
        let parent = &pointer[..pointer.rfind('/').unwrap_or(0)];
        let Some(moved) = keys
            .iter()
            .map(|k| format!("{parent}/{k}"))
            .find(|p| before.pointer(p) != after.pointer(p))
        else {
            continue;
        };
        if before.pointer(&pointer).is_none() {
            continue; // a new secret with a new endpoint
        }
        let given = sent_raw.pointer(&pointer);
        let typed_again = given
            .is_some_and(|v| v.as_str().is_some_and(|s| s != MASK) && !is_env_ref(v))
            && given != current_raw.pointer(&pointer);
        if !typed_again {
            problems.push(problem(
                path,
                sent,
                &moved,
                format!(
                    "{} is sent to this endpoint: change {} only together with a new value for it (or remove it), or edit the file on disk",
                    dotted(&pointer),
                    dotted(&moved)
                ),
            ));
        }
    }
    problems
}

fn problem(path: &Path, text: &str, pointer: &str, message: String) -> ConfigProblem {
    let position = locate::position(path, text, pointer);
    let one_based = |n: usize| std::num::NonZeroU64::new(n as u64);
    ConfigProblem {
        source: Some(path.display().to_string()),
        line: position.and_then(|p| one_based(p.0)),
        column: position.and_then(|p| one_based(p.1)),
        ..super::problem(&dotted(pointer), message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FILE: &str = "[agents.a]\nprovider = \"openai\"\nbaseUrl = \"https://api.example\"\napiKey = \"sk-live\"\n\n[agents.b]\nprovider = \"openai\"\napiKey = \"${KEY}\"\n";

    fn path() -> &'static Path {
        Path::new("clawgate.toml")
    }

    #[test]
    fn literal_secrets_are_masked_and_put_back() {
        let masked = mask_file(path(), FILE).unwrap();
        assert!(!masked.contains("sk-live"), "{masked}");
        assert!(masked.contains("apiKey = \"[redacted]\""), "{masked}");
        assert!(masked.contains("${KEY}"), "references stay");
        assert_eq!(unmask(path(), FILE, &masked).unwrap(), FILE);
        let added =
            format!("{masked}\n[agents.c]\nprovider = \"openai\"\napiKey = \"[redacted]\"\n");
        assert!(unmask(path(), FILE, &added).is_err());
    }

    #[test]
    fn a_secret_cannot_follow_a_new_endpoint_unless_typed_again() {
        let before = json!({"agents": {"a": {"provider": "openai", "baseUrl": "https://api.example", "apiKey": "sk-live"}}});
        let mut after = before.clone();
        after["agents"]["a"]["baseUrl"] = json!("https://evil.example");
        let moved = FILE.replace("https://api.example", "https://evil.example");
        let problems = exposure_problems(path(), FILE, &moved, &before, &after);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "agents.a.baseUrl");
        let masked = mask_file(path(), &moved).unwrap();
        assert_eq!(
            exposure_problems(path(), FILE, &masked, &before, &after).len(),
            1
        );
        let retyped = moved.replace("sk-live", "sk-new");
        after["agents"]["a"]["apiKey"] = json!("sk-new");
        assert!(exposure_problems(path(), FILE, &retyped, &before, &after).is_empty());
    }

    #[test]
    fn new_environment_references_are_refused() {
        let sent = FILE.replace("sk-live", "${AWS_SECRET_ACCESS_KEY}");
        let problems = exposure_problems(path(), FILE, &sent, &Value::Null, &Value::Null);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "agents.a.apiKey");
        assert!(exposure_problems(path(), FILE, FILE, &Value::Null, &Value::Null).is_empty());
    }

    #[test]
    fn an_id_with_a_slash_or_tilde_hides_no_secret() {
        for id in ["x/y", "a~1b"] {
            let file = format!(
                "[agents.\"{id}\"]\nprovider = \"openai\"\nbaseUrl = \"https://api.example\"\napiKey = \"sk-live\"\n"
            );
            let masked = mask_file(path(), &file).unwrap();
            assert!(!masked.contains("sk-live"), "{masked}");
            assert_eq!(unmask(path(), &file, &masked).unwrap(), file);
            let sent = file.replace("sk-live", "${AWS_SECRET_ACCESS_KEY}");
            let problems = exposure_problems(path(), &file, &sent, &Value::Null, &Value::Null);
            assert_eq!(problems.len(), 1, "{id}: {problems:?}");
            let before = json!({"agents": {id: {"provider": "openai", "baseUrl": "https://api.example", "apiKey": "sk-live"}}});
            let mut after = before.clone();
            after["agents"][id]["baseUrl"] = json!("https://evil.example");
            let moved = file.replace("https://api.example", "https://evil.example");
            let problems = exposure_problems(path(), &file, &moved, &before, &after);
            assert_eq!(problems.len(), 1, "{id}: {problems:?}");
        }
    }
}
