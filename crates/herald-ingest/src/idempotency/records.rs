//! The idempotency topic's record format. Pure: encoding and decoding only.
//!
//! A Kafka record carries one ledger record (its Kafka key is the ledger
//! key, its value an `IdempotencyRecord`), or a batch of them: a value whose
//! `batch` lists the entries, each with its own `key`, folded in order as if
//! each were its own record at that offset. Nodes write every record that
//! is ready at the same moment as one batch (see [`super::writer`]).

use herald_proto::v1::idempotency_record::Kind;
use herald_proto::v1::IdempotencyRecord;
use prost::Message as _;

use super::ledger::{Answer, Key, Progress, Record, RequestHash};

/// One Kafka record for `entries` (at least one): its key and value. A
/// lone entry is written as a plain record keyed by its ledger key.
pub fn encode(entries: Vec<(Key, IdempotencyRecord)>) -> (Option<Key>, Vec<u8>) {
    let mut entries = entries;
    if entries.len() == 1 {
        let (key, record) = entries.pop().expect("one entry");
        return (Some(key), record.encode_to_vec());
    }
    let batch = entries
        .into_iter()
        .map(|(key, mut record)| {
            record.key = key.to_vec();
            record
        })
        .collect();
    let value = IdempotencyRecord {
        batch,
        ..Default::default()
    };
    (None, value.encode_to_vec())
}

/// The ledger records of one Kafka record, in order, and how many of its
/// entries could not be read (a foreign or damaged record, skipped).
pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> (Vec<(Key, Record)>, usize) {
    let Some(r) = value.and_then(|v| IdempotencyRecord::decode(v).ok()) else {
        return (Vec::new(), 1);
    };
    if r.batch.is_empty() {
        return match entry(key, r) {
            Some(e) => (vec![e], 0),
            None => (Vec::new(), 1),
        };
    }
    let total = r.batch.len();
    let entries: Vec<_> = r
        .batch
        .into_iter()
        .filter_map(|mut e| {
            let key = std::mem::take(&mut e.key);
            entry(Some(&key), e)
        })
        .collect();
    let skipped = total - entries.len();
    (entries, skipped)
}

/// One ledger record and its key.
fn entry(key: Option<&[u8]>, r: IdempotencyRecord) -> Option<(Key, Record)> {
    let key: Key = key?.try_into().ok()?;
    let request: RequestHash = r.request_hash.as_slice().try_into().unwrap_or([0; 32]);
    let record = match Kind::try_from(r.kind).ok()? {
        Kind::Claim => Record::Claim {
            claim_id: r.claim_id,
            request,
            at_ms: r.at_ms,
            lease_until_ms: r.lease_until_ms,
        },
        Kind::Done => Record::Done {
            claim_id: r.claim_id,
            request,
            at_ms: r.at_ms,
            answer: Answer {
                event_id: r.event_id,
                partition: r.partition,
                offset: r.offset,
                message_id: r.message_id,
                fanned_out: r.fanned_out,
                deliver_at_ms: r.deliver_at_ms,
            },
        },
        Kind::Release => Record::Release {
            claim_id: r.claim_id,
        },
        Kind::Progress => Record::Progress {
            claim_id: r.claim_id,
            progress: Progress {
                through: r.written_through,
                written: r.written,
            },
        },
        Kind::Unspecified => return None,
    };
    Some((key, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(id: &str, r: u8) -> IdempotencyRecord {
        IdempotencyRecord {
            kind: Kind::Claim as i32,
            claim_id: id.into(),
            request_hash: vec![r; 32],
            at_ms: 1_000,
            lease_until_ms: 2_000,
            ..Default::default()
        }
    }

    fn done(id: &str, r: u8) -> IdempotencyRecord {
        IdempotencyRecord {
            kind: Kind::Done as i32,
            claim_id: id.into(),
            request_hash: vec![r; 32],
            at_ms: 1_500,
            event_id: format!("evt-{id}"),
            partition: 3,
            offset: 42,
            ..Default::default()
        }
    }

    #[test]
    fn a_lone_record_keeps_the_plain_form() {
        let (key, value) = encode(vec![([7; 32], claim("a", 1))]);
        assert_eq!(key, Some([7; 32]));
        // What a node that predates batches writes and reads.
        assert_eq!(value, claim("a", 1).encode_to_vec());
        let (records, skipped) = decode(key.as_ref().map(|k| &k[..]), Some(&value));
        assert_eq!(skipped, 0);
        assert_eq!(
            records,
            vec![(
                [7; 32],
                Record::Claim {
                    claim_id: "a".into(),
                    request: [1; 32],
                    at_ms: 1_000,
                    lease_until_ms: 2_000,
                }
            )]
        );
    }

    #[test]
    fn a_batch_is_read_back_in_order_with_each_key() {
        let entries = vec![
            ([1; 32], claim("a", 1)),
            ([2; 32], claim("b", 2)),
            ([1; 32], done("a", 1)),
        ];
        let (key, value) = encode(entries.clone());
        assert_eq!(key, None);
        let (records, skipped) = decode(None, Some(&value));
        assert_eq!(skipped, 0);
        let expected: Vec<_> = entries
            .into_iter()
            .map(|(k, r)| {
                let (mut one, _) = decode(Some(&k), Some(&r.encode_to_vec()));
                one.pop().expect("a lone record decodes")
            })
            .collect();
        assert_eq!(records, expected);
        assert!(matches!(records[2].1, Record::Done { ref answer, .. } if answer.offset == 42));
    }

    #[test]
    fn damaged_entries_are_skipped_and_counted() {
        let mut bad_key = claim("x", 1);
        bad_key.key = vec![1, 2, 3];
        let unknown_kind = IdempotencyRecord {
            key: vec![4; 32],
            ..Default::default()
        };
        let value = IdempotencyRecord {
            batch: vec![bad_key, unknown_kind, {
                let mut ok = claim("ok", 5);
                ok.key = vec![5; 32];
                ok
            }],
            ..Default::default()
        }
        .encode_to_vec();
        let (records, skipped) = decode(None, Some(&value));
        assert_eq!(skipped, 2);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].0, [5; 32]);
        // Not protobuf at all, no value, or a lone record without a key.
        assert_eq!(decode(None, Some(&[0xff, 0xff, 0xff])).1, 1);
        assert_eq!(decode(Some(&[1; 32]), None).1, 1);
        assert_eq!(decode(None, Some(&claim("a", 1).encode_to_vec())).1, 1);
    }
}
