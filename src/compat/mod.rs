//! Protocol compatibility: the protocol surface (every method, event,
//! error code and frame with its schemas, `$ref`s inlined and prose
//! dropped) and the classification of every difference between two
//! surfaces as breaking or additive for existing clients.

#[path = "../../build/bundle.rs"]
#[allow(dead_code)]
mod bundle;
mod diff;

pub use diff::{check, Change, Report};

use serde_json::{json, Map, Value};
use std::path::Path;

/// Schema keywords that do not change what is valid on the wire.
const PROSE: &[&str] = &[
    "description",
    "title",
    "example",
    "examples",
    "default",
    "$comment",
];

/// The protocol surface of a bundled schema root.
pub fn surface(bundle: &Value) -> Value {
    let defs = bundle["$defs"].as_object().cloned().unwrap_or_default();
    let inline = |schema: &Value| inline(schema, &defs, &mut Vec::new());
    let mut methods = Map::new();
    for (name, spec) in bundle["methods"].as_object().into_iter().flatten() {
        methods.insert(
            name.clone(),
            json!({"scope": spec["scope"], "params": inline(&spec["params"]), "result": inline(&spec["result"])}),
        );
    }
    let mut events = Map::new();
    for (name, spec) in bundle["events"].as_object().into_iter().flatten() {
        events.insert(
            name.clone(),
            json!({"scope": spec["scope"], "payload": inline(&spec["payload"])}),
        );
    }
    let errors: Map<String, Value> = bundle["x-error-codes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["name"].as_str()?.to_string(), e["code"].clone())))
        .collect();
    let frames: Map<String, Value> = ["RequestFrame", "ResultFrame", "ErrorFrame", "EventFrame"]
        .iter()
        .filter_map(|name| Some((name.to_string(), inline(defs.get(*name)?))))
        .collect();
    json!({
        "protocolVersion": bundle["x-protocol-version"],
        "scopeImplies": bundle["x-scope-implies"],
        "errors": errors,
        "frames": frames,
        "methods": methods,
        "events": events,
    })
}

/// A schema with its `$ref`s replaced by what they name (a recursive
/// reference stays a `$ref`) and prose removed.
fn inline(schema: &Value, defs: &Map<String, Value>, stack: &mut Vec<String>) -> Value {
    match schema {
        Value::Object(map) => {
            if let Some(name) = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/$defs/"))
            {
                if stack.iter().any(|s| s == name) {
                    return json!({"$ref": name});
                }
                let Some(target) = defs.get(name) else {
                    return schema.clone();
                };
                stack.push(name.to_string());
                let inlined = inline(target, defs, stack);
                stack.pop();
                return inlined;
            }
            let kept = map
                .iter()
                .filter(|(k, _)| !PROSE.contains(&k.as_str()) && !k.starts_with("x-"))
                .map(|(k, v)| {
                    // Property names are data, not keywords.
                    let v = if k == "properties" {
                        Value::Object(
                            v.as_object()
                                .into_iter()
                                .flatten()
                                .map(|(name, s)| (name.clone(), inline(s, defs, stack)))
                                .collect(),
                        )
                    } else {
                        inline(v, defs, stack)
                    };
                    (k.clone(), v)
                })
                .collect();
            Value::Object(kept)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| inline(v, defs, stack)).collect()),
        other => other.clone(),
    }
}

/// The surface of the schema built into this binary.
pub fn current() -> Value {
    surface(crate::protocol::Schemas::get().bundle())
}

/// A surface from a recorded snapshot file, a bundled schema file (such
/// as gen/schema/clawgate.schema.json), or a directory laid out like
/// `schema/`.
pub fn load(path: &Path) -> Result<Value, String> {
    if path.is_dir() {
        let bundle = bundle::load(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(surface(&bundle.root));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
    if value.get("protocolVersion").is_some() && value.get("methods").is_some() {
        Ok(value)
    } else if value.get("$defs").is_some() && value.get("methods").is_some() {
        Ok(surface(&value))
    } else {
        Err(format!(
            "{}: neither a protocol snapshot nor a bundled schema",
            path.display()
        ))
    }
}
