//! A hash map shared by processes — in POSIX shared memory, a file, or on a Redis server — with
//! typed keys and values that Python's `shared_hashmap` reads and writes too.
//!
//! A Rust service and Python workers can share one map: the keys and values are encoded as
//! Python's `SharedHashMap` encodes them ([`codec`]), so a `String` written here is a `str`
//! there, `1_i64`, `1.0_f64` and `true` are one key as in a Python dict, and a
//! [`Json<T>`](Json) of any `serde` type is a list or dict that Python reads with
//! `json.loads`.
//!
//! ```
//! use shmap_typed::{Json, Options, Place, SharedHashMap};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! struct Job {
//!     id: u32,
//!     args: Vec<String>,
//! }
//!
//! # let name = format!("doc-lib-{}", std::process::id());
//! let place = Place::shm(&name); // or Place::file(path), Place::redis(url, name)
//! let jobs = SharedHashMap::<(String, u32), Json<Job>>::open(&place, &Options::new().exist_ok(true))?;
//! let job = Job { id: 7, args: vec!["--fast".into()] };
//! jobs.insert(&("queue", 7), &Json(&job))?;
//!
//! // In Python: SharedHashMap(name, create=False)[("queue", 7)] == {"id": 7, "args": ["--fast"]}
//! let Json(back) = jobs.get(&("queue", 7))?.unwrap();
//! assert_eq!(back.args, ["--fast"]);
//! jobs.unlink()?;
//! # Ok::<(), shmap_typed::Error>(())
//! ```
//!
//! The bytes API underneath is [`shmap::MapOps`], implemented by `shmap-backends`'s
//! lock-free map and Redis map.

pub mod codec;
mod encodes_as;
mod error;
mod map;
pub mod number;
mod open;
mod sink;
pub mod types;
pub mod unpickle;

pub use error::{Error, Result};
pub use map::SharedHashMap;
pub use open::{open_or_create, Options, Place, TAG};
#[cfg(feature = "redis")]
pub use open::{open_or_create_redis, redis_params};
#[cfg(feature = "redis")]
pub use shmap_backends::RedisOptions;
pub use types::{Decode, Encode, EncodesAs, Json, Number};
