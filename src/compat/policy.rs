//! A project's compatibility policy (a TOML file): rules it classifies
//! differently, and findings it accepts, each with a reason.
//!
//! ```toml
//! [severity]
//! "output.enum.widened" = "dangerous"   # our clients must tolerate unknown values
//!
//! [[accept]]
//! id = "output.enum.widened:method health result.state:\"degraded\""
//! reason = "every released client maps unknown states to unhealthy"
//! ```

use super::rules::{self, Severity};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    severity: BTreeMap<String, Severity>,
    #[serde(default)]
    accept: Vec<Accept>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Accept {
    id: String,
    reason: String,
}

#[derive(Default)]
pub struct Policy {
    severity: BTreeMap<String, Severity>,
    accept: BTreeMap<String, String>,
    /// The accepted ids some finding matched, to name stale ones.
    used: Mutex<BTreeSet<String>>,
}

impl Policy {
    /// Reads a policy file; every rule it names must exist and every
    /// accepted finding must say why.
    pub fn load(path: &Path) -> Result<Policy, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Policy::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Policy, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let known = rules::all();
        for rule in file.severity.keys() {
            if !known.contains_key(rule) {
                return Err(format!(
                    "[severity] names no rule \"{rule}\" (the rules are listed by `clawgate protocol rules`)"
                ));
            }
        }
        let mut accept = BTreeMap::new();
        for entry in file.accept {
            if entry.reason.trim().is_empty() {
                return Err(format!("[[accept]] {} needs a reason", entry.id));
            }
            let rule = entry.id.split(':').next().unwrap_or_default();
            if !known.contains_key(rule) {
                return Err(format!(
                    "[[accept]] id \"{}\" does not start with a rule (copy it from `--format json`)",
                    entry.id
                ));
            }
            if accept.insert(entry.id.clone(), entry.reason).is_some() {
                return Err(format!("[[accept]] {} is listed twice", entry.id));
            }
        }
        Ok(Policy {
            severity: file.severity,
            accept,
            used: Mutex::default(),
        })
    }

    pub fn severity(&self, rule: &str) -> Severity {
        self.severity
            .get(rule)
            .copied()
            .or_else(|| rules::all().get(rule).map(|r| r.severity))
            .unwrap_or(Severity::Breaking)
    }

    /// The reason a finding is accepted, if it is.
    pub fn ignored(&self, id: &str) -> Option<&str> {
        let reason = self.accept.get(id)?;
        self.used
            .lock()
            .expect("policy lock")
            .insert(id.to_string());
        Some(reason)
    }

    /// Accepted ids no finding has matched so far: stale entries.
    pub fn unused(&self) -> Vec<String> {
        let used = self.used.lock().expect("policy lock");
        self.accept
            .keys()
            .filter(|id| !used.contains(*id))
            .cloned()
            .collect()
    }
}
