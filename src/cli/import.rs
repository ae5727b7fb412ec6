//! `clawgate config import-openclaw`: an OpenClaw config (openclaw.json,
//! JSON5, with its cron/jobs.json) written as a clawgate.toml, and the
//! list of what could not be carried over.

use crate::config::json5;
use crate::config::openclaw::{self, Left};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// OpenClaw's limits on `$include`: nesting depth and file size.
const MAX_INCLUDE_DEPTH: usize = 10;
const MAX_INCLUDE_BYTES: u64 = 2 * 1024 * 1024;
/// The key that pulls other files into an object.
const INCLUDE: &str = "$include";

pub struct Converted {
    pub toml: String,
    pub left: Vec<Left>,
    /// The jobs file read, if any.
    pub jobs: Option<PathBuf>,
}

/// Reads `path` (and `jobs`, default `cron/jobs.json` beside it when
/// present) and writes the clawgate config as TOML.
pub fn convert(path: &Path, jobs: Option<&Path>) -> Result<Converted, String> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let parse =
        |p: &Path, text: &str| json5::parse(text).map_err(|e| format!("{}:{e}", p.display()));
    let mut config = parse(path, &read(path)?)?;
    let root = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let root = root
        .canonicalize()
        .map_err(|e| format!("{}: {e}", root.display()))?;
    resolve_includes(&mut config, &root, &root, 0)?;
    let beside = path.parent().map(|d| d.join("cron").join("jobs.json"));
    let jobs_path = match jobs {
        Some(p) => Some(p.to_path_buf()),
        None => beside.filter(|p| p.is_file()),
    };
    let jobs_value = match &jobs_path {
        Some(p) => Some(parse(p, &read(p)?)?),
        None => None,
    };
    let home = std::env::var("HOME").ok();
    let imported = openclaw::import(&config, jobs_value.as_ref(), home.as_deref());
    let mut body =
        toml::to_string(&imported.config).map_err(|e| format!("cannot write TOML: {e}"))?;
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let mut toml = format!(
        "# Imported from {} by clawgate config import-openclaw.\n\
         # Secrets stay ${{VAR}} references: set them where clawgate runs.\n\n{body}",
        path.display()
    );
    if !imported.left.is_empty() {
        toml.push_str("\n# Not carried over:\n");
        for left in &imported.left {
            toml.push_str(&format!("#   {}: {}\n", left.key, left.why));
        }
    }
    Ok(Converted {
        toml,
        left: imported.left,
        jobs: jobs_path,
    })
}

/// Replaces each `$include` (a path or a list of paths, relative to the
/// including file) by the files it names, deep-merged in order, with the
/// object's other keys over them, as OpenClaw reads them: at most
/// MAX_INCLUDE_DEPTH levels, files inside the config's directory only.
fn resolve_includes(
    value: &mut Value,
    dir: &Path,
    root: &Path,
    depth: usize,
) -> Result<(), String> {
    match value {
        Value::Array(items) => {
            for item in items {
                resolve_includes(item, dir, root, depth)?;
            }
        }
        Value::Object(map) => {
            let included = map.remove(INCLUDE);
            for child in map.values_mut() {
                resolve_includes(child, dir, root, depth)?;
            }
            let Some(included) = included else {
                return Ok(());
            };
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(format!(
                    "$include nested deeper than {MAX_INCLUDE_DEPTH} levels"
                ));
            }
            let paths: Vec<String> = match included {
                Value::String(p) => vec![p],
                Value::Array(list) => list
                    .into_iter()
                    .map(|p| p.as_str().map(str::to_string).ok_or("$include lists paths"))
                    .collect::<Result<_, _>>()?,
                _ => return Err("$include is a path or a list of paths".to_string()),
            };
            let mut merged = Value::Object(Map::new());
            for relative in paths {
                let path = dir
                    .join(&relative)
                    .canonicalize()
                    .map_err(|e| format!("$include {relative}: {e}"))?;
                if !path.starts_with(root) {
                    return Err(format!(
                        "$include {relative}: outside the config's directory"
                    ));
                }
                let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                if size > MAX_INCLUDE_BYTES {
                    return Err(format!("$include {relative}: larger than 2 MB"));
                }
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let mut part =
                    json5::parse(&text).map_err(|e| format!("{}:{e}", path.display()))?;
                let part_dir = path.parent().unwrap_or(root).to_path_buf();
                resolve_includes(&mut part, &part_dir, root, depth + 1)?;
                deep_merge(&mut merged, part);
            }
            let own = std::mem::take(map);
            deep_merge(&mut merged, Value::Object(own));
            *value = merged;
        }
        _ => {}
    }
    Ok(())
}

/// `over`'s keys onto `base`, objects merged key by key.
fn deep_merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        deep_merge(existing, value)
                    }
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}
