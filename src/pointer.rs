//! JSON pointers (RFC 6901), the one way code names a place in a config
//! or a params object: `~` is written `~0` and `/` is written `~1` in a
//! segment, so a key such as an agent id may hold either.

/// A key as one pointer segment.
pub fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// `parent` extended by one key.
pub fn child(parent: &str, key: &str) -> String {
    format!("{parent}/{}", escape(key))
}

/// The keys a pointer names, unescaped; none for the root (`""`).
pub fn segments(pointer: &str) -> impl Iterator<Item = String> + '_ {
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_with_slashes_and_tildes_round_trip() {
        let pointer = child(&child("", "agents"), "a/b~c");
        assert_eq!(pointer, "/agents/a~1b~0c");
        assert_eq!(segments(&pointer).collect::<Vec<_>>(), ["agents", "a/b~c"]);
        assert_eq!(segments("").count(), 0);
    }
}
