//! Several gateways as one: three `clawgate` processes on one PostgreSQL
//! database and one `nats-server`, each on its own port.

use crate::engines::{NatsServer, PgServer};
use crate::support::*;
use serde_json::{json, Value};

/// A NATS server, a fresh database and the gateways sharing them.
pub struct Cluster {
    pub nats: NatsServer,
    pub store_url: String,
    pub gateways: Vec<TestGateway>,
}

impl Cluster {
    pub async fn start(count: usize, sections: &str) -> Cluster {
        let nats = NatsServer::start();
        let store_url = PgServer::shared().fresh_database();
        let mut cluster = Cluster {
            nats,
            store_url,
            gateways: Vec::new(),
        };
        for i in 0..count {
            cluster.add(&format!("gw-{}", (b'a' + i as u8) as char), sections);
        }
        cluster
    }

    /// Starts one more member named `name`.
    pub fn add(&mut self, name: &str, sections: &str) {
        let dir = temp_dir("cluster");
        let config = dir.join("clawgate.toml");
        std::fs::write(&config, format!("{}\n{sections}", token_config())).unwrap();
        self.add_with_config(name, &dir, &config);
    }

    /// A member process named `name` (the suite's lease time) whose
    /// stdout and stderr the test reads; the caller waits for it.
    pub fn spawn_piped(&self, name: &str) -> std::process::Child {
        use std::process::{Command, Stdio};
        let dir = temp_dir("cluster-piped");
        let config = dir.join("clawgate.toml");
        std::fs::write(&config, token_config()).unwrap();
        Command::new(bin())
            .args(["run", "--config", config.to_str().unwrap(), "--state-dir"])
            .arg(dir.join("state"))
            .env("CLAWGATE_LOG", "warn")
            .env(STORE_URL_VAR, &self.store_url)
            .env("CLAWGATE_CLUSTER__NATS__URL", &self.nats.url)
            .env("CLAWGATE_CLUSTER__NAME", name)
            .env("CLAWGATE_CLUSTER__LEASE_MS", "3000")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Starts one more member named `name`, in `dir`, on the config file
    /// `config` (which other members may share).
    pub fn add_with_config(&mut self, name: &str, dir: &std::path::Path, config: &std::path::Path) {
        let gw = TestGateway::spawn(
            dir,
            &["--config", config.to_str().unwrap()],
            &[
                (STORE_URL_VAR, &self.store_url),
                ("CLAWGATE_CLUSTER__NATS__URL", &self.nats.url),
                ("CLAWGATE_CLUSTER__NAME", name),
                // Short leases: members and lapsed leases show within a second.
                ("CLAWGATE_CLUSTER__LEASE_MS", "3000"),
            ],
        );
        self.gateways.push(gw);
    }
}

/// The agent.message events of one run, until its final one, and the
/// `seq` of every event the connection got meanwhile.
async fn run_events(ws: &mut Ws, run_id: &str) -> (Vec<Value>, Vec<u64>) {
    let mut events = Vec::new();
    let mut seqs = Vec::new();
    loop {
        let frame = ws.recv().await;
        if let Some(seq) = frame["seq"].as_u64() {
            seqs.push(seq);
        }
        if frame["event"] != "agent.message" || frame["data"]["runId"] != run_id {
            continue;
        }
        let done = frame["data"]["state"] != "delta";
        events.push(frame);
        if done {
            return (events, seqs);
        }
    }
}

#[tokio::test]
async fn a_chat_on_one_gateway_streams_to_clients_of_the_others_in_order() {
    let cluster = Cluster::start(3, "").await;
    let [a, b, c] = &cluster.gateways[..] else {
        unreachable!()
    };
    let mut on_b = b.operator().await;
    let mut on_c = c.operator().await;
    let mut caller = a.operator().await;
    let text = "one gateway streams to all three";
    let frame = caller
        .call("chat", json!({"message": text, "sessionKey": "shared"}))
        .await;
    let run_id = frame["result"]["runId"].as_str().unwrap().to_string();
    for ws in [&mut on_b, &mut on_c] {
        let (events, seqs) = run_events(ws, &run_id).await;
        let run_seqs: Vec<u64> = events
            .iter()
            .map(|e| e["data"]["runSeq"].as_u64().unwrap())
            .collect();
        assert_eq!(run_seqs, (1..=events.len() as u64).collect::<Vec<_>>());
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "each connection's seq has no gaps: {seqs:?}"
        );
        let streamed: String = events
            .iter()
            .filter_map(|e| e["data"]["delta"].as_str())
            .collect();
        assert_eq!(streamed, text);
        assert_eq!(
            events.last().unwrap()["data"]["message"],
            frame["result"]["message"]
        );
    }
    // The transcript is one, whichever gateway is asked.
    let history = on_c
        .call("sessions.history", json!({"sessionKey": "shared"}))
        .await;
    let messages = history["result"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{history}");
    assert_eq!(messages[1]["content"], text);
}

#[tokio::test]
async fn two_chats_on_one_session_from_two_gateways_run_one_after_the_other() {
    let cluster = Cluster::start(2, "").await;
    let [a, b] = &cluster.gateways[..] else {
        unreachable!()
    };
    let mut on_a = a.operator().await;
    let mut on_b = b.operator().await;
    let first = "alpha ".repeat(300);
    let second = "beta ".repeat(300);
    on_a.request("chat", json!({"message": first, "sessionKey": "one"}))
        .await;
    on_b.request("chat", json!({"message": second, "sessionKey": "one"}))
        .await;
    for ws in [&mut on_a, &mut on_b] {
        loop {
            let frame = ws.recv().await;
            if frame.get("event").is_none() {
                assert!(frame.get("result").is_some(), "{frame}");
                break;
            }
        }
    }
    let history = on_a
        .call("sessions.history", json!({"sessionKey": "one"}))
        .await;
    let messages = history["result"]["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    // Never user, user: each turn stored its reply before the next began.
    assert_eq!(
        roles,
        ["user", "assistant", "user", "assistant"],
        "{history}"
    );
    assert_eq!(messages[0]["runId"], messages[1]["runId"]);
    assert_eq!(messages[2]["runId"], messages[3]["runId"]);
    // A chat that does not wait is refused while the other gateway runs
    // a turn on the session.
    let long = "gamma ".repeat(4000);
    on_a.request("chat", json!({"message": long, "sessionKey": "two"}))
        .await;
    while on_a.event("agent.message").await["data"]["sessionKey"] != "two" {}
    let busy = on_b
        .call(
            "chat",
            json!({"message": "now", "sessionKey": "two", "wait": false}),
        )
        .await;
    assert_eq!(busy["error"]["code"], -32007, "conflict: {busy}");
}

#[tokio::test]
async fn health_shows_every_member_and_the_leases_held() {
    let cluster = Cluster::start(3, "").await;
    let mut ws = cluster.gateways[1].operator().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let cluster_health = loop {
        let health = ws.call("health", json!({})).await;
        let view = health["result"]["cluster"].clone();
        let names: Vec<&str> = view["members"]
            .as_array()
            .map(|m| m.iter().filter_map(|m| m["name"].as_str()).collect())
            .unwrap_or_default();
        if names == ["gw-a", "gw-b", "gw-c"] {
            break view;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "members never showed: {health}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(cluster_health["member"], "gw-b");
    assert_eq!(cluster_health["store"], "postgres");
    assert_eq!(cluster_health["bus"], "nats");
    assert_eq!(cluster_health["storeState"], "ok");
    assert_eq!(cluster_health["busState"], "connected");
    let version = env!("CARGO_PKG_VERSION");
    for member in cluster_health["members"].as_array().unwrap() {
        assert_eq!(member["version"], version);
    }

    // Presence on B lists who is connected to every member, and where.
    let _on_a = cluster.gateways[0].operator().await;
    let _on_c = cluster.gateways[2].operator().await;
    let presence = ws.call("presence.list", json!({})).await;
    let mut gateways: Vec<&str> = presence["result"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["online"] == true)
        .map(|e| e["gateway"].as_str().unwrap())
        .collect();
    gateways.sort();
    gateways.dedup();
    assert_eq!(gateways, ["gw-a", "gw-b", "gw-c"], "{presence}");
}

/// The member holding lease `name`, as gateway `gw` sees it.
async fn lease_holder(gw: &TestGateway, name: &str) -> String {
    let mut ws = gw.operator().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let health = ws.call("health", json!({})).await;
        let leases = health["result"]["cluster"]["leases"].clone();
        if let Some(lease) = leases
            .as_array()
            .and_then(|l| l.iter().find(|l| l["name"] == name))
        {
            return lease["holder"].as_str().unwrap().to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nobody took lease {name}: {health}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The slots of job `id` started during `window`, as one client sees them.
async fn started_slots(ws: &mut Ws, id: &str, window: std::time::Duration) -> Vec<u64> {
    let deadline = tokio::time::Instant::now() + window;
    let mut slots = Vec::new();
    while let Ok(frame) = tokio::time::timeout_at(deadline, ws.recv()).await {
        if frame["event"] == "cron.started" && frame["data"]["jobId"] == id {
            slots.push(frame["data"]["scheduledAtMs"].as_u64().unwrap());
        }
    }
    slots
}

#[tokio::test]
async fn a_job_every_second_fires_once_per_slot_across_the_cluster_and_survives_its_runner() {
    let mut cluster = Cluster::start(3, "").await;
    let leader = lease_holder(&cluster.gateways[0], "cron").await;
    let index = ["gw-a", "gw-b", "gw-c"]
        .iter()
        .position(|n| *n == leader)
        .unwrap();
    let other = (index + 1) % 3;
    let watcher_at = (index + 2) % 3;
    // Added on a gateway that does not run cron: forwarded to the one that does.
    let mut ws = cluster.gateways[other].operator().await;
    let added = ws
        .call(
            "cron.add",
            json!({"schedule": {"kind": "every", "everyMs": 1000},
                   "payload": {"kind": "systemEvent", "text": "tick"}}),
        )
        .await;
    let id = added["result"]["id"].as_str().expect("added").to_string();
    let mut watcher = cluster.gateways[watcher_at].operator().await;
    let slots = started_slots(&mut watcher, &id, std::time::Duration::from_secs(10)).await;
    let mut unique = slots.clone();
    unique.dedup();
    assert_eq!(unique, slots, "each slot fires once: {slots:?}");
    assert!(slots.len() >= 8, "one run a second for 10 s: {slots:?}");
    // Every gateway lists the job and its runs.
    for gw in &cluster.gateways {
        let mut ws = gw.operator().await;
        let list = ws.call("cron.list", json!({})).await;
        assert_eq!(list["result"]["jobs"][0]["id"], id, "{list}");
        let runs = ws.call("cron.runs", json!({"id": id, "limit": 100})).await;
        let mut ids: Vec<u64> = runs["result"]["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_u64().unwrap())
            .collect();
        let count = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count, "run ids are unique: {runs}");
    }
    // The gateway running cron dies: another takes over within the lease
    // time, and the slots go on firing once each.
    unsafe_kill(cluster.gateways[index].child.id(), "KILL");
    let _ = cluster.gateways[index].child.wait();
    let slots = started_slots(&mut watcher, &id, std::time::Duration::from_secs(8)).await;
    let mut unique = slots.clone();
    unique.dedup();
    assert_eq!(
        unique, slots,
        "each slot fires once after the failover: {slots:?}"
    );
    assert!(
        slots.len() >= 3,
        "another gateway took over within the 3 s lease: {slots:?}"
    );
    let new_leader = lease_holder(&cluster.gateways[other], "cron").await;
    assert_ne!(new_leader, leader);
    cluster.gateways.remove(index);
}

#[tokio::test]
async fn while_postgresql_is_down_calls_say_unavailable_and_the_gateway_recovers_by_itself() {
    use clawgate::protocol::ErrorCode;
    use std::time::{Duration, Instant};
    let pg = PgServer::start();
    let url = pg.fresh_database();
    let upstream = crate::fake_openai::FakeOpenAi::start(crate::fake_openai::Script::Hang).await;
    let dir = temp_dir("pg-down");
    let config = dir.join("clawgate.toml");
    std::fs::write(
        &config,
        format!(
            "{}[agents.main]\nprovider = \"echo\"\n[agents.slow]\nprovider = \"openai\"\nbaseUrl = \"{}\"\nmodel = \"m\"\n",
            token_config(),
            upstream.base_url
        ),
    )
    .unwrap();
    let gw = TestGateway::spawn(
        &dir,
        &["--config", config.to_str().unwrap()],
        &[
            (STORE_URL_VAR, &url),
            ("CLAWGATE_CLUSTER__LEASE_MS", "3000"),
        ],
    );
    let mut ws = gw.operator().await;
    let before = ws
        .call("chat", json!({"message": "before", "sessionKey": "s"}))
        .await;
    assert!(before["result"].is_object(), "{before}");
    // A turn waiting on its upstream holds its session's lease.
    let mut hanging = gw.operator().await;
    let turn = hanging
        .request(
            "chat",
            json!({"message": "wait", "agentId": "slow", "sessionKey": "h"}),
        )
        .await;
    while upstream.requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    pg.halt();
    let asked = Instant::now();
    let down = ws
        .call("sessions.history", json!({"sessionKey": "s"}))
        .await;
    assert_eq!(
        down["error"]["code"],
        ErrorCode::Unavailable.code(),
        "{down}"
    );
    assert!(
        down["error"]["message"]
            .as_str()
            .unwrap()
            .contains("try again"),
        "{down}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "answered within seconds"
    );
    let chat = ws
        .call("chat", json!({"message": "during", "sessionKey": "s"}))
        .await;
    assert_eq!(
        chat["error"]["code"],
        ErrorCode::Unavailable.code(),
        "{chat}"
    );
    // The gateway itself keeps serving, and says what is wrong.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let health = ws.call("health", json!({})).await;
        if health["result"]["cluster"]["storeState"] == "unavailable" {
            assert!(health["result"]["cluster"]["storeError"]
                .as_str()
                .unwrap()
                .contains("cannot be reached"));
            break;
        }
        assert!(Instant::now() < deadline, "health never said so: {health}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The hanging turn could not renew its lease for the lease's life
    // (3 s): another gateway may take the session now, so it stops.
    let stopped = loop {
        let frame = hanging.recv().await;
        if frame["id"] == turn {
            break frame;
        }
    };
    assert_eq!(
        stopped["error"]["code"],
        ErrorCode::Unavailable.code(),
        "{stopped}"
    );
    assert!(
        stopped["error"]["message"]
            .as_str()
            .unwrap()
            .contains("lost the session's lease"),
        "{stopped}"
    );

    pg.resume();
    // Back without a restart: the pool reconnects by itself.
    let deadline = Instant::now() + Duration::from_secs(15);
    let history = loop {
        let history = ws
            .call("sessions.history", json!({"sessionKey": "s"}))
            .await;
        if history["result"].is_object() {
            break history;
        }
        assert!(Instant::now() < deadline, "never recovered: {history}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let messages = history["result"]["messages"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        2,
        "nothing lost, nothing half written: {history}"
    );
    let after = ws
        .call("chat", json!({"message": "after", "sessionKey": "s"}))
        .await;
    assert!(after["result"].is_object(), "{after}");
}

#[tokio::test]
async fn an_invoke_on_one_gateway_reaches_a_node_connected_to_another() {
    use crate::nodes::{node_with, register_params, response};
    let cluster = Cluster::start(2, "").await;
    let [a, b] = &cluster.gateways[..] else {
        unreachable!()
    };
    // The node pairs with gateway B.
    let mut operator_b = b.operator().await;
    let (mut node, _) = node_with(b, TOKEN).await;
    let register = node
        .request("nodes.register", register_params("far", &["system.which"]))
        .await;
    let asked = operator_b.event("nodes.pairing").await["data"].clone();
    // An operator on A approves it: the answer goes to B, which holds the
    // request.
    let approved = a
        .operator()
        .await
        .call("nodes.approve", json!({"requestId": asked["requestId"]}))
        .await;
    assert!(approved["error"].is_null(), "{approved}");
    assert_eq!(approved["result"]["requestId"], asked["requestId"]);
    let paired = response(&mut node, &register).await["result"].clone();
    let node_id = paired["nodeId"].as_str().unwrap().to_string();
    // An operator on gateway A invokes it; the answer comes back to A.
    let mut operator_a = a.operator().await;
    let call = operator_a
        .request(
            "nodes.invoke",
            json!({"nodeId": node_id, "command": "system.which", "params": {"name": "ls"}}),
        )
        .await;
    let request = node.event("nodes.invoke.request").await["data"].clone();
    assert_eq!(request["command"], "system.which");
    assert_eq!(request["params"], json!({"name": "ls"}));
    let answered = node
        .call(
            "nodes.result",
            json!({"invokeId": request["invokeId"], "ok": true, "payload": {"path": "/usr/bin/ls"}}),
        )
        .await;
    assert_eq!(answered["result"]["accepted"], true);
    let result = response(&mut operator_a, &call).await;
    assert_eq!(result["result"]["ok"], true, "{result}");
    assert_eq!(result["result"]["nodeId"], node_id.as_str());
    assert_eq!(result["result"]["payload"]["path"], "/usr/bin/ls");
    // A command the node did not declare is refused by the gateway it is on.
    let refused = operator_a
        .call(
            "nodes.invoke",
            json!({"nodeId": node_id, "command": "camera.snap", "params": {}}),
        )
        .await;
    assert_eq!(
        refused["error"]["code"],
        clawgate::protocol::ErrorCode::Forbidden.code(),
        "{refused}"
    );

    // A, running since before the pairing, knows the node: it lists it
    // online on B, and lets it connect with its token.
    let token = paired["token"].as_str().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let listed = loop {
        let listed = operator_a.call("nodes.list", json!({})).await["result"]["nodes"][0].clone();
        if listed["nodeId"] == node_id.as_str() {
            break listed;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "A never learnt of the pairing: {listed}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(listed["online"], true, "{listed}");
    assert_eq!(listed["gateway"], "gw-b", "{listed}");
    assert!(listed["connectedAtMs"].as_u64().is_some(), "{listed}");
    drop(node);
    let (mut node_on_a, hello) = node_with(a, token).await;
    assert!(hello["result"].is_object(), "the token works on A: {hello}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let listed = operator_b.call("nodes.list", json!({})).await["result"]["nodes"][0].clone();
        if listed["gateway"] == "gw-a" && listed["online"] == true {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "B never saw the node on A: {listed}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Removed on B: A closes its connection.
    let removed = operator_b
        .call("nodes.remove", json!({"nodeId": node_id}))
        .await;
    assert_eq!(removed["result"]["removed"], true, "{removed}");
    let closed = loop {
        match node_on_a.recv_or_close().await {
            Ok(_) => continue,
            Err(closed) => break closed,
        }
    };
    assert!(
        matches!(&closed, crate::support::Closed::Code(_, reason) if reason.contains("removed")),
        "{closed:?}"
    );
    let (_, refused) = node_with(a, token).await;
    assert!(
        refused["error"].is_object(),
        "a removed node's token: {refused}"
    );
}

#[tokio::test]
async fn an_exec_approval_raised_on_one_gateway_is_answered_on_another_and_the_first_answer_wins() {
    use crate::fake_openai::{FakeOpenAi, Script};
    let upstream = FakeOpenAi::start(Script::ToolThenText(
        "exec",
        r#"{"command": "echo approved across gateways"}"#,
        vec!["Done."],
    ))
    .await;
    let cluster = Cluster::start(
        2,
        &format!(
            "[agents]\ndefault = \"gpt\"\n\n[agents.gpt]\nprovider = \"openai\"\nbaseUrl = \"{}\"\n\
             model = \"fake-model\"\ntools = [\"exec\"]\n\n[agents.gpt.exec]\n",
            upstream.base_url
        ),
    )
    .await;
    let [a, b] = &cluster.gateways[..] else {
        unreachable!()
    };
    let mut user = a.operator().await;
    let mut approver = b.operator().await;
    let chat = user
        .request("chat", json!({"message": "say it", "sessionKey": "x"}))
        .await;
    // Raised on A, seen on B, answered on B.
    let asked = approver.event("approvals.requested").await["data"].clone();
    assert_eq!(asked["command"], "echo approved across gateways");
    let answer = approver
        .call(
            "approvals.respond",
            json!({"id": asked["id"], "decision": "allow-once"}),
        )
        .await;
    assert_eq!(answer["result"]["decision"], "allow-once", "{answer}");
    let done = loop {
        let frame = user.recv().await;
        if frame["id"] == json!(chat) {
            break frame;
        }
    };
    assert!(done["result"].is_object(), "{done}");
    // A second answer, from either gateway, comes too late.
    for ws in [&mut approver, &mut user] {
        let late = ws
            .call(
                "approvals.respond",
                json!({"id": asked["id"], "decision": "deny"}),
            )
            .await;
        assert_eq!(
            late["error"]["code"],
            clawgate::protocol::ErrorCode::Conflict.code(),
            "{late}"
        );
    }
    // The command ran, on A, as approved.
    let audit = user.call("approvals.audit", json!({})).await;
    let entry = &audit["result"]["entries"][0];
    assert_eq!(entry["decision"], "allow-once", "{audit}");
    assert_eq!(entry["command"], "echo approved across gateways");
    // An id no gateway raised is unknown everywhere.
    let unknown = approver
        .call(
            "approvals.respond",
            json!({"id": "appr-000000000000", "decision": "deny"}),
        )
        .await;
    assert_eq!(
        unknown["error"]["code"],
        clawgate::protocol::ErrorCode::NotFound.code(),
        "{unknown}"
    );
}

#[tokio::test]
async fn a_channel_account_runs_on_one_gateway_and_moves_when_it_dies_without_answering_twice() {
    use crate::fake_telegram::FakeTelegram;
    let fake = FakeTelegram::start().await;
    let mut cluster = Cluster::start(
        3,
        &format!(
            "[channels.telegram.bot]\ntoken = \"{}\"\napiBase = \"{}\"\n\
             pollTimeoutSec = 1\nallowFrom = [\"111\"]\n",
            crate::fake_telegram::TOKEN,
            fake.base_url
        ),
    )
    .await;
    let holder = lease_holder(&cluster.gateways[0], "channel:telegram:bot").await;
    let index = ["gw-a", "gw-b", "gw-c"]
        .iter()
        .position(|n| *n == holder)
        .unwrap();
    fake.say(111, 111, "one");
    fake.wait_sent(1).await;
    unsafe_kill(cluster.gateways[index].child.id(), "KILL");
    let _ = cluster.gateways[index].child.wait();
    fake.say(111, 111, "two");
    fake.say(111, 111, "three");
    // Another gateway takes the account over once the 3 s lease lapses.
    let sent = fake.wait_sent(3).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let texts: Vec<Value> = fake.sent().iter().map(|m| m["text"].clone()).collect();
    assert_eq!(
        texts,
        ["one", "two", "three"],
        "each answered once: {sent:?}"
    );
    let survivor = (index + 1) % 3;
    let new_holder = lease_holder(&cluster.gateways[survivor], "channel:telegram:bot").await;
    assert_ne!(new_holder, holder);
    cluster.gateways.remove(index);
}

/// The members gateway `ws` lists in health.
async fn member_names(ws: &mut Ws) -> Vec<String> {
    let health = ws.call("health", json!({})).await;
    health["result"]["cluster"]["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|m| m["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_member_name_belongs_to_one_live_gateway_and_passes_to_its_restart() {
    use std::time::{Duration, Instant};
    let mut cluster = Cluster::start(2, "").await;

    // A second process under gw-a's name, while gw-a runs: refused, and
    // told why, before it serves anything.
    let mut twin = cluster.spawn_piped("gw-a");
    let status = wait_exit(&mut twin, Duration::from_secs(15)).expect("the twin gives up");
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(twin.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("another gateway is running as cluster member \"gw-a\"")
            && stderr.contains("cluster.name"),
        "{stderr}"
    );
    let mut out = String::new();
    std::io::Read::read_to_string(twin.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(!out.contains("listening"), "the twin never served: {out}");

    // gw-a killed: a new process under its name waits for the old entry
    // to lapse, then takes its place.
    unsafe_kill(cluster.gateways[0].child.id(), "KILL");
    let _ = cluster.gateways[0].child.wait();
    cluster.gateways.remove(0);
    cluster.add("gw-a", "");
    let mut on_b = cluster.gateways[0].operator().await;
    let mut on_new_a = cluster.gateways[1].operator().await;
    let chat = on_new_a
        .call("chat", json!({"message": "back", "sessionKey": "s"}))
        .await;
    assert!(chat["result"].is_object(), "{chat}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while member_names(&mut on_b).await != ["gw-a", "gw-b"] {
        assert!(Instant::now() < deadline, "gw-a never rejoined");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A clean stop leaves at once: the others stop listing it well before
    // its entry would lapse (3 s).
    let status = cluster.gateways[1].terminate();
    assert!(status.success(), "{status:?}");
    let stopped = Instant::now();
    while member_names(&mut on_b).await != ["gw-b"] {
        assert!(
            stopped.elapsed() < Duration::from_millis(2500),
            "a cleanly stopped member is still listed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_run_on_one_gateway_is_waited_for_and_aborted_from_another() {
    use crate::fake_openai::{FakeOpenAi, Script};
    let upstream = FakeOpenAi::start(Script::Hang).await;
    let cluster = Cluster::start(
        2,
        &format!(
            "[agents.main]\nprovider = \"echo\"\n[agents.slow]\nprovider = \"openai\"\nbaseUrl = \"{}\"\nmodel = \"m\"\n",
            upstream.base_url
        ),
    )
    .await;
    let mut on_a = cluster.gateways[0].operator().await;
    let mut on_b = cluster.gateways[1].operator().await;
    let turn = on_a
        .request(
            "chat",
            json!({"message": "wait", "agentId": "slow", "sessionKey": "s", "runId": "run-cross"}),
        )
        .await;
    while upstream.requests().is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let running = on_b
        .call("chat.wait", json!({"runId": "run-cross", "timeoutMs": 300}))
        .await;
    assert_eq!(running["result"]["status"], "running", "{running}");
    assert!(running["result"]["startedAtMs"].as_u64().is_some());

    let abort = on_b.call("chat.abort", json!({"runId": "run-cross"})).await;
    assert_eq!(abort["result"]["aborted"], true, "{abort}");
    let stopped = loop {
        let frame = on_a.recv().await;
        if frame["id"] == turn {
            break frame;
        }
    };
    assert_eq!(stopped["result"]["stopReason"], "aborted", "{stopped}");

    let ended = on_b
        .call(
            "chat.wait",
            json!({"runId": "run-cross", "timeoutMs": 5000}),
        )
        .await;
    assert_eq!(ended["result"]["status"], "aborted", "{ended}");
    let again = on_b.call("chat.abort", json!({"runId": "run-cross"})).await;
    assert_eq!(again["result"]["aborted"], false, "an ended run: {again}");
    let unknown = on_b
        .call("chat.abort", json!({"runId": "run-nowhere"}))
        .await;
    assert_eq!(unknown["result"]["aborted"], false, "{unknown}");
    let unknown = on_b
        .call(
            "chat.wait",
            json!({"runId": "run-nowhere", "timeoutMs": 200}),
        )
        .await;
    assert_eq!(unknown["result"]["status"], "unknown", "{unknown}");
}

#[tokio::test]
async fn a_config_applied_on_one_gateway_is_applied_by_the_others_and_each_reports_it() {
    use std::time::{Duration, Instant};
    let mut cluster = Cluster::start(0, "").await;
    // Two gateways on one config file, which they look at only once a
    // minute: the change reaches B through A's announcement.
    let dir = temp_dir("cluster-config");
    let config = dir.join("clawgate.toml");
    std::fs::write(
        &config,
        format!(
            "{}[gateway.reload]\ndebounceMs = 60000\n[agents.main]\nprovider = \"echo\"\n",
            token_config()
        ),
    )
    .unwrap();
    for name in ["gw-a", "gw-b"] {
        let state = dir.join(name);
        std::fs::create_dir_all(&state).unwrap();
        cluster.add_with_config(name, &state, &config);
    }
    let mut on_a = cluster.gateways[0].operator().await;
    let mut on_b = cluster.gateways[1].operator().await;
    let set = on_a
        .call(
            "config.set",
            json!({"key": "agents.main.systemPrompt", "value": "Be brief."}),
        )
        .await;
    assert!(set["error"].is_null(), "{set}");
    let hash_on_a = on_a.call("health", json!({})).await["result"]["config"]["hash"].clone();
    assert!(hash_on_a.is_string());

    // B applies it within moments, not a minute, and every member says
    // which config it runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = on_b.call("health", json!({})).await["result"].clone();
        let members = health["cluster"]["members"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if health["config"]["hash"] == hash_on_a
            && members.len() == 2
            && members.iter().all(|m| m["configHash"] == hash_on_a)
        {
            break;
        }
        assert!(Instant::now() < deadline, "B never followed: {health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let prompt = on_b
        .call("config", json!({"key": "agents.main.systemPrompt"}))
        .await;
    assert_eq!(prompt["result"]["value"], "Be brief.", "{prompt}");

    // A bad edit of the file: A rejects it and keeps its last good config,
    // and the members show it.
    let text = std::fs::read_to_string(&config).unwrap();
    save_file(
        &config,
        &text.replace("debounceMs = 60000", "debounceMs = \"soon\""),
    );
    let reload = on_a.call("config.reload", json!({})).await;
    assert_eq!(reload["result"]["ok"], false, "{reload}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = on_b.call("health", json!({})).await["result"].clone();
        let members = health["cluster"]["members"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let a = members
            .iter()
            .find(|m| m["name"] == "gw-a")
            .cloned()
            .unwrap_or_default();
        if a["configError"].is_string() {
            assert_eq!(
                a["configHash"], hash_on_a,
                "A still runs its last good config"
            );
            assert_eq!(health["config"]["hash"], hash_on_a, "B too");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A's rejected edit never showed: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_device_paired_through_one_gateway_connects_through_another_until_removed() {
    use crate::openclaw_v4::{device_connect, DeviceKey};
    use std::time::{Duration, Instant};
    let cluster = Cluster::start(2, "").await;
    let [a, b] = &cluster.gateways[..] else {
        unreachable!()
    };
    // Paired at once through A (loopback, with the gateway token).
    let key = DeviceKey::new();
    let (_, hello) = device_connect(a, &key, json!({"token": TOKEN})).await;
    assert_eq!(hello["ok"], true, "{hello}");
    let token = hello["payload"]["auth"]["deviceToken"]
        .as_str()
        .unwrap()
        .to_string();

    // B checks the same token: one key for the cluster, and B learns of
    // the pairing.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut on_b = loop {
        let mut ws = b.raw().await;
        let hello = ws.connect(json!({"deviceToken": token}), None).await;
        if hello["result"].is_object() {
            assert_eq!(
                hello["result"]["scopes"],
                json!(["operator.read", "operator.write"]),
                "{hello}"
            );
            break ws;
        }
        assert!(Instant::now() < deadline, "B never took the token: {hello}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let listed = b.operator().await.call("devices.list", json!({})).await;
    assert_eq!(
        listed["result"]["devices"][0]["deviceId"],
        key.id(),
        "{listed}"
    );

    // Removed on A: B closes the connection that used its token, and
    // refuses the token from then on.
    let removed = a
        .operator()
        .await
        .call("devices.remove", json!({"deviceId": key.id()}))
        .await;
    assert!(removed["error"].is_null(), "{removed}");
    let closed = loop {
        match on_b.recv_or_close().await {
            Ok(_) => continue,
            Err(closed) => break closed,
        }
    };
    assert!(
        matches!(&closed, Closed::Code(_, reason) if reason.contains("removed")),
        "{closed:?}"
    );
    let mut again = b.raw().await;
    let refused = again.connect(json!({"deviceToken": token}), None).await;
    assert!(refused["error"].is_object(), "{refused}");
}

#[tokio::test]
async fn a_gateway_whose_name_was_taken_while_it_stalled_stops() {
    use std::io::{BufRead, Read};
    use std::time::{Duration, Instant};
    let mut cluster = Cluster::start(0, "").await;
    let mut stalled = cluster.spawn_piped("gw-a");
    let mut line = String::new();
    std::io::BufReader::new(stalled.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening"), "{line}");

    // Stalled for longer than its lease: another process takes the name.
    unsafe_kill(stalled.id(), "STOP");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    cluster.add("gw-a", "");
    unsafe_kill(stalled.id(), "CONT");

    // Back, it finds its name taken at its next renewal and stops, saying
    // why; the new one serves on.
    let started = Instant::now();
    let status = wait_exit(&mut stalled, Duration::from_secs(15)).expect("the stalled one stops");
    assert!(!status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut stderr = String::new();
    stalled
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("another gateway now runs as cluster member \"gw-a\""),
        "{stderr}"
    );
    let mut ws = cluster.gateways[0].operator().await;
    assert_eq!(member_names(&mut ws).await, ["gw-a"]);
    let chat = ws
        .call("chat", json!({"message": "still here", "sessionKey": "s"}))
        .await;
    assert!(chat["result"].is_object(), "{chat}");
}
