//! Which `[broker.properties]` reach which client. The table applies to every client
//! Plexus makes, but librdkafka warns about a producer property given to a consumer (and the
//! other way round) once per client: with `compression.codec` set, every route would log a
//! warning. So each client gets the properties of its role and the common ones.

/// librdkafka properties that only a producer reads.
const PRODUCER_ONLY: &[&str] = &[
    "acks",
    "batch.num.messages",
    "batch.size",
    "compression.codec",
    "compression.level",
    "compression.type",
    "delivery.report.only.error",
    "delivery.timeout.ms",
    "enable.gapless.guarantee",
    "enable.idempotence",
    "linger.ms",
    "message.send.max.retries",
    "message.timeout.ms",
    "partitioner",
    "queue.buffering.backpressure.threshold",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.messages",
    "queue.buffering.max.ms",
    "request.required.acks",
    "request.timeout.ms",
    "retries",
    "sticky.partitioning.linger.ms",
    "transaction.timeout.ms",
    "transactional.id",
];

/// librdkafka properties that only a consumer reads.
const CONSUMER_ONLY: &[&str] = &[
    "allow.auto.create.topics",
    "auto.commit.interval.ms",
    "auto.offset.reset",
    "check.crcs",
    "coordinator.query.interval.ms",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "fetch.error.backoff.ms",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "fetch.min.bytes",
    "fetch.queue.backoff.ms",
    "fetch.wait.max.ms",
    "group.instance.id",
    "group.protocol",
    "group.remote.assignor",
    "heartbeat.interval.ms",
    "isolation.level",
    "max.partition.fetch.bytes",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "session.timeout.ms",
];

/// What a client does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Publishes (also the admin and connection-check clients).
    Producer,
    /// Reads a topic in a consumer group.
    Consumer,
}

impl Role {
    /// Whether property `key` is for a client of this role.
    pub fn reads(self, key: &str) -> bool {
        let other = match self {
            Role::Producer => CONSUMER_ONLY,
            Role::Consumer => PRODUCER_ONLY,
        };
        !other.contains(&key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_skips_the_other_roles_properties_and_keeps_the_common_ones() {
        assert!(Role::Producer.reads("compression.codec"));
        assert!(!Role::Consumer.reads("compression.codec"));
        assert!(Role::Consumer.reads("session.timeout.ms"));
        assert!(!Role::Producer.reads("session.timeout.ms"));
        for common in ["security.protocol", "sasl.mechanism", "client.id", "debug"] {
            assert!(Role::Producer.reads(common) && Role::Consumer.reads(common));
        }
    }
}
