//! Command lines to argv and back, without a shell: quotes group words,
//! a backslash escapes the next character (outside single quotes), and
//! nothing else is special — `|`, `;`, `$(...)` and `>` are plain text.

/// Splits a command line into words.
pub fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => word.push(c),
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("a backslash ends the command".into()),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err("the command is empty".into());
    }
    Ok(words)
}

/// The one way an argv is shown and matched: words joined by spaces,
/// each quoted when it would otherwise split or change meaning.
pub fn display(argv: &[String]) -> String {
    argv.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

/// Whether an allowlist pattern matches an argv, word by word: each word
/// of the pattern matches one word of the argv (`*` inside a word matches
/// any characters of that word only), and a last word `**` matches any
/// further words. So `ls *` allows `ls -la` but not `ls -la /root`.
pub fn pattern_matches(pattern: &str, argv: &[String]) -> bool {
    let Ok(words) = split(pattern) else {
        return false;
    };
    let (words, rest_any) = match words.split_last() {
        Some((last, init)) if last == "**" => (init, true),
        _ => (&words[..], false),
    };
    let fits = if rest_any {
        argv.len() >= words.len()
    } else {
        argv.len() == words.len()
    };
    fits && words
        .iter()
        .zip(argv)
        .all(|(p, w)| crate::pattern::matches(p, w))
}

fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_alphanumeric() || "-_./=:,+@%^".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split(line).unwrap()
    }

    #[test]
    fn quotes_group_and_shell_syntax_stays_literal() {
        assert_eq!(words("git log --oneline"), ["git", "log", "--oneline"]);
        assert_eq!(
            words("  echo   'a b'  \"c d\" e\\ f "),
            ["echo", "a b", "c d", "e f"]
        );
        assert_eq!(
            words("echo hi; rm -rf /"),
            ["echo", "hi;", "rm", "-rf", "/"]
        );
        assert_eq!(
            words("echo $(id) | cat > x"),
            ["echo", "$(id)", "|", "cat", ">", "x"]
        );
        assert_eq!(words("echo ''"), ["echo", ""]);
        assert_eq!(words(r#"echo "say \"hi\"""#), ["echo", r#"say "hi""#]);
        assert!(split("echo 'open").is_err());
        assert!(split("   ").is_err());
    }

    #[test]
    fn allowlist_patterns_match_word_by_word() {
        let m = |p: &str, line: &str| pattern_matches(p, &words(line));
        assert!(m("ls *", "ls -la"));
        assert!(!m("ls *", "ls -la /root"));
        assert!(!m("ls *", "ls"));
        assert!(m("git status", "git status"));
        assert!(!m("git status", "git status --short"));
        assert!(m("git log **", "git log"));
        assert!(m("git log **", "git log --oneline -5"));
        assert!(!m("git *", "git -c alias.x=!sh x"));
        assert!(m("cat /var/log/*.log", "cat /var/log/syslog.log"));
        assert!(!m("echo *", "/bin/echo hi"));
    }

    #[test]
    fn display_round_trips_through_split() {
        for line in ["git log", "echo 'a b' \"it's\" '' x;y $HOME"] {
            let argv = words(line);
            assert_eq!(words(&display(&argv)), argv, "{line}");
        }
        assert_eq!(display(&words("ls -la /tmp")), "ls -la /tmp");
        assert_eq!(display(&words("echo 'a b'")), "echo 'a b'");
    }
}
