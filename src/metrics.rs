//! Prometheus metrics: the series the gateway records as it works, and
//! the ones read at scrape time (connections, channels, the process).
//! Encoded by prometheus-client in the OpenMetrics text format, which
//! Prometheus scrapes natively.

use crate::protocol::Method;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The content type of [`Metrics::render`]'s output.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of [`prometheus_text`]'s output.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The outcome of a call that succeeded.
pub const OK: &str = "ok";

/// RPC latency buckets, in seconds: most calls answer in microseconds,
/// a chat turn may take a minute.
const RPC_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 5.0, 30.0,
];
/// Upstream (model provider) latency buckets, in seconds.
const UPSTREAM_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodOutcome {
    /// A core method's name, or a plugin method's.
    pub method: Cow<'static, str>,
    /// `ok`, or the error code's name.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: Cow<'static, str>,
}

/// Plugin method names given labels of their own; calls of further ones
/// (plugins renaming their methods on every restart, say) share one.
const MAX_PLUGIN_LABELS: usize = 4096;
const OTHER_PLUGIN_METHOD: &str = "(other plugin method)";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentOutcome {
    pub agent: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentProvider {
    pub agent: String,
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentTokens {
    pub agent: String,
    /// `input` or `output`.
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Decision {
    pub decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabel {
    channel: String,
    account: String,
}

/// What is read from the gateway at scrape time rather than counted.
#[derive(Clone, Debug, Default)]
pub struct Live {
    /// Open connections by role (`unauthenticated` before connect).
    pub connections: Vec<(String, u64)>,
    pub channels: Vec<ChannelCounts>,
}

#[derive(Clone, Debug, Default)]
pub struct ChannelCounts {
    pub channel: String,
    pub account: String,
    pub received: u64,
    pub sent: u64,
    pub dropped: u64,
}

/// Every recorded series. Recording does nothing while metrics are off
/// (`gateway.http.metrics.enabled`), so they cost nothing unless asked for.
#[derive(Debug)]
pub struct Metrics {
    enabled: AtomicBool,
    registry: Registry,
    rpc_calls: Family<MethodOutcome, Counter>,
    rpc_duration: Family<MethodLabel, LatencyHistogram>,
    /// By `Method as usize`: the method's `ok` counter and its latency
    /// histogram, taken from the families at first use, so that the
    /// common call skips the families' locked lookups.
    by_method: Vec<OnceLock<(Counter, LatencyHistogram)>>,
    /// The plugin method names labelled so far.
    plugin_labels: std::sync::Mutex<std::collections::HashSet<String>>,
    events_sent: Family<EventLabel, Counter>,
    events_dropped: Counter,
    slow_disconnects: Counter,
    chat_turns: Family<AgentOutcome, Counter>,
    upstream_duration: Family<AgentProvider, LatencyHistogram>,
    tokens: Family<AgentTokens, Counter>,
    cron_runs: Family<Outcome, Counter>,
    node_invokes: Family<Outcome, Counter>,
    approvals: Family<Decision, Counter>,
    config_reloads: Family<Outcome, Counter>,
    start_time_seconds: AtomicU64,
}

fn rpc_histogram() -> LatencyHistogram {
    LatencyHistogram::new(&RPC_BUCKETS)
}

fn upstream_histogram() -> LatencyHistogram {
    LatencyHistogram::new(&UPSTREAM_BUCKETS)
}

/// A histogram of durations kept in atomics. prometheus-client's own
/// histogram takes a mutex per observation, and with every worker thread
/// answering the same method that lock was contended on each call; this
/// one is encoded through the same encoder, as a classic histogram.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    inner: std::sync::Arc<LatencyBuckets>,
}

#[derive(Debug)]
struct LatencyBuckets {
    /// Upper bounds in seconds, ascending; a last bucket catches the rest.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative), one more than `bounds`.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    fn new(bounds: &'static [f64]) -> LatencyHistogram {
        LatencyHistogram {
            inner: std::sync::Arc::new(LatencyBuckets {
                bounds,
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum_nanos: AtomicU64::new(0),
            }),
        }
    }

    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = self.inner.bounds.partition_point(|bound| *bound < seconds);
        self.inner.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl prometheus_client::metrics::TypedMetric for LatencyHistogram {
    const TYPE: prometheus_client::metrics::MetricType =
        prometheus_client::metrics::MetricType::Histogram;
}

impl prometheus_client::encoding::EncodeMetric for LatencyHistogram {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        let bounds = self.inner.bounds.iter().copied().chain([f64::INFINITY]);
        let mut cumulative = 0;
        let buckets: Vec<(f64, u64)> = bounds
            .zip(&self.inner.counts)
            .map(|(bound, count)| {
                cumulative += count.load(Ordering::Relaxed);
                (bound, cumulative)
            })
            .collect();
        let sum = self.inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            sum, cumulative, &buckets, None,
        )
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        <Self as prometheus_client::metrics::TypedMetric>::TYPE
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("clawgate");
        let rpc_calls = Family::<MethodOutcome, Counter>::default();
        registry.register(
            "rpc_calls",
            "RPC calls answered, by method and outcome (ok or the error code)",
            rpc_calls.clone(),
        );
        let rpc_duration = Family::<MethodLabel, LatencyHistogram>::new_with_constructor(
            rpc_histogram as fn() -> LatencyHistogram,
        );
        registry.register_with_unit(
            "rpc_duration",
            "Time from a request to its answer, by method",
            Unit::Seconds,
            rpc_duration.clone(),
        );
        let events_sent = Family::<EventLabel, Counter>::default();
        registry.register(
            "events_sent",
            "Events queued to clients, by event",
            events_sent.clone(),
        );
        let events_dropped = Counter::default();
        registry.register(
            "events_dropped",
            "Events a client missed because it fell behind the event bus (it is then disconnected)",
            events_dropped.clone(),
        );
        let slow_disconnects = Counter::default();
        registry.register(
            "slow_client_disconnects",
            "Clients disconnected because they did not read fast enough",
            slow_disconnects.clone(),
        );
        let chat_turns = Family::<AgentOutcome, Counter>::default();
        registry.register(
            "chat_turns",
            "Agent turns, by agent and outcome (complete, aborted, error)",
            chat_turns.clone(),
        );
        let upstream_duration = Family::<AgentProvider, LatencyHistogram>::new_with_constructor(
            upstream_histogram as fn() -> LatencyHistogram,
        );
        registry.register_with_unit(
            "upstream_duration",
            "Time a model provider took to answer a turn (tool calls included), by agent and provider",
            Unit::Seconds,
            upstream_duration.clone(),
        );
        let tokens = Family::<AgentTokens, Counter>::default();
        registry.register(
            "agent_tokens",
            "Tokens the model providers reported, by agent and direction (input, output)",
            tokens.clone(),
        );
        let cron_runs = Family::<Outcome, Counter>::default();
        registry.register("cron_runs", "Cron job runs, by outcome", cron_runs.clone());
        let node_invokes = Family::<Outcome, Counter>::default();
        registry.register(
            "node_invokes",
            "Commands invoked on device nodes, by outcome",
            node_invokes.clone(),
        );
        let approvals = Family::<Decision, Counter>::default();
        registry.register(
            "approvals",
            "Exec approval requests resolved, by decision",
            approvals.clone(),
        );
        let config_reloads = Family::<Outcome, Counter>::default();
        registry.register(
            "config_reloads",
            "Config file reloads and edits, by outcome (applied, rejected, unreadable)",
            config_reloads.clone(),
        );
        Metrics {
            enabled: AtomicBool::new(false),
            registry,
            rpc_calls,
            rpc_duration,
            by_method: Method::ALL.iter().map(|_| OnceLock::new()).collect(),
            plugin_labels: std::sync::Mutex::default(),
            events_sent,
            events_dropped,
            slow_disconnects,
            chat_turns,
            upstream_duration,
            tokens,
            cron_runs,
            node_invokes,
            approvals,
            config_reloads,
            start_time_seconds: AtomicU64::new(0),
        }
    }

    /// Turns recording on or off (follows the config).
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn set_start_time(&self, unix_seconds: u64) {
        self.start_time_seconds
            .store(unix_seconds, Ordering::Relaxed);
    }

    /// One answered call; `outcome` is `ok` or the error code's name.
    pub fn rpc(&self, method: Method, outcome: &'static str, took: Duration) {
        if !self.enabled() {
            return;
        }
        let name = method.name();
        let (ok, latency) = self.by_method[method as usize].get_or_init(|| {
            let ok = MethodOutcome {
                method: Cow::Borrowed(name),
                outcome: OK,
            };
            let latency = MethodLabel {
                method: Cow::Borrowed(name),
            };
            (
                self.rpc_calls.get_or_create(&ok).clone(),
                self.rpc_duration.get_or_create(&latency).clone(),
            )
        });
        if outcome == OK {
            ok.inc();
        } else {
            self.rpc_calls
                .get_or_create(&MethodOutcome {
                    method: Cow::Borrowed(name),
                    outcome,
                })
                .inc();
        }
        latency.observe(took);
    }

    /// One answered call of a plugin's method (`<plugin>.<method>`), in
    /// the same series as the gateway's own methods.
    pub fn plugin_rpc(&self, method: &str, outcome: &'static str, took: Duration) {
        if !self.enabled() {
            return;
        }
        let label: Cow<'static, str> = {
            let mut known = self.plugin_labels.lock().expect("plugin labels");
            if known.contains(method) || known.len() < MAX_PLUGIN_LABELS {
                known.insert(method.to_string());
                Cow::Owned(method.to_string())
            } else {
                Cow::Borrowed(OTHER_PLUGIN_METHOD)
            }
        };
        self.rpc_calls
            .get_or_create(&MethodOutcome {
                method: label.clone(),
                outcome,
            })
            .inc();
        self.rpc_duration
            .get_or_create(&MethodLabel { method: label })
            .observe(took);
    }

    /// A call of a name that is no method; all such names share one label,
    /// so a client cannot grow the series.
    pub fn rpc_unknown(&self, outcome: &'static str) {
        if self.enabled() {
            let labels = MethodOutcome {
                method: Cow::Borrowed("(unknown)"),
                outcome,
            };
            self.rpc_calls.get_or_create(&labels).inc();
        }
    }

    pub fn event_sent(&self, event: &'static str) {
        if self.enabled() {
            self.events_sent.get_or_create(&EventLabel { event }).inc();
        }
    }

    pub fn events_dropped(&self, count: u64) {
        if self.enabled() {
            self.events_dropped.inc_by(count);
        }
    }

    pub fn slow_disconnect(&self) {
        if self.enabled() {
            self.slow_disconnects.inc();
        }
    }

    pub fn turn(&self, agent: &str, outcome: &'static str) {
        if self.enabled() {
            let labels = AgentOutcome {
                agent: agent.to_string(),
                outcome,
            };
            self.chat_turns.get_or_create(&labels).inc();
        }
    }

    pub fn upstream(&self, agent: &str, provider: &dyn std::fmt::Display, took: Duration) {
        if self.enabled() {
            let labels = AgentProvider {
                agent: agent.to_string(),
                provider: provider.to_string(),
            };
            self.upstream_duration.get_or_create(&labels).observe(took);
        }
    }

    pub fn tokens(&self, agent: &str, input: u64, output: u64) {
        if !self.enabled() {
            return;
        }
        for (direction, count) in [("input", input), ("output", output)] {
            let labels = AgentTokens {
                agent: agent.to_string(),
                direction,
            };
            self.tokens.get_or_create(&labels).inc_by(count);
        }
    }

    /// `outcome` as the protocol names a run's status.
    pub fn cron_run(&self, outcome: impl std::fmt::Display) {
        if self.enabled() {
            let outcome = outcome.to_string();
            self.cron_runs.get_or_create(&Outcome { outcome }).inc();
        }
    }

    /// `ok`, or the error code's name.
    pub fn node_invoke(&self, outcome: &str) {
        if self.enabled() {
            let outcome = outcome.to_string();
            self.node_invokes.get_or_create(&Outcome { outcome }).inc();
        }
    }

    /// `decision` as the protocol names it (timeout included).
    pub fn approval(&self, decision: impl std::fmt::Display) {
        if self.enabled() {
            let decision = decision.to_string();
            self.approvals.get_or_create(&Decision { decision }).inc();
        }
    }

    pub fn config_reload(&self, outcome: &str) {
        if self.enabled() {
            let outcome = outcome.to_string();
            self.config_reloads
                .get_or_create(&Outcome { outcome })
                .inc();
        }
    }

    /// The exposition: recorded series, then those read now.
    pub fn render(&self, live: &Live) -> String {
        let mut out = String::new();
        encode_registry(&mut out, &self.registry).expect("writing to a String");
        let scraped = self.scraped(live);
        encode_registry(&mut out, &scraped).expect("writing to a String");
        encode_eof(&mut out).expect("writing to a String");
        out
    }

    fn scraped(&self, live: &Live) -> Registry {
        let mut registry = Registry::default();
        let connections = Family::<RoleLabel, Gauge>::default();
        for (role, count) in &live.connections {
            connections
                .get_or_create(&RoleLabel { role: role.clone() })
                .set(*count as i64);
        }
        registry.register(
            "clawgate_connections",
            "Open WebSocket connections, by role (unauthenticated before connect)",
            connections,
        );
        let families = [
            ("received", "Channel messages received, by channel and account"),
            ("sent", "Channel messages sent, by channel and account"),
            (
                "dropped",
                "Channel messages dropped by policy (not allowed, not addressed), by channel and account",
            ),
        ];
        for (which, help) in families {
            let family = Family::<ChannelLabel, Counter>::default();
            for c in &live.channels {
                let count = match which {
                    "received" => c.received,
                    "sent" => c.sent,
                    _ => c.dropped,
                };
                let labels = ChannelLabel {
                    channel: c.channel.clone(),
                    account: c.account.clone(),
                };
                family.get_or_create(&labels).inc_by(count);
            }
            registry.register(format!("clawgate_channel_messages_{which}"), help, family);
        }
        process::register(
            &mut registry,
            self.start_time_seconds.load(Ordering::Relaxed),
        );
        registry
    }
}

/// The exposition in the older Prometheus text format (0.0.4), for
/// scrapers that do not ask for OpenMetrics (promtool, curl): the two
/// differ only in that a counter's HELP and TYPE lines name the `_total`
/// series, and in the UNIT and EOF lines, which the older format lacks.
pub fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let header = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|tag| Some((tag, line.strip_prefix(tag)?)));
        match header {
            Some((tag, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{tag}{name}{suffix} {tail}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The conventional `process_*` series, read from /proc.
mod process {
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;
    use prometheus_client::registry::{Registry, Unit};

    pub fn register(registry: &mut Registry, start_time_seconds: u64) {
        registry.register_with_unit(
            "process_start_time",
            "Start time of the process since the Unix epoch",
            Unit::Seconds,
            ConstGauge::new(start_time_seconds as i64),
        );
        if let Some(fds) = std::fs::read_dir("/proc/self/fd").ok().map(Iterator::count) {
            registry.register(
                "process_open_fds",
                "Number of open file descriptors",
                ConstGauge::new(fds as i64),
            );
        }
        if let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
            registry.register(
                "process_max_fds",
                "Maximum number of open file descriptors",
                ConstGauge::new(soft.min(i64::MAX as u64) as i64),
            );
        }
        let Some(stat) = Stat::read() else { return };
        registry.register_with_unit(
            "process_cpu",
            "Total user and system CPU time spent",
            Unit::Seconds,
            ConstCounter::new(stat.cpu_seconds),
        );
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory size",
            Unit::Bytes,
            ConstGauge::new(stat.resident_bytes as i64),
        );
        registry.register_with_unit(
            "process_virtual_memory",
            "Virtual memory size",
            Unit::Bytes,
            ConstGauge::new(stat.virtual_bytes as i64),
        );
        registry.register(
            "process_threads",
            "Number of OS threads",
            ConstGauge::new(stat.threads as i64),
        );
    }

    struct Stat {
        cpu_seconds: f64,
        virtual_bytes: u64,
        resident_bytes: u64,
        threads: u64,
    }

    impl Stat {
        /// Fields of /proc/self/stat (proc(5)), counted after the
        /// parenthesised command name, which may hold spaces.
        fn read() -> Option<Stat> {
            let text = std::fs::read_to_string("/proc/self/stat").ok()?;
            let rest = &text[text.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // fields[0] is field 3 (state).
            let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
            // SAFETY: sysconf only reads a constant of the system.
            let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
            // SAFETY: as above.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
            Some(Stat {
                cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
                threads: field(20)?,
                virtual_bytes: field(23)?,
                resident_bytes: field(24)? * page,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_recorded_while_off_and_everything_while_on() {
        let health = Method::Health;
        let metrics = Metrics::new();
        metrics.rpc(health, "ok", Duration::from_micros(80));
        assert!(!metrics
            .render(&Live::default())
            .contains("method=\"health\""));
        metrics.set_enabled(true);
        metrics.rpc(health, "ok", Duration::from_micros(80));
        metrics.tokens("main", 3, 5);
        let text = metrics.render(&Live {
            connections: vec![("operator".into(), 2)],
            channels: vec![ChannelCounts {
                channel: "irc".into(),
                account: "libera".into(),
                received: 4,
                sent: 1,
                dropped: 2,
            }],
        });
        assert!(text.contains("clawgate_rpc_calls_total{method=\"health\",outcome=\"ok\"} 1"));
        assert!(text
            .contains("clawgate_rpc_duration_seconds_bucket{le=\"0.0001\",method=\"health\"} 1"));
        assert!(text.contains("clawgate_agent_tokens_total{agent=\"main\",direction=\"output\"} 5"));
        assert!(text.contains("clawgate_connections{role=\"operator\"} 2"));
        assert!(text.contains(
            "clawgate_channel_messages_dropped_total{channel=\"irc\",account=\"libera\"} 2"
        ));
        assert!(text.contains("process_resident_memory_bytes "));
        assert!(text.ends_with("# EOF\n"));
        let old = prometheus_text(&text);
        assert!(old.contains("# HELP clawgate_rpc_calls_total RPC calls"));
        assert!(old.contains("# TYPE clawgate_rpc_calls_total counter\n"));
        assert!(old.contains("# TYPE clawgate_rpc_duration_seconds histogram\n"));
        assert!(!old.contains("# EOF") && !old.contains("# UNIT"));
    }
}
