//! Reference tables generated from the schema, for the README and
//! `clawgate config docs`. A test keeps the README's copies fresh.

use crate::config::meta::{reload_class, Reload};
use crate::protocol::{ErrorCode, Schemas};
use serde_json::Value;
use std::fmt::Write;

/// Markdown table of every config key: type, default, reload class, description.
pub fn config_table() -> String {
    let mut out =
        String::from("| key | type | default | reload | description |\n|---|---|---|---|---|\n");
    let schemas = Schemas::get();
    let config = schemas.def("Config").expect("Config definition");
    rows(schemas, config, "", &mut out);
    out
}

fn rows(schemas: &Schemas, schema: &Value, pointer: &str, out: &mut String) {
    let empty = serde_json::Map::new();
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    // Keys the user names (e.g. agent ids) are shown as <id>.
    let named = schema
        .get("additionalProperties")
        .filter(|a| a.is_object())
        .map(|_| ("<id>".to_string(), Value::Null));
    for (key, prop) in props
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(named)
    {
        let prop = &prop;
        if key == "$schema" {
            continue;
        }
        let child_pointer = format!("{pointer}/{key}");
        let target = schemas.schema_at("Config", &child_pointer).unwrap_or(prop);
        let has_keys = target.get("properties").is_some()
            || target
                .get("additionalProperties")
                .is_some_and(Value::is_object);
        if has_keys {
            rows(schemas, target, &child_pointer, out);
            continue;
        }
        let reload = match reload_class(&child_pointer) {
            Reload::Hot => "hot",
            Reload::Restart => "restart",
        };
        let default = prop
            .get("default")
            .map(|d| format!("`{d}`"))
            .unwrap_or_else(|| "—".to_string());
        let description = prop["description"]
            .as_str()
            .unwrap_or_default()
            .replace('|', "\\|");
        let _ = writeln!(
            out,
            "| `{}` | {} | {default} | {reload} | {description} |",
            crate::config::dotted(&child_pointer),
            type_name(target)
        );
    }
}

fn type_name(schema: &Value) -> String {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let names: Vec<String> = values
            .iter()
            .map(|v| v.to_string().replace('"', ""))
            .collect();
        return names.join(" \\| ");
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("array") => {
            let item = schema.get("items").map(type_name).unwrap_or_default();
            format!("array of {item}")
        }
        Some(t) => t.to_string(),
        None if schema.get("$ref").is_some() => {
            let name = schema["$ref"].as_str().unwrap_or_default();
            let target = Schemas::get().def(name.trim_start_matches("#/$defs/"));
            target.map(type_name).unwrap_or_default()
        }
        None => match schema.get("oneOf").and_then(Value::as_array) {
            Some(variants) => {
                let mut names: Vec<String> = variants.iter().map(type_name).collect();
                names.dedup();
                names.join(" \\| ")
            }
            None => "any".to_string(),
        },
    }
}

/// Markdown table of every error code.
pub fn error_code_table() -> String {
    let mut out = String::from("| code | name | meaning |\n|---|---|---|\n");
    for code in ErrorCode::ALL {
        let _ = writeln!(
            out,
            "| {} | `{}` | {} |",
            code.code(),
            code.name(),
            code.description()
        );
    }
    out
}

/// The config schema as a standalone document for editors.
pub fn config_schema() -> Value {
    let bundle = Schemas::get().bundle();
    let mut schema = bundle["$defs"]["Config"].clone();
    schema["$schema"] = Value::from("https://json-schema.org/draft/2020-12/schema");
    schema["$id"] = Value::from("https://clawgate.dev/schema/config.schema.json");
    schema["$defs"] = bundle["$defs"].clone();
    schema
}

/// Every file under gen/ with the content `clawgate gen` writes.
pub fn generated_files() -> Vec<(&'static str, String)> {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).expect("JSON") + "\n";
    vec![
        (
            "gen/schema/clawgate.schema.json",
            pretty(Schemas::get().bundle()),
        ),
        ("gen/schema/config.schema.json", pretty(&config_schema())),
        (
            "gen/schema/openclaw.schema.json",
            pretty(crate::protocol::openclaw::schemas().bundle()),
        ),
    ]
}
