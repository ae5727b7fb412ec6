//! Cron schedules: expression and time zone parsing (with their error
//! messages) and the next runs after a given time.
//!
//! Input: `<expr>|<tz>|<after>`; an empty or missing tz means the default
//! (UTC); `after` is milliseconds since the epoch or an RFC 3339 time
//! (parsed with `parse_time`), else 2026-01-01T00:00:00Z; at most
//! i64::MAX.
#![no_main]

use clawgate::cron::schedule::{parse_expr, parse_time, parse_tz};
use clawgate::fuzzing::cron_runs;
use libfuzzer_sys::fuzz_target;

const DEFAULT_AFTER_MS: u64 = 1_767_225_600_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut fields = text.splitn(3, '|');
    let expr = fields.next().unwrap_or("");
    let tz = fields.next().filter(|tz| !tz.is_empty());
    let after = fields.next().unwrap_or("");
    let after_ms = after
        .parse::<u64>()
        .ok()
        .or_else(|| parse_time(after).ok())
        .unwrap_or(DEFAULT_AFTER_MS);
    // The gateway passes clock readings; past i64::MAX milliseconds
    // `next_after` reads the time as negative, which no caller can hit.
    if after_ms > i64::MAX as u64 {
        return;
    }

    // Planning stops at a bad expression; the zone is parsed on its own
    // then, so both error paths are reached with any input.
    if let (Err(_), Some(tz)) = (parse_expr(expr), tz) {
        let _ = std::hint::black_box(parse_tz(tz));
    }

    // A few successive runs, each strictly after the one before.
    let Ok(runs) = cron_runs(expr, tz, after_ms, 3) else {
        return;
    };
    assert!(
        !runs.is_empty(),
        "a planned schedule has no next run ({expr:?} in {tz:?})"
    );
    let mut t = after_ms;
    for next in runs {
        assert!(
            next > t,
            "next run {next} is not after {t} ({expr:?} in {tz:?})"
        );
        t = next;
    }
});
