//! The in-memory endpoint view and its progress through the registry topic.
//!
//! Readers on hot paths check [`Registry::version`] (one atomic load) and
//! re-read only when it changed; the map itself is behind a `RwLock` that
//! only the materialiser writes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use herald_core::Endpoint;
use tokio::sync::watch;

use crate::event_types::StoredEventType;

/// Shared, cheaply cloned handle to the materialised registry.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Endpoints by id, sorted for paging.
    endpoints: RwLock<BTreeMap<String, Arc<Endpoint>>>,
    /// Ids whose tombstone this node has read (and not re-created since):
    /// only these are *deleted*; an id never seen is only *unknown*.
    deleted: RwLock<std::collections::HashSet<String>>,
    /// Endpoint ids by application, for fan-out.
    apps: RwLock<std::collections::HashMap<String, std::collections::BTreeSet<String>>>,
    /// The event type catalogue, by name.
    event_types: RwLock<BTreeMap<String, Arc<StoredEventType>>>,
    /// Bumped on every applied change.
    version: AtomicU64,
    /// Progress: next offset to apply per partition, and whether the
    /// initial read up to the start-time high watermarks finished.
    progress: watch::Sender<Progress>,
}

/// What this node's registry knows about an endpoint id.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The endpoint as last written.
    Found(Arc<Endpoint>),
    /// A tombstone was read: the endpoint was deleted.
    Deleted,
    /// Never seen: not created, or created after what this node has read
    /// so far (registry lag). Never treat it as deleted.
    Unknown,
}

/// How far the materialiser has read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Next offset to apply, indexed by partition.
    pub next_offset: Vec<i64>,
    /// The initial catch-up is done: reads see every write made before start.
    pub loaded: bool,
}

impl Registry {
    /// An empty registry (not loaded).
    pub fn new() -> Self {
        Self::default()
    }

    /// The endpoint with this id.
    pub fn get(&self, id: &str) -> Option<Arc<Endpoint>> {
        self.inner
            .endpoints
            .read()
            .expect("registry lock")
            .get(id)
            .cloned()
    }

    /// The endpoint with this id, telling *deleted* (tombstone read) apart
    /// from *unknown* (not read yet).
    pub fn lookup(&self, id: &str) -> Lookup {
        if let Some(e) = self.get(id) {
            return Lookup::Found(e);
        }
        if self
            .inner
            .deleted
            .read()
            .expect("registry lock")
            .contains(id)
        {
            Lookup::Deleted
        } else {
            Lookup::Unknown
        }
    }

    /// Up to `limit` endpoints with ids greater than `after`, in id order.
    pub fn list(&self, after: Option<&str>, limit: usize) -> Vec<Arc<Endpoint>> {
        let map = self.inner.endpoints.read().expect("registry lock");
        let range = match after {
            Some(a) => {
                map.range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
            }
            None => map.range::<str, _>(..),
        };
        range.take(limit).map(|(_, e)| e.clone()).collect()
    }

    /// Like [`Registry::list`], only endpoints of application `app` when given.
    pub fn list_in(
        &self,
        app: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<Arc<Endpoint>> {
        let Some(app) = app else {
            return self.list(after, limit);
        };
        let ids: Vec<String> = {
            let apps = self.inner.apps.read().expect("registry lock");
            let Some(ids) = apps.get(app) else {
                return Vec::new();
            };
            let range = match after {
                Some(a) => {
                    ids.range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
                }
                None => ids.range::<str, _>(..),
            };
            range.take(limit).cloned().collect()
        };
        ids.iter().filter_map(|id| self.get(id)).collect()
    }

    /// Every endpoint of application `app`, in id order (fan-out targets
    /// before their subscriptions are checked).
    pub fn endpoints_in(&self, app: &str) -> Vec<Arc<Endpoint>> {
        let apps = self.inner.apps.read().expect("registry lock");
        let Some(ids) = apps.get(app) else {
            return Vec::new();
        };
        let map = self.inner.endpoints.read().expect("registry lock");
        ids.iter().filter_map(|id| map.get(id).cloned()).collect()
    }

    /// The event type `name`, archived or not.
    pub fn event_type(&self, name: &str) -> Option<Arc<StoredEventType>> {
        self.inner
            .event_types
            .read()
            .expect("registry lock")
            .get(name)
            .cloned()
    }

    /// Up to `limit` event types with names greater than `after`, in name
    /// order; archived ones only with `include_archived`.
    pub fn list_event_types(
        &self,
        after: Option<&str>,
        limit: usize,
        include_archived: bool,
    ) -> Vec<Arc<StoredEventType>> {
        let map = self.inner.event_types.read().expect("registry lock");
        let range = match after {
            Some(a) => {
                map.range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
            }
            None => map.range::<str, _>(..),
        };
        range
            .map(|(_, t)| t)
            .filter(|t| include_archived || !t.ty.archived())
            .take(limit)
            .cloned()
            .collect()
    }

    /// Number of event types (archived included).
    pub fn event_type_count(&self) -> usize {
        self.inner.event_types.read().expect("registry lock").len()
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.inner.endpoints.read().expect("registry lock").len()
    }

    /// Enabled endpoints and all endpoints.
    pub fn count_enabled(&self) -> (usize, usize) {
        let map = self.inner.endpoints.read().expect("registry lock");
        (map.values().filter(|e| e.enabled).count(), map.len())
    }

    /// Whether there are no endpoints.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Changes whenever an endpoint is put or deleted.
    pub fn version(&self) -> u64 {
        self.inner.version.load(Ordering::Acquire)
    }

    /// Whether the initial catch-up finished.
    pub fn is_loaded(&self) -> bool {
        self.inner.progress.borrow().loaded
    }

    /// Watch the materialiser's progress.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.inner.progress.subscribe()
    }

    /// Waits until the initial catch-up finished.
    pub async fn wait_loaded(&self) {
        let mut rx = self.progress();
        // The sender lives in `self`, so this cannot fail.
        let _ = rx.wait_for(|p| p.loaded).await;
    }

    /// Waits until the record at `offset` of `partition` has been applied.
    pub async fn wait_applied(&self, partition: i32, offset: i64) {
        let mut rx = self.progress();
        let p = partition as usize;
        let _ = rx
            .wait_for(|pr| pr.next_offset.get(p).is_some_and(|&n| n > offset))
            .await;
    }

    /// Applies one record: `Some` puts, `None` deletes.
    pub(crate) fn apply(&self, id: &str, endpoint: Option<Endpoint>) {
        {
            let mut map = self.inner.endpoints.write().expect("registry lock");
            let mut deleted = self.inner.deleted.write().expect("registry lock");
            let mut apps = self.inner.apps.write().expect("registry lock");
            let app = endpoint.as_ref().map(|e| e.app_id.clone());
            let previous = match endpoint {
                Some(e) => {
                    deleted.remove(id);
                    map.insert(id.to_string(), Arc::new(e))
                }
                None => {
                    deleted.insert(id.to_string());
                    map.remove(id)
                }
            };
            if let Some(old) = previous {
                if let Some(ids) = apps.get_mut(&old.app_id) {
                    ids.remove(id);
                    if ids.is_empty() {
                        apps.remove(&old.app_id);
                    }
                }
            }
            if let Some(app) = app {
                apps.entry(app).or_default().insert(id.to_string());
            }
        }
        self.inner.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Applies an event type record (types are never deleted).
    pub(crate) fn apply_event_type(&self, ty: StoredEventType) {
        self.inner
            .event_types
            .write()
            .expect("registry lock")
            .insert(ty.ty.name().to_string(), Arc::new(ty));
        self.inner.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Records that `partition` was read up to (not including) `next`.
    pub(crate) fn advance(&self, partition: i32, next: i64) {
        self.inner.progress.send_modify(|p| {
            let i = partition as usize;
            if p.next_offset.len() <= i {
                p.next_offset.resize(i + 1, 0);
            }
            if p.next_offset[i] < next {
                p.next_offset[i] = next;
            }
        });
    }

    /// Marks the initial catch-up done.
    pub(crate) fn mark_loaded(&self) {
        self.inner
            .progress
            .send_if_modified(|p| !std::mem::replace(&mut p.loaded, true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_proto::v1::EndpointRecord;

    fn ep(id: &str) -> Endpoint {
        Endpoint::from_record(EndpointRecord {
            id: id.into(),
            url: "http://example.com/".into(),
            secrets: vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()],
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn put_list_delete() {
        let r = Registry::new();
        let v0 = r.version();
        for id in ["c", "a", "b"] {
            r.apply(id, Some(ep(id)));
        }
        assert!(r.version() > v0);
        let ids: Vec<_> = r.list(None, 10).iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        let ids: Vec<_> = r.list(Some("a"), 1).iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids, ["b"]);
        r.apply("b", None);
        assert!(r.get("b").is_none());
        assert_eq!(r.len(), 2);
        assert!(matches!(r.lookup("b"), Lookup::Deleted));
        assert!(matches!(r.lookup("never"), Lookup::Unknown));
        assert!(matches!(r.lookup("a"), Lookup::Found(_)));
        r.apply("b", Some(ep("b")));
        assert!(matches!(r.lookup("b"), Lookup::Found(_)));
    }

    #[tokio::test]
    async fn waits_resolve_on_progress() {
        let r = Registry::new();
        let waiter = {
            let r = r.clone();
            tokio::spawn(async move { r.wait_applied(0, 4).await })
        };
        r.advance(0, 3);
        assert!(!waiter.is_finished());
        r.advance(0, 5);
        waiter.await.unwrap();
        r.mark_loaded();
        r.wait_loaded().await;
        assert!(r.is_loaded());
    }
}
