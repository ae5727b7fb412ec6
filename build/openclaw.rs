//! Reads `schema/openclaw/` (OpenClaw's protocol v4 as clawgate serves
//! it) and generates its bundle, its method and event tables and its types.

use crate::bundle::{self, pascal, Bundle};
use serde_json::{json, Map, Value};
use std::fmt::Write;
use std::path::Path;

const FILES: [&str; 3] = ["protocol.json", "methods.json", "events.json"];

pub struct V4Method {
    name: String,
    scope: String,
    native: String,
    params_type: String,
    result_type: String,
}

pub struct V4Event {
    name: String,
    natives: Vec<String>,
    payload_type: String,
}

pub struct OpenClaw {
    pub root: Value,
    version: u64,
    node_min_version: u64,
    methods: Vec<V4Method>,
    events: Vec<V4Event>,
}

type Result<T> = std::result::Result<T, String>;

pub fn load(dir: &Path, native: &Bundle) -> Result<OpenClaw> {
    let mut docs = Map::new();
    for file in FILES {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let doc: Value = serde_json::from_str(&text)
            .map_err(|e| format!("openclaw/{file} is not valid JSON: {e}"))?;
        bundle::unique_keys(&text).map_err(|e| format!("openclaw/{file}: {e}"))?;
        docs.insert(file.to_string(), bundle::localize_refs(file, doc)?);
    }
    let mut defs = Map::new();
    for file in FILES {
        if let Some(file_defs) = docs[file].get("$defs").and_then(Value::as_object) {
            for (name, schema) in file_defs {
                bundle::insert_def(&mut defs, name, schema.clone(), file)?;
            }
        }
    }
    let protocol = &docs["protocol.json"];
    let version = protocol["x-protocol-version"]
        .as_u64()
        .ok_or("openclaw/protocol.json needs an integer x-protocol-version")?;
    let node_min_version = protocol["x-node-min-protocol-version"]
        .as_u64()
        .filter(|v| (1..=version).contains(v))
        .ok_or(
            "openclaw/protocol.json needs x-node-min-protocol-version, at most x-protocol-version",
        )?;

    let native_method = |name: &str, ctx: &str| -> Result<()> {
        if native.methods.iter().any(|m| m.name == name) {
            Ok(())
        } else {
            Err(format!("{ctx}: x-native names no native method {name}"))
        }
    };
    let mut methods = Vec::new();
    let mut bundled_methods = Map::new();
    for (name, spec) in docs["methods.json"]["methods"]
        .as_object()
        .ok_or("openclaw/methods.json needs a methods object")?
    {
        let ctx = format!("openclaw method {name}");
        let summary = bundle::read_summary(spec, &ctx)?;
        let scope = spec["scope"]
            .as_str()
            .filter(|s| native.scopes.iter().any(|k| k == s))
            .ok_or(format!("{ctx}: scope must be one of {:?}", native.scopes))?;
        let native_name = spec["x-native"].as_str().ok_or(format!(
            "{ctx} needs x-native, the native method it maps onto"
        ))?;
        native_method(native_name, &ctx)?;
        let native_scope = native
            .methods
            .iter()
            .find(|m| m.name == native_name)
            .and_then(|m| m.scope.clone());
        if let Some(needed) = native_scope {
            let covers = scope == needed
                || native
                    .scope_implies
                    .iter()
                    .any(|(held, implied)| held == scope && implied.contains(&needed));
            if !covers {
                return Err(format!(
                    "{ctx}: scope {scope} does not cover {needed}, the scope of its native method {native_name}"
                ));
            }
        }
        let base = format!("V4{}", pascal(name));
        let params_type = bundle::lift(&mut defs, &spec["params"], &format!("{base}Params"), &ctx)?;
        let result_type = bundle::lift(&mut defs, &spec["result"], &format!("{base}Result"), &ctx)?;
        bundled_methods.insert(
            name.clone(),
            json!({
                "summary": summary,
                "scope": scope,
                "x-native": native_name,
                "params": {"$ref": format!("#/$defs/{params_type}")},
                "result": {"$ref": format!("#/$defs/{result_type}")},
            }),
        );
        methods.push(V4Method {
            name: name.clone(),
            scope: scope.to_string(),
            native: native_name.to_string(),
            params_type,
            result_type,
        });
    }

    let mut events = Vec::new();
    let mut bundled_events = Map::new();
    for (name, spec) in docs["events.json"]["events"]
        .as_object()
        .ok_or("openclaw/events.json needs an events object")?
    {
        let ctx = format!("openclaw event {name}");
        let summary = bundle::read_summary(spec, &ctx)?;
        let natives: Vec<String> = spec["x-native"]
            .as_array()
            .ok_or(format!(
                "{ctx} needs x-native, the native events it is made from"
            ))?
            .iter()
            .map(|n| {
                n.as_str()
                    .filter(|n| native.events.iter().any(|e| e.name == *n))
                    .map(str::to_string)
                    .ok_or(format!("{ctx}: x-native names no native event {n}"))
            })
            .collect::<Result<_>>()?;
        let payload_type = bundle::lift(
            &mut defs,
            &spec["payload"],
            &format!("V4{}Event", pascal(name)),
            &ctx,
        )?;
        bundled_events.insert(
            name.clone(),
            json!({
                "summary": summary,
                "x-native": natives,
                "payload": {"$ref": format!("#/$defs/{payload_type}")},
            }),
        );
        events.push(V4Event {
            name: name.clone(),
            natives,
            payload_type,
        });
    }
    bundle::check_refs(&Value::Object(defs.clone()), &defs)?;
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://clawgate.dev/schema/openclaw/openclaw.schema.json",
        "title": protocol["title"],
        "description": protocol["description"],
        "x-protocol-version": version,
        "x-node-min-protocol-version": node_min_version,
        "x-contract": protocol["x-contract"],
        "methods": bundled_methods,
        "events": bundled_events,
        "$defs": defs,
    });
    Ok(OpenClaw {
        root,
        version,
        node_min_version,
        methods,
        events,
    })
}

fn lit(s: &str) -> String {
    format!("{s:?}")
}

/// The method and event tables, in `crate::openclaw::table`.
pub fn tables(oc: &OpenClaw) -> String {
    let mut w = String::from("// Generated by build.rs from schema/openclaw/. Do not edit.\n");
    let _ = writeln!(
        w,
        "/// The OpenClaw protocol version served.\npub const PROTOCOL_VERSION: u64 = {};\n/// The oldest version a node host may speak.\npub const NODE_MIN_PROTOCOL_VERSION: u64 = {};",
        oc.version, oc.node_min_version
    );
    let m_arms = |f: &dyn Fn(&V4Method) -> String| -> String {
        oc.methods
            .iter()
            .map(|m| format!("            V4Method::{} => {},\n", pascal(&m.name), f(m)))
            .collect()
    };
    let variants: String = oc
        .methods
        .iter()
        .map(|m| format!("    /// `{}`\n    {},\n", m.name, pascal(&m.name)))
        .collect();
    let all: String = oc
        .methods
        .iter()
        .map(|m| format!("V4Method::{}, ", pascal(&m.name)))
        .collect();
    let from: String = oc
        .methods
        .iter()
        .map(|m| {
            format!(
                "            {} => Some(V4Method::{}),\n",
                lit(&m.name),
                pascal(&m.name)
            )
        })
        .collect();
    let _ = writeln!(
        w,
        "/// An OpenClaw v4 method clawgate serves.\n#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]\npub enum V4Method {{\n{variants}}}\nimpl V4Method {{\n    pub const ALL: &'static [V4Method] = &[{all}];"
    );
    let _ = writeln!(
        w,
        "    pub fn name(self) -> &'static str {{\n        match self {{\n{}        }}\n    }}",
        m_arms(&|m| lit(&m.name))
    );
    let _ = writeln!(
        w,
        "    pub fn from_name(name: &str) -> Option<V4Method> {{\n        match name {{\n{from}            _ => None,\n        }}\n    }}"
    );
    let _ = writeln!(
        w,
        "    /// The scope a caller needs.\n    pub fn scope(self) -> Scope {{\n        match self {{\n{}        }}\n    }}",
        m_arms(&|m| format!("Scope::{}", pascal(&m.scope)))
    );
    let _ = writeln!(
        w,
        "    /// The native method that does the work.\n    pub fn native(self) -> Method {{\n        match self {{\n{}        }}\n    }}",
        m_arms(&|m| format!("Method::{}", pascal(&m.native)))
    );
    let _ = writeln!(
        w,
        "    /// The `$defs` entry its params match.\n    pub fn params_def(self) -> &'static str {{\n        match self {{\n{}        }}\n    }}",
        m_arms(&|m| lit(&m.params_type))
    );
    let _ = writeln!(
        w,
        "    /// The `$defs` entry its result matches.\n    pub fn result_def(self) -> &'static str {{\n        match self {{\n{}        }}\n    }}\n}}",
        m_arms(&|m| lit(&m.result_type))
    );

    let e_arms = |f: &dyn Fn(&V4Event) -> String| -> String {
        oc.events
            .iter()
            .map(|e| format!("            V4Event::{} => {},\n", pascal(&e.name), f(e)))
            .collect()
    };
    let variants: String = oc
        .events
        .iter()
        .map(|e| format!("    /// `{}`\n    {},\n", e.name, pascal(&e.name)))
        .collect();
    let all: String = oc
        .events
        .iter()
        .map(|e| format!("V4Event::{}, ", pascal(&e.name)))
        .collect();
    // Native event -> every v4 event made from it, in table order.
    let mut by_native: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for e in &oc.events {
        for n in &e.natives {
            by_native.entry(n).or_default().push(&e.name);
        }
    }
    let from_native: String = by_native
        .iter()
        .map(|(n, v4)| {
            let list: Vec<String> = v4
                .iter()
                .map(|e| format!("V4Event::{}", pascal(e)))
                .collect();
            format!(
                "            EventKind::{} => &[{}],\n",
                pascal(n),
                list.join(", ")
            )
        })
        .collect();
    let _ = writeln!(
        w,
        "/// An OpenClaw v4 event clawgate pushes.\n#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]\npub enum V4Event {{\n{variants}}}\nimpl V4Event {{\n    pub const ALL: &'static [V4Event] = &[{all}];"
    );
    let _ = writeln!(
        w,
        "    pub fn name(self) -> &'static str {{\n        match self {{\n{}        }}\n    }}",
        e_arms(&|e| lit(&e.name))
    );
    let _ = writeln!(
        w,
        "    /// The `$defs` entry its payload matches.\n    pub fn payload_def(self) -> &'static str {{\n        match self {{\n{}        }}\n    }}",
        e_arms(&|e| lit(&e.payload_type))
    );
    let _ = writeln!(
        w,
        "    /// The v4 events a native event becomes (none for most).\n    pub fn from_native(kind: EventKind) -> &'static [V4Event] {{\n        match kind {{\n{from_native}            _ => &[],\n        }}\n    }}\n}}"
    );
    w
}
