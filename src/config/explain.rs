//! A schema violation in a config value, in words: what the schema expects
//! at that key, what was found, and the likely fix.

use crate::protocol::closest;
use serde_json::Value;

/// Longest quoted string shown as "found".
const SHOWN_CHARS: usize = 40;

/// What the schema at a key accepts, e.g. `an integer from 0 to 65535` or
/// `one of "loopback", "lan"`. None for schemas with nothing to say.
pub fn expected(schema: &Value) -> Option<String> {
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        let shown: Vec<String> = options.iter().map(Value::to_string).collect();
        return Some(format!("one of {}", shown.join(", ")));
    }
    if let Some(constant) = schema.get("const") {
        return Some(constant.to_string());
    }
    for branches in ["oneOf", "anyOf"] {
        if let Some(list) = schema.get(branches).and_then(Value::as_array) {
            let each: Vec<String> = list.iter().filter_map(expected).collect();
            return (!each.is_empty()).then(|| each.join(", or "));
        }
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    let each: Vec<String> = types.iter().map(|t| one_type(t, schema)).collect();
    Some(each.join(" or "))
}

fn one_type(kind: &str, schema: &Value) -> String {
    match kind {
        "integer" => format!("an integer{}", range(schema)),
        "number" => format!("a number{}", range(schema)),
        "boolean" => "true or false".to_string(),
        "null" => "nothing (null)".to_string(),
        "string" => format!("a string{}", string_rules(schema)),
        "array" => {
            let of = schema
                .get("items")
                .and_then(|items| items.get("type"))
                .and_then(Value::as_str)
                .map(|t| format!(" of {}s", noun(t)))
                .unwrap_or_default();
            format!(
                "a list{of}{}",
                count(schema, "minItems", "maxItems", "items")
            )
        }
        "object" => "a table".to_string(),
        other => other.to_string(),
    }
}

fn noun(json_type: &str) -> &str {
    match json_type {
        "object" => "table",
        "boolean" => "boolean",
        other => other,
    }
}

fn range(schema: &Value) -> String {
    let bound = |key: &str| schema.get(key).filter(|v| v.is_number());
    match (
        bound("minimum"),
        bound("maximum"),
        bound("exclusiveMinimum"),
        bound("exclusiveMaximum"),
    ) {
        (Some(min), Some(max), _, _) => format!(" from {min} to {max}"),
        (Some(min), None, _, _) => format!(" of at least {min}"),
        (None, Some(max), _, _) => format!(" of at most {max}"),
        (_, _, Some(min), _) => format!(" greater than {min}"),
        (_, _, _, Some(max)) => format!(" less than {max}"),
        _ => String::new(),
    }
}

fn string_rules(schema: &Value) -> String {
    let mut out = count(schema, "minLength", "maxLength", "characters");
    if let Some(format) = schema.get("format").and_then(Value::as_str) {
        out.push_str(&format!(" in {format} format"));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        out.push_str(&format!(" matching {pattern}"));
    }
    out
}

fn count(schema: &Value, min_key: &str, max_key: &str, unit: &str) -> String {
    let min = schema.get(min_key).and_then(Value::as_u64);
    let max = schema.get(max_key).and_then(Value::as_u64);
    match (min, max) {
        (Some(1), None) if unit == "characters" => " that is not empty".to_string(),
        (Some(min), Some(max)) => format!(" of {min} to {max} {unit}"),
        (Some(min), None) => format!(" of at least {min} {unit}"),
        (None, Some(max)) => format!(" of at most {max} {unit}"),
        (None, None) => String::new(),
    }
}

/// Whether a bad value may be quoted: strings only where the schema
/// takes a string (a string anywhere else may be a credential pasted into
/// the wrong key); other values always.
pub fn may_show(schema: Option<&Value>, value: &Value) -> bool {
    let takes_string = schema.is_some_and(|s| {
        s.get("enum").is_some()
            || match s.get("type") {
                Some(Value::String(t)) => t == "string",
                Some(Value::Array(list)) => list.iter().any(|t| t == "string"),
                _ => false,
            }
    });
    !value.is_string() || takes_string
}

/// A value by its kind only: `a string`, `a list`.
pub fn kind_of(value: &Value) -> String {
    match value {
        Value::String(_) => "a string".to_string(),
        Value::Array(_) => "a list".to_string(),
        _ => found(value),
    }
}

/// A value as the message shows it: `the string "18789"`, `the number -1`,
/// `a list of 3 items`.
pub fn found(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() > SHOWN_CHARS => {
            let head: String = s.chars().take(SHOWN_CHARS).collect();
            format!("the string {:?}…", head)
        }
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(items) if items.len() == 1 => "a list of 1 item".to_string(),
        Value::Array(items) => format!("a list of {} items", items.len()),
        Value::Object(_) => "a table".to_string(),
    }
}

/// The fix most likely meant: the nearest allowed word, or the value
/// without the quotes that made it a string.
pub fn help(schema: &Value, value: &Value) -> Option<String> {
    if let (Some(options), Some(given)) =
        (schema.get("enum").and_then(Value::as_array), value.as_str())
    {
        let words: Vec<String> = options
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        return closest(given, &words).map(|best| format!("did you mean \"{best}\"?"));
    }
    let wants = |t: &str| match schema.get("type") {
        Some(Value::String(s)) => s == t,
        Some(Value::Array(list)) => list.iter().any(|x| x == t),
        _ => false,
    };
    let text = value.as_str()?.trim();
    let unquoted: Value = serde_json::from_str(text).ok()?;
    let fits = match &unquoted {
        Value::Number(n) => wants("number") || (wants("integer") && (n.is_i64() || n.is_u64())),
        Value::Bool(_) => wants("boolean"),
        Value::Array(_) => wants("array"),
        _ => false,
    };
    fits.then(|| format!("write it without quotes: {unquoted}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn says_what_a_schema_expects() {
        let port = json!({"type": "integer", "minimum": 0, "maximum": 65535});
        assert_eq!(
            expected(&port).as_deref(),
            Some("an integer from 0 to 65535")
        );
        let bind = json!({"type": "string", "enum": ["loopback", "lan"]});
        assert_eq!(
            expected(&bind).as_deref(),
            Some(r#"one of "loopback", "lan""#)
        );
        let hash = json!({"type": ["string", "null"], "minLength": 1});
        assert_eq!(
            expected(&hash).as_deref(),
            Some("a string that is not empty or nothing (null)")
        );
        let origins = json!({"type": "array", "items": {"type": "string"}});
        assert_eq!(expected(&origins).as_deref(), Some("a list of strings"));
    }

    #[test]
    fn suggests_the_fix() {
        let port = json!({"type": "integer"});
        assert_eq!(
            help(&port, &json!("18789")).as_deref(),
            Some("write it without quotes: 18789")
        );
        assert_eq!(help(&port, &json!("eighteen")), None);
        let bind = json!({"type": "string", "enum": ["loopback", "lan"]});
        assert_eq!(
            help(&bind, &json!("lann")).as_deref(),
            Some(r#"did you mean "lan"?"#)
        );
        assert_eq!(found(&json!("x".repeat(50))).chars().count(), 54);
    }
}
