//! Allowlist patterns: `*` matches any run of characters (including
//! none); everything else matches itself.

/// Whether `text` matches `pattern` as a whole.
pub fn matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = parts.collect();
    let Some((last, middle)) = pieces.split_last() else {
        // No `*`: the whole text must be the pattern.
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Whether any of `patterns` matches `text`.
pub fn any_matches<'a>(patterns: impl IntoIterator<Item = &'a str>, text: &str) -> bool {
    patterns.into_iter().any(|p| matches(p, text))
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_match_any_run_and_the_rest_matches_itself() {
        assert!(matches("*", ""));
        assert!(matches("*", "system.run"));
        assert!(matches("system.*", "system.run"));
        assert!(!matches("system.*", "camera.snap"));
        assert!(matches("system.run", "system.run"));
        assert!(!matches("system.run", "system.run2"));
        assert!(!matches("system.run", "xsystem.run"));
        assert!(matches("git *", "git status --short"));
        assert!(!matches("git *", "gitk"));
        assert!(matches("*.snap", "camera.snap"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXcYYb"));
        assert!(matches("ab*b", "abb"));
        assert!(!matches("ab*ab", "ab"));
    }
}
