//! Fan-out: one chat turn's `agent.message` deltas delivered to many
//! subscribed operator connections, against a raw tokio-tungstenite server
//! that pushes the same number of frames of the same size through a
//! broadcast channel to as many plain WebSockets.

use super::{fake_upstream, open, Server, ServerProcess, Ws};
use clawgate::client::small_buffers;
use clawgate::protocol::{EventKind, Method};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// What a subscriber looks for in a frame: the reply is complete.
const FINAL: &str = r#""state":"final""#;
/// What starts a burst on the baseline server.
const GO: &str = "go";

pub struct FanoutFigures {
    deltas: usize,
    repeat: usize,
    rows: Vec<FanoutRow>,
}

struct FanoutRow {
    subscribers: usize,
    gateway: Delivery,
    broadcast: Delivery,
}

/// Times from the trigger (the `chat` request, or `go`) to the final frame
/// at each subscriber, for the median round.
#[derive(Clone, Copy)]
struct Delivery {
    median_ms: f64,
    last_ms: f64,
}

impl FanoutFigures {
    pub fn summary(&self) -> String {
        self.rows
            .iter()
            .map(|r| {
                format!(
                    "fan-out of {} deltas to {} subscribers: clawgate last {:.1} ms (median {:.1}) | broadcast last {:.1} ms (median {:.1})",
                    self.deltas, r.subscribers, r.gateway.last_ms, r.gateway.median_ms, r.broadcast.last_ms, r.broadcast.median_ms
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn markdown(&self) -> String {
        let mut o = format!(
            "\n## Fan-out of one chat turn\n\nOne `chat` turn whose agent streams {} deltas from a local fake upstream; every subscriber is an operator connection that receives each `agent.message` and stops at the final one. \
             Baseline: a raw tokio-tungstenite server that, on a trigger frame, sends {} frames of the same size to every connection through one tokio broadcast channel. \
             Times run from sending the trigger to the final frame at a subscriber; each is the median of {} rounds on the same connections.\n\n\
             | subscribers | clawgate, last delivery | clawgate, median | broadcast, last delivery | broadcast, median | clawgate/broadcast (last) |\n|---:|---:|---:|---:|---:|---:|\n",
            self.deltas,
            self.deltas + 1,
            self.repeat
        );
        for r in &self.rows {
            o.push_str(&format!(
                "| {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1}× |\n",
                r.subscribers,
                r.gateway.last_ms,
                r.gateway.median_ms,
                r.broadcast.last_ms,
                r.broadcast.median_ms,
                r.gateway.last_ms / r.broadcast.last_ms
            ));
        }
        o
    }
}

pub async fn fanout(subscribers: &[usize], deltas: usize, repeat: usize) -> FanoutFigures {
    let pieces: Vec<String> = (0..deltas).map(|i| format!("w{i} ")).collect();
    let upstream = fake_upstream(pieces).await;
    let mut rows = Vec::new();
    for &count in subscribers {
        let gateway = {
            let process = ServerProcess::start_with(Server::Gateway, &["--upstream", &upstream]);
            measure(Server::Gateway, &process.url, count, repeat).await
        };
        let broadcast = {
            let process =
                ServerProcess::start_with(Server::Broadcast, &["--deltas", &deltas.to_string()]);
            measure(Server::Broadcast, &process.url, count, repeat).await
        };
        rows.push(FanoutRow {
            subscribers: count,
            gateway,
            broadcast,
        });
    }
    FanoutFigures {
        deltas,
        repeat,
        rows,
    }
}

/// Opens `count` subscribers, then runs `repeat` rounds; the round with
/// the median time to last delivery is reported.
async fn measure(server: Server, url: &str, count: usize, repeat: usize) -> Delivery {
    let opened: Vec<Ws> = futures_util::stream::iter(0..count)
        .map(|_| open(server, url))
        .buffer_unordered(64)
        .collect()
        .await;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Instant>();
    let mut readers = Vec::new();
    for mut ws in opened {
        let done = done_tx.clone();
        readers.push(tokio::spawn(async move {
            while let Some(Ok(message)) = ws.next().await {
                if let Message::Text(text) = message {
                    if text.as_str().contains(FINAL) && done.send(Instant::now()).is_err() {
                        return;
                    }
                }
            }
        }));
    }
    let (mut trigger, mut answers) = trigger(server, url).await;
    let mut rounds = Vec::new();
    for round in 0..repeat.max(1) {
        let frame = match server {
            Server::Gateway => {
                json!({"id": format!("fanout-{round}"), "method": Method::Chat.name(),
                "params": {"message": "hello", "sessionKey": "fanout"}})
                .to_string()
            }
            _ => GO.to_string(),
        };
        let started = Instant::now();
        trigger
            .send(Message::Text(frame.into()))
            .await
            .expect("send the trigger");
        let mut times = Vec::with_capacity(count);
        while times.len() < count {
            let at = tokio::time::timeout(Duration::from_secs(120), done_rx.recv())
                .await
                .expect("every subscriber gets the final frame within 2 minutes")
                .expect("subscribers are running");
            times.push((at - started).as_secs_f64() * 1000.0);
        }
        if server == Server::Gateway {
            // The turn is over (its session free) once chat has answered.
            let answer = answers.recv().await.expect("the chat answer");
            assert!(answer.get("result").is_some(), "chat failed: {answer}");
        }
        times.sort_by(f64::total_cmp);
        rounds.push(Delivery {
            median_ms: times[times.len() / 2],
            last_ms: times[times.len() - 1],
        });
    }
    for reader in readers {
        reader.abort();
    }
    rounds.sort_by(|a, b| a.last_ms.total_cmp(&b.last_ms));
    rounds[rounds.len() / 2]
}

/// The connection that starts each round; what it receives is read in the
/// background, and its answers (responses, not events) are handed back.
async fn trigger(
    server: Server,
    url: &str,
) -> (
    futures_util::stream::SplitSink<Ws, Message>,
    mpsc::UnboundedReceiver<Value>,
) {
    let (sink, mut stream) = open(server, url).await.split();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            if frame.get("id").is_some() && tx.send(frame).is_err() {
                return;
            }
        }
    });
    (sink, rx)
}

/// The baseline server: every connection subscribes to one broadcast
/// channel; a `go` from any connection publishes `deltas` frames shaped
/// like agent.message deltas, then a final one.
pub fn serve_broadcast(deltas: usize) {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            super::announce(listener.local_addr().expect("addr"));
            let (tx, _) = tokio::sync::broadcast::channel::<Arc<str>>(4096);
            let frame = |seq: usize, state: &str, text: &str| -> Arc<str> {
                json!({"type": "event", "event": EventKind::AgentMessage.name(), "seq": seq, "data": {
                    "runId": "00000000-0000-0000-0000-000000000000", "sessionKey": "fanout", "agentId": "main",
                    "runSeq": seq, "state": state, "delta": text}})
                .to_string()
                .into()
            };
            let burst: Arc<Vec<Arc<str>>> = Arc::new(
                (0..deltas)
                    .map(|i| frame(i + 1, "delta", &format!("w{i} ")))
                    .chain([frame(deltas + 1, "final", "")])
                    .collect(),
            );
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let (tx, burst) = (tx.clone(), Arc::clone(&burst));
                tokio::spawn(async move {
                    let Ok(ws) =
                        tokio_tungstenite::accept_async_with_config(tcp, Some(small_buffers()))
                            .await
                    else {
                        return;
                    };
                    let (mut sink, mut stream) = ws.split();
                    let mut events = tx.subscribe();
                    loop {
                        tokio::select! {
                            event = events.recv() => {
                                let Ok(text) = event else { return };
                                if sink.send(Message::Text(text.as_ref().into())).await.is_err() {
                                    return;
                                }
                            }
                            message = stream.next() => match message {
                                Some(Ok(Message::Text(text))) if text.as_str() == GO => {
                                    for frame in burst.iter() {
                                        let _ = tx.send(Arc::clone(frame));
                                    }
                                }
                                Some(Ok(_)) => {}
                                _ => return,
                            },
                        }
                    }
                });
            }
        });
}
