//! Compares two protocol surfaces: methods, events, scopes, error codes,
//! frames and the config schema. Each schema is compared with the flow of
//! its values (see `rules`); a `$defs` type used in both params and
//! results is inlined at each place, so it gets both rules.

use super::policy::Policy;
use super::report::Report;
use super::rules::Flow;
use super::schema::{Differ, Raw};
use serde_json::Value;

/// Every difference between an older surface and a newer one.
pub fn diff(old: &Value, new: &Value, policy: &Policy) -> Report {
    let version = |s: &Value| s["protocolVersion"].as_u64().unwrap_or(0);
    let (old_version, new_version) = (version(old), version(new));
    let mut raw = Vec::new();
    let schema = |flow: Flow, o: &Value, n: &Value, at: &str, raw: &mut Vec<Raw>| {
        Differ {
            flow,
            version: new_version,
            out: raw,
        }
        .compare(o, n, at)
    };
    let implies = &new["scopeImplies"];
    let methods = pair(&old["methods"], &new["methods"]);
    for (name, o, n) in methods {
        let at = format!("method {name}");
        let (Some(o), Some(n)) = (o, n) else {
            entry(&mut raw, "method", &at, o, n, new_version);
            continue;
        };
        lifecycle(&mut raw, "method", &at, o, n);
        scope(&mut raw, &at, &o["scope"], &n["scope"], implies);
        schema(
            Flow::Input,
            &o["params"],
            &n["params"],
            &format!("{at} params"),
            &mut raw,
        );
        schema(
            Flow::Output,
            &o["result"],
            &n["result"],
            &format!("{at} result"),
            &mut raw,
        );
    }
    for (name, o, n) in pair(&old["events"], &new["events"]) {
        let at = format!("event {name}");
        let (Some(o), Some(n)) = (o, n) else {
            entry(&mut raw, "event", &at, o, n, new_version);
            continue;
        };
        lifecycle(&mut raw, "event", &at, o, n);
        scope(&mut raw, &at, &o["scope"], &n["scope"], implies);
        schema(
            Flow::Output,
            &o["payload"],
            &n["payload"],
            &format!("{at} payload"),
            &mut raw,
        );
    }
    for (name, o, n) in pair(&old["errors"], &new["errors"]) {
        let at = format!("error {name}");
        match (o, n) {
            (Some(o), Some(n)) if o != n => push(
                &mut raw,
                "error.renumbered",
                &at,
                format!("code changed from {o} to {n}"),
            ),
            (Some(o), None) => push(&mut raw, "error.removed", &at, format!("code {o} removed")),
            (None, Some(n)) => push(&mut raw, "error.added", &at, format!("code {n} added")),
            _ => {}
        }
    }
    scope_implies(&mut raw, &old["scopeImplies"], implies);
    for (name, o, n) in pair(&old["frames"], &new["frames"]) {
        if let (Some(o), Some(n)) = (o, n) {
            let flow = if name == "RequestFrame" {
                Flow::Input
            } else {
                Flow::Output
            };
            schema(flow, o, n, &format!("frame {name}"), &mut raw);
        }
    }
    // Snapshots without a config section predate its recording.
    let (o, n) = (&old["config"], &new["config"]);
    if !o.is_null() && !n.is_null() {
        schema(Flow::Config, o, n, Flow::Config.name(), &mut raw);
        migrated(&mut raw, &n["x-migrations"]);
    }
    let min = |s: &Value| {
        s["minProtocolVersion"]
            .as_u64()
            .unwrap_or_else(|| version(s))
    };
    if min(new) > min(old) {
        push(
            &mut raw,
            "protocol.min-version-raised",
            "protocol",
            format!(
                "clients of protocol v{} to v{} are refused",
                min(old),
                min(new) - 1
            ),
        );
    }
    Report::new(old_version, new_version, raw, policy)
}

/// A config key removed that a migration renames is read under its new
/// name, so old files still load.
fn migrated(raw: &mut [Raw], migrations: &Value) {
    let removed = [
        "config.property.removed",
        "config.property.removed-optional",
    ];
    for migration in migrations.as_array().into_iter().flatten() {
        for rename in migration["renames"].as_array().into_iter().flatten() {
            let (Some(from), Some(to)) = (rename["from"].as_str(), rename["to"].as_str()) else {
                continue;
            };
            let at = format!("{}.{from}", Flow::Config.name());
            for finding in raw
                .iter_mut()
                .filter(|r| r.at == at && removed.contains(&r.rule.as_str()))
            {
                finding.rule = "config.property.migrated".to_string();
                finding.change = format!(
                    "renamed to {to} by config version {}; old files still load",
                    migration["version"]
                );
            }
        }
    }
}

fn push(raw: &mut Vec<Raw>, rule: &str, at: &str, change: String) {
    push_detail(raw, rule, at, change, None);
}

fn push_detail(raw: &mut Vec<Raw>, rule: &str, at: &str, change: String, detail: Option<String>) {
    raw.push(Raw {
        rule: rule.to_string(),
        at: at.to_string(),
        change,
        detail,
    });
}

/// The entries of two name-keyed tables, paired by name.
fn pair<'a>(
    old: &'a Value,
    new: &'a Value,
) -> Vec<(&'a String, Option<&'a Value>, Option<&'a Value>)> {
    let entries = |table: &'a Value| table.as_object().into_iter().flatten();
    let mut pairs: Vec<_> = entries(old)
        .map(|(name, o)| (name, Some(o), new.get(name.as_str())))
        .collect();
    pairs.extend(
        entries(new)
            .filter(|(name, _)| old.get(name.as_str()).is_none())
            .map(|(name, n)| (name, None, Some(n))),
    );
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    pairs
}

/// A method or event that only one side has. Removing a deprecated one
/// is allowed once the new protocol reaches its sunset.
fn entry(
    raw: &mut Vec<Raw>,
    what: &str,
    at: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    version: u64,
) {
    let Some(old) = old else {
        push(raw, &format!("{what}.added"), at, "added".into());
        return;
    };
    if new.is_some() {
        return;
    }
    let sunset = old["x-sunset"]
        .as_u64()
        .filter(|_| old["deprecated"] == Value::Bool(true));
    match sunset {
        Some(s) if version >= s => push(
            raw,
            &format!("{what}.removed-after-sunset"),
            at,
            format!("removed (deprecated, sunset v{s})"),
        ),
        Some(s) => push(
            raw,
            &format!("{what}.removed"),
            at,
            format!("removed before its sunset (v{s}; the new protocol is v{version})"),
        ),
        None => push(raw, &format!("{what}.removed"), at, "removed".into()),
    }
}

fn lifecycle(raw: &mut Vec<Raw>, what: &str, at: &str, old: &Value, new: &Value) {
    if new["deprecated"] == Value::Bool(true) && old["deprecated"] != Value::Bool(true) {
        let sunset = &new["x-sunset"];
        push(
            raw,
            &format!("{what}.deprecated"),
            at,
            format!("deprecated, may be removed from protocol v{sunset}"),
        );
    }
}

/// A client holding the old scope must still be allowed by the new one.
fn scope(raw: &mut Vec<Raw>, at: &str, old: &Value, new: &Value, implies: &Value) {
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
        push(
            raw,
            "scope.relaxed",
            at,
            format!("scope relaxed from {old} to {new}"),
        );
    } else {
        push(
            raw,
            "scope.stricter",
            at,
            format!("scope changed from {old} to {new}, which {old} does not grant"),
        );
    }
}

fn scope_implies(raw: &mut Vec<Raw>, old: &Value, new: &Value) {
    let grants = |table: &Value| -> Vec<(String, String)> {
        let mut list: Vec<(String, String)> = table
            .as_object()
            .into_iter()
            .flatten()
            .flat_map(|(held, implied)| {
                implied
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| Some((held.clone(), s.as_str()?.to_string())))
            })
            .collect();
        list.sort();
        list
    };
    let (old, new) = (grants(old), grants(new));
    for (held, implied) in old.iter().filter(|g| !new.contains(g)) {
        let change = format!("no longer grants {implied}");
        push_detail(
            raw,
            "scope-implies.removed",
            &format!("scope {held}"),
            change,
            Some(implied.clone()),
        );
    }
    for (held, implied) in new.iter().filter(|g| !old.contains(g)) {
        let change = format!("now grants {implied}");
        push_detail(
            raw,
            "scope-implies.added",
            &format!("scope {held}"),
            change,
            Some(implied.clone()),
        );
    }
}
