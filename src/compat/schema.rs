//! Compares two JSON Schemas keyword by keyword and says, for each
//! difference, whether it widened or narrowed the set of valid values.
//! What that means for clients depends on the flow (see `rules`).

use super::rules::{Effect, Flow};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// A difference before it is given a severity.
#[derive(Clone, Debug)]
pub struct Raw {
    pub rule: String,
    pub at: String,
    pub change: String,
    /// What tells two findings of one rule at one place apart (an enum
    /// value, a property name).
    pub detail: Option<String>,
}

/// Collects the differences found under one flow.
pub struct Differ<'a> {
    pub flow: Flow,
    /// The newer protocol version: deprecated properties whose x-sunset
    /// it has reached may be removed.
    pub version: u64,
    pub out: &'a mut Vec<Raw>,
}

fn obj(schema: &Value) -> Map<String, Value> {
    match schema {
        Value::Object(map) => map.clone(),
        // `true` accepts everything, like `{}`; `false` nothing.
        Value::Bool(false) => Map::from_iter([("not".to_string(), Value::Object(Map::new()))]),
        _ => Map::new(),
    }
}

fn show(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(", ")
}

impl Differ<'_> {
    fn emit(&mut self, at: &str, rule: &str, change: String, detail: Option<String>) {
        self.out.push(Raw {
            rule: format!("{}.{rule}", self.flow.name()),
            at: at.to_string(),
            change,
            detail,
        });
    }

    fn effect(
        &mut self,
        at: &str,
        keyword: &str,
        effect: Effect,
        change: String,
        detail: Option<String>,
    ) {
        self.emit(at, &format!("{keyword}.{}", effect.name()), change, detail);
    }

    /// Compares the schema a value had at `at` with the one it has now.
    pub fn compare(&mut self, old: &Value, new: &Value, at: &str) {
        if old == new {
            return;
        }
        let (o, n) = (obj(old), obj(new));
        // A schema without constraints allows any value: against it the
        // other side only widened or narrowed, whatever it holds.
        let any = match (is_any(&o), is_any(&n)) {
            (false, true) => Some((Effect::Widened, "now any value")),
            (true, false) => Some((Effect::Narrowed, "was any value")),
            _ => None,
        };
        if let Some((effect, change)) = any {
            self.effect(at, "type", effect, change.to_string(), None);
            // The annotations still count: a changed default, say.
            self.default(&o, &n, at);
            self.deprecated(&o, &n, at);
            if self.flow == Flow::Config {
                self.reload(&o, &n, at);
            }
            return;
        }
        if self.union_change(&o, &n, at) {
            return;
        }
        self.types(&o, &n, at);
        self.values(&o, &n, at);
        self.bound(&o, &n, at, "minimum", "exclusiveMinimum", true);
        self.bound(&o, &n, at, "maximum", "exclusiveMaximum", false);
        for (keyword, lower) in [
            ("minLength", true),
            ("maxLength", false),
            ("minItems", true),
            ("maxItems", false),
            ("minProperties", true),
            ("maxProperties", false),
        ] {
            self.count(&o, &n, at, keyword, lower);
        }
        self.multiple_of(&o, &n, at);
        for keyword in ["pattern", "format", "not"] {
            self.constraint(&o, &n, at, keyword);
        }
        if o.get("uniqueItems") != n.get("uniqueItems") {
            let now = n.get("uniqueItems") == Some(&Value::Bool(true));
            let (effect, what) = if now {
                (Effect::Narrowed, "items must now be unique")
            } else {
                (Effect::Widened, "items may now repeat")
            };
            self.effect(at, "uniqueItems", effect, what.into(), None);
        }
        self.default(&o, &n, at);
        self.deprecated(&o, &n, at);
        if self.flow == Flow::Config {
            self.reload(&o, &n, at);
        }
        self.properties(&o, &n, at);
        self.additional(&o, &n, at);
        self.items(&o, &n, at);
        self.branches(&o, &n, at, "oneOf");
        self.branches(&o, &n, at, "anyOf");
        self.all_of(&o, &n, at);
    }

    fn types(&mut self, o: &Map<String, Value>, n: &Map<String, Value>, at: &str) {
        let types = |s: &Map<String, Value>| -> Option<BTreeSet<String>> {
            match s.get("type")? {
                Value::String(t) => Some(BTreeSet::from([t.clone()])),
                Value::Array(ts) => Some(
                    ts.iter()
                        .filter_map(|t| t.as_str().map(String::from))
                        .collect(),
                ),
                _ => None,
            }
        };
        // An integer is a number, so `integer` → `number` widens.
        let covered = |t: &String, set: &BTreeSet<String>| {
            set.contains(t) || (t == "integer" && set.contains("number"))
        };
        match (types(o), types(n)) {
            (Some(old), Some(new)) => {
                let lost: BTreeSet<String> =
                    old.iter().filter(|t| !covered(t, &new)).cloned().collect();
                let gained: BTreeSet<String> =
                    new.iter().filter(|t| !covered(t, &old)).cloned().collect();
                let change = format!("type changed from {} to {}", show(&old), show(&new));
                match (lost.is_empty(), gained.is_empty()) {
                    (true, true) => {}
                    (true, false) => {
                        let what = if gained.contains("null") && gained.len() == 1 {
                            format!("may now be null ({change})")
                        } else {
                            format!("type widened with {} ({change})", show(&gained))
                        };
                        self.effect(at, "type", Effect::Widened, what, None)
                    }
                    (false, true) => self.effect(
                        at,
                        "type",
                        Effect::Narrowed,
                        format!(
                            "type narrowed: {} no longer allowed ({change})",
                            show(&lost)
                        ),
                        None,
                    ),
                    (false, false) => self.effect(at, "type", Effect::Changed, change, None),
                }
            }
            (None, Some(new)) => self.effect(
                at,
                "type",
                Effect::Narrowed,
                format!("type narrowed from any to {}", show(&new)),
                None,
            ),
            (Some(old), None) => self.effect(
                at,
                "type",
                Effect::Widened,
                format!("type widened from {} to any", show(&old)),
                None,
            ),
            (None, None) => {}
        }
    }

    /// `enum` and `const` as sets of allowed values.
    fn values(&mut self, o: &Map<String, Value>, n: &Map<String, Value>, at: &str) {
        let values = |s: &Map<String, Value>| -> Option<BTreeSet<String>> {
            if let Some(list) = s.get("enum").and_then(Value::as_array) {
                return Some(list.iter().map(Value::to_string).collect());
            }
            s.get("const").map(|c| BTreeSet::from([c.to_string()]))
        };
        match (values(o), values(n)) {
            (Some(old), Some(new)) => {
                for value in old.difference(&new) {
                    self.effect(
                        at,
                        "enum",
                        Effect::Narrowed,
                        format!("value {value} removed"),
                        Some(value.clone()),
                    );
                }
                for value in new.difference(&old) {
                    self.effect(
                        at,
                        "enum",
                        Effect::Widened,
                        format!("value {value} added"),
                        Some(value.clone()),
                    );
                }
            }
            (None, Some(new)) => self.effect(
                at,
                "enum",
                Effect::Narrowed,
                format!("now limited to {}", show(&new)),
                None,
            ),
            (Some(old), None) => self.effect(
                at,
                "enum",
                Effect::Widened,
                format!("no longer limited to {}", show(&old)),
                None,
            ),
            (None, None) => {}
        }
    }

    /// A numeric bound, inclusive (`minimum`) or exclusive
    /// (`exclusiveMinimum`), as one limit.
    fn bound(
        &mut self,
        o: &Map<String, Value>,
        n: &Map<String, Value>,
        at: &str,
        inclusive: &str,
        exclusive: &str,
        lower: bool,
    ) {
        // (value, strict); of two limits on one side the tighter wins.
        let limit = |s: &Map<String, Value>| -> Option<(f64, bool)> {
            let inc = s.get(inclusive).and_then(Value::as_f64).map(|v| (v, false));
            let exc = s.get(exclusive).and_then(Value::as_f64).map(|v| (v, true));
            match (inc, exc) {
                (Some(a), Some(b)) => Some(if tighter(b, a, lower) { b } else { a }),
                (a, b) => a.or(b),
            }
        };
        let show = |l: Option<(f64, bool)>| match l {
            None => "none".to_string(),
            Some((v, false)) => format!("{}{v}", if lower { ">= " } else { "<= " }),
            Some((v, true)) => format!("{}{v}", if lower { "> " } else { "< " }),
        };
        let (old, new) = (limit(o), limit(n));
        let effect = match (old, new) {
            (Some(a), Some(b)) if tighter(b, a, lower) => Effect::Narrowed,
            (Some(a), Some(b)) if tighter(a, b, lower) => Effect::Widened,
            (None, Some(_)) => Effect::Narrowed,
            (Some(_), None) => Effect::Widened,
            _ => return,
        };
        let verb = if effect == Effect::Narrowed {
            "tightened"
        } else {
            "loosened"
        };
        self.effect(
            at,
            inclusive,
            effect,
            format!("{inclusive} {verb} from {} to {}", show(old), show(new)),
            None,
        );
    }

    fn count(
        &mut self,
        o: &Map<String, Value>,
        n: &Map<String, Value>,
        at: &str,
        keyword: &str,
        lower: bool,
    ) {
        let (old, new) = (
            o.get(keyword).and_then(Value::as_f64),
            n.get(keyword).and_then(Value::as_f64),
        );
        let effect = match (old, new) {
            (Some(a), Some(b)) if a == b => return,
            (Some(a), Some(b)) if (b > a) == lower => Effect::Narrowed,
            (Some(_), Some(_)) => Effect::Widened,
            (None, Some(_)) => Effect::Narrowed,
            (Some(_), None) => Effect::Widened,
            (None, None) => return,
        };
        let show = |v: Option<f64>| v.map_or("none".to_string(), |v| v.to_string());
        let verb = if effect == Effect::Narrowed {
            "tightened"
        } else {
            "loosened"
        };
        self.effect(
            at,
            keyword,
            effect,
            format!("{keyword} {verb} from {} to {}", show(old), show(new)),
            None,
        );
    }

    fn multiple_of(&mut self, o: &Map<String, Value>, n: &Map<String, Value>, at: &str) {
        let (old, new) = (
            o.get("multipleOf").and_then(Value::as_f64),
            n.get("multipleOf").and_then(Value::as_f64),
        );
        let divides = |a: f64, b: f64| (b / a).fract() == 0.0;
        let effect = match (old, new) {
            (Some(a), Some(b)) if a == b => return,
            // Every multiple of 6 is a multiple of 3: 3 → 6 narrows.
            (Some(a), Some(b)) if divides(a, b) => Effect::Narrowed,
            (Some(a), Some(b)) if divides(b, a) => Effect::Widened,
            (Some(_), Some(_)) => Effect::Changed,
            (None, Some(_)) => Effect::Narrowed,
            (Some(_), None) => Effect::Widened,
            (None, None) => return,
        };
        let show = |v: Option<f64>| v.map_or("none".to_string(), |v| v.to_string());
        self.effect(
            at,
            "multipleOf",
            effect,
            format!("multipleOf changed from {} to {}", show(old), show(new)),
            None,
        );
    }

    /// Keywords whose values cannot be compared: added narrows, dropped
    /// widens, changed is neither.
    fn constraint(
        &mut self,
        o: &Map<String, Value>,
        n: &Map<String, Value>,
        at: &str,
        keyword: &str,
    ) {
        let (effect, change) = match (o.get(keyword), n.get(keyword)) {
            (Some(a), Some(b)) if a == b => return,
            (Some(a), Some(b)) => (
                Effect::Changed,
                format!("{keyword} changed from {a} to {b}"),
            ),
            (None, Some(b)) => (Effect::Narrowed, format!("{keyword} {b} added")),
            (Some(a), None) => (Effect::Widened, format!("{keyword} {a} dropped")),
            (None, None) => return,
        };
        self.effect(at, keyword, effect, change, None);
    }

    fn default(&mut self, o: &Map<String, Value>, n: &Map<String, Value>, at: &str) {
        // An object's default is made of its properties' defaults, which
        // are compared one by one.
        if n.contains_key("properties") {
            return;
        }
        let (rule, change) = match (o.get("default"), n.get("default")) {
            (Some(a), Some(b)) if a == b => return,
            (Some(a), Some(b)) => (
                "default.changed",
                format!("default changed from {a} to {b}"),
            ),
            (None, Some(b)) => ("default.added", format!("default {b} added")),
            (Some(a), None) => ("default.removed", format!("default {a} dropped")),
            (None, None) => return,
        };
        self.emit(at, rule, change, None);
    }

    fn deprecated(&mut self, o: &Map<String, Value>, n: &Map<String, Value>, at: &str) {
        let on = |s: &Map<String, Value>| s.get("deprecated") == Some(&Value::Bool(true));
        match (on(o), on(n)) {
            (false, true) => {
                let sunset = n.get("x-sunset").map_or(String::new(), |v| {
                    format!(", may be removed from protocol v{v}")
                });
                self.emit(at, "deprecated.added", format!("deprecated{sunset}"), None)
            }
            (true, false) => self.emit(
                at,
                "deprecated.removed",
                "no longer deprecated".into(),
                None,
            ),
            _ => {}
        }
    }

    fn reload(&mut self, o: &Map<String, Value>, n: &Map<String, Value>, at: &str) {
        let (Some(old), Some(new)) = (o.get("x-reload"), n.get("x-reload")) else {
            return;
        };
        if old != new {
            let change = format!("takes effect by {new} (was {old})");
            self.out.push(Raw {
                rule: format!("config.reload.{}", new.as_str().unwrap_or("restart")),
                at: at.to_string(),
                change,
                detail: None,
            });
        }
    }

    fn properties(&mut self, o: &Map<String, Value>, n: &Map<String, Value>, at: &str) {
        let props = |s: &Map<String, Value>| {
            s.get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let required = |s: &Map<String, Value>| -> BTreeSet<String> {
            s.get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str().map(String::from))
                .collect()
        };
        let (op, np) = (props(o), props(n));
        let (or, nr) = (required(o), required(n));
        for (name, old) in &op {
            let here = format!("{at}.{name}");
            match np.get(name) {
                Some(new) => self.compare(old, new, &here),
                None => self.removed(old, or.contains(name), &here),
            }
        }
        for name in np.keys().filter(|name| !op.contains_key(*name)) {
            let here = format!("{at}.{name}");
            if nr.contains(name) {
                self.emit(
                    &here,
                    "property.added-required",
                    "required property added".into(),
                    None,
                );
            } else {
                self.emit(
                    &here,
                    "property.added",
                    "optional property added".into(),
                    None,
                );
            }
        }
        // Required-ness that changed, except for a property that came or
        // went with it (reported as added or removed).
        for name in nr.difference(&or) {
            let came_with_it = np.contains_key(name) && !op.contains_key(name);
            if !came_with_it {
                let here = format!("{at}.{name}");
                self.effect(
                    &here,
                    "required",
                    Effect::Narrowed,
                    "now required (always present)".into(),
                    None,
                );
            }
        }
        for name in or.difference(&nr) {
            let went_with_it = op.contains_key(name) && !np.contains_key(name);
            if !went_with_it {
                let here = format!("{at}.{name}");
                self.effect(
                    &here,
                    "required",
                    Effect::Widened,
                    "no longer required (may be absent)".into(),
                    None,
                );
            }
        }
    }

    fn removed(&mut self, old: &Value, required: bool, at: &str) {
        let sunset = old.get("x-sunset").and_then(Value::as_u64);
        let deprecated = old.get("deprecated") == Some(&Value::Bool(true));
        match sunset {
            Some(s) if deprecated && self.version >= s => {
                self.emit(
                    at,
                    "property.removed-after-sunset",
                    format!("removed (deprecated, sunset v{s})"),
                    None,
                );
            }
            Some(s) if deprecated => {
                let change = format!(
                    "removed before its sunset (v{s}; the new protocol is v{})",
                    self.version
                );
                self.emit(at, "property.removed", change, None);
            }
            _ if required => self.emit(at, "property.removed", "removed".into(), None),
            _ => self.emit(
                at,
                "property.removed-optional",
                "optional property removed".into(),
                None,
            ),
        }
    }

    /// `additionalProperties`: `false` closes an object; a schema (or
    /// none, or `true`) leaves it open to keys with such values.
    fn additional(&mut self, o: &Map<String, Value>, n: &Map<String, Value>, at: &str) {
        let open = |s: &Map<String, Value>| -> Option<Value> {
            match s.get("additionalProperties") {
                Some(Value::Bool(false)) => None,
                Some(Value::Bool(true)) | None => Some(Value::Object(Map::new())),
                Some(schema) => Some(schema.clone()),
            }
        };
        match (open(o), open(n)) {
            (Some(a), Some(b)) => self.compare(&a, &b, &format!("{at}.*")),
            (None, Some(_)) => self.effect(
                at,
                "additionalProperties",
                Effect::Widened,
                "now accepts properties it does not list".into(),
                None,
            ),
            (Some(_), None) => self.effect(
                at,
                "additionalProperties",
                Effect::Narrowed,
                "now refuses properties it does not list".into(),
                None,
            ),
            (None, None) => {}
        }
    }

    /// An array's items (or, for a tuple, each position) compared as
    /// schemas; a missing one accepts anything.
    fn items(&mut self, o: &Map<String, Value>, n: &Map<String, Value>, at: &str) {
        let any = Value::Object(Map::new());
        match (o.get("items"), n.get("items")) {
            (Some(Value::Array(a)), Some(Value::Array(b))) => {
                for i in 0..a.len().max(b.len()) {
                    let (a, b) = (a.get(i).unwrap_or(&any), b.get(i).unwrap_or(&any));
                    self.compare(a, b, &format!("{at}[{i}]"));
                }
            }
            (None, None) => {}
            (a, b) => self.compare(a.unwrap_or(&any), b.unwrap_or(&any), &format!("{at}[]")),
        }
    }

    /// `oneOf`/`anyOf`: a value may match any branch, so a new branch
    /// widens and a removed one narrows. Branches are matched by their
    /// `kind` (the protocol's discriminator), else by equality, else by
    /// position.
    fn branches(
        &mut self,
        o: &Map<String, Value>,
        n: &Map<String, Value>,
        at: &str,
        keyword: &str,
    ) {
        let (old, new) = match (
            o.get(keyword).and_then(Value::as_array),
            n.get(keyword).and_then(Value::as_array),
        ) {
            (None, None) => return,
            (Some(_), None) => {
                self.effect(
                    at,
                    keyword,
                    Effect::Widened,
                    format!("{keyword} branches dropped"),
                    None,
                );
                return;
            }
            (None, Some(_)) => {
                self.effect(
                    at,
                    keyword,
                    Effect::Narrowed,
                    format!("{keyword} branches added"),
                    None,
                );
                return;
            }
            (Some(a), Some(b)) => (a, b),
        };
        let pairs = pair_branches(old, new);
        for (label, pair) in pairs {
            match pair {
                (Some(a), Some(b)) => self.compare(a, b, &format!("{at}<{label}>")),
                (Some(_), None) => self.effect(
                    at,
                    keyword,
                    Effect::Narrowed,
                    format!("branch {label} removed"),
                    Some(label),
                ),
                (None, Some(_)) => self.effect(
                    at,
                    keyword,
                    Effect::Widened,
                    format!("branch {label} added"),
                    Some(label),
                ),
                (None, None) => {}
            }
        }
    }

    /// A schema that became a `oneOf`/`anyOf` with its old self as one
    /// branch (a closed enum opened with a pattern, say) only widened, and
    /// a union that became one of its branches only narrowed: each other
    /// branch is reported as added or removed, and keyword-by-keyword
    /// comparison (which would see `type` and `enum` vanish or appear
    /// beside the branches) is skipped.
    fn union_change(&mut self, o: &Map<String, Value>, n: &Map<String, Value>, at: &str) -> bool {
        let (single, union, effect) = if is_union(n) && !is_union(o) {
            (o, n, Effect::Widened)
        } else if is_union(o) && !is_union(n) {
            (n, o, Effect::Narrowed)
        } else {
            return false;
        };
        let Some((keyword, branches)) = ["oneOf", "anyOf"]
            .into_iter()
            .find_map(|k| Some((k, union.get(k)?.as_array()?)))
        else {
            return false;
        };
        if union
            .keys()
            .any(|k| k != keyword && !ANNOTATIONS.contains(&k.as_str()))
        {
            return false;
        }
        let one = constraints(single);
        let Some(kept) = branches.iter().position(|b| constraints(&obj(b)) == one) else {
            return false;
        };
        for (i, _) in branches.iter().enumerate().filter(|(i, _)| *i != kept) {
            let change = match effect {
                Effect::Widened => format!("became a {keyword} of its old schema and branch {i}"),
                _ => format!("was a {keyword}; now only its branch {kept}, without branch {i}"),
            };
            self.effect(at, keyword, effect, change, Some(format!("branch {i}")));
        }
        self.default(o, n, at);
        self.deprecated(o, n, at);
        true
    }

    /// `allOf`: a value must match every branch, so a new branch
    /// narrows and a removed one widens.
    fn all_of(&mut self, o: &Map<String, Value>, n: &Map<String, Value>, at: &str) {
        let empty = Vec::new();
        let old = o.get("allOf").and_then(Value::as_array).unwrap_or(&empty);
        let new = n.get("allOf").and_then(Value::as_array).unwrap_or(&empty);
        for (label, pair) in pair_branches(old, new) {
            match pair {
                (Some(a), Some(b)) => self.compare(a, b, &format!("{at}<{label}>")),
                (Some(_), None) => self.effect(
                    at,
                    "allOf",
                    Effect::Widened,
                    format!("allOf branch {label} removed"),
                    Some(label),
                ),
                (None, Some(_)) => self.effect(
                    at,
                    "allOf",
                    Effect::Narrowed,
                    format!("allOf branch {label} added"),
                    Some(label),
                ),
                (None, None) => {}
            }
        }
    }
}

/// Whether limit `a` is tighter than `b` (higher for a lower bound).
fn tighter(a: (f64, bool), b: (f64, bool), lower: bool) -> bool {
    if a.0 == b.0 {
        a.1 && !b.1
    } else {
        (a.0 > b.0) == lower
    }
}

/// An old branch and the new one it became; either may be missing.
/// Keywords that describe a value without constraining it.
const ANNOTATIONS: [&str; 8] = [
    "description",
    "title",
    "$comment",
    "examples",
    "default",
    "deprecated",
    "x-sunset",
    "x-reload",
];

fn is_union(schema: &Map<String, Value>) -> bool {
    schema.contains_key("oneOf") || schema.contains_key("anyOf")
}

/// A schema without its annotations.
fn constraints(schema: &Map<String, Value>) -> Map<String, Value> {
    let mut kept = schema.clone();
    kept.retain(|k, _| !ANNOTATIONS.contains(&k.as_str()));
    kept
}

type Pair<'a> = (Option<&'a Value>, Option<&'a Value>);

/// Pairs old and new branches: by `kind` const when every branch has one,
/// else identical branches, then the rest by position.
/// Whether a schema allows every value (it has annotations at most).
fn is_any(schema: &Map<String, Value>) -> bool {
    schema.keys().all(|k| ANNOTATIONS.contains(&k.as_str()))
}

/// The property every branch of both lists fixes to one value (`kind`, the
/// protocol's discriminator, else another, e.g. OpenClaw's `state`).
fn discriminator(old: &[Value], new: &[Value]) -> Option<String> {
    let fixed = |v: &Value, name: &str| {
        let p = &v["properties"][name];
        p.get("const").is_some() || p["enum"].as_array().is_some_and(|e| e.len() == 1)
    };
    let first = old.first()?;
    let mut names: Vec<&String> = first["properties"].as_object()?.keys().collect();
    names.sort_by_key(|n| *n != "kind");
    // Its values must tell the branches of each side apart.
    let distinct = |list: &[Value], name: &str| {
        let values: Vec<String> = list
            .iter()
            .map(|b| {
                let p = &b["properties"][name];
                p.get("const").unwrap_or(&p["enum"][0]).to_string()
            })
            .collect();
        values.iter().collect::<BTreeSet<_>>().len() == values.len()
    };
    names
        .into_iter()
        .find(|name| {
            old.iter().chain(new).all(|b| fixed(b, name))
                && distinct(old, name)
                && distinct(new, name)
        })
        .cloned()
}

fn pair_branches<'a>(old: &'a [Value], new: &'a [Value]) -> Vec<(String, Pair<'a>)> {
    let by = discriminator(old, new).unwrap_or_else(|| "kind".to_string());
    let kind = |v: &Value| -> Option<String> {
        let k = &v["properties"][by.as_str()];
        k.get("const")
            .or_else(|| {
                k["enum"]
                    .as_array()
                    .filter(|e| e.len() == 1)
                    .and_then(|e| e.first())
            })
            .and_then(Value::as_str)
            .map(String::from)
    };
    let kinds = |list: &[Value]| -> Option<Vec<String>> { list.iter().map(kind).collect() };
    if let (Some(ok), Some(nk)) = (kinds(old), kinds(new)) {
        let mut labels: Vec<String> = ok.clone();
        labels.extend(nk.iter().filter(|k| !ok.contains(k)).cloned());
        return labels
            .into_iter()
            .map(|label| {
                let a = ok.iter().position(|k| *k == label).map(|i| &old[i]);
                let b = nk.iter().position(|k| *k == label).map(|i| &new[i]);
                (label, (a, b))
            })
            .collect();
    }
    let mut pairs = Vec::new();
    let mut new_left: Vec<Option<&Value>> = new.iter().map(Some).collect();
    let mut old_left = Vec::new();
    for (i, a) in old.iter().enumerate() {
        match new_left.iter().position(|b| *b == Some(a)) {
            Some(j) => {
                new_left[j] = None;
                pairs.push((i.to_string(), (Some(a), Some(a))));
            }
            None => old_left.push((i, a)),
        }
    }
    let mut rest = new_left
        .into_iter()
        .enumerate()
        .filter_map(|(j, b)| Some((j, b?)));
    for (i, a) in old_left {
        match rest.next() {
            Some((_, b)) => pairs.push((i.to_string(), (Some(a), Some(b)))),
            None => pairs.push((i.to_string(), (Some(a), None))),
        }
    }
    for (j, b) in rest {
        pairs.push((format!("new {j}"), (None, Some(b))));
    }
    pairs
}
