//! Editing one key of the config file without disturbing the rest of it,
//! and writing the file so that a crash never leaves it half written.

use super::load::{is_json, set_pointer};
use serde_json::Value;
use std::io::Write;
use std::path::Path;

/// The file text with the key at `pointer` set to `value` (removed when
/// `value` is null). TOML keeps every comment, blank line and key order
/// outside the changed value; JSON is rewritten pretty-printed in its
/// existing key order.
pub fn set_key(path: &Path, text: &str, pointer: &str, value: &Value) -> Result<String, String> {
    let segments: Vec<String> = crate::pointer::segments(pointer).collect();
    if is_json(path) {
        let mut doc: Value =
            serde_json::from_str(text).map_err(|e| format!("the file is not valid JSON: {e}"))?;
        set_pointer(&mut doc, pointer, value.clone());
        return Ok(serde_json::to_string_pretty(&doc).expect("JSON") + "\n");
    }
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        format!("the file is not valid TOML: {}", e.message())
    })?;
    let (last, parents) = segments.split_last().ok_or("no key given")?;
    let mut table: &mut dyn toml_edit::TableLike = doc.as_table_mut();
    for segment in parents {
        if table.get(segment).is_none() {
            let mut new_table = toml_edit::Table::new();
            new_table.set_implicit(true);
            table.insert(segment, toml_edit::Item::Table(new_table));
        }
        table = table
            .get_mut(segment)
            .and_then(|item| item.as_table_like_mut())
            .ok_or_else(|| format!("{segment} is not a table in the file"))?;
    }
    if value.is_null() {
        table.remove(last);
        return Ok(doc.to_string());
    }
    let mut new_value = to_toml(value)?;
    if let Some(old) = table.get(last).and_then(|item| item.as_value()) {
        *new_value.decor_mut() = old.decor().clone();
    }
    match table.get_mut(last) {
        Some(item) if item.is_value() => *item = toml_edit::Item::Value(new_value),
        _ => {
            table.insert(last, toml_edit::Item::Value(new_value));
        }
    }
    Ok(doc.to_string())
}

fn to_toml(value: &Value) -> Result<toml_edit::Value, String> {
    Ok(match value {
        Value::Null => return Err("null cannot be stored inside a TOML value".to_string()),
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.into(),
            (None, Some(f)) => f.into(),
            _ => return Err(format!("{n} does not fit a TOML number")),
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(items) => {
            let mut array = toml_edit::Array::new();
            for item in items {
                array.push_formatted(to_toml(item)?);
            }
            toml_edit::Value::Array(array)
        }
        Value::Object(map) => {
            let mut table = toml_edit::InlineTable::new();
            for (k, v) in map {
                table.insert(k, to_toml(v)?);
            }
            toml_edit::Value::InlineTable(table)
        }
    })
}

/// Writes `content` to `path` through a temporary file in the same
/// directory: write, fsync, rename over the old file, fsync the directory.
/// The file's permissions are kept.
pub fn write_atomic(path: &Path, content: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("clawgate-config");
    let tmp = dir.join(format!(".{name}.tmp-{}", uuid::Uuid::new_v4().simple()));
    let mode = std::fs::metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o7777);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(content.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes the temporary files [`write_atomic`] leaves when the process
/// dies between writing and renaming; call at start, before any write.
pub fn remove_stale_temp_files(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %entry.path().display(), "removed a half-written temporary file")
                }
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), "cannot remove a temporary file: {e}")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn toml_edits_keep_comments_and_layout() {
        let text = "# top\n[gateway]\nport = 1 # the port\n\n# auth below\n[gateway.auth]\nmode = \"none\"\n";
        let out = set_key(Path::new("c.toml"), text, "/gateway/port", &json!(2)).unwrap();
        assert_eq!(out, text.replace("port = 1 #", "port = 2 #"));
        let out = set_key(
            Path::new("c.toml"),
            text,
            "/gateway/auth/token",
            &json!("t"),
        )
        .unwrap();
        assert_eq!(out, text.to_string() + "token = \"t\"\n");
        let out = set_key(Path::new("c.toml"), text, "/logging/level", &json!("debug")).unwrap();
        assert!(
            out.starts_with(text) && out.ends_with("[logging]\nlevel = \"debug\"\n"),
            "{out}"
        );
        let out = set_key(Path::new("c.toml"), text, "/gateway/port", &Value::Null).unwrap();
        assert!(!out.contains("port"));
    }
}
