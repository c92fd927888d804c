//! Our map on a Redis server (`RedisMap`): what crossing the machine's edge costs. Every
//! worker process opens its own handle (its own connection) to the same map.

use shmap::MapOps;
use shmap_backends::{RedisMap, RedisOptions};

use super::{map_params, Store, Target};
use crate::cleanup::Resources;
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
}
