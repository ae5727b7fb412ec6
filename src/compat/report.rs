//! Findings with their severities, and their renderings: text for a
//! terminal, Markdown for release notes, JSON for CI.

use super::policy::Policy;
use super::rules::Severity;
use super::schema::Raw;

/// Which report a finding belongs in: clients' or the config file's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Protocol,
    Config,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Finding {
    /// Stable across runs: the rule, the place and, where one rule can
    /// fire twice at one place, what tells them apart. The policy file
    /// names findings by it.
    pub id: String,
    pub rule: String,
    pub severity: Severity,
    pub part: Part,
    pub at: String,
    pub change: String,
    /// The reason the policy file gives for accepting it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    pub breaking: usize,
    pub dangerous: usize,
    pub additive: usize,
    pub ignored: usize,
}

#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub old_version: u64,
    pub new_version: u64,
    pub summary: Summary,
    pub findings: Vec<Finding>,
}

impl Report {
    pub(super) fn new(
        old_version: u64,
        new_version: u64,
        raw: Vec<Raw>,
        policy: &Policy,
    ) -> Report {
        let mut findings: Vec<Finding> = raw
            .into_iter()
            .map(|r| {
                let id = match &r.detail {
                    Some(detail) => format!("{}:{}:{detail}", r.rule, r.at),
                    None => format!("{}:{}", r.rule, r.at),
                };
                Finding {
                    severity: policy.severity(&r.rule),
                    ignored: policy.ignored(&id).map(String::from),
                    part: if r.rule.starts_with("config.") {
                        Part::Config
                    } else {
                        Part::Protocol
                    },
                    id,
                    rule: r.rule,
                    at: r.at,
                    change: r.change,
                }
            })
            .collect();
        findings.sort_by(|a, b| {
            (a.severity, a.part as u8, &a.at, &a.id).cmp(&(b.severity, b.part as u8, &b.at, &b.id))
        });
        findings.dedup_by(|a, b| a.id == b.id);
        let count = |s: Severity| {
            findings
                .iter()
                .filter(|f| f.ignored.is_none() && f.severity == s)
                .count()
        };
        let summary = Summary {
            breaking: count(Severity::Breaking),
            dangerous: count(Severity::Dangerous),
            additive: count(Severity::Additive),
            ignored: findings.iter().filter(|f| f.ignored.is_some()).count(),
        };
        Report {
            old_version,
            new_version,
            summary,
            findings,
        }
    }

    /// The findings that count (not accepted by the policy) of a severity.
    pub fn of(&self, severity: Severity) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(move |f| f.ignored.is_none() && f.severity == severity)
    }

    /// Whether any finding at least as severe as `threshold` counts.
    pub fn fails(&self, threshold: Severity) -> bool {
        self.findings
            .iter()
            .any(|f| f.ignored.is_none() && f.severity <= threshold)
    }

    pub fn text(&self) -> String {
        let s = &self.summary;
        let mut out = format!(
            "protocol v{} -> v{}: {} breaking, {} dangerous, {} additive",
            self.old_version, self.new_version, s.breaking, s.dangerous, s.additive
        );
        if s.ignored > 0 {
            out.push_str(&format!(" ({} accepted by the policy)", s.ignored));
        }
        out.push('\n');
        for f in &self.findings {
            let label = match (&f.ignored, f.severity) {
                (Some(_), _) => "accepted",
                (None, Severity::Breaking) => "BREAKING",
                (None, Severity::Dangerous) => "dangerous",
                (None, Severity::Additive) => "additive",
            };
            out.push_str(&format!("{label:9} {}: {}  [{}]\n", f.at, f.change, f.rule));
            if let Some(reason) = &f.ignored {
                out.push_str(&format!("          because: {reason}\n"));
            }
        }
        out
    }

    /// Release notes: what breaks, what to watch, what is new, and what
    /// the owner's config file needs.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "## Protocol v{} → v{}\n",
            self.old_version, self.new_version
        );
        let line = |f: &Finding| format!("- `{}`: {} (`{}`)\n", f.at, f.change, f.rule);
        let mut section = |title: &str, part: Part, severity: Severity| {
            let items: String = self
                .of(severity)
                .filter(|f| f.part == part)
                .map(line)
                .collect();
            if !items.is_empty() {
                out.push_str(&format!("\n### {title}\n\n{items}"));
            }
        };
        section("Breaking changes", Part::Protocol, Severity::Breaking);
        section("Dangerous changes", Part::Protocol, Severity::Dangerous);
        section("Additions", Part::Protocol, Severity::Additive);
        section(
            "Your config needs changing",
            Part::Config,
            Severity::Breaking,
        );
        section(
            "Your config behaves differently",
            Part::Config,
            Severity::Dangerous,
        );
        section("New in the config", Part::Config, Severity::Additive);
        let accepted: String = self
            .findings
            .iter()
            .filter_map(|f| {
                Some(format!(
                    "- `{}`: {} (`{}`): {}\n",
                    f.at,
                    f.change,
                    f.rule,
                    f.ignored.as_ref()?
                ))
            })
            .collect();
        if !accepted.is_empty() {
            out.push_str(&format!("\n### Accepted breaks\n\n{accepted}"));
        }
        if self.findings.is_empty() {
            out.push_str("\nNo changes.\n");
        }
        out
    }
}
