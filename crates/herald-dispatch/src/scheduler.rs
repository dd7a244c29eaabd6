//! The scheduler: moves scheduled events out of the scheduled topic when
//! their tier's wait is over (see [`herald_core::delay`]).
//!
//! Every dispatcher node runs one, in the consumer group
//! `<kafka.consumer_group>.scheduler`, so each tier partition has one reader.
//! A reader takes a tier partition's records in order. A record whose
//! `herald-ready-ms` has not come yet stops that partition: it is paused
//! and rewound to that record, and nothing of it stays in memory; a timer
//! resumes it when the record is ready. A ready record is written to the
//! events topic (due: it takes its place in its endpoint's order now) or to
//! a shorter tier, and its offset is stored for the next commit only once
//! Kafka acknowledged that write. A crash between the two writes it again
//! (same event id): at least once, as everywhere else.

use std::collections::HashMap;
use std::time::Duration;

use herald_core::config::KafkaConfig;
use herald_core::delay::{self, Step};
use herald_core::time::now_ms;
use herald_kafka::Producer;
use herald_proto::v1::EventEnvelope;
use herald_telemetry::names;
use prost::Message as _;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::ClientContext;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::settle::SettleWatch;

/// How long a failed move waits before the record is read again.
const RETRY_MOVE: Duration = Duration::from_secs(1);

/// The scheduler consumer's context: watches that its group settles.
struct SchedulerContext {
    settle: SettleWatch,
}

impl ClientContext for SchedulerContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        if let Some(cgrp) = &statistics.cgrp {
            self.settle
                .observe(&cgrp.join_state, std::time::Instant::now());
        }
    }
}

impl ConsumerContext for SchedulerContext {}

/// A tier partition stopped at a record that is not ready yet.
struct Stopped {
    /// The record it was rewound to.
    offset: i64,
    /// When that record is ready, unix ms.
    ready_ms: i64,
    /// The rewind failed: the partition must not resume before a seek to
    /// `offset` succeeds (it would go on after the held record).
    rewound: bool,
}

/// Runs the scheduler until `stop` is cancelled.
pub async fn run_scheduler(
    kafka: KafkaConfig,
    node_id: String,
    stop: CancellationToken,
) -> Result<(), KafkaError> {
    let group = format!("{}.scheduler", kafka.consumer_group);
    let client = format!("herald-scheduler-{node_id}");
    let mut config = herald_kafka::group_member_config(&kafka, &group, &client);
    // Offsets are stored only after a record's move was acknowledged, and
    // committed in the background (and on a rebalance).
    config
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("queued.max.messages.kbytes", "1024")
        // Eager: tansu 0.6.0 rebalances a cooperative-sticky group without
        // end (tests/fleet.rs saw generation 83 in a minute).
        .set("partition.assignment.strategy", "roundrobin");
    if !kafka.client.contains_key("statistics.interval.ms") {
        config.set("statistics.interval.ms", "5000");
    }
    let context = SchedulerContext {
        settle: SettleWatch::new(crate::settle::limit(&kafka)),
    };
    let nudge = crate::settle::Nudge::new(&kafka, &group, "roundrobin", &[&kafka.scheduled_topic]);
    let consumer: StreamConsumer<SchedulerContext> = config.create_with_context(context)?;
    consumer.subscribe(&[kafka.scheduled_topic.as_str()])?;
    let producer = Producer::new(&herald_kafka::producer_config(&kafka, &client))?;
    let topic = kafka.scheduled_topic.clone();
    let mut stopped: HashMap<i32, Stopped> = HashMap::new();
    loop {
        let wake = stopped.values().map(|s| s.ready_ms).min();
        let sleep = wake.map(|w| Duration::from_millis((w - now_ms()).clamp(0, 60_000) as u64));
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = consumer.context().settle.rejoin_requested() => {
                // A pause outlives a reassignment: lift every hold first.
                // The partitions are read again from their last commit.
                let mut tpl = TopicPartitionList::new();
                for p in stopped.keys() {
                    tpl.add_partition(&topic, *p);
                }
                if let Err(e) = consumer.resume(&tpl) {
                    tracing::debug!(error = %e, "scheduler resume before rejoining");
                }
                stopped.clear();
                crate::settle::rejoin(&consumer, &[topic.as_str()], &nudge);
            }
            _ = tokio::time::sleep(sleep.unwrap_or(Duration::from_secs(3600))), if sleep.is_some() => {
                let now = now_ms();
                let ready: Vec<i32> = stopped
                    .iter()
                    .filter(|(_, s)| s.ready_ms <= now)
                    .map(|(p, _)| *p)
                    .collect();
                let mut tpl = TopicPartitionList::new();
                for p in ready {
                    let s = &stopped[&p];
                    if !s.rewound && !rewind(&consumer, &topic, p, s.offset) {
                        let offset = s.offset;
                        stopped.insert(p, Stopped { offset, ready_ms: now + RETRY_MOVE.as_millis() as i64, rewound: false });
                        continue;
                    }
                    stopped.remove(&p);
                    tpl.add_partition(&topic, p);
                }
                // A partition no longer assigned here cannot be resumed; its
                // new owner reads it from the last commit.
                if let Err(e) = consumer.resume(&tpl) {
                    tracing::debug!(error = %e, "scheduler resume");
                }
            }
            msg = consumer.recv() => {
                let msg = match msg {
                    Ok(m) => m.detach(),
                    Err(e) => {
                        // A fatal error repeats on every read: stop.
                        if consumer.client().fatal_error().is_some() {
                            herald_kafka::clients::dispose(consumer);
                            return Err(e);
                        }
                        tracing::warn!(error = %e, "scheduler consumer error");
                        continue;
                    }
                };
                let p = msg.partition();
                match stopped.get(&p) {
                    // Fetched before the pause took effect: read again later.
                    Some(s) if msg.offset() > s.offset => continue,
                    // Read again (resumed, or assigned anew): handled below.
                    Some(_) => {
                        stopped.remove(&p);
                    }
                    None => {}
                }
                let ready_ms = header_i64(&msg, herald_kafka::headers::READY_MS).unwrap_or(0);
                if ready_ms > now_ms() {
                    hold(&consumer, &topic, p, msg.offset(), ready_ms, &mut stopped);
                    continue;
                }
                match move_record(&kafka, &producer, &msg).await {
                    Ok(()) => {
                        if let Err(e) = consumer.store_offset(&topic, p, msg.offset()) {
                            tracing::debug!(error = %e, partition = p, "scheduler offset store");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, partition = p, offset = msg.offset(), "cannot move a scheduled event; trying again");
                        let again = now_ms() + RETRY_MOVE.as_millis() as i64;
                        hold(&consumer, &topic, p, msg.offset(), again, &mut stopped);
                    }
                }
            }
        }
    }
    // Commit what was stored before leaving the group (not when fenced:
    // another member may own the partitions).
    if consumer.client().fatal_error().is_none() {
        if let Err(e) = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
            tracing::debug!(error = %e, "scheduler final commit");
        }
        consumer.unsubscribe();
    }
    herald_kafka::clients::dispose(consumer);
    Ok(())
}

/// Pauses `partition` and rewinds it to `offset`, to be resumed at `ready_ms`.
fn hold(
    consumer: &StreamConsumer<SchedulerContext>,
    topic: &str,
    partition: i32,
    offset: i64,
    ready_ms: i64,
    stopped: &mut HashMap<i32, Stopped>,
) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    if let Err(e) = consumer.pause(&tpl) {
        tracing::debug!(error = %e, partition, "scheduler pause");
    }
    let rewound = rewind(consumer, topic, partition, offset);
    stopped.insert(
        partition,
        Stopped {
            offset,
            ready_ms,
            rewound,
        },
    );
}

/// Seeks `partition` back to `offset`; false (and logged) if that failed.
fn rewind(
    consumer: &StreamConsumer<SchedulerContext>,
    topic: &str,
    partition: i32,
    offset: i64,
) -> bool {
    match consumer.seek(
        topic,
        partition,
        Offset::Offset(offset),
        Duration::from_secs(1),
    ) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, partition, offset, "cannot rewind a scheduled-topic partition; it stays paused until a rewind succeeds");
            false
        }
    }
}

/// Writes a ready record to the events topic (due) or to a shorter tier,
/// and waits for Kafka's acknowledgement. An undecodable record is skipped.
async fn move_record(
    kafka: &KafkaConfig,
    producer: &Producer,
    msg: &rdkafka::message::OwnedMessage,
) -> Result<(), KafkaError> {
    let Some(envelope) = msg.payload().and_then(|v| EventEnvelope::decode(v).ok()) else {
        metrics::counter!(names::RECORDS_UNDECODABLE, "topic" => "scheduled").increment(1);
        tracing::warn!(
            partition = msg.partition(),
            offset = msg.offset(),
            "undecodable scheduled record skipped"
        );
        return Ok(());
    };
    let value = msg.payload().unwrap_or_default();
    let key = envelope.endpoint_id.as_bytes();
    let headers = OwnedHeaders::new_with_capacity(2).insert(Header {
        key: herald_kafka::headers::EVENT_ID,
        value: Some(envelope.event_id.as_bytes()),
    });
    let (result, to) = match delay::step(now_ms(), envelope.deliver_at_ms) {
        Step::Deliver => {
            let record = FutureRecord::to(&kafka.events_topic)
                .key(key)
                .payload(value)
                .headers(headers);
            (
                producer.send(record, Duration::from_secs(30)).await,
                "events",
            )
        }
        Step::Wait { tier, ready_ms } => {
            let ready = ready_ms.to_string();
            let headers = headers.insert(Header {
                key: herald_kafka::headers::READY_MS,
                value: Some(ready.as_bytes()),
            });
            let record = FutureRecord::to(&kafka.scheduled_topic)
                .partition(tier)
                .key(key)
                .payload(value)
                .headers(headers);
            (producer.send(record, Duration::from_secs(30)).await, "tier")
        }
    };
    result.map_err(|(e, _)| e)?;
    metrics::counter!(names::SCHEDULED_MOVES, "to" => to).increment(1);
    Ok(())
}

/// A header's value as an integer.
fn header_i64(msg: &rdkafka::message::OwnedMessage, name: &str) -> Option<i64> {
    let headers = msg.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
}
