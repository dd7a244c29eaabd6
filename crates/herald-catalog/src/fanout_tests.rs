use super::*;
use proptest::prelude::*;
use std::collections::HashSet;

#[test]
fn event_ids_are_stable_and_well_formed() {
    let a = fanout_event_id("msg_1", "ep_1");
    assert_eq!(a, fanout_event_id("msg_1", "ep_1"));
    // Pinned (computed independently: SHA-256 of the tag, then each part as
    // a big-endian u64 length and its bytes): changing the derivation would
    // break de-duplication of a fan-out retried across an upgrade.
    assert_eq!(a, "evf_5319fa878b24c04a09c77e7bcb89b5f0");
    assert_eq!(a.len(), FANOUT_ID_PREFIX.len() + 32);
    assert!(a.starts_with(FANOUT_ID_PREFIX));
    assert!(a[4..]
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert!(is_fanout_event_id(&a));
    assert!(!is_fanout_event_id("msg_1"));
}

#[test]
fn length_prefixing_keeps_splits_apart() {
    assert_ne!(fanout_event_id("ab", "c"), fanout_event_id("a", "bc"));
    assert_ne!(fanout_event_id("", "abc"), fanout_event_id("abc", ""));
    assert_ne!(fanout_event_id("a\0", "b"), fanout_event_id("a", "\0b"));
}

#[test]
fn message_ids_are_scoped_per_application() {
    let m = idempotent_message_id("app_1", "key-1");
    assert_eq!(m, idempotent_message_id("app_1", "key-1"));
    assert_ne!(m, idempotent_message_id("app_2", "key-1"));
    assert_ne!(m, idempotent_message_id("app_1", "key-2"));
    assert!(m.starts_with(MESSAGE_ID_PREFIX));
    assert!(!is_fanout_event_id(&m));
    // Message ids and event ids live in separate hash domains too.
    assert_ne!(m[4..], fanout_event_id("app_1", "key-1")[4..]);
}

#[test]
fn chunking_examples() {
    let limits = ChunkLimits {
        max_records: 3,
        max_bytes: 100,
    };
    let t = |sizes: &[usize]| -> Vec<(String, usize)> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("ep_{i}"), *s))
            .collect()
    };
    assert_eq!(plan_chunks::<(String, usize)>(&[], limits), Ok(vec![]));
    assert_eq!(
        plan_chunks(&t(&[10; 7]), limits),
        Ok(vec![0..3, 3..6, 6..7])
    );
    assert_eq!(
        plan_chunks(&t(&[60, 40, 1, 100]), limits),
        Ok(vec![0..2, 2..3, 3..4])
    );
    assert_eq!(plan_chunks(&t(&[100, 100]), limits), Ok(vec![0..1, 1..2]));
    assert_eq!(plan_chunks(&t(&[0, 0, 0, 0]), limits), Ok(vec![0..3, 3..4]));
    let err = plan_chunks(&t(&[10, 101, 10]), limits).unwrap_err();
    assert_eq!(
        err,
        ChunkError::RecordTooLarge {
            index: 1,
            endpoint_id: "ep_1".into(),
            bytes: 101,
            max_bytes: 100
        }
    );
    assert!(err.to_string().contains("\"ep_1\""), "{err}");
    assert!(matches!(
        plan_chunks(
            &t(&[1]),
            ChunkLimits {
                max_records: 0,
                max_bytes: 1
            }
        ),
        Err(ChunkError::InvalidLimits { .. })
    ));
    assert!(matches!(
        plan_chunks(
            &t(&[0]),
            ChunkLimits {
                max_records: 1,
                max_bytes: 0
            }
        ),
        Err(ChunkError::InvalidLimits { .. })
    ));
    let huge = ChunkLimits {
        max_records: usize::MAX,
        max_bytes: usize::MAX,
    };
    assert_eq!(
        plan_chunks(&t(&[usize::MAX, usize::MAX, 1]), huge),
        Ok(vec![0..1, 1..2, 2..3])
    );
}

#[test]
fn default_limits_fit_a_default_kafka_request() {
    let limits = ChunkLimits::default();
    assert_eq!(limits, ChunkLimits::DEFAULT);
    assert!(limits.max_bytes < 1_048_576 - 64 * 1024);
    let targets: Vec<(String, usize)> = (0..10_000).map(|i| (format!("ep_{i}"), 1_200)).collect();
    let chunks = plan_chunks(&targets, limits).unwrap();
    assert_eq!(chunks.len(), 20, "500 records of 1.2 kB per chunk");
}

proptest! {
    /// Ids are a function of (message, endpoint), and distinct pairs give
    /// distinct ids within a fan-out and across retries.
    #[test]
    fn ids_are_deterministic_and_distinct(
        message in "[a-z0-9_]{0,12}",
        endpoints in prop::collection::hash_set("[a-z0-9_]{1,8}", 1..50),
        other_message in "[a-z0-9_]{0,12}",
    ) {
        let first: Vec<String> = endpoints.iter().map(|e| fanout_event_id(&message, e)).collect();
        let retry: Vec<String> = endpoints.iter().map(|e| fanout_event_id(&message, e)).collect();
        prop_assert_eq!(&first, &retry);
        let unique: HashSet<&String> = first.iter().collect();
        prop_assert_eq!(unique.len(), endpoints.len());
        if other_message != message {
            for e in &endpoints {
                prop_assert!(!unique.contains(&fanout_event_id(&other_message, e)));
            }
        }
        for id in &first {
            prop_assert!(is_fanout_event_id(id));
            prop_assert_eq!(id.len(), 36);
        }
    }

    /// Every target exactly once, in order; every chunk within bounds; the
    /// plan is greedy (no chunk could take the next one's first record).
    #[test]
    fn chunk_plans_cover_in_order_within_bounds(
        sizes in prop::collection::vec(0usize..400, 0..300),
        max_records in 1usize..40,
        max_bytes in 400usize..3000,
    ) {
        let targets: Vec<(String, usize)> = sizes.iter().enumerate().map(|(i, s)| (format!("ep_{i}"), *s)).collect();
        let limits = ChunkLimits { max_records, max_bytes };
        let chunks = plan_chunks(&targets, limits).unwrap();
        let flattened: Vec<usize> = chunks.iter().flat_map(|c| c.clone()).collect();
        prop_assert_eq!(flattened, (0..targets.len()).collect::<Vec<_>>());
        for (i, chunk) in chunks.iter().enumerate() {
            prop_assert!(!chunk.is_empty());
            prop_assert!(chunk.len() <= max_records);
            let bytes: usize = sizes[chunk.clone()].iter().sum();
            prop_assert!(bytes <= max_bytes);
            if let Some(next) = chunks.get(i + 1) {
                let grown = bytes + sizes[next.start];
                prop_assert!(chunk.len() == max_records || grown > max_bytes);
            }
        }
    }

    /// A record over the byte budget is an error naming the first such
    /// endpoint; otherwise planning succeeds.
    #[test]
    fn oversized_records_are_named(
        sizes in prop::collection::vec(0usize..200, 1..100),
        max_bytes in 1usize..200,
    ) {
        let targets: Vec<(String, usize)> = sizes.iter().enumerate().map(|(i, s)| (format!("ep_{i}"), *s)).collect();
        let limits = ChunkLimits { max_records: 10, max_bytes };
        match sizes.iter().position(|s| *s > max_bytes) {
            Some(first) => {
                let err = plan_chunks(&targets, limits).unwrap_err();
                prop_assert_eq!(err, ChunkError::RecordTooLarge {
                    index: first,
                    endpoint_id: format!("ep_{first}"),
                    bytes: sizes[first],
                    max_bytes,
                });
            }
            None => prop_assert!(plan_chunks(&targets, limits).is_ok()),
        }
    }
}
