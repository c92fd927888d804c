//! A primary, its replicas and three Redis Sentinels watching them, all private, on free
//! loopback ports: for the tests of `redis+sentinel://` URLs and failover. The sentinels
//! declare the primary down after 1 s without an answer and need two of three to agree.

use std::io;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::redis_server::{free_port, poll, server_binary, LocalServer};

/// How long the set-up waits for the replicas and the sentinels.
const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// The name the sentinels know the primary by.
pub const MASTER: &str = "shmap-primary";

/// Waits up to 30 s until `primary` reports `n` replicas online (their first sync done) and
/// `WAIT` sees them acknowledge a write (of the key `shmap-test:ping`): a replica that is
/// still syncing would be promoted empty, and takes no `WAIT`.
pub fn wait_replicas_online(primary: &LocalServer, n: usize) -> io::Result<()> {
    let mut info = String::new();
    let what = || format!("{n} replicas did not come online");
    poll(WAIT_LIMIT, Duration::from_millis(50), what, || {
        info = primary
            .client()
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
            .and_then(|mut c| redis::cmd("INFO").arg("replication").query(&mut c))
            .unwrap_or_default();
        // Online, and acknowledging writes (`WAIT` answers).
        let acked = || -> redis::RedisResult<usize> {
            let mut c = primary
                .client()?
                .get_connection_with_timeout(Duration::from_millis(500))?;
            redis::cmd("SET")
                .arg("shmap-test:ping")
                .arg(1)
                .query::<()>(&mut c)?;
            redis::cmd("WAIT").arg(n).arg(500).query(&mut c)
        };
        Ok(info.matches("state=online").count() >= n && acked().is_ok_and(|a| a >= n))
    })
    .map_err(|e| io::Error::new(e.kind(), format!("{e}: {info}")))
}

/// One sentinel process.
#[derive(Debug)]
struct Sentinel {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Sentinel {
    /// Runs `f` on a new connection to this sentinel.
    fn ask<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port))?;
        f(&mut client.get_connection_with_timeout(Duration::from_millis(500))?)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A primary, `n` replicas of it and three sentinels.
#[derive(Debug)]
pub struct LocalSentinels {
    /// The primary at start (after a failover, a replica, or dead).
    pub primary: LocalServer,
    /// Its replicas at start.
    pub replicas: Vec<LocalServer>,
    sentinels: Vec<Sentinel>,
}

impl LocalSentinels {
    /// Starts the servers and the sentinels; returns once the sentinels know the replicas.
    pub fn start(replicas: usize) -> io::Result<Self> {
        let primary = LocalServer::start()?;
        let of = primary.port().to_string();
        let replicas = (0..replicas)
            .map(|_| LocalServer::start_with(&["--replicaof", "127.0.0.1", &of]))
            .collect::<io::Result<Vec<_>>>()?;
        wait_replicas_online(&primary, replicas.len())?;
        let bin = server_binary().ok_or_else(|| io::Error::other("no redis-server"))?;
        let mut sentinels = Vec::new();
        for n in 0..3 {
            let port = free_port()?;
            let dir = std::env::temp_dir().join(format!(
                "shmap-sentinel-{}-{}-{n}",
                std::process::id(),
                primary.port()
            ));
            std::fs::create_dir_all(&dir)?;
            let conf = dir.join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor {MASTER} 127.0.0.1 {of} 2\n\
                     sentinel down-after-milliseconds {MASTER} 1000\n\
                     sentinel failover-timeout {MASTER} 5000\n",
                    dir.display()
                ),
            )?;
            let child = Command::new(&bin)
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            sentinels.push(Sentinel { child, port, dir });
        }
        let me = Self {
            primary,
            replicas,
            sentinels,
        };
        me.wait(|c| {
            let known: Vec<redis::Value> = redis::cmd("SENTINEL")
                .arg("replicas")
                .arg(MASTER)
                .query(c)?;
            Ok(known.len() == me.replicas.len())
        })?;
        Ok(me)
    }

    /// `redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/MASTER/0`.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{MASTER}/0", nodes.join(","))
    }

    /// The port every sentinel names as the primary's, once they agree.
    pub fn primary_port(&self) -> io::Result<u16> {
        let mut agreed = 0;
        let what = || "the sentinels did not agree on the primary".to_owned();
        poll(WAIT_LIMIT, Duration::from_millis(50), what, || {
            let named: Vec<Option<u16>> = self
                .sentinels
                .iter()
                .map(|s| {
                    s.ask(|c| {
                        redis::cmd("SENTINEL")
                            .arg("get-master-addr-by-name")
                            .arg(MASTER)
                            .query::<(String, u16)>(c)
                    })
                    .ok()
                    .map(|(_, port)| port)
                })
                .collect();
            Ok(match named[0] {
                Some(port) if named.iter().all(|n| *n == Some(port)) => {
                    agreed = port;
                    true
                }
                _ => false,
            })
        })?;
        Ok(agreed)
    }

    /// Waits up to [`WAIT_LIMIT`] until `done` holds on every sentinel in one round.
    fn wait(
        &self,
        mut done: impl FnMut(&mut redis::Connection) -> redis::RedisResult<bool>,
    ) -> io::Result<()> {
        let what = || "the sentinels did not come to agree".to_owned();
        poll(WAIT_LIMIT, Duration::from_millis(50), what, || {
            Ok(self
                .sentinels
                .iter()
                .all(|s| s.ask(&mut done).unwrap_or(false)))
        })
    }
}
