//! Connections to the server: one `redis://` URL names either a single server or any node of a
//! Redis Cluster (told apart by `INFO cluster` at open), every connection has a connect and a
//! response timeout, and a small pool lets threads sharing a handle talk to the server at once.
//!
//! A connection that met anything but a reply from the server (a timeout, a reset, a parse
//! error) is dropped, never reused: its late reply could otherwise be read as the answer to
//! the next command. For the same reason a forked child never uses its parent's idle
//! connections (their sockets are shared with the parent): it opens its own.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConnection};
use redis::{Client, Connection, ConnectionLike, ErrorKind, RedisError, RedisResult};
use shmap::{Error, Result};

/// How long to wait for a connection and for each reply, unless the caller says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle connections kept per handle (more threads than this still work: each opens its own).
const POOL_MAX: usize = 16;

/// How to reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisOptions {
    /// Connect timeout, and the longest wait for any reply.
    pub timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

enum Server {
    One(Client),
    Cluster(ClusterClient),
}

enum Conn {
    One(Connection),
    /// Boxed: a cluster connection is four times a single one, and pools move them.
    Cluster(Box<ClusterConnection>),
}

impl Conn {
    fn like(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Conn::One(c) => c,
            Conn::Cluster(c) => &mut **c,
        }
    }
}

/// A server (or cluster) and the idle connections to it.
pub struct Pool {
    server: Server,
    idle: Mutex<Vec<Conn>>,
    /// The process the idle connections belong to.
    pid: AtomicU32,
    timeout: Duration,
    /// The URL without its password, for messages.
    label: String,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("url", &self.label)
            .field("cluster", &matches!(self.server, Server::Cluster(_)))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `url` with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

/// Whether an error is a reply from the server (the connection is still in step with it).
fn is_reply(e: &RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension)
}

impl Pool {
    /// Connects to `url` (a single server, or a node of a cluster) and keeps the connection.
    pub fn open(url: &str, opts: RedisOptions) -> Result<Self> {
        let label = redact(url);
        if opts.timeout.is_zero() {
            return Err(Error::InvalidParameter {
                what: "timeout",
                reason: "must be more than zero".into(),
            });
        }
        let bad_url = |e: RedisError| Error::InvalidParameter {
            what: "url",
            reason: format!("{label}: {e}"),
        };
        let client = Client::open(url).map_err(bad_url)?;
        let unreachable = |e: RedisError| Error::Connection {
            url: label.clone(),
            reason: e.to_string(),
        };
        let mut first = connect_one(&client, opts.timeout).map_err(unreachable)?;
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query(&mut first)
            .map_err(unreachable)?;
        let (server, conn) = if info.contains("cluster_enabled:1") {
            let cluster = ClusterClientBuilder::new(vec![url])
                .connection_timeout(opts.timeout)
                .response_timeout(opts.timeout)
                .retries(2)
                .build()
                .map_err(bad_url)?;
            let conn = cluster.get_connection().map_err(unreachable)?;
            (Server::Cluster(cluster), Conn::Cluster(Box::new(conn)))
        } else {
            (Server::One(client), Conn::One(first))
        };
        Ok(Self {
            server,
            idle: Mutex::new(vec![conn]),
            pid: AtomicU32::new(std::process::id()),
            timeout: opts.timeout,
            label,
        })
    }

    /// The URL, without its password.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether the URL named a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.server, Server::Cluster(_))
    }

    fn connect(&self) -> RedisResult<Conn> {
        Ok(match &self.server {
            Server::One(client) => Conn::One(connect_one(client, self.timeout)?),
            Server::Cluster(cluster) => Conn::Cluster(Box::new(cluster.get_connection()?)),
        })
    }

    /// Runs `f` on an idle connection (or a new one). A server's error reply comes back as
    /// `Err(Ok(reply))` for the caller to map; anything else is [`Error::Connection`].
    pub fn with<R>(
        &self,
        f: impl FnOnce(&mut dyn ConnectionLike) -> RedisResult<R>,
    ) -> Result<R, std::result::Result<RedisError, Error>> {
        let conn = {
            let mut idle = self.idle.lock();
            let pid = std::process::id();
            // Relaxed: the pid is read and written under the `idle` lock.
            if self.pid.load(Ordering::Relaxed) != pid {
                // Forked: the sockets are the parent's too. Forget them (closing is fine, but
                // a drop that shut a socket down would cut the parent's connection).
                idle.drain(..).for_each(std::mem::forget);
                self.pid.store(pid, Ordering::Relaxed);
            }
            idle.pop()
        };
        let mut conn = match conn {
            Some(c) => c,
            None => self.connect().map_err(|e| Err(self.lost(e)))?,
        };
        let out = f(conn.like());
        match &out {
            Ok(_) => self.give_back(conn),
            Err(e) if is_reply(e) => self.give_back(conn),
            Err(_) => drop(conn), // out of step with the server, or broken
        }
        out.map_err(|e| {
            if is_reply(&e) {
                Ok(e)
            } else {
                Err(self.lost(e))
            }
        })
    }

    fn give_back(&self, conn: Conn) {
        let mut idle = self.idle.lock();
        // Relaxed: under the `idle` lock, as in `with`. (A connection opened before a fork
        // finishes in the parent only: the child's copy of it is never given back.)
        if self.pid.load(Ordering::Relaxed) != std::process::id() {
            std::mem::forget(conn);
            return;
        }
        if idle.len() < POOL_MAX {
            idle.push(conn);
        }
    }

    /// An error that is not a reply: the server cannot be reached or stopped answering.
    pub fn lost(&self, e: RedisError) -> Error {
        let reason = if e.is_timeout() {
            format!("no answer within {:?} ({e})", self.timeout)
        } else {
            e.to_string()
        };
        Error::Connection {
            url: self.label.clone(),
            reason,
        }
    }
}

fn connect_one(client: &Client, timeout: Duration) -> RedisResult<Connection> {
    let conn = client.get_connection_with_timeout(timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    Ok(conn)
}
