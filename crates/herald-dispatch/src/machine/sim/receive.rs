//! The simulated receivers: one answer per request (a batch shares it),
//! with the order check every ordered endpoint's requests must pass.

use std::collections::HashSet;

use herald_core::retry::Verdict;

use super::{Chooser, InFlight, Mode, World};
use crate::attempt::{Event, Outcome};
use crate::machine::Input;

impl<C: Chooser> World<C> {
    /// The receiver answers one attempt that is due (a batch: one answer
    /// for all of its events).
    pub(super) fn answer(&mut self, k: usize) {
        let InFlight {
            endpoint,
            event,
            batch,
            due,
            wait,
        } = self.attempts.swap_remove(k);
        self.now = self.now.max(due);
        let mut members: Vec<Event> = std::iter::once(event).chain(batch).collect();
        let first = members[0].envelope.event_id.clone();
        let ep_name = self.published[&first].0.clone();
        let ep = &self.eps[&ep_name];
        // Events earlier in the same request count as sent before.
        let mut sent_with: HashSet<&str> = HashSet::new();
        for m in &members {
            let id = m.envelope.event_id.as_str();
            let (name, index) = &self.published[id];
            assert_eq!(name, &ep_name, "a batch mixed endpoints");
            if ep.ordered {
                for earlier in &self.per_endpoint[&ep_name][..*index] {
                    assert!(
                        self.delivered.contains(earlier)
                            || self.dead.contains(earlier)
                            || sent_with.contains(earlier.as_str()),
                        "order: {id} of {ep_name} sent before {earlier} was delivered or dead-lettered"
                    );
                }
            }
            sent_with.insert(id);
        }
        self.sends += 1;
        if members.len() > 1 {
            self.batched_sends += 1;
        }
        if self.trace {
            eprintln!(
                "[{}] SEND {first} (+{}) of {ep_name} mode {:?}",
                self.now,
                members.len() - 1,
                ep.mode
            );
        }
        let status = match ep.mode {
            Mode::Healthy => 200,
            Mode::Down => 503,
            Mode::Flaky if self.sends.is_multiple_of(2) => 503,
            Mode::Flaky => 200,
            Mode::Refusing => 410,
        };
        for m in &mut members {
            let state = m.envelope.attempt.get_or_insert_with(Default::default);
            state.attempts += 1;
            if state.first_attempt_ms == 0 {
                state.first_attempt_ms = self.now;
            }
            state.last_attempt_ms = self.now;
            state.last_status = status;
        }
        let outcome = match status {
            200 => {
                for m in &members {
                    if !self.delivered.insert(m.envelope.event_id.clone()) {
                        if self.trace {
                            eprintln!("[{}] RE-SENT {}", self.now, m.envelope.event_id);
                        }
                        self.resends += 1;
                    }
                }
                Outcome::Delivered
            }
            410 => Outcome::Failed {
                verdict: Verdict::Final,
                retry_after: None,
            },
            _ => Outcome::Failed {
                verdict: Verdict::Retry,
                retry_after: None,
            },
        };
        let mut members = members.into_iter();
        let event = members.next().expect("a first event");
        self.input(Input::Attempted {
            endpoint,
            event,
            batch: members.collect(),
            outcome,
            wait,
        });
    }
}
