//! Protocol compatibility: the current schemas against every recorded
//! release still served, a corpus of mutations (each kind of change, in
//! each direction, with the class it must get), the policy file, and the
//! `clawgate protocol` commands.

use crate::support::bin;
use clawgate::compat::{self, check, current, Policy, Severity};
use serde_json::{json, Value};
use std::process::Command;

use Severity::{Additive as A, Breaking as B, Dangerous as D};

fn releases_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots/protocol")
}

#[test]
fn the_current_protocol_keeps_every_promise_of_every_release_it_serves() {
    let now = current();
    let version = now["protocolVersion"].as_u64().unwrap();
    let min = now["minProtocolVersion"].as_u64().unwrap();
    let released = compat::released(&releases_dir()).unwrap();
    assert_eq!(
        released.last().map(|(v, _)| *v),
        Some(version),
        "the protocol version is now {version}: record it with \
         `clawgate protocol snapshot > snapshots/protocol/v{version}.json`"
    );
    let policy = Policy::load(&releases_dir().join("policy.toml")).unwrap();
    let mut checked = 0;
    for (v, path) in released.iter().filter(|(v, _)| *v >= min) {
        let report = compat::diff(&compat::load(path).unwrap(), &now, &policy);
        for f in report.of(D) {
            println!("dangerous since v{v}: {}: {}", f.at, f.change);
        }
        assert!(
            !report.fails(B),
            "breaking changes against {}; raise x-protocol-min-version (dropping clients of \
             older versions), or accept them in snapshots/protocol/policy.toml with a reason:\n{}",
            path.display(),
            report.text()
        );
        checked += 1;
    }
    assert!(checked >= 1);
    assert!(
        policy.unused().is_empty(),
        "stale accepts: {:?}",
        policy.unused()
    );
}

/// One mutation of the current surface: `before` makes the older
/// surface, `after` the newer one from it; `expect` is every finding as
/// (rule, place, class).
struct Case {
    name: &'static str,
    before: fn(&mut Value),
    after: fn(&mut Value),
    expect: &'static [(&'static str, &'static str, Severity)],
}

fn nothing(_: &mut Value) {}

fn method<'a>(s: &'a mut Value, name: &str) -> &'a mut Value {
    &mut s["methods"][name]
}

fn props(schema: &mut Value) -> &mut serde_json::Map<String, Value> {
    schema["properties"].as_object_mut().unwrap()
}

fn required(schema: &mut Value) -> &mut Vec<Value> {
    schema["required"].as_array_mut().unwrap()
}

/// Changes made to the real schemas: the surface, the two misses the
/// issue names, properties and required-ness in each direction, the
/// lifecycle, frames and config keys.
const CASES: &[Case] = &[
    // The surface.
    Case {
        name: "a removed method",
        before: nothing,
        after: |s| {
            s["methods"].as_object_mut().unwrap().remove("health");
        },
        expect: &[("method.removed", "method health", B)],
    },
    Case {
        name: "a renamed event",
        before: nothing,
        after: |s| {
            let events = s["events"].as_object_mut().unwrap();
            let tick = events.remove("tick").unwrap();
            events.insert("pulse".into(), tick);
        },
        expect: &[
            ("event.removed", "event tick", B),
            ("event.added", "event pulse", A),
        ],
    },
    Case {
        name: "a new method",
        before: nothing,
        after: |s| s["methods"]["hello"] = s["methods"]["health"].clone(),
        expect: &[("method.added", "method hello", A)],
    },
    Case {
        name: "a stricter scope",
        before: nothing,
        after: |s| method(s, "health")["scope"] = json!("operator.admin"),
        expect: &[("scope.stricter", "method health", B)],
    },
    Case {
        name: "a relaxed scope",
        before: nothing,
        after: |s| method(s, "status")["scope"] = json!("public"),
        expect: &[("scope.relaxed", "method status", A)],
    },
    Case {
        name: "an event needing a stricter scope",
        before: nothing,
        after: |s| s["events"]["tick"]["scope"] = json!("operator.admin"),
        expect: &[("scope.stricter", "event tick", B)],
    },
    Case {
        name: "a scope that no longer grants another",
        before: nothing,
        after: |s| s["scopeImplies"]["operator.write"] = json!([]),
        expect: &[("scope-implies.removed", "scope operator.write", B)],
    },
    Case {
        name: "a scope that grants one more",
        before: nothing,
        after: |s| {
            s["scopeImplies"]["operator.write"]
                .as_array_mut()
                .unwrap()
                .push(json!("operator.approvals"))
        },
        expect: &[("scope-implies.added", "scope operator.write", A)],
    },
    Case {
        name: "a renumbered error code",
        before: nothing,
        after: |s| s["errors"]["timeout"] = json!(-32099),
        expect: &[("error.renumbered", "error timeout", B)],
    },
    Case {
        name: "a removed error code",
        before: nothing,
        after: |s| {
            s["errors"].as_object_mut().unwrap().remove("conflict");
        },
        expect: &[("error.removed", "error conflict", B)],
    },
    Case {
        name: "a new error code",
        before: nothing,
        after: |s| s["errors"]["quota_exceeded"] = json!(-32011),
        expect: &[("error.added", "error quota_exceeded", A)],
    },
    Case {
        name: "older clients refused",
        before: nothing,
        after: |s| {
            s["protocolVersion"] = json!(2);
            s["minProtocolVersion"] = json!(2);
        },
        expect: &[("protocol.min-version-raised", "protocol", D)],
    },
    // Lifecycle.
    Case {
        name: "a method deprecated",
        before: nothing,
        after: |s| {
            method(s, "sessions.clear")["deprecated"] = json!(true);
            method(s, "sessions.clear")["x-sunset"] = json!(3);
        },
        expect: &[("method.deprecated", "method sessions.clear", A)],
    },
    Case {
        name: "a deprecated method removed before its sunset",
        before: |s| {
            method(s, "sessions.clear")["deprecated"] = json!(true);
            method(s, "sessions.clear")["x-sunset"] = json!(3);
        },
        after: |s| {
            s["protocolVersion"] = json!(2);
            s["methods"]
                .as_object_mut()
                .unwrap()
                .remove("sessions.clear");
        },
        expect: &[("method.removed", "method sessions.clear", B)],
    },
    Case {
        name: "a deprecated method removed at its sunset",
        before: |s| {
            method(s, "sessions.clear")["deprecated"] = json!(true);
            method(s, "sessions.clear")["x-sunset"] = json!(2);
        },
        after: |s| {
            s["protocolVersion"] = json!(2);
            s["methods"]
                .as_object_mut()
                .unwrap()
                .remove("sessions.clear");
        },
        expect: &[("method.removed-after-sunset", "method sessions.clear", D)],
    },
    Case {
        name: "a deprecated event removed at its sunset",
        before: |s| {
            s["events"]["tick"]["deprecated"] = json!(true);
            s["events"]["tick"]["x-sunset"] = json!(2);
        },
        after: |s| {
            s["protocolVersion"] = json!(2);
            s["events"].as_object_mut().unwrap().remove("tick");
        },
        expect: &[("event.removed-after-sunset", "event tick", D)],
    },
    Case {
        name: "a param deprecated",
        before: nothing,
        after: |s| {
            let wait = &mut props(&mut method(s, "chat")["params"])["wait"];
            wait["deprecated"] = json!(true);
            wait["x-sunset"] = json!(2);
        },
        expect: &[("input.deprecated.added", "method chat params.wait", A)],
    },
    Case {
        name: "a deprecated param removed at its sunset",
        before: |s| {
            let wait = &mut props(&mut method(s, "chat")["params"])["wait"];
            wait["deprecated"] = json!(true);
            wait["x-sunset"] = json!(2);
        },
        after: |s| {
            s["protocolVersion"] = json!(2);
            props(&mut method(s, "chat")["params"]).remove("wait");
        },
        expect: &[(
            "input.property.removed-after-sunset",
            "method chat params.wait",
            D,
        )],
    },
    Case {
        name: "a deprecated result field removed before its sunset",
        before: |s| {
            let ran = &mut props(&mut method(s, "cron.run")["result"])["run"];
            ran["deprecated"] = json!(true);
            ran["x-sunset"] = json!(5);
        },
        after: |s| {
            props(&mut method(s, "cron.run")["result"]).remove("run");
        },
        expect: &[("output.property.removed", "method cron.run result.run", B)],
    },
    // The two misses the issue names: widening what clients receive.
    Case {
        name: "a result field whose type was widened (cron.run ran: boolean | string)",
        before: nothing,
        after: |s| {
            props(&mut method(s, "cron.run")["result"])["ran"]["type"] =
                json!(["boolean", "string"])
        },
        expect: &[("output.type.widened", "method cron.run result.ran", B)],
    },
    Case {
        name: "a new value in a result enum (health.state: degraded)",
        before: nothing,
        after: |s| {
            let state = &mut props(&mut method(s, "health")["result"])["state"];
            state["enum"]
                .as_array_mut()
                .unwrap()
                .push(json!("degraded"));
        },
        expect: &[("output.enum.widened", "method health result.state", B)],
    },
    Case {
        name: "a new value in an event payload enum",
        before: nothing,
        after: |s| {
            let state = &mut props(&mut s["events"]["health.changed"]["payload"])["state"];
            state["enum"]
                .as_array_mut()
                .unwrap()
                .push(json!("degraded"));
        },
        expect: &[(
            "output.enum.widened",
            "event health.changed payload.state",
            B,
        )],
    },
    // Properties and required-ness, in both directions.
    Case {
        name: "a field removed from a result",
        before: nothing,
        after: |s| {
            props(&mut method(s, "health")["result"]).remove("uptime");
        },
        expect: &[("output.property.removed", "method health result.uptime", B)],
    },
    Case {
        name: "an optional field removed from a result",
        before: nothing,
        after: |s| {
            props(&mut method(s, "cron.run")["result"]).remove("run");
        },
        expect: &[(
            "output.property.removed-optional",
            "method cron.run result.run",
            D,
        )],
    },
    Case {
        name: "a field removed from an event payload",
        before: nothing,
        after: |s| {
            props(&mut s["events"]["tick"]["payload"]).remove("ts");
        },
        expect: &[("output.property.removed", "event tick payload.ts", B)],
    },
    Case {
        name: "a new result field",
        before: nothing,
        after: |s| {
            props(&mut method(s, "health")["result"])
                .insert("load".into(), json!({"type": "number"}))
                .map_or((), drop)
        },
        expect: &[("output.property.added", "method health result.load", A)],
    },
    Case {
        name: "a result field that may now be absent",
        before: nothing,
        after: |s| required(&mut method(s, "health")["result"]).retain(|r| r != "uptime"),
        expect: &[("output.required.widened", "method health result.uptime", B)],
    },
    Case {
        name: "an optional result field now always present",
        before: nothing,
        after: |s| required(&mut method(s, "cron.run")["result"]).push(json!("run")),
        expect: &[("output.required.narrowed", "method cron.run result.run", A)],
    },
    Case {
        name: "a new required param",
        before: nothing,
        after: |s| {
            let params = &mut method(s, "chat")["params"];
            props(params).insert("tenant".into(), json!({"type": "string"}));
            required(params).push(json!("tenant"));
        },
        expect: &[(
            "input.property.added-required",
            "method chat params.tenant",
            B,
        )],
    },
    Case {
        name: "a new optional param",
        before: nothing,
        after: |s| {
            props(&mut method(s, "chat")["params"])
                .insert("mood".into(), json!({"type": "string"}))
                .map_or((), drop)
        },
        expect: &[("input.property.added", "method chat params.mood", A)],
    },
    Case {
        name: "an optional param made required",
        before: nothing,
        after: |s| required(&mut method(s, "chat")["params"]).push(json!("agentId")),
        expect: &[("input.required.narrowed", "method chat params.agentId", B)],
    },
    Case {
        name: "a required param made optional",
        before: nothing,
        after: |s| required(&mut method(s, "chat")["params"]).clear(),
        expect: &[("input.required.widened", "method chat params.message", A)],
    },
    Case {
        name: "a removed param",
        before: nothing,
        after: |s| {
            props(&mut method(s, "chat")["params"]).remove("wait");
        },
        expect: &[(
            "input.property.removed-optional",
            "method chat params.wait",
            B,
        )],
    },
    Case {
        name: "a param whose type changed",
        before: nothing,
        after: |s| props(&mut method(s, "chat")["params"])["message"]["type"] = json!("integer"),
        expect: &[("input.type.changed", "method chat params.message", B)],
    },
    Case {
        name: "a narrower param enum",
        before: nothing,
        after: |s| props(&mut method(s, "cron.run")["params"])["mode"]["enum"] = json!(["force"]),
        expect: &[("input.enum.narrowed", "method cron.run params.mode", B)],
    },
    Case {
        name: "a wider param enum",
        before: nothing,
        after: |s| {
            let mode = &mut props(&mut method(s, "cron.run")["params"])["mode"];
            mode["enum"].as_array_mut().unwrap().push(json!("dry"));
        },
        expect: &[("input.enum.widened", "method cron.run params.mode", A)],
    },
    Case {
        name: "a tighter param limit",
        before: nothing,
        after: |s| {
            props(&mut method(s, "sessions.history")["params"])["limit"]["maximum"] = json!(10)
        },
        expect: &[(
            "input.maximum.narrowed",
            "method sessions.history params.limit",
            B,
        )],
    },
    Case {
        name: "a changed param default (an omitted mode now means something else)",
        before: nothing,
        after: |s| props(&mut method(s, "cron.run")["params"])["mode"]["default"] = json!("due"),
        expect: &[("input.default.changed", "method cron.run params.mode", B)],
    },
    Case {
        name: "a scope removed from the grantable set (a shared enum, in params and the hello)",
        before: nothing,
        after: |s| {
            for part in ["params", "result"] {
                let scopes = &mut method(s, "connect")[part]["properties"]["scopes"];
                scopes["items"]["enum"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|v| v != "operator.pairing");
            }
        },
        expect: &[
            ("input.enum.narrowed", "method connect params.scopes[]", B),
            ("output.enum.narrowed", "method connect result.scopes[]", A),
        ],
    },
    Case {
        name: "a new oneOf branch in a result (a new kind of cron schedule)",
        before: nothing,
        after: |s| {
            let schedule = &mut method(s, "cron.list")["result"]["properties"]["jobs"]["items"]
                ["properties"]["schedule"];
            let mut branch = schedule["oneOf"][0].clone();
            branch["properties"]["kind"] = json!({"const": "sunrise", "type": "string"});
            schedule["oneOf"].as_array_mut().unwrap().push(branch);
        },
        expect: &[(
            "output.oneOf.widened",
            "method cron.list result.jobs[].schedule",
            B,
        )],
    },
    Case {
        name: "a oneOf branch removed from params",
        before: nothing,
        after: |s| {
            method(s, "cron.add")["params"]["properties"]["schedule"]["oneOf"]
                .as_array_mut()
                .unwrap()
                .pop();
        },
        expect: &[("input.oneOf.narrowed", "method cron.add params.schedule", B)],
    },
    // Frames.
    Case {
        name: "a request frame id with a length limit",
        before: nothing,
        after: |s| s["frames"]["RequestFrame"]["properties"]["id"]["maxLength"] = json!(64),
        expect: &[("input.maxLength.narrowed", "frame RequestFrame.id", B)],
    },
    Case {
        name: "an event frame's seq may now be absent",
        before: nothing,
        after: |s| required(&mut s["frames"]["EventFrame"]).retain(|r| r != "seq"),
        expect: &[("output.required.widened", "frame EventFrame.seq", B)],
    },
    // Config keys: the owner's file is the input.
    Case {
        name: "a removed config key",
        before: nothing,
        after: |s| {
            props(&mut s["config"]["properties"]["gateway"]).remove("port");
        },
        expect: &[("config.property.removed-optional", "config.gateway.port", B)],
    },
    Case {
        name: "a retyped config key",
        before: nothing,
        after: |s| {
            s["config"]["properties"]["gateway"]["properties"]["port"]["type"] = json!("string")
        },
        expect: &[("config.type.changed", "config.gateway.port", B)],
    },
    Case {
        name: "a changed config default",
        before: nothing,
        after: |s| {
            s["config"]["properties"]["gateway"]["properties"]["port"]["default"] = json!(18790)
        },
        expect: &[("config.default.changed", "config.gateway.port", D)],
    },
    Case {
        name: "a config value no longer accepted",
        before: nothing,
        after: |s| {
            let mode = &mut s["config"]["properties"]["gateway"]["properties"]["auth"]
                ["properties"]["mode"];
            mode["enum"]
                .as_array_mut()
                .unwrap()
                .retain(|v| v != "password");
        },
        expect: &[("config.enum.narrowed", "config.gateway.auth.mode", B)],
    },
    Case {
        name: "a new config key",
        before: nothing,
        after: |s| {
            props(&mut s["config"]["properties"]["gateway"])
                .insert("banner".into(), json!({"type": "string"}))
                .map_or((), drop)
        },
        expect: &[("config.property.added", "config.gateway.banner", A)],
    },
    Case {
        name: "a param that now accepts any value, with another default",
        before: |s| {
            props(&mut method(s, "health")["params"]).insert(
                "verbose".into(),
                json!({"type": "boolean", "default": true}),
            );
        },
        after: |s| {
            props(&mut method(s, "health")["params"])
                .insert("verbose".into(), json!({"default": false}));
        },
        expect: &[
            ("input.default.changed", "method health params.verbose", B),
            ("input.type.widened", "method health params.verbose", A),
        ],
    },
    Case {
        name: "a config key that now needs a restart",
        before: nothing,
        after: |s| s["config"]["properties"]["cron"]["x-reload"] = json!("restart"),
        expect: &[("config.reload.restart", "config.cron", D)],
    },
    Case {
        name: "a config key that now takes effect at once",
        before: |s| s["config"]["properties"]["cron"]["x-reload"] = json!("restart"),
        after: |s| s["config"]["properties"]["cron"]["x-reload"] = json!("hot"),
        expect: &[("config.reload.hot", "config.cron", A)],
    },
];

/// Findings as (rule, place, class), sorted.
fn findings(report: &compat::Report) -> Vec<(String, String, Severity)> {
    let mut got: Vec<_> = report
        .findings
        .iter()
        .map(|f| (f.rule.clone(), f.at.clone(), f.severity))
        .collect();
    got.sort();
    got
}

fn expected(list: &[(&str, &str, Severity)]) -> Vec<(String, String, Severity)> {
    let mut want: Vec<_> = list
        .iter()
        .map(|(r, at, s)| (r.to_string(), at.to_string(), *s))
        .collect();
    want.sort();
    want
}

#[test]
fn every_kind_of_change_to_the_real_schemas_is_classified() {
    let base = current();
    for case in CASES {
        let mut old = base.clone();
        (case.before)(&mut old);
        let mut new = old.clone();
        (case.after)(&mut new);
        let report = check(&old, &new);
        assert_eq!(
            findings(&report),
            expected(case.expect),
            "{}:\n{}",
            case.name,
            report.text()
        );
        for f in &report.findings {
            assert!(
                compat::rules::all().contains_key(&f.rule),
                "{}: unknown rule {}",
                case.name,
                f.rule
            );
        }
    }
}

/// A keyword change, tried in each flow on a probe value that both the
/// older and the newer surface have: a param, a result field and a
/// config key. `classes` is what each flow must call it: (params,
/// results, config).
struct KeywordCase {
    name: &'static str,
    old: fn() -> Value,
    new: fn() -> Value,
    rule: &'static str,
    classes: [Severity; 3],
}

#[rustfmt::skip]
const KEYWORD_CASES: &[KeywordCase] = &[
    KeywordCase { name: "a type added", old: || json!({"type": "string"}), new: || json!({"type": ["string", "integer"]}), rule: "type.widened", classes: [A, B, A], },
    KeywordCase { name: "may now be null", old: || json!({"type": "string"}), new: || json!({"type": ["string", "null"]}), rule: "type.widened", classes: [A, B, A], },
    KeywordCase { name: "integer to number", old: || json!({"type": "integer"}), new: || json!({"type": "number"}), rule: "type.widened", classes: [A, B, A], },
    KeywordCase { name: "number to integer", old: || json!({"type": "number"}), new: || json!({"type": "integer"}), rule: "type.narrowed", classes: [B, A, B], },
    KeywordCase { name: "a type replaced", old: || json!({"type": "string"}), new: || json!({"type": "boolean"}), rule: "type.changed", classes: [B, B, B], },
    KeywordCase { name: "an enum value added", old: || json!({"enum": ["a", "b"]}), new: || json!({"enum": ["a", "b", "c"]}), rule: "enum.widened", classes: [A, B, A], },
    KeywordCase { name: "an enum value removed", old: || json!({"enum": ["a", "b"]}), new: || json!({"enum": ["a"]}), rule: "enum.narrowed", classes: [B, A, B], },
    KeywordCase { name: "a const changed to an enum", old: || json!({"const": "a"}), new: || json!({"enum": ["a", "b"]}), rule: "enum.widened", classes: [A, B, A], },
    KeywordCase { name: "a value set added", old: || json!({"type": "string"}), new: || json!({"type": "string", "enum": ["a"]}), rule: "enum.narrowed", classes: [B, A, B], },
    KeywordCase { name: "minimum raised", old: || json!({"type": "integer", "minimum": 0}), new: || json!({"type": "integer", "minimum": 1}), rule: "minimum.narrowed", classes: [B, A, B], },
    KeywordCase { name: "minimum dropped", old: || json!({"type": "integer", "minimum": 0}), new: || json!({"type": "integer"}), rule: "minimum.widened", classes: [A, B, A], },
    KeywordCase { name: "minimum made exclusive", old: || json!({"type": "number", "minimum": 0}), new: || json!({"type": "number", "exclusiveMinimum": 0}), rule: "minimum.narrowed", classes: [B, A, B], },
    KeywordCase { name: "maximum raised", old: || json!({"type": "integer", "maximum": 10}), new: || json!({"type": "integer", "maximum": 100}), rule: "maximum.widened", classes: [A, B, A], },
    KeywordCase { name: "exclusive maximum added", old: || json!({"type": "number"}), new: || json!({"type": "number", "exclusiveMaximum": 1}), rule: "maximum.narrowed", classes: [B, A, B], },
    KeywordCase { name: "minLength raised", old: || json!({"type": "string", "minLength": 1}), new: || json!({"type": "string", "minLength": 3}), rule: "minLength.narrowed", classes: [B, A, B], },
    KeywordCase { name: "maxLength raised", old: || json!({"type": "string", "maxLength": 64}), new: || json!({"type": "string", "maxLength": 256}), rule: "maxLength.widened", classes: [A, B, A], },
    KeywordCase { name: "maxLength added", old: || json!({"type": "string"}), new: || json!({"type": "string", "maxLength": 256}), rule: "maxLength.narrowed", classes: [B, A, B], },
    KeywordCase { name: "pattern added", old: || json!({"type": "string"}), new: || json!({"type": "string", "pattern": "^[a-z]+$"}), rule: "pattern.narrowed", classes: [B, A, B], },
    KeywordCase { name: "pattern dropped", old: || json!({"type": "string", "pattern": "^[a-z]+$"}), new: || json!({"type": "string"}), rule: "pattern.widened", classes: [A, B, A], },
    KeywordCase { name: "pattern changed", old: || json!({"type": "string", "pattern": "^[a-z]+$"}), new: || json!({"type": "string", "pattern": "^[a-z0-9]+$"}), rule: "pattern.changed", classes: [B, B, B], },
    KeywordCase { name: "format added", old: || json!({"type": "string"}), new: || json!({"type": "string", "format": "uri"}), rule: "format.narrowed", classes: [B, A, B], },
    KeywordCase { name: "format dropped", old: || json!({"type": "string", "format": "date-time"}), new: || json!({"type": "string"}), rule: "format.widened", classes: [A, B, A], },
    KeywordCase { name: "multipleOf made coarser", old: || json!({"type": "integer", "multipleOf": 5}), new: || json!({"type": "integer", "multipleOf": 10}), rule: "multipleOf.narrowed", classes: [B, A, B], },
    KeywordCase { name: "multipleOf made finer", old: || json!({"type": "integer", "multipleOf": 10}), new: || json!({"type": "integer", "multipleOf": 5}), rule: "multipleOf.widened", classes: [A, B, A], },
    KeywordCase { name: "multipleOf changed", old: || json!({"type": "integer", "multipleOf": 4}), new: || json!({"type": "integer", "multipleOf": 6}), rule: "multipleOf.changed", classes: [B, B, B], },
    KeywordCase { name: "minItems raised", old: || json!({"type": "array"}), new: || json!({"type": "array", "minItems": 1}), rule: "minItems.narrowed", classes: [B, A, B], },
    KeywordCase { name: "maxItems raised", old: || json!({"type": "array", "maxItems": 8}), new: || json!({"type": "array", "maxItems": 16}), rule: "maxItems.widened", classes: [A, B, A], },
    KeywordCase { name: "items made unique", old: || json!({"type": "array"}), new: || json!({"type": "array", "uniqueItems": true}), rule: "uniqueItems.narrowed", classes: [B, A, B], },
    KeywordCase { name: "items may repeat", old: || json!({"type": "array", "uniqueItems": true}), new: || json!({"type": "array"}), rule: "uniqueItems.widened", classes: [A, B, A], },
    KeywordCase { name: "an array's items narrowed", old: || json!({"type": "array", "items": {"type": "number"}}), new: || json!({"type": "array", "items": {"type": "integer"}}), rule: "type.narrowed", classes: [B, A, B], },
    KeywordCase { name: "minProperties added", old: || json!({"type": "object"}), new: || json!({"type": "object", "minProperties": 1}), rule: "minProperties.narrowed", classes: [B, A, B], },
    KeywordCase { name: "maxProperties raised", old: || json!({"type": "object", "maxProperties": 4}), new: || json!({"type": "object", "maxProperties": 8}), rule: "maxProperties.widened", classes: [A, B, A], },
    KeywordCase { name: "an object closed", old: || json!({"type": "object"}), new: || json!({"type": "object", "additionalProperties": false}), rule: "additionalProperties.narrowed", classes: [B, A, B], },
    KeywordCase { name: "an object opened", old: || json!({"type": "object", "additionalProperties": false}), new: || json!({"type": "object"}), rule: "additionalProperties.widened", classes: [A, D, A], },
    KeywordCase { name: "a map's values widened", old: || json!({"type": "object", "additionalProperties": {"type": "string"}}), new: || json!({"type": "object", "additionalProperties": {"type": ["string", "number"]}}), rule: "type.widened", classes: [A, B, A], },
    KeywordCase { name: "a oneOf branch added", old: || json!({"oneOf": [{"type": "string"}, {"type": "integer"}]}), new: || json!({"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "boolean"}]}), rule: "oneOf.widened", classes: [A, B, A], },
    KeywordCase { name: "a oneOf branch removed", old: || json!({"oneOf": [{"type": "string"}, {"type": "integer"}]}), new: || json!({"oneOf": [{"type": "string"}]}), rule: "oneOf.narrowed", classes: [B, A, B], },
    KeywordCase { name: "a closed enum opened by a union with a pattern", old: || json!({"type": "string", "enum": ["a", "b"]}), new: || json!({"description": "open", "oneOf": [{"description": "built in", "type": "string", "enum": ["a", "b"]}, {"type": "string", "pattern": "^x\\."}]}), rule: "oneOf.widened", classes: [A, B, A], },
    KeywordCase { name: "a union closed to its first branch", old: || json!({"oneOf": [{"type": "string", "enum": ["a", "b"]}, {"type": "string", "pattern": "^x\\."}]}), new: || json!({"type": "string", "enum": ["a", "b"]}), rule: "oneOf.narrowed", classes: [B, A, B], },
    KeywordCase { name: "a type made a union with null", old: || json!({"type": "string"}), new: || json!({"anyOf": [{"type": "string"}, {"type": "null"}]}), rule: "anyOf.widened", classes: [A, B, A], },
    KeywordCase { name: "an anyOf branch added", old: || json!({"anyOf": [{"type": "string"}]}), new: || json!({"anyOf": [{"type": "string"}, {"type": "null"}]}), rule: "anyOf.widened", classes: [A, B, A], },
    KeywordCase { name: "an anyOf branch removed", old: || json!({"anyOf": [{"type": "string"}, {"type": "null"}]}), new: || json!({"anyOf": [{"type": "string"}]}), rule: "anyOf.narrowed", classes: [B, A, B], },
    KeywordCase { name: "an allOf branch added", old: || json!({"allOf": [{"type": "string"}]}), new: || json!({"allOf": [{"type": "string"}, {"minLength": 2}]}), rule: "allOf.narrowed", classes: [B, A, B], },
    KeywordCase { name: "an allOf branch removed", old: || json!({"allOf": [{"type": "string"}, {"minLength": 2}]}), new: || json!({"allOf": [{"type": "string"}]}), rule: "allOf.widened", classes: [A, B, A], },
    KeywordCase { name: "a not added", old: || json!({"type": "string"}), new: || json!({"type": "string", "not": {"const": ""}}), rule: "not.narrowed", classes: [B, A, B], },
    KeywordCase { name: "a default changed", old: || json!({"type": "integer", "default": 50}), new: || json!({"type": "integer", "default": 20}), rule: "default.changed", classes: [B, A, D], },
    KeywordCase { name: "a default added", old: || json!({"type": "integer"}), new: || json!({"type": "integer", "default": 20}), rule: "default.added", classes: [D, A, D], },
    KeywordCase { name: "a default dropped", old: || json!({"type": "integer", "default": 20}), new: || json!({"type": "integer"}), rule: "default.removed", classes: [D, A, D], },
];

/// Puts `probe` (optional) into a param, a result field and a config key.
fn with_probe(base: &Value, probe: &Value) -> Value {
    let mut s = base.clone();
    props(&mut method(&mut s, "chat")["params"]).insert("probe".into(), probe.clone());
    props(&mut method(&mut s, "health")["result"]).insert("probe".into(), probe.clone());
    props(&mut s["config"]["properties"]["gateway"]).insert("probe".into(), probe.clone());
    s
}

#[test]
fn every_keyword_is_classified_by_the_direction_values_flow() {
    let base = current();
    let places = [
        ("input", "method chat params.probe"),
        ("output", "method health result.probe"),
        ("config", "config.gateway.probe"),
    ];
    for case in KEYWORD_CASES {
        let report = check(
            &with_probe(&base, &(case.old)()),
            &with_probe(&base, &(case.new)()),
        );
        let got = findings(&report);
        for ((flow, at), class) in places.iter().zip(case.classes) {
            let rule = format!("{flow}.{}", case.rule);
            let mine: Vec<_> = got
                .iter()
                .filter(|(r, _, _)| r.starts_with(&format!("{flow}.")))
                .collect();
            assert_eq!(mine.len(), 1, "{} ({flow}): {mine:?}", case.name);
            let (r, place, severity) = mine[0];
            assert_eq!(r, &rule, "{} ({flow})", case.name);
            assert!(place.starts_with(at), "{} ({flow}): at {place}", case.name);
            assert_eq!(*severity, class, "{} ({flow})", case.name);
        }
    }
    // Each keyword the check knows is tried in each flow.
    for (keyword, _, _) in compat::rules::KEYWORDS {
        let tried = KEYWORD_CASES
            .iter()
            .any(|c| c.rule.starts_with(&format!("{keyword}.")))
            || *keyword == "required";
        assert!(tried, "no keyword case for {keyword}");
    }
}

#[test]
fn a_shared_type_gets_the_rules_of_every_place_it_is_used() {
    // `Scope` is both what a client asks for (connect params) and what
    // the hello grants (connect result): a new scope is additive for the
    // one and breaking for the other, and is reported at both.
    let bundle = clawgate::protocol::Schemas::get().bundle().clone();
    let mut widened = bundle.clone();
    widened["$defs"]["Scope"]["enum"]
        .as_array_mut()
        .unwrap()
        .push(json!("operator.billing"));
    let report = check(&compat::surface(&bundle), &compat::surface(&widened));
    let at = |place: &str| {
        report
            .findings
            .iter()
            .find(|f| f.at == place)
            .map(|f| (f.rule.as_str(), f.severity))
    };
    assert_eq!(
        at("method connect params.scopes[]"),
        Some(("input.enum.widened", A))
    );
    assert_eq!(
        at("method connect result.scopes[]"),
        Some(("output.enum.widened", B))
    );
    assert!(report.fails(B));
}

#[test]
fn a_policy_reclassifies_rules_and_accepts_findings_with_a_reason() {
    let base = current();
    let mut new = base.clone();
    let state = &mut props(&mut method(&mut new, "health")["result"])["state"];
    state["enum"]
        .as_array_mut()
        .unwrap()
        .push(json!("degraded"));
    props(&mut method(&mut new, "chat")["params"]).remove("wait");

    // Clients told to tolerate unknown values: a new output value is dangerous.
    let tolerant = Policy::parse("[severity]\n\"output.enum.widened\" = \"dangerous\"\n").unwrap();
    let report = compat::diff(&base, &new, &tolerant);
    let id = "output.enum.widened:method health result.state:\"degraded\"";
    let finding = report
        .findings
        .iter()
        .find(|f| f.id == id)
        .expect("stable id");
    assert_eq!(finding.severity, D);
    assert!(report.fails(B), "the removed param still breaks");

    // Accepting the removed param, with a reason, leaves it in the report.
    let accepting = Policy::parse(
        "[[accept]]\nid = \"input.property.removed-optional:method chat params.wait\"\nreason = \"no released client sends wait\"\n\
         [[accept]]\nid = \"input.type.changed:method chat params.nothing\"\nreason = \"stale\"\n",
    )
    .unwrap();
    let report = compat::diff(&base, &new, &accepting);
    let accepted = report
        .findings
        .iter()
        .find(|f| f.ignored.is_some())
        .unwrap();
    assert_eq!(
        accepted.ignored.as_deref(),
        Some("no released client sends wait")
    );
    assert_eq!(report.summary.ignored, 1);
    assert!(
        report.fails(B),
        "the enum value is still breaking by default"
    );
    assert_eq!(
        accepting.unused(),
        vec!["input.type.changed:method chat params.nothing".to_string()]
    );

    for (bad, says) in [
        (
            "[severity]\n\"output.enum.grown\" = \"dangerous\"\n",
            "names no rule",
        ),
        (
            "[severity]\n\"output.enum.widened\" = \"fine\"\n",
            "unknown variant",
        ),
        (
            "[[accept]]\nid = \"output.enum.widened:x\"\nreason = \" \"\n",
            "needs a reason",
        ),
        (
            "[[accept]]\nid = \"output.enum.widened:x\"\n",
            "missing field `reason`",
        ),
        (
            "[[accept]]\nid = \"nonsense\"\nreason = \"r\"\n",
            "does not start with a rule",
        ),
        ("[ignore]\n", "unknown field"),
    ] {
        let err = Policy::parse(bad)
            .err()
            .unwrap_or_else(|| panic!("accepted {bad}"));
        assert!(err.contains(says), "{bad}: {err}");
    }
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn root_schema() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema")
}

/// Writes a copy of schema/ with `edit` applied to one of its files.
fn schema_copy(name: &str, file: &str, edit: impl FnOnce(&mut Value)) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = crate::support::temp_dir(name);
    for entry in std::fs::read_dir(root.join("schema")).unwrap() {
        let path = entry.unwrap().path();
        // schema/openclaw/ describes another protocol; the check reads the native files.
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    let path = dir.join(file);
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut doc);
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    dir
}

#[test]
fn the_check_command_reads_snapshots_and_schema_directories() {
    let releases = releases_dir();
    let (code, out, _) = run(&["protocol", "check", "--against", releases.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("protocol v1 -> v1: 0 breaking"), "{out}");

    // A schema directory with a method removed breaks clients.
    let removed = schema_copy("schema-removed", "methods.json", |m| {
        m["methods"]
            .as_object_mut()
            .unwrap()
            .remove("sessions.clear");
    });
    let latest = releases.join("v1.json");
    let policy = releases.join("policy.toml");
    let (code, out, _) = run(&[
        "protocol",
        "check",
        "--against",
        latest.to_str().unwrap(),
        "--current",
        removed.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 1, "{out}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let breaking: Vec<&Value> = doc["reports"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "breaking" && f["ignored"].is_null())
        .collect();
    assert_eq!(breaking.len(), 1, "{out}");
    assert_eq!(breaking[0]["id"], "method.removed:method sessions.clear");
    assert_eq!(doc["ok"], false);

    // The other way round: the copy is older, the binary adds a method.
    let (code, out, _) = run(&["protocol", "check", "--against", removed.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("additive  method sessions.clear: added  [method.added]"),
        "{out}"
    );

    // Release notes of the difference.
    let (code, notes, _) = run(&[
        "protocol",
        "diff",
        removed.to_str().unwrap(),
        latest.to_str().unwrap(),
        "--format",
        "markdown",
    ]);
    assert_eq!(code, 0);
    let additions = notes.split("### Additions").nth(1).unwrap_or_default();
    assert!(
        additions.contains("\n- `method sessions.clear`: added (`method.added`)"),
        "{notes}"
    );
    // Since v1 the default auth mode changed (the security issue): the
    // release notes tell owners, and --fail-on dangerous fails on it.
    let (code, notes, _) = run(&[
        "protocol",
        "diff",
        latest.to_str().unwrap(),
        root_schema().to_str().unwrap(),
        "--format",
        "markdown",
    ]);
    assert_eq!(code, 0);
    assert!(
        notes.contains(
            "### Your config behaves differently\n\n- `config.gateway.auth.mode`: default changed from \"none\" to \"token\" (`config.default.changed`)"
        ),
        "{notes}"
    );
    let (code, out, _) = run(&[
        "protocol",
        "check",
        "--against",
        latest.to_str().unwrap(),
        "--fail-on",
        "dangerous",
    ]);
    assert_eq!(code, 1, "{out}");

    let (code, _, err) = run(&["protocol", "check", "--against", "/nonexistent/v9.json"]);
    assert_eq!(code, 2, "{err}");
    std::fs::remove_dir_all(removed).unwrap();
}

/// `clawgate protocol check --against <releases> --current <schema>`.
fn check_releases(releases: &std::path::Path, current: &std::path::Path) -> (i32, String, String) {
    run(&[
        "protocol",
        "check",
        "--against",
        releases.to_str().unwrap(),
        "--current",
        current.to_str().unwrap(),
    ])
}

#[test]
fn the_check_covers_every_release_still_served_and_needs_the_current_one_recorded() {
    // Releases v1 and v2, where v2 dropped a method v1 had; the current
    // protocol is v2.
    let v1 = current();
    let mut v2 = v1.clone();
    v2["protocolVersion"] = json!(2);
    v2["methods"]
        .as_object_mut()
        .unwrap()
        .remove("sessions.clear");
    let dir = crate::support::temp_dir("releases");
    std::fs::write(dir.join("v1.json"), v1.to_string()).unwrap();
    std::fs::write(dir.join("v2.json"), v2.to_string()).unwrap();
    let serving = |min: u64| {
        schema_copy(&format!("schema-v2-min{min}"), "protocol.json", |p| {
            p["x-protocol-version"] = json!(2);
            p["x-protocol-min-version"] = json!(min);
        })
    };
    let drop_method = |dir: &std::path::Path| {
        let path = dir.join("methods.json");
        let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        m["methods"]
            .as_object_mut()
            .unwrap()
            .remove("sessions.clear");
        std::fs::write(&path, m.to_string()).unwrap();
    };
    // Still serving v1 clients: the dropped method breaks them.
    let min1 = serving(1);
    drop_method(&min1);
    let (code, out, _) = check_releases(&dir, &min1);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("protocol v1 -> v2: 1 breaking"), "{out}");
    assert!(out.contains("protocol v2 -> v2: 0 breaking"), "{out}");
    // Serving v2 and later only: v1 is skipped, and nothing breaks.
    let min2 = serving(2);
    drop_method(&min2);
    let (code, out, _) = check_releases(&dir, &min2);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("skipped v1: older than v2"), "{out}");
    // A v3 protocol with no recorded v3.json fails, naming the command.
    let v3 = schema_copy("schema-v3", "protocol.json", |p| {
        p["x-protocol-version"] = json!(3);
        p["x-protocol-min-version"] = json!(2);
    });
    drop_method(&v3);
    let (code, out, _) = check_releases(&dir, &v3);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("protocol v3 is not recorded: run `clawgate protocol snapshot >"),
        "{out}"
    );
    // A policy beside the releases is read; a bad one is refused.
    std::fs::write(
        dir.join("policy.toml"),
        "[[accept]]\nid = \"method.removed:method sessions.clear\"\nreason = \"unused\"\n",
    )
    .unwrap();
    let (code, out, _) = check_releases(&dir, &min1);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("accepted  method sessions.clear: removed"),
        "{out}"
    );
    std::fs::write(
        dir.join("policy.toml"),
        "[[accept]]\nid = \"method.removed:x\"\n",
    )
    .unwrap();
    let (code, _, err) = run(&["protocol", "check", "--against", dir.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("policy.toml") && err.contains("reason"),
        "{err}"
    );
    for d in [dir, min1, min2, v3] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn the_readme_lists_every_rule_as_the_binary_prints_them() {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let table = compat::rules::markdown_table();
    assert!(
        readme.contains(&table),
        "README.md's rule table is stale: paste `clawgate protocol rules`"
    );
    let (code, out, _) = run(&["protocol", "rules"]);
    assert_eq!((code, out), (0, table));
}

#[test]
fn the_typed_rust_client_tolerates_fields_it_does_not_know() {
    // A gateway may add a result or event field (additive); the types a
    // client decodes with must still accept the result.
    let bundle = clawgate::protocol::Schemas::get().bundle();
    let mut result = bundle["methods"]["health"]["example"]["result"].clone();
    result["load"] = json!(0.5);
    let decoded = serde_json::from_value::<clawgate::protocol::types::HealthSnapshot>(result);
    assert!(decoded.is_ok(), "{decoded:?}");
    let mut payload = bundle["events"]["tick"]["example"].clone();
    payload["drift"] = json!(3);
    let decoded = serde_json::from_value::<clawgate::protocol::types::TickEvent>(payload);
    assert!(decoded.is_ok(), "{decoded:?}");
}
