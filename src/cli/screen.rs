//! What the terminal chat writes: the streamed reply as it comes, and
//! short dimmed lines for everything around it. Colours only on a
//! terminal, and not when NO_COLOR is set.

use std::io::{IsTerminal, Write};

const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const RESET: &str = "\x1b[0m";

/// Longest argument summary shown on a tool line.
const ARGS_SUMMARY_CHARS: usize = 60;

pub struct Screen {
    color: bool,
    /// Whether the cursor is at the start of a line, so a status line
    /// printed mid-reply starts on a line of its own.
    at_line_start: bool,
    /// Whether a prompt is shown when the chat waits for input.
    prompts: bool,
    /// One message, its reply on stdout: everything else goes to stderr,
    /// so the reply can be piped on as it is.
    one_shot: bool,
}

impl Screen {
    pub fn new(prompts: bool, one_shot: bool) -> Screen {
        let terminal = if one_shot {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        Screen {
            color: terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            at_line_start: true,
            prompts,
            one_shot,
        }
    }

    pub fn one_shot(&self) -> bool {
        self.one_shot
    }

    /// A piece of the reply, written as soon as it arrives.
    pub fn text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        self.at_line_start = text.ends_with('\n');
    }

    /// Ends the reply's line, if it is open.
    pub fn end_line(&mut self) {
        if !self.at_line_start {
            self.text("\n");
        }
    }

    /// A dimmed status line: thinking, tools, notices.
    pub fn status(&mut self, line: &str) {
        self.styled(DIM, line);
    }

    pub fn warn(&mut self, line: &str) {
        self.styled(YELLOW, line);
    }

    pub fn error(&mut self, line: &str) {
        self.styled(RED, line);
    }

    pub fn plain(&mut self, line: &str) {
        self.end_line();
        self.text(&format!("{line}\n"));
    }

    /// Shows that the chat waits for a line (on a terminal only).
    pub fn prompt(&mut self) {
        if self.prompts {
            self.end_line();
            let prompt = if self.color {
                format!("{BOLD}›{RESET} ")
            } else {
                "› ".to_string()
            };
            self.text(&prompt);
            // The prompt does not open a reply line.
            self.at_line_start = true;
        }
    }

    fn styled(&mut self, style: &str, line: &str) {
        let line = if self.color {
            format!("{style}{line}{RESET}\n")
        } else {
            format!("{line}\n")
        };
        if self.one_shot {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(line.as_bytes());
            let _ = err.flush();
        } else {
            self.end_line();
            self.text(&line);
        }
    }
}

/// `name(args)` with the arguments shortened to one line.
pub fn tool_call(name: &str, arguments: &serde_json::Value) -> String {
    let args = match arguments {
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}: {s:?}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    format!("{name}({})", shorten(&args, ARGS_SUMMARY_CHARS))
}

/// At most `max` characters of `text` on one line, with … when cut.
pub fn shorten(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_calls_are_one_short_line() {
        let args = serde_json::json!({"command": "ls -la\n/tmp", "limit": 5});
        assert_eq!(
            tool_call("exec", &args),
            "exec(command: \"ls -la\\n/tmp\", limit: 5)"
        );
        let long = serde_json::json!({"text": "x".repeat(200)});
        let line = tool_call("t", &long);
        assert!(line.chars().count() <= ARGS_SUMMARY_CHARS + 3, "{line}");
        assert!(line.ends_with("…)"), "{line}");
    }
}
