//! Our map on a Redis server (`RedisMap`): what crossing the machine's edge costs. Every
//! worker process opens its own handle (its own connection) to the same map.

use std::sync::LazyLock;

use shmap::MapOps;
use shmap_backends::redis_map::redis::Script;
use shmap_backends::{RedisMap, RedisOptions};

use super::{map_params, Store, Target};
use crate::cleanup::Resources;
use crate::outcome::Memory;
use crate::spec::Spec;

/// One process's handle on the map on the server.
#[derive(Debug)]
pub struct RedisTarget(pub RedisMap);

fn err(e: shmap::Error) -> String {
    format!("redis: {e}")
}

impl RedisTarget {
    /// Creates the map `name` on the server at `url`.
    pub fn create(url: &str, name: &str, params: shmap::MapParams) -> Result<Self, String> {
        RedisMap::create(url, name, params, RedisOptions::default())
            .map(Self)
            .map_err(err)
    }

    /// What the server holds for the map: `MEMORY USAGE` of its two hashes (the allocator's
    /// bytes for each key and its value, every field counted: `SAMPLES 0`), and its entries.
    /// One script, so the two are of the same moment; the server's own baseline (about
    /// 1 MB however many maps it holds) is not the map's.
    fn memory(&self) -> Result<Memory, String> {
        static USAGE: LazyLock<Script> = LazyLock::new(|| {
            Script::new(
                r#"
local function usage(key) return redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0') or 0 end
return {usage(KEYS[1]) + usage(KEYS[2]), redis.call('HLEN', KEYS[2])}
"#,
            )
        });
        let (bytes, entries): (u64, u64) = self.0.script(&USAGE, &[]).map_err(err)?;
        Ok(Memory { bytes, entries })
    }

    /// Attaches to the map `name` on the server at `url`.
    pub fn attach(url: &str, name: &str) -> Result<Self, String> {
        RedisMap::attach(url, name, RedisOptions::default())
            .map(Self)
            .map_err(err)
    }
}

impl Target for RedisTarget {
    fn get(&self, key: &[u8], buf: &mut Vec<u8>) -> Result<bool, String> {
        self.0.get_into(key, buf).map_err(err)
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.0.insert(key, value).map(drop).map_err(err)
    }

    fn remove(&self, key: &[u8]) -> Result<bool, String> {
        self.0.remove(key).map_err(err)
    }

    fn insert_all(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String> {
        // 1,000 a round trip: a 10,000-key prefill took 0.5 s one by one.
        pairs
            .chunks(1000)
            .try_for_each(|chunk| self.0.insert_many(chunk).map(drop).map_err(err))
    }
}

/// Keeps the map of a run on the server of `--redis-url` (or the harness's private one).
#[derive(Debug)]
pub struct RedisStore;

fn url(spec: &Spec) -> Result<&str, String> {
    spec.redis_url.as_deref().ok_or_else(|| {
        "the redis backend needs a server: --redis-url, or redis-server on PATH".into()
    })
}

impl Store for RedisStore {
    fn create(
        &self,
        spec: &Spec,
        name: &str,
        resources: &mut Resources,
    ) -> Result<Box<dyn Target>, String> {
        // Unlinked however the run ends (the server may be the user's).
        let url = url(spec)?;
        resources.redis(url, name);
        let map = RedisTarget::create(url, name, map_params(spec))?;
        Ok(Box::new(map))
    }

    fn attach(&self, spec: &Spec, name: &str) -> Result<Box<dyn Target>, String> {
        Ok(Box::new(RedisTarget::attach(url(spec)?, name)?))
    }

    fn memory(&self, spec: &Spec, name: &str) -> Option<Result<Memory, String>> {
        Some(url(spec).and_then(|url| RedisTarget::attach(url, name)?.memory()))
    }
}
