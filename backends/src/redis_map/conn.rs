//! Connections to the server: one `redis://` URL names either a single server or any node of a
//! Redis Cluster (told apart by `HELLO`'s `mode` at open, which every user may run), who we are
//! to it (a user and password from the URL or the options, never shown: [`redact`]), every
//! connection has a connect and a response timeout, and a small pool lets threads sharing a
//! handle talk to the server at once. The server's refusals of who we are or what we may do
//! become [`Error::PermissionDenied`] here. `rediss://` URLs connect over TLS (`tls.rs`).
//!
//! A connection that met anything but a reply from the server (a timeout, a reset, a parse
//! error) is dropped, never reused: its late reply could otherwise be read as the answer to
//! the next command. For the same reason a forked child never uses its parent's idle
//! connections (their sockets are shared with the parent): it opens its own.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConnection};
use redis::{
    Client, Connection, ConnectionAddr, ConnectionInfo, ConnectionLike, ErrorKind,
    IntoConnectionInfo, RedisError, RedisResult, ServerErrorKind, TlsMode, Value,
};
use shmap::{Error, Result};

use super::retry::{self, Backoff, Retry};
use super::sentinel::Sentinels;
use super::tls::{self, CertReqs, Tls};

/// How long to wait for a connection and for each reply, unless the caller says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle connections kept per handle (more threads than this still work: each opens its own).
const POOL_MAX: usize = 16;

/// How to reach the server, and who to be on it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// Connect timeout, and the longest wait for any reply.
    pub timeout: Duration,
    /// The server user (Redis 6 ACLs) to log in as; `None`: the URL's (`redis://user:pw@...`),
    /// or the server's `default` user.
    pub username: Option<String>,
    /// The password; `None`: the URL's, if it has one. Giving it both here and in the URL is
    /// [`Error::InvalidParameter`]. Never shown (`Debug` prints `***`).
    pub password: Option<String>,
    /// With `rediss://`: a PEM file of the CA certificates to verify the server with, instead
    /// of the system's roots (redis-py's name, as the three below).
    pub ssl_ca_certs: Option<PathBuf>,
    /// With `rediss://`: the client's certificate (PEM) for servers that ask for one (mutual
    /// TLS); its key is `ssl_keyfile`, or in this file.
    pub ssl_certfile: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub ssl_keyfile: Option<PathBuf>,
    /// Whether to verify the server's certificate; `None`: [`CertReqs::Required`], unless the
    /// URL's query says `ssl_cert_reqs=none`.
    pub ssl_cert_reqs: Option<CertReqs>,
    /// Replicas that must have each write before it is acknowledged (`WAIT`): a write that
    /// fewer reached within 3/4 of `timeout` is [`Error::Connection`] (it was made on the
    /// primary, and a failover now could lose it). 0, the default: do not wait (Redis
    /// replication is asynchronous). Not on a Redis Cluster.
    pub replicas: u32,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            username: None,
            password: None,
            ssl_ca_certs: None,
            ssl_certfile: None,
            ssl_keyfile: None,
            ssl_cert_reqs: None,
            replicas: 0,
        }
    }
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("timeout", &self.timeout)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ssl_ca_certs", &self.ssl_ca_certs)
            .field("ssl_certfile", &self.ssl_certfile)
            .field("ssl_keyfile", &self.ssl_keyfile)
            .field("ssl_cert_reqs", &self.ssl_cert_reqs)
            .field("replicas", &self.replicas)
            .finish()
    }
}

enum Server {
    One(Client),
    Cluster(ClusterClient),
    /// The primary the sentinels name, asked at every new connection.
    Sentinel(Sentinels),
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

/// `url` with any password replaced by `***`: the one of `user:password@` (everything up to
/// the last `@`, so an unescaped `@`, `:` or `/` in it does not leak a piece), and a `pass=` or
/// `password=` query parameter (`redis+unix://` URLs).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let rest = match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => rest.to_owned(),
    };
    let rest = match rest.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k == "pass" || k == "password" => format!("{k}=***"),
                    _ => p.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => rest,
    };
    format!("{scheme}://{rest}")
}

/// Whether the server refused who we are (a wrong user or password, none when one is needed)
/// or what we asked (a command or key outside the user's ACL).
pub fn is_refusal(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed
        || e.kind() == ErrorKind::Server(ServerErrorKind::NoPerm)
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
}

/// A refusal as [`Error::PermissionDenied`], naming what was missing (the server's
/// words: `NOPERM this user has no permissions to run the 'evalsha' command`).
pub fn refusal(label: &str, e: &RedisError) -> Error {
    let mut reason = match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ => e.to_string(),
    };
    if e.kind() == ErrorKind::AuthenticationFailed || e.code() == Some("WRONGPASS") {
        reason = format!("wrong user name or password ({reason})");
    } else if e.code() == Some("NOAUTH") {
        reason = format!("the server needs a user name and password ({reason})");
    } else if reason.contains("'evalsha'") || reason.contains("'script|load'") {
        reason.push_str(
            " (each write of the map is a Lua script: a user who writes needs +evalsha \
             +script|load and the commands the scripts run: +@hash +del +exists +get +set)",
        );
    } else if reason.contains("'ping'") || reason.contains("'cluster|slots'") {
        reason.push_str(
            " (on a Redis Cluster the client learns the nodes with +ping +cluster|slots)",
        );
    }
    Error::PermissionDenied {
        url: label.to_owned(),
        reason,
    }
}

/// `url` with the options' user and password: a password in both is refused (which one was
/// meant?), as is a user name that differs; and for `rediss://`, how to do TLS.
fn connection_info(
    url: &str,
    label: &str,
    opts: &RedisOptions,
) -> Result<(ConnectionInfo, Option<Tls>)> {
    let (url, tls) = tls::prepare(url, label, opts)?;
    let mut info = url
        .into_connection_info()
        .map_err(|e| Error::InvalidParameter {
            what: "url",
            reason: format!("{label}: {e}"),
        })?;
    let mut settings = info.redis_settings().clone();
    if let Some(user) = &opts.username {
        if settings.username().is_some_and(|u| u != user) {
            return Err(Error::InvalidParameter {
                what: "username",
                reason: format!("{label} names another user than username= does"),
            });
        }
        settings = settings.set_username(user);
    }
    if let Some(password) = &opts.password {
        if settings.password().is_some() {
            return Err(Error::InvalidParameter {
                what: "password",
                reason: format!(
                    "{label} has a password already: give it there or as password=, not both"
                ),
            });
        }
        settings = settings.set_password(password);
    }
    if let (Some(tls), ConnectionAddr::TcpTls { host, port, .. }) = (&tls, info.addr()) {
        let addr = ConnectionAddr::TcpTls {
            host: host.clone(),
            port: *port,
            insecure: tls.insecure,
            tls_params: None,
        };
        info = info.set_addr(addr);
    }
    Ok((info.set_redis_settings(settings), tls))
}

/// An error that is not a reply (the server cannot be reached, refused who we are, failed the
/// TLS handshake, or stopped answering) as the contract's error.
fn lost(label: &str, timeout: Duration, e: RedisError) -> Error {
    if is_refusal(&e) {
        return refusal(label, &e);
    }
    if let Some(failed) = tls::handshake_error(label, &e) {
        return failed;
    }
    let reason = if e.is_timeout() {
        format!("no answer within {timeout:?} ({e})")
    } else {
        e.to_string()
    };
    Error::Connection {
        url: label.to_owned(),
        reason,
    }
}

/// Whether the server is a node of a Redis Cluster: `HELLO`'s `mode` (any user may run it,
/// where `INFO` needs rights a reader's ACL rarely grants), or `INFO cluster` on a server
/// before Redis 6, which has no HELLO (nor ACLs).
fn is_cluster(conn: &mut Connection) -> RedisResult<bool> {
    match redis::cmd("HELLO").arg(2).query::<Vec<Value>>(conn) {
        Ok(fields) => Ok(fields
            .chunks(2)
            .any(|kv| matches!(kv, [Value::BulkString(k), Value::BulkString(v)] if k == b"mode" && v == b"cluster"))),
        Err(e) if is_reply(&e) && !is_refusal(&e) => {
            let info: String = redis::cmd("INFO").arg("cluster").query(conn)?;
            Ok(info.contains("cluster_enabled:1"))
        }
        Err(e) => Err(e),
    }
}

/// Whether a failure to connect may pass by itself (a server starting, restarting or failing
/// over, a connection killed): not a refusal of who we are, nor a failed TLS handshake.
fn passes(label: &str, e: &RedisError) -> bool {
    !is_refusal(e) && tls::handshake_error(label, e).is_none()
}

/// Whether an error is a reply from the server (the connection is still in step with it).
fn is_reply(e: &RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension)
}

impl Pool {
    /// Connects to `url` (a single server, or a node of a cluster) and keeps the connection.
    pub fn open(url: &str, opts: &RedisOptions) -> Result<Self> {
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
        let sentinels = Sentinels::parse(url, &label, opts.timeout, |plain| {
            connection_info(plain, &label, opts).map(|(info, _)| info)
        })?;
        if let Some(sentinels) = sentinels {
            return Self::open_sentinel(sentinels, label, opts.timeout);
        }
        let (info, tls) = connection_info(url, &label, opts)?;
        let certs = tls.as_ref().and_then(|t| t.certs.clone());
        let client = match &certs {
            Some(certs) => Client::build_with_tls(info.clone(), certs.clone()),
            None => Client::open(info.clone()),
        }
        .map_err(bad_url)?;
        let unreachable = |e: RedisError| lost(&label, opts.timeout, e);
        let first_error = |e: RedisError| match &tls {
            // A server that does not speak TLS waits for the rest of what it takes for a
            // command: all we see is silence.
            Some(_) if e.is_timeout() => Error::Connection {
                url: label.clone(),
                reason: format!(
                    "no TLS handshake within {:?} ({e}): the server does not answer, or does \
                     not speak TLS on this port (is it a redis:// port?)",
                    opts.timeout
                ),
            },
            // A TLS port drops a plain client at its first command.
            None if e.is_connection_dropped() && !is_refusal(&e) => Error::Connection {
                url: label.clone(),
                reason: format!(
                    "the server closed the connection at once ({e}): if this is a TLS port, \
                     the URL is rediss://"
                ),
            },
            _ => unreachable(e),
        };
        // The first connection is retried as calls are (a server starting or restarting, a
        // connection killed): up to the timeout, unless the server refused who we are or
        // the TLS handshake failed.
        let mut backoff = Backoff::new(opts.timeout);
        let (mut first, cluster) = loop {
            let tried = connect_one(&client, opts.timeout).and_then(|mut c| {
                let cluster = is_cluster(&mut c)?;
                Ok((c, cluster))
            });
            match tried {
                Ok(found) => break found,
                Err(e) if !is_reply(&e) && passes(&label, &e) && backoff.wait() => {}
                Err(e) => return Err(first_error(e)),
            }
        };
        let (server, conn) = if cluster {
            // The cluster client learns the nodes with these two: a user without them would
            // get a `ConnectionError` that hides the refusal; ask first, to say which right
            // is missing.
            redis::cmd("PING")
                .query::<()>(&mut first)
                .map_err(unreachable)?;
            redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query::<Value>(&mut first)
                .map_err(unreachable)?;
            let mut builder = ClusterClientBuilder::new(vec![info.clone()])
                .connection_timeout(opts.timeout)
                .response_timeout(opts.timeout)
                .retries(2);
            let settings = info.redis_settings();
            if let Some(user) = settings.username() {
                builder = builder.username(user);
            }
            if let Some(password) = settings.password() {
                builder = builder.password(password);
            }
            // Every node over TLS as the first one, with the same certificates (the nodes
            // must announce their TLS ports: `tls-cluster yes`).
            if let Some(tls) = &tls {
                builder = builder.tls(if tls.insecure {
                    TlsMode::Insecure
                } else {
                    TlsMode::Secure
                });
                if let Some(certs) = certs {
                    builder = builder.certs(certs);
                }
            }
            let cluster = builder.build().map_err(bad_url)?;
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

    /// A pool on the primary of `sentinels`, with a first connection made (and retried) as
    /// any other.
    fn open_sentinel(sentinels: Sentinels, label: String, timeout: Duration) -> Result<Self> {
        let pool = Self {
            server: Server::Sentinel(sentinels),
            idle: Mutex::new(Vec::new()),
            pid: AtomicU32::new(std::process::id()),
            timeout,
            label,
        };
        pool.with(Retry::Always, |c| redis::cmd("PING").query::<()>(c))
            .map_err(|e| match e {
                Ok(reply) if is_refusal(&reply) => refusal(&pool.label, &reply),
                Ok(reply) => pool.lost(reply),
                Err(e) => e,
            })?;
        Ok(pool)
    }

    /// The URL, without its password.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether the URL named a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.server, Server::Cluster(_))
    }

    /// The connect and reply timeout, and the window of retries.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn connect(&self) -> RedisResult<Conn> {
        Ok(match &self.server {
            Server::One(client) => Conn::One(connect_one(client, self.timeout)?),
            Server::Cluster(cluster) => Conn::Cluster(Box::new(cluster.get_connection()?)),
            Server::Sentinel(sentinels) => {
                let mut conn = connect_one(&sentinels.primary()?, self.timeout)?;
                sentinels.check_primary(&mut conn)?;
                Conn::One(conn)
            }
        })
    }

    /// Runs `f` on an idle connection (or a new one), and again on another while the failure
    /// allows it (`retry.rs`), until the handle's timeout has passed since the first try. A
    /// server's error reply comes back as `Err(Ok(reply))` for the caller to map; anything
    /// else is [`Error::Connection`] (or a refusal).
    pub fn with<R>(
        &self,
        retry: Retry,
        mut f: impl FnMut(&mut dyn ConnectionLike) -> RedisResult<R>,
    ) -> Result<R, std::result::Result<RedisError, Error>> {
        let mut backoff = Backoff::new(self.timeout);
        loop {
            let (e, again) = match self.try_once(&mut f) {
                Ok(r) => return Ok(r),
                // Nothing was sent.
                Err((e, false)) => {
                    let again = passes(&self.label, &e);
                    (e, again)
                }
                Err((e, true)) if is_reply(&e) => {
                    let again = retry::not_run_reply(&e);
                    (e, again)
                }
                Err((e, true)) => (e, retry == Retry::Always),
            };
            if !(again && backoff.wait()) {
                return Err(if is_reply(&e) {
                    Ok(e)
                } else {
                    Err(self.lost(e))
                });
            }
        }
    }

    /// One try of `f`; on failure, whether the command was sent.
    fn try_once<R>(
        &self,
        f: &mut impl FnMut(&mut dyn ConnectionLike) -> RedisResult<R>,
    ) -> std::result::Result<R, (RedisError, bool)> {
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
            None => self.connect().map_err(|e| (e, false))?,
        };
        let out = f(conn.like());
        match &out {
            Ok(_) => self.give_back(conn),
            // A replica, or a server loading its data: the idle connections are likely to
            // the same server (a demoted primary, after a failover); start afresh.
            Err(e) if is_reply(e) && retry::not_run_reply(e) => self.idle.lock().clear(),
            Err(e) if is_reply(e) => self.give_back(conn),
            Err(_) => drop(conn), // out of step with the server, or broken
        }
        out.map_err(|e| (e, true))
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
        // A connection opened later than the first (another thread's, a forked child's) logs in
        // again: the user may have been removed or its password changed meanwhile.
        lost(&self.label, self.timeout, e)
    }
}

fn connect_one(client: &Client, timeout: Duration) -> RedisResult<Connection> {
    let conn = client.get_connection_with_timeout(timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    Ok(conn)
}
