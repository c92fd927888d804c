//! Private Redis servers for the tests and the harness: `redis-server` (or `valkey-server`)
//! from `PATH`, on a free loopback port, persistence off, stopped (and its directory removed)
//! when the handle drops. [`LocalCluster`] is three such servers made into a Redis Cluster.
//! Either can speak TLS only ([`LocalServer::start_tls`], [`LocalCluster::start_tls`]), with
//! certificates from [`crate::tls_certs`].

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::tls_certs::TestCerts;

/// How long a new server may take to answer PING (and a cluster to agree on its slots).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Slots of a Redis Cluster.
const SLOTS: u16 = 16384;

/// For tests: whether a server is there to test against. `false` (said on stderr) when none
/// is installed, unless `SHMAP_REQUIRE_REDIS=1` (set by `make test` once it installed one),
/// which makes a missing server a failure instead of a skip.
pub fn available_for_tests() -> bool {
    if server_binary().is_some() {
        return true;
    }
    let reason = "no redis-server or valkey-server on PATH (make test installs it)";
    assert!(
        std::env::var_os("SHMAP_REQUIRE_REDIS").is_none_or(|v| v != "1"),
        "{reason}, and SHMAP_REQUIRE_REDIS=1"
    );
    eprintln!("SKIPPED: {reason}");
    false
}

/// The server binary on `PATH`, Redis's or Valkey's; `None` if neither is installed.
pub fn server_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["redis-server", "valkey-server"].iter().find_map(|bin| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(bin))
            .find(|p| p.is_file())
    })
}

/// A `redis-server` child process of ours.
#[derive(Debug)]
pub struct LocalServer {
    child: Child,
    port: u16,
    dir: PathBuf,
    /// For a TLS server: the test CA and a client certificate it signed, read at start (the
    /// test's certificate files may be gone by the time we connect).
    tls: Option<redis::TlsCertificates>,
    /// Its arguments, to start it again ([`LocalServer::restart`]).
    args: Vec<String>,
}

static STARTED: AtomicUsize = AtomicUsize::new(0);

/// Asks `ready` every `every` until it says yes, for at most `limit`: then `TimedOut`, with
/// `what` did not happen. An error of `ready` ends the wait at once (a server that exited).
pub(crate) fn poll(
    limit: Duration,
    every: Duration,
    what: impl FnOnce() -> String,
    mut ready: impl FnMut() -> io::Result<bool>,
) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    while !ready()? {
        if Instant::now() > deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, what()));
        }
        std::thread::sleep(every);
    }
    Ok(())
}

/// A port nothing listens on now (and, for a cluster node, whose bus port +10000 exists).
pub(crate) fn free_port() -> io::Result<u16> {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if port < 55000 {
            return Ok(port);
        }
    }
}

impl LocalServer {
    /// Starts a server; `NotFound` if no server binary is on `PATH`.
    pub fn start() -> io::Result<Self> {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (e.g. cluster mode).
    pub fn start_with(extra: &[&str]) -> io::Result<Self> {
        Self::spawn(extra, None)
    }

    /// Starts a server that speaks TLS only (`--port 0 --tls-port PORT`) with the server
    /// certificate of `certs`, trusting their CA for client certificates; clients need not
    /// show one unless `extra` says `--tls-auth-clients yes`.
    pub fn start_tls(certs: &TestCerts, extra: &[&str]) -> io::Result<Self> {
        let (cert, key) = certs.server();
        let (client_cert, client_key) = certs.client();
        let tls = redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: std::fs::read(client_cert)?,
                client_key: std::fs::read(client_key)?,
            }),
            root_cert: Some(std::fs::read(certs.ca())?),
        };
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        let files = [
            "--tls-cert-file".to_owned(),
            path(cert),
            "--tls-key-file".to_owned(),
            path(key),
            "--tls-ca-cert-file".to_owned(),
            path(certs.ca()),
            "--tls-auth-clients".to_owned(),
            "no".to_owned(),
        ];
        let mut args: Vec<&str> = files.iter().map(String::as_str).collect();
        args.extend(extra);
        Self::spawn(&args, Some(tls))
    }

    fn spawn(extra: &[&str], tls: Option<redis::TlsCertificates>) -> io::Result<Self> {
        let bin = server_binary().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "neither redis-server nor valkey-server is on PATH",
            )
        })?;
        let mut last = None;
        // A port found free may be taken before the server binds it: try a few.
        for _ in 0..5 {
            let port = free_port()?;
            let n = STARTED.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("shmap-redis-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let ports = match tls {
                None => vec!["--port".into(), port.to_string()],
                Some(_) => vec![
                    "--port".into(),
                    "0".into(),
                    "--tls-port".into(),
                    port.to_string(),
                ],
            };
            let mut args = ports;
            args.extend(
                ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"].map(String::from),
            );
            args.extend(["--daemonize".into(), "no".into(), "--dir".into()]);
            args.push(dir.to_string_lossy().into_owned());
            args.extend(extra.iter().map(|a| a.to_string()));
            let child = Self::command(&bin, &args).spawn()?;
            let tls = tls.clone();
            let mut server = Self {
                child,
                port,
                dir,
                tls,
                args,
            };
            match server.wait_ready() {
                Ok(()) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("redis-server did not start")))
    }

    fn command(bin: &Path, args: &[String]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        cmd
    }

    /// Kills the server (SIGKILL) and starts it again on the same port, in the same directory
    /// (so a server started with `--appendonly yes` comes back with what it had written),
    /// after `down` has passed. Returns once it answers PING.
    pub fn restart(&mut self, down: Duration) -> io::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        std::thread::sleep(down);
        let bin = server_binary()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no server binary"))?;
        self.child = Self::command(&bin, &self.args).spawn()?;
        self.wait_ready()
    }

    /// Waits until the server answers PING; an error at once if it exited (its port taken
    /// meanwhile, or an argument it refused), rather than after the whole timeout.
    fn wait_ready(&mut self) -> io::Result<()> {
        let client = self.client().map_err(io::Error::other)?;
        let port = self.port;
        let what = || format!("redis-server on port {port} did not answer PING");
        poll(START_TIMEOUT, Duration::from_millis(20), what, || {
            let ping = client
                .get_connection_with_timeout(Duration::from_millis(200))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if ping.is_ok() {
                return Ok(true);
            }
            match self.child.try_wait()? {
                Some(status) => Err(io::Error::other(format!(
                    "redis-server on port {port} exited ({status}) before it answered PING"
                ))),
                None => Ok(false),
            }
        })
    }

    /// `redis://127.0.0.1:PORT/0`, or `rediss://` for a TLS server (whose certificate the
    /// system's roots do not know: give the test CA as `ssl_ca_certs`).
    pub fn url(&self) -> String {
        let s = if self.tls.is_some() { "s" } else { "" };
        format!("redis{s}://127.0.0.1:{}/0", self.port)
    }

    /// A client for the test's own commands (ACLs, `CLIENT KILL`, ...): over TLS, with the
    /// test CA and client certificate, for a TLS server.
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        match &self.tls {
            Some(certs) => redis::Client::build_with_tls(self.url(), certs.clone()),
            None => redis::Client::open(self.url()),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id (to stop or kill it in a test).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The directory it runs in (removed at drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three servers in cluster mode, the slots split between them.
#[derive(Debug)]
pub struct LocalCluster {
    nodes: Vec<LocalServer>,
}

impl LocalCluster {
    /// Starts `n` nodes and makes them one cluster (no replicas).
    pub fn start(n: usize) -> io::Result<Self> {
        Self::start_nodes(n, None)
    }

    /// A cluster that speaks TLS only, between its nodes too (`tls-cluster`): nodes announce
    /// their TLS ports, as a managed service's do.
    pub fn start_tls(n: usize, certs: &TestCerts) -> io::Result<Self> {
        Self::start_nodes(n, Some(certs))
    }

    fn start_nodes(n: usize, certs: Option<&TestCerts>) -> io::Result<Self> {
        const CLUSTER: [&str; 4] = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ];
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            nodes.push(match certs {
                None => LocalServer::start_with(&CLUSTER)?,
                Some(certs) => {
                    let mut args = CLUSTER.to_vec();
                    args.extend(["--tls-cluster", "yes", "--tls-replication", "yes"]);
                    LocalServer::start_tls(certs, &args)?
                }
            });
        }
        let cluster = Self { nodes };
        cluster.form()?;
        Ok(cluster)
    }

    fn form(&self) -> io::Result<()> {
        let mut conns = Vec::new();
        for node in &self.nodes {
            conns.push(
                node.client()
                    .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
                    .map_err(io::Error::other)?,
            );
        }
        let share = SLOTS.div_ceil(self.nodes.len() as u16);
        for (i, conn) in conns.iter_mut().enumerate() {
            let first = i as u16 * share;
            let last = (first + share).min(SLOTS) - 1;
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("ADDSLOTS");
            for slot in first..=last {
                cmd.arg(slot);
            }
            cmd.query::<()>(conn).map_err(io::Error::other)?;
        }
        for node in &self.nodes[1..] {
            redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(node.port)
                .query::<()>(&mut conns[0])
                .map_err(io::Error::other)?;
        }
        let what = || "the cluster did not reach cluster_state:ok".to_owned();
        poll(START_TIMEOUT, Duration::from_millis(50), what, || {
            let mut ok = true;
            for conn in conns.iter_mut() {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(conn)
                    .map_err(io::Error::other)?;
                ok &= info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{}", self.nodes.len()));
            }
            Ok(ok)
        })
    }

    /// The URL of the first node (any node will do: the client learns the others).
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// The nodes.
    pub fn nodes(&self) -> &[LocalServer] {
        &self.nodes
    }
}
