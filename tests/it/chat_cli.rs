//! `clawgate chat` against a real gateway: one message from the command
//! line, and the interactive chat in a real terminal (tmux).

use crate::fake_openai::{FakeOpenAi, Script};
use crate::support::*;
use serde_json::json;
use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `clawgate chat ARGS` against `gw`, the token passed in the environment.
fn chat_command(gw: &TestGateway, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("chat")
        .args(args)
        .args(["--url", &gw.url])
        .env("CLAWGATE_TOKEN", TOKEN)
        .env("HOME", &gw.dir)
        .env_remove("CLAWGATE_CONFIG")
        .env_remove("XDG_CONFIG_HOME");
    cmd
}

fn run_chat(gw: &TestGateway, args: &[&str]) -> Output {
    chat_command(gw, args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_message_from_the_command_line_prints_the_reply_and_exits_0() {
    let gw = TestGateway::start("").await;
    let out = run_chat(&gw, &["-m", "hello from the command line"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the command line\n"
    );
    // The turn went through the gateway and is in the default session.
    let mut ws = gw.operator().await;
    let history = ws
        .call("sessions.history", json!({"sessionKey": "agent:main:main"}))
        .await;
    assert_eq!(
        history["result"]["messages"][1]["content"], "hello from the command line",
        "{history}"
    );
    let out = run_chat(&gw, &["-m", "second", "--session", "cli-test"]);
    assert!(out.status.success());
    let history = ws
        .call("sessions.history", json!({"sessionKey": "cli-test"}))
        .await;
    assert_eq!(history["result"]["messages"][0]["content"], "second");
}

#[tokio::test]
async fn an_unknown_agent_fails_with_the_gateway_error_and_exit_1() {
    let gw = TestGateway::start("").await;
    let out = run_chat(&gw, &["-m", "hello", "--agent", "nobody"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not_found (-32008)") && stderr.contains("no agent nobody"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    let out = chat_command(&gw, &["-m", "hello"])
        .env("CLAWGATE_TOKEN", "wrong")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized (-32001)"));
}

#[tokio::test]
async fn the_reply_is_printed_as_it_streams() {
    // The model sends part of its reply and then nothing more: whatever
    // reaches stdout before the abort was streamed, not printed at the end.
    let upstream = FakeOpenAi::start(Script::TextThenHang(vec!["partial ", "reply "])).await;
    let gw = gpt_gateway(&upstream, "").await;
    let mut watcher = gw.operator().await;
    let mut child = chat_command(&gw, &["-m", "tell me"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run_id = watcher.event("agent.message").await["data"]["runId"].clone();
    let mut stdout = child.stdout.take().unwrap();
    let streamed = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("partial reply") {
            let n = stdout.read(&mut buf).unwrap();
            assert!(n > 0, "stdout ended before the reply streamed");
            seen.extend_from_slice(&buf[..n]);
        }
        (seen, stdout)
    });
    let (seen, mut stdout) = tokio::time::timeout(WAIT, streamed)
        .await
        .expect("the first pieces of the reply reach stdout while it is still running")
        .unwrap();
    assert!(
        child.try_wait().unwrap().is_none(),
        "the chat waits for the end"
    );
    let abort = watcher.call("chat.abort", json!({"runId": run_id})).await;
    assert_eq!(abort["result"]["aborted"], true, "{abort}");
    let status = wait_exit(&mut child, WAIT).expect("the chat ends with its run");
    assert!(status.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(
        format!("{}{rest}", String::from_utf8_lossy(&seen)),
        "partial reply \n"
    );
}

/// A gateway whose default agent `gpt` asks the fake model; `exec` is its
/// [agents.gpt.exec] table.
async fn gpt_gateway(upstream: &FakeOpenAi, exec: &str) -> TestGateway {
    TestGateway::start_with_sections(&format!(
        "[agents]\ndefault = \"gpt\"\n\n[agents.gpt]\nprovider = \"openai\"\nbaseUrl = \"{}\"\n\
         model = \"fake-model\"\ntools = [\"exec\"]\n\n[agents.gpt.exec]\n{exec}\n",
        upstream.base_url
    ))
    .await
}

/// A tmux server of its own running `clawgate chat` in a 120x40 terminal;
/// dropping it kills the server.
struct Terminal {
    socket: String,
    /// The socket's file, which kill-server leaves behind.
    socket_path: Option<String>,
}

impl Terminal {
    async fn start(gw: &TestGateway, args: &[&str]) -> Terminal {
        let token_file = gw.dir.join("cli-token");
        std::fs::write(&token_file, TOKEN).unwrap();
        let command = [bin(), "chat", "--url", &gw.url, "--token-file"]
            .into_iter()
            .chain([token_file.to_str().unwrap()])
            .chain(args.iter().copied())
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut terminal = Terminal {
            socket: format!("clawgate-it-{}", uuid::Uuid::new_v4().simple()),
            socket_path: None,
        };
        let started = terminal
            .tmux(&["new-session", "-d", "-x", "120", "-y", "40", &command])
            .status
            .success();
        assert!(started, "tmux starts");
        let path = terminal.tmux(&["display-message", "-p", "#{socket_path}"]);
        terminal.socket_path = Some(String::from_utf8_lossy(&path.stdout).trim().to_string());
        terminal
            .wait_for("the banner", |screen| screen.contains("/help for commands"))
            .await;
        terminal
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux is installed")
    }

    /// Types a line and presses Enter.
    fn type_line(&self, line: &str) {
        assert!(self.tmux(&["send-keys", "-l", line]).status.success());
        assert!(self.tmux(&["send-keys", "Enter"]).status.success());
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p"]).stdout).to_string()
    }

    /// Waits until the screen shows what `done` looks for; returns it.
    /// Async, so the fake model on this test's runtime keeps answering.
    async fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the terminal never showed {what}:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn running(&self) -> bool {
        self.tmux(&["has-session"]).status.success()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
        if let Some(path) = self.socket_path.as_deref().filter(|p| !p.is_empty()) {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn lines(screen: &str) -> Vec<&str> {
    screen.lines().map(str::trim_end).collect()
}

#[tokio::test]
async fn the_interactive_chat_streams_replies_and_handles_new_and_sessions() {
    let gw = TestGateway::start("").await;
    let term = Terminal::start(&gw, &[]).await;
    term.type_line("hello from a terminal");
    // The typed line after the prompt, then the reply on a line of its own.
    term.wait_for("the reply", |s| lines(s).contains(&"hello from a terminal"))
        .await;
    term.type_line("/new");
    let screen = term
        .wait_for("a new session", |s| {
            s.contains("new session agent:main:cli-")
        })
        .await;
    let new_key = screen
        .split("new session ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    term.type_line("/sessions");
    let screen = term
        .wait_for("the session list", |s| s.contains("2 messages"))
        .await;
    assert!(
        lines(&screen).contains(&format!("* {new_key}  (new: no messages yet)").as_str()),
        "{screen}"
    );
    assert!(
        screen
            .lines()
            .any(|l| l.starts_with("  agent:main:main  2 messages")),
        "{screen}"
    );
    term.type_line("in the new session");
    term.wait_for("the second reply", |s| {
        lines(s).contains(&"in the new session")
    })
    .await;
    let mut ws = gw.operator().await;
    let history = ws
        .call("sessions.history", json!({"sessionKey": new_key}))
        .await;
    assert_eq!(
        history["result"]["messages"][1]["content"], "in the new session",
        "{history}"
    );
    term.type_line("/quit");
    let deadline = Instant::now() + WAIT;
    while term.running() {
        assert!(Instant::now() < deadline, "/quit ends the chat");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn abort_stops_a_reply_while_it_streams() {
    let upstream =
        FakeOpenAi::start(Script::TextThenHang(vec!["thinking ", "out ", "loud "])).await;
    let gw = gpt_gateway(&upstream, "").await;
    let term = Terminal::start(&gw, &[]).await;
    term.type_line("go on");
    term.wait_for("the streamed start", |s| s.contains("thinking out loud"))
        .await;
    term.type_line("/abort");
    term.wait_for("the abort", |s| s.contains("⏹ aborted"))
        .await;
    let mut ws = gw.operator().await;
    let history = ws
        .call("sessions.history", json!({"sessionKey": "agent:gpt:main"}))
        .await;
    let reply = &history["result"]["messages"][1];
    assert_eq!(reply["status"], "aborted", "{history}");
    assert_eq!(reply["content"], "thinking out loud ");
    // The chat goes on after the abort.
    term.type_line("/help");
    term.wait_for("the help", |s| s.contains("/abort         stop the reply"))
        .await;
}

#[tokio::test]
async fn an_exec_approval_is_asked_inline_and_answered() {
    let upstream = FakeOpenAi::start(Script::ToolThenText(
        "exec",
        r#"{"command": "echo approved-in-terminal"}"#,
        vec!["Ran ", "it."],
    ))
    .await;
    let gw = gpt_gateway(&upstream, "").await;
    let term = Terminal::start(&gw, &[]).await;
    term.type_line("run the command");
    let screen = term
        .wait_for("the question", |s| s.contains("[o/a/d]"))
        .await;
    assert!(
        screen.contains("⚙ exec(command: \"echo approved-in-terminal\")"),
        "{screen}"
    );
    assert!(
        screen.contains("gpt wants to run: echo approved-in-terminal"),
        "{screen}"
    );
    term.type_line("o");
    let screen = term
        .wait_for("the reply", |s| lines(s).contains(&"Ran it."))
        .await;
    assert!(screen.contains("✓ allow-once"), "{screen}");
    // The command ran: its output went back to the model.
    let requests = upstream.requests();
    let tool_result = requests.last().unwrap().1["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .map(|m| m["content"].to_string())
        .unwrap_or_default();
    assert!(
        tool_result.contains("approved-in-terminal"),
        "{tool_result}"
    );
}
