//! The schema is the one source: documented, with valid examples, and
//! the code generated from it is pinned by snapshots.

use clawgate::protocol::{EventKind, Method, Schemas};
use serde_json::Value;

fn bundle() -> &'static Value {
    Schemas::get().bundle()
}

fn undocumented(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                for (name, prop) in props {
                    if prop
                        .get("description")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        out.push(format!("{path}/properties/{name}"));
                    }
                }
            }
            for (k, child) in map {
                undocumented(child, &format!("{path}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                undocumented(child, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_property_and_definition_is_documented() {
    let mut missing = Vec::new();
    undocumented(bundle(), "", &mut missing);
    for (name, def) in bundle()["$defs"].as_object().unwrap() {
        if def.get("description").is_none()
            && def.get("$ref").is_none()
            && def.get("properties").is_none()
        {
            missing.push(format!("$defs/{name}"));
        }
    }
    assert!(missing.is_empty(), "undocumented: {missing:#?}");
}

#[test]
fn every_method_and_event_example_validates() {
    let schemas = Schemas::get();
    let mut failures = Vec::new();
    for method in Method::ALL {
        let spec = &bundle()["methods"][method.name()];
        for (part, key) in [("params", "params"), ("result", "result")] {
            let def = spec[key]["$ref"]
                .as_str()
                .unwrap()
                .trim_start_matches("#/$defs/");
            if let Err(v) = schemas.validate(def, &spec["example"][part]) {
                failures.push(format!("{} example {part}: {v:?}", method.name()));
            }
        }
    }
    for kind in EventKind::ALL {
        let example = &bundle()["events"][kind.name()]["example"];
        if let Err(v) = schemas.validate(kind.payload_def(), example) {
            failures.push(format!("event {} example: {v:?}", kind.name()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_method_and_event_declares_a_scope_and_summary() {
    for method in Method::ALL {
        let spec = &bundle()["methods"][method.name()];
        assert!(spec["scope"].is_string(), "{}", method.name());
        assert!(!method.summary().is_empty());
    }
    for kind in EventKind::ALL {
        assert!(
            bundle()["events"][kind.name()]["scope"].is_string(),
            "{}",
            kind.name()
        );
    }
    assert_eq!(Method::Connect.scope(), None, "only connect is public");
    assert!(Method::ALL.iter().filter(|m| m.scope().is_none()).count() == 1);
}

#[test]
fn the_example_configs_in_the_repository_validate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let path = entry.unwrap().path();
        // Only configs: examples/ also holds a systemd unit.
        if !path.extension().is_some_and(|e| e == "toml" || e == "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let value = clawgate::config::parse_text(&path, &text).unwrap();
        if let Err(problems) = clawgate::config::validate(&value) {
            panic!("{} is invalid: {problems:?}", path.display());
        }
        checked += 1;
    }
    assert!(checked >= 2);
}

#[test]
fn no_method_or_event_name_is_spelled_in_src() {
    let names: Vec<String> = Method::ALL
        .iter()
        .map(|m| m.name())
        .chain(EventKind::ALL.iter().map(|e| e.name()))
        .map(|n| format!("\"{n}\""))
        .collect();
    // Literals that share a method's name and mean something else.
    let allowed = [
        (
            "src/compat/rules.rs",
            "\"config\"",
            "the flow of the config file in rule ids (config.type.changed)",
        ),
        (
            "src/config/openclaw/agents.rs",
            "\"heartbeat\"",
            "the heartbeat section of an agent in OpenClaw's config and clawgate's",
        ),
        (
            "src/tailscale.rs",
            "\"status\"",
            "the tailscale CLI's status subcommand",
        ),
        (
            "src/server/openclaw/convert.rs",
            "\"connect\"",
            "OpenClaw's presence reason for a client that is connected",
        ),
    ];
    let mut found = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for name in &names {
                    if allowed
                        .iter()
                        .any(|(file, literal, _)| path.ends_with(file) && literal == name)
                    {
                        continue;
                    }
                    // A JSON key (`"sessions": …`) or a lookup (`v["sessions"]`)
                    // that happens to share a method's name is data, not the method.
                    let names_method = text.match_indices(name.as_str()).any(|(at, _)| {
                        let after = text[at + name.len()..].trim_start();
                        !after.starts_with(':') && !after.starts_with(']')
                    });
                    if names_method {
                        found.push(format!("{} spells {name}", path.display()));
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

/// Config keys are named through `config::keys`, generated from the
/// schema; no code outside tests spells one, as a pointer or dotted. Keys
/// of one segment are left out: "cron" is also a word, and "/session" also
/// a chat command.
#[test]
fn no_config_key_is_spelled_in_src() {
    let mut spellings: Vec<String> = Vec::new();
    for key in clawgate::config::keys::ALL {
        let dotted = clawgate::config::dotted(key);
        if dotted.contains('.') {
            spellings.push(format!("\"{key}\""));
            spellings.push(format!("\"{dotted}\""));
        }
    }
    let mut found = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                for spelled in spellings.iter().filter(|s| code.contains(s.as_str())) {
                    found.push(format!("{} spells {spelled}", path.display()));
                }
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings
}

#[test]
fn generated_code_is_pinned() {
    snapshot_settings().bind(|| {
        insta::assert_snapshot!(
            "generated_dispatch",
            include_str!(concat!(env!("OUT_DIR"), "/dispatch.rs"))
        );
        insta::assert_snapshot!(
            "generated_config_meta",
            include_str!(concat!(env!("OUT_DIR"), "/config_meta.rs"))
        );
        insta::assert_snapshot!(
            "generated_client",
            include_str!(concat!(env!("OUT_DIR"), "/client.rs"))
        );
        insta::assert_snapshot!(
            "generated_types",
            include_str!(concat!(env!("OUT_DIR"), "/types.rs"))
        );
    });
}

pub fn settings() -> insta::Settings {
    snapshot_settings()
}

/// The README's reference tables are generated from the schema; run the
/// tests with CLAWGATE_BLESS=1 to rewrite them after a schema change.
#[test]
fn readme_tables_match_the_schema() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let mut updated = readme.clone();
    for (marker, table) in [
        ("error-codes", clawgate::docs::error_code_table()),
        ("config-table", clawgate::docs::config_table()),
    ] {
        let start = format!("<!-- {marker}:start -->\n");
        let end = format!("<!-- {marker}:end -->");
        let a = updated
            .find(&start)
            .unwrap_or_else(|| panic!("README lacks {start}"))
            + start.len();
        let b = updated
            .find(&end)
            .unwrap_or_else(|| panic!("README lacks {end}"));
        updated.replace_range(a..b, &table);
    }
    if std::env::var_os("CLAWGATE_BLESS").is_some() {
        std::fs::write(path, &updated).unwrap();
    } else {
        assert!(
            updated == readme,
            "README tables are stale; run CLAWGATE_BLESS=1 cargo test --test it readme"
        );
    }
}

#[test]
fn generated_files_in_gen_are_fresh() {
    let out = std::process::Command::new(crate::support::bin())
        .args(["gen", "--check", "--root", env!("CARGO_MANIFEST_DIR")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
