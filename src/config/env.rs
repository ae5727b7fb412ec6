//! The `CLAWGATE_*` environment layer. `__` separates nesting levels and
//! each segment matches a schema key ignoring case and underscores, so
//! `CLAWGATE_GATEWAY__TICK_INTERVAL_MS` sets `gateway.tickIntervalMs`.

use crate::protocol::Schemas;
use serde_json::Value;

pub const PREFIX: &str = "CLAWGATE_";

/// One variable resolved to a config path and a typed value.
pub struct EnvSetting {
    pub var: String,
    pub pointer: String,
    pub value: Value,
}

/// Resolves every `CLAWGATE_` variable except the reserved CLI ones.
/// A variable that names no config key is an error `(variable, message)`.
pub fn settings(vars: &[(String, String)]) -> Result<Vec<EnvSetting>, (String, String)> {
    let mut out = Vec::new();
    for (var, raw) in vars {
        let Some(key) = var.strip_prefix(PREFIX) else {
            continue;
        };
        if super::RESERVED_ENV.contains(&key) {
            continue;
        }
        let (pointer, leaf) = resolve(key).ok_or_else(|| {
            (
                var.clone(),
                format!(
                    "{var} names no config key (use __ between levels, e.g. CLAWGATE_GATEWAY__PORT)"
                ),
            )
        })?;
        out.push(EnvSetting {
            var: var.clone(),
            pointer,
            value: typed_value(&leaf, raw),
        });
    }
    Ok(out)
}

fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

fn resolve(key: &str) -> Option<(String, Value)> {
    let schemas = Schemas::get();
    let mut schema = schemas.def("Config")?.clone();
    let mut pointer = String::new();
    for segment in key.split("__") {
        schema = deref(schemas, schema);
        let wanted = normalize(segment);
        let known = schema
            .get("properties")
            .and_then(|p| p.as_object())
            .and_then(|props| props.iter().find(|(name, _)| normalize(name) == wanted))
            .map(|(name, child)| (name.clone(), child.clone()));
        // A key the user names (e.g. an agent id) is taken in lower case.
        let (name, child) = match known {
            Some(found) => found,
            None => (
                segment.to_lowercase(),
                schema
                    .get("additionalProperties")
                    .filter(|a| a.is_object())?
                    .clone(),
            ),
        };
        pointer.push('/');
        pointer.push_str(&name);
        schema = child;
    }
    Some((pointer, deref(schemas, schema)))
}

fn deref(schemas: &Schemas, schema: Value) -> Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => schemas
            .def(r.trim_start_matches("#/$defs/"))
            .cloned()
            .unwrap_or(schema),
        None => schema,
    }
}

/// Strings stay strings; other types are read as JSON (so `8080`, `true`,
/// `["a","b"]` work), falling back to the raw string so validation can
/// report the type error.
fn typed_value(schema: &Value, raw: &str) -> Value {
    if schema.get("type").and_then(Value::as_str) == Some("string") {
        return Value::String(raw.to_string());
    }
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
}
