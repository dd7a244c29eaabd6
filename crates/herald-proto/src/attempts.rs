//! Reading the attempts topic: a record's value is either one
//! [`AttemptRecord`] (what older dispatchers wrote) or an [`AttemptBatch`]
//! of several (what dispatchers write now). The two never decode as each
//! other: the batch's only field is numbered 15, past the record's 1 to 12.

use prost::{DecodeError, Message as _};

use crate::v1::{AttemptBatch, AttemptRecord};

/// The attempts in one attempts-topic record value, in the order written.
pub fn decode(value: &[u8]) -> Result<Vec<AttemptRecord>, DecodeError> {
    let batch = AttemptBatch::decode(value)?;
    if batch.attempts.is_empty() {
        Ok(vec![AttemptRecord::decode(value)?])
    } else {
        Ok(batch.attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(event: &str, n: u32) -> AttemptRecord {
        AttemptRecord {
            event_id: event.into(),
            endpoint_id: "ep_1".into(),
            attempt: n,
            at_ms: 1_700_000_000_000,
            status: 200,
            outcome: "success".into(),
            node: "node-a".into(),
            message_id: event.into(),
            response_body: prost::bytes::Bytes::from_static(b"ok"),
            ..Default::default()
        }
    }

    #[test]
    fn a_single_record_reads_as_one_attempt() {
        let one = attempt("ev_1", 1);
        assert_eq!(decode(&one.encode_to_vec()).unwrap(), vec![one]);
    }

    #[test]
    fn a_batch_reads_as_its_attempts_in_order() {
        let attempts = vec![attempt("ev_1", 1), attempt("ev_2", 1), attempt("ev_1", 2)];
        let value = AttemptBatch {
            attempts: attempts.clone(),
        }
        .encode_to_vec();
        assert_eq!(decode(&value).unwrap(), attempts);
        // An older reader decoding a batch as one record sees nothing of it.
        assert_eq!(
            AttemptRecord::decode(&value[..]).unwrap(),
            AttemptRecord::default()
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(&[0xff, 0xff, 0xff]).is_err());
        // A batch cut short fails too.
        let value = AttemptBatch {
            attempts: vec![attempt("ev_1", 1)],
        }
        .encode_to_vec();
        assert!(decode(&value[..value.len() - 3]).is_err());
    }
}
