//! Protocol compatibility: the protocol surface (every method, event,
//! error code, frame and config key with its schemas, `$ref`s inlined and
//! prose dropped), the rules that classify every difference between two
//! surfaces as breaking, dangerous or additive, and the recorded releases
//! the current surface is checked against.

#[path = "../../build/bundle.rs"]
#[allow(dead_code)]
mod bundle;
mod diff;
mod policy;
mod report;
pub mod rules;
mod schema;

pub use diff::diff;
pub use policy::Policy;
pub use report::{Finding, Part, Report, Summary};
pub use rules::Severity;

/// The differences between two surfaces under the default rules.
pub fn check(old: &Value, new: &Value) -> Report {
    diff(old, new, &Policy::default())
}

use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// Schema keywords that do not change what is valid on the wire.
/// (`default` stays: it says what an omitted value means.)
const PROSE: &[&str] = &["description", "title", "example", "examples", "$comment"];

/// Extension keywords a check reads: lifecycle, reload class and config
/// migrations.
const KEPT_EXTENSIONS: &[&str] = &["x-sunset", "x-reload", "x-migrations"];

/// The protocol surface of a bundled schema root.
pub fn surface(bundle: &Value) -> Value {
    let defs = bundle["$defs"].as_object().cloned().unwrap_or_default();
    let inline = |schema: &Value| inline(schema, &defs, &mut Vec::new());
    let mut methods = Map::new();
    let lifecycle = |spec: &Value, entry: &mut Value| {
        for key in ["deprecated", "x-sunset"] {
            if let Some(v) = spec.get(key) {
                entry[key] = v.clone();
            }
        }
    };
    for (name, spec) in bundle["methods"].as_object().into_iter().flatten() {
        let mut entry = json!({"scope": spec["scope"], "params": inline(&spec["params"]), "result": inline(&spec["result"])});
        lifecycle(spec, &mut entry);
        methods.insert(name.clone(), entry);
    }
    let mut events = Map::new();
    for (name, spec) in bundle["events"].as_object().into_iter().flatten() {
        let mut entry = json!({"scope": spec["scope"], "payload": inline(&spec["payload"])});
        lifecycle(spec, &mut entry);
        events.insert(name.clone(), entry);
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
    let version = &bundle["x-protocol-version"];
    let min = bundle.get("x-protocol-min-version").unwrap_or(version);
    json!({
        "protocolVersion": version,
        "minProtocolVersion": min,
        "scopeImplies": bundle["x-scope-implies"],
        "errors": errors,
        "frames": frames,
        "methods": methods,
        "events": events,
        "config": defs.get("Config").map(inline),
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
                .filter(|(k, _)| {
                    !PROSE.contains(&k.as_str())
                        && (!k.starts_with("x-") || KEPT_EXTENSIONS.contains(&k.as_str()))
                })
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

/// The recorded releases in a directory (`v1.json`, `v2.json`, …),
/// oldest first.
pub fn released(dir: &Path) -> Result<Vec<(u64, PathBuf)>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| {
            let path = e.ok()?.path();
            let stem = path.file_stem()?.to_str()?;
            let version = stem.strip_prefix('v')?.parse().ok()?;
            (path.extension()? == "json").then_some((version, path))
        })
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(format!(
            "{}: no recorded protocol (v1.json, v2.json, …)",
            dir.display()
        ));
    }
    Ok(found)
}

/// Whether `dir` holds recorded releases rather than schema sources.
pub fn is_release_dir(dir: &Path) -> bool {
    dir.is_dir() && !dir.join("protocol.json").exists()
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
    } else if is_openclaw_contract(&value) {
        Ok(openclaw_contract_surface(&value))
    } else if value.get("$defs").is_some() && value.get("methods").is_some() {
        Ok(surface(&value))
    } else if is_plugin_manifest(&value) {
        Ok(plugin_surface(&value))
    } else {
        Err(format!(
            "{}: neither a protocol snapshot, a bundled schema nor a plugin manifest",
            path.display()
        ))
    }
}

/// A manifest's optional schema, which means any object when left out.
fn schema_or_any(schema: &Value, inline: impl Fn(&Value) -> Value) -> Value {
    if schema.is_null() {
        json!({})
    } else {
        inline(schema)
    }
}

/// Whether `value` is a plugin's manifest (schema/plugin.json).
pub fn is_plugin_manifest(value: &Value) -> bool {
    value.get("protocolVersion").is_none()
        && value.get("$defs").is_none()
        && value["name"].is_string()
        && value["version"].is_string()
        && value["protocol"]["min"].is_u64()
}

/// The surface a plugin adds, from its manifest: its methods and events
/// under its name, and its config section and channel accounts as the
/// config an owner writes. Its protocol range stands for the protocol
/// versions.
pub fn plugin_surface(manifest: &Value) -> Value {
    let defs = Map::new();
    let inline = |schema: &Value| inline(schema, &defs, &mut Vec::new());
    let name = manifest["name"].as_str().unwrap_or_default();
    let mut methods = Map::new();
    for (local, spec) in manifest["methods"].as_object().into_iter().flatten() {
        let entry = json!({"scope": spec["scope"], "params": inline(&spec["params"]), "result": inline(&spec["result"])});
        methods.insert(format!("{name}.{local}"), entry);
    }
    let mut events = Map::new();
    for (local, spec) in manifest["events"].as_object().into_iter().flatten() {
        let entry = json!({"scope": spec["scope"], "payload": inline(&spec["payload"])});
        events.insert(format!("{name}.{local}"), entry);
    }
    let mut channels = Map::new();
    for (kind, spec) in manifest["channels"].as_object().into_iter().flatten() {
        let account = schema_or_any(&spec["config"], inline);
        channels.insert(
            kind.clone(),
            json!({"type": "object", "additionalProperties": account}),
        );
    }
    let section = schema_or_any(&manifest["config"], inline);
    let scopes = crate::protocol::Schemas::get().bundle();
    json!({
        "protocolVersion": manifest["protocol"]["max"],
        "minProtocolVersion": manifest["protocol"]["min"],
        "scopeImplies": scopes["x-scope-implies"],
        "errors": {},
        "frames": {},
        "methods": methods,
        "events": events,
        "config": {
            "type": "object",
            "properties": {
                "config": section,
                "channels": {"type": "object", "properties": channels},
            },
        },
    })
}

/// The surface of OpenClaw's protocol v4 as this binary serves it
/// (`schema/openclaw/`).
pub fn openclaw_current() -> Value {
    surface(crate::protocol::openclaw::schemas().bundle())
}

/// Whether `value` is OpenClaw's published contract (`protocol.schema.json`
/// of `@openclaw/gateway-protocol`: draft-07 `definitions`, and a method
/// table of scopes without schemas).
pub fn is_openclaw_contract(value: &Value) -> bool {
    value.get("definitions").is_some()
        && value.get("$defs").is_none()
        && value["methods"]
            .as_object()
            .is_some_and(|m| m.values().all(|spec| spec.get("params").is_none()))
}

/// OpenClaw's contract as a surface of the methods and events clawgate
/// serves, to check them against: a method's params and result are the
/// contract's `<Name>Params` and `<Name>Result` definitions (any value
/// where it names none), an event's payload its `<Name>Event`. A scope the
/// contract derives from the params (`dynamic`) is taken as served.
pub fn openclaw_contract_surface(contract: &Value) -> Value {
    let served = openclaw_current();
    let definitions = contract["definitions"]
        .to_string()
        .replace("\"#/definitions/", "\"#/$defs/");
    let mut defs: Map<String, Value> = serde_json::from_str(&definitions).unwrap_or_default();
    defs.values_mut().for_each(const_choices_as_enums);
    let named = |name: String| {
        defs.get(&name)
            .map_or_else(|| json!({}), |s| inline(s, &defs, &mut Vec::new()))
    };
    let pascal = |name: &str| {
        name.split(['.', '-', '_'])
            .map(|part| {
                let mut chars = part.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect::<String>()
    };
    let mut methods = Map::new();
    for (name, ours) in served["methods"].as_object().into_iter().flatten() {
        let Some(spec) = contract["methods"].get(name) else {
            continue;
        };
        let scope = match spec["scope"].as_str() {
            Some("dynamic") | None => ours["scope"].clone(),
            Some(scope) => Value::from(scope),
        };
        let base = pascal(name);
        methods.insert(
            name.clone(),
            json!({"scope": scope, "params": named(format!("{base}Params")), "result": named(format!("{base}Result"))}),
        );
    }
    let mut events = Map::new();
    for (name, ours) in served["events"].as_object().into_iter().flatten() {
        events.insert(
            name.clone(),
            json!({"scope": ours["scope"], "payload": named(format!("{}Event", pascal(name)))}),
        );
    }
    json!({
        "protocolVersion": served["protocolVersion"],
        "minProtocolVersion": served["minProtocolVersion"],
        "scopeImplies": served["scopeImplies"],
        "errors": {},
        "frames": {},
        "methods": methods,
        "events": events,
        "config": null,
    })
}

/// Rewrites TypeBox's unions of string constants (`anyOf: [{type: string,
/// const: a}, …]`) as the `enum` they mean, which the rules compare.
fn const_choices_as_enums(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let choices: Option<Vec<Value>> =
                map.get("anyOf")
                    .and_then(Value::as_array)
                    .and_then(|branches| {
                        branches
                            .iter()
                            .map(|b| {
                                let b = b.as_object()?;
                                let only_const = b.keys().all(|k| k == "type" || k == "const")
                                    && b.get("type").is_none_or(|t| t == "string");
                                only_const
                                    .then(|| b.get("const").filter(|c| c.is_string()).cloned())
                                    .flatten()
                            })
                            .collect()
                    });
            if let Some(choices) = choices.filter(|c| !c.is_empty()) {
                map.remove("anyOf");
                map.insert("type".into(), "string".into());
                map.insert("enum".into(), Value::Array(choices));
            }
            map.values_mut().for_each(const_choices_as_enums);
        }
        Value::Array(items) => items.iter_mut().for_each(const_choices_as_enums),
        _ => {}
    }
}
