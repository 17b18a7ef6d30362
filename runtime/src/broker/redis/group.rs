//! A consumer group's positions on a topic's streams, read and moved from outside the group
//! (for `plexus positions`).
//!
//! A group's position on a stream is the id it has read up to (`last-delivered-id`) and
//! its pending list. Moving it recreates the group at the new id (`XGROUP DESTROY` then
//! `CREATE`), so nothing stays pending from before the reset: what was pending is read
//! again from its new position, if it lies after it. Refused while a consumer of the group
//! was active within `claim_idle` (a running process would go on from where it was).

use super::entry::{self, pack_id, unpack_id};
use super::{IO_TIMEOUT, Redis, connection, unavailable};
use crate::broker::{BrokerError, GroupPosition, ResetTo};
use redis::Value;

/// A stream's group as `XINFO GROUPS` describes it.
struct GroupInfo {
    last_delivered: String,
    entries_read: Option<u64>,
    pending: u64,
    lag: Option<u64>,
    consumers: u64,
}

/// `(name, value)` fields of one `XINFO` item, with lookups by name.
struct Fields<'a>(Vec<(String, &'a Value)>);

impl Fields<'_> {
    fn integer(&self, name: &str) -> Option<u64> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| entry::integer(v))
            .map(|n| n.max(0) as u64)
    }

    fn text(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| entry::text(v))
    }
}

impl Redis {
    /// The group of `subscriber` on `stream`, if it exists.
    fn group_info(
        con: &mut redis::Connection,
        stream: &str,
        group: &str,
    ) -> Result<Option<GroupInfo>, BrokerError> {
        let reply: Value = match redis::cmd("XINFO").arg("GROUPS").arg(stream).query(con) {
            Ok(reply) => reply,
            Err(error)
                if error.code() == Some("ERR") && error.to_string().contains("no such key") =>
            {
                return Ok(None);
            }
            Err(error) => return Err(unavailable(error)),
        };
        Ok(entry::items(&reply)
            .iter()
            .map(|g| Fields(entry::fields_of(g)))
            .find(|f| f.text("name").as_deref() == Some(group))
            .map(|f| GroupInfo {
                last_delivered: f.text("last-delivered-id").unwrap_or_else(|| "0-0".into()),
                entries_read: f.integer("entries-read"),
                pending: f.integer("pending").unwrap_or(0),
                lag: f.integer("lag"),
                consumers: f.integer("consumers").unwrap_or(0),
            }))
    }

    /// Entries ever added to `stream`, and entries kept in it now.
    fn stream_counts(con: &mut redis::Connection, stream: &str) -> Result<(u64, u64), BrokerError> {
        let reply: Value = match redis::cmd("XINFO").arg("STREAM").arg(stream).query(con) {
            Ok(reply) => reply,
            Err(error) if error.to_string().contains("no such key") => return Ok((0, 0)),
            Err(error) => return Err(unavailable(error)),
        };
        let fields = Fields(entry::fields_of(&reply));
        Ok((
            fields.integer("entries-added").unwrap_or(0),
            fields.integer("length").unwrap_or(0),
        ))
    }

    /// Where `subscriber`'s group stands on each stream of `topic`.
    pub(super) fn positions_of(
        &self,
        topic: &str,
        subscriber: &str,
    ) -> Result<Vec<GroupPosition>, BrokerError> {
        let group = format!("{}.{subscriber}", self.settings.group);
        let mut con = connection(&self.client, IO_TIMEOUT)?;
        let mut out = Vec::new();
        for (partition, stream) in self.topology.streams(topic).iter().enumerate() {
            let (added, kept) = Self::stream_counts(&mut con, stream)?;
            let position = match Self::group_info(&mut con, stream, &group)? {
                None => GroupPosition {
                    partition: partition as u32,
                    committed: None,
                    end: added,
                    lag: kept,
                    detail: format!("{stream}: no group yet (reads from the first entry kept)"),
                },
                Some(info) => {
                    let read = info.entries_read.unwrap_or(added);
                    GroupPosition {
                        partition: partition as u32,
                        committed: Some(read.saturating_sub(info.pending)),
                        end: added,
                        lag: info.lag.unwrap_or(0) + info.pending,
                        detail: format!(
                            "{stream}: read up to {}, {} pending, {} consumers",
                            info.last_delivered, info.pending, info.consumers
                        ),
                    }
                }
            };
            out.push(position);
        }
        Ok(out)
    }

    /// Consumers of `group` on `stream` active within `claim_idle`: `name (idle N ms)`.
    fn live_consumers(
        &self,
        con: &mut redis::Connection,
        stream: &str,
        group: &str,
    ) -> Result<Vec<String>, BrokerError> {
        let reply: Value = match redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(stream)
            .arg(group)
            .query(con)
        {
            Ok(reply) => reply,
            Err(error)
                if error.code() == Some("NOGROUP") || error.to_string().contains("no such key") =>
            {
                return Ok(Vec::new());
            }
            Err(error) => return Err(unavailable(error)),
        };
        let within = self.settings.claim_idle.as_millis() as u64;
        Ok(entry::items(&reply)
            .iter()
            .map(|c| Fields(entry::fields_of(c)))
            .filter_map(|f| {
                let idle = f.integer("idle")?;
                (idle < within)
                    .then(|| format!("{} (idle {idle} ms)", f.text("name").unwrap_or_default()))
            })
            .collect())
    }

    /// Recreates `subscriber`'s group on every stream of `topic` at `to`.
    pub(super) fn reset_of(
        &self,
        topic: &str,
        subscriber: &str,
        to: ResetTo,
    ) -> Result<Vec<GroupPosition>, BrokerError> {
        let group = format!("{}.{subscriber}", self.settings.group);
        let mut con = connection(&self.client, IO_TIMEOUT)?;
        let streams = self.topology.streams(topic);
        let mut live = Vec::new();
        for stream in &streams {
            live.extend(self.live_consumers(&mut con, stream, &group)?);
        }
        if !live.is_empty() {
            return Err(BrokerError::Refused(format!(
                "consumer group `{group}` has {} consumer(s) active within claim_idle ({}): stop the processes running it first (they would go on from where they were)",
                live.len(),
                live.join(", ")
            )));
        }
        for stream in &streams {
            let (added, _) = Self::stream_counts(&mut con, stream)?;
            let (id, entries_read) = match to {
                ResetTo::Beginning => ("0".to_owned(), Some(0)),
                ResetTo::End => ("$".to_owned(), Some(added)),
                ResetTo::Offset(offset) => (read_up_to(offset), None),
                ResetTo::Time(millis) => (
                    read_up_to(pack_id(&format!("{}-0", millis.max(0))).unwrap_or(0)),
                    None,
                ),
            };
            let mut destroy = redis::cmd("XGROUP");
            destroy.arg("DESTROY").arg(stream).arg(&group);
            let mut create = redis::cmd("XGROUP");
            create
                .arg("CREATE")
                .arg(stream)
                .arg(&group)
                .arg(&id)
                .arg("MKSTREAM");
            if let Some(read) = entries_read {
                create.arg("ENTRIESREAD").arg(read);
            }
            // In one MULTI: a reset cut off half-way must not leave the stream without its
            // group, which the route would then create again from the first entry.
            redis::pipe()
                .atomic()
                .add_command(destroy)
                .add_command(create)
                .query::<Value>(&mut con)
                .map_err(unavailable)?;
            tracing::info!(%stream, %group, %id, "positions reset");
        }
        self.positions_of(topic, subscriber)
    }
}

/// The group's last-delivered id that makes the entry at `offset` the next one read.
fn read_up_to(offset: u64) -> String {
    match offset {
        0 => "0".to_owned(),
        offset => unpack_id(offset - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_to_an_offset_reads_that_entry_next() {
        assert_eq!(read_up_to(0), "0");
        let id = pack_id("1700000000000-0").unwrap();
        let before = read_up_to(id);
        assert!(pack_id(&before).unwrap() < id);
        assert_eq!(before, "1699999999999-1048575");
        assert_eq!(read_up_to(pack_id("5-3").unwrap()), "5-2");
    }
}
