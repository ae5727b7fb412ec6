//! clawgate-bench: round trips and idle-connection memory of the gateway,
//! measured beside a raw tokio-tungstenite echo server on the same machine.
//!
//! `cargo run --release --bin clawgate-bench` prints the figures and writes
//! them to BENCHMARKS.md. Each server runs in its own process (this binary
//! re-executed with `--serve`), so its memory is measured alone.

mod cluster;
mod cron;
mod fanout;
mod openclaw;
mod plugins;
mod tls;

use clap::Parser;
use clawgate::client::small_buffers;
use clawgate::config::{self, keys, LoadOptions, Override};
use clawgate::gateway::Gateway;
use clawgate::protocol::types::SessionsParams;
use clawgate::protocol::Method;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const TOKEN: &str = "bench-token-0123456789";

#[derive(Parser)]
#[command(about = "Benchmark clawgate against a raw WebSocket echo server")]
struct Args {
    /// Seconds measured per connection count (after a warm-up of a quarter of that).
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Concurrent connections for the round-trip runs.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    conns: Vec<usize>,
    /// Runs per point; the run with the median clawgate/echo ratio is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Idle connection counts for the memory runs.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    idle: Vec<usize>,
    /// Where to write the Markdown report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    write: PathBuf,
    /// Sessions stored for the sessions-listing run.
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// Requests for the OpenAI-compatible endpoint run.
    #[arg(long, default_value_t = 300)]
    openai_requests: usize,
    /// Jobs due every second in the cron run.
    #[arg(long, default_value_t = 1000)]
    cron_jobs: usize,
    /// Seconds the cron run measures.
    #[arg(long, default_value_t = 5)]
    cron_seconds: u64,
    /// Run only the cron part and print it (nothing is written).
    #[arg(long)]
    only_cron: bool,
    /// Subscriber counts for the fan-out run.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    fanout: Vec<usize>,
    /// Deltas streamed by the fan-out run's turn (also the broadcast
    /// baseline's, when serving it).
    #[arg(long, default_value_t = 100)]
    deltas: usize,
    /// Run only the fan-out part and print it (nothing is written).
    #[arg(long)]
    only_fanout: bool,
    /// Connections for the plugin-method runs.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    plugin_conns: Vec<usize>,
    /// Run only the plugins part and print it (nothing is written).
    #[arg(long)]
    only_plugins: bool,
    /// Connections for the OpenClaw v4 runs (against native v1 in the same run).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    openclaw_conns: Vec<usize>,
    /// Run only the OpenClaw v4 part and print it (nothing is written).
    #[arg(long)]
    only_openclaw: bool,
    /// Connections for the cluster runs (spread across the gateways).
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    cluster_conns: Vec<usize>,
    /// Chats whose first event is timed across gateways.
    #[arg(long, default_value_t = 300)]
    cluster_events: usize,
    /// Run only the cluster part and print it (nothing is written).
    #[arg(long)]
    only_cluster: bool,
    /// Internal: the gateway's cluster settings (store URL, NATS URL, name).
    #[arg(long, hide = true, num_args = 3, value_names = ["STORE", "NATS", "NAME"])]
    cluster: Vec<String>,
    /// Internal: configure this many plugins (this binary as `--serve plugin`).
    #[arg(long, hide = true, default_value_t = 0)]
    plugins: usize,
    /// Internal: run a server (gateway or echo) in this process.
    #[arg(long, hide = true)]
    serve: Option<String>,
    /// Internal: the gateway's state dir.
    #[arg(long, hide = true)]
    state_dir: Option<PathBuf>,
    /// Internal: an OpenAI-compatible upstream for the gateway's main agent.
    #[arg(long, hide = true)]
    upstream: Option<String>,
    /// Connection counts for the wss:// against ws:// round trips.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    tls_conns: Vec<usize>,
    /// Only measure TLS (round trips and idle memory).
    #[arg(long)]
    only_tls: bool,
    /// Internal: serve with Prometheus metrics recorded.
    #[arg(long, hide = true)]
    metrics: bool,
    /// Connections for the metrics-cost run.
    #[arg(long, default_value_t = 64)]
    metrics_conns: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Server {
    Gateway,
    /// The gateway serving wss:// (gateway.tls with a generated pair).
    GatewayTls,
    /// The gateway, spoken to in OpenClaw's protocol v4.
    OpenClaw,
    Echo,
    /// The fan-out baseline.
    Broadcast,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Gateway | Server::OpenClaw => "gateway",
            Server::GatewayTls => "gateway-tls",
            Server::Echo => "echo",
            Server::Broadcast => "broadcast",
        }
    }
}

fn main() {
    let args = Args::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    match args.serve.as_deref() {
        Some(server @ ("gateway" | "gateway-tls")) => serve_gateway(
            args.state_dir,
            args.upstream,
            args.metrics,
            args.plugins,
            &args.cluster,
            server == "gateway-tls",
        ),
        Some("plugin") => plugins::serve_plugin(),
        Some("echo") => serve_echo(),
        Some("broadcast") => fanout::serve_broadcast(args.deltas),
        Some(other) => panic!("unknown server {other}"),
        None => tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(run(args)),
    }
}

// ---- servers ----------------------------------------------------------

fn serve_gateway(
    state_dir: Option<PathBuf>,
    upstream: Option<String>,
    metrics: bool,
    plugin_count: usize,
    cluster: &[String],
    tls: bool,
) {
    let mut overrides = vec![
        (keys::GATEWAY_PORT.to_string(), json!(0)),
        (keys::GATEWAY_AUTH_MODE.to_string(), json!("token")),
        (keys::GATEWAY_AUTH_TOKEN.to_string(), json!(TOKEN)),
        (
            keys::GATEWAY_LIMITS_MAX_CONNECTIONS.to_string(),
            json!(100_000),
        ),
        // The cron run bursts thousands of events at one client.
        (
            keys::GATEWAY_LIMITS_OUTBOUND_QUEUE_FRAMES.to_string(),
            json!(65_536),
        ),
        (
            keys::GATEWAY_HTTP_CHAT_COMPLETIONS_ENABLED.to_string(),
            json!(true),
        ),
        (keys::LOGGING_LEVEL.to_string(), json!("error")),
        (
            keys::GATEWAY_HTTP_METRICS_ENABLED.to_string(),
            json!(metrics),
        ),
    ];
    if tls {
        overrides.push((keys::GATEWAY_TLS_ENABLED.to_string(), json!(true)));
    }
    if let Some(base_url) = upstream {
        // The agent id is the bench's own choice, not a schema key.
        let main_agent = format!("{}/main", keys::AGENTS);
        overrides.push((
            main_agent,
            json!({"provider": "openai", "baseUrl": base_url, "model": "fake", "apiKey": "bench"}),
        ));
    }
    if let [store, nats, name] = cluster {
        overrides.push((keys::CLUSTER_STORE_URL.to_string(), json!(store)));
        overrides.push((keys::CLUSTER_NATS_URL.to_string(), json!(nats)));
        overrides.push((keys::CLUSTER_NAME.to_string(), json!(name)));
    }
    let own = std::env::current_exe().expect("own path");
    for i in 0..plugin_count {
        // The plugin names are the bench's own choice, not schema keys.
        overrides.push((
            format!("{}/{}{i}", keys::PLUGINS, plugins::PREFIX),
            json!({"command": own, "args": ["--serve", "plugin"]}),
        ));
    }
    let overrides = overrides
        .into_iter()
        .map(|(pointer, value)| Override {
            flag: "(benchmark)".to_string(),
            pointer,
            value,
        })
        .collect();
    let options = LoadOptions {
        path: None,
        env: Vec::new(),
        overrides,
        state_dir: None,
    };
    let loaded = config::load(&options).expect("bench config is valid");
    let state_dir = state_dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("clawgate-bench-{}", std::process::id()))
    });
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async move {
            clawgate::protocol::Schemas::get();
            std::fs::create_dir_all(&state_dir).expect("state dir");
            let backend = clawgate::cluster::Backend::open(&loaded.config, &state_dir)
                .await
                .expect("store and bus");
            let gw = Gateway::new(loaded, options, state_dir, backend);
            let listener = clawgate::server::bind(&gw).await.expect("bind");
            announce(listener.primary().expect("addr"));
            clawgate::server::serve(gw, listener, Default::default(), std::future::pending())
                .await
                .expect("serve");
        });
}

fn serve_echo() {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            announce(listener.local_addr().expect("addr"));
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                tokio::spawn(async move {
                    let Ok(mut ws) =
                        tokio_tungstenite::accept_async_with_config(tcp, Some(small_buffers()))
                            .await
                    else {
                        return;
                    };
                    while let Some(Ok(message)) = ws.next().await {
                        if message.is_text() && ws.send(message).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
}

fn announce(addr: std::net::SocketAddr) {
    println!("listening on {addr}");
    std::io::stdout().flush().expect("stdout");
}

struct ServerProcess {
    child: Child,
    url: String,
}

impl ServerProcess {
    fn start(server: Server) -> ServerProcess {
        Self::start_with(server, &[])
    }

    fn start_with(server: Server, extra: &[&str]) -> ServerProcess {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .args(["--serve", server.name()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read address");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .expect("address line");
        let scheme = if server == Server::GatewayTls {
            let state_dir = std::env::temp_dir().join(format!("clawgate-bench-{}", child.id()));
            tls::pin(&state_dir);
            "wss"
        } else {
            "ws"
        };
        ServerProcess {
            child,
            url: format!("{scheme}://{addr}/"),
        }
    }

    /// Resident memory of the server process, in bytes.
    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kb * 1024
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- clients ----------------------------------------------------------

/// The typed client, connected with the bench token.
async fn client(url: &str) -> clawgate::client::Client {
    let options = clawgate::client::ConnectOptions {
        token: Some(TOKEN.to_string()),
        client_name: "clawgate-bench".to_string(),
        ..Default::default()
    };
    clawgate::client::Client::connect(url, &options)
        .await
        .expect("the bench client connects")
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a socket; for the gateway, also completes connect.
async fn open(server: Server, url: &str) -> Ws {
    let connector = if url.starts_with("wss://") {
        tls::connector()
    } else {
        None
    };
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        Some(small_buffers()),
        true,
        connector,
    )
    .await
    .expect("open a WebSocket");
    if server == Server::OpenClaw {
        openclaw::connect(&mut ws).await;
    }
    if matches!(server, Server::Gateway | Server::GatewayTls) {
        let connect = json!({"id": "c", "method": Method::Connect.name(), "params": {
            "protocol": {"min": 1, "max": 1},
            "client": {"name": "clawgate-bench", "version": env!("CARGO_PKG_VERSION")},
            "role": "operator",
            "auth": {"token": TOKEN},
        }});
        let reply = round_trip(&mut ws, connect.to_string()).await;
        assert!(reply.get("result").is_some(), "connect failed: {reply}");
    }
    ws
}

/// Sends one frame and waits for the answer (the next text frame that is
/// not an event, such as the presence changes of other clients connecting),
/// parsed as JSON.
async fn round_trip(ws: &mut Ws, frame: String) -> Value {
    ws.send(Message::Text(frame.into())).await.expect("send");
    loop {
        match ws.next().await.expect("open").expect("frame") {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(text.as_str()).expect("JSON");
                if frame.get("event").is_none() {
                    return frame;
                }
            }
            _ => continue,
        }
    }
}

struct Throughput {
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
}

/// N connections, each in a closed loop of `health` requests.
async fn throughput(server: Server, url: &str, conns: usize, measure: Duration) -> Throughput {
    let request = json!({"id": "1", "method": Method::Health.name(), "params": {}}).to_string();
    throughput_of(server, url, conns, measure, &request).await
}

/// N connections, each in a closed loop of `request`.
async fn throughput_of(
    server: Server,
    url: &str,
    conns: usize,
    measure: Duration,
    request: &str,
) -> Throughput {
    throughput_across(server, &[url.to_string()], conns, measure, request).await
}

/// N connections spread over `urls` in turn, each in a closed loop of
/// `request`.
async fn throughput_across(
    server: Server,
    urls: &[String],
    conns: usize,
    measure: Duration,
    request: &str,
) -> Throughput {
    let warmup = measure / 4;
    let request = request.to_string();
    let barrier = Arc::new(tokio::sync::Barrier::new(conns + 1));
    let mut tasks = Vec::new();
    for i in 0..conns {
        let url = urls[i % urls.len()].clone();
        let (request, barrier) = (request.clone(), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            let mut ws = open(server, &url).await;
            barrier.wait().await;
            let start = Instant::now();
            let (from, to) = (start + warmup, start + warmup + measure);
            let mut latencies = Vec::new();
            loop {
                let sent = Instant::now();
                let reply = round_trip(&mut ws, request.clone()).await;
                debug_assert!(reply.get("error").is_none());
                let done = Instant::now();
                if done >= to {
                    break;
                }
                if sent >= from {
                    latencies.push((done - sent).as_micros() as u32);
                }
            }
            let _ = ws.close(None).await;
            latencies
        }));
    }
    barrier.wait().await;
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client task"));
    }
    all.sort_unstable();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
    };
    Throughput {
        per_second: all.len() as f64 / measure.as_secs_f64(),
        p50_us: pick(0.50),
        p99_us: pick(0.99),
    }
}

/// Server memory growth per idle connection at each count, in bytes.
async fn idle_memory(server: Server, counts: &[usize]) -> Vec<(usize, f64)> {
    let process = ServerProcess::start(server);
    // One connection first, so lazily built state is in the baseline.
    let first = open(server, &process.url).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = process.rss_bytes();
    let mut held = vec![first];
    let mut results = Vec::new();
    for &count in counts {
        let missing = count.saturating_sub(held.len() - 1);
        let url = process.url.clone();
        let opened: Vec<Ws> = futures_util::stream::iter(0..missing)
            .map(|_| open(server, &url))
            .buffer_unordered(64)
            .collect()
            .await;
        held.extend(opened);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let grown = process.rss_bytes().saturating_sub(baseline);
        results.push((count, grown as f64 / count as f64));
    }
    drop(held);
    results
}

// ---- report -----------------------------------------------------------

async fn run(args: Args) {
    if args.only_cron {
        println!(
            "{}",
            cron::cron_load(args.cron_jobs, args.cron_seconds)
                .await
                .summary()
        );
        return;
    }
    if args.only_fanout {
        let figures = fanout::fanout(&args.fanout, args.deltas, args.repeat).await;
        println!("{}", figures.summary());
        return;
    }
    if args.only_plugins {
        let measure = Duration::from_secs_f64(args.seconds);
        let figures = plugins::plugins(&args.plugin_conns, measure, args.repeat).await;
        println!("{}", figures.summary());
        return;
    }
    if args.only_cluster {
        let measure = Duration::from_secs_f64(args.seconds);
        let figures = cluster::cluster(
            &args.cluster_conns,
            measure,
            args.repeat,
            args.cluster_events,
            (args.cron_jobs, args.cron_seconds),
        )
        .await;
        println!("{}", figures.summary());
        return;
    }
    if args.only_tls {
        let measure = Duration::from_secs_f64(args.seconds);
        let figures = tls::tls(&args.tls_conns, measure, args.repeat, &args.idle).await;
        println!("{}", figures.summary());
        return;
    }
    if args.only_openclaw {
        let measure = Duration::from_secs_f64(args.seconds);
        let figures = openclaw::openclaw(&args.openclaw_conns, measure, args.repeat).await;
        println!("{}", figures.summary());
        return;
    }
    let measure = Duration::from_secs_f64(args.seconds);
    let mut rows = Vec::new();
    for &conns in &args.conns {
        let mut runs = Vec::new();
        for _ in 0..args.repeat.max(1) {
            let gateway = {
                let p = ServerProcess::start(Server::Gateway);
                throughput(Server::Gateway, &p.url, conns, measure).await
            };
            let echo = {
                let p = ServerProcess::start(Server::Echo);
                throughput(Server::Echo, &p.url, conns, measure).await
            };
            runs.push((gateway, echo));
        }
        runs.sort_by(|a, b| ratio(a).total_cmp(&ratio(b)));
        let (gateway, echo) = runs.swap_remove(runs.len() / 2);
        println!(
            "{conns:>4} conns: clawgate {:>8.0} rt/s p50 {:>6.0}µs p99 {:>6.0}µs | echo {:>8.0} rt/s p50 {:>6.0}µs p99 {:>6.0}µs | ratio {:.2}",
            gateway.per_second, gateway.p50_us, gateway.p99_us, echo.per_second, echo.p50_us, echo.p99_us,
            gateway.per_second / echo.per_second
        );
        rows.push((conns, gateway, echo));
    }
    let metrics_cost = metrics_cost(args.metrics_conns, measure, args.repeat).await;
    println!("{}", metrics_cost.summary());
    let gateway_mem = idle_memory(Server::Gateway, &args.idle).await;
    let echo_mem = idle_memory(Server::Echo, &args.idle).await;
    for ((count, g), (_, e)) in gateway_mem.iter().zip(&echo_mem) {
        println!(
            "{count:>6} idle: clawgate {:.1} KB/conn | echo {:.1} KB/conn",
            g / 1024.0,
            e / 1024.0
        );
    }
    let sessions = sessions_listing(args.sessions).await;
    println!(
        "sessions with {} stored: first page p50 {:.2} ms p99 {:.2} ms | label search p50 {:.2} ms | all pages {:.0} ms",
        args.sessions, sessions.page_p50_ms, sessions.page_p99_ms, sessions.search_p50_ms, sessions.walk_ms
    );
    let openai = openai_overhead(args.openai_requests).await;
    println!(
        "openai endpoint: direct p50 {:.2} ms | through clawgate p50 {:.2} ms (+{:.2} ms) p99 {:.2} ms",
        openai.direct_p50_ms, openai.gateway_p50_ms, openai.gateway_p50_ms - openai.direct_p50_ms, openai.gateway_p99_ms
    );
    let cron = cron::cron_load(args.cron_jobs, args.cron_seconds).await;
    println!("{}", cron.summary());
    let fanout = fanout::fanout(&args.fanout, args.deltas, args.repeat).await;
    println!("{}", fanout.summary());
    let plugins = plugins::plugins(&args.plugin_conns, measure, args.repeat).await;
    println!("{}", plugins.summary());
    let openclaw = openclaw::openclaw(&args.openclaw_conns, measure, args.repeat).await;
    println!("{}", openclaw.summary());
    let cluster = cluster::cluster(
        &args.cluster_conns,
        measure,
        args.repeat,
        args.cluster_events,
        (args.cron_jobs, args.cron_seconds),
    )
    .await;
    println!("{}", cluster.summary());
    let tls = tls::tls(&args.tls_conns, measure, args.repeat, &args.idle).await;
    println!("{}", tls.summary());
    let mut report = markdown(&args, &rows, &gateway_mem, &echo_mem);
    report.push_str(&metrics_cost.markdown());
    report.push_str(&sessions.markdown(args.sessions));
    report.push_str(&openai.markdown(args.openai_requests));
    report.push_str(&cron.markdown());
    report.push_str(&fanout.markdown());
    report.push_str(&plugins.markdown());
    report.push_str(&openclaw.markdown());
    report.push_str(&cluster.markdown());
    report.push_str(&tls.markdown());
    std::fs::write(&args.write, report).expect("write report");
    println!("wrote {}", args.write.display());
}

/// Round trips with metrics recorded against the same gateway without,
/// alternating, and the spread between repeated runs without, which is
/// the noise the difference is to be read against.
struct MetricsCost {
    conns: usize,
    off: Vec<f64>,
    on: Vec<f64>,
}

async fn metrics_cost(conns: usize, measure: Duration, repeat: usize) -> MetricsCost {
    let mut cost = MetricsCost {
        conns,
        off: Vec::new(),
        on: Vec::new(),
    };
    for _ in 0..repeat.max(5) {
        for metrics in [false, true] {
            let extra: &[&str] = if metrics { &["--metrics"] } else { &[] };
            let p = ServerProcess::start_with(Server::Gateway, extra);
            let run = throughput(Server::Gateway, &p.url, conns, measure).await;
            if metrics { &mut cost.on } else { &mut cost.off }.push(run.per_second);
        }
    }
    cost
}

impl MetricsCost {
    fn median(values: &[f64]) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    /// (change of the median with metrics on, in percent; spread of the
    /// runs with metrics off, max-min over median, in percent).
    fn figures(&self) -> (f64, f64) {
        let off = Self::median(&self.off);
        let on = Self::median(&self.on);
        let max = self.off.iter().cloned().fold(f64::MIN, f64::max);
        let min = self.off.iter().cloned().fold(f64::MAX, f64::min);
        (100.0 * (on - off) / off, 100.0 * (max - min) / off)
    }

    fn summary(&self) -> String {
        let (change, noise) = self.figures();
        format!(
            "metrics at {} conns: off {:.0} rt/s, on {:.0} rt/s ({change:+.1}%; run-to-run spread with metrics off {noise:.1}%)",
            self.conns,
            Self::median(&self.off),
            Self::median(&self.on)
        )
    }

    fn markdown(&self) -> String {
        let (change, noise) = self.figures();
        let verdict = if change.abs() <= noise.max(1.0) {
            "met"
        } else {
            "not met"
        };
        format!(
            "\n## Cost of metrics\n\nRound trips at {} connections with `gateway.http.metrics.enabled` off and on (RPC counters and latency histograms, events sent), {} alternating runs each, medians.\n\n| metrics | rt/s |\n|---|---:|\n| off | {:.0} |\n| on | {:.0} |\n\n- within noise: {change:+.1}% against a run-to-run spread of {noise:.1}% with metrics off, {verdict}\n",
            self.conns,
            self.off.len(),
            Self::median(&self.off),
            Self::median(&self.on),
        )
    }
}

fn ratio((gateway, echo): &(Throughput, Throughput)) -> f64 {
    gateway.per_second / echo.per_second
}

fn markdown(
    args: &Args,
    rows: &[(usize, Throughput, Throughput)],
    gateway_mem: &[(usize, f64)],
    echo_mem: &[(usize, f64)],
) -> String {
    let mut o = String::from("# Benchmarks\n\n");
    o.push_str("Produced by `cargo run --release --bin clawgate-bench`");
    o.push_str(&format!(
        " ({}s measured per point after a warm-up; each point is the median of {} alternating clawgate/echo runs, by ratio).\n\n",
        args.seconds, args.repeat
    ));
    o.push_str(&format!("- machine: {}\n", machine()));
    o.push_str("- servers run in their own processes; the clients share the same cores\n");
    o.push_str(
        "- method: `health` in a closed loop per connection (send, await the reply, repeat)\n",
    );
    o.push_str("- baseline: a raw tokio-tungstenite server that echoes the same request frame, same socket buffer sizes\n\n");
    o.push_str("## Round trips\n\n| connections | clawgate rt/s | p50 | p99 | echo rt/s | p50 | p99 | clawgate/echo |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (conns, g, e) in rows {
        o.push_str(&format!(
            "| {conns} | {:.0} | {:.0} µs | {:.0} µs | {:.0} | {:.0} µs | {:.0} µs | {:.0}% |\n",
            g.per_second,
            g.p50_us,
            g.p99_us,
            e.per_second,
            e.p50_us,
            e.p99_us,
            100.0 * g.per_second / e.per_second
        ));
    }
    o.push_str("\n## Memory per idle connection\n\nServer resident memory growth divided by the number of open connections (gateway connections have completed `connect`).\n\n| connections | clawgate | echo |\n|---:|---:|---:|\n");
    for ((count, g), (_, e)) in gateway_mem.iter().zip(echo_mem) {
        o.push_str(&format!(
            "| {count} | {:.1} KB | {:.1} KB |\n",
            g / 1024.0,
            e / 1024.0
        ));
    }
    o.push_str("\n## Targets\n\n");
    if let Some((_, g, e)) = rows.iter().find(|(c, _, _)| *c == 64) {
        let verdict = |ok: bool| if ok { "met" } else { "not met" };
        o.push_str(&format!(
            "- at least 70% of the echo baseline's round trips at 64 connections: {:.0}%, {}\n",
            100.0 * g.per_second / e.per_second,
            verdict(g.per_second >= 0.7 * e.per_second)
        ));
        o.push_str(&format!(
            "- p99 under 2 ms at 64 connections: {:.2} ms (echo baseline: {:.2} ms), {}\n",
            g.p99_us / 1000.0,
            e.p99_us / 1000.0,
            verdict(g.p99_us < 2000.0)
        ));
    }
    if let Some(worst) = gateway_mem.iter().map(|(_, b)| *b).reduce(f64::max) {
        o.push_str(&format!(
            "- under 10 KB per idle connection: {:.1} KB at most, {}\n",
            worst / 1024.0,
            if worst < 10.0 * 1024.0 {
                "met"
            } else {
                "not met"
            }
        ));
    }
    o.push_str("\nThe clients run on the same two cores as the server, so latency includes their scheduling; compare with the echo column, measured the same way.\n");
    o
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

// ---- sessions and the OpenAI-compatible endpoint ------------------------

fn percentile(sorted_ms: &[f64], q: f64) -> f64 {
    sorted_ms
        .get(((sorted_ms.len() as f64 * q) as usize).min(sorted_ms.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0)
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

struct SessionsFigures {
    page_p50_ms: f64,
    page_p99_ms: f64,
    search_p50_ms: f64,
    walk_ms: f64,
}

impl SessionsFigures {
    fn markdown(&self, count: usize) -> String {
        format!(
            "\n## Sessions listing\n\n`sessions` over one connection with {count} sessions stored (each with a user and an assistant message).\n\n\
             | query | time |\n|---|---:|\n\
             | first page (`limit` 50), p50 | {:.2} ms |\n| first page, p99 | {:.2} ms |\n\
             | `search` over labels and keys, p50 | {:.2} ms |\n| every page (`limit` 1000, following `nextCursor`) | {:.0} ms |\n",
            self.page_p50_ms, self.page_p99_ms, self.search_p50_ms, self.walk_ms
        )
    }
}

/// Fills a store with `count` sessions, then times `sessions` on a gateway over it.
async fn sessions_listing(count: usize) -> SessionsFigures {
    let dir = std::env::temp_dir().join(format!("clawgate-bench-sessions-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("state dir");
    {
        let store = clawgate::store::Store::open(&dir).expect("store");
        let now = clawgate::gateway::now_ms();
        for i in 0..count {
            let key = format!("bench:{i:05}");
            let at = now - (count - i) as u64 * 1000;
            store
                .begin_turn(
                    key.clone(),
                    "main".into(),
                    format!("r{i}"),
                    "hello".into(),
                    at,
                )
                .await
                .expect("store turn");
            store
                .finish_turn(
                    key,
                    format!("r{i}"),
                    "hello".into(),
                    clawgate::protocol::types::ChatMessageStatus::Complete,
                    clawgate::protocol::types::Usage {
                        input_tokens: 1,
                        output_tokens: 1,
                    },
                    at,
                )
                .await
                .expect("store reply");
        }
    }
    let process = ServerProcess::start_with(
        Server::Gateway,
        &["--state-dir", dir.to_str().expect("utf-8 path")],
    );
    let mut client = client(&process.url).await;
    let mut page = Vec::new();
    let first_page = SessionsParams {
        limit: 50.try_into().expect("non-zero"),
        ..SessionsParams::default()
    };
    for _ in 0..200 {
        let started = Instant::now();
        let listed = client
            .sessions(&first_page)
            .await
            .expect("a page of sessions");
        page.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(listed.sessions.len(), 50);
    }
    let mut search = Vec::new();
    for i in 0..50 {
        let params = SessionsParams {
            search: Some(
                format!("{:05}", i * 37 % count.max(1))
                    .parse()
                    .expect("a search"),
            ),
            ..SessionsParams::default()
        };
        let started = Instant::now();
        client.sessions(&params).await.expect("sessions search");
        search.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let started = Instant::now();
    // Pages of 1,000 timed as JSON, by name, like cron.list: the gateway's
    // figure, without the client's typed decoding.
    let mut params = json!({"limit": 1000});
    let mut seen = 0;
    loop {
        let listed = client
            .call(Method::Sessions.name(), params.clone())
            .await
            .expect("a page of sessions");
        seen += listed["sessions"].as_array().map_or(0, Vec::len);
        match listed["nextCursor"].as_str() {
            Some(cursor) => params["cursor"] = json!(cursor),
            None => break,
        }
    }
    let walk_ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(seen, count, "every session listed once");
    drop(process);
    let _ = std::fs::remove_dir_all(&dir);
    let page = sorted(page);
    SessionsFigures {
        page_p50_ms: percentile(&page, 0.5),
        page_p99_ms: percentile(&page, 0.99),
        search_p50_ms: percentile(&sorted(search), 0.5),
        walk_ms,
    }
}

struct OpenAiFigures {
    direct_p50_ms: f64,
    gateway_p50_ms: f64,
    gateway_p99_ms: f64,
}

impl OpenAiFigures {
    fn markdown(&self, requests: usize) -> String {
        format!(
            "\n## OpenAI-compatible endpoint\n\n{requests} sequential non-streaming requests. Direct: the client streams the same reply from a local fake upstream itself. Through clawgate: `POST /v1/chat/completions` to the gateway, whose agent streams it from that upstream.\n\n\
             | path | p50 | p99 |\n|---|---:|---:|\n\
             | direct to the upstream | {:.2} ms | |\n| through clawgate | {:.2} ms | {:.2} ms |\n| added by clawgate (p50) | {:.2} ms | |\n",
            self.direct_p50_ms, self.gateway_p50_ms, self.gateway_p99_ms, self.gateway_p50_ms - self.direct_p50_ms
        )
    }
}

/// An OpenAI-compatible upstream that streams `pieces` as one reply.
async fn fake_upstream(pieces: Vec<String>) -> String {
    use axum::routing::post;
    let pieces = Arc::new(pieces);
    let reply = move || async move {
        let mut body = String::new();
        for piece in pieces.iter() {
            let chunk = json!({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
            body.push_str(&format!("data: {chunk}\n\n"));
        }
        let last = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 4}});
        body.push_str(&format!("data: {last}\n\ndata: [DONE]\n\n"));
        ([("content-type", "text/event-stream")], body)
    };
    let app = axum::Router::new().route("/v1/chat/completions", post(reply));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/v1")
}

async fn openai_overhead(requests: usize) -> OpenAiFigures {
    let hello = ["Hello", ", ", "world", "!"].map(String::from).to_vec();
    let upstream = fake_upstream(hello).await;
    let http = clawgate::agent::http_client();
    let body = json!({"model": "main", "messages": [{"role": "user", "content": "hi"}]});
    let mut direct = Vec::new();
    for _ in 0..requests {
        let started = Instant::now();
        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        let response = http
            .post(format!("{upstream}/chat/completions"))
            .header("content-type", "application/json")
            .body(streamed.to_string())
            .send()
            .await
            .expect("upstream");
        let mut chunks = response.bytes_stream();
        while chunks.next().await.is_some() {}
        direct.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let process = ServerProcess::start_with(Server::Gateway, &["--upstream", &upstream]);
    let endpoint = process.url.replacen("ws://", "http://", 1) + "v1/chat/completions";
    let mut through = Vec::new();
    for _ in 0..requests {
        let started = Instant::now();
        let response = http
            .post(&endpoint)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("gateway");
        let reply: Value =
            serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
        assert_eq!(reply["choices"][0]["message"]["content"], "Hello, world!");
        through.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let through = sorted(through);
    OpenAiFigures {
        direct_p50_ms: percentile(&sorted(direct), 0.5),
        gateway_p50_ms: percentile(&through, 0.5),
        gateway_p99_ms: percentile(&through, 0.99),
    }
}
