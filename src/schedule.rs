//! When a job runs: its schedule turned into a plan that answers "next run
//! after t". Every computation takes the time as an argument, so tests
//! drive the clock.
//!
//! Daylight saving (croner's rules, which these tests pin down): a fixed
//! local time that a spring-forward change skips runs at the first instant
//! after the change (02:30 Europe/Berlin on the last Sunday of March runs
//! at 03:00 CEST); a fixed local time that a fall-back change repeats runs
//! once, at its first occurrence. Interval patterns (`*/15 * * * *`) run on
//! every real instant they match.

use crate::protocol::types::CronSchedule;
use chrono::{DateTime, TimeZone};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// A schedule ready to compute run times.
#[derive(Clone, Debug)]
pub enum Plan {
    Cron { cron: Box<Cron>, tz: Tz },
    Every { every_ms: u64, anchor_ms: u64 },
    At { at_ms: u64 },
}

/// Why a schedule is unusable: the field inside the schedule (a JSON
/// pointer such as `/expr`) and the reason.
#[derive(Clone, Debug, PartialEq)]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

impl Plan {
    /// `default_tz` is cron.timezone; `created_at_ms` anchors an `every`
    /// schedule without its own anchor. `now_ms` is used to check that a
    /// cron expression matches some future time at all.
    pub fn new(
        schedule: &CronSchedule,
        default_tz: Option<&str>,
        created_at_ms: u64,
        now_ms: u64,
    ) -> Result<Plan, Invalid> {
        match schedule {
            CronSchedule::Cron { expr, tz } => {
                let cron = parse_expr(expr).map_err(|message| Invalid {
                    field: "/expr",
                    message,
                })?;
                let tz = match tz.as_deref().map(|s| s.as_str()).or(default_tz) {
                    Some(name) => parse_tz(name).map_err(|message| Invalid {
                        field: "/tz",
                        message,
                    })?,
                    None => Tz::UTC,
                };
                let plan = Plan::Cron {
                    cron: Box::new(cron),
                    tz,
                };
                if plan.next_after(now_ms).is_none() {
                    return Err(Invalid {
                        field: "/expr",
                        message: format!("{:?} never matches a future time", expr.as_str()),
                    });
                }
                Ok(plan)
            }
            CronSchedule::Every {
                every_ms,
                anchor_ms,
            } => Ok(Plan::Every {
                every_ms: (*every_ms).max(1) as u64,
                anchor_ms: anchor_ms.unwrap_or(created_at_ms),
            }),
            CronSchedule::At { at } => {
                parse_time(at)
                    .map(|at_ms| Plan::At { at_ms })
                    .map_err(|message| Invalid {
                        field: "/at",
                        message,
                    })
            }
        }
    }

    /// The first run time strictly after `after_ms`; None when there is none.
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        match self {
            Plan::Cron { cron, tz } => {
                let after = tz.timestamp_millis_opt(after_ms as i64).single()?;
                let next: DateTime<Tz> = cron.find_next_occurrence(&after, false).ok()?;
                u64::try_from(next.timestamp_millis()).ok()
            }
            Plan::Every {
                every_ms,
                anchor_ms,
            } => {
                if after_ms < *anchor_ms {
                    return Some(*anchor_ms);
                }
                let periods = (after_ms - anchor_ms) / every_ms + 1;
                anchor_ms.checked_add(periods.checked_mul(*every_ms)?)
            }
            Plan::At { at_ms } => (*at_ms > after_ms).then_some(*at_ms),
        }
    }

    /// The first run of a job scheduled at `now_ms`: a one-shot whose time
    /// has already passed runs at once.
    pub fn first_run(&self, now_ms: u64) -> Option<u64> {
        match self {
            Plan::At { at_ms } => Some(*at_ms),
            _ => self.next_after(now_ms),
        }
    }

    pub fn is_one_shot(&self) -> bool {
        matches!(self, Plan::At { .. })
    }
}

/// Parses a crontab expression of 5 fields, or 6 with seconds first.
pub fn parse_expr(expr: &str) -> Result<Cron, String> {
    let fields = expr.split_whitespace().count();
    if !expr.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
        return Err(format!(
            "{expr:?} has {fields} fields; a cron expression has 5 (minute hour day-of-month month day-of-week) or 6 (seconds first)"
        ));
    }
    // croner reads a lone `,` as a field that matches nothing, and then
    // searches for a next run forever.
    if let Some((name, field)) = field_names(expr).find(|(_, f)| f.split(',').any(str::is_empty)) {
        return Err(format!(
            "invalid cron expression {expr:?}: the {name} field {field:?} has an empty item in its list"
        ));
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build();
    parser.parse(expr).map_err(|e| {
        let reason = e.to_string();
        match bad_field(&parser, expr) {
            Some((name, value, allowed)) => format!(
                "invalid cron expression {expr:?}: the {name} field {value:?} is not valid ({allowed}): {reason}"
            ),
            None => format!("invalid cron expression {expr:?}: {reason}"),
        }
    })
}

/// Each field's name and the values it allows, seconds first.
const FIELDS: [(&str, &str); 6] = [
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31, L, W"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 or SUN-SAT, #, L"),
];

/// The fields of a 5- or 6-field expression with their names; nothing
/// for an `@` alias.
fn field_names(expr: &str) -> impl Iterator<Item = (&'static str, &str)> {
    let fields: Vec<&str> = if expr.trim_start().starts_with('@') {
        Vec::new()
    } else {
        expr.split_whitespace().collect()
    };
    let names = &FIELDS[FIELDS.len().saturating_sub(fields.len())..];
    names.iter().map(|(name, _)| *name).zip(fields)
}

/// The one field whose replacement by `*` makes the expression parse:
/// its name, its text and the values it allows.
fn bad_field(parser: &CronParser, expr: &str) -> Option<(&'static str, String, &'static str)> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    // More than 6 fields gets here only after a `@`: no field to name.
    let names = &FIELDS[FIELDS.len().checked_sub(fields.len())?..];
    (0..fields.len()).find_map(|i| {
        let mut patched = fields.clone();
        patched[i] = "*";
        parser
            .parse(&patched.join(" "))
            .is_ok()
            .then(|| (names[i].0, fields[i].to_string(), names[i].1))
    })
}

/// Parses an IANA time zone name, suggesting the closest one on a typo.
pub fn parse_tz(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        let known: Vec<String> = chrono_tz::TZ_VARIANTS
            .iter()
            .map(|tz| tz.name().to_string())
            .collect();
        let hint = crate::protocol::closest(name, &known)
            .map(|best| format!("; did you mean {best}?"))
            .unwrap_or_else(|| "; use an IANA name such as Europe/Berlin or UTC".to_string());
        format!("unknown time zone {name:?}{hint}")
    })
}

/// Parses an RFC 3339 time to milliseconds since the Unix epoch.
pub fn parse_time(text: &str) -> Result<u64, String> {
    let time = DateTime::parse_from_rfc3339(text).map_err(|e| {
        format!("{text:?} is not an RFC 3339 time such as 2026-12-24T18:00:00+01:00: {e}")
    })?;
    u64::try_from(time.timestamp_millis())
        .map_err(|_| format!("{text:?} is before 1970, when no job can run"))
}

/// `ms` as an RFC 3339 time in the zone `tz` (UTC when None or unknown).
pub fn local_time(ms: u64, tz: Option<&str>) -> String {
    let tz = tz
        .and_then(|name| name.parse::<Tz>().ok())
        .unwrap_or(Tz::UTC);
    match tz.timestamp_millis_opt(ms as i64).single() {
        Some(time) => time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        None => ms.to_string(),
    }
}

/// How long a job that failed `consecutive_errors` times in a row waits
/// at least before its next run: 30 s, 1 min, 5 min, 15 min, then 60 min.
pub fn backoff_ms(consecutive_errors: u64) -> u64 {
    const STEPS_MS: [u64; 5] = [30_000, 60_000, 300_000, 900_000, 3_600_000];
    match consecutive_errors {
        0 => 0,
        n => STEPS_MS[(n as usize - 1).min(STEPS_MS.len() - 1)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn cron(expr: &str, tz: &str) -> Plan {
        let schedule = CronSchedule::Cron {
            expr: expr.parse().unwrap(),
            tz: Some(tz.parse().unwrap()),
        };
        Plan::new(&schedule, None, 0, ms_utc("2024-01-01T00:00:00Z")).unwrap()
    }

    fn ms_utc(rfc3339: &str) -> u64 {
        parse_time(rfc3339).unwrap()
    }

    /// The local wall-clock time of `ms` in `tz`, with its offset.
    fn local(ms: u64, tz: &str) -> String {
        let tz: Tz = tz.parse().unwrap();
        tz.timestamp_millis_opt(ms as i64)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S %:z")
            .to_string()
    }

    /// The runs after `start` (local time in `tz`), `count` of them.
    fn runs(plan: &Plan, tz: &str, start: &str, count: usize) -> Vec<String> {
        let tz_: Tz = tz.parse().unwrap();
        let naive = chrono::NaiveDateTime::parse_from_str(start, "%Y-%m-%d %H:%M").unwrap();
        let mut t = tz_
            .from_local_datetime(&naive)
            .earliest()
            .unwrap()
            .timestamp_millis() as u64;
        let mut out = Vec::new();
        for _ in 0..count {
            t = plan.next_after(t).expect("a next run");
            out.push(local(t, tz));
        }
        out
    }

    #[test]
    fn spring_forward_in_berlin_runs_a_skipped_time_once_at_three() {
        // 2026-03-29: clocks go from 02:00 CET to 03:00 CEST.
        let plan = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            runs(&plan, "Europe/Berlin", "2026-03-27 12:00", 4),
            [
                "2026-03-28 02:30:00 +01:00",
                "2026-03-29 03:00:00 +02:00",
                "2026-03-30 02:30:00 +02:00",
                "2026-03-31 02:30:00 +02:00",
            ]
        );
    }

    #[test]
    fn fall_back_in_berlin_runs_a_repeated_time_once() {
        // 2026-10-25: clocks go from 03:00 CEST back to 02:00 CET.
        let plan = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            runs(&plan, "Europe/Berlin", "2026-10-24 12:00", 3),
            [
                "2026-10-25 02:30:00 +02:00",
                "2026-10-26 02:30:00 +01:00",
                "2026-10-27 02:30:00 +01:00",
            ]
        );
    }

    #[test]
    fn a_weekday_job_stays_at_eight_local_across_both_changes() {
        let plan = cron("0 8 * * 1-5", "Europe/Berlin");
        let spring = runs(&plan, "Europe/Berlin", "2026-03-26 09:00", 3);
        assert_eq!(
            spring,
            [
                "2026-03-27 08:00:00 +01:00",
                "2026-03-30 08:00:00 +02:00",
                "2026-03-31 08:00:00 +02:00",
            ]
        );
        let autumn = runs(&plan, "Europe/Berlin", "2026-10-23 09:00", 2);
        assert_eq!(
            autumn,
            ["2026-10-26 08:00:00 +01:00", "2026-10-27 08:00:00 +01:00"]
        );
        // The UTC instant moves by the hour the clocks moved.
        let before = plan.next_after(ms_utc("2026-03-27T00:00:00Z")).unwrap();
        let after = plan.next_after(ms_utc("2026-03-30T00:00:00Z")).unwrap();
        assert_eq!(local(before, "UTC"), "2026-03-27 07:00:00 +00:00");
        assert_eq!(local(after, "UTC"), "2026-03-30 06:00:00 +00:00");
    }

    #[test]
    fn new_york_changes_on_its_own_dates() {
        // 2026-03-08 02:00 EST → 03:00 EDT; 2026-11-01 02:00 EDT → 01:00 EST.
        let plan = cron("30 2 * * *", "America/New_York");
        assert_eq!(
            runs(&plan, "America/New_York", "2026-03-07 12:00", 2),
            ["2026-03-08 03:00:00 -04:00", "2026-03-09 02:30:00 -04:00"]
        );
        let plan = cron("30 1 * * *", "America/New_York");
        assert_eq!(
            runs(&plan, "America/New_York", "2026-10-31 12:00", 2),
            ["2026-11-01 01:30:00 -04:00", "2026-11-02 01:30:00 -05:00"]
        );
        // Berlin has not changed yet on New York's spring day.
        assert_eq!(
            runs(
                &cron("30 2 * * *", "Europe/Berlin"),
                "Europe/Berlin",
                "2026-03-07 12:00",
                2
            ),
            ["2026-03-08 02:30:00 +01:00", "2026-03-09 02:30:00 +01:00"]
        );
    }

    #[test]
    fn an_interval_pattern_runs_on_every_real_instant_across_fall_back() {
        // Every 30 minutes through the repeated hour: 01:00–01:30 twice.
        let plan = cron("*/30 * * * *", "America/New_York");
        assert_eq!(
            runs(&plan, "America/New_York", "2026-11-01 00:45", 5),
            [
                "2026-11-01 01:00:00 -04:00",
                "2026-11-01 01:30:00 -04:00",
                "2026-11-01 01:00:00 -05:00",
                "2026-11-01 01:30:00 -05:00",
                "2026-11-01 02:00:00 -05:00",
            ]
        );
    }

    #[test]
    fn month_ends_and_leap_days() {
        let last_day = cron("0 12 L * *", "UTC");
        assert_eq!(
            runs(&last_day, "UTC", "2026-01-15 00:00", 3),
            [
                "2026-01-31 12:00:00 +00:00",
                "2026-02-28 12:00:00 +00:00",
                "2026-03-31 12:00:00 +00:00",
            ]
        );
        // The 31st skips the months that lack one.
        let thirty_first = cron("0 0 31 * *", "UTC");
        assert_eq!(
            runs(&thirty_first, "UTC", "2026-01-31 12:00", 2),
            ["2026-03-31 00:00:00 +00:00", "2026-05-31 00:00:00 +00:00"]
        );
        let leap = cron("0 9 29 2 *", "Europe/Berlin");
        assert_eq!(
            runs(&leap, "Europe/Berlin", "2025-03-01 00:00", 2),
            ["2028-02-29 09:00:00 +01:00", "2032-02-29 09:00:00 +01:00"]
        );
    }

    #[test]
    fn day_of_month_and_day_of_week_combine_with_or() {
        // The 13th, or any Friday.
        let plan = cron("0 0 13 * 5", "UTC");
        let got = runs(&plan, "UTC", "2026-02-01 00:00", 5);
        assert_eq!(
            got,
            [
                "2026-02-06 00:00:00 +00:00",
                "2026-02-13 00:00:00 +00:00",
                "2026-02-20 00:00:00 +00:00",
                "2026-02-27 00:00:00 +00:00",
                "2026-03-06 00:00:00 +00:00",
            ]
        );
        let weekday = NaiveDate::from_ymd_opt(2026, 3, 13).unwrap().format("%A");
        assert_eq!(weekday.to_string(), "Friday");
        let march = runs(&plan, "UTC", "2026-03-07 00:00", 2);
        assert_eq!(
            march,
            ["2026-03-13 00:00:00 +00:00", "2026-03-20 00:00:00 +00:00"]
        );
        // Only one of the fields restricted: that one alone decides.
        let fridays = cron("0 0 * * FRI", "UTC");
        assert_eq!(
            runs(&fridays, "UTC", "2026-02-01 00:00", 2),
            ["2026-02-06 00:00:00 +00:00", "2026-02-13 00:00:00 +00:00"]
        );
    }

    #[test]
    fn six_fields_put_seconds_first() {
        let plan = cron("*/20 * * * * *", "UTC");
        assert_eq!(
            runs(&plan, "UTC", "2026-05-01 10:00", 3),
            [
                "2026-05-01 10:00:20 +00:00",
                "2026-05-01 10:00:40 +00:00",
                "2026-05-01 10:01:00 +00:00",
            ]
        );
        // Strictly after: a time that is itself a slot is not returned.
        let t = ms_utc("2026-05-01T10:00:20Z");
        assert_eq!(plan.next_after(t), Some(t + 20_000));
        assert_eq!(plan.next_after(t - 1), Some(t));
    }

    #[test]
    fn every_lines_up_with_its_anchor() {
        let plan = Plan::Every {
            every_ms: 60_000,
            anchor_ms: 1_000,
        };
        assert_eq!(plan.next_after(0), Some(1_000));
        assert_eq!(plan.next_after(1_000), Some(61_000));
        assert_eq!(plan.next_after(60_999), Some(61_000));
        assert_eq!(plan.next_after(61_000), Some(121_000));
        // After a long gap: the next slot, not every missed one.
        assert_eq!(plan.next_after(10_000_000), Some(10_021_000));
    }

    #[test]
    fn at_runs_once() {
        let schedule = CronSchedule::At {
            at: "2026-12-24T18:00:00+01:00".parse().unwrap(),
        };
        let plan = Plan::new(&schedule, None, 0, 0).unwrap();
        let at = ms_utc("2026-12-24T17:00:00Z");
        assert_eq!(plan.next_after(at - 1), Some(at));
        assert_eq!(plan.next_after(at), None);
        // Added after its time, it runs at once.
        assert_eq!(plan.first_run(at + 5_000), Some(at));
    }

    #[test]
    fn default_zone_applies_when_the_schedule_names_none() {
        let schedule = CronSchedule::Cron {
            expr: "0 8 * * *".parse().unwrap(),
            tz: None,
        };
        let now = ms_utc("2026-07-01T00:00:00Z");
        let tokyo = Plan::new(&schedule, Some("Asia/Tokyo"), 0, now).unwrap();
        assert_eq!(
            local(tokyo.next_after(now).unwrap(), "UTC"),
            "2026-07-01 23:00:00 +00:00"
        );
        let utc = Plan::new(&schedule, None, 0, now).unwrap();
        assert_eq!(
            local(utc.next_after(now).unwrap(), "UTC"),
            "2026-07-01 08:00:00 +00:00"
        );
    }

    #[test]
    fn bad_schedules_name_the_field() {
        let make = |expr: &str, tz: Option<&str>| {
            let schedule = CronSchedule::Cron {
                expr: expr.parse().unwrap(),
                tz: tz.map(|t| t.parse().unwrap()),
            };
            Plan::new(&schedule, None, 0, 0).unwrap_err()
        };
        let e = make("61 * * * *", None);
        assert_eq!(e.field, "/expr");
        assert!(
            e.message.contains("the minute field \"61\""),
            "{}",
            e.message
        );
        let e = make("0 0 9 * * MON-FRY", None);
        assert!(
            e.message.contains("the day-of-week field \"MON-FRY\""),
            "{}",
            e.message
        );
        let e = make("* * * *", None);
        assert_eq!(e.field, "/expr");
        assert!(e.message.contains("has 4 fields"), "{}", e.message);
        let e = make("0 0 * * * * 2030", None);
        assert_eq!(e.field, "/expr");
        let e = make("0 0 30 2 *", None);
        assert!(e.message.contains("never matches"), "{}", e.message);
        let e = make("0 8 * * *", Some("Europe/Berln"));
        assert_eq!(e.field, "/tz");
        assert!(
            e.message.contains("did you mean Europe/Berlin"),
            "{}",
            e.message
        );
        let at = CronSchedule::At {
            at: "tomorrow".parse().unwrap(),
        };
        assert_eq!(Plan::new(&at, None, 0, 0).unwrap_err().field, "/at");
    }

    #[test]
    fn an_alias_with_too_many_fields_is_refused() {
        // Found by the cron fuzz target: this used to panic.
        let e = parse_expr("@ 0 * * * * 3").unwrap_err();
        assert!(e.starts_with("invalid cron expression"), "{e}");
    }

    #[test]
    fn a_field_with_an_empty_list_item_is_refused() {
        // Found by the cron fuzz target: croner took "," for a field that
        // matches nothing and searched for the next run without end.
        for expr in ["*/20 , * * * *", ", * * * *", "0 1,,2 * * *", "0 0 1, * *"] {
            let e = parse_expr(expr).unwrap_err();
            assert!(e.contains("empty item"), "{expr}: {e}");
        }
        let e = parse_expr("*/20 , * * * *").unwrap_err();
        assert!(e.contains("the minute field"), "{e}");
        assert!(parse_expr("0 1,2 * * *").is_ok());
        assert!(parse_expr("@daily").is_ok());
    }

    #[test]
    fn backoff_steps_then_holds() {
        let steps: Vec<u64> = (0..8).map(backoff_ms).collect();
        assert_eq!(
            steps,
            [0, 30_000, 60_000, 300_000, 900_000, 3_600_000, 3_600_000, 3_600_000]
        );
    }
}
