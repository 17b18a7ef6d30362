//! Who reads which shard of a sharded topic: each shard (stream) of a route is read by one
//! consumer at a time, so one key's entries are handled in order even with several
//! processes. Redis has no partition assignment; this is a small one on top of it.
//!
//! Every consumer of a route registers in a sorted set of members (score: when its
//! registration expires, by the server's clock, so hosts' clocks need not agree), and owns
//! shards through leases: `SET LEASE ME NX PX claim_idle`, renewed while it lives. Each tick
//! (every `claim_idle / 3`) a consumer renews what it has, stops reading shards beyond its
//! fair share (`ceil(shards / live members)`) and gives each back once it holds nothing
//! unacknowledged from it, and takes free shards up to its share. Its first tick only
//! registers, and the second comes soon after, so consumers started together share the
//! shards from the start. A consumer that dies loses its leases when they expire; the next
//! owner of a shard first takes over everything pending on it (`XAUTOCLAIM` from the start,
//! idle or not), and only then reads new entries, so per-key order holds across the handover
//! too.

use super::link::Link;
use crate::broker::BrokerError;
use redis::Value;
use std::time::Duration;

/// Registers ARGV[1] as a member until ARGV[2] ms from now (the server's clock), forgets
/// members whose registration ran out, and counts those left.
const REGISTER: &str = "local t = redis.call('TIME') \
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) \
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) \
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) \
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 4) \
return redis.call('ZCARD', KEYS[1])";

/// Renews a lease only if this consumer still holds it.
const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";

/// Deletes a lease only if this consumer still holds it.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// The shards one consumer owns, and how it keeps them.
pub struct Ownership {
    me: String,
    lease: Duration,
    members: String,
    leases: Vec<String>,
    owned: Vec<bool>,
    /// Owned shards being given back: no longer read, released once nothing from them is
    /// held.
    releasing: Vec<bool>,
    /// Whether the first tick (registering only) has run.
    registered: bool,
}

/// What a tick changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Shards now owned that were not: what is pending on them is to be taken over first.
    pub gained: Vec<usize>,
    /// Shards no longer owned (given back, or a lease that ran out).
    pub lost: Vec<usize>,
}

impl Ownership {
    /// The ownership of consumer `me` in `group` (one route's) over `streams`, with leases
    /// of `lease`.
    pub fn new(group: &str, streams: &[String], me: &str, lease: Duration) -> Ownership {
        Ownership {
            me: me.to_owned(),
            lease,
            members: format!("plexus:members:{group}"),
            leases: streams
                .iter()
                .map(|s| format!("plexus:lease:{group}:{s}"))
                .collect(),
            owned: vec![false; streams.len()],
            releasing: vec![false; streams.len()],
            registered: false,
        }
    }

    /// Whether this consumer reads `shard` now (owns it, and is not giving it back).
    pub fn owns(&self, shard: usize) -> bool {
        self.owned[shard] && !self.releasing[shard]
    }

    /// Renews, gives back and takes shards (see the module docs); `idle(shard)` says
    /// whether this consumer holds nothing unacknowledged from `shard`.
    pub fn tick(
        &mut self,
        link: &mut Link,
        idle: &dyn Fn(usize) -> bool,
    ) -> Result<Changes, BrokerError> {
        let lease_ms = self.lease.as_millis().max(1) as u64;
        let live: usize = link.eval(
            REGISTER,
            &[&self.members],
            &[&self.me, &lease_ms.to_string()],
        )?;
        if !self.registered {
            // The first tick only says this consumer is here: consumers started together
            // then see each other before any takes a shard, and share them from the start.
            self.registered = true;
            return Ok(Changes::default());
        }
        let shards = self.owned.len();
        let share = shards.div_ceil(live.max(1));
        let mut changes = Changes::default();
        for shard in 0..shards {
            if !self.owned[shard] {
                continue;
            }
            let renewed: i64 = link.eval(
                RENEW,
                &[&self.leases[shard]],
                &[&self.me, &lease_ms.to_string()],
            )?;
            if renewed == 0 {
                tracing::warn!(lease = %self.leases[shard], "a shard's lease ran out before it was renewed: another consumer may read it now");
                self.owned[shard] = false;
                self.releasing[shard] = false;
                changes.lost.push(shard);
            }
        }
        // Over the share: stop reading the last ones, and give each back once nothing read
        // from it is held.
        let mut reading: Vec<usize> = (0..shards).filter(|&s| self.owns(s)).collect();
        while reading.len() > share {
            let shard = reading.pop().expect("more than the share");
            self.releasing[shard] = true;
        }
        for shard in 0..shards {
            if self.owned[shard] && self.releasing[shard] && idle(shard) {
                let _: i64 = link.eval(RELEASE, &[&self.leases[shard]], &[&self.me])?;
                self.owned[shard] = false;
                self.releasing[shard] = false;
                changes.lost.push(shard);
            }
        }
        // Under it: take free shards, starting at one that depends on the consumer, so
        // consumers starting together do not all try the same ones first.
        let start = crate::event::key_hash(self.me.as_bytes()) as usize % shards.max(1);
        for step in 0..shards {
            if reading.len() >= share {
                break;
            }
            let shard = (start + step) % shards;
            if self.owned[shard] {
                continue;
            }
            let taken: Value = link.query(
                redis::cmd("SET")
                    .arg(&self.leases[shard])
                    .arg(&self.me)
                    .arg("NX")
                    .arg("PX")
                    .arg(lease_ms),
            )?;
            if taken == Value::Okay {
                self.owned[shard] = true;
                reading.push(shard);
                changes.gained.push(shard);
            }
        }
        Ok(changes)
    }

    /// Gives back every shard and leaves the members (at the end of a run, once nothing is
    /// held).
    pub fn release_all(&mut self, link: &mut Link) -> Result<(), BrokerError> {
        for shard in 0..self.owned.len() {
            if self.owned[shard] {
                let _: i64 = link.eval(RELEASE, &[&self.leases[shard]], &[&self.me])?;
                self.owned[shard] = false;
            }
        }
        link.query::<Value>(redis::cmd("ZREM").arg(&self.members).arg(&self.me))?;
        Ok(())
    }
}
