//! Which config keys differ between two effective configurations.

use serde_json::Value;

/// JSON pointers of the leaves (and arrays, as a whole) that differ.
pub fn changed_pointers(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(old, new, String::new(), &mut out);
    out
}

fn walk(old: &Value, new: &Value, pointer: String, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let child = crate::pointer::child(&pointer, key);
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => walk(x, y, child, out),
                    (Some(x), None) => walk(x, &Value::Null, child, out),
                    (None, Some(y)) => walk(&Value::Null, y, child, out),
                    (None, None) => {}
                }
            }
        }
        (Value::Object(a), Value::Null) | (Value::Null, Value::Object(a)) => {
            for (key, child) in a {
                walk(child, &Value::Null, format!("{pointer}/{key}"), out);
            }
        }
        (a, b) if a != b => out.push(pointer),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_changed_leaves() {
        let old =
            json!({"gateway": {"port": 1, "auth": {"mode": "none"}, "allowedOrigins": ["a"]}});
        let new = json!({"gateway": {"port": 2, "auth": {"mode": "none", "token": "t"}, "allowedOrigins": ["a", "b"]}});
        assert_eq!(
            changed_pointers(&old, &new),
            vec![
                "/gateway/allowedOrigins",
                "/gateway/auth/token",
                "/gateway/port"
            ]
        );
        assert!(changed_pointers(&old, &old).is_empty());
    }
}
