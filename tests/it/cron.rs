//! The cron service against a running gateway, in real time: jobs every
//! second fire, stream events and record history; they survive restarts,
//! catch up once after downtime, never overlap, time out, back off, and
//! follow config reloads.

use crate::support::*;
use clawgate::protocol::ErrorCode;
use serde_json::{json, Value};
use std::time::Duration;

async fn add(ws: &mut Ws, params: Value) -> Value {
    let frame = ws.call("cron.add", params).await;
    assert!(frame["error"].is_null(), "cron.add failed: {frame}");
    frame["result"].clone()
}

async fn runs(ws: &mut Ws, id: &str) -> Vec<Value> {
    let frame = ws.call("cron.runs", json!({"id": id, "limit": 500})).await;
    frame["result"]["runs"].as_array().unwrap().clone()
}

/// The next cron event of this name for this job.
async fn cron_event(ws: &mut Ws, name: &str, job: &str) -> Value {
    loop {
        let event = ws.event(name).await;
        if event["data"]["jobId"] == job {
            return event["data"].clone();
        }
    }
}

fn every_second_turn(message: &str) -> Value {
    json!({
        "name": "pinger",
        "schedule": {"kind": "cron", "expr": "* * * * * *"},
        "payload": {"kind": "agentTurn", "message": message},
    })
}

#[tokio::test]
async fn a_job_every_second_fires_streams_its_turn_and_records_history() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.operator().await;
    let job = add(&mut ws, every_second_turn("good morning")).await;
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["source"], "api");
    assert_eq!(job["state"]["running"], false);
    let next = job["state"]["nextRunAtMs"].as_u64().unwrap();
    assert_eq!(next % 1000, 0, "a whole second");

    let started = cron_event(&mut ws, "cron.started", &id).await;
    assert_eq!(started["trigger"], "schedule");
    assert_eq!(started["sessionKey"], format!("cron:{id}"));
    assert!(started["startedAtMs"].as_u64().unwrap() >= started["scheduledAtMs"].as_u64().unwrap());
    let reply = loop {
        let event = ws.event("agent.message").await;
        if event["data"]["state"] == "final" {
            break event["data"].clone();
        }
    };
    assert_eq!(reply["sessionKey"], format!("cron:{id}"));
    assert_eq!(reply["message"]["content"], "good morning");
    let finished = cron_event(&mut ws, "cron.finished", &id).await;
    assert_eq!(finished["run"]["status"], "ok");
    assert_eq!(finished["run"]["summary"], "good morning");
    assert_eq!(finished["run"]["runId"], reply["runId"]);
    assert!(
        finished["nextRunAtMs"].as_u64().unwrap()
            > finished["run"]["startedAtMs"].as_u64().unwrap()
    );

    // A second run, a second apart.
    let again = cron_event(&mut ws, "cron.finished", &id).await;
    let gap = again["run"]["scheduledAtMs"].as_u64().unwrap()
        - finished["run"]["scheduledAtMs"].as_u64().unwrap();
    assert_eq!(gap, 1000);

    let history = runs(&mut ws, &id).await;
    assert!(history.len() >= 2, "{history:?}");
    assert!(
        history[0]["id"].as_u64() > history[1]["id"].as_u64(),
        "newest first"
    );
    assert!(history
        .iter()
        .all(|r| r["status"] == "ok" || r["status"] == "running"));
    let transcript = ws
        .call(
            "sessions.history",
            json!({"sessionKey": format!("cron:{id}")}),
        )
        .await;
    assert!(transcript["result"]["messages"].as_array().unwrap().len() >= 4);

    let list = ws.call("cron.list", json!({})).await["result"].clone();
    assert_eq!(list["enabled"], true);
    let listed = &list["jobs"][0];
    assert_eq!(listed["id"], id.as_str());
    assert!(listed["state"]["lastRunAtMs"].is_u64());
    assert_eq!(listed["state"]["consecutiveErrors"], 0);
    let health = ws.call("health", json!({})).await["result"].clone();
    assert_eq!(health["cron"]["enabled"], true);
    assert_eq!(health["cron"]["jobs"], 1);
    assert_eq!(health["cron"]["failing"], json!([]));
    assert!(health["cron"]["nextRunAtMs"].is_u64());
}

#[tokio::test]
async fn a_removed_job_stops_firing() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.operator().await;
    let job = add(
        &mut ws,
        json!({
            "schedule": {"kind": "every", "everyMs": 1000},
            "payload": {"kind": "systemEvent", "text": "stand up"},
        }),
    )
    .await;
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["name"], "stand up", "named after its payload");
    let event = cron_event(&mut ws, "system.event", &id).await;
    assert_eq!(event["text"], "stand up");
    assert_eq!(event["source"], "cron");
    let removed = ws.call("cron.remove", json!({"id": id})).await;
    assert_eq!(removed["result"], json!({"id": id, "removed": true}));
    let deadline = tokio::time::Instant::now() + Duration::from_millis(2500);
    while let Ok(frame) = tokio::time::timeout_at(deadline, ws.recv()).await {
        assert!(
            !(frame["event"] == "cron.started" && frame["data"]["jobId"] == id.as_str()),
            "a removed job ran: {frame}"
        );
    }
    let gone = ws.call("cron.runs", json!({"id": id})).await;
    assert_eq!(error_code(&gone), ErrorCode::NotFound.code());
    let again = ws.call("cron.remove", json!({"id": id})).await;
    assert_eq!(again["result"]["removed"], false);
    assert_eq!(
        ws.call("cron.list", json!({})).await["result"]["jobs"],
        json!([])
    );
}

#[tokio::test]
async fn jobs_survive_a_restart_and_missed_slots_run_once_at_startup() {
    let dir = temp_dir("cron-restart");
    let args = persistent_config(&dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let id;
    {
        let mut gw = TestGateway::spawn(&dir, &args, &[]);
        gw.owns_dir = false;
        let mut ws = gw.operator().await;
        let job = add(
            &mut ws,
            json!({
                "schedule": {"kind": "cron", "expr": "* * * * * *"},
                "payload": {"kind": "systemEvent", "text": "tick"},
            }),
        )
        .await;
        id = job["id"].as_str().unwrap().to_string();
        cron_event(&mut ws, "cron.finished", &id).await;
        assert!(gw.terminate().success());
    }
    // Down for three slots.
    std::thread::sleep(Duration::from_millis(3200));
    let gw = TestGateway::spawn(&dir, &args, &[]);
    let mut ws = gw.operator().await;
    let listed = ws.call("cron.list", json!({})).await["result"]["jobs"].clone();
    assert_eq!(listed[0]["id"], id.as_str(), "the job survived the restart");
    // Wait for two scheduled runs after the restart.
    let mut scheduled = 0;
    while scheduled < 2 {
        let finished = cron_event(&mut ws, "cron.finished", &id).await;
        if finished["run"]["trigger"] == "schedule" {
            scheduled += 1;
        }
    }
    let history = runs(&mut ws, &id).await;
    let catchups: Vec<&Value> = history
        .iter()
        .filter(|r| r["trigger"] == "catchup")
        .collect();
    assert_eq!(
        catchups.len(),
        1,
        "one catch-up, not one per missed slot: {history:?}"
    );
    assert_eq!(catchups[0]["status"], "ok");
    let first_after_restart = history
        .iter()
        .rev()
        .find(|r| r["startedAtMs"].as_u64() >= catchups[0]["startedAtMs"].as_u64())
        .unwrap();
    assert_eq!(
        first_after_restart["trigger"], "catchup",
        "the catch-up runs first"
    );
}

#[tokio::test]
async fn runs_never_overlap_and_a_slow_run_times_out_and_backs_off() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.operator().await;
    // The echo agent takes a millisecond a word: 1.5 s a run.
    let slow = "word ".repeat(1500);
    let job = add(&mut ws, every_second_turn(&slow)).await;
    let id = job["id"].as_str().unwrap().to_string();
    cron_event(&mut ws, "cron.started", &id).await;
    let busy = ws.call("cron.run", json!({"id": id})).await;
    assert_eq!(error_code(&busy), ErrorCode::Conflict.code());
    let skipped = loop {
        let finished = cron_event(&mut ws, "cron.finished", &id).await;
        if finished["run"]["status"] == "skipped" {
            break finished;
        }
    };
    assert_eq!(
        skipped["run"]["error"],
        "the previous run was still in progress"
    );
    let first_ok = loop {
        let finished = cron_event(&mut ws, "cron.finished", &id).await;
        if finished["run"]["status"] == "ok" {
            break finished;
        }
    };
    assert!(first_ok["run"]["durationMs"].as_u64().unwrap() >= 1400);
    let history = runs(&mut ws, &id).await;
    let mut running: Vec<(u64, u64)> = history
        .iter()
        .filter(|r| r["status"] == "ok")
        .map(|r| {
            (
                r["startedAtMs"].as_u64().unwrap(),
                r["finishedAtMs"].as_u64().unwrap(),
            )
        })
        .collect();
    running.sort();
    for pair in running.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "runs overlapped: {running:?}");
    }

    // Now with a timeout shorter than a run: an error, and a backoff.
    let update = ws
        .call(
            "cron.update",
            json!({"id": id, "timeoutMs": 1000, "payload": {"kind": "agentTurn", "message": "word ".repeat(3000)}}),
        )
        .await;
    assert_eq!(update["result"]["timeoutMs"], 1000);
    let failed = loop {
        let finished = cron_event(&mut ws, "cron.finished", &id).await;
        if finished["run"]["status"] == "error" {
            break finished;
        }
    };
    assert_eq!(failed["run"]["error"], "timed out after 1000 ms");
    let duration = failed["run"]["durationMs"].as_u64().unwrap();
    assert!(
        (1000..2000).contains(&duration),
        "stopped at its timeout: {duration}"
    );
    let finished_at = failed["run"]["finishedAtMs"].as_u64().unwrap();
    let next = failed["nextRunAtMs"].as_u64().unwrap();
    assert!(
        next >= finished_at + 30_000,
        "backs off 30 s after the first failure"
    );
    let health = ws.call("health", json!({})).await["result"]["cron"].clone();
    assert_eq!(health["failing"][0]["id"], id.as_str());
    assert_eq!(health["failing"][0]["consecutiveErrors"], 1);
    assert_eq!(health["failing"][0]["lastError"], "timed out after 1000 ms");
    let stored = ws
        .call(
            "sessions.history",
            json!({"sessionKey": format!("cron:{id}")}),
        )
        .await;
    let messages = stored["result"]["messages"].as_array().unwrap();
    assert_eq!(
        messages.last().unwrap()["role"],
        "user",
        "no reply is stored for the timed-out turn"
    );

    // A success clears the failure.
    ws.call(
        "cron.update",
        json!({"id": id, "payload": {"kind": "agentTurn", "message": "quick"}}),
    )
    .await;
    let forced = ws
        .call("cron.run", json!({"id": id, "mode": "force"}))
        .await["result"]
        .clone();
    assert_eq!(forced["ran"], true);
    assert_eq!(forced["run"]["trigger"], "manual");
    assert_eq!(forced["run"]["status"], "ok");
    let listed = ws.call("cron.list", json!({})).await["result"]["jobs"][0].clone();
    assert_eq!(listed["state"]["consecutiveErrors"], 0);
    assert_eq!(
        ws.call("health", json!({})).await["result"]["cron"]["failing"],
        json!([])
    );
}

#[tokio::test]
async fn run_modes_and_one_shots() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.operator().await;
    let daily = add(
        &mut ws,
        json!({
            "name": "daily",
            "schedule": {"kind": "cron", "expr": "0 8 * * *", "tz": "Europe/Berlin"},
            "payload": {"kind": "systemEvent", "text": "good morning"},
        }),
    )
    .await;
    let id = daily["id"].as_str().unwrap();
    let not_due = ws.call("cron.run", json!({"id": id, "mode": "due"})).await;
    assert_eq!(not_due["result"], json!({"id": id, "ran": false}));
    let forced = ws.call("cron.run", json!({"id": id})).await["result"].clone();
    assert_eq!(forced["run"]["summary"], "good morning");
    let after = ws.call("cron.list", json!({})).await["result"]["jobs"].clone();
    assert_eq!(
        after[0]["state"]["nextRunAtMs"], daily["state"]["nextRunAtMs"],
        "a manual run leaves the schedule alone"
    );
    let missing = ws.call("cron.run", json!({"id": "job-nope"})).await;
    assert_eq!(error_code(&missing), ErrorCode::NotFound.code());

    // A one-shot a second from now runs once and is deleted.
    let at = chrono_rfc3339_in(1200);
    let once = add(
        &mut ws,
        json!({"schedule": {"kind": "at", "at": at}, "payload": {"kind": "systemEvent", "text": "once"}}),
    )
    .await;
    let once_id = once["id"].as_str().unwrap();
    assert_eq!(once["deleteAfterRun"], true);
    let done = cron_event(&mut ws, "cron.finished", once_id).await;
    assert_eq!(done["run"]["status"], "ok");
    assert!(done.get("nextRunAtMs").is_none());
    let jobs = ws.call("cron.list", json!({})).await["result"]["jobs"].clone();
    assert_eq!(
        jobs.as_array().unwrap().len(),
        1,
        "the one-shot is gone: {jobs}"
    );

    // Kept when asked: disabled after its run.
    let kept = add(
        &mut ws,
        json!({"schedule": {"kind": "at", "at": chrono_rfc3339_in(-5000)}, "deleteAfterRun": false,
               "payload": {"kind": "systemEvent", "text": "late"}}),
    )
    .await;
    let kept_id = kept["id"].as_str().unwrap();
    cron_event(&mut ws, "cron.finished", kept_id).await;
    let jobs =
        ws.call("cron.list", json!({"includeDisabled": true})).await["result"]["jobs"].clone();
    let kept = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == kept_id)
        .unwrap();
    assert_eq!(kept["enabled"], false);
    assert!(kept["state"].get("nextRunAtMs").is_none());
    let enabled_only = ws
        .call("cron.list", json!({"includeDisabled": false}))
        .await["result"]["jobs"]
        .clone();
    assert_eq!(enabled_only.as_array().unwrap().len(), 1);
}

/// An RFC 3339 time `offset_ms` from now, in UTC.
fn chrono_rfc3339_in(offset_ms: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t = now + offset_ms;
    let secs = t.div_euclid(1000);
    let millis = t.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[tokio::test]
async fn invalid_schedules_point_at_the_field() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.operator().await;
    let cases = [
        (
            json!({"kind": "cron", "expr": "61 * * * *"}),
            "/schedule/expr",
            "invalid cron expression",
        ),
        (
            json!({"kind": "cron", "expr": "* * *"}),
            "/schedule/expr",
            "has 3 fields",
        ),
        (
            json!({"kind": "cron", "expr": "0 8 * * *", "tz": "Europe/Berln"}),
            "/schedule/tz",
            "did you mean Europe/Berlin?",
        ),
        (
            json!({"kind": "at", "at": "next tuesday"}),
            "/schedule/at",
            "not an RFC 3339 time",
        ),
        (json!({"kind": "every", "everyMs": 10}), "/schedule", ""),
    ];
    for (schedule, pointer, text) in cases {
        let frame = ws
            .call(
                "cron.add",
                json!({"schedule": schedule, "payload": {"kind": "systemEvent", "text": "x"}}),
            )
            .await;
        assert_eq!(
            error_code(&frame),
            ErrorCode::InvalidParams.code(),
            "{frame}"
        );
        let first = &frame["error"]["data"]["errors"][0];
        assert!(
            first["pointer"].as_str().unwrap().starts_with(pointer),
            "{schedule}: {frame}"
        );
        assert!(first["message"].as_str().unwrap().contains(text), "{frame}");
    }
    let agent = ws
        .call(
            "cron.add",
            json!({"schedule": {"kind": "every", "everyMs": 60000}, "agentId": "ghost",
                   "payload": {"kind": "agentTurn", "message": "hi"}}),
        )
        .await;
    assert_eq!(error_code(&agent), ErrorCode::InvalidParams.code());
    assert_eq!(agent["error"]["data"]["errors"][0]["pointer"], "/agentId");
    assert_eq!(
        ws.call("cron.list", json!({})).await["result"]["jobs"],
        json!([]),
        "nothing was added"
    );
    let update = ws
        .call(
            "cron.update",
            json!({"id": "job-missing", "enabled": false}),
        )
        .await;
    assert_eq!(error_code(&update), ErrorCode::NotFound.code());
}

#[tokio::test]
async fn config_jobs_follow_reloads() {
    let dir = temp_dir("cron-config");
    let args = persistent_config(&dir);
    let config = dir.join("clawgate.toml");
    let base = std::fs::read_to_string(&config).unwrap();
    let with_job = |text: &str| {
        format!(
            "{base}[gateway.reload]\ndebounceMs = 50\n[cron.jobs.chime]\nschedule = {{ kind = \"every\", everyMs = 1000 }}\npayload = {{ kind = \"systemEvent\", text = \"{text}\" }}\n"
        )
    };
    std::fs::write(&config, with_job("ding")).unwrap();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut gw = TestGateway::spawn(&dir, &args, &[]);
    gw.owns_dir = true;
    let mut ws = gw.operator().await;
    let event = cron_event(&mut ws, "system.event", "chime").await;
    assert_eq!(event["text"], "ding");
    let listed = ws.call("cron.list", json!({})).await["result"]["jobs"][0].clone();
    assert_eq!(listed["source"], "config");
    assert_eq!(listed["name"], "chime");
    let refused = ws.call("cron.remove", json!({"id": "chime"})).await;
    assert_eq!(error_code(&refused), ErrorCode::Conflict.code());
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("cron.jobs.chime"));

    // Changed in the file: the next runs say dong.
    save_file(&config, &with_job("dong"));
    ws.event("config.changed").await;
    let event = cron_event(&mut ws, "system.event", "chime").await;
    assert_eq!(event["text"], "dong");

    // A bad expression is rejected with its place; the job keeps running.
    let broken = format!(
        "{base}[gateway.reload]\ndebounceMs = 50\n[cron.jobs.chime]\nschedule = {{ kind = \"cron\", expr = \"0 25 * * *\" }}\npayload = {{ kind = \"systemEvent\", text = \"dong\" }}\n"
    );
    save_file(&config, &broken);
    let failed = ws.event("config.reload.failed").await;
    let problem = &failed["data"]["errors"][0];
    assert_eq!(problem["path"], "cron.jobs.chime.schedule.expr", "{failed}");
    assert!(problem["line"].as_u64().is_some(), "{failed}");
    cron_event(&mut ws, "system.event", "chime").await;

    // Removed from the file: it stops.
    save_file(
        &config,
        &format!("{base}[gateway.reload]\ndebounceMs = 50\n"),
    );
    ws.event("config.changed").await;
    let list = ws.call("cron.list", json!({})).await["result"]["jobs"].clone();
    assert_eq!(list, json!([]));
    let deadline = tokio::time::Instant::now() + Duration::from_millis(2200);
    while let Ok(frame) = tokio::time::timeout_at(deadline, ws.recv()).await {
        assert!(
            !(frame["event"] == "system.event" && frame["data"]["jobId"] == "chime"),
            "a removed config job ran: {frame}"
        );
    }
}

#[tokio::test]
async fn pausing_the_scheduler_stops_runs_and_resuming_does_not_catch_up() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.operator().await;
    let job = add(
        &mut ws,
        json!({"schedule": {"kind": "every", "everyMs": 1000},
               "payload": {"kind": "systemEvent", "text": "beat"}}),
    )
    .await;
    let id = job["id"].as_str().unwrap().to_string();
    cron_event(&mut ws, "cron.finished", &id).await;
    let paused = ws
        .call("config.set", json!({"key": "cron.enabled", "value": false}))
        .await;
    assert_eq!(paused["result"]["changed"], json!(["cron.enabled"]));
    let health = ws.call("health", json!({})).await["result"]["cron"].clone();
    assert_eq!(health["enabled"], false);
    assert!(health.get("nextRunAtMs").is_none());
    let runs_before_pause = runs(&mut ws, &id).await.len();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(2500);
    while let Ok(frame) = tokio::time::timeout_at(deadline, ws.recv()).await {
        assert!(
            !(frame["event"] == "cron.started" && frame["data"]["jobId"] == id.as_str()),
            "a paused scheduler ran a job: {frame}"
        );
    }
    ws.call("config.set", json!({"key": "cron.enabled", "value": true}))
        .await;
    let resumed = cron_event(&mut ws, "cron.finished", &id).await;
    assert_eq!(
        resumed["run"]["trigger"], "schedule",
        "no catch-up after a pause"
    );
    assert_eq!(runs(&mut ws, &id).await.len(), runs_before_pause + 1);
}

#[tokio::test]
async fn a_run_cut_off_by_a_kill_is_recorded_as_interrupted() {
    let dir = temp_dir("cron-kill");
    let args = persistent_config(&dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let id;
    {
        let mut gw = TestGateway::spawn(&dir, &args, &[]);
        gw.owns_dir = false;
        let mut ws = gw.operator().await;
        let job = add(
            &mut ws,
            json!({"schedule": {"kind": "every", "everyMs": 3_600_000, "anchorMs": 0},
                   "payload": {"kind": "agentTurn", "message": "word ".repeat(5000)}}),
        )
        .await;
        id = job["id"].as_str().unwrap().to_string();
        ws.request("cron.run", json!({"id": id})).await;
        cron_event(&mut ws, "cron.started", &id).await;
        unsafe_kill(gw.child.id(), "KILL");
        wait_exit(&mut gw.child, WAIT).expect("killed");
    }
    let gw = TestGateway::spawn(&dir, &args, &[]);
    let mut ws = gw.operator().await;
    let history = runs(&mut ws, &id).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["status"], "error");
    assert_eq!(history[0]["trigger"], "manual");
    assert_eq!(
        history[0]["error"],
        "the gateway stopped before the run finished"
    );
    let job = ws.call("cron.list", json!({})).await["result"]["jobs"][0].clone();
    assert_eq!(job["state"]["running"], false);
    assert_eq!(job["state"]["lastStatus"], "error");
    assert_eq!(job["state"]["consecutiveErrors"], 1);
}

#[tokio::test]
async fn the_assistant_schedules_a_job_with_the_cron_add_tool() {
    use crate::fake_openai::{FakeOpenAi, Script};
    let upstream = FakeOpenAi::start(Script::ToolThenText(
        "cron_add",
        r#"{"message": "Summarise my inbox.", "name": "Inbox", "expr": "0 8 * * 1-5", "tz": "Europe/Berlin"}"#,
        vec!["Scheduled."],
    ))
    .await;
    let gw = TestGateway::start_with_sections(&format!(
        "[agents]\ndefault = \"gpt\"\n\n[agents.gpt]\nprovider = \"openai\"\nbaseUrl = \"{}\"\n\
         model = \"fake-model\"\ntools = [\"cron_add\", \"cron_list\", \"cron_remove\"]\n",
        upstream.base_url
    ))
    .await;
    let mut ws = gw.operator().await;
    let frame = ws
        .call(
            "chat",
            json!({"message": "every weekday at 8:00 Berlin time, summarise my inbox"}),
        )
        .await;
    assert_eq!(
        frame["result"]["message"]["content"], "Scheduled.",
        "{frame}"
    );
    let tool_end = loop {
        let event = ws.event("agent.tool").await;
        if event["data"]["phase"] == "end" {
            break event["data"].clone();
        }
    };
    let next = tool_end["result"]["nextRunAt"].as_str().unwrap();
    assert!(
        next.contains("T08:00:00+0"),
        "08:00 Berlin time: {tool_end}"
    );
    let jobs = ws.call("cron.list", json!({})).await["result"]["jobs"].clone();
    let job = &jobs[0];
    assert_eq!(job["name"], "Inbox");
    assert_eq!(
        job["agentId"], "gpt",
        "the job belongs to the agent that made it"
    );
    assert_eq!(
        job["schedule"],
        json!({"kind": "cron", "expr": "0 8 * * 1-5", "tz": "Europe/Berlin"})
    );
    assert_eq!(
        job["payload"],
        json!({"kind": "agentTurn", "message": "Summarise my inbox."})
    );
    assert_eq!(tool_end["result"]["id"], job["id"]);
}
