//! Line-precise config errors: every file in tests/config_corpus is
//! validated by the real CLI and its report is pinned by a snapshot.

use crate::schema::settings;
use crate::support::bin;
use std::process::Command;

const SECRET: &str = "hunter2-secret-value";

#[test]
fn every_bad_config_gets_a_located_error_and_never_shows_a_secret() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files: Vec<_> = std::fs::read_dir(format!("{root}/tests/config_corpus"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert!(files.len() >= 10);
    for file in files {
        let relative = format!("tests/config_corpus/{file}");
        let mut cmd = Command::new(bin());
        cmd.args(["config", "validate", &relative])
            .current_dir(root);
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("CLAWGATE_")) {
            cmd.env_remove(key);
        }
        let out = cmd.output().unwrap();
        let report = format!(
            "exit: {}\n{}{}",
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "{file} should be invalid:\n{report}"
        );
        assert!(
            report.contains(&relative),
            "{file}: the report names the file:\n{report}"
        );
        assert!(
            !report.contains(SECRET),
            "{file}: a secret was printed:\n{report}"
        );
        settings().bind(|| insta::assert_snapshot!(format!("config_error_{file}"), report));
    }
}

#[test]
fn format_json_gives_editors_every_problem_with_its_span() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(bin())
        .args([
            "config",
            "validate",
            "--format",
            "json",
            "tests/config_corpus/several_problems.json",
        ])
        .current_dir(root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 5);
    for p in problems {
        for field in ["line", "column", "endLine", "endColumn"] {
            assert!(p[field].as_u64().is_some(), "{field} in {p}");
        }
    }
    // "port": -1 — the span is the value, not the key.
    let port = problems
        .iter()
        .find(|p| p["path"] == "gateway.port")
        .unwrap();
    assert_eq!((&port["line"], &port["column"]), (&3.into(), &13.into()));
    assert_eq!(port["endColumn"], 15);
    assert_eq!(port["expected"], "an integer from 0 to 65535");
    assert_eq!(port["found"], "the number -1");
    let mode = problems
        .iter()
        .find(|p| p["path"] == "gateway.auth.mode")
        .unwrap();
    assert_eq!(mode["help"], "did you mean \"token\"?");
}

#[test]
fn config_show_names_where_each_value_came_from() {
    let dir = crate::support::temp_dir("show");
    let file = dir.join("clawgate.toml");
    std::fs::write(
        &file,
        "[gateway]\nport = 4000\ntickIntervalMs = 20000\n\n[gateway.auth]\nmode = \"token\"\ntoken = \"file-secret-token\"\n",
    )
    .unwrap();
    let show = |args: &[&str]| {
        let mut cmd = Command::new(bin());
        cmd.args(["config", "show", "--config", file.to_str().unwrap()])
            .args(args)
            .env("CLAWGATE_GATEWAY__HANDSHAKE_TIMEOUT_MS", "7000");
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("CLAWGATE_GATEWAY__T")) {
            cmd.env_remove(key);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = show(&["--origin", "--port", "4100", "gateway"]);
    let line_of = |key: &str| {
        text.lines()
            .find(|l| l.contains(&format!(" {key} = ")))
            .unwrap_or_else(|| panic!("{key} missing in:\n{text}"))
            .to_string()
    };
    let file_name = file.display().to_string();
    assert!(line_of("gateway.tickIntervalMs").starts_with(&format!("{file_name}:3:18 ")));
    assert!(line_of("gateway.port").starts_with("flag --port "));
    assert!(line_of("gateway.port").ends_with("= 4100"));
    assert!(line_of("gateway.handshakeTimeoutMs")
        .starts_with("environment variable CLAWGATE_GATEWAY__HANDSHAKE_TIMEOUT_MS "));
    assert!(line_of("gateway.reload.debounceMs").starts_with("default "));
    assert!(line_of("gateway.auth.token").ends_with("= \"[redacted]\""));
    assert!(!text.contains("file-secret-token"));

    // Without a token in the file, the one a gateway generated counts.
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("gateway.token"), "generated-secret-token\n").unwrap();
    std::fs::write(&file, "[gateway]\nport = 4000\n").unwrap();
    let text = show(&[
        "--origin",
        "--state-dir",
        state.to_str().unwrap(),
        "gateway.auth",
    ]);
    let token = text
        .lines()
        .find(|l| l.contains("gateway.auth.token"))
        .unwrap();
    assert!(token.starts_with("generated, kept in "), "{text}");
    assert!(!text.contains("generated-secret-token"));

    let plain = show(&["gateway.port"]);
    assert_eq!(plain.trim(), "gateway.port = 4000");
    let json: serde_json::Value =
        serde_json::from_str(&show(&["--origin", "--format", "json", "gateway.port"])).unwrap();
    assert_eq!(json["value"], 4000);
    assert_eq!(json["origins"]["gateway.port"]["kind"], "file");
    assert_eq!(json["origins"]["gateway.port"]["line"], 2);
}

#[test]
fn a_valid_file_validates_with_exit_zero() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(bin())
        .args(["config", "validate", "examples/lan.toml"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("is valid"));
}

#[test]
fn config_schema_prints_the_json_schema() {
    let out = Command::new(bin())
        .args(["config", "schema"])
        .output()
        .unwrap();
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["title"], "clawgate configuration");
    assert!(schema["properties"]["gateway"].is_object());
}

/// On a terminal the report is coloured (and still says the same); piped,
/// as in the snapshots above, it has no escape codes at all.
#[test]
fn the_report_is_coloured_only_on_a_terminal() {
    let root = env!("CARGO_MANIFEST_DIR");
    let socket = format!("clawgate-it-{}", uuid::Uuid::new_v4().simple());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux is installed")
    };
    let command = format!(
        "cd '{root}' && env -u NO_COLOR '{}' config validate tests/config_corpus/wrong_type.toml; sleep 30",
        bin()
    );
    assert!(
        tmux(&["new-session", "-d", "-x", "150", "-y", "30", &command])
            .status
            .success()
    );
    let socket_path =
        String::from_utf8_lossy(&tmux(&["display-message", "-p", "#{socket_path}"]).stdout)
            .trim()
            .to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let screen = loop {
        let screen =
            String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-e"]).stdout).to_string();
        if screen.contains("invalid configuration") || std::time::Instant::now() > deadline {
            break screen;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let _ = tmux(&["kill-server"]);
    let _ = std::fs::remove_file(&socket_path);
    assert!(screen.contains("invalid configuration"), "{screen}");
    assert!(
        screen.contains('\u{1b}'),
        "no colour on a terminal:\n{screen}"
    );
    assert!(screen.contains("^^^^^^^^"), "{screen}");
}
