//! Reads `schema/`, checks it, and merges it into one self-contained root.

use heck::ToPascalCase;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::path::Path;

pub const FILES: [&str; 7] = [
    "common.json",
    "protocol.json",
    "methods.json",
    "events.json",
    "tools.json",
    "config.json",
    "plugin.json",
];

/// One RPC method as the code generator needs it.
pub struct MethodSpec {
    pub name: String,
    pub summary: String,
    pub scope: Option<String>,
    pub params_type: String,
    pub result_type: String,
}

/// One server event as the code generator needs it.
pub struct EventSpec {
    pub name: String,
    pub summary: String,
    pub scope: Option<String>,
    pub payload_type: String,
}

/// One agent tool as the code generator needs it.
pub struct ToolSpec {
    pub name: String,
    pub summary: String,
    pub params_type: String,
}

pub struct ErrorCodeSpec {
    pub name: String,
    pub code: i64,
    pub description: String,
}

pub struct Bundle {
    /// The bundled schema: every definition under `$defs`, refs local.
    pub root: Value,
    pub protocol_version: u64,
    /// The oldest version whose clients this gateway still serves.
    pub protocol_min_version: u64,
    pub methods: Vec<MethodSpec>,
    pub events: Vec<EventSpec>,
    pub tools: Vec<ToolSpec>,
    pub error_codes: Vec<ErrorCodeSpec>,
    pub scopes: Vec<String>,
    pub scope_implies: Vec<(String, Vec<String>)>,
}

type Result<T> = std::result::Result<T, String>;

pub fn load(dir: &Path) -> Result<Bundle> {
    let mut docs = Map::new();
    for file in FILES {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let doc: Value =
            serde_json::from_str(&text).map_err(|e| format!("{file} is not valid JSON: {e}"))?;
        unique_keys(&text).map_err(|e| format!("{file}: {e}"))?;
        docs.insert(file.to_string(), localize_refs(file, doc)?);
    }
    let mut defs = Map::new();
    for file in FILES {
        if let Some(file_defs) = docs[file].get("$defs").and_then(Value::as_object) {
            for (name, schema) in file_defs {
                insert_def(&mut defs, name, schema.clone(), file)?;
            }
        }
    }

    let protocol = &docs["protocol.json"];
    let protocol_version = protocol["x-protocol-version"]
        .as_u64()
        .ok_or("protocol.json needs an integer x-protocol-version")?;
    let protocol_min_version = match &protocol["x-protocol-min-version"] {
        Value::Null => protocol_version,
        v => v
            .as_u64()
            .filter(|min| (1..=protocol_version).contains(min))
            .ok_or("protocol.json: x-protocol-min-version must be an integer from 1 to x-protocol-version")?,
    };
    let scopes = string_enum(&defs, "Scope")?;
    let scope_implies = read_scope_implies(protocol, &scopes)?;
    let error_codes = read_error_codes(protocol)?;

    let mut methods = Vec::new();
    let mut bundled_methods = Map::new();
    let method_table = docs["methods.json"]["methods"]
        .as_object()
        .ok_or("methods.json needs a methods object")?;
    distinct_after_conversion("method", method_table.keys())?;
    distinct_after_conversion(
        "event",
        docs["events.json"]["events"]
            .as_object()
            .into_iter()
            .flat_map(|events| events.keys()),
    )?;
    distinct_after_conversion("$defs name", defs.keys())?;
    for (name, spec) in method_table {
        let ctx = format!("method {name}");
        let scope = read_scope(spec, &scopes, &ctx)?;
        let summary = read_summary(spec, &ctx)?;
        let pascal = pascal(name);
        let params_type = lift(&mut defs, &spec["params"], &format!("{pascal}Params"), &ctx)?;
        let result_type = lift(&mut defs, &spec["result"], &format!("{pascal}Result"), &ctx)?;
        let example = spec.get("example").ok_or(format!("{ctx} has no example"))?;
        if example.get("params").is_none() || example.get("result").is_none() {
            return Err(format!("{ctx}: example needs params and result"));
        }
        let mut entry = json!({
            "summary": summary,
            "scope": spec["scope"],
            "params": {"$ref": format!("#/$defs/{params_type}")},
            "result": {"$ref": format!("#/$defs/{result_type}")},
            "example": example,
        });
        copy_lifecycle(spec, &mut entry, &ctx)?;
        bundled_methods.insert(name.clone(), entry);
        methods.push(MethodSpec {
            name: name.clone(),
            summary,
            scope,
            params_type,
            result_type,
        });
    }

    let mut events = Vec::new();
    let mut bundled_events = Map::new();
    let event_table = docs["events.json"]["events"]
        .as_object()
        .ok_or("events.json needs an events object")?;
    for (name, spec) in event_table {
        let ctx = format!("event {name}");
        let scope = read_scope(spec, &scopes, &ctx)?;
        let summary = read_summary(spec, &ctx)?;
        let payload_type = lift(
            &mut defs,
            &spec["payload"],
            &format!("{}Event", pascal(name)),
            &ctx,
        )?;
        let example = spec.get("example").ok_or(format!("{ctx} has no example"))?;
        let mut entry = json!({
            "summary": summary,
            "scope": spec["scope"],
            "payload": {"$ref": format!("#/$defs/{payload_type}")},
            "example": example,
        });
        copy_lifecycle(spec, &mut entry, &ctx)?;
        bundled_events.insert(name.clone(), entry);
        events.push(EventSpec {
            name: name.clone(),
            summary,
            scope,
            payload_type,
        });
    }

    let mut tools = Vec::new();
    let mut bundled_tools = Map::new();
    let tool_table = docs["tools.json"]["tools"]
        .as_object()
        .ok_or("tools.json needs a tools object")?;
    for (name, spec) in tool_table {
        let ctx = format!("tool {name}");
        let summary = read_summary(spec, &ctx)?;
        let params_type = lift(
            &mut defs,
            &spec["parameters"],
            &format!("{}ToolParams", pascal(name)),
            &ctx,
        )?;
        let example = spec.get("example").ok_or(format!("{ctx} has no example"))?;
        bundled_tools.insert(
            name.clone(),
            json!({
                "summary": summary,
                "parameters": {"$ref": format!("#/$defs/{params_type}")},
                "example": example,
            }),
        );
        tools.push(ToolSpec {
            name: name.clone(),
            summary,
            params_type,
        });
    }

    let mut config = docs["config.json"].clone();
    let config_obj = config
        .as_object_mut()
        .ok_or("config.json must be an object")?;
    for key in ["$defs", "$schema", "$id"] {
        config_obj.remove(key);
    }
    insert_def(&mut defs, "Config", config, "config.json")?;
    fill_section_defaults(&mut defs, "Config");

    check_refs(&Value::Object(defs.clone()), &defs)?;
    check_sunsets(&Value::Object(defs.clone()), "#/$defs")?;

    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://clawgate.dev/schema/clawgate.schema.json",
        "title": "clawgate",
        "description": "The whole clawgate protocol and configuration, bundled from schema/.",
        "x-protocol-version": protocol_version,
        "x-protocol-min-version": protocol_min_version,
        "x-error-codes": protocol["x-error-codes"],
        "x-scope-implies": protocol["x-scope-implies"],
        "methods": bundled_methods,
        "events": bundled_events,
        "tools": bundled_tools,
        "config": {"$ref": "#/$defs/Config"},
        "$defs": defs,
    });
    Ok(Bundle {
        root,
        protocol_version,
        protocol_min_version,
        methods,
        events,
        tools,
        error_codes,
        scopes,
        scope_implies,
    })
}

/// Every deprecated schema names the protocol version from which it may
/// be removed.
fn check_sunsets(schema: &Value, at: &str) -> Result<()> {
    match schema {
        Value::Object(map) => {
            if map.get("deprecated") == Some(&Value::Bool(true))
                && !map.get("x-sunset").is_some_and(Value::is_u64)
            {
                return Err(format!(
                    "{at} is deprecated without an x-sunset (the protocol version from which it may be removed)"
                ));
            }
            map.iter()
                .try_for_each(|(k, v)| check_sunsets(v, &format!("{at}/{k}")))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_sunsets(v, &format!("{at}/{i}"))),
        _ => Ok(()),
    }
}

/// Copies `deprecated` and `x-sunset` (the protocol version from which
/// the method or event may be removed) into its bundled entry; a
/// deprecation must name its sunset.
fn copy_lifecycle(spec: &Value, entry: &mut Value, ctx: &str) -> Result<()> {
    let deprecated = match &spec["deprecated"] {
        Value::Null => false,
        Value::Bool(b) => *b,
        _ => return Err(format!("{ctx}: deprecated must be true or false")),
    };
    let sunset = &spec["x-sunset"];
    if !sunset.is_null() && !sunset.is_u64() {
        return Err(format!(
            "{ctx}: x-sunset must be a protocol version (an integer)"
        ));
    }
    if deprecated && sunset.is_null() {
        return Err(format!(
            "{ctx} is deprecated without an x-sunset (the protocol version from which it may be removed)"
        ));
    }
    if deprecated {
        entry["deprecated"] = Value::Bool(true);
        entry["x-sunset"] = sunset.clone();
    }
    Ok(())
}

pub fn pascal(name: &str) -> String {
    name.to_pascal_case()
}

/// Fails when two names become one Rust name (`sessions.list` and
/// `sessionsList` are both `SessionsList`), naming both.
fn distinct_after_conversion<'a>(
    what: &str,
    names: impl IntoIterator<Item = &'a String>,
) -> Result<()> {
    let mut seen: std::collections::BTreeMap<String, &String> = Default::default();
    for name in names {
        if let Some(other) = seen.insert(pascal(name), name) {
            return Err(format!(
                "{what}s {other} and {name} both become {} in the generated code; rename one",
                pascal(name)
            ));
        }
    }
    Ok(())
}

/// Fails on an object that names a key twice, which serde_json would
/// accept, keeping the last: a duplicated method or definition would
/// silently replace the first.
pub fn unique_keys(text: &str) -> Result<()> {
    use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
    struct Unique;
    impl<'de> serde::Deserialize<'de> for Unique {
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            d.deserialize_any(Unique)
        }
    }
    impl<'de> Visitor<'de> for Unique {
        type Value = Unique;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Unique, A::Error> {
            let mut keys = BTreeSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !keys.insert(key.clone()) {
                    return Err(serde::de::Error::custom(format!(
                        "the key {key:?} appears twice in one object"
                    )));
                }
                map.next_value::<Unique>()?;
            }
            Ok(Unique)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Unique, A::Error> {
            while seq.next_element::<Unique>()?.is_some() {}
            Ok(Unique)
        }
        fn visit_bool<E>(self, _: bool) -> std::result::Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_i64<E>(self, _: i64) -> std::result::Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_u64<E>(self, _: u64) -> std::result::Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_f64<E>(self, _: f64) -> std::result::Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_str<E>(self, _: &str) -> std::result::Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_unit<E>(self) -> std::result::Result<Unique, E> {
            Ok(Unique)
        }
    }
    serde_json::from_str::<Unique>(text)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

pub fn insert_def(
    defs: &mut Map<String, Value>,
    name: &str,
    schema: Value,
    file: &str,
) -> Result<()> {
    if defs.insert(name.to_string(), schema).is_some() {
        return Err(format!(
            "$defs/{name} in {file} is defined twice across schema/"
        ));
    }
    Ok(())
}

/// Uses the referenced definition when `schema` is only a `$ref`, otherwise
/// stores the schema as a new definition called `name`.
pub fn lift(
    defs: &mut Map<String, Value>,
    schema: &Value,
    name: &str,
    ctx: &str,
) -> Result<String> {
    let obj = schema
        .as_object()
        .ok_or(format!("{ctx}: schema must be an object"))?;
    if let Some(target) = obj.get("$ref").and_then(Value::as_str) {
        if obj.keys().all(|k| k == "$ref" || k == "description") {
            return Ok(target.trim_start_matches("#/$defs/").to_string());
        }
    }
    insert_def(defs, name, schema.clone(), ctx)?;
    Ok(name.to_string())
}

/// Rewrites `file.json#/$defs/X` and `#/$defs/X` to the bundle-local `#/$defs/X`.
pub fn localize_refs(file: &str, mut doc: Value) -> Result<Value> {
    fn walk(file: &str, v: &mut Value) -> Result<()> {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get_mut("$ref") {
                    let (target_file, pointer) = r.split_once('#').unwrap_or((r.as_str(), ""));
                    if !target_file.is_empty() && !FILES.contains(&target_file) {
                        return Err(format!("{file}: $ref {r} names an unknown file"));
                    }
                    let Some(name) = pointer.strip_prefix("/$defs/") else {
                        return Err(format!("{file}: $ref {r} must point into $defs"));
                    };
                    *r = format!("#/$defs/{name}");
                }
                map.values_mut().try_for_each(|child| walk(file, child))
            }
            Value::Array(items) => items.iter_mut().try_for_each(|child| walk(file, child)),
            _ => Ok(()),
        }
    }
    walk(file, &mut doc)?;
    Ok(doc)
}

pub fn check_refs(v: &Value, defs: &Map<String, Value>) -> Result<()> {
    match v {
        Value::Object(map) => {
            if let Some(r) = map.get("$ref").and_then(Value::as_str) {
                let name = r.trim_start_matches("#/$defs/");
                if !defs.contains_key(name) {
                    return Err(format!("$ref {r} points to no definition"));
                }
            }
            map.values().try_for_each(|child| check_refs(child, defs))
        }
        Value::Array(items) => items.iter().try_for_each(|child| check_refs(child, defs)),
        _ => Ok(()),
    }
}

fn string_enum(defs: &Map<String, Value>, name: &str) -> Result<Vec<String>> {
    defs.get(name)
        .and_then(|d| d["enum"].as_array())
        .map(|values| {
            values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .ok_or(format!("common.json needs a string enum $defs/{name}"))
}

fn read_scope(spec: &Value, scopes: &[String], ctx: &str) -> Result<Option<String>> {
    match spec.get("scope").and_then(Value::as_str) {
        Some("public") => Ok(None),
        Some(s) if scopes.iter().any(|k| k == s) => Ok(Some(s.to_string())),
        Some(s) => Err(format!("{ctx}: unknown scope {s}")),
        None => Err(format!(
            "{ctx} declares no scope; every method and event must (use \"public\" deliberately)"
        )),
    }
}

pub fn read_summary(spec: &Value, ctx: &str) -> Result<String> {
    spec.get("summary")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or(format!("{ctx} has no summary"))
}

fn read_error_codes(protocol: &Value) -> Result<Vec<ErrorCodeSpec>> {
    let list = protocol["x-error-codes"]
        .as_array()
        .ok_or("protocol.json needs an x-error-codes array")?;
    let mut names = BTreeSet::new();
    let mut codes = BTreeSet::new();
    list.iter()
        .map(|entry| {
            let name = entry["name"].as_str().ok_or("error code without a name")?;
            let code = entry["code"]
                .as_i64()
                .ok_or(format!("error {name} without a code"))?;
            let description = entry["description"]
                .as_str()
                .ok_or(format!("error {name} without a description"))?;
            if !names.insert(name.to_string()) || !codes.insert(code) {
                return Err(format!("error code {name} ({code}) is declared twice"));
            }
            Ok(ErrorCodeSpec {
                name: name.to_string(),
                code,
                description: description.to_string(),
            })
        })
        .collect()
}

fn read_scope_implies(protocol: &Value, scopes: &[String]) -> Result<Vec<(String, Vec<String>)>> {
    let map = protocol["x-scope-implies"]
        .as_object()
        .ok_or("protocol.json needs an x-scope-implies object")?;
    let known = |s: &str| scopes.iter().any(|k| k == s);
    map.iter()
        .map(|(scope, implied)| {
            let implied: Vec<String> = implied
                .as_array()
                .ok_or(format!("x-scope-implies.{scope} must be an array"))?
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect();
            if let Some(bad) = std::iter::once(scope.as_str())
                .chain(implied.iter().map(String::as_str))
                .find(|s| !known(s))
            {
                return Err(format!("x-scope-implies names unknown scope {bad}"));
            }
            Ok((scope.clone(), implied))
        })
        .collect()
}

/// Gives every config section property the full default object of its
/// section, so a missing section deserializes to its documented defaults.
fn fill_section_defaults(defs: &mut Map<String, Value>, def: &str) {
    let Some(props) = defs[def]
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
    else {
        return;
    };
    for (key, prop) in props {
        let Some(target) = prop.get("$ref").and_then(Value::as_str) else {
            continue;
        };
        let target = target.trim_start_matches("#/$defs/").to_string();
        if defs[&target].get("properties").is_none() {
            continue;
        }
        fill_section_defaults(defs, &target);
        // A section with required keys has no default: absent is None.
        if defs[&target].get("required").is_some() {
            continue;
        }
        let default = section_default(&defs[&target]);
        defs[def]["properties"][&key]["default"] = default;
    }
}

fn section_default(section: &Value) -> Value {
    let mut out = Map::new();
    if let Some(props) = section["properties"].as_object() {
        for (key, prop) in props {
            if let Some(d) = prop.get("default") {
                out.insert(key.clone(), d.clone());
            }
        }
    }
    Value::Object(out)
}
