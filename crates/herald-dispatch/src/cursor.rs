//! Position bookkeeping for one retry-topic partition, which the worker
//! reads once live and may re-read ("replay") from an earlier offset when a
//! lane that had to leave records behind has room again.
//!
//! Pure: the worker asks for a rewind, performs the seek the cursor returns,
//! and classifies each record it then reads.

/// Where the retry partition reader stands.
#[derive(Debug, Clone, Default)]
pub struct RetryCursor {
    /// One past the highest offset ever read (live).
    seen_until: Option<i64>,
    /// The replay in progress: offsets below `seen_until` being re-read.
    replay: Option<Replay>,
}

#[derive(Debug, Clone, Copy)]
struct Replay {
    /// The next offset the replay expects (or later).
    next: i64,
}

/// How to treat a record just read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// First time seen.
    Live,
    /// Re-read during a replay; `last` is true for the last record before
    /// the live position, after which the replay is complete.
    Replay {
        /// Whether this completes the replay.
        last: bool,
    },
}

impl RetryCursor {
    /// A cursor that has read nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// One past the highest offset read live, if any.
    pub fn seen_until(&self) -> Option<i64> {
        self.seen_until
    }

    /// Whether a replay is in progress.
    pub fn replaying(&self) -> bool {
        self.replay.is_some()
    }

    /// Classifies the record at `offset`.
    pub fn read(&mut self, offset: i64) -> Read {
        match self.seen_until {
            Some(s) if offset < s => {
                let last = offset + 1 >= s;
                if let Some(r) = &mut self.replay {
                    r.next = offset + 1;
                }
                if last {
                    self.replay = None;
                }
                Read::Replay { last }
            }
            _ => {
                // Records fetched before a seek still arrive live; the
                // replay then runs up to the new live position.
                self.seen_until = Some(offset + 1);
                Read::Live
            }
        }
    }

    /// Asks to re-read from `from`; returns the offset to seek to, if a
    /// seek is needed (nothing to do when `from` is not yet read, or a
    /// replay already in progress will reach it).
    pub fn rewind(&mut self, from: i64) -> Option<i64> {
        let seen = self.seen_until?;
        if from >= seen {
            return None;
        }
        match &mut self.replay {
            Some(r) if r.next <= from => None,
            Some(r) => {
                r.next = from;
                Some(from)
            }
            None => {
                self.replay = Some(Replay { next: from });
                Some(from)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_then_replay_then_live() {
        let mut c = RetryCursor::new();
        assert_eq!(c.rewind(0), None, "nothing read yet");
        for o in 10..15 {
            assert_eq!(c.read(o), Read::Live);
        }
        assert_eq!(c.rewind(20), None, "not read yet: will come live");
        assert_eq!(c.rewind(12), Some(12));
        assert!(c.replaying());
        assert_eq!(c.rewind(13), None, "the replay will reach 13");
        assert_eq!(c.rewind(11), Some(11), "an earlier rewind seeks again");
        assert_eq!(c.read(11), Read::Replay { last: false });
        assert_eq!(c.read(12), Read::Replay { last: false });
        assert_eq!(c.read(13), Read::Replay { last: false });
        assert_eq!(c.read(14), Read::Replay { last: true });
        assert!(!c.replaying());
        assert_eq!(c.read(15), Read::Live);
        assert_eq!(c.seen_until(), Some(16));
    }

    #[test]
    fn records_in_flight_before_a_seek_stay_live() {
        let mut c = RetryCursor::new();
        c.read(0);
        assert_eq!(c.rewind(0), Some(0));
        // Records fetched before the seek still arrive, live.
        assert_eq!(c.read(1), Read::Live);
        // The replay then re-reads 0 and 1.
        assert_eq!(c.read(0), Read::Replay { last: false });
        assert_eq!(c.read(1), Read::Replay { last: true });
    }
}
