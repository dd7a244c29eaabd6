//! The idempotency topic's writer: every ledger record that is ready while
//! earlier ones are being sent goes out together as one Kafka record (a
//! group commit), so a `PublishBatch` of N keys adds two records to the
//! topic (its claims, then its answers), not 2 × N. Each caller gets the
//! offset of the record that carried its entry.
//!
//! Fewer, larger records keep the topic short: every ingest node reads it
//! whole at start, and a broker's per-record cost (tansu 0.6.0 looks up
//! each record's headers without an index) makes that read, not the bytes,
//! the slow part. Entries for one key are written by one caller at a time
//! (a claim is folded before its answer is written), so batching never
//! reorders them.

use std::sync::Arc;
use std::time::Duration;

use herald_kafka::Producer;
use herald_proto::v1::IdempotencyRecord;
use prost::Message as _;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureRecord;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::ledger::Key;
use super::records;

/// Kafka records of batched entries in flight at once; entries that become
/// ready meanwhile wait and go out together in the next record.
const MAX_IN_FLIGHT: usize = 4;
/// Entries in one Kafka record at most.
const MAX_ENTRIES: usize = 2_000;
/// Encoded bytes of one Kafka record's entries at most (well below the
/// broker's default 1 MiB record limit).
const MAX_BYTES: usize = 512 * 1024;

/// One entry waiting to be written, and who waits for its offset.
struct Job {
    key: Key,
    record: IdempotencyRecord,
    done: oneshot::Sender<Result<i64, KafkaError>>,
}

/// Batches this node's idempotency records. Cheap to clone; the sending
/// task ends when the last clone is dropped.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Writer {
    /// Starts the sending task on the current tokio runtime.
    pub fn start(producer: Producer, topic: String) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, producer, Arc::from(topic)));
        Self { jobs }
    }

    /// Writes one record for `key`; returns the offset of the Kafka record
    /// that carries it once Kafka acknowledged it.
    pub async fn write(&self, key: Key, record: IdempotencyRecord) -> Result<i64, KafkaError> {
        let (done, offset) = oneshot::channel();
        self.jobs
            .send(Job { key, record, done })
            .map_err(|_| KafkaError::Canceled)?;
        offset.await.unwrap_or(Err(KafkaError::Canceled))
    }
}

async fn run(mut rx: mpsc::UnboundedReceiver<Job>, producer: Producer, topic: Arc<str>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        // While every slot is taken, more entries queue up behind `first`.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = first.record.encoded_len();
        let mut batch = vec![first];
        while batch.len() < MAX_ENTRIES && bytes < MAX_BYTES {
            match rx.try_recv() {
                Ok(job) => {
                    bytes += job.record.encoded_len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        let (producer, topic) = (producer.clone(), topic.clone());
        tokio::spawn(async move {
            let mut waiters = Vec::with_capacity(batch.len());
            let entries = batch
                .into_iter()
                .map(|job| {
                    waiters.push(job.done);
                    (job.key, job.record)
                })
                .collect();
            let result = send(&producer, &topic, entries).await;
            drop(slot);
            for waiter in waiters {
                let _ = waiter.send(result.clone());
            }
        });
    }
}

/// Sends one Kafka record carrying `entries`.
async fn send(
    producer: &Producer,
    topic: &str,
    entries: Vec<(Key, IdempotencyRecord)>,
) -> Result<i64, KafkaError> {
    let (key, value) = records::encode(entries);
    let mut rec = FutureRecord::<[u8], _>::to(topic)
        .partition(0)
        .payload(&value);
    if let Some(key) = &key {
        rec = rec.key(&key[..]);
    }
    match producer.send(rec, Duration::from_secs(30)).await {
        Ok(delivery) => Ok(delivery.offset),
        Err((e, _)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::config::KafkaConfig;
    use herald_kafka::DevBroker;
    use herald_proto::v1::idempotency_record::Kind;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message as _;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    use crate::idempotency::ledger::Record;

    fn claim(i: u8) -> IdempotencyRecord {
        IdempotencyRecord {
            kind: Kind::Claim as i32,
            claim_id: format!("c-{i}"),
            request_hash: vec![i; 32],
            at_ms: 1,
            lease_until_ms: 2,
            ..Default::default()
        }
    }

    /// The topic's records, read until `n` are in.
    fn read_back(brokers: &str, topic: &str, n: usize) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "writer-test")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .expect("partition");
        consumer.assign(&tpl).expect("assign");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut out = Vec::new();
        while out.len() < n {
            assert!(std::time::Instant::now() < deadline, "read {out:?}");
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                out.push((
                    m.key().map(<[u8]>::to_vec),
                    m.payload().unwrap_or(&[]).to_vec(),
                ));
            }
        }
        out
    }

    // A current-thread runtime: every write of the `join_all` is queued
    // before the writer task runs, so the batch is exactly those writes.
    #[tokio::test]
    async fn writes_ready_together_share_one_kafka_record_in_order() {
        let mut cfg = KafkaConfig::default();
        let broker = DevBroker::start(&cfg).expect("mock broker");
        cfg.brokers = broker.bootstrap_servers().to_owned();
        let producer =
            Producer::new(&herald_kafka::producer_config(&cfg, "writer-test")).expect("producer");
        let writer = Writer::start(producer, cfg.idempotency_topic.clone());

        let offsets =
            futures_util::future::join_all((0..100u8).map(|i| writer.write([i; 32], claim(i))))
                .await;
        let offsets: Vec<i64> = offsets.into_iter().map(|r| r.expect("written")).collect();
        assert_eq!(
            offsets,
            vec![0; 100],
            "one Kafka record carries all of them"
        );
        // A write on its own is a plain record, keyed by its ledger key.
        assert_eq!(
            writer.write([200; 32], claim(200)).await.expect("written"),
            1
        );

        let records = read_back(&cfg.brokers, &cfg.idempotency_topic, 2);
        let (key, value) = &records[0];
        assert_eq!(key, &None, "a batch has no Kafka key");
        let (entries, skipped) = records::decode(None, Some(value));
        assert_eq!(skipped, 0);
        let keys: Vec<u8> = entries.iter().map(|(k, _)| k[0]).collect();
        assert_eq!(keys, (0..100).collect::<Vec<u8>>(), "in the order written");
        assert!(entries
            .iter()
            .all(|(k, r)| matches!(r, Record::Claim { claim_id, .. } if *claim_id == format!("c-{}", k[0]))));
        let (key, value) = &records[1];
        assert_eq!(key.as_deref(), Some(&[200u8; 32][..]));
        assert_eq!(value, &claim(200).encode_to_vec());
    }

    #[tokio::test]
    async fn a_failed_send_fails_every_write_it_carried() {
        let mut cfg = KafkaConfig::default();
        let broker = DevBroker::start(&cfg).expect("mock broker");
        cfg.brokers = broker.bootstrap_servers().to_owned();
        cfg.client
            .insert("message.timeout.ms".into(), "1000".into());
        let producer =
            Producer::new(&herald_kafka::producer_config(&cfg, "writer-test")).expect("producer");
        // The broker refuses the next produce requests for good.
        broker.cluster().request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 4],
        );
        let writer = Writer::start(producer, cfg.idempotency_topic.clone());
        let results =
            futures_util::future::join_all((0..3u8).map(|i| writer.write([i; 32], claim(i)))).await;
        assert!(results.iter().all(|r| r.is_err()), "{results:?}");
    }
}
