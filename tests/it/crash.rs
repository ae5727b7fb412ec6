//! The crash-safety loop: a gateway busy with concurrent chat turns, cron
//! runs and config writes is killed with SIGKILL at a random moment, again
//! and again; after every kill the store, the transcripts and the config
//! file are checked whole, and the gateway starts again on them.

use crate::support::*;
use serde_json::json;
use std::time::Duration;

const ROUNDS: usize = 4;
const WRITERS: usize = 8;

fn config(dir: &std::path::Path) -> Vec<String> {
    let config = dir.join("clawgate.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[gateway.reload]\ndebounceMs = 50\n\n[cron.jobs.tick]\n\
             schedule = {{ kind = \"every\", everyMs = 1000 }}\n\
             payload = {{ kind = \"agentTurn\", message = \"cron says hello\" }}\n\n\
             [cron.jobs.chime]\nschedule = {{ kind = \"every\", everyMs = 1000 }}\n\
             payload = {{ kind = \"systemEvent\", text = \"ding\" }}\n",
            token_config()
        ),
    )
    .unwrap();
    vec!["--config".into(), config.to_str().unwrap().into()]
}

/// A random delay between 300 and 1100 ms, from a fresh UUID.
fn random_delay() -> Duration {
    Duration::from_millis(300 + (uuid::Uuid::new_v4().as_u128() % 800) as u64)
}

fn check_store(dir: &std::path::Path, round: usize) -> i64 {
    let db = rusqlite::Connection::open(dir.join("state/clawgate.db")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok", "round {round}");
    let mismatched: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM sessions s WHERE s.message_count !=
             (SELECT COUNT(*) FROM messages m WHERE m.session_key = s.key)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        mismatched, 0,
        "round {round}: message counts disagree with the transcripts"
    );
    let orphans: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM messages m WHERE NOT EXISTS
             (SELECT 1 FROM sessions s WHERE s.key = m.session_key)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0, "round {round}: messages without a session");
    db.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
        .unwrap()
}

fn check_files(dir: &std::path::Path, round: usize) {
    let out = std::process::Command::new(bin())
        .args([
            "config",
            "validate",
            dir.join("clawgate.toml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "round {round}: the config file no longer validates: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Temporary files a write in flight may leave (config edits, the token).
fn temp_files(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for sub in [dir.to_path_buf(), dir.join("state")] {
        for entry in std::fs::read_dir(sub).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.contains(".tmp-") {
                found.push(name);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_never_leaves_a_broken_store_or_config() {
    let _sqlite = crate::engines::sqlite_only(); // reads the SQLite file
    let dir = temp_dir("crash-loop");
    let args = config(&dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut messages = 0;
    for round in 0..ROUNDS {
        let mut gw = TestGateway::spawn(&dir, &args, &[]);
        gw.owns_dir = false;
        // What survived the last kill is readable, and stale temporary
        // files were cleared at start.
        assert!(
            temp_files(&dir).is_empty(),
            "round {round}: {:?}",
            temp_files(&dir)
        );
        let mut reader = gw.operator().await;
        let sessions = reader.call("sessions", json!({"limit": 200})).await;
        assert!(sessions.get("result").is_some(), "{sessions}");
        let mut load = tokio::task::JoinSet::new();
        for writer in 0..WRITERS {
            let url = gw.url.clone();
            load.spawn(async move {
                let mut ws = Ws::open(&url).await;
                ws.connect(json!({"token": TOKEN}), None).await;
                for turn in 0.. {
                    let message = format!("writer {writer} turn {turn} ").repeat(20);
                    ws.request(
                        "chat",
                        json!({"message": message, "sessionKey": format!("w{writer}")}),
                    )
                    .await;
                    if ws.recv_or_close().await.is_err() {
                        return;
                    }
                }
            });
        }
        let url = gw.url.clone();
        load.spawn(async move {
            let mut ws = Ws::open(&url).await;
            ws.connect(json!({"token": TOKEN}), None).await;
            for i in 0u64.. {
                ws.request(
                    "config.set",
                    json!({"key": "gateway.handshakeTimeoutMs", "value": 5000 + i % 1000}),
                )
                .await;
                if ws.recv_or_close().await.is_err() {
                    return;
                }
            }
        });
        tokio::time::sleep(random_delay()).await;
        unsafe_kill(gw.child.id(), "KILL");
        wait_exit(&mut gw.child, Duration::from_secs(5)).expect("killed");
        load.shutdown().await;
        let stored = check_store(&dir, round);
        assert!(stored >= messages, "round {round}: messages were lost");
        messages = stored;
        check_files(&dir, round);
    }
    assert!(messages > 0, "the load wrote nothing");
    let gw = TestGateway::spawn(&dir, &args, &[]);
    let mut ws = gw.operator().await;
    let history = ws
        .call("sessions.history", json!({"sessionKey": "w0"}))
        .await;
    assert!(history.get("result").is_some(), "{history}");
    let _ = std::fs::remove_dir_all(&dir);
}
