//! How a partition's owner stops: a crash (all memory lost, a prefix of
//! the producer's writes lands, some later as a zombie's), a rebalance that
//! gives the partition back, and, as the node does it, a retry or
//! dead-letter write that fails for good (the core stops, the node commits
//! what its workers finished and restarts from committed offsets) and a
//! drain (SIGTERM: nothing new starts, requests already sent may end and
//! writes land until the deadline, the node commits and restarts). The
//! last two run only when the world was built
//! [`World::with_stops`]; [`World::graceful_only`] keeps drains and
//! rebalances and leaves out every crash and failed write.

use std::collections::HashSet;

use super::{Chooser, InFlight, World};
use crate::attempt::Outcome;
use crate::machine::{Action, CatchUp, Input, Partition, Trackers};
use crate::offsets::{OffsetTracker, SkipSet};

impl<C: Chooser> World<C> {
    /// Adds failed writes and drains to the random schedule.
    pub fn with_stops(mut self) -> Self {
        self.stops = true;
        self
    }

    /// Only drains and rebalances: no crash, no failed write, no zombie
    /// write. Such a schedule must never deliver an event twice.
    pub fn graceful_only(mut self) -> Self {
        self.stops = true;
        self.graceful = true;
        self
    }

    /// A stop of the random schedule: a drain, or (unless graceful) the
    /// producer's oldest write failing for good.
    pub(super) fn stop(&mut self) {
        if !self.graceful && !self.writes.is_empty() && self.choose.pick(2) == 0 {
            self.fail_write();
        } else {
            self.drain();
        }
    }

    /// The producer's oldest write fails for good. The sink's producer is
    /// gapless (`enable.gapless.guarantee`), so no later write lands unless
    /// this one did; a broker error can still leave the failed one stored
    /// (the schedule picks).
    fn fail_write(&mut self) {
        let Some((id, target, env)) = self.writes.pop_front() else {
            return;
        };
        self.write_failures += 1;
        let stored = self.choose.pick(2) == 0;
        if stored {
            self.append(target, env);
        }
        self.input(Input::Written {
            id,
            result: Err("simulated: the broker refused the write".into()),
        });
        assert!(
            self.fatal.take().is_some(),
            "a write failed for good and the core went on"
        );
        // The node commits what every worker finished, then restarts.
        self.commit();
        if !stored {
            self.writes.clear();
        }
        self.lose_memory();
    }

    /// SIGTERM: the core drains until the deadline, the node commits what
    /// was finished, and the partition starts again from committed offsets.
    pub(super) fn drain(&mut self) {
        self.drains += 1;
        if self.trace {
            eprintln!("[{}] DRAIN", self.now);
        }
        self.draining = true;
        self.input(Input::Drain);
        // Attempts still waiting out their delay are aborted.
        let now = self.now;
        let (waiting, sent): (Vec<InFlight>, Vec<InFlight>) =
            self.attempts.drain(..).partition(|a| a.due > now);
        self.attempts = sent;
        for a in waiting {
            self.input(Input::Attempted {
                endpoint: a.endpoint,
                event: a.event,
                batch: a.batch,
                outcome: Outcome::Aborted,
                wait: a.wait,
            });
        }
        // Until the deadline, requests end and writes land (a graceful-only
        // schedule's deadline never cuts a write).
        loop {
            let can_answer = !self.attempts.is_empty();
            let can_land = !self.writes.is_empty();
            if !can_answer && !can_land {
                break;
            }
            if self.choose.pick(6) == 0 && !(self.graceful && can_land) {
                break;
            }
            if can_answer && (!can_land || self.choose.pick(2) == 0) {
                let k = self.choose.pick(self.attempts.len());
                self.answer(k);
            } else {
                self.land();
            }
        }
        assert!(self.fatal.is_none(), "the core stopped during a drain");
        self.commit();
        self.draining = false;
        // Requests cut by the deadline never reach the receiver.
        self.attempts.clear();
        self.lose_memory();
    }

    /// Drops the core and everything in flight; a prefix of the producer's
    /// writes has landed, some more land later (zombie writes).
    pub(super) fn crash(&mut self) {
        self.crashes += 1;
        self.lose_memory();
    }

    /// The process ends: a prefix of the producer's writes lands, some more
    /// may land later, and the partition restarts from committed state.
    pub(super) fn lose_memory(&mut self) {
        if self.trace {
            eprintln!(
                "[{}] CRASH with {} writes pending",
                self.now,
                self.writes.len()
            );
        }
        let landed = self.choose.pick(self.writes.len() + 1);
        let writes: Vec<_> = self.writes.drain(..).collect();
        for (i, (_, target, env)) in writes.into_iter().enumerate() {
            if i < landed {
                self.append(target, env);
            } else if self.choose.pick(2) == 0 {
                self.late.push_back((target, env));
            } else {
                break; // the rest never lands, in order
            }
        }
        self.restart();
    }

    pub(super) fn restart(&mut self) {
        self.attempts.clear();
        self.scans.clear();
        self.timers.clear();
        self.syncs.clear();
        self.catch_up_asked = false;
        let mut done = [HashSet::new(), HashSet::new()];
        for (t, (offset, meta)) in self.committed.iter().enumerate() {
            if let Some(o) = offset {
                let skip = SkipSet::decode(*o, meta);
                done[t].extend(0..*o);
                done[t].extend(
                    (*o..)
                        .take_while(|x| !skip.is_exhausted(*x))
                        .filter(|x| skip.should_skip(*x)),
                );
            }
        }
        self.committed_done = done;
        let start = |c: &(Option<i64>, String)| {
            OffsetTracker::resume(
                c.0,
                c.0.map_or_else(SkipSet::default, |o| SkipSet::decode(o, &c.1)),
            )
        };
        self.trackers = Trackers {
            events: start(&self.committed[0]),
            retry: start(&self.committed[1]),
        };
        self.pos = [
            self.committed[0].0.unwrap_or(0),
            self.committed[1].0.unwrap_or(0),
        ];
        // Sometimes the watermark query in the rebalance callback fails and
        // the core starts not knowing the retry partition's end (nor, with
        // nothing committed, its start).
        let catch_up = if self.choose.pick(4) == 0 {
            CatchUp::Unknown
        } else if (self.retry.len() as i64) > self.pos[1] {
            CatchUp::Until(self.retry.len() as i64)
        } else {
            CatchUp::None
        };
        if catch_up != CatchUp::Unknown {
            self.trackers.retry.start_at(0);
        }
        self.paused = catch_up != CatchUp::None;
        self.core.release_gauges();
        self.core = Partition::new(self.cfg.clone(), catch_up);
        let actions: Vec<Action> = self.core.poll_actions().collect();
        for a in actions {
            self.act(a);
        }
    }

    /// A rebalance that gives the partition back: suspend, commit, resume,
    /// and the consumer hands over again everything from the committed offsets.
    pub fn rebalance(&mut self) {
        if self.trace {
            eprintln!("[{}] REBALANCE", self.now);
        }
        self.input(Input::Suspend(true));
        self.commit();
        // The consumer resumes both topics on assignment; the core restates
        // its own pause when it resumes.
        self.paused = false;
        self.pos = [
            self.committed[0].0.unwrap_or(0),
            self.committed[1].0.unwrap_or(0),
        ];
        self.input(Input::Suspend(false));
    }
}
