//! The engines cluster mode runs on, started by the tests themselves: a
//! throwaway PostgreSQL cluster (`initdb` into a temp dir) and
//! `nats-server`, each on a port of its own.
//!
//! `TEST_STORE=postgres` runs every test gateway on PostgreSQL
//! (one database per gateway state dir) instead of SQLite: the same
//! functional suite against the other store.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Whether the suite runs its gateways on PostgreSQL.
pub fn suite_on_postgres() -> bool {
    std::env::var("TEST_STORE").is_ok_and(|v| v == "postgres") && !SQLITE_ONLY.with(|f| f.get())
}

thread_local! {
    static SQLITE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// While it lives, gateways this test starts keep the SQLite store: for
/// tests about the SQLite file itself (they read or edit it).
pub struct SqliteOnly;

pub fn sqlite_only() -> SqliteOnly {
    SQLITE_ONLY.with(|f| f.set(true));
    SqliteOnly
}

impl Drop for SqliteOnly {
    fn drop(&mut self) {
        SQLITE_ONLY.with(|f| f.set(false));
    }
}

/// A PostgreSQL server in a temp dir; it stops when the test process
/// ends (a watcher shell stops it then) or when dropped.
pub struct PgServer {
    pub port: u16,
    pub dir: PathBuf,
    watcher: Child,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// PostgreSQL refuses to run as root: as root, its commands run as
/// `nobody` (setpriv execs them, so signals reach them directly).
fn server_user_prefix() -> &'static str {
    if is_root() {
        "setpriv --reuid=nobody --regid=nogroup --clear-groups --reset-env"
    } else {
        ""
    }
}

fn as_server_user(program: &str) -> Command {
    let prefix = server_user_prefix();
    let mut words = prefix.split_whitespace().chain(std::iter::once(program));
    let mut cmd = Command::new(words.next().unwrap());
    cmd.args(words);
    cmd
}

fn pg_bin(name: &str) -> String {
    for dir in [
        "/usr/lib/postgresql/17/bin",
        "/usr/lib/postgresql/16/bin",
        "/usr/lib/postgresql/15/bin",
    ] {
        let path = format!("{dir}/{name}");
        if Path::new(&path).exists() {
            return path;
        }
    }
    name.to_string()
}

impl PgServer {
    pub fn start() -> PgServer {
        let dir = super::support::temp_dir("pg");
        let data = dir.join("data");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "nobody", dir.to_str().unwrap()])
                .status()
                .unwrap();
            assert!(status.success());
        }
        let out = as_server_user(&pg_bin("initdb"))
            .args([
                "-D",
                data.to_str().unwrap(),
                "--auth=trust",
                "-U",
                "clawgate",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .output()
            .expect("initdb (Debian package postgresql)");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let conf = format!(
            "port = {port}\nunix_socket_directories = '{dir}'\nlisten_addresses = '127.0.0.1'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 400\n",
            dir = dir.display()
        );
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut file, conf.as_bytes()).unwrap();
        // The watcher stops the server when this test process is gone,
        // whatever way it ends; it runs as this user (to remove the dir)
        // and holds none of the test's output pipes.
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; \
             {prefix} {pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
            prefix = server_user_prefix(),
            pg_ctl = pg_bin("pg_ctl"),
            data = data.display(),
            dir = dir.display(),
            me = std::process::id(),
        );
        let watcher = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the watcher");
        let server = PgServer { port, dir, watcher };
        server.resume();
        server
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.dir.join("data");
        let out = as_server_user(&pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    /// Stops the server (fast: connections are cut).
    pub fn halt(&self) {
        self.pg_ctl(&["-m", "fast", "-w", "stop"]);
    }

    /// Starts the server (again) and waits until it answers.
    pub fn resume(&self) {
        let log = self.dir.join("log");
        self.pg_ctl(&["-l", log.to_str().unwrap(), "-w", "start"]);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new(pg_bin("pg_isready"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "clawgate",
                    "-q",
                ])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not start: {}",
                std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The URL of database `name`, created if it does not exist yet.
    pub fn database(&self, name: &str) -> String {
        let out = Command::new(pg_bin("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "clawgate",
                name,
            ])
            .output()
            .expect("createdb");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || stderr.contains("already exists"),
            "createdb {name}: {stderr}"
        );
        format!("postgres://clawgate@127.0.0.1:{}/{name}", self.port)
    }

    /// A new empty database.
    pub fn fresh_database(&self) -> String {
        self.database(&format!("t{}", uuid::Uuid::new_v4().simple()))
    }

    /// The server the whole test process shares.
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(PgServer::start)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.watcher.kill();
        let _ = self.watcher.wait();
        let _ = as_server_user(&pg_bin("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What puts a test gateway with state in `dir` on PostgreSQL when the
/// suite runs there: its own database (one per state dir, so a gateway
/// started again on the same dir finds its data) and a member name that
/// stays with the dir (so a restarted gateway gets its leases back).
pub fn suite_store_env(dir: &Path) -> [(&'static str, String); 2] {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut hasher);
    let name = format!("gw{:016x}", hasher.finish());
    [
        (
            super::support::STORE_URL_VAR,
            PgServer::shared().database(&name),
        ),
        ("CLAWGATE_CLUSTER__NAME", name),
    ]
}

/// A `nats-server` on a free port of loopback, stopped when dropped.
pub struct NatsServer {
    pub url: String,
    child: Child,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        let program = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("nats-server");
        let mut child = Command::new(program)
            .args(["-a", "127.0.0.1", "-p", "-1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nats-server (Debian package nats-server)");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("nats-server says where it listens")
                .unwrap();
            if let Some((_, addr)) = line.split_once("Listening for client connections on ") {
                break format!("nats://{}", addr.trim());
            }
        };
        // Keep reading so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        NatsServer { url, child }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
