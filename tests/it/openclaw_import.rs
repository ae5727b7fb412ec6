//! `clawgate config import-openclaw` on sample configs written from
//! OpenClaw's public configuration reference (tests/openclaw/): the
//! result validates and carries the settings clawgate supports, and the
//! rest is listed with its reason.

use crate::support::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/openclaw")
        .join(name)
        .join("openclaw.json")
}

/// The secrets the samples refer to, as the owner's environment has them.
const ENV: &[(&str, &str)] = &[
    ("OPENCLAW_GATEWAY_TOKEN", "gateway-token-0123456789"),
    ("ANTHROPIC_API_KEY", "sk-ant-0123456789"),
    ("VLLM_API_KEY", "vllm-key-0123456789"),
    ("TELEGRAM_BOT_TOKEN", "123:home-bot-token"),
    ("TELEGRAM_OPS_BOT_TOKEN", "456:ops-bot-token"),
];

fn clawgate(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("HOME", "/home/owner")
        .envs(ENV.iter().copied())
        .env_remove("CLAWGATE_CONFIG")
        .output()
        .unwrap()
}

/// Imports `name` into a fresh file; the config as JSON and the report.
fn import(name: &str) -> (Value, String) {
    let out = temp_dir("import").join("clawgate.toml");
    let run = clawgate(&[
        "config",
        "import-openclaw",
        sample(name).to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let report = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{report}");
    let valid = clawgate(&["config", "validate", out.to_str().unwrap()]);
    assert!(
        valid.status.success(),
        "the imported config does not validate: {}\n{}",
        String::from_utf8_lossy(&valid.stderr),
        std::fs::read_to_string(&out).unwrap()
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("# Imported from "), "{text}");
    let config: Value = toml::from_str(&text).unwrap();
    (config, report)
}

#[test]
fn a_minimal_config_carries_over_whole() {
    let (config, report) = import("minimal");
    assert!(report.contains("everything was carried over"), "{report}");
    assert_eq!(config["gateway"]["port"], 18789);
    assert_eq!(
        config["gateway"]["auth"]["token"],
        "${OPENCLAW_GATEWAY_TOKEN}"
    );
    let main = &config["agents"]["main"];
    assert_eq!(
        (main["provider"].as_str(), main["model"].as_str()),
        (Some("anthropic"), Some("claude-sonnet-4-6"))
    );
    assert_eq!(main["workspace"], "/home/owner/.openclaw/workspace");
    let bot = &config["channels"]["telegram"]["default"];
    assert_eq!(bot["token"], "${TELEGRAM_BOT_TOKEN}");
    assert_eq!(bot["allowFrom"], serde_json::json!(["123456789"]));
}

#[test]
fn a_fuller_config_carries_what_clawgate_supports_and_lists_the_rest() {
    let (config, report) = import("full");
    // Gateway, agents and models.
    assert_eq!(config["gateway"]["bind"], "lan");
    assert_eq!(config["gateway"]["auth"]["maxFailuresPerMinute"], 5);
    assert_eq!(config["gateway"]["tls"]["enabled"], true);
    assert_eq!(config["gateway"]["tls"]["autoGenerate"], true);
    assert!(config["gateway"]["tls"].get("caPath").is_none());
    assert_eq!(config["agents"]["default"], "main");
    let ops = &config["agents"]["ops"];
    assert_eq!(ops["provider"], "openai");
    assert_eq!(ops["baseUrl"], "http://127.0.0.1:8000/v1");
    assert_eq!(ops["apiKey"], "${VLLM_API_KEY}");
    assert_eq!(ops["timeoutMs"], 600_000);
    // Heartbeats: the defaults under each agent's own block.
    let beat = &config["agents"]["main"]["heartbeat"];
    assert_eq!(beat["every"], "30m");
    assert_eq!(beat["activeHours"]["timezone"], "Europe/Berlin");
    let ops_beat = &ops["heartbeat"];
    assert_eq!(
        (
            ops_beat["every"].as_str(),
            ops_beat["target"].as_str(),
            ops_beat["accountId"].as_str()
        ),
        (Some("1h"), Some("telegram"), Some("ops-bot"))
    );
    // Two bots inheriting the section's policy; an env SecretRef as ${VAR}.
    let telegram = &config["channels"]["telegram"];
    assert_eq!(telegram["ops-bot"]["token"], "${TELEGRAM_OPS_BOT_TOKEN}");
    assert_eq!(telegram["default"]["dmPolicy"], "allowlist");
    assert_eq!(
        telegram["default"]["allowFrom"],
        serde_json::json!(["123456789", "555000111"])
    );
    assert_eq!(
        telegram["ops-bot"]["groups"],
        serde_json::json!(["-1009876543210"])
    );
    let irc = &config["channels"]["irc"]["default"];
    assert_eq!(
        (
            irc["server"].as_str(),
            irc["port"].as_u64(),
            irc["tls"].as_bool()
        ),
        (Some("irc.libera.chat"), Some(6697), Some(true))
    );
    assert_eq!(
        irc["allowFrom"],
        serde_json::json!(["alice!alice@example.org"])
    );
    // Bindings (an omitted accountId is the default account), session, cron.
    let bindings = config["bindings"].as_array().unwrap();
    assert_eq!(bindings.len(), 3);
    // A peer match comes first, as OpenClaw tries it first.
    assert_eq!(bindings[0]["agentId"], "ops");
    assert_eq!(bindings[0]["match"]["group"], "-1009876543210");
    assert_eq!(bindings[0]["match"]["accountId"], "default");
    assert_eq!(config["session"]["dmScope"], "per-channel-peer");
    assert_eq!(config["session"]["retentionDays"], 30);
    let jobs = &config["cron"]["jobs"];
    assert_eq!(jobs["morning-brief"]["schedule"]["expr"], "0 8 * * *");
    assert_eq!(jobs["morning-brief"]["timeoutMs"], 300_000);
    assert_eq!(jobs["stretch"]["payload"]["text"], "Reminder: stretch.");
    assert!(jobs.get("backup").is_none());
    assert_eq!(config["logging"]["level"], "debug");

    for expected in [
        "channels.telegram.dmPolicy: pairing became allowlist",
        "channels.whatsapp: clawgate has no whatsapp channel",
        "agents.list.0.model: fallback models",
        "agents.list.1.heartbeat.model",
        "bindings.3: clawgate has no discord channel",
        "session.reset: ",
        "cron.jobs.backup: payload command",
        "cron.jobs.morning-brief.delivery",
        "channels.irc.default.allowFrom.1: left out of the clawgate config: \"bob\" is a nick alone",
        "gateway.http.endpoints.responses",
        "gateway.tls.caPath: ",
        "commands: ",
        "meta: ",
    ] {
        assert!(report.contains(expected), "{expected:?} missing from:\n{report}");
    }
    assert_eq!(
        report.matches("channels.telegram.dmPolicy").count(),
        1,
        "an inherited setting is listed once: {report}"
    );
}

#[test]
fn a_broken_file_or_an_existing_output_is_refused() {
    let dir = temp_dir("import-bad");
    let bad = dir.join("openclaw.json");
    std::fs::write(&bad, "{\n  gateway: { port: 18789,, }\n}\n").unwrap();
    let run = clawgate(&["config", "import-openclaw", bad.to_str().unwrap()]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("openclaw.json:2:"), "{stderr}");
    let taken = dir.join("clawgate.toml");
    std::fs::write(&taken, "# mine\n").unwrap();
    let run = clawgate(&[
        "config",
        "import-openclaw",
        sample("minimal").to_str().unwrap(),
        "--out",
        taken.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "# mine\n");
}

#[test]
fn openclaw_defaults_and_awkward_values_are_read_as_openclaw_means_them() {
    let dir = temp_dir("import-edge");
    let path = dir.join("openclaw.json");
    std::fs::write(
        &path,
        r#"{
          agents: {
            defaults: { model: "anthropic/claude-sonnet-4-6", heartbeat: { session: "main" } },
            list: [ { id: "default" }, { id: "home", heartbeat: { every: 45, session: "checks" } } ],
          },
          channels: { irc: { host: "irc.example.org", nick: "clawd", allowFrom: ["alice", "bob", "carol!c@example.org"] } },
        }"#,
    )
    .unwrap();
    let out = dir.join("clawgate.toml");
    let run = clawgate(&[
        "config",
        "import-openclaw",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let report = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{report}");
    assert!(clawgate(&["config", "validate", out.to_str().unwrap()])
        .status
        .success());
    let config: Value = toml::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(
        report.contains("an agent called default clashes"),
        "{report}"
    );
    assert_eq!(config["agents"]["default"], "home");
    let beat = &config["agents"]["home"]["heartbeat"];
    // A bare number is minutes; no target delivers nothing; a session
    // name is one of the agent's.
    assert_eq!(beat["every"], "45m", "{beat}");
    assert_eq!(beat["target"], "none");
    assert_eq!(beat["session"], "agent:home:checks");
    // Both bare nicks are dropped, the full mask stays.
    assert_eq!(
        config["channels"]["irc"]["default"]["allowFrom"],
        serde_json::json!(["carol!c@example.org"])
    );
    assert_eq!(report.matches("is a nick alone").count(), 2, "{report}");
}

#[test]
fn included_files_are_merged_as_openclaw_reads_them() {
    let dir = temp_dir("import-include");
    std::fs::create_dir_all(dir.join("parts")).unwrap();
    std::fs::write(
        dir.join("openclaw.json"),
        r#"{
          $include: ["./parts/gateway.json5", "./parts/channels.json5"],
          gateway: { port: 18801 },   // over the included 18800
          agents: { $include: "./parts/agents.json5" },
        }"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("parts/gateway.json5"),
        "{ gateway: { port: 18800, bind: 'loopback', auth: { mode: 'token', token: '${OPENCLAW_GATEWAY_TOKEN}' } } }",
    )
    .unwrap();
    std::fs::write(
        dir.join("parts/channels.json5"),
        "{ channels: { telegram: { botToken: '${TELEGRAM_BOT_TOKEN}', dmPolicy: 'allowlist', allowFrom: ['42'] } } }",
    )
    .unwrap();
    std::fs::write(
        dir.join("parts/agents.json5"),
        "{ defaults: { model: 'anthropic/claude-sonnet-4-6' } }",
    )
    .unwrap();
    let out = dir.join("clawgate.toml");
    let run = clawgate(&[
        "config",
        "import-openclaw",
        dir.join("openclaw.json").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let config: Value = toml::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(config["gateway"]["port"], 18801);
    assert_eq!(
        config["gateway"]["auth"]["token"],
        "${OPENCLAW_GATEWAY_TOKEN}"
    );
    assert_eq!(
        config["channels"]["telegram"]["default"]["allowFrom"],
        serde_json::json!(["42"])
    );
    assert_eq!(config["agents"]["main"]["provider"], "anthropic");

    // A file outside the config's directory is refused.
    let outside = format!(
        "{}-outside.json5",
        dir.file_name().unwrap().to_str().unwrap()
    );
    let outside_path = dir.parent().unwrap().join(&outside);
    std::fs::write(&outside_path, "{}").unwrap();
    std::fs::write(
        dir.join("parts/sneaky.json5"),
        format!("{{ $include: '../../{outside}' }}"),
    )
    .unwrap();
    std::fs::write(
        dir.join("openclaw.json"),
        "{ $include: './parts/sneaky.json5' }",
    )
    .unwrap();
    let run = clawgate(&[
        "config",
        "import-openclaw",
        dir.join("openclaw.json").to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("outside the config's directory"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::remove_file(outside_path).unwrap();
}
