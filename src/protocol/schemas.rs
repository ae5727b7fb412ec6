use serde_json::Value;
use std::sync::OnceLock;

/// The bundled schema and a validator for each of its definitions, compiled
/// once from the schema embedded at build time.
pub struct Schemas {
    bundle: Value,
    validators: jsonschema::ValidatorMap,
}

/// One way an instance fails a schema. `message` never contains the
/// instance's values, so secrets cannot leak through it.
#[derive(Clone, Debug, PartialEq)]
pub struct SchemaViolation {
    pub pointer: String,
    pub message: String,
    pub kind: ViolationKind,
}

/// What kind of rule a violation breaks, for callers that explain it in
/// their own words (the config diagnostics).
#[derive(Clone, Debug, PartialEq)]
pub enum ViolationKind {
    /// A key the object's schema does not define; `known` are the keys it does.
    UnknownKey { key: String, known: Vec<String> },
    /// The value itself fails its own schema (type, enum, const, range,
    /// length, pattern, format, multipleOf, item count).
    Value,
    /// Anything else (a missing required key, a failed oneOf, ...).
    Other,
}

const BUNDLE: &str = include_str!(concat!(env!("OUT_DIR"), "/bundle.json"));

impl Schemas {
    pub fn get() -> &'static Schemas {
        static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
        SCHEMAS.get_or_init(|| {
            let bundle: Value = serde_json::from_str(BUNDLE).expect("bundle.json is JSON");
            let defs_only = serde_json::json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$defs": bundle["$defs"],
            });
            let validators = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .build_map(&defs_only)
                .expect("the bundled schema compiles");
            Schemas { bundle, validators }
        })
    }

    /// The whole bundled schema (protocol, methods, events, config).
    pub fn bundle(&self) -> &Value {
        &self.bundle
    }

    /// The schema of one `$defs` entry.
    pub fn def(&self, name: &str) -> Option<&Value> {
        self.bundle["$defs"].get(name)
    }

    /// Checks `instance` against `$defs/<def>`; every violation, in order.
    pub fn validate(&self, def: &str, instance: &Value) -> Result<(), Vec<SchemaViolation>> {
        let validator = &self.validators[format!("#/$defs/{def}").as_str()];
        let mut violations = Vec::new();
        for error in validator.iter_errors(instance) {
            let pointer = error.instance_path().to_string();
            match error.kind() {
                jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                    let known = self.property_names(def, &pointer);
                    violations.extend(unexpected.iter().map(|key| SchemaViolation {
                        pointer: crate::pointer::child(&pointer, key),
                        message: unknown_key_message(key, &known),
                        kind: ViolationKind::UnknownKey {
                            key: key.clone(),
                            known: known.clone(),
                        },
                    }));
                }
                kind => violations.push(SchemaViolation {
                    pointer,
                    message: error.masked().to_string(),
                    kind: value_or_other(kind),
                }),
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }
}

impl Schemas {
    /// The schema that describes the value at `pointer` inside an instance
    /// of `$defs/<def>`, following `$ref`, properties, items and
    /// additionalProperties.
    pub fn schema_at(&self, def: &str, pointer: &str) -> Option<&Value> {
        let mut schema = self.resolve(self.def(def)?);
        for segment in crate::pointer::segments(pointer) {
            schema = if let Some(child) = schema.get("properties").and_then(|p| p.get(&segment)) {
                child
            } else if segment.parse::<usize>().is_ok() && schema.get("items").is_some() {
                &schema["items"]
            } else {
                schema
                    .get("additionalProperties")
                    .filter(|a| a.is_object())?
            };
            schema = self.resolve(schema);
        }
        Some(schema)
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => self.def(r.trim_start_matches("#/$defs/")).unwrap_or(schema),
            None => schema,
        }
    }

    fn property_names(&self, def: &str, pointer: &str) -> Vec<String> {
        self.schema_at(def, pointer)
            .and_then(|s| s.get("properties"))
            .and_then(Value::as_object)
            .map(|props| props.keys().cloned().collect())
            .unwrap_or_default()
    }
}

fn value_or_other(kind: &jsonschema::error::ValidationErrorKind) -> ViolationKind {
    use jsonschema::error::ValidationErrorKind as K;
    match kind {
        K::Type { .. }
        | K::Enum { .. }
        | K::Constant { .. }
        | K::Minimum { .. }
        | K::Maximum { .. }
        | K::ExclusiveMinimum { .. }
        | K::ExclusiveMaximum { .. }
        | K::MinLength { .. }
        | K::MaxLength { .. }
        | K::Pattern { .. }
        | K::Format { .. }
        | K::MultipleOf { .. }
        | K::MinItems { .. }
        | K::MaxItems { .. } => ViolationKind::Value,
        _ => ViolationKind::Other,
    }
}

fn unknown_key_message(key: &str, known: &[String]) -> String {
    let shown: String = key.chars().take(64).collect();
    match closest(key, known) {
        Some(best) => format!("unknown key `{shown}`; did you mean `{best}`?"),
        None if known.is_empty() => format!("unknown key `{shown}`; this object takes no keys"),
        None => format!(
            "unknown key `{shown}`; expected one of: {}",
            known.join(", ")
        ),
    }
}

/// The known key nearest to `key` by edit distance, if it is near enough
/// to be a plausible typo.
pub fn closest<'a>(key: &str, known: &'a [String]) -> Option<&'a str> {
    let lower = key.to_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&lower, &k.to_lowercase()), k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
