//! Heartbeats end to end: a model's report reaches the owner over
//! Telegram (the fake Bot API), an acknowledgement does not, active hours
//! and a busy session skip a heartbeat, heartbeat.set turns them off and
//! on, and a bad target is refused with its location.

use crate::fake_openai::{FakeOpenAi, Script};
use crate::fake_telegram::{FakeTelegram, TOKEN as BOT_TOKEN};
use crate::support::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The next heartbeat event of `agent` (others are skipped).
async fn heartbeat_of(ws: &mut Ws, agent: &str) -> Value {
    let limit = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < limit, "no heartbeat of {agent}");
        let event = ws.event("heartbeat").await;
        if event["data"]["agentId"] == agent {
            return event["data"].clone();
        }
    }
}

/// An agent of `upstream` with a heartbeat every second, or as `heartbeat` says.
fn openai_agent(id: &str, upstream: &FakeOpenAi, agent: &str, heartbeat: &str) -> String {
    format!(
        "[agents.{id}]\nprovider = \"openai\"\nbaseUrl = \"{}\"\nmodel = \"fake-model\"\n{agent}\
         [agents.{id}.heartbeat]\n{heartbeat}\n",
        upstream.base_url
    )
}

#[tokio::test]
async fn a_report_reaches_the_owner_over_telegram_and_an_acknowledgement_does_not() {
    let news =
        FakeOpenAi::start(Script::Text(vec!["Your 10:00 ", "meeting moved to 11:00."])).await;
    let quiet = FakeOpenAi::start(Script::Text(vec!["HEARTBEAT_OK"])).await;
    let telegram = FakeTelegram::start().await;
    let workspace = temp_dir("hb-workspace");
    std::fs::write(
        workspace.join("HEARTBEAT.md"),
        "# Checks\n- look at the calendar\n",
    )
    .unwrap();
    let gw = TestGateway::start_with_sections(&format!(
        "[agents]\ndefault = \"news\"\n{}{}\n\
         [channels.telegram.bot]\ntoken = \"{BOT_TOKEN}\"\napiBase = \"{}\"\npollTimeoutSec = 1\nallowFrom = [\"111\"]\n",
        openai_agent("news", &news, "", "every = \"1s\""),
        openai_agent(
            "quiet",
            &quiet,
            &format!("workspace = \"{}\"\n", workspace.display()),
            "every = \"1s\"\ntarget = \"telegram\"\nto = \"111\"",
        ),
        telegram.base_url,
    ))
    .await;
    let mut ws = gw.operator().await;

    // Before the owner has written, news has nowhere to go.
    let first = heartbeat_of(&mut ws, "news").await;
    assert_eq!(first["outcome"], "failed", "{first}");
    assert!(
        first["reason"]
            .as_str()
            .unwrap()
            .contains("no direct message of session agent:news:main"),
        "{first}"
    );

    telegram.say(111, 111, "good morning");
    telegram.wait_sent(1).await;
    let delivered = loop {
        let run = heartbeat_of(&mut ws, "news").await;
        if run["outcome"] == "delivered" {
            break run;
        }
    };
    assert_eq!(delivered["channel"], "telegram");
    assert_eq!(delivered["accountId"], "bot");
    assert_eq!(delivered["to"], "111");
    assert_eq!(delivered["sessionKey"], "agent:news:main");
    assert_eq!(delivered["delivered"], true);
    let sent = telegram.wait_sent(2).await;
    assert_eq!(
        sent[1],
        json!({"chat_id": 111, "text": "Your 10:00 meeting moved to 11:00."})
    );

    let ack = heartbeat_of(&mut ws, "quiet").await;
    assert_eq!(
        (ack["outcome"].clone(), ack["delivered"].clone()),
        (json!("ack"), json!(false)),
        "{ack}"
    );
    assert!(
        telegram.sent().iter().all(|m| m["text"] != "HEARTBEAT_OK"),
        "an acknowledgement was delivered: {:?}",
        telegram.sent()
    );
    // The default prompt carries the token and the workspace checklist.
    let asked = quiet.requests()[0].1["messages"].to_string();
    assert!(asked.contains("exactly HEARTBEAT_OK"), "{asked}");
    assert!(asked.contains("look at the calendar"), "{asked}");

    let last = ws.call("heartbeat.last", json!({"agentId": "quiet"})).await;
    let status = &last["result"]["heartbeats"][0];
    assert_eq!(status["configured"], true);
    assert_eq!(status["every"], "1s");
    assert_eq!(status["last"]["outcome"], "ack", "{last}");

    // Turned off, news stays silent; turned on, it speaks again.
    let off = ws
        .call(
            "heartbeat.set",
            json!({"enabled": false, "agentId": "news"}),
        )
        .await;
    assert_eq!(off["result"]["heartbeats"][0]["enabled"], false, "{off}");
    assert!(off["result"]["heartbeats"][0]["nextAtMs"].is_null());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = telegram.sent().len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(telegram.sent().len(), before, "a heartbeat ran while off");
    ws.call("heartbeat.set", json!({"enabled": true})).await;
    telegram.wait_sent(before + 1).await;
}

#[tokio::test]
async fn active_hours_and_a_busy_session_skip_a_heartbeat() {
    let hanging = FakeOpenAi::start(Script::Hang).await;
    let hour = (clawgate::clock::now_ms() / 3_600_000 % 24) as i64;
    let at = |h: i64| format!("{:02}:00", h.rem_euclid(24));
    let gw = TestGateway::start_with_sections(&format!(
        "[agents.night]\nprovider = \"echo\"\n[agents.night.heartbeat]\nevery = \"1s\"\nprompt = \"HEARTBEAT_OK\"\n\
         activeHours = {{ start = \"{}\", end = \"{}\", timezone = \"UTC\" }}\n\
         [agents.day]\nprovider = \"echo\"\n[agents.day.heartbeat]\nevery = \"1s\"\nprompt = \"HEARTBEAT_OK\"\n\
         activeHours = {{ start = \"{}\", end = \"{}\" }}\n{}",
        at(hour + 2),
        at(hour + 3),
        at(hour - 1),
        at(hour + 2),
        // Its first heartbeat comes after the owner's turn has begun.
        openai_agent("slow", &hanging, "", "every = \"2s\"\ntarget = \"none\""),
    ))
    .await;
    let mut ws = gw.operator().await;
    let night = heartbeat_of(&mut ws, "night").await;
    assert_eq!(night["outcome"], "skipped");
    assert!(
        night["reason"]
            .as_str()
            .unwrap()
            .starts_with("outside active hours"),
        "{night}"
    );
    let day = heartbeat_of(&mut ws, "day").await;
    assert_eq!(day["outcome"], "ack", "{day}");

    // A turn of the owner's is running in slow's main session.
    let mut owner = gw.operator().await;
    owner
        .request(
            "chat",
            json!({"agentId": "slow", "sessionKey": "agent:slow:main", "message": "think hard"}),
        )
        .await;
    let busy = loop {
        let run = heartbeat_of(&mut ws, "slow").await;
        if run["outcome"] == "skipped" {
            break run;
        }
    };
    assert!(
        busy["reason"]
            .as_str()
            .unwrap()
            .contains("agent:slow:main is busy"),
        "{busy}"
    );
}

#[tokio::test]
async fn a_target_that_is_not_a_channel_is_refused_where_it_is_written() {
    let gw = TestGateway::start_with_sections("[agents.main]\nprovider = \"echo\"\n").await;
    let mut ws = gw.operator().await;
    let set = ws
        .call(
            "config.set",
            json!({"key": "agents.main.heartbeat", "value": {"every": "30m", "target": "pigeon"}}),
        )
        .await;
    let text = set["error"].to_string();
    assert!(
        text.contains("agents.main.heartbeat.target")
            && text.contains("not last, none or a channel kind"),
        "{set}"
    );
    let set = ws
        .call(
            "config.set",
            json!({"key": "agents.main.heartbeat", "value": {"every": "30m", "target": "telegram"}}),
        )
        .await;
    assert!(
        set["error"]
            .to_string()
            .contains("agents.main.heartbeat.to:"),
        "{set}"
    );
    let set = ws
        .call(
            "config.set",
            json!({"key": "agents.main.heartbeat", "value": {"every": "30 minutes"}}),
        )
        .await;
    assert!(
        set["error"]
            .to_string()
            .contains("agents.main.heartbeat.every"),
        "{set}"
    );
}

/// The last heartbeat of agent main, as heartbeat.last shows it.
async fn status_of_main(gw: &TestGateway) -> Value {
    let mut ws = gw.operator().await;
    let last = ws.call("heartbeat.last", json!({"agentId": "main"})).await;
    last["result"]["heartbeats"][0].clone()
}

#[tokio::test]
async fn the_schedule_survives_a_restart_and_downtime_brings_one_heartbeat() {
    let _sqlite = crate::engines::sqlite_only(); // reads the SQLite file
    let hourly = "[agents.main]\nprovider = \"echo\"\n[agents.main.heartbeat]\nevery = \"1h\"\nprompt = \"HEARTBEAT_OK\"\ntarget = \"none\"\n";
    let gw = TestGateway::start_with_sections(&hourly.replace("1h", "1s")).await;
    let mut ws = gw.operator().await;
    let first = heartbeat_of(&mut ws, "main").await;
    drop(ws);
    let config = gw.config_path();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("every = \"1s\"", "every = \"1h\"")).unwrap();

    // Restarted with an hourly heartbeat: the stored one is recent, so
    // the next is an hour after it.
    let gw = restart_with_db_edit(gw, |_| {});
    let status = status_of_main(&gw).await;
    let last_at = status["last"]["atMs"].as_u64().unwrap();
    assert!(last_at >= first["atMs"].as_u64().unwrap(), "{status}");
    assert_eq!(
        status["nextAtMs"].as_u64().unwrap(),
        last_at + 3_600_000,
        "{status}"
    );

    // Two hours down: one heartbeat at start, and the next an hour on.
    let two_hours_ago = clawgate::clock::now_ms() - 2 * 3_600_000;
    let restarted_at = clawgate::clock::now_ms();
    let gw = restart_with_db_edit(gw, |db| {
        db.execute(
            "UPDATE heartbeats SET run_json = json_set(run_json, '$.atMs', ?1)",
            rusqlite::params![two_hours_ago as i64],
        )
        .unwrap();
    });
    let limit = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = status_of_main(&gw).await;
        if status["last"]["atMs"].as_u64().unwrap() >= restarted_at {
            break status;
        }
        assert!(Instant::now() < limit, "no heartbeat at start: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status["last"]["outcome"], "ack", "{status}");
    let next = status["nextAtMs"].as_u64().unwrap();
    assert!(next >= restarted_at + 3_500_000, "only one ran: {status}");
}

#[tokio::test]
async fn a_heartbeat_in_progress_does_not_hold_up_shutdown() {
    let hanging = FakeOpenAi::start(Script::Hang).await;
    let mut gw = TestGateway::start_with_sections(&openai_agent(
        "main",
        &hanging,
        "",
        "every = \"1s\"\ntarget = \"none\"",
    ))
    .await;
    let limit = Instant::now() + Duration::from_secs(10);
    while hanging.requests().is_empty() {
        assert!(
            Instant::now() < limit,
            "the heartbeat never reached the model"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stopping = Instant::now();
    assert!(gw.terminate().success());
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "shutdown waited {:?} for a hanging heartbeat",
        stopping.elapsed()
    );
}
