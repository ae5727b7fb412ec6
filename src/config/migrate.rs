//! Config format versions. Keys renamed or moved between releases are
//! data: `x-migrations` in the config schema, each a version and its
//! renames (dotted paths, `*` for any key). A file older than the current
//! version loads with its keys read under their new names; `clawgate
//! config upgrade` rewrites it (TOML through toml_edit, comments kept).

use crate::protocol::Schemas;
use serde_json::Value;
use std::sync::OnceLock;

/// The key that holds a file's format version.
const VERSION: &str = "version";

/// One release's renames.
#[derive(Debug, serde::Deserialize)]
pub struct Migration {
    pub version: u64,
    pub summary: String,
    pub renames: Vec<Rename>,
}

#[derive(Debug, serde::Deserialize)]
pub struct Rename {
    pub from: String,
    pub to: String,
}

/// A key that was read under its new name.
#[derive(Clone, Debug, PartialEq)]
pub struct Moved {
    /// Dotted, as the file has it and as it now is.
    pub from: String,
    pub to: String,
    pub version: u64,
    /// The same as keys (a key may hold a dot).
    from_path: Vec<String>,
    to_path: Vec<String>,
}

impl std::fmt::Display for Moved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is now {} (config version {}; clawgate config upgrade --write rewrites the file)",
            self.from, self.to, self.version
        )
    }
}

/// The renames, oldest first, from the schema.
pub fn migrations() -> &'static [Migration] {
    static MIGRATIONS: OnceLock<Vec<Migration>> = OnceLock::new();
    MIGRATIONS.get_or_init(|| {
        let data = Schemas::get()
            .def("Config")
            .and_then(|c| c.get("x-migrations"))
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        let mut list: Vec<Migration> =
            serde_json::from_value(data).expect("x-migrations of config.json is well formed");
        list.sort_by_key(|m| m.version);
        list
    })
}

/// The format version this build writes.
pub fn current_version() -> u64 {
    migrations().last().map_or(1, |m| m.version)
}

/// The version a file says it is; 1 when it says none.
fn version_of(value: &Value) -> u64 {
    value.get(VERSION).and_then(Value::as_u64).unwrap_or(1)
}

/// Moves the keys of a parsed file renamed since its version; on error,
/// the JSON pointer and the message.
pub fn migrate(value: &mut Value) -> Result<Vec<Moved>, (String, String)> {
    let version = version_of(value);
    let current = current_version();
    if version > current {
        return Err((
            format!("/{VERSION}"),
            format!("the file is config version {version}; this clawgate reads up to version {current}: upgrade clawgate"),
        ));
    }
    let mut moved = Vec::new();
    for migration in migrations().iter().filter(|m| m.version > version) {
        for rename in &migration.renames {
            let from: Vec<&str> = rename.from.split('.').collect();
            let to: Vec<&str> = rename.to.split('.').collect();
            for (at, bound) in matches(value, &from) {
                let target = fill(&to, &bound);
                if value.pointer(&pointer_of(&target)).is_some() {
                    return Err((
                        pointer_of(&target),
                        format!(
                            "both {} (its name before config version {}) and {} are set; keep {}",
                            at.join("."),
                            migration.version,
                            target.join("."),
                            target.join(".")
                        ),
                    ));
                }
                let item = take(value, &at).expect("matched");
                put(value, &target, item);
                moved.push(Moved {
                    from: at.join("."),
                    to: target.join("."),
                    version: migration.version,
                    from_path: at,
                    to_path: target,
                });
            }
        }
    }
    if value.get(VERSION).is_some() {
        value[VERSION] = Value::from(current);
    }
    Ok(moved)
}

/// The concrete paths in `value` matching `pattern`, with the keys each
/// `*` stood for.
fn matches(value: &Value, pattern: &[&str]) -> Vec<(Vec<String>, Vec<String>)> {
    let mut found = Vec::new();
    walk(value, pattern, &mut Vec::new(), &mut Vec::new(), &mut found);
    found
}

fn walk(
    value: &Value,
    pattern: &[&str],
    path: &mut Vec<String>,
    bound: &mut Vec<String>,
    found: &mut Vec<(Vec<String>, Vec<String>)>,
) {
    let Some((head, rest)) = pattern.split_first() else {
        found.push((path.clone(), bound.clone()));
        return;
    };
    let Some(map) = value.as_object() else {
        return;
    };
    let keys: Vec<&String> = match *head {
        "*" => map.keys().collect(),
        key => map.keys().filter(|k| *k == key).collect(),
    };
    for key in keys {
        path.push(key.clone());
        if *head == "*" {
            bound.push(key.clone());
        }
        walk(&map[key], rest, path, bound, found);
        if *head == "*" {
            bound.pop();
        }
        path.pop();
    }
}

/// `pattern` with each `*` replaced by the next bound key.
fn fill(pattern: &[&str], bound: &[String]) -> Vec<String> {
    let mut keys = bound.iter();
    pattern
        .iter()
        .map(|seg| match *seg {
            "*" => keys.next().cloned().unwrap_or_default(),
            seg => seg.to_string(),
        })
        .collect()
}

fn pointer_of(path: &[String]) -> String {
    path.iter()
        .map(|k| format!("/{}", k.replace('~', "~0").replace('/', "~1")))
        .collect()
}

fn take(value: &mut Value, path: &[String]) -> Option<Value> {
    let (last, parents) = path.split_last()?;
    let mut at = value;
    for key in parents {
        at = at.get_mut(key)?;
    }
    at.as_object_mut()?.remove(last)
}

fn put(value: &mut Value, path: &[String], item: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = value;
    for key in parents {
        let map = at.as_object_mut().expect("a table on the way");
        at = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    if let Some(map) = at.as_object_mut() {
        map.insert(last.clone(), item);
    }
}

/// A TOML file brought to the current version, comments and layout kept:
/// the new text and what moved.
pub fn upgrade_toml(text: &str) -> Result<(String, Vec<Moved>), String> {
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    let plain: Value = toml::from_str(text).map_err(|e| format!("{e}"))?;
    let mut check = plain.clone();
    let moved =
        migrate(&mut check).map_err(|(pointer, message)| format!("{pointer}: {message}"))?;
    for m in &moved {
        let from: Vec<&str> = m.from_path.iter().map(String::as_str).collect();
        let to: Vec<&str> = m.to_path.iter().map(String::as_str).collect();
        let (key, item) = remove_toml(doc.as_table_mut(), &from)
            .ok_or_else(|| format!("cannot find {} in the file", m.from))?;
        insert_toml(doc.as_table_mut(), &to, &key, item)?;
    }
    if version_of(&plain) < current_version() {
        doc.insert(VERSION, toml_edit::value(current_version() as i64));
    }
    Ok((doc.to_string(), moved))
}

fn remove_toml(
    table: &mut dyn toml_edit::TableLike,
    path: &[&str],
) -> Option<(toml_edit::Key, toml_edit::Item)> {
    let (first, rest) = path.split_first()?;
    if rest.is_empty() {
        let key = table.get_key_value(first)?.0.clone();
        return Some((key, table.remove(first)?));
    }
    let inner = table.get_mut(first)?.as_table_like_mut()?;
    remove_toml(inner, rest)
}

/// Puts `item` at `path`, keeping the old key's comments; tables on the
/// way are created as needed.
fn insert_toml(
    table: &mut dyn toml_edit::TableLike,
    path: &[&str],
    old_key: &toml_edit::Key,
    item: toml_edit::Item,
) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        return Err("an empty key".into());
    };
    if rest.is_empty() {
        let key = toml_edit::Key::new(*first).with_leaf_decor(old_key.leaf_decor().clone());
        table.entry_format(&key).or_insert(item);
        return Ok(());
    }
    let inner = table
        .entry(first)
        .or_insert(toml_edit::table())
        .as_table_like_mut()
        .ok_or_else(|| format!("{first} is not a table"))?;
    insert_toml(inner, rest, old_key, item)
}

/// The text of a file about to be edited under the current key names:
/// brought up to date when it uses names renamed since, else unchanged.
pub fn upgraded_for_edit(path: &std::path::Path, text: &str) -> Result<String, String> {
    let upgraded = if super::is_json(path) {
        upgrade_json(text)
    } else {
        upgrade_toml(text)
    };
    match upgraded {
        Ok((new, moved)) if !moved.is_empty() => {
            for m in &moved {
                tracing::info!("config: {} rewritten as {} before the edit", m.from, m.to);
            }
            Ok(new)
        }
        Ok(_) => Ok(text.to_string()),
        Err(e) => Err(e),
    }
}

/// A JSON file brought to the current version (reformatted).
pub fn upgrade_json(text: &str) -> Result<(String, Vec<Moved>), String> {
    let mut value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if !value.is_object() {
        return Err("the file does not hold a JSON object".to_string());
    }
    let before = version_of(&value);
    let moved =
        migrate(&mut value).map_err(|(pointer, message)| format!("{pointer}: {message}"))?;
    if before < current_version() {
        value[VERSION] = Value::from(current_version());
    }
    let mut out = serde_json::to_string_pretty(&value).expect("JSON");
    out.push('\n');
    Ok((out, moved))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_schema_default_is_the_latest_version() {
        let version = &Schemas::get().def("Config").unwrap()["properties"][VERSION];
        assert_eq!(version["default"], json!(current_version()));
        assert_eq!(version["maximum"], json!(current_version()));
        assert!(current_version() >= 2);
    }

    #[test]
    fn an_old_key_is_read_under_its_new_name() {
        let mut value = json!({"agents": {"main": {"provider": "echo", "system": "Be brief."}, "b": {"provider": "echo"}}});
        let moved = migrate(&mut value).unwrap();
        assert_eq!(value["agents"]["main"]["systemPrompt"], "Be brief.");
        assert!(value["agents"]["main"].get("system").is_none());
        let named: Vec<(&str, &str, u64)> = moved
            .iter()
            .map(|m| (m.from.as_str(), m.to.as_str(), m.version))
            .collect();
        assert_eq!(
            named,
            [("agents.main.system", "agents.main.systemPrompt", 2)]
        );
        // A file at the current version is taken as written.
        let mut current =
            json!({"version": 2, "agents": {"main": {"provider": "echo", "system": "x"}}});
        assert!(migrate(&mut current).unwrap().is_empty());
    }

    #[test]
    fn both_names_or_a_newer_file_are_refused() {
        let mut both = json!({"agents": {"main": {"system": "a", "systemPrompt": "b"}}});
        let (pointer, message) = migrate(&mut both).unwrap_err();
        assert_eq!(pointer, "/agents/main/systemPrompt");
        assert!(message.contains("both agents.main.system"), "{message}");
        let mut newer = json!({"version": 99});
        let (pointer, message) = migrate(&mut newer).unwrap_err();
        assert_eq!(pointer, "/version");
        assert!(message.contains("upgrade clawgate"), "{message}");
    }

    #[test]
    fn keys_with_dots_and_non_objects_are_handled() {
        let text = "[agents.\"gpt-4.1\"]\nprovider = \"echo\"\nsystem = \"x\"\n";
        let (upgraded, moved) = upgrade_toml(text).unwrap();
        assert_eq!(moved.len(), 1);
        assert!(upgraded.contains("systemPrompt = \"x\""), "{upgraded}");
        assert!(upgrade_json("[]").is_err());
    }

    #[test]
    fn a_toml_upgrade_keeps_comments_and_layout() {
        let text = "# my gateway\n[gateway]\nport = 18789 # the usual\n\n[agents.main]\nprovider = \"openai\"\n# keep it short\nsystem = \"Be brief.\" # tone\nmodel = \"gpt-4o-mini\"\n";
        let (upgraded, moved) = upgrade_toml(text).unwrap();
        assert_eq!(moved.len(), 1);
        assert!(
            upgraded.starts_with("version = 2\n# my gateway\n") || upgraded.contains("version = 2"),
            "{upgraded}"
        );
        assert!(upgraded.contains("port = 18789 # the usual"), "{upgraded}");
        assert!(
            upgraded.contains("# keep it short\nsystemPrompt = \"Be brief.\" # tone"),
            "{upgraded}"
        );
        assert!(!upgraded.contains("\nsystem ="), "{upgraded}");
        let (again, moved) = upgrade_toml(&upgraded).unwrap();
        assert!(moved.is_empty());
        assert_eq!(again, upgraded, "upgrading twice changes nothing");
    }
}
