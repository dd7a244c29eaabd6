//! The idempotency ledger: what the idempotency topic says about every key
//! still inside the window. Pure logic, no I/O: [`Ledger::apply`] folds the
//! topic's records in log order, [`Ledger::lookup`] answers a publisher.
//!
//! Every ingest node folds the same records in the same order with the same
//! rules, which use only what is in the records (never a node's clock), so
//! all nodes that have read up to one offset hold the same ledger. A node's
//! clock is used only by [`Ledger::lookup`], to decide when to stop waiting
//! for another node's claim.
//!
//! Rules, per key:
//! - A **claim** is taken when the key is free: never seen, released,
//!   older than the window, or held by a claim whose lease ended before
//!   this claim was written. Any other claim loses and changes nothing.
//! - **done** finishes the pending claim whose request it carries (the
//!   owner's, or a late owner's that wrote the same request after being
//!   taken over: its events exist either way). Once done, the key answers
//!   with that result until the window ends.
//! - **release** frees the key, for the same request only, if the
//!   releasing claim still holds it (its write failed but may have landed,
//!   so another request under the same derived ids stays refused).
//! - A claim repeated by the claim that holds the key **renews** its lease.
//! - **progress** (a fan-out's acknowledged chunks) is kept when the claim
//!   that holds the key writes it, and carried to the next claim of the
//!   same request, so a retry after a failure writes only the rest.

use std::collections::{HashMap, VecDeque};

/// SHA-256 of the caller, the target and the idempotency key.
pub type Key = [u8; 32];
/// SHA-256 of what the publish asked for.
pub type RequestHash = [u8; 32];

/// The answer a finished key gives to every later publish with it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer {
    /// Direct publish: the event id.
    pub event_id: String,
    /// Direct publish: where the event was written.
    pub partition: i32,
    /// Direct publish: where the event was written.
    pub offset: i64,
    /// Fan-out: the message id.
    pub message_id: String,
    /// Fan-out: how many endpoints got a record.
    pub fanned_out: u32,
    /// Scheduled: when the event is due, unix ms (0 = not scheduled).
    pub deliver_at_ms: i64,
}

/// How far a fan-out's write got: its targets are written in endpoint id
/// order, in chunks; those up to and including `through` are acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress {
    /// The last endpoint id written.
    pub through: String,
    /// How many targets were written.
    pub written: u32,
}

/// One record of the idempotency topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A node is about to write the key's events.
    Claim {
        /// Unique per claim.
        claim_id: String,
        /// What the publish asked for.
        request: RequestHash,
        /// When it was written (the writer's clock), unix ms.
        at_ms: i64,
        /// A claim written after this may take the key over.
        lease_until_ms: i64,
    },
    /// The claim's events are acknowledged.
    Done {
        /// The claim that wrote them.
        claim_id: String,
        /// What the publish asked for.
        request: RequestHash,
        /// When it was written, unix ms.
        at_ms: i64,
        /// The result.
        answer: Answer,
    },
    /// The claim's write failed (and may or may not have landed): the key
    /// is free again for the same request only.
    Release {
        /// The claim giving up.
        claim_id: String,
    },
    /// A fan-out's chunks up to a point are acknowledged.
    Progress {
        /// The claim writing them.
        claim_id: String,
        /// How far it got.
        progress: Progress,
    },
}

/// Where a key stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Pending {
        claim_id: String,
        lease_until_ms: i64,
    },
    Done(Answer),
    /// Its owner gave up (its write failed, and may or may not have
    /// landed): the same request may claim it again, another may not.
    Released,
}

#[derive(Debug, Clone)]
struct Entry {
    request: RequestHash,
    /// When the key was first claimed: the window runs from here.
    since_ms: i64,
    state: State,
    /// A fan-out's acknowledged chunks, carried from claim to claim of the
    /// same request.
    progress: Option<Progress>,
}

/// What a publisher should do with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Nobody holds the key: write a claim.
    Free,
    /// This claim holds the key: write the events.
    Owned,
    /// Finished with the same request: answer this (nothing new is written).
    Done(Answer),
    /// Claimed or finished with another request: refuse.
    Conflict,
    /// Another claim with the same request is in progress: wait until this
    /// time (its lease) for it to finish, then look again.
    Wait {
        /// The other claim's lease end, unix ms.
        until_ms: i64,
    },
}

/// The keys of the window, bounded in number.
#[derive(Debug)]
pub struct Ledger {
    window_ms: i64,
    capacity: usize,
    /// How much of its lease a claim must have left for its holder to start
    /// writing: the longest an events write takes to be acknowledged or to
    /// fail. Later, the holder waits for its own claim to end and claims
    /// again, so it never writes while another node may take the key over.
    write_budget_ms: i64,
    entries: HashMap<Key, Entry>,
    /// Keys in the order they were claimed, with that time, for expiry and
    /// eviction (stale pairs are skipped).
    order: VecDeque<(Key, i64)>,
}

impl Ledger {
    /// A ledger remembering keys for `window_ms`, at most `capacity` of them
    /// (the oldest forgotten first; 0 remembers none), whose claim holders
    /// need `write_budget_ms` of lease left to write.
    pub fn new(window_ms: i64, capacity: usize, write_budget_ms: i64) -> Self {
        Self {
            window_ms,
            capacity,
            write_budget_ms,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Folds one record for `key` (in log order).
    pub fn apply(&mut self, key: Key, record: &Record) {
        match record {
            Record::Claim {
                claim_id,
                request,
                at_ms,
                lease_until_ms,
            } => {
                self.expire(*at_ms);
                let window_start = at_ms.saturating_sub(self.window_ms);
                // A claim repeated by its holder extends its lease.
                if let Some(Entry {
                    state:
                        State::Pending {
                            claim_id: holder,
                            lease_until_ms: lease,
                        },
                    ..
                }) = self.entries.get_mut(&key)
                {
                    if holder == claim_id {
                        *lease = (*lease).max(*lease_until_ms);
                        return;
                    }
                }
                let (free, progress) = match self.entries.get(&key) {
                    None => (true, None),
                    Some(e) if e.since_ms < window_start => (true, None),
                    Some(e) => {
                        let free = match &e.state {
                            State::Pending { lease_until_ms, .. } => *lease_until_ms < *at_ms,
                            State::Released => e.request == *request,
                            State::Done(_) => false,
                        };
                        let same = e.request == *request;
                        (free, e.progress.clone().filter(|_| same))
                    }
                };
                if free {
                    self.insert(
                        key,
                        Entry {
                            request: *request,
                            since_ms: *at_ms,
                            state: State::Pending {
                                claim_id: claim_id.clone(),
                                lease_until_ms: *lease_until_ms,
                            },
                            progress,
                        },
                    );
                }
            }
            Record::Done {
                claim_id,
                request,
                at_ms,
                answer,
            } => {
                self.expire(*at_ms);
                match self.entries.get_mut(&key) {
                    Some(e) => {
                        let finishes = match &e.state {
                            State::Pending { claim_id: c, .. } => {
                                c == claim_id || e.request == *request
                            }
                            State::Released => e.request == *request,
                            State::Done(_) => false,
                        };
                        if finishes {
                            e.request = *request;
                            e.state = State::Done(answer.clone());
                        }
                    }
                    // Forgotten (evicted or expired) while pending: the
                    // events exist, so remember the answer.
                    None => self.insert(
                        key,
                        Entry {
                            request: *request,
                            since_ms: *at_ms,
                            state: State::Done(answer.clone()),
                            progress: None,
                        },
                    ),
                }
            }
            Record::Release { claim_id } => {
                let holds = self.entries.get(&key).is_some_and(
                    |e| matches!(&e.state, State::Pending { claim_id: c, .. } if c == claim_id),
                );
                if let (true, Some(e)) = (holds, self.entries.get_mut(&key)) {
                    e.state = State::Released;
                }
            }
            Record::Progress { claim_id, progress } => {
                if let Some(e) = self.entries.get_mut(&key) {
                    let holds =
                        matches!(&e.state, State::Pending { claim_id: c, .. } if c == claim_id);
                    let further = e
                        .progress
                        .as_ref()
                        .is_none_or(|p| p.written < progress.written);
                    if holds && further {
                        e.progress = Some(progress.clone());
                    }
                }
            }
        }
    }

    /// How far earlier claims of `key`'s request got with its fan-out.
    pub fn progress(&self, key: &Key) -> Option<Progress> {
        self.entries.get(key).and_then(|e| e.progress.clone())
    }

    /// What a publisher holding `claim` (if it wrote one) should do with
    /// `key` and `request` at `now_ms` (its clock).
    pub fn lookup(
        &self,
        key: &Key,
        request: &RequestHash,
        claim: Option<&str>,
        now_ms: i64,
    ) -> Lookup {
        let Some(e) = self
            .entries
            .get(key)
            .filter(|e| e.since_ms >= now_ms.saturating_sub(self.window_ms))
        else {
            return Lookup::Free;
        };
        match &e.state {
            State::Pending {
                claim_id,
                lease_until_ms,
            } if Some(claim_id.as_str()) == claim => {
                if now_ms.saturating_add(self.write_budget_ms) <= *lease_until_ms {
                    Lookup::Owned
                } else if *lease_until_ms < now_ms {
                    // Read back too late: claim again.
                    Lookup::Free
                } else {
                    // Too little lease left to write safely: wait for it
                    // to end, then claim again.
                    Lookup::Wait {
                        until_ms: *lease_until_ms,
                    }
                }
            }
            _ if e.request != *request => Lookup::Conflict,
            State::Done(answer) => Lookup::Done(answer.clone()),
            State::Released => Lookup::Free,
            State::Pending { lease_until_ms, .. } if *lease_until_ms < now_ms => Lookup::Free,
            State::Pending { lease_until_ms, .. } => Lookup::Wait {
                until_ms: *lease_until_ms,
            },
        }
    }

    /// Whether `claim` still holds `key` with at least the write budget of
    /// lease left at `now_ms` (checked again before each write).
    pub fn holds(&self, key: &Key, claim: &str, now_ms: i64) -> bool {
        self.entries.get(key).is_some_and(|e| {
            matches!(&e.state, State::Pending { claim_id, lease_until_ms }
                if claim_id == claim && now_ms.saturating_add(self.write_budget_ms) <= *lease_until_ms)
        })
    }

    fn insert(&mut self, key: Key, entry: Entry) {
        self.order.push_back((key, entry.since_ms));
        self.entries.insert(key, entry);
        while self.entries.len() > self.capacity {
            let Some((old, since)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&old).is_some_and(|e| e.since_ms == since) {
                self.entries.remove(&old);
            }
        }
        // Stale pairs (replaced or released keys) must not pile up.
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order
                .retain(|(k, since)| entries.get(k).is_some_and(|e| e.since_ms == *since));
        }
    }

    /// Forgets keys claimed before the window that ends at `now_ms`.
    fn expire(&mut self, now_ms: i64) {
        let oldest = now_ms.saturating_sub(self.window_ms);
        while let Some(&(key, since)) = self.order.front() {
            if since >= oldest {
                break;
            }
            self.order.pop_front();
            if self.entries.get(&key).is_some_and(|e| e.since_ms == since) {
                self.entries.remove(&key);
            }
        }
    }
}
