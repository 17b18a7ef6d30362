//! The redis backend: state in a Redis server (standalone, not Redis Cluster), shared by
//! every process of a consumer group (ADR 14).
//!
//! A group commit is one Lua script, which Redis runs atomically: for each event in order,
//! it checks the event's marker and the versions of the keys it read, then applies its
//! writes (`SET` with `PEXPIRE` for a TTL) and records its marker, or stops the group. With
//! AOF and `appendfsync always`, Redis makes the script durable before it answers.
//!
//! Keys (all under the configured prefix `P`):
//! - `P:s:NAMESPACE:KEY`: an entry, a hash of its value (`v`) and version (`n`);
//! - `P:applied:ROUTE:PARTITION`: the route's markers, offset → what the event emitted,
//!   with `P:applied:ROUTE:PARTITION:idx`, the same offsets in a sorted set for pruning;
//! - `P:done:ROUTE:KEY`: an event a deduping route finished, expiring with its window;
//! - `P:meta`: the store's bookkeeping.
//!
//! Reads run on tokio's blocking pool and are awaited, so a plugin's time limit still holds
//! while a read waits on a server that does not answer. Every socket has a timeout; a
//! connection that failed is dropped and the next call opens a new one. The namespace
//! quota is not enforced here (the server's `maxmemory` bounds what it holds); the limits on
//! one key and one value are.

use super::{Committed, EventCommit, Quota, StateBackend, StateError, Stop, Stored, Usage, Write};
use redis::{Connection, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long connecting, and each command, may take before the store counts as unreachable.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Commits a group: see the module's documentation. ARGV: prefix, namespace, event count,
/// then per event: has marker (1/0), route, partition, offset, what it emitted, finished
/// (1/0), its key, its TTL in ms, read count, (key, version) per read, write count, (key,
/// P|D, value, TTL in ms or 0, version) per write.
/// Returns `{applied}`, or `{applied, "applied", emitted}` / `{applied, "conflict", key}` /
/// `{applied, "duplicate", ""}`.
const COMMIT: &str = r#"
local prefix, ns = ARGV[1], ARGV[2]
local events = tonumber(ARGV[3])
local i = 4
local applied = 0
local function entry(key) return prefix .. ':s:' .. ns .. ':' .. key end
for e = 1, events do
  local marked = ARGV[i] == '1'
  local markers = prefix .. ':applied:' .. ARGV[i + 1] .. ':' .. ARGV[i + 2]
  local offset, emitted = ARGV[i + 3], ARGV[i + 4]
  local done, done_key, done_ttl = ARGV[i + 5] == '1', ARGV[i + 6], ARGV[i + 7]
  i = i + 8
  if marked then
    local before = redis.call('HGET', markers, offset)
    if before then return {applied, 'applied', before} end
  end
  if done and redis.call('EXISTS', done_key) == 1 then return {applied, 'duplicate', ''} end
  local reads = tonumber(ARGV[i]); i = i + 1
  for r = 1, reads do
    local version = redis.call('HGET', entry(ARGV[i]), 'n') or '0'
    if version ~= ARGV[i + 1] then return {applied, 'conflict', ARGV[i]} end
    i = i + 2
  end
  local writes = tonumber(ARGV[i]); i = i + 1
  for w = 1, writes do
    local key, kind, value, ttl, version = entry(ARGV[i]), ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), ARGV[i + 4]
    i = i + 5
    redis.call('DEL', key)
    if kind == 'P' then
      redis.call('HSET', key, 'v', value, 'n', version)
      if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
    end
  end
  if marked then
    redis.call('HSET', markers, offset, emitted)
    redis.call('ZADD', markers .. ':idx', offset, offset)
  end
  if done then redis.call('SET', done_key, '1', 'PX', done_ttl) end
  applied = applied + 1
end
return {applied}
"#;

/// Forgets the markers of one partition below a position. KEYS: the markers, their index;
/// ARGV: the position.
const PRUNE: &str = r#"
local below = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
for _, offset in ipairs(below) do redis.call('HDEL', KEYS[1], offset) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
return #below
"#;

/// State in a Redis server.
pub struct RedisBackend {
    client: redis::Client,
    prefix: String,
    /// Where the server is, with no password in it.
    address: String,
    /// Connections not in use.
    idle: Arc<Mutex<Vec<Connection>>>,
    commit: redis::Script,
    prune: redis::Script,
}

impl RedisBackend {
    /// A backend on the server at `url` (checked at once), keys under `prefix`.
    pub fn open(url: &str, prefix: &str) -> Result<RedisBackend, String> {
        let client = redis::Client::open(url).map_err(|e| format!("state.url: {e}"))?;
        let info = client.get_connection_info();
        let address = format!("redis://{}", info.addr());
        let backend = RedisBackend {
            client,
            prefix: prefix.to_owned(),
            address,
            idle: Arc::default(),
            commit: redis::Script::new(COMMIT),
            prune: redis::Script::new(PRUNE),
        };
        backend
            .with(|con| redis::cmd("PING").query::<String>(con))
            .map_err(|e| format!("{e} (is redis-server running there?)"))?;
        Ok(backend)
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    /// Runs `f` on a connection (opened if none is idle); a failed connection is dropped.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StateError> {
        run(&self.client, &self.idle, &self.address, f)
    }
}

/// [`RedisBackend::with`], for the blocking pool.
fn run<T>(
    client: &redis::Client,
    idle: &Mutex<Vec<Connection>>,
    address: &str,
    f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
) -> Result<T, StateError> {
    let unavailable = |e: redis::RedisError| StateError::Unavailable(format!("{address}: {e}"));
    let pooled = idle.lock().expect("redis pool").pop();
    let mut con = match pooled {
        Some(con) => con,
        None => {
            let con = client
                .get_connection_with_timeout(IO_TIMEOUT)
                .map_err(unavailable)?;
            con.set_read_timeout(Some(IO_TIMEOUT))
                .map_err(unavailable)?;
            con.set_write_timeout(Some(IO_TIMEOUT))
                .map_err(unavailable)?;
            con
        }
    };
    let result = f(&mut con);
    match result {
        Ok(value) => {
            idle.lock().expect("redis pool").push(con);
            Ok(value)
        }
        // A reply the script or command gave is not the connection's fault.
        Err(error)
            if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) =>
        {
            idle.lock().expect("redis pool").push(con);
            Err(StateError::Unavailable(format!("{address}: {error}")))
        }
        Err(error) => Err(unavailable(error)),
    }
}

fn text(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes.clone()),
        Value::SimpleString(text) => Some(text.clone().into_bytes()),
        _ => None,
    }
}

#[async_trait::async_trait]
impl StateBackend for RedisBackend {
    fn describe(&self) -> String {
        format!(
            "redis state at {} (keys under `{}:`)",
            self.address, self.prefix
        )
    }

    fn durable(&self) -> bool {
        true
    }

    async fn read(&self, ns: &str, key: &str) -> Result<Option<Stored>, StateError> {
        let entry = self.key(&["s", ns, key]);
        let (client, idle, address) =
            (self.client.clone(), self.idle.clone(), self.address.clone());
        let read = move || {
            run(&client, &idle, &address, |con| {
                redis::cmd("HMGET")
                    .arg(&entry)
                    .arg("v")
                    .arg("n")
                    .query::<(Option<Vec<u8>>, Option<u64>)>(con)
            })
        };
        // Off the calling thread when there is a runtime to await it on (a guest's call),
        // so the call's deadline can abandon it; inline otherwise (tools).
        let (value, version) = match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::spawn_blocking(read)
                .await
                .map_err(|e| StateError::Unavailable(format!("redis read: {e}")))??,
            Err(_) => read()?,
        };
        Ok(value.map(|value| Stored {
            value,
            version: version.unwrap_or(0),
        }))
    }

    async fn usage(&self, _: &str) -> Result<Usage, StateError> {
        // Not counted on Redis: see the module's documentation.
        Ok(Usage::default())
    }

    fn commit(&self, ns: &str, _: Quota, group: &[EventCommit]) -> Result<Committed, StateError> {
        let mut invocation = self.commit.prepare_invoke();
        invocation.arg(&self.prefix).arg(ns).arg(group.len());
        for event in group {
            match &event.marker {
                Some(m) => invocation
                    .arg(1)
                    .arg(&m.route)
                    .arg(m.partition)
                    .arg(m.offset),
                None => invocation.arg(0).arg("").arg(0).arg(0),
            };
            invocation.arg(event.outbox.as_slice());
            // A record whose window has ended already is neither checked nor kept.
            let ttl = event
                .finished
                .as_ref()
                .map(|done| (done, done.until - crate::event::now_millis()))
                .filter(|(_, ttl)| *ttl > 0);
            match ttl {
                Some((done, ttl)) => invocation
                    .arg(1)
                    .arg(self.key(&["done", &done.route, &done.key]))
                    .arg(ttl),
                None => invocation.arg(0).arg("").arg(0),
            };
            invocation.arg(event.reads.len());
            for (key, version) in &event.reads {
                invocation.arg(key).arg(version);
            }
            invocation.arg(event.writes.len());
            for (key, write) in &event.writes {
                match write {
                    Write::Put {
                        value,
                        ttl,
                        version,
                    } => {
                        let ttl = ttl.map_or(0, |t| t.as_millis().max(1) as u64);
                        invocation
                            .arg(key)
                            .arg("P")
                            .arg(value.as_slice())
                            .arg(ttl)
                            .arg(version)
                    }
                    Write::Delete => invocation.arg(key).arg("D").arg("").arg(0).arg(0),
                };
            }
        }
        let reply: Vec<Value> = self.with(|con| invocation.invoke(con))?;
        let applied = match reply.first() {
            Some(Value::Int(n)) => *n as usize,
            other => {
                return Err(StateError::Unavailable(format!(
                    "unexpected reply to a commit: {other:?}"
                )));
            }
        };
        let stop = match (reply.get(1).and_then(text), reply.get(2).and_then(text)) {
            (None, _) => None,
            (Some(kind), Some(detail)) if kind == b"applied" => Some(Stop::AlreadyApplied(detail)),
            (Some(kind), _) if kind == b"duplicate" => Some(Stop::Duplicate),
            (Some(_), detail) => Some(Stop::Conflict(
                String::from_utf8_lossy(&detail.unwrap_or_default()).into_owned(),
            )),
        };
        Ok(Committed { applied, stop })
    }

    fn applied(&self, route: &str, partition: u32) -> Result<BTreeMap<u64, Vec<u8>>, StateError> {
        let markers = self.key(&["applied", route, &partition.to_string()]);
        let all: Vec<(u64, Vec<u8>)> =
            self.with(|con| redis::cmd("HGETALL").arg(&markers).query(con))?;
        Ok(all.into_iter().collect())
    }

    fn finished(&self, route: &str, keys: &[String]) -> Result<Vec<bool>, StateError> {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("EXISTS").arg(self.key(&["done", route, key]));
        }
        let found: Vec<i64> = self.with(|con| pipe.query(con))?;
        Ok(found.into_iter().map(|n| n == 1).collect())
    }

    fn prune(&self, route: &str, partition: u32, next: u64) -> Result<(), StateError> {
        let markers = self.key(&["applied", route, &partition.to_string()]);
        let index = format!("{markers}:idx");
        self.with(|con| {
            self.prune
                .key(&markers)
                .key(&index)
                .arg(next)
                .invoke::<i64>(con)
        })?;
        Ok(())
    }

    fn forget_route(&self, route: &str) -> Result<(), StateError> {
        let pattern = self.key(&["applied", route, "*"]);
        let keys: Vec<String> = self.with(|con| {
            let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(con)?;
            Ok(keys)
        })?;
        if !keys.is_empty() {
            self.with(|con| redis::cmd("DEL").arg(&keys).query::<i64>(con))?;
        }
        Ok(())
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let meta = self.key(&["meta"]);
        self.with(|con| redis::cmd("HGET").arg(&meta).arg(key).query(con))
    }

    fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), StateError> {
        let meta = self.key(&["meta"]);
        self.with(|con| {
            redis::cmd("HSET")
                .arg(&meta)
                .arg(key)
                .arg(value)
                .query::<i64>(con)
        })?;
        Ok(())
    }
}
