//! Tests that show the known limits listed in docs/delivery-semantics.md
//! (section "Known limits"), through the deterministic partition simulation
//! in `sim/`: each test drives one scripted scenario in simulated time and
//! asserts the limit's effect, then lets every endpoint recover and checks
//! that nothing was lost.
//!
//! The simulated retry policy (`sim/mod.rs`): after a failed 1st and 2nd
//! attempt the retry waits 10 and 40 ms (in memory), after the 3rd 3 s
//! (long: an ordered lane not yet in the retry topic moves there), and an
//! event gives up when its 9th attempt fails. Five failures in a row open
//! the circuit for 200 ms.

use super::sim::{Seeded, World};

/// Longest wait the simulated policy keeps in memory (`in_memory_max_ms`).
const IN_MEMORY_MAX_MS: i64 = 100;

/// Attempts the simulated schedule allows (8 retries after the first).
const SCHEDULED_ATTEMPTS: u32 = 9;

/// Fails every attempt of `id` (letting simulated time pass through retry
/// delays and circuit cool-downs) until it has failed `n` more times. The
/// last failure is answered without letting time pass, so what it decided
/// (a write, a scan) is still pending.
fn fail_times(w: &mut World<Seeded>, id: &str, n: usize) {
    let mut failed = 0;
    for _ in 0..100_000 {
        if failed == n {
            return;
        }
        if w.attempts_in_flight_for(id) == 1 {
            w.answer_event(id, false);
            failed += 1;
            if failed < n {
                w.pass_time(0);
            }
        } else {
            w.pass_time(10);
        }
    }
    panic!("{id} failed only {failed} of {n} times");
}

/// `ep-2` (ordered): `b1` fails three times and goes through the retry
/// topic (offset 1), and `b2` follows it there (offset 2).
fn through_the_retry_topic(w: &mut World<Seeded>) -> (String, String) {
    let b1 = w.publish_to(2);
    w.pass_time(0);
    fail_times(w, &b1, 3);
    w.pass_time(0);
    let b2 = w.publish_to(2);
    w.pass_time(0);
    assert_eq!(w.retry_records(), 3);
    (b1, b2)
}

/// The retry topic's commit stays at offset 0 (the events topic's does not,
/// at 3), and a commit carries the finished records above it as metadata.
fn commit_pinned_at_the_first_retry_record(w: &mut World<Seeded>) {
    assert_eq!(
        w.retry_committable(),
        Some(0),
        "the retry topic's commit stays at the first record"
    );
    assert_eq!(
        w.events_committable(),
        Some(3),
        "the events topic's commit does not"
    );
    w.commit_now();
    let (committed, metadata) = w.retry_committed();
    assert_eq!(committed, Some(0));
    assert!(
        metadata > 0,
        "the finished records above it are in the metadata"
    );
}

/// Known limit 1 (first half): a head waiting out a long retry keeps its
/// retry-topic record unfinished, so the retry topic's committed offset
/// stays at that head (the events topic's does not). After a crash the next
/// incarnation re-reads the retry partition from there, but the records
/// above it that were finished are skipped through the commit metadata:
/// the cost is a re-read, not re-sends.
#[test]
fn a_head_waiting_out_a_long_retry_pins_the_retry_commit_but_finished_records_are_not_re_sent() {
    let mut w = World::new(Seeded(42), 3, 4, 100);
    // `ep-0`'s head fails three times: its next retry waits about 3 s, in
    // the retry topic (offset 0), and is read back and waits there.
    let head = w.publish_to(0);
    w.pass_time(0);
    fail_times(&mut w, &head, 3);
    w.pass_time(0);
    assert_eq!(w.retry_records(), 1);
    assert_eq!(w.attempts_made(&head), Some(3), "read back from offset 0");
    // `ep-2` (ordered too): `b1` takes the same path (offset 1), and `b2`
    // follows it through the retry topic (offset 2).
    let (b1, b2) = through_the_retry_topic(&mut w);
    // The head's 4th attempt (due first) fails: it waits out another long
    // retry, in memory. Then `ep-2` recovers: `b1` and `b2` are delivered,
    // their retry records finished.
    w.answer_event(&head, false);
    w.answer_event(&b1, true);
    w.pass_time(0);
    w.answer_event(&b2, true);
    w.pass_time(0);
    assert!(w.was_delivered(&b1) && w.was_delivered(&b2));
    let wait = w.wait_left(&head).expect("the head's attempt waits");
    assert!(
        wait > IN_MEMORY_MAX_MS,
        "the head waits out a long retry ({wait} ms)"
    );
    assert!(
        w.retry_unfinished(0),
        "the head's retry record is unfinished"
    );
    assert!(!w.retry_unfinished(1) && !w.retry_unfinished(2));
    commit_pinned_at_the_first_retry_record(&mut w);
    assert_eq!(w.pending_writes(), 0);
    let sends = w.sends;
    w.crash_losing_writes();
    // The next incarnation re-reads offsets 0..3: the head is attempted
    // again (from its record's attempt state), `b1` and `b2` are skipped.
    w.pass_time(0);
    assert_eq!(w.attempts_made(&head), Some(3));
    assert_eq!(
        (w.attempts_in_flight_for(&b1), w.attempts_in_flight_for(&b2)),
        (0, 0),
        "finished records are not attempted again"
    );
    assert_eq!(w.sends, sends, "nothing was sent again");
    w.answer_event(&head, true);
    w.heal_and_check();
    assert_eq!(w.resends, 0, "no delivery was repeated");
}

/// Known limit 1 (second half): the records above a waiting head that were
/// finished are skipped only while the commit metadata fits in 4000 bytes;
/// beyond that they are delivered again (duplicates, not loss). Here the
/// head of `ep-0` waits out a long retry while its later events pile up
/// unfinished in the retry topic, interleaved with `ep-2`'s events, which
/// are delivered: 1,600 alternating runs need more than the budget.
#[test]
fn beyond_the_metadata_budget_finished_retry_records_are_delivered_again() {
    let mut w = World::new(Seeded(42), 3, 4, 100);
    let head = w.publish_to(0);
    w.pass_time(0);
    fail_times(&mut w, &head, 3);
    w.pass_time(0);
    // `ep-2`'s lane goes through the retry topic too (and stays so: it
    // always holds an event from here on).
    let b1 = w.publish_to(2);
    w.pass_time(0);
    fail_times(&mut w, &b1, 3);
    w.pass_time(0);
    let mut previous = w.publish_to(2);
    w.pass_time(0);
    w.answer_event(&head, false);
    w.answer_event(&b1, true);
    w.pass_time(0);
    let pairs = 1_600;
    for _ in 0..pairs {
        w.publish_to(0);
        let next = w.publish_to(2);
        w.pass_time(0);
        w.answer_event(&previous, true);
        w.pass_time(0);
        previous = next;
    }
    assert!(
        w.wait_left(&head).expect("the head's attempt waits") > IN_MEMORY_MAX_MS,
        "the head still waits out a long retry"
    );
    assert_eq!(w.retry_records(), 3 + 2 * pairs);
    assert_eq!(w.retry_committable(), Some(0));
    w.commit_now();
    let (committed, metadata) = w.retry_committed();
    assert_eq!(committed, Some(0));
    assert!(
        (3_900..=4_000).contains(&metadata),
        "the metadata was cut at the budget ({metadata} bytes)"
    );
    w.crash_losing_writes();
    w.heal_and_check();
    assert!(
        w.resends > 0,
        "the finished records beyond the metadata were delivered again"
    );
    assert!(
        w.resends < pairs,
        "those the metadata covered were skipped ({} of {pairs} re-sent)",
        w.resends
    );
}

/// Known limit 2: an event's attempt state is persisted only when it is
/// written to the retry topic. An ordered head read back from there retries
/// in memory (its lane is durable); a crash loses those attempts, and the
/// next incarnation restarts the count from what the retry record carried,
/// so the event gets more requests than the schedule allows, and its dead
/// letter counts only the schedule's.
#[test]
fn attempts_a_head_makes_in_memory_are_lost_in_a_crash() {
    let mut w = World::new(Seeded(42), 1, 4, 100);
    let head = w.publish_to(0);
    w.pass_time(0);
    fail_times(&mut w, &head, 3);
    w.pass_time(0);
    assert_eq!(
        w.retry_records(),
        1,
        "the 3rd failure wrote it to the retry topic"
    );
    assert_eq!(w.attempts_made(&head), Some(3), "read back with 3 attempts");
    // Attempts 4 (then a 3 s wait) and 5 (then 20 ms, and the circuit
    // opens for 200 ms) fail in memory: nothing new is written.
    fail_times(&mut w, &head, 2);
    w.pass_time(200);
    assert_eq!(w.attempts_made(&head), Some(5));
    assert_eq!(
        w.retry_records(),
        1,
        "the in-memory attempts were not persisted"
    );
    assert_eq!(w.sends, 5);
    w.commit_now();
    w.crash_losing_writes();
    w.pass_time(0);
    assert_eq!(
        w.attempts_made(&head),
        Some(3),
        "after the crash the count restarts from the retry record"
    );
    // It fails to the end of its schedule: 6 more requests, 11 in all for a
    // schedule of 9 attempts, and the dead letter says 9.
    fail_times(&mut w, &head, (SCHEDULED_ATTEMPTS - 3) as usize);
    w.pass_time(0);
    assert_eq!(w.dead_letters_of(&head), 1);
    assert_eq!(w.dead_letter_attempts(&head), Some(SCHEDULED_ATTEMPTS));
    assert_eq!(w.sends, 5 + 6, "two attempts more than the schedule says");
    w.heal_and_check();
}

/// Known limit 2 (its last sentence): the maximum age still holds after a
/// crash, because it counts from the event's publish, not from the attempt
/// state the retry record carries. A restart more than the maximum age
/// (one hour here) after the publish dead-letters the event without
/// another request.
#[test]
fn after_a_crash_the_maximum_age_still_counts_from_publish() {
    let mut w = World::new(Seeded(42), 1, 4, 100);
    let head = w.publish_to(0);
    w.pass_time(0);
    fail_times(&mut w, &head, 3);
    w.pass_time(0);
    fail_times(&mut w, &head, 1);
    w.commit_now();
    w.crash_losing_writes();
    let sends = w.sends;
    w.pass_time(3_600_001);
    assert_eq!(w.sends, sends, "no request after its maximum age");
    assert_eq!(w.dead_letters_of(&head), 1);
    assert_eq!(
        w.dead_letter_attempts(&head),
        Some(3),
        "the attempts of the retry record, the in-memory one lost"
    );
    w.heal_and_check();
}

/// Known limit 3: the dead-letter follow-on policy for ordered endpoints is
/// kept in memory. The head of `ep-0` answers 410 Gone: it gives up, its
/// three followers are dead-lettered after it, and the endpoint is
/// disabled. The node crashes when only the head's and the first follower's
/// dead letters have landed. The next incarnation does not know the policy:
/// the remaining two followers are not dead-lettered; once the endpoint is
/// enabled again they are attempted and delivered, in order, one at a time.
#[test]
fn a_crash_during_the_dead_letter_follow_on_lets_the_rest_be_delivered_in_order() {
    let mut w = World::new(Seeded(42), 2, 8, 100);
    let ids: Vec<String> = (0..4).map(|_| w.publish_to(0)).collect();
    w.pass_time(0);
    assert_eq!(w.request_of(&ids[0]), vec![ids[0].clone()]);
    w.answer_gone(&ids[0]);
    assert_eq!(w.pending_writes(), 4, "the head and its three followers");
    w.land_writes(2);
    w.commit_now();
    w.crash_losing_writes();
    w.pass_time(0);
    assert_eq!(w.dead_letters_of(&ids[0]), 1);
    assert_eq!(w.dead_letters_of(&ids[1]), 1);
    assert_eq!(w.dead_count(), 2, "the rest are not dead-lettered");
    // The 410 disabled the endpoint (that is in the registry, not in
    // memory): the followers wait for it.
    assert_eq!(w.attempts_in_flight_for(&ids[2]), 0);
    w.enable(0);
    w.pass_time(0);
    assert_eq!(w.request_of(&ids[2]), vec![ids[2].clone()]);
    assert_eq!(w.attempts_in_flight_for(&ids[3]), 0, "in order");
    w.answer_event(&ids[2], true);
    w.pass_time(0);
    assert_eq!(w.request_of(&ids[3]), vec![ids[3].clone()]);
    w.answer_event(&ids[3], true);
    assert!(w.was_delivered(&ids[2]) && w.was_delivered(&ids[3]));
    w.heal_and_check();
    assert_eq!(w.dead_count(), 2);
    assert_eq!(w.dead_letters_of(&ids[2]) + w.dead_letters_of(&ids[3]), 0);
}

/// Known limit 3, without a 410 (the endpoint stays enabled): the head of
/// `ep-0` exhausts its schedule; its followers went to the retry topic with
/// it and were read back. They are dead-lettered after it, and the node
/// crashes when only the head's dead letter has landed. The next
/// incarnation reads the followers back and retries them normally, without
/// any operator action: each is attempted and delivered, in order.
#[test]
fn a_crash_after_the_head_gave_up_lets_its_followers_be_retried_normally() {
    let mut w = World::new(Seeded(42), 2, 8, 100);
    let ids: Vec<String> = (0..4).map(|_| w.publish_to(0)).collect();
    w.pass_time(0);
    // The 3rd failure moves the head and its followers to the retry topic;
    // the 9th gives up.
    fail_times(&mut w, &ids[0], SCHEDULED_ATTEMPTS as usize);
    assert_eq!(w.retry_records(), 4);
    assert_eq!(
        w.pending_writes(),
        4,
        "the head's and its followers' dead letters"
    );
    w.land_writes(1);
    assert_eq!(w.dead_letters_of(&ids[0]), 1);
    w.commit_now();
    w.crash_losing_writes();
    w.pass_time(0);
    for (k, id) in ids.iter().enumerate().skip(1) {
        assert_eq!(
            w.request_of(id),
            vec![id.clone()],
            "follower {k} is attempted"
        );
        for later in &ids[k + 1..] {
            assert_eq!(w.attempts_in_flight_for(later), 0, "in order");
        }
        w.answer_event(id, true);
        w.pass_time(0);
    }
    w.heal_and_check();
    assert_eq!(w.dead_count(), 1, "only the head was dead-lettered");
    assert!(ids[1..].iter().all(|id| w.was_delivered(id)));
}

/// Known limit "pacer, breaker and 'already disabling' state are per
/// partition worker and in memory" (the breaker part): the circuit of
/// `ep-0` is open, so its event waits out the 200 ms cool-down. A rebalance
/// that gives the partition back resumes the same core in place, and the
/// circuit stays open. A new core (the partition moved to another member,
/// or the process restarted) starts with a closed circuit: the event is
/// sent at once, before the cool-down is over.
#[test]
fn a_new_owner_starts_with_a_closed_circuit() {
    let mut w = World::new(Seeded(42), 1, 4, 100);
    w.open_circuit(0);
    let id = w.publish_to(0);
    w.pass_time(0);
    assert!(w.circuit_open(0));
    assert_eq!(
        w.attempts_in_flight_for(&id),
        0,
        "the open circuit holds it"
    );
    assert_eq!(w.lane_held(0), 1);
    // Given back to the same node: resumed in place, still open.
    w.rebalance();
    w.pass_time(0);
    assert!(w.circuit_open(0), "a resume in place keeps the breaker");
    assert_eq!(w.attempts_in_flight_for(&id), 0);
    assert_eq!(w.sends, 0);
    // A new core: closed, and the event goes at once.
    w.crash_losing_writes();
    w.pass_time(0);
    assert!(!w.circuit_open(0), "the new core starts closed");
    assert_eq!(
        w.wait_left(&id),
        Some(0),
        "sent at once, not after the cool-down"
    );
    w.answer_event(&id, true);
    assert_eq!(w.sends, 1);
    assert!(w.was_delivered(&id));
    w.heal_and_check();
}

/// Known limit "`disable_after` counts from the first failed attempt since
/// the endpoint's last success that this partition worker saw": with
/// `disable_after` at 15 ms, `ep-0`'s event fails at t0 and again 20 ms
/// later, and the endpoint is disabled; the same with a rebalance (a resume
/// in place) between the two failures. With a crash there instead, the
/// event is read again from the events topic without attempt state, the
/// new core has not seen the first failure, and the count starts again:
/// the endpoint stays enabled.
#[test]
fn disable_after_counts_again_after_a_crash() {
    // `stop` runs between the first failure and the second.
    fn run(stop: impl FnOnce(&mut World<Seeded>)) -> bool {
        let mut w = World::new(Seeded(42), 1, 4, 100).with_disable_after(15);
        let id = w.publish_to(0);
        w.pass_time(0);
        w.answer_event(&id, false);
        assert!(w.is_enabled(0), "failing for 0 ms");
        stop(&mut w);
        w.pass_time(20);
        w.answer_event(&id, false);
        let enabled = w.is_enabled(0);
        w.heal_and_check();
        enabled
    }
    assert!(!run(|_| {}), "failing for 20 ms: disabled");
    assert!(
        !run(|w| w.rebalance()),
        "a resume in place keeps the count: disabled"
    );
    assert!(
        run(|w| w.crash_losing_writes()),
        "after a crash the count starts again: still enabled"
    );
}

/// Known limit "a failing endpoint's records that went back to Kafka
/// unfinished (a held lane's read-back records) keep the retry topic's
/// committed offset at the oldest of them": `ep-0`'s head fails three times
/// and goes to the retry topic (offset 0); `ep-0` is disabled, so its lane
/// holds the record read back. `ep-2`'s `b1` and `b2` go through the retry
/// topic above it (offsets 1 and 2) and are delivered. The retry topic's
/// commit stays at 0; after a crash the retry partition is read again from
/// there, and `b1` and `b2` are skipped through the commit metadata.
#[test]
fn a_held_lanes_read_back_records_pin_the_retry_commit() {
    let mut w = World::new(Seeded(42), 3, 4, 100);
    let head = w.publish_to(0);
    w.pass_time(0);
    fail_times(&mut w, &head, 3);
    // Disabled while its retry write is pending: read back, it is held.
    w.disable(0);
    w.pass_time(0);
    assert_eq!(w.retry_records(), 1);
    assert_eq!(
        w.attempts_in_flight_for(&head),
        0,
        "disabled: not attempted"
    );
    assert_eq!(w.lane_held(0), 1, "the read-back record is held");
    assert!(w.retry_unfinished(0));
    let (b1, b2) = through_the_retry_topic(&mut w);
    w.answer_event(&b1, true);
    w.pass_time(0);
    w.answer_event(&b2, true);
    w.pass_time(0);
    assert!(w.was_delivered(&b1) && w.was_delivered(&b2));
    assert!(!w.retry_unfinished(1) && !w.retry_unfinished(2));
    commit_pinned_at_the_first_retry_record(&mut w);
    let sends = w.sends;
    w.crash_losing_writes();
    w.pass_time(0);
    assert_eq!(w.lane_held(0), 1, "the held record is read again");
    assert_eq!(
        (w.attempts_in_flight_for(&b1), w.attempts_in_flight_for(&b2)),
        (0, 0),
        "finished records are not attempted again"
    );
    assert_eq!(w.sends, sends, "nothing was sent again");
    w.enable(0);
    w.pass_time(0);
    assert_eq!(w.attempts_made(&head), Some(3), "from its retry record");
    w.answer_event(&head, true);
    w.heal_and_check();
    assert_eq!(w.resends, 0, "no delivery was repeated");
}
