//! The Lua scripts that make each write of the Redis map one atomic step on the server: Redis
//! runs a script to the end before any other command, so a check (the map still exists, it has
//! room) and the write it guards cannot be split by another client, and a client that dies or
//! times out has either sent the whole script or none of it. Reads are single commands.
//!
//! Every script gets `KEYS[1]` = the map's meta hash, `KEYS[2]` = its data hash (one hash tag:
//! one cluster slot). Errors are replies whose first word is the code the client maps:
//! `SHMAP_GONE` (the map was removed: writes must not bring back a data hash without its meta)
//! and `SHMAP_FULL` (the map holds `capacity` entries and the key is new).
//!
//! Every script here but [`SET`] and [`SET_MANY`] is run once per request ([`once`]): the
//! client may send it again after a lost reply (`retry.rs`), and the second run only returns
//! the first one's reply. Those two only store values, which may be stored twice.

use std::sync::LazyLock;

use redis::Script;

/// Checked at the top of every script that may add an entry: `cap` is the map's capacity, and
/// `room(n)` whether `n` more entries fit.
const PRELUDE: &str = r#"
local cap = tonumber(redis.call('HGET', KEYS[1], 'capacity'))
if not cap then return redis.error_reply('SHMAP_GONE the map was removed') end
local function room(n) return redis.call('HLEN', KEYS[2]) + n <= cap end
"#;

/// The wrapper of [`once`]: `KEYS[3]` is the map's hash of request records
/// (`shmap:{NAME}:req`, in the map's slot), the last two `ARGV` are the request id and how
/// long its record lives (ms), the others are the body's. A record is when it expires (15
/// decimal digits of ms, server time), then the reply as MessagePack (`cmsgpack`, in every
/// Redis since 2.6 and in Valkey: it holds binary strings, tables and `false` (nil) alike).
/// An error reply is not kept (the body checks before it writes, so it changed nothing: a
/// retry may run it again; and a write to a removed map leaves nothing behind).
///
/// One hash, not a key per record: a key that does not exist yet would make every script
/// `TRYAGAIN` while a cluster migrates the map's slot (some of its keys there, one not).
/// Fields do not expire by themselves: each new record first drops the expired ones among
/// two fields drawn at random, which keeps the hash within about twice the live records.
const ONCE_HEAD: &str = "local function body(ARGV)\n";
const ONCE_TAIL: &str = r#"
end
local id, ttl = ARGV[#ARGV - 1], tonumber(ARGV[#ARGV])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local function record(reply) return string.format('%015d', now + ttl) .. cmsgpack.pack(reply) end
local done = redis.call('HGET', KEYS[3], id)
if done then
  local ok, reply = pcall(cmsgpack.unpack, string.sub(done, 16))
  if not ok or reply == nil then
    return redis.error_reply('SHMAP_CORRUPT a request record is not ours')
  end
  -- A write, so that a WAIT after this retry also waits for the first run's write.
  redis.call('HSET', KEYS[3], id, record(reply))
  return reply
end
local args = {}
for i = 1, #ARGV - 2 do args[i] = ARGV[i] end
local reply = body(args)
if type(reply) == 'table' and reply.err then return reply end
local old = redis.call('HRANDFIELD', KEYS[3], 2, 'WITHVALUES')
for i = 1, #old, 2 do
  if (tonumber(string.sub(old[i + 1], 1, 15)) or 0) < now then
    redis.call('HDEL', KEYS[3], old[i])
  end
end
redis.call('HSET', KEYS[3], id, record(reply))
return reply
"#;

/// `body` as a script that acts once per request id, however often the client sends it (run
/// with [`super::RedisMap::script_once`]). The body sees its own arguments as `ARGV` and
/// `KEYS[1]`, `KEYS[2]` as every script does.
pub fn once(body: &str) -> Script {
    Script::new(&format!("{ONCE_HEAD}{body}{ONCE_TAIL}"))
}

/// A write script of a caller's own: `body` after the prelude, run once per request (see
/// [`super::RedisMap::script_once`]).
pub fn with_prelude(body: &str) -> Script {
    once(&format!("{PRELUDE}{body}"))
}

/// ARGV: magic, version, capacity, max_key_size, max_value_size. Returns 1 created, 0 exists,
/// -1 a data hash without meta (a key of someone else's under our name).
pub static CREATE: LazyLock<Script> = LazyLock::new(|| {
    once(
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
redis.call('HSET', KEYS[1], 'magic', ARGV[1], 'version', ARGV[2], 'capacity', ARGV[3],
           'max_key_size', ARGV[4], 'max_value_size', ARGV[5])
return 1
"#,
    )
});

/// ARGV: key, value. Returns 1 new, 0 replaced.
const INSERT_BODY: &str = r#"
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  if not room(1) then return redis.error_reply('SHMAP_FULL') end
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  return 1
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 0
"#;

/// [`INSERT_BODY`], once per request: the reply says whether the key was new.
pub static INSERT: LazyLock<Script> = LazyLock::new(|| with_prelude(INSERT_BODY));

/// [`INSERT_BODY`] without a request record, for a caller who drops the reply (Python's
/// `m[k] = v`): storing a value twice stores it once, so it may be sent again as it is.
pub static SET: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{PRELUDE}{INSERT_BODY}")));

/// ARGV: key1, value1, key2, value2, ... (a later pair of one key wins). All or nothing:
/// `SHMAP_FULL` before anything is written if the new keys do not fit. Returns the number of
/// new keys.
pub static INSERT_MANY: LazyLock<Script> = LazyLock::new(|| with_prelude(INSERT_MANY_BODY));

/// [`INSERT_MANY_BODY`] without a request record (as [`SET`]).
pub static SET_MANY: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{PRELUDE}{INSERT_MANY_BODY}")));

const INSERT_MANY_BODY: &str = r#"
local seen, new = {}, 0
for i = 1, #ARGV, 2 do
  local k = ARGV[i]
  if not seen[k] then
    seen[k] = true
    if redis.call('HEXISTS', KEYS[2], k) == 0 then new = new + 1 end
  end
end
if not room(new) then return redis.error_reply('SHMAP_FULL') end
for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
return new
"#;

/// ARGV: key, has_expected ('0'/'1'), expected, has_new, new. Returns {1} when swapped, else
/// {0, present (0/1), current}.
pub static COMPARE_EXCHANGE: LazyLock<Script> = LazyLock::new(|| {
    with_prelude(
        r#"
local cur = redis.call('HGET', KEYS[2], ARGV[1])
local want = false
if ARGV[2] == '1' then want = ARGV[3] end
if cur ~= want then
  if cur then return {0, 1, cur} end
  return {0, 0, ''}
end
if ARGV[4] == '1' then
  if not cur and not room(1) then return redis.error_reply('SHMAP_FULL') end
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
elseif cur then
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return {1}
"#,
    )
});

/// ARGV: key, value. Returns {value now stored, 1 if inserted}.
pub static GET_OR_INSERT: LazyLock<Script> = LazyLock::new(|| {
    with_prelude(
        r#"
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if cur then return {cur, 0} end
if not room(1) then return redis.error_reply('SHMAP_FULL') end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return {ARGV[2], 1}
"#,
    )
});

/// ARGV: key. Returns the value it removed, or nil.
pub static REMOVE_ENTRY: LazyLock<Script> = LazyLock::new(|| {
    once(
        r#"
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if cur then redis.call('HDEL', KEYS[2], ARGV[1]) end
return cur
"#,
    )
});

/// Removes some entry and returns {key, value}, or nil when the map is empty.
pub static POP_ANY: LazyLock<Script> = LazyLock::new(|| {
    once(
        r#"
local pair = redis.call('HRANDFIELD', KEYS[2], 1, 'WITHVALUES')
if #pair == 0 then return false end
redis.call('HDEL', KEYS[2], pair[1])
return pair
"#,
    )
});

/// ARGV: key. Returns 1 removed, 0 absent. (A script rather than `HDEL` for its request id:
/// a retried remove must still say it removed the key.)
pub static REMOVE: LazyLock<Script> =
    LazyLock::new(|| once("return redis.call('HDEL', KEYS[2], ARGV[1])"));
