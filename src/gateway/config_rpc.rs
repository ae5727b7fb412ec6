//! The config method family: read, edit, reload, schema.

use super::Gateway;
use crate::config::{dotted, pointer, redacted, secrets, set_key, write_atomic, ConfigError};
use crate::protocol::types::{
    ConfigFileResult, ConfigParams, ConfigPatchParams, ConfigPatchResult, ConfigProblem,
    ConfigResult, ConfigSetParams, ConfigSetResult, ConfigValidateParams, ConfigValidateResult,
    ConfigWriteParams, ConfigWriteResult,
};
use crate::protocol::{ErrorCode, RpcError, Schemas};
use serde_json::json;

pub fn get(gw: &Gateway, params: ConfigParams) -> Result<ConfigResult, RpcError> {
    let effective = redacted(&gw.configs.running());
    let path = gw.configs.path().map(|p| p.display().to_string());
    let hash = gw.configs.hash();
    let origins = |at: &str| {
        gw.configs
            .origins(at)
            .into_iter()
            .map(|(leaf, origin)| (dotted(&leaf), origin))
            .collect()
    };
    let Some(key) = params.key else {
        return Ok(ConfigResult {
            hash,
            path,
            key: None,
            value: effective,
            origins: origins(""),
        });
    };
    let key = key.to_string();
    let at = pointer(&key);
    let value = effective
        .pointer(&at)
        .cloned()
        .ok_or_else(|| unknown_key(&key))?;
    Ok(ConfigResult {
        hash,
        path,
        key: Some(key),
        value,
        origins: origins(&at),
    })
}

pub async fn set(gw: &Gateway, params: ConfigSetParams) -> Result<ConfigSetResult, RpcError> {
    let key = params.key.to_string();
    let target = pointer(&key);
    if Schemas::get().schema_at("Config", &target).is_none() || key == "$schema" {
        return Err(unknown_key(&key));
    }
    let path = config_path(gw)?;
    let _guard = gw.configs.lock().await;
    let text = read(&path)?;
    check_base(&text, params.base_hash.as_deref())?;
    // An older file is edited under today's key names.
    let current = crate::config::migrate::upgraded_for_edit(&path, &text)
        .map_err(|e| RpcError::new(ErrorCode::InvalidParams, format!("cannot set {key}: {e}")))?;
    let edited = set_key(&path, &current, &target, &params.value)
        .map_err(|e| RpcError::new(ErrorCode::InvalidParams, format!("cannot set {key}: {e}")))?;
    let applied = commit(gw, &path, &text, &edited, &key).await?;
    Ok(ConfigSetResult {
        hash: applied.hash.unwrap_or_default(),
        changed: applied.changed,
        restart_required: applied.restart_required,
    })
}

const MAX_PATCH_KEYS: usize = 256;

/// Applies a JSON merge patch as one edit of the file: each leaf is set
/// as config.set would, then the result is checked and applied once.
pub async fn patch(gw: &Gateway, params: ConfigPatchParams) -> Result<ConfigPatchResult, RpcError> {
    let replace: Vec<String> = params.replace_paths.iter().map(|k| pointer(k)).collect();
    let mut leaves = Vec::new();
    merge_leaves("", &params.patch, &replace, &mut leaves);
    // Each key is one edit of the whole file, under the config lock.
    if leaves.len() > MAX_PATCH_KEYS {
        return Err(RpcError::new(
            ErrorCode::InvalidParams,
            format!(
                "a patch sets at most {MAX_PATCH_KEYS} keys; this one sets {}: use config.write for the whole file",
                leaves.len()
            ),
        ));
    }
    for (at, _) in &leaves {
        if Schemas::get().schema_at("Config", at).is_none() || at == "/$schema" {
            return Err(unknown_key(&dotted(at)));
        }
    }
    let path = config_path(gw)?;
    let _guard = gw.configs.lock().await;
    let text = read(&path)?;
    check_base(&text, params.base_hash.as_deref())?;
    let what = "the patch";
    let mut edited = crate::config::migrate::upgraded_for_edit(&path, &text).map_err(|e| {
        RpcError::new(
            ErrorCode::InvalidParams,
            format!("cannot apply {what}: {e}"),
        )
    })?;
    for (at, value) in &leaves {
        edited = set_key(&path, &edited, at, value).map_err(|e| {
            RpcError::new(
                ErrorCode::InvalidParams,
                format!("cannot set {}: {e}", dotted(at)),
            )
        })?;
    }
    let applied = commit(gw, &path, &text, &edited, what).await?;
    Ok(ConfigPatchResult {
        hash: applied.hash.unwrap_or_default(),
        changed: applied.changed,
        restart_required: applied.restart_required,
    })
}

/// The (pointer, value) pairs a merge patch sets: objects merge key by
/// key unless their pointer is in `replace`; anything else is a leaf.
fn merge_leaves(
    at: &str,
    patch: &serde_json::Map<String, serde_json::Value>,
    replace: &[String],
    out: &mut Vec<(String, serde_json::Value)>,
) {
    for (key, value) in patch {
        let child = crate::pointer::child(at, key);
        match value {
            serde_json::Value::Object(inner) if !replace.contains(&child) => {
                merge_leaves(&child, inner, replace, out)
            }
            _ => out.push((child, value.clone())),
        }
    }
}

fn rejected(key: &str, error: &ConfigError) -> RpcError {
    rejected_for(key, error.problems())
}

fn rejected_for(key: &str, problems: Vec<ConfigProblem>) -> RpcError {
    let reason = problems
        .iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect::<Vec<_>>()
        .join("; ");
    RpcError::new(
        ErrorCode::InvalidParams,
        format!("{key} was not changed: {reason}"),
    )
    .with_data(json!({ "errors": problems }))
}

fn unknown_key(key: &str) -> RpcError {
    let target = pointer(key);
    let (parent, leaf) = target.rsplit_once('/').unwrap_or(("", &target));
    let known: Vec<String> = Schemas::get()
        .schema_at("Config", parent)
        .and_then(|s| s.get("properties"))
        .and_then(|p| p.as_object())
        .map(|p| p.keys().filter(|k| *k != "$schema").cloned().collect())
        .unwrap_or_default();
    let hint = crate::protocol::closest(leaf, &known)
        .map(|best| format!("; did you mean {}?", dotted(&format!("{parent}/{best}"))))
        .unwrap_or_default();
    RpcError::new(ErrorCode::NotFound, format!("no config key {key}{hint}"))
}

/// The config file the gateway runs on, or the error saying there is none.
fn config_path(gw: &Gateway) -> Result<std::path::PathBuf, RpcError> {
    gw.configs.path().map(|p| p.to_path_buf()).ok_or_else(|| {
        RpcError::new(
            ErrorCode::NotFound,
            "the gateway runs on defaults without a config file; start it with --config PATH to edit the configuration",
        )
    })
}

fn read(path: &std::path::Path) -> Result<String, RpcError> {
    std::fs::read_to_string(path).map_err(|e| {
        RpcError::new(
            ErrorCode::Unavailable,
            format!("cannot read {}: {e}", path.display()),
        )
    })
}

/// The file as the editor sees it: secrets masked, the hash of the file
/// as it is on disk.
pub fn file(gw: &Gateway) -> Result<ConfigFileResult, RpcError> {
    let path = config_path(gw)?;
    let text = read(&path)?;
    let masked =
        secrets::mask_file(&path, &text).map_err(|e| RpcError::new(ErrorCode::Unavailable, e))?;
    Ok(ConfigFileResult {
        path: path.display().to_string(),
        hash: crate::config::hash_text(&text),
        text: masked,
    })
}

pub fn validate(gw: &Gateway, params: ConfigValidateParams) -> ConfigValidateResult {
    // Without a file, the text is checked as the first content of one.
    let checked = match config_path(gw) {
        Ok(path) => read(&path).map(|current| check(gw, &path, &current, &params.text)),
        Err(_) => Ok(check(
            gw,
            std::path::Path::new("clawgate.toml"),
            "",
            &params.text,
        )),
    };
    match checked {
        Ok(Ok(_)) => ConfigValidateResult {
            ok: true,
            errors: Vec::new(),
        },
        Ok(Err(errors)) => ConfigValidateResult { ok: false, errors },
        Err(e) => ConfigValidateResult {
            ok: false,
            errors: vec![crate::config::problem("", e.message)],
        },
    }
}

/// What an RPC edit would write: `sent` with masked secrets put back,
/// valid, and exposing no secret. `current` is the file on disk.
fn check(
    gw: &Gateway,
    path: &std::path::Path,
    current: &str,
    sent: &str,
) -> Result<String, Vec<ConfigProblem>> {
    let text = secrets::unmask(path, current, sent)?;
    let candidate =
        crate::config::load_text(gw.configs.options(), Some(&text)).map_err(|e| e.problems())?;
    let exposed = secrets::exposure_problems(
        path,
        current,
        sent,
        &gw.configs.running(),
        &candidate.effective,
    );
    if exposed.is_empty() {
        Ok(text)
    } else {
        Err(exposed)
    }
}

pub async fn write(gw: &Gateway, params: ConfigWriteParams) -> Result<ConfigWriteResult, RpcError> {
    let path = config_path(gw)?;
    let _guard = gw.configs.lock().await;
    let current = read(&path)?;
    check_base(&current, Some(params.base_hash.as_str()))?;
    let applied = commit(gw, &path, &current, &params.text, "the file").await?;
    Ok(ConfigWriteResult {
        hash: applied.hash.unwrap_or_default(),
        changed: applied.changed,
        restart_required: applied.restart_required,
    })
}

/// Values only the file on disk may change (x-file-only: the commands of
/// plugins) are left as they are by edits over RPC: an admin client must
/// not be able to make the gateway start a program.
fn file_only_unchanged(
    path: &std::path::Path,
    current: &str,
    edited: &str,
) -> Result<(), RpcError> {
    use crate::config::meta::file_only_pointers;
    let parse = |text: &str| crate::config::parse_text(path, text).unwrap_or_default();
    let (before, after) = (parse(current), parse(edited));
    let mut pointers = file_only_pointers(&before);
    pointers.extend(file_only_pointers(&after));
    match pointers
        .iter()
        .find(|p| before.pointer(p) != after.pointer(p))
    {
        None => Ok(()),
        Some(changed) => Err(RpcError::new(
            ErrorCode::Forbidden,
            format!(
                "{} can only be changed in the config file on disk, not over RPC",
                dotted(changed)
            ),
        )),
    }
}

/// A stale `baseHash` is a conflict.
fn check_base(text: &str, base: Option<&str>) -> Result<(), RpcError> {
    let current_hash = crate::config::hash_text(text);
    match base {
        Some(base) if base != current_hash => Err(RpcError::new(
            ErrorCode::Conflict,
            "the config file changed since baseHash was read; read it again and retry",
        )
        .with_data(json!({ "hash": current_hash }))),
        _ => Ok(()),
    }
}

/// Checks `sent` (see [`check`]), writes it atomically and applies it as
/// a reload; `what` names the edit in errors. Call with the config lock held.
async fn commit(
    gw: &Gateway,
    path: &std::path::Path,
    current: &str,
    sent: &str,
    what: &str,
) -> Result<crate::config::Applied, RpcError> {
    let text = check(gw, path, current, sent).map_err(|problems| rejected_for(what, problems))?;
    let text = text.as_str();
    file_only_unchanged(path, current, text)?;
    write_atomic(path, text).map_err(|e| {
        RpcError::new(
            ErrorCode::InternalError,
            format!("cannot write {}: {e}", path.display()),
        )
    })?;
    gw.apply_config_locked(text)
        .await
        .map_err(|error| rejected(what, &error))
}
