//! The simulated registry: endpoints by id, with a version bumped on every
//! change, prepared for delivery (and cached) the way the worker does it.

use std::collections::HashMap;
use std::sync::Arc;

use herald_core::schedule::RetryPolicy;
use herald_core::Endpoint;
use herald_proto::v1::EndpointRecord;

use crate::endpoint::Prepared;
use crate::machine::{Directory, Known};

pub(super) struct SimDirectory {
    pub(super) base: RetryPolicy,
    pub(super) endpoints: HashMap<String, (bool, bool, i64)>,
    /// Endpoints this node's registry has not read yet (registry lag): they
    /// look unknown until a sync catches the registry up.
    pub(super) lagging: std::collections::HashSet<String>,
    pub(super) version: u64,
    pub(super) cache: HashMap<String, (u64, Known)>,
}

impl Directory for SimDirectory {
    fn lookup(&mut self, endpoint: &str) -> Known {
        if let Some((v, k)) = self.cache.get(endpoint) {
            if *v == self.version {
                return k.clone();
            }
        }
        let known = self.build(endpoint);
        self.cache
            .insert(endpoint.to_string(), (self.version, known.clone()));
        known
    }

    fn version(&self) -> u64 {
        self.version
    }
}

impl SimDirectory {
    fn build(&self, endpoint: &str) -> Known {
        if self.lagging.contains(endpoint) {
            return Known::Unknown;
        }
        let Some(&(ordered, enabled, updated)) = self.endpoints.get(endpoint) else {
            return Known::Deleted;
        };
        let e = Endpoint::from_record(EndpointRecord {
            id: endpoint.into(),
            url: format!("http://127.0.0.1/{endpoint}"),
            secrets: vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()],
            unordered: !ordered,
            disabled: !enabled,
            max_in_flight: if ordered { 0 } else { 3 },
            // Odd-numbered endpoints take batches of up to 3 events.
            batch_max_events: if batched(endpoint) { 3 } else { 0 },
            batch_linger_ms: if batched(endpoint) { 20 } else { 0 },
            updated_at_ms: updated,
            ..Default::default()
        })
        .expect("valid endpoint");
        Known::Ready(Arc::new(Prepared::new(Arc::new(e), &self.base)))
    }
}

/// Whether the simulated endpoint takes batches (`ep-1`, `ep-3`, …).
fn batched(endpoint: &str) -> bool {
    endpoint.ends_with(['1', '3', '5', '7', '9'])
}
