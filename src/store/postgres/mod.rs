//! The store in PostgreSQL: every store trait over a connection pool,
//! behaving as the embedded SQLite [`Store`](super::Store) does (the same
//! orderings, cursors, return values and JSON columns; each method one
//! transaction).
//!
//! Text that is sorted or compared with `<`/`>` is kept in the `"C"`
//! collation, so it orders byte by byte as SQLite's BINARY does whatever
//! the database's locale, and the session search lowercases ASCII only,
//! as SQLite's `lower()` does.
//!
//! A call made while the server cannot be reached fails within seconds
//! with a [`StoreError`] whose [`is_unavailable`](StoreError::is_unavailable)
//! is true; the pool replaces dead connections by itself, so calls succeed
//! again once the server is back.

mod channels;
mod cluster;
mod cron;
mod exec;
mod migrations;
mod nodes;
mod sessions;
mod upkeep;

#[cfg(test)]
mod tests;

use super::{Result, StoreError};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

/// How long connecting, or waiting for a free connection, may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Every store kind in one PostgreSQL database.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// Where the server is (`host:port`, or a socket path), for messages.
    target: String,
}

impl PgStore {
    /// Connects with a pool of at most `max_connections`, checks the
    /// server answers, and applies the migrations.
    ///
    /// `url` is a libpq URL (`postgres://user@host:port/dbname`, also
    /// `postgresql://`, and `?host=/socket/dir`); `password`, when given,
    /// overrides one in the URL.
    pub async fn connect(
        url: &str,
        password: Option<&str>,
        max_connections: usize,
    ) -> Result<PgStore> {
        // Only the URL form: the key=value parser quotes the text it
        // cannot read, which could be part of a password.
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError(
                "the PostgreSQL URL must start with postgres:// or postgresql://".into(),
            ));
        }
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError(format!("invalid PostgreSQL URL: {}", chain(&e))))?;
        if let Some(password) = password {
            config.password(password);
        }
        Self::connect_config(config, max_connections).await
    }

    /// [`connect`](Self::connect) with a parsed configuration.
    pub(crate) async fn connect_config(
        mut config: tokio_postgres::Config,
        max_connections: usize,
    ) -> Result<PgStore> {
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            return Err(StoreError(
                "the PostgreSQL URL names no host (for a Unix socket add ?host=/its/directory)"
                    .into(),
            ));
        }
        config.connect_timeout(TIMEOUT);
        if config.get_application_name().is_none() {
            config.application_name("clawgate");
        }
        let target = describe_target(&config);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(TIMEOUT))
            .create_timeout(Some(TIMEOUT))
            .recycle_timeout(Some(TIMEOUT))
            .build()
            .map_err(|e| StoreError(format!("PostgreSQL pool: {e}")))?;
        let store = PgStore { pool, target };
        store
            .run(async {
                let mut client = store.client().await?;
                let encoding: String = client.query_one("SHOW server_encoding", &[]).await?.get(0);
                if encoding != "UTF8" {
                    return Err(Failure::Other(format!(
                        "the PostgreSQL database must use the UTF8 encoding, not {encoding}"
                    )));
                }
                migrations::run(&mut client).await
            })
            .await?;
        Ok(store)
    }

    /// A connection from the pool.
    async fn client(&self) -> PgResult<Object> {
        Ok(self.pool.get().await?)
    }

    /// Runs `work` as a store call, its failure described for the caller.
    fn run<'a, T: Send + 'a>(
        &'a self,
        work: impl Future<Output = PgResult<T>> + Send + 'a,
    ) -> super::StoreFuture<'a, T> {
        Box::pin(async move { work.await.map_err(|e| self.error(e)) })
    }

    fn error(&self, failure: Failure) -> StoreError {
        let unreachable = |cause: String| {
            StoreError(format!(
                "{UNAVAILABLE}PostgreSQL at {} cannot be reached: {cause}",
                self.target
            ))
        };
        match failure {
            Failure::Pool(PoolError::Timeout(kind)) => unreachable(match kind {
                deadpool_postgres::TimeoutType::Wait => {
                    format!("no connection came free within {} s", TIMEOUT.as_secs())
                }
                deadpool_postgres::TimeoutType::Create => {
                    format!("connecting took over {} s", TIMEOUT.as_secs())
                }
                deadpool_postgres::TimeoutType::Recycle => {
                    format!("checking a connection took over {} s", TIMEOUT.as_secs())
                }
            }),
            Failure::Pool(PoolError::Backend(e)) | Failure::Db(e) => {
                if is_unreachable(&e) {
                    unreachable(chain(&e))
                } else {
                    StoreError(chain(&e))
                }
            }
            Failure::Pool(PoolError::Closed) => unreachable("the pool is closed".into()),
            Failure::Pool(e) => StoreError(format!("PostgreSQL pool: {e}")),
            Failure::Other(message) => StoreError(message),
        }
    }
}

/// The prefix of the message of a [`StoreError`] that means the database
/// could not be reached.
pub(crate) const UNAVAILABLE: &str = "unavailable: ";

/// A failure inside a call, before it is described.
enum Failure {
    Db(tokio_postgres::Error),
    Pool(PoolError),
    Other(String),
}

type PgResult<T> = std::result::Result<T, Failure>;

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Db(e)
    }
}

impl From<PoolError> for Failure {
    fn from(e: PoolError) -> Self {
        Failure::Pool(e)
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure::Other(e.to_string())
    }
}

/// Whether the error means the server is gone rather than that it
/// refused the statement: no connection, a closed one, or the server
/// shutting down or starting up.
fn is_unreachable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return code.code().starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .contains(code);
    }
    // The kinds tokio-postgres has for a failed or lost connection; its
    // kind is private, so it is told by its description.
    let kind = e.to_string();
    ["error connecting", "error communicating", "timeout waiting"]
        .iter()
        .any(|prefix| kind.starts_with(prefix))
}

/// The error and its causes; a server's error as its message and code
/// (without its detail, which can quote row values).
fn chain(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `host:port` of each host, a socket's path for a Unix socket directory.
fn describe_target(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    let hosts: Vec<String> = if config.get_hosts().is_empty() {
        let addrs = config.get_hostaddrs().iter().enumerate();
        addrs.map(|(i, a)| tcp(&a.to_string(), port(i))).collect()
    } else {
        let hosts = config.get_hosts().iter().enumerate();
        hosts
            .map(|(i, host)| match host {
                Host::Tcp(name) => tcp(name, port(i)),
                Host::Unix(dir) => format!("{}/.s.PGSQL.{}", dir.display(), port(i)),
            })
            .collect()
    };
    hosts.join(", ")
}

fn tcp(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A u64 as PostgreSQL's BIGINT keeps it (as SQLite's INTEGER does).
fn int(v: u64) -> i64 {
    v as i64
}

/// A row count or page size as a LIMIT or OFFSET: never negative.
fn count(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

/// One more than a page, to learn whether another page follows.
fn page_limit(limit: usize) -> i64 {
    count((limit as u64).saturating_add(1))
}
