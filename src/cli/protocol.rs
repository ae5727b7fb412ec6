//! `clawgate protocol check|diff|snapshot|rules`: the compatibility
//! check as a command. Exit codes: 0 compatible, 1 a finding at or above
//! the failing severity, 2 unreadable input.

use crate::compat::{self, Policy, Report, Severity};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
pub enum ReportFormat {
    /// One line per finding.
    #[default]
    Text,
    /// Release notes.
    Markdown,
    /// One JSON document, each finding with its stable id.
    Json,
}

#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
pub enum FailOn {
    /// Exit 1 on breaking findings only.
    #[default]
    Breaking,
    /// Exit 1 on breaking or dangerous findings.
    Dangerous,
}

/// The file a release directory may hold with the project's policy.
const POLICY_FILE: &str = "policy.toml";

fn fail(message: String) -> u8 {
    eprintln!("clawgate: {message}");
    2
}

fn policy(explicit: Option<&Path>, against: &Path) -> Result<Policy, String> {
    match explicit {
        Some(path) => Policy::load(path),
        None if compat::is_release_dir(against) && against.join(POLICY_FILE).exists() => {
            Policy::load(&against.join(POLICY_FILE))
        }
        None if is_openclaw_contract_file(against) => {
            Policy::parse(include_str!("../../schema/openclaw/policy.toml"))
        }
        None => Ok(Policy::default()),
    }
}

/// Whether `path` is a file holding a plugin manifest.
fn is_manifest_file(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .is_some_and(|value| compat::is_plugin_manifest(&value))
}

/// Checks the newer protocol (`current`, default this binary's) against
/// `against`: one recorded release, a schema, or a directory of recorded
/// releases, each of which the newer protocol still serves.
pub fn check(
    against: &Path,
    current: Option<&Path>,
    policy_path: Option<&Path>,
    format: ReportFormat,
    fail_on: FailOn,
) -> u8 {
    if current.is_none() && is_manifest_file(against) {
        return fail(format!(
            "{} is a plugin manifest: check the plugin's new manifest against it with --current NEW_MANIFEST",
            against.display()
        ));
    }
    // OpenClaw's published contract is checked against the v4 surface.
    let served = if is_openclaw_contract_file(against) {
        compat::openclaw_current
    } else {
        compat::current
    };
    let new = match current.map_or_else(|| Ok(served()), compat::load) {
        Ok(surface) => surface,
        Err(e) => return fail(e),
    };
    let policy = match policy(policy_path, against) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let version = new["protocolVersion"].as_u64().unwrap_or(0);
    let min = new["minProtocolVersion"].as_u64().unwrap_or(version);
    let mut releases: Vec<(Option<u64>, PathBuf)> = Vec::new();
    let mut skipped = Vec::new();
    let mut problems = Vec::new();
    if compat::is_release_dir(against) {
        let found = match compat::released(against) {
            Ok(found) => found,
            Err(e) => return fail(e),
        };
        if found.last().map(|(v, _)| *v) < Some(version) {
            problems.push(format!(
                "protocol v{version} is not recorded: run `clawgate protocol snapshot > {}`",
                against.join(format!("v{version}.json")).display()
            ));
        }
        for (v, path) in found {
            if v < min {
                skipped.push(json!({"version": v, "reason": format!("older than v{min}, the oldest protocol still served")}));
            } else if v > version {
                skipped.push(json!({"version": v, "reason": format!("newer than v{version}, the protocol checked")}));
            } else {
                releases.push((Some(v), path));
            }
        }
    } else {
        releases.push((None, against.to_path_buf()));
    }
    let mut reports = Vec::new();
    for (_, path) in &releases {
        match compat::load(path) {
            Ok(old) => reports.push(compat::diff(&old, &new, &policy)),
            Err(e) => return fail(e),
        }
    }
    let stale = policy.unused();
    let threshold = match fail_on {
        FailOn::Breaking => Severity::Breaking,
        FailOn::Dangerous => Severity::Dangerous,
    };
    let failed = !problems.is_empty() || reports.iter().any(|r| r.fails(threshold));
    match format {
        ReportFormat::Json => {
            let doc = json!({
                "ok": !failed,
                "reports": reports,
                "skipped": skipped,
                "problems": problems,
                "staleAccepts": stale,
            });
            println!("{}", serde_json::to_string_pretty(&doc).expect("JSON"));
        }
        ReportFormat::Text | ReportFormat::Markdown => {
            for report in &reports {
                print!("{}", render(report, format));
            }
            for s in &skipped {
                println!(
                    "skipped v{}: {}",
                    s["version"],
                    s["reason"].as_str().unwrap_or_default()
                );
            }
            for p in &problems {
                println!("PROBLEM   {p}");
            }
            for id in &stale {
                eprintln!(
                    "clawgate: the policy accepts {id}, which no finding matches (remove it)"
                );
            }
            if failed && reports.iter().any(|r| r.fails(threshold)) {
                println!(
                    "To accept a finding, add its id (see --format json) to the policy with a reason; \
                     to drop clients of older versions, raise x-protocol-min-version."
                );
            }
        }
    }
    u8::from(failed)
}

fn render(report: &Report, format: ReportFormat) -> String {
    match format {
        ReportFormat::Markdown => report.markdown(),
        _ => report.text(),
    }
}

/// Every difference between two protocols, as release notes or JSON;
/// exit 0 whatever they are.
pub fn diff(old: &Path, new: &Path, policy_path: Option<&Path>, format: ReportFormat) -> u8 {
    let loaded = compat::load(old).and_then(|o| Ok((o, compat::load(new)?)));
    let (old, new) = match loaded {
        Ok(pair) => pair,
        Err(e) => return fail(e),
    };
    let policy = match policy_path.map_or_else(|| Ok(Policy::default()), Policy::load) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let report = compat::diff(&old, &new, &policy);
    match format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report).expect("JSON")),
        other => print!("{}", render(&report, other)),
    }
    0
}

/// The surface of a schema directory, or of this binary's schema.
pub fn snapshot(schema: Option<&Path>) -> u8 {
    let surface: Result<Value, String> = schema.map_or_else(|| Ok(compat::current()), compat::load);
    match surface {
        Ok(s) => {
            println!("{}", serde_json::to_string_pretty(&s).expect("JSON"));
            0
        }
        Err(e) => fail(e),
    }
}

fn is_openclaw_contract_file(path: &Path) -> bool {
    path.is_file()
        && std::fs::read_to_string(path)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .is_some_and(|value| compat::is_openclaw_contract(&value))
}
