//! `Patch<T>`: a field of a patch that is left out (keep), null (clear),
//! or a value (set).
//!
//! serde cannot tell a missing key from a null one once a field is
//! optional, and typify makes such a field default to `null`. So
//! [`mark_cleared`] rewrites an explicit null in a `Patch` field to a
//! marker before decoding; `null` itself then means "left out".

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

#[derive(Clone, Debug, Default, PartialEq)]
pub enum Patch<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

const CLEAR_MARKER: &str = "$clear";

impl<T> Patch<T> {
    /// `None` to keep; `Some(None)` to clear; `Some(Some(v))` to set.
    pub fn into_change(self) -> Option<Option<T>> {
        match self {
            Patch::Keep => None,
            Patch::Clear => Some(None),
            Patch::Set(v) => Some(Some(v)),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire<T> {
            Marker {
                #[serde(rename = "$clear")]
                _clear: bool,
            },
            Value(T),
            Nothing(()),
        }
        Ok(match Wire::<T>::deserialize(d)? {
            Wire::Marker { .. } => Patch::Clear,
            Wire::Value(v) => Patch::Set(v),
            Wire::Nothing(()) => Patch::Keep,
        })
    }
}

impl<T: Serialize> Serialize for Patch<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Patch::Set(v) => v.serialize(s),
            Patch::Keep | Patch::Clear => s.serialize_none(),
        }
    }
}

/// Rewrites explicit nulls in the `Patch` fields of `params` (an instance
/// of `$defs/<def>`) to the clear marker.
pub fn mark_cleared(def: &str, params: &mut Value) {
    let Some(props) = super::Schemas::get()
        .def(def)
        .and_then(|d| d.get("properties"))
        .and_then(Value::as_object)
    else {
        return;
    };
    let Some(map) = params.as_object_mut() else {
        return;
    };
    for (key, schema) in props {
        let is_patch = schema.get("$ref").and_then(Value::as_str) == Some("#/$defs/Patch");
        if is_patch && map.get(key).is_some_and(Value::is_null) {
            map.insert(key.clone(), serde_json::json!({ CLEAR_MARKER: true }));
        }
    }
}
