//! Server events: ticks, their sequence, who receives them, and events as
//! the typed client reads them.

use crate::support::*;
use clawgate::protocol::types::AgentMessageEventState;
use clawgate::protocol::Event;
use serde_json::json;

#[tokio::test]
async fn tick_arrives_at_the_interval_with_seq_increasing_by_one() {
    let gw = TestGateway::start("tickIntervalMs = 100").await;
    let mut ws = gw.operator().await;
    let started = std::time::Instant::now();
    let mut seqs = Vec::new();
    let mut last_ts = 0;
    for _ in 0..4 {
        let tick = ws.event("tick").await;
        let ts = tick["data"]["ts"].as_u64().unwrap();
        assert!(ts >= last_ts);
        last_ts = ts;
        seqs.push(tick["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
}

#[tokio::test]
async fn the_typed_client_reads_events_as_their_types() {
    let gw = TestGateway::start("tickIntervalMs = 100").await;
    let mut client = gw.client().await;
    let mut last_ts = 0;
    for _ in 0..3 {
        let Event::Tick(tick) = next_event(&mut client).await else {
            continue;
        };
        assert!(tick.ts >= last_ts);
        last_ts = tick.ts;
    }
    assert!(last_ts > 0, "ticks arrive as Event::Tick");
    client
        .chat(&params(json!({"message": "hi", "sessionKey": "typed"})))
        .await
        .unwrap();
    // The turn's events were kept while chat waited for its answer.
    let mut states = Vec::new();
    while states.last() != Some(&AgentMessageEventState::Final) {
        if let Event::AgentMessage(message) = next_event(&mut client).await {
            assert_eq!(message.session_key, "typed");
            states.push(message.state);
        }
    }
    assert_eq!(states.first(), Some(&AgentMessageEventState::Delta));
}

async fn next_event(client: &mut Client) -> Event {
    tokio::time::timeout(WAIT, client.next_event())
        .await
        .expect("an event within the wait limit")
        .expect("an event")
}

#[tokio::test]
async fn seq_stays_ordered_while_requests_interleave() {
    let gw = TestGateway::start("tickIntervalMs = 100").await;
    let mut ws = gw.operator().await;
    let mut last = 0;
    let mut events = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(800);
    while std::time::Instant::now() < deadline {
        ws.request("health", json!({})).await;
        loop {
            let frame = ws.recv().await;
            if let Some(seq) = frame["seq"].as_u64() {
                assert_eq!(seq, last + 1, "seq must increase by exactly one");
                last = seq;
                events += 1;
            } else {
                break;
            }
        }
    }
    assert!(events >= 2, "ticks should have arrived while calling");
}

#[tokio::test]
async fn connections_before_connect_receive_no_events() {
    let gw = TestGateway::start("tickIntervalMs = 100\nhandshakeTimeoutMs = 1000").await;
    let mut ws = gw.raw().await;
    // The first thing a silent client sees is the handshake-timeout close, not a tick.
    assert!(matches!(ws.expect_close().await, Closed::Code(1008, _)));
}
