//! Idle pausing on real consumers (the policy is [`crate::quiet`]): pausing
//! and resuming an assignment, the tokio timer of an async consumer loop,
//! and the process-wide nudge.
//!
//! A paused consumer fetches only in probes, so a record written while it
//! sleeps waits for the next probe (see [`crate::quiet`]). When the record
//! comes from this very process (`herald dev` runs ingest, the registry and
//! the dispatcher in one), there is no need to wait: every write through
//! [`crate::Producer`] calls [`nudge`], which wakes every paused consumer
//! of the process at once. Awake consumers cost the nudge one atomic load.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use herald_core::config::KafkaConfig;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::TopicPartitionList;
use tokio::sync::Notify;

use crate::quiet::{Fetching, Quiet};

/// Consumers of this process that are paused or probing.
static SLEEPERS: AtomicUsize = AtomicUsize::new(0);
/// Nudges so far (only counted while someone sleeps).
static NUDGES: AtomicU64 = AtomicU64::new(0);
/// Wakes the async consumers' [`QuietTimer::due`].
static NOTIFY: Notify = Notify::const_new();

/// Records are on their way from this process: every paused consumer of the
/// process fetches again now (and stays awake for its quiet time).
pub fn nudge() {
    if SLEEPERS.load(Ordering::Acquire) > 0 {
        NUDGES.fetch_add(1, Ordering::AcqRel);
        NOTIFY.notify_waiters();
    }
}

/// The `fetch.wait.max.ms` a consumer made from `config` uses (librdkafka's
/// default, 500 ms, when unset or unreadable).
pub fn fetch_wait(config: &rdkafka::ClientConfig) -> Duration {
    let ms = config
        .get("fetch.wait.max.ms")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(500);
    Duration::from_millis(ms)
}

/// How long [`set_fetching`] waits for the request that wakes a fetcher.
const WAKE_TIMEOUT: Duration = Duration::from_millis(200);

/// Pauses every partition assigned to `consumer`, or resumes them, except
/// those `keep_paused(topic, partition)` names (paused for other reasons).
///
/// A resume takes effect when the partition's broker thread next looks at
/// its partitions. librdkafka applies the resume on its main thread and
/// does not wake the broker thread, which, with nothing to fetch, sleeps up
/// to a second. So after resuming, this sends the partition's leader one
/// small request (a watermark query for the first resumed partition of
/// each topic; the answer is not used): the broker thread wakes to send it
/// and fetches at once. That request blocks the caller for one round trip
/// (at most 200 ms).
pub fn set_fetching<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    f: Fetching,
    keep_paused: impl Fn(&str, i32) -> bool,
) -> KafkaResult<()> {
    let assignment = consumer.assignment()?;
    match f {
        Fetching::Pause => consumer.pause(&assignment),
        Fetching::Resume => {
            let mut tpl = TopicPartitionList::new();
            let mut wake: Vec<(String, i32)> = Vec::new();
            for e in assignment.elements() {
                if !keep_paused(e.topic(), e.partition()) {
                    tpl.add_partition(e.topic(), e.partition());
                    if !wake.iter().any(|(t, _)| t == e.topic()) {
                        wake.push((e.topic().to_string(), e.partition()));
                    }
                }
            }
            // Synchronous: the resume is applied when this returns.
            consumer.resume(&tpl)?;
            for (topic, p) in wake {
                // Only the request matters; a failure leaves the resume to
                // the broker thread's next turn.
                let _ = consumer.fetch_watermarks(&topic, p, WAKE_TIMEOUT);
            }
            Ok(())
        }
    }
}

/// One consumer's [`Quiet`], counted among the process's sleepers while it
/// is not awake, and woken by [`nudge`]. `None` inside when pausing is off.
pub struct Idle {
    quiet: Option<Quiet>,
    /// Counted in [`SLEEPERS`].
    counted: bool,
    /// The [`NUDGES`] count this consumer has acted on.
    seen: u64,
}

impl Idle {
    /// As `kafka.idle_pause_after_ms` and `kafka.idle_probe_interval_ms`
    /// say, for a consumer whose fetches wait up to `fetch_wait`.
    pub fn configured(cfg: &KafkaConfig, fetch_wait: Duration) -> Self {
        Self {
            quiet: Quiet::configured(cfg, fetch_wait, Instant::now()),
            counted: false,
            seen: NUDGES.load(Ordering::Acquire),
        }
    }

    /// When [`Idle::tick`] has something to do next (`None`: never).
    pub fn deadline(&self) -> Option<Instant> {
        self.quiet.as_ref().map(Quiet::deadline)
    }

    /// Whether a [`nudge`] came since this consumer last looked.
    fn nudged(&self) -> bool {
        self.counted && NUDGES.load(Ordering::Acquire) != self.seen
    }

    /// Moves on at `now` (a nudge counts as a record): what to do with the
    /// partitions, if anything.
    pub fn tick(&mut self, now: Instant) -> Option<Fetching> {
        if self.nudged() {
            self.seen = NUDGES.load(Ordering::Acquire);
            return self.record(now);
        }
        let f = self.quiet.as_mut()?.tick(now);
        self.track();
        f
    }

    /// A record arrived: what to do with the partitions, if anything.
    pub fn record(&mut self, now: Instant) -> Option<Fetching> {
        let f = self.quiet.as_mut()?.record(now);
        self.track();
        f
    }

    /// The assignment changed: fetch, and count the quiet time anew.
    pub fn assigned(&mut self, now: Instant) {
        if let Some(q) = self.quiet.as_mut() {
            q.assigned(now);
        }
        self.track();
    }

    /// Whether fetching is paused (between probes).
    pub fn paused(&self) -> bool {
        self.quiet.as_ref().is_some_and(Quiet::paused)
    }

    /// Keeps [`SLEEPERS`] in step with whether this consumer is awake.
    fn track(&mut self) {
        let asleep = self.quiet.as_ref().is_some_and(|q| !q.awake());
        if asleep != self.counted {
            if asleep {
                self.seen = NUDGES.load(Ordering::Acquire);
                SLEEPERS.fetch_add(1, Ordering::AcqRel);
            } else {
                SLEEPERS.fetch_sub(1, Ordering::AcqRel);
            }
            self.counted = asleep;
        }
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        if self.counted {
            SLEEPERS.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// [`Idle`] with a tokio timer, for a consumer read in an async loop: a
/// `select!` branch awaits [`QuietTimer::due`], then calls
/// [`QuietTimer::tick`]; every record goes through [`QuietTimer::record`].
/// The timer is re-armed only when it fires (records move the deadline
/// later, never earlier), so reading a record touches no timer.
pub struct QuietTimer {
    idle: Idle,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl QuietTimer {
    /// See [`Idle::configured`].
    pub fn new(cfg: &KafkaConfig, fetch_wait: Duration) -> Self {
        let idle = Idle::configured(cfg, fetch_wait);
        let sleep = Box::pin(tokio::time::sleep_until(to_tokio(idle.deadline())));
        Self { idle, sleep }
    }

    /// Resolves when there is something to [`QuietTimer::tick`]: the
    /// deadline, or a [`nudge`] while asleep. Never when pausing is off.
    pub async fn due(&mut self) {
        if self.idle.quiet.is_none() {
            return std::future::pending().await;
        }
        let notified = NOTIFY.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.idle.nudged() {
            return;
        }
        if self.idle.counted {
            tokio::select! {
                () = self.sleep.as_mut() => {}
                () = notified => {}
            }
        } else {
            self.sleep.as_mut().await;
        }
    }

    /// After [`QuietTimer::due`]: what to do with the partitions, if
    /// anything; re-arms the timer.
    pub fn tick(&mut self) -> Option<Fetching> {
        let f = self.idle.tick(Instant::now());
        self.rearm();
        f
    }

    /// The assignment changed: fetch, and count the quiet time anew.
    pub fn assigned(&mut self) {
        self.idle.assigned(Instant::now());
        self.rearm();
    }

    /// A record arrived: what to do with the partitions, if anything.
    pub fn record(&mut self) -> Option<Fetching> {
        self.idle.record(Instant::now())
    }

    /// Whether fetching is paused (between probes).
    pub fn paused(&self) -> bool {
        self.idle.paused()
    }

    fn rearm(&mut self) {
        self.sleep.as_mut().reset(to_tokio(self.idle.deadline()));
    }
}

/// A deadline on tokio's clock (a year off when there is none).
fn to_tokio(deadline: Option<Instant>) -> tokio::time::Instant {
    match deadline {
        Some(d) => tokio::time::Instant::from_std(d),
        None => tokio::time::Instant::now() + Duration::from_secs(86_400 * 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> KafkaConfig {
        KafkaConfig {
            idle_pause_after_ms: 100,
            idle_probe_interval_ms: 1_000,
            ..KafkaConfig::default()
        }
    }

    // One test owns the process-wide counters (tests run on threads).
    #[test]
    fn a_nudge_wakes_sleepers_and_only_counts_while_someone_sleeps() {
        let t0 = Instant::now();
        let mut a = Idle::configured(&config(), Duration::from_millis(5));
        let before = NUDGES.load(Ordering::Acquire);
        nudge();
        assert_eq!(NUDGES.load(Ordering::Acquire), before, "nobody sleeps");
        // a sleeps after its quiet time; a nudge wakes it like a record.
        let at = a.deadline().expect("enabled");
        assert_eq!(a.tick(at.max(t0)), Some(Fetching::Pause));
        assert!(a.counted && SLEEPERS.load(Ordering::Acquire) >= 1);
        assert!(!a.nudged());
        nudge();
        assert!(a.nudged());
        let now = Instant::now().max(at);
        assert_eq!(a.tick(now), Some(Fetching::Resume));
        assert!(!a.counted && !a.paused());
        assert_eq!(a.deadline(), Some(now + Duration::from_millis(100)));
        // Asleep again, then dropped: no longer counted.
        assert_eq!(
            a.tick(now + Duration::from_millis(100)),
            Some(Fetching::Pause)
        );
        let sleepers = SLEEPERS.load(Ordering::Acquire);
        drop(a);
        assert_eq!(SLEEPERS.load(Ordering::Acquire), sleepers - 1);
        // Off: never counted, never due.
        let off = Idle::configured(&KafkaConfig::default(), Duration::from_millis(5));
        assert_eq!(off.deadline(), None);
    }
}
