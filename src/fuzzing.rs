//! Thin entry points into private parsers, for the fuzz targets under
//! `fuzz/`. Not an API: nothing outside the fuzz targets should call these.

use crate::agent::sse::SseLines;
use crate::cron::schedule::Plan;
use crate::protocol::types::{CronSchedule, CronScheduleExpr, CronScheduleTz};

/// Feeds `chunks` in order to one upstream SSE line splitter; returns the
/// `data:` payloads of all of them, or the first error.
pub fn sse_push(chunks: &[&[u8]]) -> Result<Vec<String>, String> {
    let mut lines = SseLines::default();
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend(lines.push(chunk)?);
    }
    Ok(out)
}

/// Parses an OpenAI-compatible `POST /v1/chat/completions` body.
pub fn openai_request(body: &[u8]) -> Result<(), String> {
    crate::server::openai_api::parse(body).map(drop)
}

/// Plans a cron job `expr` in time zone `tz` (UTC when None) as the
/// gateway does for a job added at `after_ms`, and returns up to `count`
/// successive runs, the first strictly after `after_ms` and each by
/// `next_after` the one before; or why the schedule is refused.
pub fn cron_runs(
    expr: &str,
    tz: Option<&str>,
    after_ms: u64,
    count: usize,
) -> Result<Vec<u64>, String> {
    let expr: CronScheduleExpr = expr.parse().map_err(|e| format!("expr: {e}"))?;
    let tz: Option<CronScheduleTz> = match tz {
        Some(tz) => Some(tz.parse().map_err(|e| format!("tz: {e}"))?),
        None => None,
    };
    let schedule = CronSchedule::Cron { expr, tz };
    let plan = Plan::new(&schedule, None, after_ms, after_ms)
        .map_err(|invalid| format!("{}: {}", invalid.field, invalid.message))?;
    let mut runs = Vec::with_capacity(count);
    let mut t = after_ms;
    while runs.len() < count {
        let Some(next) = plan.next_after(t) else {
            break;
        };
        runs.push(next);
        t = next;
    }
    Ok(runs)
}
