//! What the workspace's tests, benches and harness share and no user of the map needs: kept
//! out of the published crates so that the library carries no test code.
//!
//! | module           | owns |
//! |------------------|------|
//! | [`checked`]      | self-checking values: a torn or misplaced value fails [`checked::verify`] |
//! | [`acks`]         | a file of words that outlives SIGKILLed writers: what each intended and acknowledged |
//! | [`names`]        | unique segment names, unlinked when the test ends ([`TestName`]), and what a map holds in `/dev/shm` |
//! | [`rng`]          | a seeded random source that replays exactly ([`Rng`]) |
//! | [`redis_server`] | private `redis-server`s (and a three-node cluster) on free loopback ports, plain or TLS |
//! | [`redis_sentinel`] | a primary, its replicas and three Redis Sentinels watching them |
//! | [`tls_certs`]    | a test CA and the server and client certificates it signed (`openssl`) |

pub mod acks;
pub mod checked;
pub mod names;
pub mod redis_sentinel;
pub mod redis_server;
pub mod rng;
pub mod tls_certs;

pub use names::{shm_bytes_held, shm_table_bytes, TestName};
pub use rng::Rng;
