//! Writing one fan-out: validation, the idempotency claim, one events-topic
//! record per target endpoint in acknowledged chunks, and the answer (see
//! [`crate::fanout`] for the design).

use bytes::Bytes;
use herald_core::{ids, time::now_ms, validate};
use herald_proto::v1::{AttemptState, EventEnvelope, PublishRequest, PublishResponse};
use rdkafka::error::KafkaError;

use crate::fanout;
use crate::idempotency::claims::{Acquired, Claim};
use crate::idempotency::ledger::{Answer, Progress};
use crate::idempotency::scope;
use crate::publish::{
    check_key_len, response, Prepared, PublishError, Publisher, Slot, FANOUT_CHUNK_BYTES,
};

impl Publisher {
    /// Publishes one event to every subscribed endpoint of its application.
    pub(crate) async fn fan_out(
        &self,
        caller: &str,
        req: PublishRequest,
    ) -> Result<PublishResponse, PublishError> {
        validate::id("app_id", &req.app_id)?;
        herald_catalog::event_type::validate_name(&req.event_type)
            .map_err(|e| validate::FieldError::new("event_type", e.to_string()))?;
        validate::payload(&req.payload, self.max_payload)?;
        check_key_len(&req.idempotency_key)?;
        if !req.event_id.is_empty() {
            return Err(validate::FieldError::new(
                "event_id",
                "cannot be set on a fan-out (no endpoint_id): each endpoint's event id derives from the message id",
            )
            .into());
        }
        herald_catalog::pattern::validate_channels(&req.channels)
            .map_err(|e| validate::FieldError::new("channels", e.to_string()))?;
        let due = self.due_ms(&req)?;
        if !self.registry.is_loaded() {
            return Err(PublishError::NotReady);
        }
        let keyed = !req.idempotency_key.is_empty();
        let mut idem = None;
        if let (true, Some(claims)) = (keyed, &self.claims) {
            let key = scope::key(
                caller,
                scope::Target::App(&req.app_id),
                &req.idempotency_key,
            );
            let request = scope::request(
                &req.event_type,
                &req.payload,
                "",
                &req.channels,
                (req.deliver_at_ms, req.delay_ms),
            );
            // Before the catalogue's checks: a retry of an accepted publish
            // gets its answer even if the type changed since.
            match claims.peek(&key, &request) {
                Some(Ok(answer)) => return Ok(response(answer, true)),
                Some(Err(e)) => return Err(e.into()),
                None => idem = Some((claims, key, request)),
            }
        }
        let mut parsed = None;
        fanout::check_event_type(
            &self.registry,
            self.allow_unknown,
            &req.event_type,
            &req.payload,
            &mut parsed,
        )?;
        fanout::parsed_payload(&req.payload, &mut parsed)?;
        let claim = match idem {
            None => None,
            Some((claims, key, request)) => match claims.acquire(key, request).await? {
                Acquired::Done(answer) => return Ok(response(answer, true)),
                Acquired::Owned(claim) => Some(claim),
            },
        };
        let message_id = if keyed {
            let scoped = ids::scoped_idempotency_key(caller, &req.idempotency_key);
            herald_catalog::fanout::idempotent_message_id(&req.app_id, &scoped)
        } else {
            ids::new_event_id()
        };
        let result = self
            .write_fan_out(&req, parsed, message_id, due, claim.as_ref())
            .await;
        self.settle(claim, &result).await;
        result.map(|answer| response(answer, false))
    }

    /// Records a keyed fan-out's answer, or frees its key.
    async fn settle(&self, claim: Option<Claim>, result: &Result<Answer, PublishError>) {
        let Some(claim) = claim else { return };
        match result {
            Ok(answer) => {
                self.settle_claims(vec![(claim, answer.clone())], vec![])
                    .await
            }
            Err(_) => self.settle_claims(vec![], vec![claim]).await,
        }
    }

    /// Writes the records of every target endpoint, chunk by chunk.
    async fn write_fan_out(
        &self,
        req: &PublishRequest,
        parsed: Option<serde_json::Value>,
        message_id: String,
        due: i64,
        claim: Option<&Claim>,
    ) -> Result<Answer, PublishError> {
        let null = serde_json::Value::Null;
        let payload = parsed.as_ref().unwrap_or(&null);
        let mut targets = fanout::targets(
            &self.registry,
            &req.app_id,
            &req.event_type,
            &req.channels,
            payload,
        );
        // In endpoint id order, so progress is one point: a claim of the
        // same request after a failure writes only the targets after it.
        targets.sort_by(|a, b| a.id.cmp(&b.id));
        let resumed = claim.and_then(|c| c.progress.clone());
        let (already, start) = resumed.as_ref().map_or((0, 0), |p| {
            (
                p.written,
                targets.partition_point(|ep| ep.id.as_str() <= p.through.as_str()),
            )
        });
        let fanned_out = already.saturating_add((targets.len() - start) as u32);
        if let Some(p) = &resumed {
            tracing::info!(message_id, written = p.written, through = %p.through,
                "resuming a fan-out after a failed call: writing only the targets after its progress");
        }
        let targets = &targets[start..];
        let created_at_ms = now_ms();
        let body = Bytes::from(req.payload.clone().into_bytes());
        let mut prepared: Vec<Prepared> = targets
            .iter()
            .map(|ep| {
                let envelope = EventEnvelope {
                    event_id: herald_catalog::fanout_event_id(&message_id, &ep.id),
                    endpoint_id: ep.id.clone(),
                    event_type: req.event_type.clone(),
                    payload: body.clone(),
                    created_at_ms,
                    idempotency_key: req.idempotency_key.clone(),
                    attempt: Some(AttemptState::default()),
                    message_id: message_id.clone(),
                    app_id: req.app_id.clone(),
                    deliver_at_ms: due,
                    ..Default::default()
                };
                Prepared::plain(envelope)
            })
            .collect();
        // Key, headers and record framing on top of the value.
        let sizes: Vec<(&str, usize)> = targets
            .iter()
            .zip(&prepared)
            .map(|(ep, p)| (ep.id.as_str(), p.value.len() + ep.id.len() + 120))
            .collect();
        // Any accepted payload fits one chunk, with room for the envelope.
        let limits = herald_catalog::ChunkLimits {
            max_records: self.chunk_records,
            max_bytes: FANOUT_CHUNK_BYTES.max(self.max_payload + 4096),
        };
        let chunks = herald_catalog::plan_chunks(&sizes, limits)
            .map_err(|e| validate::FieldError::new("payload", e.to_string()))?;
        let last_chunk = chunks.len().saturating_sub(1);
        let mut written = already;
        for (n, chunk) in chunks.into_iter().enumerate() {
            // Each chunk is written under a lease that outlives its write.
            if let (Some(claims), Some(claim)) = (&self.claims, claim) {
                claims.renew(claim).await?;
            }
            let through = chunk.end.checked_sub(1).map(|i| targets[i].id.clone());
            written = written.saturating_add(chunk.len() as u32);
            let mut sent = Vec::with_capacity(chunk.len());
            for p in &mut prepared[chunk] {
                sent.push(self.enqueue(p).await);
            }
            for slot in sent {
                match slot {
                    Slot::Sent(_, fut) => match fut.await {
                        Ok(Ok(_)) => {}
                        Ok(Err((e, _))) => return Err(PublishError::from_kafka(e)),
                        Err(_) => return Err(PublishError::Kafka(KafkaError::Canceled)),
                    },
                    Slot::Done(Err(e)) => return Err(e),
                    Slot::Done(Ok(_)) | Slot::Ready(_) | Slot::SameAs(_) => {
                        unreachable!("enqueue sends or fails")
                    }
                }
            }
            // The chunk is acknowledged: record how far the fan-out got
            // (the last chunk is followed by the answer instead).
            if let (Some(claims), Some(claim), Some(through), true) =
                (&self.claims, claim, through, n < last_chunk)
            {
                let progress = Progress { through, written };
                if let Err(e) = claims.progress(claim, &progress).await {
                    tracing::warn!(error = %e, message_id, "could not record a fan-out's progress; a retry after a failure writes its chunks again (same ids)");
                }
            }
            // Tests inject a broker failure here, after chunk n is written
            // and its progress recorded (feature `failpoints`).
            fail::fail_point!("fanout-after-chunk", |_| Err(PublishError::from_kafka(
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::AllBrokersDown)
            )));
        }
        Ok(Answer {
            message_id,
            fanned_out,
            deliver_at_ms: due,
            ..Default::default()
        })
    }
}
