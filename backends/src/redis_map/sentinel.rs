//! Redis Sentinel: `redis+sentinel://[user:password@]host1:port1,host2:port2/MASTER[/DB]`
//! names the sentinels (port 26379 when left out) and the master's name they watch. Every new
//! connection asks them, in turn, where the primary is now (`SENTINEL
//! get-master-addr-by-name`), connects there and checks with `HELLO` that the server is a
//! primary (a sentinel may name the old one for a moment after a failover, and a demoted
//! primary comes back as a replica). So once a failover is over, the retries of `retry.rs`
//! reach the new primary by themselves: a call that meets the dead primary is sent again on
//! a new connection, one that meets the demoted one gets `READONLY` (not run) and is sent
//! again too.
//!
//! The user and password are the data servers'; the sentinels are asked without them (as
//! redis-py's `Sentinel` does unless given `sentinel_kwargs`). TLS to a sentinel setup is
//! not supported yet: `rediss+sentinel://` is [`Error::InvalidParameter`].

use std::time::Duration;

use redis::{
    Client, Connection, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo, RedisError,
    RedisResult, Value,
};
use shmap::{Error, Result};

/// The port of a sentinel the URL gives without one.
pub const DEFAULT_PORT: u16 = 26379;

/// The sentinels of one master, and who to be on the data servers.
#[derive(Debug, Clone)]
pub struct Sentinels {
    nodes: Vec<(String, u16)>,
    master: String,
    /// The data servers' settings (user, password, db); its address is replaced by the
    /// primary's at each connect.
    info: ConnectionInfo,
    timeout: Duration,
}

fn bad(label: &str, why: impl std::fmt::Display) -> Error {
    Error::InvalidParameter {
        what: "url",
        reason: format!("{label}: {why}"),
    }
}

/// A `RedisError` of ours, for a connect that found no primary (retried as a failed connect).
fn no_primary(detail: String) -> RedisError {
    RedisError::from((ErrorKind::Client, "no primary", detail))
}

impl Sentinels {
    /// `Some` for a `redis+sentinel://` URL; `None` for any other. `info_of` turns a plain
    /// `redis://` URL into connection settings with the caller's user and password options.
    pub fn parse(
        url: &str,
        label: &str,
        timeout: Duration,
        info_of: impl FnOnce(&str) -> Result<ConnectionInfo>,
    ) -> Result<Option<Self>> {
        if url.starts_with("rediss+sentinel://") {
            return Err(bad(label, "TLS to sentinels is not supported yet"));
        }
        let Some(rest) = url.strip_prefix("redis+sentinel://") else {
            return Ok(None);
        };
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, rest),
        };
        let (hosts, path) = rest.split_once('/').ok_or_else(|| {
            bad(
                label,
                "a sentinel URL names the master: redis+sentinel://HOST:PORT,.../MASTER[/DB]",
            )
        })?;
        if path.contains('?') {
            return Err(bad(label, "a sentinel URL takes no query"));
        }
        let (master, db) = match path.split_once('/') {
            Some((m, db)) => (m, db),
            None => (path, "0"),
        };
        if master.is_empty() {
            return Err(bad(label, "the master name is empty"));
        }
        let db: i64 = db
            .parse()
            .map_err(|_| bad(label, format!("database {db:?} is not a number")))?;
        let mut nodes = Vec::new();
        for host in hosts.split(',') {
            let (h, p) = match host.rsplit_once(':') {
                Some((h, p)) => (
                    h,
                    p.parse()
                        .map_err(|_| bad(label, format!("port {p:?} is not a number")))?,
                ),
                None => (host, DEFAULT_PORT),
            };
            if h.is_empty() {
                return Err(bad(label, "a sentinel's host is empty"));
            }
            nodes.push((h.to_owned(), p));
        }
        // The user, password and db as a plain URL: parsed (and percent-decoded) as any other.
        let plain = match userinfo {
            Some(u) => format!("redis://{u}@127.0.0.1/{db}"),
            None => format!("redis://127.0.0.1/{db}"),
        };
        Ok(Some(Self {
            nodes,
            master: master.to_owned(),
            info: info_of(&plain)?,
            timeout,
        }))
    }

    /// Where the sentinels say the primary is: the first answer of one that knows the master.
    fn primary_addr(&self) -> RedisResult<(String, u16)> {
        let mut why = Vec::new();
        for (host, port) in &self.nodes {
            let asked = (|| {
                let info = (host.as_str(), *port).into_connection_info()?;
                let client = Client::open(info)?;
                let mut c = client.get_connection_with_timeout(self.timeout)?;
                c.set_read_timeout(Some(self.timeout))?;
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.master)
                    .query::<Option<(String, u16)>>(&mut c)
            })();
            match asked {
                Ok(Some(addr)) => return Ok(addr),
                Ok(None) => why.push(format!("{host}:{port} does not know {:?}", self.master)),
                Err(e) => why.push(format!("{host}:{port}: {e}")),
            }
        }
        Err(no_primary(format!(
            "no sentinel named the primary of {:?} ({})",
            self.master,
            why.join("; ")
        )))
    }

    /// A client for the primary the sentinels name now.
    pub fn primary(&self) -> RedisResult<Client> {
        let (host, port) = self.primary_addr()?;
        Client::open(self.info.clone().set_addr(ConnectionAddr::Tcp(host, port)))
    }

    /// Checks that `conn` is to a primary (`HELLO`'s `role`, which any user may ask for).
    pub fn check_primary(&self, conn: &mut Connection) -> RedisResult<()> {
        let fields: Vec<Value> = redis::cmd("HELLO").arg(2).query(conn)?;
        let role = fields.chunks(2).find_map(|kv| match kv {
            [Value::BulkString(k), Value::BulkString(v)] if k == b"role" => Some(v.clone()),
            _ => None,
        });
        match role.as_deref() {
            Some(b"master") => Ok(()),
            other => Err(no_primary(format!(
                "the server the sentinels named for {:?} is not a primary (role {:?})",
                self.master,
                other.map(String::from_utf8_lossy)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Option<Sentinels>> {
        Sentinels::parse(url, "test", Duration::from_secs(1), |plain| {
            plain.into_connection_info().map_err(|e| bad("test", e))
        })
    }

    #[test]
    fn sentinel_urls() {
        assert!(parse("redis://h:1/0").unwrap().is_none());
        let s = parse("redis+sentinel://u:p%40ss@a:1,b,c:3/mymaster/2")
            .unwrap()
            .unwrap();
        assert_eq!(
            s.nodes,
            [("a".into(), 1), ("b".into(), DEFAULT_PORT), ("c".into(), 3)]
        );
        assert_eq!(s.master, "mymaster");
        let settings = s.info.redis_settings();
        assert_eq!(settings.db(), 2);
        assert_eq!(settings.username(), Some("u"));
        assert_eq!(settings.password(), Some("p@ss"));
        for bad in [
            "redis+sentinel://a:1",
            "redis+sentinel://a:1/",
            "redis+sentinel://a:x/m",
            "redis+sentinel://a:1/m/db",
            "redis+sentinel://a:1/m?x=1",
            "redis+sentinel://,a/m",
            "rediss+sentinel://a/m",
        ] {
            assert!(
                matches!(parse(bad), Err(Error::InvalidParameter { .. })),
                "{bad}"
            );
        }
    }
}
