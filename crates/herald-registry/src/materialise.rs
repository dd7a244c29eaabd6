//! Reads the registry topic from the start, forever, into a [`Registry`].
//!
//! The consumer assigns every partition itself (no consumer group, no
//! commits): each node needs the whole registry. The registry is *loaded*
//! once it has read up to the high watermarks seen at start.

use std::future::Future;
use std::time::Duration;

use herald_core::config::KafkaConfig;
use herald_core::Endpoint;
use herald_proto::v1::{EndpointRecord, EventTypeRecord};
use prost::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::event_types::StoredEventType;
use crate::sealing::KeyRing;
use crate::store::Registry;

/// Runs until `shutdown` resolves; returns an error only when the topic
/// cannot be read at all.
pub async fn run_materialiser(
    cfg: KafkaConfig,
    node_id: String,
    registry: Registry,
    ring: std::sync::Arc<KeyRing>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), KafkaError> {
    let mut config = herald_kafka::consumer_config(
        &cfg,
        Some(&format!("herald-registry-{node_id}")),
        &format!("herald-registry-{node_id}"),
    );
    // Registry writes are rare and a write waits for its read-back: fetch
    // without lingering (the default waits up to 500 ms on quiet topics).
    if !cfg.client.contains_key("fetch.wait.max.ms") {
        config.set("fetch.wait.max.ms", "10");
    }
    let fetch_wait = herald_kafka::idle::fetch_wait(&config);
    let consumer: StreamConsumer = config.create()?;
    let consumer = std::sync::Arc::new(consumer);
    let topic = cfg.endpoints_topic.clone();

    let probe = consumer.clone();
    let probe_topic = topic.clone();
    let high: Vec<i64> = tokio::task::spawn_blocking(move || -> Result<Vec<i64>, KafkaError> {
        let md = probe.fetch_metadata(Some(&probe_topic), Duration::from_secs(10))?;
        let count = md
            .topics()
            .first()
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        if count == 0 {
            return Err(KafkaError::MetadataFetch(
                rdkafka::types::RDKafkaErrorCode::UnknownTopic,
            ));
        }
        (0..count as i32)
            .map(|p| {
                probe
                    .fetch_watermarks(&probe_topic, p, Duration::from_secs(10))
                    .map(|(_, h)| h)
            })
            .collect()
    })
    .await
    .expect("watermark task panicked")?;

    let mut tpl = TopicPartitionList::new();
    for p in 0..high.len() as i32 {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
        registry.advance(p, 0);
    }
    consumer.assign(&tpl)?;
    let caught_up = |reg: &Registry| {
        let progress = reg.progress().borrow().clone();
        high.iter()
            .enumerate()
            .all(|(p, &h)| progress.next_offset.get(p).is_some_and(|&n| n >= h))
    };
    if caught_up(&registry) {
        registry.mark_loaded();
    }
    tracing::info!(topic = %topic, partitions = high.len(), "reading endpoint registry");

    // On a broker that cannot hold a fetch open, an idle registry fetches
    // in probes (kafka.idle_pause_after_ms).
    let mut quiet = herald_kafka::idle::QuietTimer::new(&cfg, fetch_wait);
    let set_fetching = |f| {
        if let Err(e) = herald_kafka::idle::set_fetching(&*consumer, f, |_, _| false) {
            tracing::warn!(request = ?f, error = %e, "registry: cannot change fetching for idleness");
        }
    };
    tokio::pin!(shutdown);
    loop {
        let msg = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            () = quiet.due() => {
                if let Some(f) = quiet.tick() {
                    set_fetching(f);
                }
                continue;
            }
            m = consumer.recv() => m,
        };
        if let Some(f) = quiet.record() {
            set_fetching(f);
        }
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "registry consumer error");
                continue;
            }
        };
        let Some(key) = msg.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            tracing::error!(
                offset = msg.offset(),
                "registry record without a UTF-8 key; skipped"
            );
            registry.advance(msg.partition(), msg.offset() + 1);
            continue;
        };
        if let Some(name) = key.strip_prefix(crate::event_types::KEY_PREFIX) {
            apply_event_type(&registry, name, msg.payload(), msg.offset());
            registry.advance(msg.partition(), msg.offset() + 1);
            if !registry.is_loaded() && caught_up(&registry) {
                tracing::info!(endpoints = registry.len(), "endpoint registry loaded");
                registry.mark_loaded();
            }
            continue;
        }
        match msg.payload() {
            None => registry.apply(key, None),
            Some(bytes) => match decode(key, bytes, &ring) {
                Ok(ep) => registry.apply(key, Some(ep)),
                Err(e) => {
                    // Every node skips the same records (the checks depend
                    // on the record and the keys only), so views agree; the
                    // endpoint's previous version, if any, stays in force.
                    metrics::counter!(herald_telemetry::names::REGISTRY_SKIPPED).increment(1);
                    tracing::error!(endpoint = key, offset = msg.offset(), error = %e, "invalid registry record; skipped")
                }
            },
        }
        registry.advance(msg.partition(), msg.offset() + 1);
        if !registry.is_loaded() && caught_up(&registry) {
            tracing::info!(endpoints = registry.len(), "endpoint registry loaded");
            registry.mark_loaded();
        }
    }
}

/// Applies an event type's record; one that does not decode, names another
/// type or fails validation is skipped (and counted) by every node alike.
fn apply_event_type(registry: &Registry, name: &str, payload: Option<&[u8]>, offset: i64) {
    let decoded = match payload {
        None => Err("a tombstone (event types are archived, never deleted)".to_string()),
        Some(bytes) => EventTypeRecord::decode(bytes)
            .map_err(|e| e.to_string())
            .and_then(|rec| {
                if rec.name != name {
                    return Err(format!(
                        "the record's name {:?} differs from its key",
                        herald_core::text::bounded(&rec.name, 128)
                    ));
                }
                StoredEventType::from_record(rec)
            }),
    };
    match decoded {
        Ok(ty) => registry.apply_event_type(ty),
        Err(e) => {
            metrics::counter!(herald_telemetry::names::REGISTRY_SKIPPED).increment(1);
            tracing::error!(event_type = name, offset, error = %e, "invalid event type record; skipped")
        }
    }
}

/// The endpoint a registry record holds, if it is one: it decodes, its id
/// is its key, and its sealed values open.
fn decode(key: &str, bytes: &[u8], ring: &KeyRing) -> Result<Endpoint, String> {
    let rec = EndpointRecord::decode(bytes).map_err(|e| e.to_string())?;
    if rec.id != key {
        return Err(format!(
            "the record's id {:?} differs from its key",
            herald_core::text::bounded(&rec.id, 128)
        ));
    }
    ring.open_endpoint(rec)
}
