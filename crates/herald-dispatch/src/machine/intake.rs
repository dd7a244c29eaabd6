//! Records entering the partition: repeats after a resume in place are
//! ignored, what the previous owner finished is skipped (inherited skip
//! sets), events wait while the retry backlog is caught up, poison records
//! are dead-lettered, and endpoints the registry has not seen yet are waited
//! for instead of being taken for deleted.

use std::sync::Arc;

use bytes::Bytes;
use herald_proto::v1::EventEnvelope;
use herald_telemetry::names;
use prost::Message as _;

use super::{Action, CatchUp, Ctx, Known, Partition, Record, Topic};
use crate::attempt::{Event, Source};
use crate::sink::{DeadReason, Target};

/// Longest endpoint id kept from a poison record's key.
const MAX_POISON_KEY: usize = 256;
/// Longest decode error kept on a poison record's dead letter.
const MAX_POISON_ERROR: usize = 512;

fn decode(r: &Record) -> Result<EventEnvelope, String> {
    let payload = r.payload.as_ref().ok_or("record has no value")?;
    decode_payload(r.key.as_deref(), payload)
}

/// Decodes an envelope and checks it against the record key.
pub(super) fn decode_payload(key: Option<&[u8]>, payload: &Bytes) -> Result<EventEnvelope, String> {
    let env = EventEnvelope::decode(payload.clone()).map_err(|e| e.to_string())?;
    if env.endpoint_id.is_empty() || key.is_some_and(|k| k != env.endpoint_id.as_bytes()) {
        return Err("record key does not match the envelope's endpoint id".into());
    }
    Ok(env)
}

impl Partition {
    pub(super) fn on_record(&mut self, r: Record, ctx: &mut Ctx<'_>) {
        // After a resume in place the consumer fetches again from the
        // committed offset: this partition already has those records.
        match r.topic {
            Topic::Events if r.offset < self.events_read_until => return,
            Topic::Events => self.events_read_until = r.offset + 1,
            Topic::Retry if r.offset < self.retry_seen_until => return,
            Topic::Retry => {}
        }
        match r.topic {
            Topic::Events if self.catch_up != CatchUp::None => self.stash.push(r),
            Topic::Events => self.on_event_record(r, ctx),
            Topic::Retry => {
                self.on_retry_record(r, ctx);
                self.check_catch_up(ctx);
            }
        }
    }

    fn on_event_record(&mut self, r: Record, ctx: &mut Ctx<'_>) {
        let offset = r.offset;
        self.events_seen_until = self.events_seen_until.max(offset + 1);
        // Finished by the previous owner, or carried by a retry record this
        // core already holds (a copy of a head the previous owner had in
        // flight, its original left unfinished): sending it would be a
        // duplicate.
        if ctx.trackers.events.inherited_finished(offset)
            || ctx.trackers.events.is_finished_ahead(offset)
        {
            ctx.trackers.events.received_finished(offset);
            return;
        }
        let mut envelope = match decode(&r) {
            Ok(e) => e,
            Err(why) => return self.poison(&r, &why, ctx),
        };
        ctx.trackers.events.received(offset);
        envelope.origin_partition = self.cfg.partition;
        envelope.origin_offset = offset;
        let endpoint: Arc<str> = envelope.endpoint_id.as_str().into();
        let source = Source::Events(offset);
        self.custody(source, 1);
        let event = Event {
            source,
            origin: offset,
            envelope,
        };
        let lane = self.lane(&endpoint);
        lane.saw(offset);
        if lane.durable {
            return self.write(endpoint, event, Target::Retry, false);
        }
        lane.queue.push_back(event);
        self.pump(&endpoint, ctx);
        let max_lane = self.cfg.max_lane;
        if self
            .lanes
            .get(&endpoint)
            .is_some_and(|l| l.held() > l.window(max_lane))
        {
            self.overflow(&endpoint, ctx);
        }
    }

    fn on_retry_record(&mut self, r: Record, ctx: &mut Ctx<'_>) {
        let offset = r.offset;
        self.retry_seen_until = self.retry_seen_until.max(offset + 1);
        if ctx.trackers.retry.inherited_finished(offset) {
            ctx.trackers.retry.received_finished(offset);
            return;
        }
        let envelope = match decode(&r) {
            Ok(e) => e,
            Err(why) => return self.poison(&r, &why, ctx),
        };
        ctx.trackers.retry.received(offset);
        let endpoint: Arc<str> = envelope.endpoint_id.as_str().into();
        let origin = envelope.origin_offset;
        if ctx.trackers.events.position().is_none_or(|p| origin >= p) {
            // This record carries the event now (its custody is the retry
            // tracker's): the events record at its origin, not read yet, is
            // finished ahead, and the commit metadata says so to a next owner.
            ctx.trackers.events.finished_ahead(origin);
        }
        let ordered = self.ordered(&endpoint, ctx);
        let max_lane = self.cfg.max_lane;
        let lane = self.lane(&endpoint);
        lane.saw(origin);
        // An ordered endpoint with a backlog here queues new events behind
        // it. Whatever the lane holds of the events topic goes to the retry
        // topic first (a copy of its in-flight head, then its queue): an
        // event must never reach the retry topic while an older one of its
        // ordered endpoint is held outside it, or a crash would put the
        // older one behind it (a late record of a crashed owner does this).
        if ordered && !lane.durable {
            if lane.in_flight > 0 || !lane.queue.is_empty() {
                self.overflow(&endpoint, ctx);
            }
            self.lane(&endpoint).durable = true;
        }
        let lane = self.lane(&endpoint);
        if lane.behind.is_some() {
            // Left in Kafka: a scan from `behind` will read it. A scan that
            // already runs stops before this offset, so remember it.
            if lane.scanning {
                lane.ignored_from.get_or_insert(offset);
            }
            return;
        }
        if lane.held() >= lane.window(max_lane) {
            lane.behind = Some(offset);
            self.behind.insert(endpoint);
            return;
        }
        self.take_retry_record(&endpoint, offset, envelope, ctx);
        self.pump(&endpoint, ctx);
    }

    /// A retry record of `endpoint` enters its lane.
    pub(super) fn take_retry_record(
        &mut self,
        endpoint: &Arc<str>,
        offset: i64,
        envelope: EventEnvelope,
        _ctx: &mut Ctx<'_>,
    ) {
        let source = Source::Retry(offset);
        let origin = envelope.origin_offset;
        self.custody(source, 1);
        self.retry_held.insert(offset);
        let lane = self.lane(endpoint);
        lane.queue.push_back(Event {
            source,
            origin,
            envelope,
        });
    }

    pub(super) fn check_catch_up(&mut self, ctx: &mut Ctx<'_>) {
        if let CatchUp::Until(target) = self.catch_up {
            if self.retry_seen_until >= target {
                self.catch_up = CatchUp::None;
                tracing::debug!(
                    partition = self.cfg.partition,
                    "retry backlog read; events resume"
                );
                self.paused = true;
                self.set_paused(false);
                for r in std::mem::take(&mut self.stash) {
                    self.on_event_record(r, ctx);
                }
                // Nothing started while catching up: start now.
                let lanes: Vec<Arc<str>> = self.lanes.keys().cloned().collect();
                for ep in lanes {
                    self.after_settle(&ep, ctx);
                }
            }
        }
    }

    /// A record that cannot be delivered as it is (undecodable, key and
    /// envelope disagree): dead-lettered as it was read, with the reason,
    /// and its offset finished once the dead letter is written. Never
    /// skipped silently.
    fn poison(&mut self, r: &Record, why: &str, ctx: &mut Ctx<'_>) {
        tracing::error!(partition = self.cfg.partition, topic = ?r.topic, offset = r.offset, error = %why, "poison record; dead-lettering it");
        metrics::counter!(names::EVENTS_SKIPPED, "reason" => "poison").increment(1);
        let source = match r.topic {
            Topic::Events => {
                ctx.trackers.events.received(r.offset);
                Source::Events(r.offset)
            }
            Topic::Retry => {
                ctx.trackers.retry.received(r.offset);
                Source::Retry(r.offset)
            }
        };
        self.custody(source, 1);
        let key = r
            .key
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let envelope = EventEnvelope {
            event_id: format!("poison-{:?}-{}-{}", r.topic, self.cfg.partition, r.offset)
                .to_lowercase(),
            endpoint_id: herald_core::text::bounded(&key, MAX_POISON_KEY),
            event_type: "herald.poison_record".into(),
            payload: r.payload.clone().unwrap_or_default(),
            created_at_ms: ctx.now_ms,
            attempt: Some(herald_proto::v1::AttemptState {
                last_error: herald_core::text::bounded(why, MAX_POISON_ERROR),
                ..Default::default()
            }),
            origin_partition: self.cfg.partition,
            origin_offset: r.offset,
            ..Default::default()
        };
        // No lane owns it: the empty id is never an endpoint's.
        self.write(
            Arc::from(""),
            Event {
                source,
                origin: r.offset,
                envelope,
            },
            Target::DeadLetter(DeadReason::Poison),
            false,
        );
    }

    /// Waits for the registry to read everything written so far before
    /// `endpoint` is looked at again: an endpoint created through another
    /// node and published to at once may not have reached this registry.
    pub(super) fn sync_registry(&mut self, endpoint: &Arc<str>) {
        self.parked.insert(endpoint.clone());
        if self.syncing.insert(endpoint.clone()) {
            self.actions.push(Action::SyncRegistry(endpoint.clone()));
        }
    }

    pub(super) fn on_registry_synced(&mut self, endpoint: Arc<str>, ok: bool, ctx: &mut Ctx<'_>) {
        self.syncing.remove(&endpoint);
        if ok && matches!(self.known(&endpoint, ctx), Known::Unknown) {
            tracing::warn!(endpoint_id = %endpoint, "endpoint not in the registry after it caught up; its events are dead-lettered");
            self.unknown.insert(endpoint.clone());
        }
        self.after_settle(&endpoint, ctx);
    }
}
