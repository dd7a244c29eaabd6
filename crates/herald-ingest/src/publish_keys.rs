//! The idempotency keys of a direct `Publish`/`PublishBatch` call: claimed
//! together before any event is written (each key once per call), then
//! answered or released once Kafka has acknowledged the events or not
//! (see [`crate::idempotency`]).

use herald_proto::v1::PublishResponse;

use crate::idempotency::claims::{Acquired, Claim, ClaimError};
use crate::idempotency::ledger::{Answer, Key, RequestHash};
use crate::publish::{response, Prepared, PublishError, Publisher, Slot};

impl Publisher {
    /// Claims the idempotency keys of a call's ready slots (at once, each
    /// key once): a slot whose key is already answered or conflicts is
    /// done; a later slot repeating an earlier slot's key and request
    /// gets that slot's answer.
    pub(crate) async fn acquire_keys(&self, slots: &mut [Slot]) {
        let Some(claims) = &self.claims else { return };
        let mut first: Vec<(Key, RequestHash, usize)> = Vec::new();
        let mut wanted = Vec::new();
        for (i, slot) in slots.iter_mut().enumerate() {
            let Slot::Ready(Prepared { keyed: Some(k), .. }) = slot else {
                continue;
            };
            match first.iter().find(|(key, _, _)| *key == k.key) {
                Some((_, request, j)) if *request == k.request => *slot = Slot::SameAs(*j),
                Some(_) => *slot = Slot::Done(Err(ClaimError::Conflict.into())),
                None => {
                    first.push((k.key, k.request, i));
                    wanted.push((i, k.key, k.request));
                }
            }
        }
        if wanted.is_empty() {
            return;
        }
        let acquired = futures_util::future::join_all(
            wanted
                .into_iter()
                .map(|(i, key, request)| async move { (i, claims.acquire(key, request).await) }),
        )
        .await;
        // A key acquired early may have waited for the slowest one: each
        // owned claim must still have a write's worth of lease (renewed if
        // short), or another node may have taken it over.
        let acquired =
            futures_util::future::join_all(acquired.into_iter().map(|(i, result)| async move {
                match result {
                    Ok(Acquired::Owned(claim)) => match claims.renew(&claim).await {
                        Ok(()) => (i, Ok(Acquired::Owned(claim))),
                        Err(e) => (i, Err(e)),
                    },
                    other => (i, other),
                }
            }))
            .await;
        for (i, result) in acquired {
            match result {
                Ok(Acquired::Owned(claim)) => {
                    if let Slot::Ready(Prepared { keyed: Some(k), .. }) = &mut slots[i] {
                        k.claim = Some(claim);
                    }
                }
                Ok(Acquired::Done(answer)) => slots[i] = Slot::Done(Ok(response(answer, true))),
                Err(e) => slots[i] = Slot::Done(Err(e.into())),
            }
        }
    }

    /// Records the answers of claims whose events were acknowledged, and
    /// frees the keys of those that were not.
    pub(crate) async fn settle_claims(&self, finished: Vec<(Claim, Answer)>, released: Vec<Claim>) {
        let Some(claims) = &self.claims else { return };
        let finish = futures_util::future::join_all(finished.iter().map(|(c, a)| async move {
            if let Err(e) = claims.finish(c, a).await {
                // The events are written: the caller gets its answer. A
                // retry elsewhere waits for the claim's lease, then writes
                // the events again under the same ids.
                tracing::warn!(error = %e, "could not record an idempotency answer");
            }
        }));
        let release = futures_util::future::join_all(released.iter().map(|c| claims.release(c)));
        futures_util::future::join(finish, release).await;
    }
}

/// An earlier slot's result, for a later slot of the same call with the
/// same key and request.
pub(crate) fn same_answer(
    earlier: &Result<PublishResponse, PublishError>,
) -> Result<PublishResponse, PublishError> {
    match earlier {
        Ok(resp) => Ok(PublishResponse {
            duplicate: true,
            ..resp.clone()
        }),
        Err(e) => Err(clone_error(e)),
    }
}

/// A failed publish's error, for another slot that shared its key.
fn clone_error(e: &PublishError) -> PublishError {
    match e {
        PublishError::Invalid(f) => PublishError::Invalid(f.clone()),
        PublishError::NotFound(id) => PublishError::NotFound(id.clone()),
        PublishError::Disabled(id) => PublishError::Disabled(id.clone()),
        PublishError::UnknownType(t) => PublishError::UnknownType(t.clone()),
        PublishError::Archived(t) => PublishError::Archived(t.clone()),
        PublishError::Idempotency(ClaimError::Conflict) => ClaimError::Conflict.into(),
        PublishError::Idempotency(ClaimError::InProgress) => ClaimError::InProgress.into(),
        PublishError::Idempotency(ClaimError::Loading { applied, end }) => ClaimError::Loading {
            applied: *applied,
            end: *end,
        }
        .into(),
        PublishError::NotReady => PublishError::NotReady,
        PublishError::Kafka(k)
        | PublishError::TooLarge(k)
        | PublishError::Idempotency(ClaimError::Kafka(k)) => PublishError::Kafka(k.clone()),
    }
}
