//! The group watch: a dispatcher whose consumer group does not settle
//! leaves it and joins again.
//!
//! librdkafka reports the consumer's join state in its statistics (every
//! `statistics.interval.ms`). On a healthy broker a rebalance settles within
//! the rebalance timeout (`max.poll.interval.ms`). tansu 0.6.0's coordinator
//! can lose a group's leader: when the member it chose as leader leaves
//! (a scale-down), the group stays forming around a leader that never
//! rejoins, and the members left behind get no partitions, for good
//! (`tests/fleet.rs`). A member that has not been steady for twice the
//! rebalance timeout therefore unsubscribes (leaving the group) and
//! subscribes again with a new member id, which clears the stall when the
//! coordinator forms the group afresh; a [`Nudge`] goes along, for a
//! leader tansu recorded after evicting its member, which a lone rejoin
//! does not clear. A rejoin revokes nothing it could keep (an
//! unsettled member holds no assignment it may use) and costs the other
//! members one rebalance.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use herald_core::config::KafkaConfig;
use rdkafka::consumer::Consumer;
use tokio::sync::Notify;

/// How long a group may stay unsettled before this member rejoins: twice
/// the rebalance timeout (`max.poll.interval.ms`, 30 s unless
/// `kafka.client` sets it).
pub fn limit(kafka: &KafkaConfig) -> Duration {
    let rebalance_ms = kafka
        .client
        .get("max.poll.interval.ms")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(30_000);
    Duration::from_millis(2 * rebalance_ms)
}

/// Tracks how long the consumer has not been steady.
pub struct SettleWatch {
    limit: Duration,
    unsteady_since: Mutex<Option<Instant>>,
    rejoin: Notify,
}

impl SettleWatch {
    /// A watch that asks for a rejoin after `limit` without a steady state.
    pub fn new(limit: Duration) -> Self {
        Self {
            limit,
            unsteady_since: Mutex::new(None),
            rejoin: Notify::new(),
        }
    }

    /// Notes librdkafka's join state at `now`; asks for a rejoin (once per
    /// `limit`) when it has not been `steady` for `limit`.
    pub fn observe(&self, join_state: &str, now: Instant) {
        let mut since = self
            .unsteady_since
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if decide(&mut since, join_state, now, self.limit) {
            self.rejoin.notify_one();
        }
    }

    /// Resolves when a rejoin is asked for.
    pub async fn rejoin_requested(&self) {
        self.rejoin.notified().await;
    }
}

/// The pure rule: updates when the unsteady spell began; true when it has
/// lasted `limit` (and starts a new spell, so a rejoin is asked for at most
/// once per `limit`).
fn decide(since: &mut Option<Instant>, join_state: &str, now: Instant, limit: Duration) -> bool {
    if join_state == "steady" {
        *since = None;
        return false;
    }
    let began = *since.get_or_insert(now);
    if now.duration_since(began) >= limit {
        *since = Some(now);
        return true;
    }
    false
}

/// Leaves the group and joins it again with a new member id, with a
/// [`Nudge`] alongside.
pub fn rejoin<C: Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
    consumer: &C,
    topics: &[&str],
    nudge: &Nudge,
) {
    tracing::warn!(
        "the consumer group has not settled for twice the rebalance timeout; leaving it and joining again \
         (a broker coordinator that lost the group's leader, e.g. tansu 0.6.0)"
    );
    consumer.unsubscribe();
    if let Err(e) = consumer.subscribe(topics) {
        tracing::error!(error = %e, "cannot subscribe again after leaving an unsettled group");
    }
    nudge.send();
}

/// How long a nudge stays in the group: long enough to overlap the
/// rejoin's join (tansu holds a follower's join about 3 s).
const NUDGE_FOR: Duration = Duration::from_secs(8);

/// A second, short-lived member of a group, sent in with a rejoin.
///
/// tansu 0.6.0 can record as the group's leader a member it has since
/// evicted (one whose late heartbeat it answered by evicting it). It clears
/// such a leader only when it reloads the group from storage, which two
/// requests for the group arriving together cause; a lone member that
/// rejoins sends one request at a time and stays a follower of the dead
/// leader for good (`tests/broker_pause.rs`). The nudge's join arrives
/// while the rejoin's is held. It reads nothing (its partitions are paused)
/// and commits nothing (auto-commit and offset store are off), then leaves.
/// On a healthy broker it costs the group two rebalances.
#[derive(Clone)]
pub struct Nudge {
    kafka: KafkaConfig,
    group: String,
    strategy: &'static str,
    topics: Vec<String>,
}

impl Nudge {
    /// A nudge for `group`, whose members subscribe to `topics` with the
    /// assignment `strategy`.
    pub fn new(kafka: &KafkaConfig, group: &str, strategy: &'static str, topics: &[&str]) -> Self {
        Self {
            kafka: kafka.clone(),
            group: group.to_string(),
            strategy,
            topics: topics.iter().map(|t| t.to_string()).collect(),
        }
    }

    /// Joins the group for [`NUDGE_FOR`] on a thread of its own, then leaves.
    pub fn send(&self) {
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("herald-group-nudge".into())
            .spawn(move || me.join_briefly());
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the group nudge");
        }
    }

    fn join_briefly(self) {
        use rdkafka::consumer::BaseConsumer;
        let mut cfg =
            herald_kafka::group_member_config(&self.kafka, &self.group, "herald-group-nudge");
        cfg.set("partition.assignment.strategy", self.strategy);
        let consumer: BaseConsumer = match cfg.create() {
            Ok(c) => c,
            Err(e) => return tracing::warn!(error = %e, "cannot create the group nudge"),
        };
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        if let Err(e) = consumer.subscribe(&topics) {
            return tracing::warn!(error = %e, "the group nudge cannot subscribe");
        }
        let until = Instant::now() + NUDGE_FOR;
        while Instant::now() < until {
            // Records it may have fetched are dropped: nothing is committed.
            let _ = consumer.poll(Duration::from_millis(100));
            if let Ok(a) = consumer.assignment() {
                if a.count() > 0 {
                    let _ = consumer.pause(&a);
                }
            }
        }
        consumer.unsubscribe();
        tracing::info!(group = %self.group, "group nudge left");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_once_per_limit_of_unsteadiness() {
        let limit = Duration::from_secs(60);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut since = None;
        assert!(!decide(&mut since, "wait-join", at(0), limit));
        assert!(!decide(&mut since, "wait-sync", at(59), limit));
        assert!(
            decide(&mut since, "wait-join", at(60), limit),
            "60 s unsteady"
        );
        assert!(
            !decide(&mut since, "wait-join", at(100), limit),
            "not again before another minute"
        );
        assert!(decide(&mut since, "wait-join", at(120), limit));
        // A steady moment resets the spell.
        assert!(!decide(&mut since, "steady", at(121), limit));
        assert!(!decide(&mut since, "wait-join", at(122), limit));
        assert!(!decide(&mut since, "wait-join", at(181), limit));
        assert!(decide(&mut since, "wait-join", at(182), limit));
    }
}
