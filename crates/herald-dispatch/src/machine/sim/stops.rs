//! How a partition's owner stops other than by a crash, as the node does
//! it: a retry or dead-letter write that fails for good (the core stops,
//! the node commits what its workers finished and restarts from committed
//! offsets), and a drain (SIGTERM: nothing new starts, requests already
//! sent may end and writes land until the deadline, the node commits and
//! restarts). Both run only when the world was built
//! [`World::with_stops`]; [`World::graceful_only`] keeps drains and
//! rebalances and leaves out every crash and failed write.

use super::{Chooser, InFlight, World};
use crate::attempt::Outcome;
use crate::machine::Input;

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
}
