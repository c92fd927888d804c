//! The map on a Redis (or Valkey) server: [`MapOps`] for processes on several machines.
//!
//! A map named `NAME` is two hashes with one hash tag, so Redis Cluster keeps them in one slot
//! (and a script may touch both):
//!
//! | key                   | holds                                                          |
//! |-----------------------|----------------------------------------------------------------|
//! | `shmap:{NAME}:meta`   | `magic`, `version`, `capacity`, `max_key_size`, `max_value_size` |
//! | `shmap:{NAME}`        | the entries: field = key bytes, value = value bytes            |
//! | `shmap:{NAME}:req`    | recent writes' replies: field = request id (`scripts::once`)    |
//!
//! Reads are one command each (`HGET`, `HEXISTS`, `HLEN`), except the scan
//! ([`MapOps::entries`]): `HSCAN` in chunks of [`SCAN_CHUNK`], so that a big map never holds
//! the server (which runs one command at a time) for long. Every write that may add an entry
//! is one script (`scripts.rs`) that first checks that the meta hash still exists and that
//! the map has room, so the semantics are those of the shared-memory map: a full map is
//! [`Error::TableFull`] at `max_capacity` (stored as `capacity`: a hash grows by itself, so the
//! two are one), sizes are checked before anything is sent, and a
//! failed call changed nothing. Unlike shared memory, `unlink` removes the map for everyone at
//! once: afterwards reads find nothing and writes are [`Error::NotFound`].
//!
//! A call whose connection broke, or that met a server loading its data or a cluster moving
//! a slot, is sent again until the handle's `timeout` has passed (`retry.rs`). Writes carry a
//! request id, so one sent twice acts once: its reply stays in `shmap:{NAME}:req` for
//! `timeout` + 1 s.

mod conn;
mod retry;
mod scripts;
mod sentinel;
mod tls;

use redis::{FromRedisValue, RedisError, Script};
use shmap::{Error, Inserted, MapOps, MapParams, Result};

use conn::Pool;
pub use conn::{redact, RedisOptions, DEFAULT_TIMEOUT};
pub use redis;
use retry::{record_ttl, request_id, Retry};
pub use scripts::with_prelude as write_script;
pub use tls::CertReqs;

/// How [`RedisMap::run`] runs a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// A caller's own script, sent again only where the server surely did not run it.
    Read,
    /// A write that may run twice (it stores values): waits for the replicas asked for.
    Write,
    /// A write made by [`scripts::once`], with a request record: also sent again after a
    /// lost reply.
    Once,
}

/// Written into every map's meta hash: a key of that name without it is not ours.
pub const MAGIC: &str = "shmap-redis-map";
/// The layout of the two hashes; a map of another version is refused.
pub const VERSION: u64 = 1;

/// Entries the scan asks the server for per `HSCAN` (a hint: the server may return a few
/// more or fewer). One `HGETALL` of a million entries held a server for 0.5-0.8 s here
/// (`python/bench/redis_scan.py`); in chunks, another client waited 12-22 ms at most.
pub const SCAN_CHUNK: usize = 1000;

/// A handle on a map stored in Redis. Threads may share it (each call takes a pooled
/// connection).
#[derive(Debug)]
pub struct RedisMap {
    pool: Pool,
    /// [`RedisOptions::replicas`].
    replicas: u32,
    name: String,
    params: MapParams,
    meta_key: String,
    data_key: String,
    /// `shmap:{NAME}:req`: the replies of recent writes, by request id (`scripts::once`).
    records_key: String,
}

/// The map's name must make one hash tag: no braces, and printable.
fn check_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "is empty"
    } else if name.len() > 200 {
        "is longer than 200 bytes"
    } else if name.contains(['{', '}']) {
        "contains a brace (the map's keys use {name} as their cluster hash tag)"
    } else if name.chars().any(char::is_control) {
        "contains a control character"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

impl RedisMap {
    /// The pool, and the meta, data and records keys.
    fn handle(url: &str, name: &str, opts: &RedisOptions) -> Result<(Pool, [String; 3])> {
        check_name(name)?;
        let pool = Pool::open(url, opts)?;
        if opts.replicas > 0 && pool.is_cluster() {
            return Err(Error::InvalidParameter {
                what: "replicas",
                reason: "waiting for replicas is not supported on a Redis Cluster yet".into(),
            });
        }
        Ok((
            pool,
            [
                format!("shmap:{{{name}}}:meta"),
                format!("shmap:{{{name}}}"),
                format!("shmap:{{{name}}}:req"),
            ],
        ))
    }

    /// Creates the map `name` on the server at `url` (an error if it exists there). A Redis
    /// hash grows by itself, so `params.max_capacity` is the map's one limit, as it is for a
    /// table in shared memory that grows; it is stored, and read back by every handle
    /// (this one too), as both `capacity` and `max_capacity`.
    pub fn create(url: &str, name: &str, params: MapParams, opts: RedisOptions) -> Result<Self> {
        params.validate()?;
        let params = MapParams {
            capacity: params.max_capacity,
            ..params
        };
        let (pool, [meta_key, data_key, records_key]) = Self::handle(url, name, &opts)?;
        let map = Self {
            pool,
            replicas: opts.replicas,
            name: name.to_owned(),
            params,
            meta_key,
            data_key,
            records_key,
        };
        // A plain read first: a map that exists is `AlreadyExists` for a user who may only
        // read too (who may attach, but not run the script that creates).
        let exists: i64 = map.query(redis::cmd("EXISTS").arg(&map.meta_key))?;
        if exists == 1 {
            return Err(Error::AlreadyExists(map.label()));
        }
        let created: i64 = map.script_once(
            &scripts::CREATE,
            &[
                MAGIC.as_bytes(),
                VERSION.to_string().as_bytes(),
                params.capacity.to_string().as_bytes(),
                params.max_key_size.to_string().as_bytes(),
                params.max_value_size.to_string().as_bytes(),
            ],
        )?;
        match created {
            1 => Ok(map),
            0 => Err(Error::AlreadyExists(map.label())),
            _ => Err(map.not_ours("a key of that name exists without the map's meta hash")),
        }
    }

    /// Attaches to the existing map `name` on the server at `url`, reading its shape back.
    pub fn attach(url: &str, name: &str, opts: RedisOptions) -> Result<Self> {
        let (pool, [meta_key, data_key, records_key]) = Self::handle(url, name, &opts)?;
        let mut map = Self {
            pool,
            replicas: opts.replicas,
            name: name.to_owned(),
            params: MapParams::default(),
            meta_key,
            data_key,
            records_key,
        };
        let fields: Vec<Option<String>> =
            map.query(redis::cmd("HMGET").arg(&map.meta_key).arg(&[
                "magic",
                "version",
                "capacity",
                "max_key_size",
                "max_value_size",
            ]))?;
        let [magic, version, capacity, max_key, max_value] =
            <[Option<String>; 5]>::try_from(fields)
                .map_err(|_| map.not_ours("HMGET returned the wrong number of fields"))?;
        if [&magic, &version, &capacity, &max_key, &max_value]
            .iter()
            .all(|f| f.is_none())
        {
            return Err(Error::NotFound(map.label()));
        }
        if magic.as_deref() != Some(MAGIC) {
            return Err(map.not_ours("its meta hash has no shmap magic"));
        }
        let number = |f: Option<String>, what: &str| {
            f.and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| Error::Corrupt {
                    name: map.label(),
                    reason: format!("meta field {what} is missing or not a number"),
                })
        };
        let found = number(version, "version")?;
        if found != VERSION {
            return Err(Error::IncompatibleVersion {
                name: map.label(),
                found,
                expected: VERSION,
            });
        }
        let capacity = number(capacity, "capacity")? as usize;
        // A Redis hash grows by itself: `capacity` is only the limit, so the two are one.
        let params = MapParams {
            capacity,
            max_key_size: number(max_key, "max_key_size")? as usize,
            max_value_size: number(max_value, "max_value_size")? as usize,
            max_capacity: capacity,
        };
        params.validate().map_err(|e| Error::Corrupt {
            name: map.label(),
            reason: e.to_string(),
        })?;
        map.params = params;
        Ok(map)
    }

    /// The map as messages name it: `NAME at redis://host:port/db`.
    pub fn label(&self) -> String {
        format!("{} at {}", self.name, self.pool.label())
    }

    /// The server's URL, without its password.
    pub fn url(&self) -> &str {
        self.pool.label()
    }

    /// Whether the URL named a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.pool.is_cluster()
    }

    /// Removes the map from the server, for every client at once. [`Error::NotFound`] if it
    /// is not there. Its request records go too, so that nothing of the map is left: an
    /// unlink retried after its reply was lost may then find nothing and say `NotFound`.
    pub fn unlink(&self) -> Result<()> {
        let removed: i64 = self.run_write(
            redis::cmd("DEL")
                .arg(&self.meta_key)
                .arg(&self.data_key)
                .arg(&self.records_key),
        )?;
        if removed == 0 {
            return Err(Error::NotFound(self.label()));
        }
        Ok(())
    }

    /// Removes every entry, atomically.
    pub fn clear(&self) -> Result<()> {
        self.run_write::<i64>(redis::cmd("DEL").arg(&self.data_key))
            .map(drop)
    }

    /// Inserts or replaces every pair in one round trip, atomically: all of them, or (a full
    /// map, an oversize key or value) none. Returns how many keys were new.
    pub fn insert_many(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<usize> {
        match self.pair_args(pairs)? {
            Some(args) => self.script_once(&scripts::INSERT_MANY, &args),
            None => Ok(0),
        }
    }

    /// `pairs` checked against the size limits and flattened into a script's `ARGV` (key,
    /// value, key, value, ...); `None` for no pairs, which need no call.
    fn pair_args<'a>(&self, pairs: &'a [(Vec<u8>, Vec<u8>)]) -> Result<Option<Vec<&'a [u8]>>> {
        for (k, v) in pairs {
            self.check(k, Some(v))?;
        }
        Ok((!pairs.is_empty()).then(|| {
            pairs
                .iter()
                .flat_map(|(k, v)| [k.as_slice(), v.as_slice()])
                .collect()
        }))
    }

    /// Inserts or replaces, as [`MapOps::insert`] without saying whether the key was new:
    /// so it needs no request record on the server (a retry stores the same value again),
    /// and costs what a write cost before retries. Python's `m[k] = v`.
    pub fn set(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check(key, Some(value))?;
        self.run::<i64>(&scripts::SET, &[key, value], Run::Write)
            .map(drop)
    }

    /// [`RedisMap::insert_many`] without the count of new keys (as [`RedisMap::set`]).
    pub fn set_many(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        match self.pair_args(pairs)? {
            Some(args) => self
                .run::<i64>(&scripts::SET_MANY, &args, Run::Write)
                .map(drop),
            None => Ok(()),
        }
    }

    /// Removes some entry and returns it; `None` if the map is empty. Atomic: two clients
    /// never pop the same entry.
    pub fn pop_any(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let pair: Option<(Vec<u8>, Vec<u8>)> = self.script_once(&scripts::POP_ANY, &[])?;
        Ok(pair)
    }

    /// Runs `script` on the server with `KEYS[1]` = the meta hash, `KEYS[2]` = the data hash
    /// and `args` as `ARGV`. Sent again only where the server surely did not run it (a lost
    /// connection after it was sent is [`Error::Connection`]): for reads of a caller's own.
    /// Writes go through [`RedisMap::script_once`].
    pub fn script<T: FromRedisValue>(&self, script: &Script, args: &[&[u8]]) -> Result<T> {
        self.run(script, args, Run::Read)
    }

    /// Runs `script` with `KEYS[1]`, `KEYS[2]` = the meta and data hashes and `args` as
    /// `ARGV`, as `how` says: with [`Run::Once`], `KEYS[3]` = the records hash and the
    /// request id and record lifetime after `args` (`scripts::once`).
    fn run<T: FromRedisValue>(&self, script: &Script, args: &[&[u8]], how: Run) -> Result<T> {
        let record = (how == Run::Once).then(|| {
            let ttl = record_ttl(self.pool.timeout()).as_millis().to_string();
            (request_id(), ttl)
        });
        let retry = match how {
            Run::Read => Retry::IfNotRun,
            Run::Write | Run::Once => Retry::Always,
        };
        self.call(retry, |conn| {
            let mut call = script.key(&self.meta_key);
            call.key(&self.data_key);
            for a in args {
                call.arg(*a);
            }
            if let Some((id, ttl)) = &record {
                call.key(&self.records_key).arg(id).arg(ttl);
            }
            let reply = call.invoke(conn)?;
            if how != Run::Read {
                self.replicated(conn)?;
            }
            Ok(reply)
        })
    }

    /// A write command without a request record (`clear`, `unlink`): may run twice.
    fn run_write<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        self.call(Retry::Always, |conn| {
            let reply = cmd.query(conn)?;
            self.replicated(conn)?;
            Ok(reply)
        })
    }

    /// With [`RedisOptions::replicas`]: waits (`WAIT`) until that many replicas have every
    /// write this connection made, or 3/4 of the timeout passed (the rest is left for the
    /// reply to come back within the connection's timeout).
    fn replicated(&self, conn: &mut dyn redis::ConnectionLike) -> redis::RedisResult<()> {
        if self.replicas == 0 {
            return Ok(());
        }
        let wait = self.pool.timeout() * 3 / 4;
        let acked: u32 = redis::cmd("WAIT")
            .arg(self.replicas)
            .arg(wait.as_millis().max(1) as u64)
            .query(conn)?;
        if acked >= self.replicas {
            return Ok(());
        }
        Err(redis::make_extension_error(
            "SHMAP_NOT_REPLICATED".into(),
            Some(format!(
                "the write was made on the primary, but {acked} of the {} replicas asked for \
                 acknowledged it within {wait:?}: a failover now could lose it",
                self.replicas
            )),
        ))
    }

    /// Runs a script made by [`write_script`] (the Python class's `incr` on its value
    /// encoding), with `args` as its `ARGV`, once: sent again after a lost reply, within the
    /// timeout, it returns the first run's reply and changes nothing more. Scripts that add
    /// entries should check room as this module's do and reply `SHMAP_FULL` / `SHMAP_GONE`,
    /// which become [`Error::TableFull`] / [`Error::NotFound`].
    pub fn script_once<T: FromRedisValue>(&self, script: &Script, args: &[&[u8]]) -> Result<T> {
        self.run(script, args, Run::Once)
    }

    /// A read, or a write whose effect and reply do not change when it runs twice.
    fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        self.call(Retry::Always, |conn| cmd.query(conn))
    }

    fn call<T>(
        &self,
        retry: Retry,
        f: impl FnMut(&mut dyn redis::ConnectionLike) -> redis::RedisResult<T>,
    ) -> Result<T> {
        self.pool.with(retry, f).map_err(|e| match e {
            Ok(reply) => self.reply_error(reply),
            Err(lost) => lost,
        })
    }

    /// A server's error reply as the contract's error.
    fn reply_error(&self, e: RedisError) -> Error {
        // A script's `error_reply('SHMAP_FULL')` arrives as the code itself, or (Redis 7) as
        // `ERR SHMAP_FULL`: take the first word that is one of ours.
        let ours = [e.code(), e.detail()]
            .into_iter()
            .flatten()
            .filter_map(|s| s.split_whitespace().next())
            .find(|w| w.starts_with("SHMAP_") || *w == "WRONGTYPE");
        match ours {
            Some("SHMAP_FULL") => Error::TableFull {
                capacity: self.params.capacity,
            },
            Some("SHMAP_GONE") => Error::NotFound(self.label()),
            Some("SHMAP_CORRUPT") => Error::Corrupt {
                name: self.label(),
                reason: e
                    .detail()
                    .unwrap_or("a request record is not ours")
                    .to_owned(),
            },
            Some("SHMAP_NOT_REPLICATED") => Error::Connection {
                url: self.pool.label().to_owned(),
                reason: e.detail().unwrap_or("not replicated").to_owned(),
            },
            Some("WRONGTYPE") => self.not_ours("a key of the map's name is not a hash"),
            _ if conn::is_refusal(&e) => conn::refusal(self.pool.label(), &e),
            _ => Error::Connection {
                url: self.pool.label().to_owned(),
                reason: format!("the server refused the command: {e}"),
            },
        }
    }

    fn not_ours(&self, reason: &str) -> Error {
        Error::NotOurs {
            name: self.label(),
            reason: reason.to_owned(),
        }
    }

    fn check(&self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        if key.len() > self.params.max_key_size {
            return Err(Error::KeyTooLarge {
                size: key.len(),
                max: self.params.max_key_size,
            });
        }
        match value {
            Some(v) if v.len() > self.params.max_value_size => Err(Error::ValueTooLarge {
                size: v.len(),
                max: self.params.max_value_size,
            }),
            _ => Ok(()),
        }
    }
}

impl MapOps for RedisMap {
    fn name(&self) -> &str {
        &self.name
    }

    fn params(&self) -> MapParams {
        self.params
    }

    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        // The reply is a fresh Vec already: hand it over rather than copy it.
        Ok(self.get(key)?.map(|v| *out = v).is_some())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check(key, None)?;
        self.query(redis::cmd("HGET").arg(&self.data_key).arg(key))
    }

    fn contains_key(&self, key: &[u8]) -> Result<bool> {
        self.check(key, None)?;
        self.query(redis::cmd("HEXISTS").arg(&self.data_key).arg(key))
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<Inserted> {
        self.check(key, Some(value))?;
        let new: i64 = self.script_once(&scripts::INSERT, &[key, value])?;
        Ok(if new == 1 {
            Inserted::New
        } else {
            Inserted::Replaced
        })
    }

    fn remove(&self, key: &[u8]) -> Result<bool> {
        self.check(key, None)?;
        // No check that the map exists: HDEL never creates a key.
        let removed: i64 = self.script_once(&scripts::REMOVE, &[key])?;
        Ok(removed == 1)
    }

    fn compare_exchange(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Result<(), Option<Vec<u8>>>> {
        self.check(key, new)?;
        let flag = |o: Option<&[u8]>| if o.is_some() { &b"1"[..] } else { &b"0"[..] };
        let reply: Vec<redis::Value> = self.script_once(
            &scripts::COMPARE_EXCHANGE,
            &[
                key,
                flag(expected),
                expected.unwrap_or_default(),
                flag(new),
                new.unwrap_or_default(),
            ],
        )?;
        let int = |v: Option<&redis::Value>| matches!(v, Some(redis::Value::Int(1)));
        if int(reply.first()) {
            return Ok(Ok(()));
        }
        if !int(reply.get(1)) {
            return Ok(Err(None));
        }
        let current = reply
            .get(2)
            .map(Vec::<u8>::from_redis_value_ref)
            .transpose()
            .map_err(|e| self.not_ours(&format!("unexpected script reply: {e}")))?;
        Ok(Err(current))
    }

    fn get_or_insert(&self, key: &[u8], value: &[u8]) -> Result<(Vec<u8>, bool)> {
        self.check(key, Some(value))?;
        let (stored, inserted): (Vec<u8>, i64) =
            self.script_once(&scripts::GET_OR_INSERT, &[key, value])?;
        Ok((stored, inserted == 1))
    }

    fn remove_entry(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check(key, None)?;
        self.script_once(&scripts::REMOVE_ENTRY, &[key])
    }

    fn len(&self) -> Result<usize> {
        self.query(redis::cmd("HLEN").arg(&self.data_key))
    }

    /// `HSCAN` in chunks: each entry is a snapshot of it at some instant of the scan; an entry
    /// present throughout is listed, one added or removed meanwhile may or may not be (as the
    /// shared-memory scan, and a dict view under change elsewhere). `HSCAN` may return a key
    /// twice (when the hash is resized between chunks): it is listed once, with its later value.
    fn entries(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut seen: std::collections::HashMap<Vec<u8>, Vec<u8>> =
            std::collections::HashMap::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, chunk): (u64, Vec<Vec<u8>>) = self.query(
                redis::cmd("HSCAN")
                    .arg(&self.data_key)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(SCAN_CHUNK),
            )?;
            let mut fields = chunk.into_iter();
            while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
                seen.insert(k, v);
            }
            if next == 0 {
                return Ok(seen.into_iter().collect());
            }
            cursor = next;
        }
    }
}
