//! The heartbeat's rules, apart from any clock or I/O: its interval, its
//! active hours, its prompt, and what a reply means.

use chrono::{TimeZone, Timelike};
use chrono_tz::Tz;
use std::time::Duration;

/// The prompt when the agent's config names none.
pub const DEFAULT_PROMPT: &str =
    "This is a heartbeat: a periodic check-in, not a message from the owner. \
If something needs the owner's attention now, write the message to send them. \
If nothing does, reply with exactly {token} and nothing else.";

/// The most of HEARTBEAT.md put into a prompt.
pub const MAX_CHECKLIST_BYTES: usize = 64 * 1024;

/// `30m` → 30 minutes; the schema's pattern admits only `<n>(s|m|h)`.
pub fn interval(every: &str) -> Option<Duration> {
    let unit = every.chars().last()?;
    let n: u64 = every[..every.len() - 1].parse().ok()?;
    let secs = match unit {
        's' => n,
        'm' => n * 60,
        'h' => n * 3600,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// A daily window in a time zone.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Minutes after midnight; `end` may be 1440 (24:00).
    pub start: u32,
    pub end: u32,
    pub tz: Tz,
}

impl Window {
    /// From `HH:MM` strings (as the schema's patterns admit) and a zone.
    pub fn new(start: &str, end: &str, tz: Tz) -> Option<Window> {
        Some(Window {
            start: minutes(start)?,
            end: minutes(end)?,
            tz,
        })
    }

    /// Whether `at_ms` falls in the window. An end before the start spans
    /// midnight; equal ends mean all day.
    pub fn contains(&self, at_ms: u64) -> bool {
        let Some(local) = self.tz.timestamp_millis_opt(at_ms as i64).single() else {
            return true;
        };
        let now = local.hour() * 60 + local.minute();
        match self.start.cmp(&self.end) {
            std::cmp::Ordering::Less => self.start <= now && now < self.end,
            std::cmp::Ordering::Greater => now >= self.start || now < self.end,
            std::cmp::Ordering::Equal => true,
        }
    }

    pub fn describe(&self) -> String {
        let hm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
        format!("{}-{} {}", hm(self.start), hm(self.end), self.tz.name())
    }
}

fn minutes(hm: &str) -> Option<u32> {
    let (h, m) = hm.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 1440).then_some(h * 60 + m)
}

/// The turn's message: the configured prompt, else the default one with
/// the checklist when there is one.
pub fn prompt(configured: Option<&str>, token: &str, checklist: Option<&str>) -> String {
    if let Some(prompt) = configured {
        return prompt.to_string();
    }
    let mut prompt = DEFAULT_PROMPT.replace("{token}", token);
    if let Some(checklist) = checklist {
        prompt.push_str("\n\nFollow this checklist (HEARTBEAT.md):\n\n");
        prompt.push_str(checklist.trim());
    }
    prompt
}

/// Whether a checklist says nothing: only blank lines and headings.
pub fn checklist_is_empty(checklist: &str) -> bool {
    checklist
        .lines()
        .map(str::trim)
        .all(|line| line.is_empty() || line.starts_with('#'))
}

/// What a heartbeat's reply means.
#[derive(Debug, PartialEq)]
pub enum Meaning {
    Empty,
    /// Nothing to report: the token, with at most `ack_max` other characters.
    Ack,
    /// Something to deliver (without the token).
    Report(String),
}

pub fn meaning(reply: &str, token: &str, ack_max: usize) -> Meaning {
    let reply = reply.trim();
    if reply.is_empty() {
        return Meaning::Empty;
    }
    let core = reply.trim_matches(|c: char| c.is_whitespace() || "*_`".contains(c));
    let Some(rest) = core
        .strip_prefix(token)
        .or_else(|| core.strip_suffix(token))
    else {
        return Meaning::Report(reply.to_string());
    };
    // Punctuation around the token does not count against ack_max...
    let remark = rest.trim_matches(|c: char| c.is_whitespace() || ".,;:!-*_`".contains(c));
    if remark.chars().count() <= ack_max {
        return Meaning::Ack;
    }
    // ...but a report is delivered as written, less the token.
    Meaning::Report(rest.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_a_number_and_a_unit() {
        assert_eq!(interval("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(interval("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(interval("1s"), Some(Duration::from_secs(1)));
        assert_eq!(interval("0m"), None);
        assert_eq!(interval("5d"), None);
    }

    #[test]
    fn windows_hold_within_a_day_and_across_midnight() {
        let utc = |h: u64, m: u64| (h * 3600 + m * 60) * 1000 + 20_103 * 86_400_000;
        let day = Window::new("08:00", "22:00", Tz::UTC).unwrap();
        assert!(!day.contains(utc(7, 59)));
        assert!(day.contains(utc(8, 0)));
        assert!(day.contains(utc(21, 59)));
        assert!(!day.contains(utc(22, 0)));
        let night = Window::new("22:00", "06:00", Tz::UTC).unwrap();
        assert!(night.contains(utc(23, 0)));
        assert!(night.contains(utc(5, 59)));
        assert!(!night.contains(utc(12, 0)));
        let to_midnight = Window::new("18:00", "24:00", Tz::UTC).unwrap();
        assert!(to_midnight.contains(utc(23, 59)));
        assert!(!to_midnight.contains(utc(0, 0)));
        // 09:00 in Berlin in January is 08:00 UTC.
        let berlin = Window::new("09:00", "10:00", "Europe/Berlin".parse().unwrap()).unwrap();
        assert!(berlin.contains(utc(8, 30)));
        assert!(!berlin.contains(utc(9, 30)));
        assert_eq!(berlin.describe(), "09:00-10:00 Europe/Berlin");
    }

    #[test]
    fn a_reply_of_the_token_is_an_acknowledgement() {
        let token = "HEARTBEAT_OK";
        assert_eq!(meaning("  ", token, 300), Meaning::Empty);
        assert_eq!(meaning("HEARTBEAT_OK", token, 0), Meaning::Ack);
        assert_eq!(meaning("**HEARTBEAT_OK**", token, 0), Meaning::Ack);
        assert_eq!(meaning("HEARTBEAT_OK.", token, 0), Meaning::Ack);
        assert_eq!(meaning("All quiet. HEARTBEAT_OK", token, 300), Meaning::Ack);
        assert_eq!(
            meaning("All quiet. HEARTBEAT_OK", token, 5),
            Meaning::Report("All quiet.".into())
        );
        assert_eq!(
            meaning("Disk full! HEARTBEAT_OK", token, 0),
            Meaning::Report("Disk full!".into())
        );
        assert_eq!(
            meaning("Your meeting moved to 11:00.", token, 300),
            Meaning::Report("Your meeting moved to 11:00.".into())
        );
    }

    #[test]
    fn the_default_prompt_carries_the_token_and_the_checklist() {
        let p = prompt(None, "HB_OK", Some("- check mail\n"));
        assert!(p.contains("exactly HB_OK"));
        assert!(p.ends_with("- check mail"));
        assert_eq!(prompt(Some("custom"), "HB_OK", Some("x")), "custom");
        assert!(checklist_is_empty("# Heartbeat\n\n## Tasks\n"));
        assert!(!checklist_is_empty("# Heartbeat\n- check mail"));
    }
}
