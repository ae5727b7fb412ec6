pub use clawgate::client::{Client, ClientError, ConnectOptions};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const TOKEN: &str = "test-token-8f3a";
pub const WAIT: Duration = Duration::from_secs(5);
/// The variable that puts a test gateway on a PostgreSQL store.
pub const STORE_URL_VAR: &str = "CLAWGATE_CLUSTER__STORE__URL";

/// A gateway process with its own config and state dir, killed on drop.
pub struct TestGateway {
    pub child: Child,
    pub url: String,
    pub http: String,
    pub dir: PathBuf,
    /// Whether dropping the gateway removes `dir`.
    pub owns_dir: bool,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_clawgate")
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "clawgate-it-{tag}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl TestGateway {
    /// Starts with token auth and the given extra TOML appended to [gateway].
    pub async fn start(extra_gateway_toml: &str) -> TestGateway {
        let toml = format!(
            "[gateway]\nport = 0\n{extra_gateway_toml}\n[gateway.auth]\nmode = \"token\"\ntoken = \"{TOKEN}\"\n"
        );
        Self::start_with_file(&toml).await
    }

    /// Starts with token auth followed by these TOML sections.
    pub async fn start_with_sections(sections: &str) -> TestGateway {
        Self::start_with_file(&format!("{}\n{sections}", token_config())).await
    }

    pub async fn start_with_file(toml: &str) -> TestGateway {
        let dir = temp_dir("gw");
        let config = dir.join("clawgate.toml");
        std::fs::write(&config, toml).unwrap();
        Self::spawn(&dir, &["--config", config.to_str().unwrap()], &[])
    }

    pub fn spawn(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> TestGateway {
        Self::spawn_via(&[], dir, args, env)
    }

    /// Starts the gateway as the last argument of `wrapper` (e.g. a
    /// command that sets up a network namespace and execs it).
    pub fn spawn_via(
        wrapper: &[&str],
        dir: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> TestGateway {
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(bin());
                cmd
            }
            None => Command::new(bin()),
        };
        cmd.arg("run")
            .args(args)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .current_dir(dir)
            .env("CLAWGATE_LOG", "warn")
            .env_remove("CLAWGATE_CONFIG")
            .env("HOME", dir)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // A gateway in a network namespace of its own cannot reach the
        // suite's PostgreSQL on loopback: it keeps SQLite.
        if super::engines::suite_on_postgres()
            && wrapper.is_empty()
            && !env.iter().any(|(k, _)| *k == STORE_URL_VAR)
        {
            cmd.envs(super::engines::suite_store_env(dir));
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start clawgate");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("clawgate listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        let http = url
            .replacen("wss://", "https://", 1)
            .replacen("ws://", "http://", 1);
        TestGateway {
            child,
            url,
            http,
            dir: dir.to_path_buf(),
            owns_dir: true,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("clawgate.toml")
    }

    pub async fn raw(&self) -> Ws {
        Ws::open(&self.url).await
    }

    /// A connection that completed connect with the test token.
    pub async fn operator(&self) -> Ws {
        let mut ws = self.raw().await;
        let hello = ws.connect(json!({"token": TOKEN}), None).await;
        assert!(hello.get("result").is_some(), "connect failed: {hello}");
        ws
    }

    /// The typed client (`clawgate::client`), connected as an operator
    /// with the test token: what functional tests use.
    pub async fn client(&self) -> Client {
        let options = ConnectOptions {
            token: Some(TOKEN.to_string()),
            client_name: "it".to_string(),
            ..ConnectOptions::default()
        };
        tokio::time::timeout(WAIT, Client::connect(&self.url, &options))
            .await
            .expect("connect within the wait limit")
            .expect("connect")
    }

    /// The token a gateway without a configured one generated in its state dir.
    pub fn generated_token(&self) -> String {
        std::fs::read_to_string(self.dir.join("state").join("gateway.token"))
            .expect("the gateway generated a token")
            .trim()
            .to_string()
    }

    /// A connection that completed connect with the generated token.
    pub async fn local_operator(&self) -> Ws {
        let mut ws = self.raw().await;
        let hello = ws
            .connect(json!({"token": self.generated_token()}), None)
            .await;
        assert!(hello.get("result").is_some(), "connect failed: {hello}");
        ws
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe_kill(self.child.id(), "TERM");
        wait_exit(&mut self.child, Duration::from_secs(15)).expect("gateway exits after SIGTERM")
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        http_get(&self.http, path).await
    }

    /// A GET with the test token as bearer credential.
    pub async fn get_authorized(&self, path: &str) -> (u16, Value) {
        http_get_with(
            &self.http,
            path,
            &format!("Authorization: Bearer {TOKEN}\r\n"),
        )
        .await
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Saves the way most editors do: a temporary file renamed over the old
/// one, so a watcher never reads half a file.
pub fn save_file(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The token-auth config test gateways start from.
pub fn token_config() -> String {
    format!("[gateway]\nport = 0\n[gateway.auth]\nmode = \"token\"\ntoken = \"{TOKEN}\"\n")
}

/// A config file with token auth in `dir`, for gateways that are started
/// again on the same state (restart and crash tests); returns the run args.
pub fn persistent_config(dir: &std::path::Path) -> Vec<String> {
    let config = dir.join("clawgate.toml");
    std::fs::write(&config, token_config()).unwrap();
    vec!["--config".to_string(), config.to_str().unwrap().to_string()]
}

pub fn unsafe_kill(pid: u32, signal: &str) {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A minimal HTTP/1.1 GET over a real socket.
pub async fn http_get(base: &str, path: &str) -> (u16, Value) {
    http_get_with(base, path, "").await
}

/// A GET with extra header lines (each ending in \r\n).
pub async fn http_get_with(base: &str, path: &str, headers: &str) -> (u16, Value) {
    let (status, _, body) = http_get_raw(base, path, headers).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A GET with extra header lines: status, response head and body text.
pub async fn http_get_raw(base: &str, path: &str, headers: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status: u16 = response[9..12].parse().unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (status, head.to_string(), body.to_string())
}

pub type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A raw protocol connection: frames in, frames out.
pub struct Ws {
    pub stream: Stream,
    /// Whether recv skips the connect.challenge frame (as native clients do).
    pub skip_challenge: bool,
    next_id: u64,
    /// Events that arrived while `call` waited for its response.
    pending: std::collections::VecDeque<Value>,
}

/// What ended a connection, as the client saw it.
#[derive(Debug, PartialEq)]
pub enum Closed {
    Code(u16, String),
    Eof,
}

impl Ws {
    pub fn from_stream(stream: Stream) -> Ws {
        Ws {
            stream,
            skip_challenge: true,
            next_id: 0,
            pending: Default::default(),
        }
    }

    pub async fn open(url: &str) -> Ws {
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connect");
        Ws {
            stream,
            skip_challenge: true,
            next_id: 0,
            pending: Default::default(),
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::Text(text.to_string().into()))
            .await
            .unwrap();
    }

    /// Sends a request; returns its id.
    pub async fn request(&mut self, method: &str, params: Value) -> String {
        self.next_id += 1;
        let id = format!("r{}", self.next_id);
        let frame = json!({"id": id, "method": method, "params": params});
        self.send_text(&frame.to_string()).await;
        id
    }

    /// Sends a request and returns its response frame, skipping events.
    /// Sends a request and returns its response frame; events that arrive
    /// meanwhile are kept for `recv` and `event`.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.request(method, params).await;
        loop {
            let frame = match self.recv_socket().await {
                Ok(frame) => frame,
                Err(closed) => panic!("connection ended while waiting for {method}: {closed:?}"),
            };
            if frame.get("event").is_some() {
                self.pending.push_back(frame);
                continue;
            }
            assert_eq!(
                frame["id"],
                json!(id),
                "response to another request: {frame}"
            );
            return frame;
        }
    }

    pub async fn connect(&mut self, auth: Value, scopes: Option<Value>) -> Value {
        let mut params = json!({
            "protocol": {"min": 1, "max": 1},
            "client": {"name": "it", "version": "1.0"},
            "role": "operator",
            "auth": auth,
        });
        if let Some(s) = scopes {
            params["scopes"] = s;
        }
        self.call("connect", params).await
    }

    /// The next text frame as JSON; panics on close or after WAIT.
    pub async fn recv(&mut self) -> Value {
        match self.recv_or_close().await {
            Ok(v) => v,
            Err(closed) => panic!("connection ended while waiting for a frame: {closed:?}"),
        }
    }

    /// The next frame from the socket itself, past the kept events.
    pub async fn recv_unkept(&mut self) -> Value {
        match self.recv_socket().await {
            Ok(v) => v,
            Err(closed) => panic!("connection ended while waiting for a frame: {closed:?}"),
        }
    }

    /// Keeps a frame for a later `recv` (an event that arrived early).
    pub fn keep(&mut self, frame: Value) {
        self.pending.push_back(frame);
    }

    pub async fn recv_or_close(&mut self) -> Result<Value, Closed> {
        if let Some(frame) = self.pending.pop_front() {
            return Ok(frame);
        }
        self.recv_socket().await
    }

    async fn recv_socket(&mut self) -> Result<Value, Closed> {
        loop {
            let next = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("no frame within the wait limit");
            match next {
                Some(Ok(Message::Text(t))) => {
                    let frame: Value = serde_json::from_str(t.as_str()).unwrap();
                    // OpenClaw's connect.challenge opens every connection;
                    // native clients skip it (the handshake tests read it).
                    if self.skip_challenge && frame["type"] == "event" {
                        continue;
                    }
                    return Ok(frame);
                }
                Some(Ok(Message::Close(Some(f)))) => {
                    return Err(Closed::Code(f.code.into(), f.reason.to_string()))
                }
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return Err(Closed::Eof),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Reads until the connection closes; returns how it closed.
    pub async fn expect_close(&mut self) -> Closed {
        loop {
            if let Err(closed) = self.recv_or_close().await {
                return closed;
            }
        }
    }

    /// Puts a frame back, to be read first.
    pub fn push_front(&mut self, frame: Value) {
        self.pending.push_front(frame);
    }

    /// The next event frame with this name, skipping others.
    pub async fn event(&mut self, name: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["event"] == json!(name) {
                return frame;
            }
        }
    }
}

/// Typed params from JSON, as a client would write them; panics when the
/// JSON does not fit the generated type.
pub fn params<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{value} does not fit the params type: {e}"))
}

/// The error code of a failed typed call.
pub fn rpc_code<T: std::fmt::Debug>(outcome: Result<T, ClientError>) -> i64 {
    match outcome {
        Err(ClientError::Rpc(error)) => error.code,
        other => panic!("expected an error answer, got {other:?}"),
    }
}

pub fn error_code(frame: &Value) -> i64 {
    frame["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error frame: {frame}"))
}

/// Stops the gateway, edits its database, and starts it again on the same
/// state and config.
pub fn restart_with_db_edit(
    mut gw: TestGateway,
    edit: impl FnOnce(&rusqlite::Connection),
) -> TestGateway {
    let _sqlite = super::engines::sqlite_only();
    gw.owns_dir = false;
    assert!(gw.terminate().success());
    let dir = gw.dir.clone();
    drop(gw);
    edit(&rusqlite::Connection::open(dir.join("state/clawgate.db")).unwrap());
    let config = dir.join("clawgate.toml");
    let mut gw = TestGateway::spawn(&dir, &["--config", config.to_str().unwrap()], &[]);
    gw.owns_dir = true;
    gw
}
