//! Schedules: what chooses each step (a seed or a shrinkable list), the
//! weighted random step itself, and running a schedule to the end.

use super::{Mode, World};
use crate::machine::Input;

/// Picks among `n` options; a proptest vector or a seeded generator.
pub trait Chooser {
    /// A number in `0..n` (`n >= 1`).
    fn pick(&mut self, n: usize) -> usize;
}

/// Choices from a seed (xorshift64*).
pub struct Seeded(pub u64);

impl Chooser for Seeded {
    fn pick(&mut self, n: usize) -> usize {
        let mut x = self.0 | 1;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

/// Choices from a list (proptest shrinks it); once it runs out, from a
/// generator seeded by the list's length.
pub struct Scripted(pub Vec<u16>, pub usize);

impl Chooser for Scripted {
    fn pick(&mut self, n: usize) -> usize {
        self.1 += 1;
        match self.0.get(self.1 - 1) {
            Some(&v) => v as usize % n,
            None => Seeded((self.1 as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).pick(n),
        }
    }
}

/// What one step does.
#[derive(Clone, Copy)]
enum Kind {
    FeedEvents,
    FeedRetry,
    Answer,
    Land,
    Scan,
    Timers,
    Commit,
    Advance,
    Publish,
    Flip,
    Late,
    Crash,
    Stop,
}

impl<C: Chooser> World<C> {
    /// One random step; `false` when nothing was possible.
    pub fn step(&mut self, chaos: bool) -> bool {
        // Weighted kinds; the last four (five with stops) only while the
        // chaos lasts. Without stops the choices are those of the seeds
        // kept as regression cases.
        const KINDS: [Kind; 21] = [
            Kind::FeedEvents,
            Kind::FeedEvents,
            Kind::FeedEvents,
            Kind::FeedRetry,
            Kind::FeedRetry,
            Kind::Answer,
            Kind::Answer,
            Kind::Land,
            Kind::Land,
            Kind::Scan,
            Kind::Timers,
            Kind::Commit,
            Kind::Advance,
            Kind::Land,
            Kind::Publish,
            Kind::Publish,
            Kind::Publish,
            Kind::Flip,
            Kind::Late,
            Kind::Crash,
            Kind::Stop,
        ];
        let n = match (chaos, self.stops) {
            (true, true) => KINDS.len(),
            (true, false) => KINDS.len() - 1,
            (false, _) => 14,
        };
        let progressed = match KINDS[self.choose.pick(n)] {
            Kind::FeedEvents => self.feed(0),
            Kind::FeedRetry => self.feed(1),
            Kind::Answer => {
                let due: Vec<usize> = (0..self.attempts.len())
                    .filter(|&k| self.attempts[k].due <= self.now)
                    .collect();
                if due.is_empty() {
                    false
                } else {
                    let k = due[self.choose.pick(due.len())];
                    self.answer(k);
                    true
                }
            }
            Kind::Land => {
                let had = !self.writes.is_empty();
                self.land();
                had
            }
            Kind::Scan => {
                if self.scans.is_empty() {
                    false
                } else {
                    let k = self.choose.pick(self.scans.len());
                    self.scan(k);
                    true
                }
            }
            Kind::Timers => self.fire_timers(),
            Kind::Commit => {
                // Not progress: the partition may be quiet with commits going on.
                self.commit();
                false
            }
            Kind::Advance => self.advance(),
            Kind::Publish => {
                // Bursts, so lanes overflow while their head is in flight.
                for _ in 0..1 + self.choose.pick(4) {
                    self.publish();
                }
                true
            }
            Kind::Flip => self.flip_endpoint(),
            Kind::Late if self.graceful => false,
            Kind::Late => {
                if let Some((target, env)) = self.late.pop_front() {
                    self.append(target, env);
                    true
                } else {
                    false
                }
            }
            Kind::Stop => {
                self.stop();
                true
            }
            Kind::Crash => {
                if self.choose.pick(2) == 0 && !self.graceful {
                    self.crash();
                } else {
                    self.rebalance();
                }
                true
            }
        };
        self.input(Input::Maintain);
        progressed
    }

    pub(super) fn fire_timers(&mut self) -> bool {
        let mut fired = false;
        if self.catch_up_asked {
            self.catch_up_asked = false;
            let high = self.retry.len() as i64;
            self.input(Input::CatchUpTarget { low: 0, high });
            fired = true;
        }
        for ep in std::mem::take(&mut self.syncs) {
            // A sync sometimes fails (the worker then says `false`); when it
            // succeeds, the registry has read everything written before it.
            if self.choose.pick(4) == 0 {
                self.input(Input::RegistrySynced(ep, false));
            } else {
                if self.dir.lagging.remove(&*ep) {
                    self.dir.version += 1;
                }
                self.input(Input::RegistrySynced(ep, true));
            }
            fired = true;
        }
        let now = self.now;
        let (ready, rest): (Vec<_>, Vec<_>) = self.timers.drain(..).partition(|(at, _)| *at <= now);
        self.timers = rest;
        for (_, ep) in ready {
            self.input(Input::Wake(ep));
            fired = true;
        }
        fired
    }

    /// Moves time to the next due attempt or timer.
    fn advance(&mut self) -> bool {
        let next = self
            .attempts
            .iter()
            .map(|a| a.due)
            .chain(self.timers.iter().map(|t| t.0))
            .filter(|&t| t > self.now)
            .min();
        match next {
            Some(t) => {
                self.now = t;
                true
            }
            None => {
                self.now += 50;
                false
            }
        }
    }

    fn flip_endpoint(&mut self) -> bool {
        let i = self.choose.pick(self.eps.len());
        let name = self.eps.keys().nth(i).expect("endpoint").clone();
        let ep = self.eps.get_mut(&name).expect("endpoint");
        ep.mode = match self.choose.pick(8) {
            0..=2 => Mode::Healthy,
            3 | 4 => Mode::Down,
            5 | 6 => Mode::Flaky,
            _ => Mode::Refusing,
        };
        true
    }

    /// Runs `n` random steps (publishing, failing, crashing), then a final
    /// crash (a drain, if graceful) so only committed state and landed
    /// writes remain.
    pub fn run(&mut self, n: usize) {
        for _ in 0..n {
            self.step(true);
        }
        if self.graceful {
            self.drain();
        } else {
            self.crash();
        }
    }

    /// Every endpoint recovers (healthy, enabled); run until nothing is left
    /// to do; then every published event must be delivered or dead-lettered.
    pub fn heal_and_check(&mut self) {
        for (name, ep) in self.eps.iter_mut() {
            ep.mode = Mode::Healthy;
            if !ep.enabled {
                ep.enabled = true;
                let e = self.dir.endpoints.get_mut(name).expect("endpoint");
                e.1 = true;
                e.2 += 1;
            }
        }
        self.dir.version += 1;
        while let Some((target, env)) = self.late.pop_front() {
            self.append(target, env);
        }
        self.input(Input::RegistryChanged);
        let mut idle = 0;
        for _i in 0..2_000_000 {
            self.heal_steps += 1;
            if self.step(false) {
                idle = 0;
            } else {
                idle += 1;
                if idle > 400 && self.quiet() {
                    break;
                }
            }
        }
        assert!(
            self.quiet(),
            "the partition never went quiet: attempts {:?}, writes {}, scans {}, pos {:?} of ({}, {}), timers {:?}, paused {}\n{}",
            self.attempts.iter().map(|a| (a.event.envelope.event_id.clone(), a.due - self.now)).collect::<Vec<_>>(),
            self.writes.len(),
            self.scans.len(),
            self.pos,
            self.events.len(),
            self.retry.len(),
            self.timers,
            self.paused,
            self.core.describe()
        );
        let lost: Vec<&String> = self
            .published
            .keys()
            .filter(|id| !self.delivered.contains(*id) && !self.dead.contains(*id))
            .collect();
        assert!(lost.is_empty(), "lost {} events: {lost:?}", lost.len());
    }

    fn quiet(&self) -> bool {
        self.attempts.is_empty()
            && self.writes.is_empty()
            && self.scans.is_empty()
            && self.pos[0] as usize == self.events.len()
            && self.pos[1] as usize == self.retry.len()
            && self.core.held() == 0
            // Every lane retires once it holds nothing (no stranded copies).
            && self.core.lane_count() == 0
    }
}
