//! A ledger of what the receiver answered: every request's path, `webhook-id`
//! and the status it got, in the order the receiver decided them.
//!
//! [`Ledger::policy`] wraps an answer policy of a [`TestReceiver`]: the
//! receiver calls it under its log lock, in arrival order, so the ledger's
//! order is the receiver's. That lets tests check the strong form of
//! per-endpoint order ("event n+1 is not sent before event n got a 2xx"),
//! which needs the answers and not only the arrivals.
//!
//! Waiting is event-driven: each entry (and each [`Ledger::bump`], e.g. from a
//! dead-letter reader) wakes [`Ledger::wait_until`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_testkit::{Policy, Recorded, Reply};
use tokio::sync::watch;

/// One answered request.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Request path, e.g. `/ep-3`.
    pub path: String,
    /// `webhook-id`.
    pub id: String,
    /// The status the receiver answered.
    pub status: u16,
}

impl Entry {
    /// Whether the answer was a success.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

struct Inner {
    entries: Mutex<Vec<Entry>>,
    changed: watch::Sender<u64>,
}

/// See the module docs. Cheap to clone.
#[derive(Clone)]
pub struct Ledger(Arc<Inner>);

impl Default for Ledger {
    fn default() -> Self {
        Self::new()
    }
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self(Arc::new(Inner {
            entries: Mutex::new(Vec::new()),
            changed: watch::channel(0).0,
        }))
    }

    /// A receiver policy answering what `decide` says, recording each answer.
    pub fn policy(
        &self,
        decide: impl Fn(&Recorded, u32) -> Reply + Send + Sync + 'static,
    ) -> Policy {
        let inner = self.0.clone();
        Policy::new(move |r, n| {
            let reply = decide(r, n);
            inner.entries.lock().unwrap().push(Entry {
                path: r.path.clone(),
                id: r.webhook_id().to_string(),
                status: reply.status,
            });
            inner.changed.send_modify(|v| *v += 1);
            reply
        })
    }

    /// Wakes waiters (something they look at besides the ledger changed).
    pub fn bump(&self) {
        self.0.changed.send_modify(|v| *v += 1);
    }

    /// Number of entries so far.
    pub fn len(&self) -> usize {
        self.0.entries.lock().unwrap().len()
    }

    /// A copy of every entry so far.
    pub fn entries(&self) -> Vec<Entry> {
        self.0.entries.lock().unwrap().clone()
    }

    /// Waits until `done(entries)` holds, re-checking after every entry and
    /// bump; fails after `timeout` (a failure guard).
    pub async fn wait_until(
        &self,
        mut done: impl FnMut(&[Entry]) -> bool,
        timeout: Duration,
    ) -> Result<(), String> {
        let started = Instant::now();
        let mut changes = self.0.changed.subscribe();
        let check = async {
            loop {
                changes.borrow_and_update();
                if done(&self.0.entries.lock().unwrap()) {
                    return;
                }
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, check).await.map_err(|_| {
            format!(
                "condition not met after {:?} ({} answers recorded)",
                started.elapsed(),
                self.0.entries.lock().unwrap().len()
            )
        })
    }
}

/// Ids that got a 2xx in `entries`.
pub fn delivered(entries: &[Entry]) -> HashSet<&str> {
    entries
        .iter()
        .filter(|e| e.ok())
        .map(|e| e.id.as_str())
        .collect()
}

/// Checks per-endpoint order in its strong form: when any request for the
/// event at position `s` of `order` arrives, every event before it has
/// already been answered 2xx, or is in `excused` (dead-lettered). Requests
/// for ids not in `order` are ignored. Returns the violations found.
pub fn order_violations(
    entries: &[Entry],
    path: &str,
    order: &[String],
    excused: &HashSet<String>,
) -> Vec<String> {
    let pos: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut done = vec![false; order.len()];
    // Everything before `prefix` is delivered or excused.
    let mut prefix = 0;
    let mut out = Vec::new();
    for e in entries.iter().filter(|e| e.path == path) {
        let Some(&s) = pos.get(e.id.as_str()) else {
            continue;
        };
        while prefix < order.len() && (done[prefix] || excused.contains(&order[prefix])) {
            prefix += 1;
        }
        if s > prefix {
            out.push(format!(
                "{path}: event #{s} ({}) was sent while #{prefix} ({}) was neither delivered nor dead-lettered",
                e.id, order[prefix]
            ));
        }
        if e.ok() {
            done[s] = true;
        }
    }
    out
}

/// Per path: requests, distinct ids delivered, and the last answer given
/// (for failure messages).
pub fn summary(entries: &[Entry]) -> BTreeMap<String, String> {
    let mut per: BTreeMap<String, (usize, HashSet<&str>, u16)> = BTreeMap::new();
    for e in entries {
        let p = per.entry(e.path.clone()).or_default();
        p.0 += 1;
        if e.ok() {
            p.1.insert(&e.id);
        }
        p.2 = e.status;
    }
    per.into_iter()
        .map(|(path, (n, ok, last))| {
            (
                path,
                format!(
                    "{n} requests, {} ids delivered, last answer {last}",
                    ok.len()
                ),
            )
        })
        .collect()
}

/// Distinct ids answered 2xx so far, updated incrementally from a growing
/// ledger (each entry is looked at once).
#[derive(Default)]
pub struct Delivered {
    ids: HashSet<String>,
    seen: usize,
}

impl Delivered {
    /// Takes in the entries not seen yet.
    pub fn update(&mut self, entries: &[Entry]) {
        for e in &entries[self.seen.min(entries.len())..] {
            if e.ok() {
                self.ids.insert(e.id.clone());
            }
        }
        self.seen = entries.len();
    }

    /// [`Delivered::update`], then the number of distinct ids delivered.
    pub fn count(&mut self, entries: &[Entry]) -> usize {
        self.update(entries);
        self.ids.len()
    }

    /// How many of `ids`, from the first, are delivered.
    pub fn delivered_prefix(&self, ids: &[&str]) -> usize {
        ids.iter().take_while(|id| self.ids.contains(**id)).count()
    }

    /// How many of `ids` are delivered.
    pub fn count_of(&self, ids: &[&str]) -> usize {
        ids.iter().filter(|id| self.ids.contains(**id)).count()
    }
}
