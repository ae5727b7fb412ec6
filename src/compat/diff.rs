//! Classifies the differences between two protocol surfaces.
//!
//! Params flow from clients to the gateway, so a new requirement or a
//! narrower type breaks clients; results and event payloads flow the other
//! way, so a removed field or one that may now be absent breaks them.
//! New methods, events, optional params, fields and wider enums are
//! additive.

use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// One difference, with where it is.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Change {
    pub at: String,
    pub change: String,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    #[serde(rename = "oldVersion")]
    pub old_version: u64,
    #[serde(rename = "newVersion")]
    pub new_version: u64,
    pub breaking: Vec<Change>,
    pub additive: Vec<Change>,
}

impl Report {
    fn breaking(&mut self, at: &str, change: String) {
        self.breaking.push(Change {
            at: at.to_string(),
            change,
        });
    }

    fn additive(&mut self, at: &str, change: String) {
        self.additive.push(Change {
            at: at.to_string(),
            change,
        });
    }

    /// A human-readable report.
    pub fn text(&self) -> String {
        let mut out = format!(
            "protocol {} -> {}: {} breaking, {} additive\n",
            self.old_version,
            self.new_version,
            self.breaking.len(),
            self.additive.len()
        );
        for c in &self.breaking {
            out.push_str(&format!("BREAKING  {}: {}\n", c.at, c.change));
        }
        for c in &self.additive {
            out.push_str(&format!("additive  {}: {}\n", c.at, c.change));
        }
        out
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Flow {
    /// Client to gateway (params, request frames).
    In,
    /// Gateway to client (results, events, other frames).
    Out,
}

/// Compares an old surface with a new one.
pub fn check(old: &Value, new: &Value) -> Report {
    let mut report = Report {
        old_version: old["protocolVersion"].as_u64().unwrap_or(0),
        new_version: new["protocolVersion"].as_u64().unwrap_or(0),
        ..Report::default()
    };
    let implies = &new["scopeImplies"];
    for_each(
        &old["methods"],
        &new["methods"],
        "method",
        &mut report,
        |o, n, at, r| {
            scope(&o["scope"], &n["scope"], implies, at, r);
            compare(
                &o["params"],
                &n["params"],
                &format!("{at} params"),
                Flow::In,
                r,
            );
            compare(
                &o["result"],
                &n["result"],
                &format!("{at} result"),
                Flow::Out,
                r,
            );
        },
    );
    for_each(
        &old["events"],
        &new["events"],
        "event",
        &mut report,
        |o, n, at, r| {
            scope(&o["scope"], &n["scope"], implies, at, r);
            compare(
                &o["payload"],
                &n["payload"],
                &format!("{at} payload"),
                Flow::Out,
                r,
            );
        },
    );
    for_each(
        &old["errors"],
        &new["errors"],
        "error",
        &mut report,
        |o, n, at, r| {
            if o != n {
                r.breaking(at, format!("code changed from {o} to {n}"));
            }
        },
    );
    for_each(
        &old["frames"],
        &new["frames"],
        "frame",
        &mut report,
        |o, n, at, r| {
            let flow = if at.ends_with("RequestFrame") {
                Flow::In
            } else {
                Flow::Out
            };
            compare(o, n, at, flow, r);
        },
    );
    report
}

/// Pairs the entries of two name-keyed tables: removed ones break, new
/// ones are additive, common ones go to `each`.
fn for_each(
    old: &Value,
    new: &Value,
    what: &str,
    report: &mut Report,
    mut each: impl FnMut(&Value, &Value, &str, &mut Report),
) {
    let empty = Map::new();
    let old = old.as_object().unwrap_or(&empty);
    let new = new.as_object().unwrap_or(&empty);
    for (name, o) in old {
        let at = format!("{what} {name}");
        match new.get(name) {
            Some(n) => each(o, n, &at, report),
            None => report.breaking(&at, "removed".into()),
        }
    }
    for name in new.keys().filter(|n| !old.contains_key(*n)) {
        report.additive(&format!("{what} {name}"), "added".into());
    }
}

/// A client holding `old`'s scope must still be allowed by `new`'s.
fn scope(old: &Value, new: &Value, implies: &Value, at: &str, report: &mut Report) {
    let (Some(old), Some(new)) = (old.as_str(), new.as_str()) else {
        return;
    };
    if old == new {
        return;
    }
    let covers = |held: &str, needed: &str| {
        needed == "public"
            || held == needed
            || implies[held]
                .as_array()
                .is_some_and(|list| list.iter().any(|s| s == needed))
    };
    if covers(old, new) {
        report.additive(at, format!("scope relaxed from {old} to {new}"));
    } else {
        report.breaking(
            at,
            format!("scope changed from {old} to {new}, which {old} does not grant"),
        );
    }
}

fn types(schema: &Value) -> Option<BTreeSet<String>> {
    match &schema["type"] {
        Value::String(t) => Some(BTreeSet::from([t.clone()])),
        Value::Array(ts) => Some(
            ts.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect(),
        ),
        _ => None,
    }
}

fn values(schema: &Value) -> Option<BTreeSet<String>> {
    if let Some(list) = schema["enum"].as_array() {
        return Some(list.iter().map(Value::to_string).collect());
    }
    schema.get("const").map(|c| BTreeSet::from([c.to_string()]))
}

fn list(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// Compares two schemas at `at`.
fn compare(old: &Value, new: &Value, at: &str, flow: Flow, report: &mut Report) {
    if old == new {
        return;
    }
    match (types(old), types(new)) {
        (Some(o), Some(n)) if o != n => {
            let lost: BTreeSet<String> = o.difference(&n).cloned().collect();
            let gained: BTreeSet<String> = n.difference(&o).cloned().collect();
            if lost.is_empty() {
                report.additive(at, format!("type widened with {}", list(&gained)));
            } else {
                report.breaking(
                    at,
                    format!("type narrowed: {} no longer allowed", list(&lost)),
                );
            }
        }
        (None, Some(n)) => report.breaking(at, format!("type narrowed from any to {}", list(&n))),
        (Some(_), None) => report.additive(at, "type widened to any".into()),
        _ => {}
    }
    match (values(old), values(new)) {
        (Some(o), Some(n)) if o != n => {
            let lost: BTreeSet<String> = o.difference(&n).cloned().collect();
            let gained: BTreeSet<String> = n.difference(&o).cloned().collect();
            if !lost.is_empty() {
                report.breaking(at, format!("values removed: {}", list(&lost)));
            }
            if !gained.is_empty() {
                report.additive(at, format!("values added: {}", list(&gained)));
            }
        }
        (None, Some(n)) => report.breaking(at, format!("now limited to {}", list(&n))),
        (Some(_), None) => report.additive(at, "no longer limited to a set of values".into()),
        _ => {}
    }
    if flow == Flow::In {
        bounds(old, new, at, report);
    }
    properties(old, new, at, flow, report);
    if let (Some(o), Some(n)) = (old.get("items"), new.get("items")) {
        compare(o, n, &format!("{at}[]"), flow, report);
    }
    if let (Some(o), Some(n)) = (
        old.get("additionalProperties").filter(|v| v.is_object()),
        new.get("additionalProperties").filter(|v| v.is_object()),
    ) {
        compare(o, n, &format!("{at}.*"), flow, report);
    }
    variants(old, new, at, flow, report);
}

/// Limits on numbers, strings and arrays: tighter ones refuse params
/// that used to pass.
fn bounds(old: &Value, new: &Value, at: &str, report: &mut Report) {
    let number = |s: &Value, k: &str| s.get(k).and_then(Value::as_f64);
    for (key, lower) in [
        ("minimum", true),
        ("minLength", true),
        ("minItems", true),
        ("maximum", false),
        ("maxLength", false),
        ("maxItems", false),
    ] {
        let (o, n) = (number(old, key), number(new, key));
        let tighter = match (o, n) {
            (Some(o), Some(n)) if lower => n > o,
            (Some(o), Some(n)) => n < o,
            (None, Some(_)) => true,
            _ => false,
        };
        let looser = match (o, n) {
            (Some(o), Some(n)) if lower => n < o,
            (Some(o), Some(n)) => n > o,
            (Some(_), None) => true,
            _ => false,
        };
        let show = |v: Option<f64>| v.map_or("none".to_string(), |v| v.to_string());
        if tighter {
            report.breaking(
                at,
                format!("{key} tightened from {} to {}", show(o), show(n)),
            );
        } else if looser {
            report.additive(
                at,
                format!("{key} loosened from {} to {}", show(o), show(n)),
            );
        }
    }
}

fn properties(old: &Value, new: &Value, at: &str, flow: Flow, report: &mut Report) {
    let empty = Map::new();
    let (Some(op), np) = (old["properties"].as_object(), new["properties"].as_object()) else {
        return;
    };
    let np = np.unwrap_or(&empty);
    let required = |s: &Value| -> BTreeSet<String> {
        s["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(String::from))
            .collect()
    };
    let (or, nr) = (required(old), required(new));
    let param = match flow {
        Flow::In => "param",
        Flow::Out => "field",
    };
    for (name, o) in op {
        let here = format!("{at}.{name}");
        let Some(n) = np.get(name) else {
            report.breaking(&here, format!("{param} removed"));
            continue;
        };
        compare(o, n, &here, flow, report);
        match flow {
            Flow::In if !or.contains(name) && nr.contains(name) => {
                report.breaking(&here, "param now required".into())
            }
            Flow::Out if or.contains(name) && !nr.contains(name) => {
                report.breaking(&here, "field may now be absent".into())
            }
            _ => {}
        }
    }
    for name in np.keys().filter(|n| !op.contains_key(*n)) {
        let here = format!("{at}.{name}");
        if flow == Flow::In && nr.contains(name) {
            report.breaking(&here, "new required param".into());
        } else {
            let what = match flow {
                Flow::In => "new optional param",
                Flow::Out => "new field",
            };
            report.additive(&here, what.into());
        }
    }
}

/// oneOf variants, matched by their `kind` (or position).
fn variants(old: &Value, new: &Value, at: &str, flow: Flow, report: &mut Report) {
    let (Some(o), Some(n)) = (old["oneOf"].as_array(), new["oneOf"].as_array()) else {
        return;
    };
    let label = |i: usize, v: &Value| -> String {
        values(&v["properties"]["kind"])
            .and_then(|k| k.into_iter().next())
            .unwrap_or_else(|| i.to_string())
    };
    let ov: Vec<(String, &Value)> = o
        .iter()
        .enumerate()
        .map(|(i, v)| (label(i, v), v))
        .collect();
    let nv: Vec<(String, &Value)> = n
        .iter()
        .enumerate()
        .map(|(i, v)| (label(i, v), v))
        .collect();
    for (name, ov) in &ov {
        match nv.iter().find(|(n, _)| n == name) {
            Some((_, nv)) => compare(ov, nv, &format!("{at}<{name}>"), flow, report),
            None => report.breaking(at, format!("variant {name} removed")),
        }
    }
    for (name, _) in nv.iter().filter(|(n, _)| !ov.iter().any(|(o, _)| o == n)) {
        report.additive(at, format!("variant {name} added"));
    }
}
