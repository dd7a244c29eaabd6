//! Herald's Kafka producer: every record's delivery report resolves a
//! future, as with rdkafka's `FutureProducer`, but the reports are served by
//! a thread of ours that waits in long slices.
//!
//! Why not `FutureProducer`: its polling thread waits in 100 ms slices and
//! converts the time left to whole milliseconds, so the last fraction of a
//! millisecond of every slice becomes a zero timeout and the thread spins
//! until the slice ends. Measured on an idle `herald dev` (five producers),
//! that spinning was about 4 % of a core, more than half of the node's idle
//! CPU. Here the slice is a second: a delivery report still wakes the thread
//! at once (it blocks on librdkafka's queue), and the spin shrinks tenfold.
//!
//! The thread holds the librdkafka handle; when the last clone of a
//! [`Producer`] is dropped it stops within one slice and the handle is
//! released there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Message as _, OwnedMessage, Timestamp, ToBytes};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, FutureRecord, Producer as _, ProducerContext,
};
use rdkafka::ClientContext;
use tokio::sync::oneshot;

pub use rdkafka::producer::future_producer::{Delivery, OwnedDeliveryResult};

/// How long one wait of the report thread lasts. Reports wake it at once;
/// the slice only bounds how long the thread outlives its last [`Producer`].
/// rdkafka ends each wait with a sub-millisecond busy loop (it rounds the
/// remaining time down to whole milliseconds), so a short slice costs CPU on
/// an idle node.
const POLL_SLICE: Duration = Duration::from_secs(5);
/// Back-off while librdkafka's local queue is full (`send`).
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);

/// Resolves to the delivery report of one record; `Err` only if the
/// producer went away before the report (the record's fate is unknown).
pub type DeliveryFuture = oneshot::Receiver<OwnedDeliveryResult>;

/// Sends each delivery report to the record's future.
struct Reports;

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<oneshot::Sender<OwnedDeliveryResult>>;

    fn delivery(&self, result: &DeliveryResult<'_>, tx: Self::DeliveryOpaque) {
        let owned = match result {
            Ok(m) => Ok(Delivery {
                partition: m.partition(),
                offset: m.offset(),
                timestamp: m.timestamp(),
            }),
            Err((e, m)) => Err((e.clone(), m.detach())),
        };
        // The caller may have stopped waiting; nothing to do then.
        let _ = tx.send(owned);
    }
}

/// Stops the report thread when the last [`Producer`] clone goes.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// A Kafka producer whose sends return futures of their delivery reports.
/// Cheap to clone; all clones share one librdkafka handle.
#[derive(Clone)]
pub struct Producer {
    base: Arc<BaseProducer<Reports>>,
    _stop: Arc<StopOnDrop>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

impl Producer {
    /// Creates the producer described by `config` and starts its report
    /// thread (`kafka-reports`).
    pub fn new(config: &ClientConfig) -> KafkaResult<Self> {
        let base = Arc::new(BaseProducer::from_config_and_context(config, Reports)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_base, thread_stop) = (base.clone(), stop.clone());
        std::thread::Builder::new()
            .name("kafka-reports".into())
            .spawn(move || {
                while !thread_stop.load(Ordering::Acquire) {
                    thread_base.poll(POLL_SLICE);
                }
                // Serve what already arrived; records still in flight get
                // no report (their futures resolve to `Err`).
                thread_base.poll(Duration::ZERO);
            })
            .map_err(|e| {
                KafkaError::ClientCreation(format!("cannot start the report thread: {e}"))
            })?;
        Ok(Self {
            base,
            _stop: Arc::new(StopOnDrop(stop)),
        })
    }

    /// Enqueues `record`; the future resolves to its delivery report. A
    /// record librdkafka refuses at once (queue full, too large, ...) comes
    /// back with the error. Wakes this process's consumers that are paused
    /// for idleness ([`crate::idle::nudge`]).
    #[allow(clippy::result_large_err)]
    pub fn send_result<'a, K, P>(
        &self,
        record: FutureRecord<'a, K, P>,
    ) -> Result<DeliveryFuture, (KafkaError, FutureRecord<'a, K, P>)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let (tx, rx) = oneshot::channel();
        let base = BaseRecord {
            topic: record.topic,
            partition: record.partition,
            payload: record.payload,
            key: record.key,
            timestamp: record.timestamp,
            headers: record.headers,
            delivery_opaque: Box::new(tx),
        };
        match self.base.send(base) {
            Ok(()) => {
                // This process's paused consumers may be waiting for it.
                crate::idle::nudge();
                Ok(rx)
            }
            Err((e, b)) => Err((
                e,
                FutureRecord {
                    topic: b.topic,
                    partition: b.partition,
                    payload: b.payload,
                    key: b.key,
                    timestamp: b.timestamp,
                    headers: b.headers,
                },
            )),
        }
    }

    /// Sends `record` and waits for its delivery report, retrying while the
    /// local queue is full for up to `queue_timeout`.
    #[allow(clippy::result_large_err)]
    pub async fn send<K, P>(
        &self,
        mut record: FutureRecord<'_, K, P>,
        queue_timeout: Duration,
    ) -> OwnedDeliveryResult
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let started = Instant::now();
        loop {
            match self.send_result(record) {
                Ok(report) => {
                    return report
                        .await
                        .unwrap_or_else(|_| Err((KafkaError::Canceled, lost())));
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if started.elapsed() < queue_timeout =>
                {
                    record = r;
                    tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                }
                Err((e, r)) => return Err((e, unsent(&r))),
            }
        }
    }

    /// How many partitions `topic` has (blocking: a metadata request of up
    /// to `timeout`).
    pub fn partition_count(&self, topic: &str, timeout: Duration) -> KafkaResult<usize> {
        let md = self.base.client().fetch_metadata(Some(topic), timeout)?;
        match md.topics().first() {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                Ok(t.partitions().len())
            }
            _ => Err(KafkaError::MetadataFetch(
                rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
            )),
        }
    }

    /// Records handed to librdkafka and not yet reported.
    pub fn in_flight_count(&self) -> i32 {
        self.base.in_flight_count()
    }
}

/// The stand-in message of a report that never came (the producer went away).
fn lost() -> OwnedMessage {
    OwnedMessage::new(
        None,
        None,
        String::new(),
        Timestamp::NotAvailable,
        -1,
        -1,
        None,
    )
}

/// An owned copy of a record that was never written (for the error side of
/// [`OwnedDeliveryResult`]).
fn unsent<K, P>(r: &FutureRecord<'_, K, P>) -> OwnedMessage
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    OwnedMessage::new(
        r.payload.map(|p| p.to_bytes().to_vec()),
        r.key.map(|k| k.to_bytes().to_vec()),
        r.topic.to_owned(),
        r.timestamp
            .map_or(Timestamp::NotAvailable, Timestamp::CreateTime),
        r.partition.unwrap_or(-1),
        -1,
        r.headers.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DevBroker;
    use herald_core::config::KafkaConfig;

    fn setup() -> (DevBroker, KafkaConfig, Producer) {
        let mut cfg = KafkaConfig::default();
        let broker = DevBroker::start(&cfg).expect("mock broker");
        cfg.brokers = broker.bootstrap_servers().to_owned();
        let producer = Producer::new(&crate::producer_config(&cfg, "producer-test")).unwrap();
        (broker, cfg, producer)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_send_resolves_to_its_own_delivery_report_in_order() {
        let (_broker, cfg, producer) = setup();
        let mut reports = Vec::new();
        for i in 0..50u32 {
            let payload = i.to_string();
            let record = FutureRecord::to(&cfg.events_topic)
                .partition(1)
                .key("k")
                .payload(&payload);
            reports.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        }
        let mut offsets = Vec::new();
        for r in reports {
            let d = r.await.expect("a report").expect("delivered");
            assert_eq!(d.partition, 1);
            offsets.push(d.offset);
        }
        assert_eq!(
            offsets,
            (0..50).collect::<Vec<i64>>(),
            "one partition, in order"
        );
        let d = producer
            .send(
                FutureRecord::to(&cfg.events_topic)
                    .partition(1)
                    .key("k")
                    .payload("x"),
                Duration::from_secs(5),
            )
            .await
            .expect("delivered");
        assert_eq!(d.offset, 50);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_record_comes_back_with_its_error() {
        let (_broker, cfg, producer) = setup();
        let record = FutureRecord::to(&cfg.events_topic)
            .partition(9_999)
            .key("k")
            .payload("x");
        // An unknown partition fails either at once or in the report; both
        // name the partition error, and the record is never "delivered".
        let err = match producer.send_result(record) {
            Err((e, back)) => {
                assert_eq!(back.partition, Some(9_999), "the record comes back");
                e
            }
            Ok(report) => {
                report
                    .await
                    .expect("a report")
                    .expect_err("not delivered")
                    .0
            }
        };
        assert!(err.to_string().contains("partition"), "{err}");
    }

    #[test]
    fn the_report_thread_stops_when_the_last_clone_goes() {
        let (_broker, _cfg, producer) = setup();
        let stop = producer._stop.0.clone();
        let clone = producer.clone();
        drop(producer);
        assert!(!stop.load(Ordering::Acquire), "a clone is still alive");
        drop(clone);
        assert!(stop.load(Ordering::Acquire));
    }
}
