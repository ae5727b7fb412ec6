//! Every rule the compatibility check applies, with its identifier and
//! default severity. A rule's identifier is stable: reports, the policy
//! file and the README's table name rules by it.
//!
//! Schema rules are `<flow>.<keyword>.<effect>`. The flow says who
//! writes the value: `input` (params: clients write, the gateway reads),
//! `output` (results and event payloads: the gateway writes, clients
//! read) and `config` (the owner writes the file, the gateway reads).
//! A reader breaks when the writer may now produce something it used to
//! refuse, so for input and config a narrower schema breaks clients and
//! a wider one is additive, and for output it is the other way round.

use std::collections::BTreeMap;
use std::sync::OnceLock;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A client (or config file) that worked before can fail now.
    Breaking,
    /// Correct clients keep working, careless ones may not; say it in the
    /// release notes.
    Dangerous,
    /// Nothing that worked stops working.
    Additive,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Breaking => "breaking",
            Severity::Dangerous => "dangerous",
            Severity::Additive => "additive",
        }
    }
}

/// Who writes the values a schema describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Input,
    Output,
    Config,
}

impl Flow {
    pub const ALL: [Flow; 3] = [Flow::Input, Flow::Output, Flow::Config];

    pub fn name(self) -> &'static str {
        match self {
            Flow::Input => "input",
            Flow::Output => "output",
            Flow::Config => "config",
        }
    }
}

/// How a keyword change moved the set of valid values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Everything valid before is still valid, and more.
    Widened,
    /// Something valid before is refused now, nothing new is valid.
    Narrowed,
    /// Neither contains the other (a changed pattern, say).
    Changed,
}

impl Effect {
    pub fn name(self) -> &'static str {
        match self {
            Effect::Widened => "widened",
            Effect::Narrowed => "narrowed",
            Effect::Changed => "changed",
        }
    }
}

/// The keywords compared as sets of valid values: what widens and what
/// narrows each, for the README's table. The schemas under `properties`,
/// `additionalProperties`, `items` and the branches are compared
/// recursively, each change reported where it is (`x.name`, `x.*`,
/// `x[]`, `x<kind>`).
pub const KEYWORDS: &[(&str, &str, &str)] = &[
    (
        "type",
        "a type added (`integer` → `number`, `\"null\"` added)",
        "a type removed, or a type set where there was none",
    ),
    (
        "enum",
        "a value added (`enum` and `const`), or the value set dropped",
        "a value removed, or a value set where there was none",
    ),
    (
        "minimum",
        "lower bound (`minimum`, `exclusiveMinimum`) lowered or dropped",
        "lower bound raised or added",
    ),
    (
        "maximum",
        "upper bound (`maximum`, `exclusiveMaximum`) raised or dropped",
        "upper bound lowered or added",
    ),
    ("minLength", "lowered or dropped", "raised or added"),
    ("maxLength", "raised or dropped", "lowered or added"),
    ("minItems", "lowered or dropped", "raised or added"),
    ("maxItems", "raised or dropped", "lowered or added"),
    ("minProperties", "lowered or dropped", "raised or added"),
    ("maxProperties", "raised or dropped", "lowered or added"),
    (
        "multipleOf",
        "now a divisor of the old one, or dropped",
        "now a multiple of the old one, or added",
    ),
    ("pattern", "dropped", "added"),
    ("format", "dropped", "added"),
    ("uniqueItems", "dropped", "added"),
    (
        "required",
        "a property made optional",
        "a property made required",
    ),
    (
        "additionalProperties",
        "a closed object opened",
        "an open object closed",
    ),
    (
        "oneOf",
        "a branch added, or the branches dropped",
        "a branch removed, or branches added",
    ),
    (
        "anyOf",
        "a branch added, or the branches dropped",
        "a branch removed, or branches added",
    ),
    ("allOf", "a branch removed", "a branch added"),
    ("not", "dropped", "added"),
];

/// Keywords whose change can be neither wider nor narrower.
pub const CHANGEABLE: &[&str] = &[
    "type",
    "multipleOf",
    "pattern",
    "format",
    "not",
    "oneOf",
    "anyOf",
    "allOf",
];

/// Rules that are not a keyword's widening or narrowing: (suffix, what,
/// severity for input, output, config).
#[allow(clippy::type_complexity)]
const PROPERTY_RULES: &[(&str, &str, [Severity; 3])] = {
    use Severity::*;
    &[
        (
            "property.added",
            "an optional property added",
            [Additive, Additive, Additive],
        ),
        (
            "property.added-required",
            "a required property added",
            [Breaking, Additive, Breaking],
        ),
        (
            "property.removed",
            "a property removed (a required one, for output)",
            [Breaking, Breaking, Breaking],
        ),
        (
            "property.removed-optional",
            "an optional property removed",
            [Breaking, Dangerous, Breaking],
        ),
        (
            "property.removed-after-sunset",
            "a deprecated property removed at or after its x-sunset version",
            [Dangerous, Dangerous, Dangerous],
        ),
        (
            "default.changed",
            "the default changed: an omitted value means something else",
            [Breaking, Additive, Dangerous],
        ),
        (
            "default.added",
            "a default added where there was none",
            [Dangerous, Additive, Dangerous],
        ),
        (
            "default.removed",
            "the default dropped",
            [Dangerous, Additive, Dangerous],
        ),
        (
            "deprecated.added",
            "marked deprecated",
            [Additive, Additive, Additive],
        ),
        (
            "deprecated.removed",
            "no longer deprecated",
            [Additive, Additive, Additive],
        ),
    ]
};

/// Rules on the protocol's surface: (id, what, severity).
const SURFACE_RULES: &[(&str, &str, Severity)] = {
    use Severity::*;
    &[
        ("method.added", "a method added", Additive),
        ("method.removed", "a method removed or renamed", Breaking),
        (
            "method.removed-after-sunset",
            "a deprecated method removed at or after its x-sunset version",
            Dangerous,
        ),
        ("method.deprecated", "a method marked deprecated", Additive),
        (
            "event.added",
            "an event added (clients ignore events they do not know)",
            Additive,
        ),
        ("event.removed", "an event removed or renamed", Breaking),
        (
            "event.removed-after-sunset",
            "a deprecated event removed at or after its x-sunset version",
            Dangerous,
        ),
        ("event.deprecated", "an event marked deprecated", Additive),
        (
            "scope.stricter",
            "a method or event needs a scope the old one does not grant",
            Breaking,
        ),
        (
            "scope.relaxed",
            "a method or event needs a scope the old one grants",
            Additive,
        ),
        (
            "scope-implies.removed",
            "a scope no longer grants another",
            Breaking,
        ),
        (
            "scope-implies.added",
            "a scope now grants another",
            Additive,
        ),
        ("error.added", "an error code added", Additive),
        (
            "error.removed",
            "an error code removed (clients branch on codes)",
            Breaking,
        ),
        (
            "error.renumbered",
            "an error code's number changed",
            Breaking,
        ),
        (
            "protocol.min-version-raised",
            "clients of older protocol versions are refused",
            Dangerous,
        ),
        (
            "config.property.migrated",
            "a config key renamed or moved with a migration (x-migrations): files that use the old name still load",
            Additive,
        ),
        (
            "config.reload.restart",
            "a setting that took effect at once now needs a restart",
            Dangerous,
        ),
        (
            "config.reload.hot",
            "a setting that needed a restart now takes effect at once",
            Additive,
        ),
    ]
};

/// One rule: its identifier, what it is about and its default severity.
pub struct Rule {
    pub id: String,
    pub what: String,
    pub severity: Severity,
}

/// Every rule, by identifier.
pub fn all() -> &'static BTreeMap<String, Rule> {
    static RULES: OnceLock<BTreeMap<String, Rule>> = OnceLock::new();
    RULES.get_or_init(|| {
        let mut rules = Vec::new();
        for flow in Flow::ALL {
            for (keyword, wider, narrower) in KEYWORDS {
                let mut effects = vec![(Effect::Widened, *wider), (Effect::Narrowed, *narrower)];
                if CHANGEABLE.contains(keyword) {
                    effects.push((Effect::Changed, "changed so neither contains the other"));
                }
                for (effect, what) in effects {
                    rules.push(Rule {
                        id: format!("{}.{keyword}.{}", flow.name(), effect.name()),
                        what: format!("{keyword}: {what}"),
                        severity: keyword_severity(flow, keyword, effect),
                    });
                }
            }
            for (suffix, what, severities) in PROPERTY_RULES {
                rules.push(Rule {
                    id: format!("{}.{suffix}", flow.name()),
                    what: what.to_string(),
                    severity: severities[flow as usize],
                });
            }
        }
        for (id, what, severity) in SURFACE_RULES {
            rules.push(Rule {
                id: id.to_string(),
                what: what.to_string(),
                severity: *severity,
            });
        }
        rules.into_iter().map(|r| (r.id.clone(), r)).collect()
    })
}

/// A reader breaks when the writer may produce what it used to refuse.
fn keyword_severity(flow: Flow, keyword: &str, effect: Effect) -> Severity {
    match (flow, effect) {
        // Readers ignore fields they do not know, so an opened result
        // object only matters to clients that iterate over its keys.
        (Flow::Output, Effect::Widened) if keyword == "additionalProperties" => Severity::Dangerous,
        (_, Effect::Changed) => Severity::Breaking,
        (Flow::Output, Effect::Widened) => Severity::Breaking,
        (Flow::Output, Effect::Narrowed) => Severity::Additive,
        (_, Effect::Narrowed) => Severity::Breaking,
        (_, Effect::Widened) => Severity::Additive,
    }
}

/// The README's table of schema rules: one row per keyword change, the
/// default severity for each flow.
pub fn markdown_table() -> String {
    let rules = all();
    let severity =
        |flow: Flow, suffix: &str| rules[&format!("{}.{suffix}", flow.name())].severity.name();
    let mut out = String::from(
        "| Change | Rule | Params (input) | Results, events (output) | Config |\n|---|---|---|---|---|\n",
    );
    let mut row = |what: &str, suffix: &str| {
        out.push_str(&format!(
            "| {what} | `*.{suffix}` | {} | {} | {} |\n",
            severity(Flow::Input, suffix),
            severity(Flow::Output, suffix),
            severity(Flow::Config, suffix),
        ));
    };
    for (keyword, wider, narrower) in KEYWORDS {
        row(
            &format!("`{keyword}`: {wider}"),
            &format!("{keyword}.widened"),
        );
        row(
            &format!("`{keyword}`: {narrower}"),
            &format!("{keyword}.narrowed"),
        );
        if CHANGEABLE.contains(keyword) {
            row(
                &format!("`{keyword}`: changed, neither contains the other"),
                &format!("{keyword}.changed"),
            );
        }
    }
    for (suffix, what, _) in PROPERTY_RULES {
        row(&what.replace('|', "\\|"), suffix);
    }
    out.push_str("\n| Change | Rule | Severity |\n|---|---|---|\n");
    for (id, what, severity) in SURFACE_RULES {
        out.push_str(&format!("| {what} | `{id}` | {} |\n", severity.name()));
    }
    out
}
