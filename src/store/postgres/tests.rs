//! Tests against a real PostgreSQL, skipped unless `TEST_PG_URL`
//! names one (a role that may create databases: each test makes its own).
//! The behaviour tests run one sequence of calls against the SQLite
//! store and the PgStore and require the same results.
//!
//! `TEST_PG_DATADIR`, the server's data directory (its port and
//! socket settings in its postgresql.conf), also runs the test that stops
//! and restarts the server with pg_ctl (as the directory's owner).

#[cfg(test)]
use super::PgStore;
use crate::cron::JobDraft;
use crate::protocol::types::{
    ApprovalAuditEntry, ApprovalAuditEntryDecision, ChatMessageStatus, CronJob, CronJobSource,
    CronPayload, CronRun, CronRunStatus, CronSchedule, CronTrigger, HeartbeatRun, PairedDevice,
    Usage,
};
use crate::store::{
    CronWrite, SessionChange, SessionFilter, Store, StoreError, StoredNode, Stores,
};
use std::fmt::Debug;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

/// Held shared by every test using the server, exclusively by the one
/// that stops it.
static SERVER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn base_config() -> Option<tokio_postgres::Config> {
    match std::env::var("TEST_PG_URL") {
        Ok(url) => Some(url.parse().expect("TEST_PG_URL is a PostgreSQL URL")),
        Err(_) => {
            println!("TEST_PG_URL is not set: skipped");
            None
        }
    }
}

async fn admin(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = config.connect(NoTls).await.expect("connect as admin");
    tokio::spawn(connection);
    client
}

/// A database of the test's own.
struct TestDb {
    name: String,
    config: tokio_postgres::Config,
}

impl TestDb {
    async fn create() -> Option<TestDb> {
        let base = base_config()?;
        let name = format!("clawgate_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin(&base).await;
        // ICU's en-US orders "a" < "B" < "b" and lowercases é: a query
        // relying on the database's collation would differ from SQLite.
        let icu = format!(
            "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C.UTF-8' \
             LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
        );
        if admin.batch_execute(&icu).await.is_err() {
            let plain = format!("CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'");
            admin.batch_execute(&plain).await.expect("create database");
        }
        let mut config = base;
        config.dbname(&name);
        Some(TestDb { name, config })
    }

    async fn store(&self) -> PgStore {
        PgStore::connect_config(self.config.clone(), 4)
            .await
            .expect("connects")
    }

    async fn client(&self) -> tokio_postgres::Client {
        admin(&self.config).await
    }

    async fn drop(self) {
        let base = base_config().expect("set");
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        admin(&base).await.batch_execute(&sql).await.expect("drop");
    }
}

fn sqlite() -> (Store, PathBuf) {
    let dir = std::env::temp_dir().join(format!("clawgate-pgcmp-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    (Store::open(&dir).unwrap(), dir)
}

/// Runs `scenario` on SQLite and on a fresh PostgreSQL database and
/// requires the same record; the PgStore for more checks.
macro_rules! same_as_sqlite {
    ($scenario:ident) => {{
        let _server = SERVER.read().await;
        let Some(db) = TestDb::create().await else {
            return;
        };
        let (store, dir) = sqlite();
        let expected = $scenario(&Stores::sqlite(store)).await;
        let pg = Arc::new(db.store().await);
        let got = $scenario(&Stores::all_in(pg.clone())).await;
        std::fs::remove_dir_all(&dir).unwrap();
        assert_same(&expected, &got);
        (db, pg)
    }};
}

fn assert_same(sqlite: &[String], pg: &[String]) {
    for (i, (a, b)) in sqlite.iter().zip(pg).enumerate() {
        assert_eq!(a, b, "step {i} differs (left SQLite, right PostgreSQL)");
    }
    assert_eq!(sqlite.len(), pg.len(), "the number of steps differs");
}

/// A record of calls and their results (errors only as "Err": their
/// messages differ by engine).
#[derive(Default)]
struct Log(Vec<String>);

impl Log {
    fn add<T: Debug>(&mut self, what: &str, result: Result<T, StoreError>) -> Option<T> {
        match result {
            Ok(v) => {
                self.0.push(format!("{what}: Ok({v:?})"));
                Some(v)
            }
            Err(_) => {
                self.0.push(format!("{what}: Err"));
                None
            }
        }
    }
}

const KEYS: &[&str] = &[
    "agent:main:b",
    "agent:main:B",
    "agent:main:a",
    "Zed",
    "_under",
    "émile",
    "Émile",
    r"back\slash",
    "per%cent",
    "a_b",
    "aXb",
    "zz:colon:key",
];

fn filter(limit: usize) -> SessionFilter {
    SessionFilter {
        limit,
        ..SessionFilter::default()
    }
}

/// Every page of a listing, following the cursors.
async fn all_pages(s: &Stores, log: &mut Log, what: &str, mut filter: SessionFilter) {
    for page in 0..20 {
        let result = s.sessions.list_sessions(filter.clone()).await;
        let Some((_, next)) = log.add(&format!("{what} page {page}"), result) else {
            return;
        };
        match next {
            Some(cursor) => filter.cursor = Some(cursor),
            None => return,
        }
    }
    panic!("{what}: the cursor never ends");
}

async fn history_pages(s: &Stores, log: &mut Log, key: &str, limit: usize) {
    let mut before = None;
    for page in 0..50 {
        let result = s.sessions.history(key.into(), limit, before).await;
        let what = format!("history {key} limit {limit} page {page}");
        match log.add(&what, result) {
            Some(Some((_, Some(next)))) => before = Some(next),
            _ => return,
        }
    }
    panic!("history of {key}: the cursor never ends");
}

async fn sessions_scenario(s: &Stores) -> Vec<String> {
    let mut log = Log::default();
    let db = &s.sessions;
    for (i, key) in KEYS.iter().enumerate() {
        let agent = if i % 3 == 0 { "main" } else { "ops" };
        // Pairs of sessions share their last activity.
        let at = 1_000 + (i as u64 / 2) * 10;
        let run = format!("run-{i}");
        let begun = db
            .begin_turn(
                key.to_string(),
                agent.into(),
                run.clone(),
                format!("hi {i}"),
                at,
            )
            .await;
        log.add(&format!("begin {key}"), begun);
        if i % 2 == 0 {
            let status = if i % 4 == 0 {
                ChatMessageStatus::Complete
            } else {
                ChatMessageStatus::Aborted
            };
            let usage = Usage {
                input_tokens: i as u64,
                output_tokens: 2 * i as u64,
            };
            let finished = db
                .finish_turn(key.to_string(), run, format!("re {i}"), status, usage, at)
                .await;
            log.add(&format!("finish {key}"), finished);
        }
    }
    // A longer transcript, on a session whose key sorts first.
    for t in 0..7u64 {
        let key = "_under".to_string();
        let run = format!("long-{t}");
        let at = 2_000 + t;
        let begun = db
            .begin_turn(
                key.clone(),
                "other-agent".into(),
                run.clone(),
                format!("q{t}"),
                at,
            )
            .await;
        log.add("begin long", begun);
        let usage = Usage {
            input_tokens: t,
            output_tokens: t,
        };
        let done = ChatMessageStatus::Complete;
        log.add(
            "finish long",
            db.finish_turn(key, run, format!("a{t}"), done, usage, at)
                .await,
        );
    }
    for limit in [0, 1, 3, 5, 100] {
        all_pages(s, &mut log, &format!("all limit {limit}"), filter(limit)).await;
    }
    for search in [
        "main", "B", "b", "é", "É", "EMILE", "mile", "_", "%", r"\", r"back\s", "a_b", "zed", "",
        "nope", ":colon",
    ] {
        let f = SessionFilter {
            search: Some(search.into()),
            ..filter(4)
        };
        all_pages(s, &mut log, &format!("search {search:?}"), f).await;
    }
    let f = SessionFilter {
        agent_id: Some("ops".into()),
        ..filter(2)
    };
    all_pages(s, &mut log, "agent ops", f).await;
    let f = SessionFilter {
        active_since_ms: Some(1_020),
        search: Some("a".into()),
        agent_id: Some("main".into()),
        ..filter(1)
    };
    all_pages(s, &mut log, "combined", f).await;
    for cursor in ["nonsense", "abc:def", "1020:", "1020:Zed", "99999:", "-5:x"] {
        let f = SessionFilter {
            cursor: Some(cursor.into()),
            ..filter(3)
        };
        log.add(&format!("cursor {cursor}"), db.list_sessions(f).await);
    }
    for limit in [0, 1, 2, 3, 100] {
        history_pages(s, &mut log, "_under", limit).await;
    }
    log.add("history unknown", db.history("nope".into(), 5, None).await);
    log.add(
        "history before 1",
        db.history("_under".into(), 5, Some(1)).await,
    );
    log.add("session", db.session("Zed".into()).await);
    log.add("session unknown", db.session("nope".into()).await);
    let change = SessionChange {
        label: Some(Some("Émile's LABEL".into())),
        model: Some(Some("model-x".into())),
        thinking: None,
    };
    log.add("patch", db.patch_session("Zed".into(), change).await);
    let change = SessionChange {
        label: None,
        model: Some(None),
        thinking: Some(Some("high".into())),
    };
    log.add("patch again", db.patch_session("Zed".into(), change).await);
    log.add(
        "patch unknown",
        db.patch_session("nope".into(), SessionChange::default())
            .await,
    );
    for search in ["label", "LABEL", "émile's", "s la"] {
        let f = SessionFilter {
            search: Some(search.into()),
            ..filter(10)
        };
        log.add(&format!("search label {search}"), db.list_sessions(f).await);
    }
    log.add("clear keep 9", db.clear_session("_under".into(), 9).await);
    log.add(
        "clear keep 100",
        db.clear_session("_under".into(), 100).await,
    );
    history_pages(s, &mut log, "_under", 4).await;
    log.add("clear keep 1", db.clear_session("_under".into(), 1).await);
    log.add("clear keep 0", db.clear_session("Zed".into(), 0).await);
    log.add("clear unknown", db.clear_session("nope".into(), 1).await);
    log.add("session cleared", db.session("Zed".into()).await);
    history_pages(s, &mut log, "_under", 4).await;
    log.add("delete", db.delete_session("_under".into()).await);
    log.add("delete again", db.delete_session("_under".into()).await);
    log.add("deleted session", db.session("_under".into()).await);
    log.add(
        "deleted history",
        db.history("_under".into(), 5, None).await,
    );
    // Ids go on from the highest ever given.
    let begun = db
        .begin_turn(
            "_under".into(),
            "main".into(),
            "again".into(),
            "hi".into(),
            3_000,
        )
        .await;
    log.add("begin again", begun);
    log.add("history again", db.history("_under".into(), 5, None).await);
    all_pages(s, &mut log, "final", filter(4)).await;

    // Idempotent results.
    let results = &s.results;
    log.add("no result", results.idempotent_result("k1".into(), 0).await);
    let put = results
        .remember_result("k1".into(), r#"{"a":1}"#.into(), 100)
        .await;
    log.add("remember", put);
    log.add(
        "result since 100",
        results.idempotent_result("k1".into(), 100).await,
    );
    log.add(
        "result since 101",
        results.idempotent_result("k1".into(), 101).await,
    );
    let put = results
        .remember_result("k1".into(), r#"{"a":2}"#.into(), 200)
        .await;
    log.add("remember again", put);
    log.add(
        "result since 150",
        results.idempotent_result("k1".into(), 150).await,
    );
    let put = results
        .remember_result("k2".into(), "null".into(), 300)
        .await;
    log.add("remember k2", put);

    // Upkeep.
    let upkeep = &s.upkeep;
    log.add("prune keys", upkeep.prune(250, None).await);
    log.add("prune keys again", upkeep.prune(250, Some(0)).await);
    log.add("k1 pruned", results.idempotent_result("k1".into(), 0).await);
    log.add("k2 kept", results.idempotent_result("k2".into(), 0).await);
    // Ties go in the order of SQLite's index (key descending), not in
    // the order of insertion.
    for key in ["tie-a", "tie-c", "tie-b"] {
        let begun = db.begin_turn(key.into(), "main".into(), "r".into(), "t".into(), 500);
        log.add("begin tie", begun.await);
    }
    log.add("prune a tie", upkeep.prune_sessions(501, 1).await);
    let ties = SessionFilter {
        search: Some("tie-".into()),
        ..filter(10)
    };
    log.add("ties left", db.list_sessions(ties).await);
    log.add("prune ties", upkeep.prune_sessions(501, 10).await);
    log.add("prune none", upkeep.prune_sessions(1_000, 10).await);
    log.add("prune limit 0", upkeep.prune_sessions(5_000, 0).await);
    // Two sessions each at 1000, 1010 and 1020: the three longest idle
    // go, one of the two at 1010 among them.
    log.add("prune 3", upkeep.prune_sessions(1_030, 3).await);
    all_pages(s, &mut log, "after prune", filter(100)).await;
    log.add("prune rest", upkeep.prune_sessions(1_030, 10).await);
    all_pages(s, &mut log, "after prune rest", filter(100)).await;
    log.add("compact", upkeep.compact().await.map(|_| "pages"));

    // A message of a session that does not exist: refused by both (and
    // PostgreSQL spends an id on it, so this comes last).
    let orphan = db
        .finish_turn(
            "nope".into(),
            "r".into(),
            "t".into(),
            ChatMessageStatus::Complete,
            Usage {
                input_tokens: 0,
                output_tokens: 0,
            },
            1,
        )
        .await;
    log.add("finish without session", orphan);
    log.0
}

#[tokio::test]
async fn sessions_results_and_upkeep_behave_as_on_sqlite() {
    let (db, pg) = same_as_sqlite!(sessions_scenario);
    // Pruned sessions took their transcripts (the foreign key's cascade).
    let client = db.client().await;
    let orphans: i64 = client
        .query_one(
            "SELECT count(*) FROM messages m WHERE NOT EXISTS
             (SELECT 1 FROM sessions s WHERE s.key = m.session_key)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(orphans, 0);
    use crate::store::UpkeepStore;
    assert_eq!(pg.compact().await.unwrap(), 0);
    drop(client);
    db.drop().await;
}

fn job(id: &str) -> CronJob {
    JobDraft {
        name: format!("job {id}"),
        enabled: true,
        schedule: CronSchedule::Every {
            every_ms: 1000,
            anchor_ms: None,
        },
        payload: CronPayload::SystemEvent {
            text: "beat".parse().unwrap(),
        },
        agent_id: None,
        session_key: None,
        delete_after_run: false,
        timeout_ms: None,
    }
    .into_job(id.into(), CronJobSource::Api, 1_000)
}

fn run(id: u64, job_id: &str, at: u64) -> CronRun {
    CronRun {
        id: NonZeroU64::new(id).unwrap(),
        job_id: job_id.into(),
        status: CronRunStatus::Ok,
        trigger: CronTrigger::Schedule,
        scheduled_at_ms: Some(at),
        started_at_ms: at,
        finished_at_ms: Some(at + 5),
        duration_ms: Some(5),
        error: None,
        summary: Some(format!("run at {at}")),
        session_key: None,
        run_id: None,
    }
}

async fn cron_scenario(s: &Stores) -> Vec<String> {
    let mut log = Log::default();
    let cron = &s.cron;
    log.add("no jobs", cron.cron_jobs().await);
    log.add("no runs yet", cron.cron_last_run_id().await);
    let saves = ["job-1", "B", "a", "_x"].map(|id| CronWrite::SaveJob(job(id)));
    log.add("save", cron.cron_apply(saves.to_vec()).await);
    log.add("jobs", cron.cron_jobs().await);
    // As store/cron.rs's own test: ten runs, the newest four kept.
    for i in 0..10u64 {
        let writes = vec![CronWrite::PutRun {
            run: run(i + 1, "job-1", i * 1000),
            keep: 4,
        }];
        log.add("put run", cron.cron_apply(writes).await);
    }
    log.add("last id", cron.cron_last_run_id().await);
    let mut before = None;
    for page in 0..5 {
        let result = cron.cron_runs("job-1".into(), 3, before).await;
        match log.add(&format!("runs page {page}"), result) {
            Some((_, Some(next))) => before = Some(next),
            _ => break,
        }
    }
    log.add(
        "runs limit 0",
        cron.cron_runs("job-1".into(), 0, None).await,
    );
    log.add("run 8", cron.cron_run(8).await);
    log.add("run 2 (pruned)", cron.cron_run(2).await);
    log.add("run unknown", cron.cron_run(999).await);
    // Runs left running, a replaced run, several jobs in one write.
    let mut running = run(11, "B", 20_000);
    running.status = CronRunStatus::Running;
    running.finished_at_ms = None;
    running.duration_ms = None;
    running.summary = None;
    running.trigger = CronTrigger::Manual;
    running.session_key = Some("cron:B".into());
    running.run_id = Some("r-11".into());
    let mut other = running.clone();
    other.id = NonZeroU64::new(12).unwrap();
    other.job_id = "a".into();
    other.scheduled_at_ms = None;
    let mut replaced = run(10, "job-1", 9_000);
    replaced.status = CronRunStatus::Error;
    replaced.error = Some("boom".into());
    let writes = vec![
        CronWrite::PutRun {
            run: other.clone(),
            keep: 1,
        },
        CronWrite::PutRun {
            run: running.clone(),
            keep: 5,
        },
        CronWrite::PutRun {
            run: replaced,
            keep: 2,
        },
        CronWrite::SaveJob(job("c")),
    ];
    log.add("mixed", cron.cron_apply(writes).await);
    log.add("unfinished", cron.cron_unfinished_runs().await);
    log.add("runs job-1", cron.cron_runs("job-1".into(), 10, None).await);
    running.status = CronRunStatus::Ok;
    running.finished_at_ms = Some(20_010);
    let writes = vec![CronWrite::PutRun {
        run: running,
        keep: 5,
    }];
    log.add("finish running", cron.cron_apply(writes).await);
    log.add("unfinished after", cron.cron_unfinished_runs().await);
    // A run with an id below those given (ids come from the caller).
    let writes = vec![CronWrite::PutRun {
        run: run(3, "c", 1),
        keep: 5,
    }];
    log.add("low id", cron.cron_apply(writes).await);
    log.add("last id after low", cron.cron_last_run_id().await);
    let delete = ["job-1", "B", "a", "c"].map(|id| CronWrite::DeleteJob(id.into()));
    log.add("delete", cron.cron_apply(delete.to_vec()).await);
    log.add(
        "runs deleted",
        cron.cron_runs("job-1".into(), 10, None).await,
    );
    log.add("jobs left", cron.cron_jobs().await);
    log.add("last id kept", cron.cron_last_run_id().await);
    let writes = vec![CronWrite::DeleteJob("nope".into())];
    log.add("delete unknown", cron.cron_apply(writes).await);
    log.0
}

#[tokio::test]
async fn cron_behaves_as_on_sqlite() {
    let (db, pg) = same_as_sqlite!(cron_scenario);
    drop(pg);
    db.drop().await;
}

/// store/cron.rs's own test, on PostgreSQL.
#[tokio::test]
async fn cron_history_is_pruned_to_the_newest_runs_and_pages_backwards() {
    use crate::store::CronStore;
    let _server = SERVER.read().await;
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = db.store().await;
    let save = vec![CronWrite::SaveJob(job("job-1"))];
    store.cron_apply(save).await.unwrap();
    for i in 0..10u64 {
        let writes = vec![CronWrite::PutRun {
            run: run(i + 1, "job-1", i * 1000),
            keep: 4,
        }];
        store.cron_apply(writes).await.unwrap();
    }
    assert_eq!(store.cron_last_run_id().await.unwrap(), 10);
    let (page, next) = store.cron_runs("job-1".into(), 3, None).await.unwrap();
    let starts: Vec<u64> = page.iter().map(|r| r.started_at_ms).collect();
    assert_eq!(starts, [9000, 8000, 7000]);
    let (rest, last) = store.cron_runs("job-1".into(), 3, next).await.unwrap();
    assert_eq!(rest.len(), 1, "only the newest four are kept");
    assert_eq!(rest[0].started_at_ms, 6000);
    assert_eq!(last, None);
    let again = store.cron_run(rest[0].id.get()).await.unwrap();
    assert_eq!(Some(rest[0].clone()), again);
    assert_eq!(store.cron_jobs().await.unwrap(), vec![job("job-1")]);
    let delete = vec![CronWrite::DeleteJob("job-1".into())];
    store.cron_apply(delete).await.unwrap();
    let (runs, _) = store.cron_runs("job-1".into(), 10, None).await.unwrap();
    assert!(runs.is_empty());
    assert!(store.cron_jobs().await.unwrap().is_empty());
    assert_eq!(
        store.cron_last_run_id().await.unwrap(),
        10,
        "ids are never reused"
    );
    drop(store);
    db.drop().await;
}

fn node(id: &str, token: &str, at: u64) -> StoredNode {
    StoredNode {
        id: id.into(),
        name: format!("node {id}"),
        platform: "linux".into(),
        caps: vec!["camera".into(), "screen".into()],
        commands: vec![],
        token_hash: token.into(),
        paired_at_ms: at,
    }
}

fn device(id: &str, name: Option<&str>) -> PairedDevice {
    serde_json::from_value(serde_json::json!({
        "deviceId": id,
        "displayName": name,
        "pairedAtMs": 5,
        "publicKey": format!("key-{id}"),
        "roles": [],
    }))
    .unwrap()
}

fn heartbeat(agent: &str, at: u64) -> HeartbeatRun {
    serde_json::from_value(serde_json::json!({
        "agentId": agent,
        "atMs": at,
        "delivered": false,
        "outcome": "kept",
        "preview": "ok",
    }))
    .unwrap()
}

fn entry(
    agent: &str,
    command: &str,
    decision: ApprovalAuditEntryDecision,
    at: u64,
) -> ApprovalAuditEntry {
    ApprovalAuditEntry {
        id: NonZeroU64::MIN,
        approval_id: Some(format!("ap-{at}")),
        command: command.into(),
        argv: command.split(' ').map(String::from).collect(),
        cwd: (at % 2 == 0).then(|| "/tmp".into()),
        agent_id: agent.into(),
        session_key: Some("agent:main:main".into()),
        node_id: None,
        decision,
        decided_by: Some("policy".into()),
        requested_at_ms: at,
        decided_at_ms: at + 1,
    }
}

async fn records_scenario(s: &Stores) -> Vec<String> {
    let mut log = Log::default();
    // Nodes.
    let nodes = &s.nodes;
    log.add("no nodes", nodes.nodes().await);
    for (i, id) in ["b", "A", "a", "_x", "é"].iter().enumerate() {
        let added = nodes
            .add_node(node(id, &format!("hash-{id}"), i as u64))
            .await;
        log.add(&format!("add {id}"), added);
    }
    let mut renamed = node("a", "hash-a2", 99);
    renamed.name = "renamed".into();
    renamed.commands = vec!["x".into()];
    log.add("replace a", nodes.add_node(renamed).await);
    log.add("token taken", nodes.add_node(node("c", "hash-b", 1)).await);
    log.add("nodes", nodes.nodes().await);
    log.add("remove a", nodes.remove_node("a".into()).await);
    log.add("remove a again", nodes.remove_node("a".into()).await);
    log.add("nodes after", nodes.nodes().await);

    // Devices.
    let devices = &s.devices;
    log.add("no devices", devices.devices().await);
    for id in ["d2", "D1", "d1", "d10"] {
        log.add(
            &format!("put {id}"),
            devices.put_device(device(id, None)).await,
        );
    }
    log.add(
        "replace d1",
        devices.put_device(device("d1", Some("mine"))).await,
    );
    log.add("devices", devices.devices().await);
    log.add("remove d2", devices.remove_device("d2".into()).await);
    log.add("remove unknown", devices.remove_device("zz".into()).await);
    log.add("devices after", devices.devices().await);

    // The audit log and the allowlist.
    let audit = &s.audit;
    use ApprovalAuditEntryDecision as D;
    let entries = [
        entry("main", "zeta run", D::AllowAlways, 10),
        entry("main", "ls -l", D::Denied, 20),
        entry("main", "Alpha", D::AllowAlways, 30),
        entry("main", "zeta run", D::AllowAlways, 40),
        entry("other", "beta", D::AllowAlways, 50),
        entry("main", "_under", D::AllowAlways, 60),
        entry("main", "once", D::AllowOnce, 70),
    ];
    for e in entries {
        let binding = format!("bind:{}", e.command);
        let what = format!("record {}", e.requested_at_ms);
        log.add(&what, audit.record_exec_decision(e, binding).await);
    }
    log.add("allowed main", audit.exec_allowed("main".into()).await);
    log.add("allowed other", audit.exec_allowed("other".into()).await);
    log.add("allowed none", audit.exec_allowed("none".into()).await);
    let mut before = None;
    for page in 0..10 {
        match log.add(
            &format!("audit page {page}"),
            audit.exec_audit(3, before).await,
        ) {
            Some((_, Some(next))) => before = Some(next),
            _ => break,
        }
    }
    log.add("audit limit 0", audit.exec_audit(0, None).await);
    log.add("prune audit", s.upkeep.prune(0, Some(41)).await);
    log.add("audit after prune", audit.exec_audit(10, None).await);
    log.add(
        "allowed after prune",
        audit.exec_allowed("main".into()).await,
    );

    // Channel offsets.
    let channels = &s.channels;
    let offset = |c: &str, a: &str| channels.channel_offset(c.into(), a.into());
    log.add("no offset", offset("telegram", "default").await);
    let set = channels.set_channel_offset("telegram".into(), "default".into(), 5);
    log.add("set", set.await);
    let set = channels.set_channel_offset("telegram".into(), "default".into(), 7);
    log.add("set again", set.await);
    let set = channels.set_channel_offset("telegram".into(), "other".into(), -3);
    log.add("set other", set.await);
    log.add("offset", offset("telegram", "default").await);
    log.add("offset other", offset("telegram", "other").await);
    log.add("offset elsewhere", offset("irc", "default").await);

    // Heartbeats.
    let beats = &s.heartbeats;
    log.add("no heartbeats", beats.last_heartbeats().await);
    for (agent, at) in [("main", 1), ("Ops", 2), ("dev", 3), ("main", 4)] {
        log.add(
            &format!("beat {agent}"),
            beats.record_heartbeat(heartbeat(agent, at)).await,
        );
    }
    log.add("heartbeats", beats.last_heartbeats().await);
    log.0
}

#[tokio::test]
async fn records_behave_as_on_sqlite() {
    let (db, pg) = same_as_sqlite!(records_scenario);
    drop(pg);
    db.drop().await;
}

async fn applied_versions(db: &TestDb) -> Vec<i32> {
    let client = db.client().await;
    let rows = client
        .query(
            "SELECT version FROM clawgate_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn migrations_apply_once_when_gateways_start_together_and_again() {
    let _server = SERVER.read().await;
    let Some(db) = TestDb::create().await else {
        return;
    };
    let all: Vec<i32> = (1..=super::migrations::count() as i32).collect();
    let (a, b, c) = tokio::join!(db.store(), db.store(), db.store());
    assert_eq!(applied_versions(&db).await, all);
    drop((a, b, c));
    let again = db.store().await;
    assert_eq!(applied_versions(&db).await, all, "nothing applied twice");
    drop(again);
    db.drop().await;
}

#[tokio::test]
async fn connects_by_url_with_a_password_given_apart() {
    let _server = SERVER.read().await;
    let Ok(url) = std::env::var("TEST_PG_URL") else {
        println!("TEST_PG_URL is not set: skipped");
        return;
    };
    // The test server trusts its clients: the password is sent only if
    // asked for, and must not matter.
    let store = PgStore::connect(&url, Some("unused"), 1).await.unwrap();
    use crate::store::ResultStore;
    store.idempotent_result("x".into(), 0).await.unwrap();
    let alt = url.replacen("postgres://", "postgresql://", 1);
    PgStore::connect(&alt, None, 1).await.unwrap();
}

#[tokio::test]
async fn refuses_what_is_not_a_url() {
    let e = PgStore::connect("host=localhost password=secret", None, 1)
        .await
        .err()
        .unwrap();
    assert!(e.0.contains("must start with postgres://"), "{e}");
    assert!(!e.0.contains("secret"));
    let e = PgStore::connect("postgres:///db", None, 1)
        .await
        .err()
        .unwrap();
    assert!(e.0.contains("names no host"), "{e}");
    let e = PgStore::connect("postgres://u:pw@h:notaport/db", None, 1)
        .await
        .err()
        .unwrap();
    assert!(e.0.starts_with("invalid PostgreSQL URL"), "{e}");
    assert!(!e.0.contains("pw"), "{e}");
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_refused_connection_is_unavailable_at_once_and_names_no_password() {
    let port = closed_port();
    let url = format!("postgres://clawgate:in-url-pw@127.0.0.1:{port}/db");
    let started = Instant::now();
    let e = PgStore::connect(&url, Some("given-pw"), 2)
        .await
        .err()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(e.is_unavailable(), "{e}");
    let prefix = format!("unavailable: PostgreSQL at 127.0.0.1:{port} cannot be reached: ");
    assert!(e.0.starts_with(&prefix), "{e}");
    assert!(!e.0.contains("pw"), "{e}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_unavailable_within_seconds() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts, then says nothing.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let url = format!("postgres://clawgate@127.0.0.1:{port}/db");
    let started = Instant::now();
    let e = PgStore::connect(&url, None, 1).await.err().unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(7), "took {took:?}");
    assert!(e.is_unavailable(), "{e}");
    silent.abort();
}

#[tokio::test]
async fn refusals_by_the_server_are_not_unavailability() {
    let _server = SERVER.read().await;
    let Some(base) = base_config() else {
        return;
    };
    let mut config = base;
    config.dbname("clawgate_no_such_database");
    let e = PgStore::connect_config(config, 1).await.err().unwrap();
    assert!(!e.is_unavailable(), "{e}");
    assert!(e.0.contains("3D000"), "{e}");
}

/// Runs pg_ctl on the data directory as its owner.
fn pg_ctl(datadir: &Path, args: &[&str]) {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let meta = std::fs::metadata(datadir).expect("TEST_PG_DATADIR exists");
    let status = std::process::Command::new("pg_ctl")
        .arg("-D")
        .arg(datadir)
        .args(args)
        .uid(meta.uid())
        .gid(meta.gid())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("pg_ctl runs");
    assert!(status.success(), "pg_ctl {args:?} failed");
}

/// Starts the server again when dropped, should the test fail while it
/// is stopped.
struct Stopped<'a>(&'a Path, bool);

impl Stopped<'_> {
    fn start(&mut self) {
        let log = self.0.join("clawgate-test-restart.log");
        pg_ctl(self.0, &["start", "-w", "-l", log.to_str().unwrap()]);
        self.1 = false;
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.start();
        }
    }
}

#[tokio::test]
async fn calls_fail_fast_while_the_server_is_down_and_work_once_it_is_back() {
    use crate::store::{ResultStore, SessionStore};
    let Ok(datadir) = std::env::var("TEST_PG_DATADIR") else {
        println!("TEST_PG_DATADIR is not set: skipped");
        return;
    };
    let datadir = PathBuf::from(datadir);
    let _server = SERVER.write().await;
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = db.store().await;
    let remember = store.remember_result("k".into(), "1".into(), 10);
    remember.await.unwrap();
    // Every pooled connection busy once, so all are dropped by the stop.
    let (a, b) = tokio::join!(store.session("x".into()), store.session("y".into()));
    a.unwrap();
    b.unwrap();

    pg_ctl(&datadir, &["stop", "-m", "fast", "-w"]);
    let mut stopped = Stopped(&datadir, true);
    // The first call may meet a pooled connection the server closed
    // (57P01), later ones a refused connect: both are unavailability.
    for attempt in 0..3 {
        let started = Instant::now();
        let e = store.idempotent_result("k".into(), 0).await.unwrap_err();
        let took = started.elapsed();
        assert!(e.is_unavailable(), "attempt {attempt}: {e}");
        assert!(
            took < Duration::from_secs(6),
            "attempt {attempt} took {took:?}"
        );
        let e = store
            .begin_turn("s".into(), "a".into(), "r".into(), "t".into(), 1)
            .await
            .unwrap_err();
        assert!(e.is_unavailable(), "{e}");
    }

    stopped.start();
    // The pool replaced its dead connections: the first call works.
    let found = store.idempotent_result("k".into(), 0).await.unwrap();
    assert_eq!(found.as_deref(), Some("1"));
    let begun = store.begin_turn("s".into(), "a".into(), "r".into(), "t".into(), 1);
    begun.await.unwrap();
    drop(store);
    db.drop().await;
}

#[test]
fn messages_name_the_server_as_host_and_port_or_socket() {
    let described = |url: &str| super::describe_target(&url.parse().unwrap());
    assert_eq!(described("postgres://u:pw@db.local/x"), "db.local:5432");
    assert_eq!(described("postgres://u@[::1]:6000/x"), "[::1]:6000");
    assert_eq!(
        described("postgresql://u@/x?host=/run/postgresql&port=5433"),
        "/run/postgresql/.s.PGSQL.5433"
    );
    assert_eq!(described("postgres://u@a:1,b:2/x"), "a:1, b:2");
}
