//! Readiness: each component (Kafka, registry, consumer, ...) reports whether
//! it is ready and, when not, why. `/readyz` is ready when all are.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Shared readiness state; clone freely.
#[derive(Clone)]
pub struct Health {
    components: Arc<Mutex<BTreeMap<&'static str, Result<(), String>>>>,
    /// Bumped on every change, for [`Health::wait_ready`].
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            components: Arc::default(),
            changes: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }
}

impl Health {
    /// A new state with no components (ready).
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `component` as not ready yet, with `why`.
    pub fn pending(&self, component: &'static str, why: impl Into<String>) {
        self.components
            .lock()
            .expect("health lock")
            .insert(component, Err(why.into()));
        self.changes.send_modify(|n| *n += 1);
    }

    /// Marks `component` ready.
    pub fn ready(&self, component: &'static str) {
        self.components
            .lock()
            .expect("health lock")
            .insert(component, Ok(()));
        self.changes.send_modify(|n| *n += 1);
    }

    /// Waits until `component` is registered and ready.
    pub async fn wait_ready(&self, component: &str) {
        let mut changes = self.changes.subscribe();
        loop {
            changes.borrow_and_update();
            let ready = self
                .components
                .lock()
                .expect("health lock")
                .get(component)
                .is_some_and(Result::is_ok);
            if ready || changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Whether every component is ready, with a JSON body saying why not.
    pub fn report(&self) -> (bool, serde_json::Value) {
        let map = self.components.lock().expect("health lock");
        let ready = map.values().all(Result::is_ok);
        let detail: serde_json::Map<String, serde_json::Value> = map
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Ok(()) => serde_json::json!({"ready": true}),
                    Err(why) => serde_json::json!({"ready": false, "reason": why}),
                };
                (k.to_string(), v)
            })
            .collect();
        (
            ready,
            serde_json::json!({"ready": ready, "components": detail}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_when_all_components_are() {
        let h = Health::new();
        assert!(h.report().0);
        h.pending("registry", "loading");
        let (ready, body) = h.report();
        assert!(!ready);
        assert_eq!(body["components"]["registry"]["reason"], "loading");
        h.ready("registry");
        assert!(h.report().0);
    }
}
