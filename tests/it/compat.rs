//! Protocol compatibility: the current schemas against the latest
//! recorded protocol, a corpus of mutations (one per kind of change),
//! and the `clawgate protocol check` command.

use crate::support::bin;
use clawgate::compat::{check, current};
use serde_json::{json, Value};
use std::process::Command;

/// The recorded protocol snapshots, newest last.
fn recorded() -> Vec<(u64, std::path::PathBuf)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots/protocol");
    let mut found: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            let n = path
                .file_stem()?
                .to_str()?
                .strip_prefix('v')?
                .parse()
                .ok()?;
            Some((n, path))
        })
        .collect();
    found.sort();
    found
}

#[test]
fn the_current_protocol_keeps_every_promise_of_the_latest_release() {
    let (version, path) = recorded().pop().expect("snapshots/protocol/v1.json");
    let now = current();
    let now_version = now["protocolVersion"].as_u64().unwrap();
    assert_eq!(
        now_version, version,
        "the protocol version is now {now_version}: record it with \
         `clawgate protocol snapshot > snapshots/protocol/v{now_version}.json`"
    );
    let released = clawgate::compat::load(&path).unwrap();
    let report = check(&released, &now);
    for change in &report.additive {
        println!(
            "additive since v{version}: {}: {}",
            change.at, change.change
        );
    }
    assert!(
        report.breaking.is_empty(),
        "breaking changes against {}; bump x-protocol-version in schema/protocol.json and \
         record a new snapshot if they are meant:\n{}",
        path.display(),
        report.text()
    );
}

/// A mutation of the current surface and what it must be classified as.
struct Case {
    name: &'static str,
    mutate: fn(&mut Value),
    breaking: &'static [&'static str],
    additive: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "a removed method",
        mutate: |s| {
            s["methods"].as_object_mut().unwrap().remove("health");
        },
        breaking: &["method health: removed"],
        additive: &[],
    },
    Case {
        name: "a renamed event",
        mutate: |s| {
            let events = s["events"].as_object_mut().unwrap();
            let tick = events.remove("tick").unwrap();
            events.insert("heartbeat".into(), tick);
        },
        breaking: &["event tick: removed"],
        additive: &["event heartbeat: added"],
    },
    Case {
        name: "a field removed from a result",
        mutate: |s| {
            s["methods"]["health"]["result"]["properties"]
                .as_object_mut()
                .unwrap()
                .remove("uptime");
        },
        breaking: &["method health result.uptime: field removed"],
        additive: &[],
    },
    Case {
        name: "a field removed from an event payload",
        mutate: |s| {
            s["events"]["tick"]["payload"]["properties"]
                .as_object_mut()
                .unwrap()
                .remove("ts");
        },
        breaking: &["event tick payload.ts: field removed"],
        additive: &[],
    },
    Case {
        name: "a new required param",
        mutate: |s| {
            let params = &mut s["methods"]["chat"]["params"];
            params["properties"]["tenant"] = json!({"type": "string"});
            params["required"].as_array_mut().unwrap().push(json!("tenant"));
        },
        breaking: &["method chat params.tenant: new required param"],
        additive: &[],
    },
    Case {
        name: "an optional param made required",
        mutate: |s| {
            let params = &mut s["methods"]["chat"]["params"];
            params["required"].as_array_mut().unwrap().push(json!("agentId"));
        },
        breaking: &["method chat params.agentId: param now required"],
        additive: &[],
    },
    Case {
        name: "a param whose type changed",
        mutate: |s| {
            s["methods"]["chat"]["params"]["properties"]["message"]["type"] = json!("integer");
        },
        breaking: &["method chat params.message: type narrowed: string no longer allowed"],
        additive: &[],
    },
    Case {
        name: "a narrower param enum",
        mutate: |s| {
            s["methods"]["cron.run"]["params"]["properties"]["mode"]["enum"] = json!(["force"]);
        },
        breaking: &["method cron.run params.mode: values removed: \"due\""],
        additive: &[],
    },
    Case {
        name: "a tighter param limit",
        mutate: |s| {
            s["methods"]["sessions.history"]["params"]["properties"]["limit"]["maximum"] = json!(10);
        },
        breaking: &["method sessions.history params.limit: maximum tightened from 1000 to 10"],
        additive: &[],
    },
    Case {
        name: "a result field that may now be absent",
        mutate: |s| {
            let required = s["methods"]["health"]["result"]["required"].as_array_mut().unwrap();
            required.retain(|r| r != "uptime");
        },
        breaking: &["method health result.uptime: field may now be absent"],
        additive: &[],
    },
    Case {
        name: "a stricter scope",
        mutate: |s| {
            s["methods"]["health"]["scope"] = json!("operator.admin");
        },
        breaking: &["method health: scope changed from operator.read to operator.admin, which operator.read does not grant"],
        additive: &[],
    },
    Case {
        name: "a changed error code",
        mutate: |s| {
            s["errors"]["timeout"] = json!(-32099);
        },
        breaking: &["error timeout: code changed from -32005 to -32099"],
        additive: &[],
    },
    Case {
        name: "additions only",
        mutate: |s| {
            s["methods"]["hello"] = s["methods"]["health"].clone();
            s["events"]["hello.changed"] = s["events"]["tick"].clone();
            s["methods"]["chat"]["params"]["properties"]["mood"] = json!({"type": "string"});
            s["methods"]["health"]["result"]["properties"]["load"] = json!({"type": "number"});
            let values = s["methods"]["health"]["result"]["properties"]["state"]["enum"]
                .as_array_mut()
                .unwrap();
            values.push(json!("degraded"));
            s["methods"]["status"]["scope"] = json!("public");
        },
        breaking: &[],
        additive: &[
            "method chat params.mood: new optional param",
            "method health result.load: new field",
            "method health result.state: values added: \"degraded\"",
            "method status: scope relaxed from operator.read to public",
            "method hello: added",
            "event hello.changed: added",
        ],
    },
];

#[test]
fn every_kind_of_change_is_classified() {
    let base = current();
    // Fixtures the cases rely on, so a schema change shows up here first.
    assert!(base["methods"]["chat"]["params"]["properties"]
        .get("agentId")
        .is_some());
    for case in CASES {
        let mut mutated = base.clone();
        (case.mutate)(&mut mutated);
        let report = check(&base, &mutated);
        let breaking: Vec<String> = report
            .breaking
            .iter()
            .map(|c| format!("{}: {}", c.at, c.change))
            .collect();
        let additive: Vec<String> = report
            .additive
            .iter()
            .map(|c| format!("{}: {}", c.at, c.change))
            .collect();
        let mut want_breaking: Vec<String> = case.breaking.iter().map(|s| s.to_string()).collect();
        let mut want_additive: Vec<String> = case.additive.iter().map(|s| s.to_string()).collect();
        let (mut got_breaking, mut got_additive) = (breaking.clone(), additive.clone());
        for v in [
            &mut want_breaking,
            &mut want_additive,
            &mut got_breaking,
            &mut got_additive,
        ] {
            v.sort();
        }
        assert_eq!(got_breaking, want_breaking, "{}: breaking", case.name);
        assert_eq!(got_additive, want_additive, "{}: additive", case.name);
    }
}

#[test]
fn the_check_command_reads_snapshots_and_schema_directories() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (_, latest) = recorded().pop().unwrap();
    let ok = Command::new(bin())
        .args(["protocol", "check", "--against", latest.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    // A schema directory with a method removed breaks clients.
    let dir = crate::support::temp_dir("schema-copy");
    for entry in std::fs::read_dir(root.join("schema")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let methods_path = dir.join("methods.json");
    let mut methods: Value =
        serde_json::from_str(&std::fs::read_to_string(&methods_path).unwrap()).unwrap();
    methods["methods"]
        .as_object_mut()
        .unwrap()
        .remove("sessions.clear");
    std::fs::write(&methods_path, methods.to_string()).unwrap();
    let broken = Command::new(bin())
        .args(["protocol", "check", "--against", latest.to_str().unwrap()])
        .args(["--current", dir.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(broken.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&broken.stdout).unwrap();
    assert_eq!(
        report["breaking"],
        json!([{"at": "method sessions.clear", "change": "removed"}])
    );
    // And the other way round: the copy is older, the binary adds a method.
    let added = Command::new(bin())
        .args(["protocol", "check", "--against", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(added.status.success());
    let text = String::from_utf8_lossy(&added.stdout);
    assert!(
        text.contains("additive  method sessions.clear: added"),
        "{text}"
    );
    let missing = Command::new(bin())
        .args(["protocol", "check", "--against", "/nonexistent/v9.json"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    std::fs::remove_dir_all(dir).unwrap();
}
