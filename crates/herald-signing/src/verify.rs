//! The receiving side: checks `webhook-timestamp` against a tolerance window and
//! `webhook-signature` against every configured secret, in constant time.
//!
//! Owns the header grammar (space-separated `version,signature` pairs; versions other
//! than `v1` are ignored) and the replay window. The clock is the caller's: `now_unix` is
//! passed in.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::digest::{CtOutput, Output};

use crate::secret::Secret;
use crate::sign::{compute_mac, V1_PREFIX};
use crate::HmacSha256;

/// How far `webhook-timestamp` may be from the receiver's clock, either way (5 minutes,
/// as Standard Webhooks recommends).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Header names [`Verifier::verify_headers`] looks up.
const ID_HEADER: &str = "webhook-id";
const TIMESTAMP_HEADER: &str = "webhook-timestamp";
const SIGNATURE_HEADER: &str = "webhook-signature";

/// Longest timestamp echoed back in [`VerifyError::BadTimestamp`].
const ECHO_MAX: usize = 32;

/// Why a message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The `webhook-id` header is absent.
    #[error("missing webhook-id header")]
    MissingMessageId,
    /// The `webhook-timestamp` header is absent.
    #[error("missing webhook-timestamp header")]
    MissingTimestamp,
    /// The `webhook-signature` header is absent or holds no `v1,` signature.
    #[error("missing signature: webhook-signature has no `v1,<base64>` entry")]
    MissingSignature,
    /// `webhook-timestamp` is not an integer number of unix seconds.
    #[error("bad webhook-timestamp {0:?}: expected integer unix seconds")]
    BadTimestamp(String),
    /// The message is older than the tolerance (replayed, or delivered very late).
    #[error("webhook-timestamp is {age_secs}s in the past, beyond the {tolerance_secs}s tolerance (replayed message, or a clock out of sync)")]
    TimestampTooOld {
        /// How many seconds before `now` the timestamp is.
        age_secs: u64,
        /// The configured tolerance.
        tolerance_secs: u64,
    },
    /// The message is dated further in the future than the tolerance.
    #[error("webhook-timestamp is {ahead_secs}s in the future, beyond the {tolerance_secs}s tolerance (check the sender's and receiver's clocks)")]
    TimestampInFuture {
        /// How many seconds after `now` the timestamp is.
        ahead_secs: u64,
        /// The configured tolerance.
        tolerance_secs: u64,
    },
    /// No signature matches any secret.
    #[error("no signature in webhook-signature matches a configured secret (wrong secret, or the id, timestamp or body was altered)")]
    NoMatchingSignature,
}

/// Verifies Standard Webhooks signatures against one or more secrets.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// Secrets to accept; more than one while a rotation is in progress.
    secrets: Vec<Secret>,
    /// Accepted distance between the timestamp and `now`, in either direction.
    tolerance: Duration,
}

impl Verifier {
    /// A verifier accepting any of `secrets`, with [`DEFAULT_TOLERANCE`].
    pub fn new(secrets: Vec<Secret>) -> Self {
        Verifier {
            secrets,
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// Replaces the timestamp tolerance (the bound is inclusive).
    pub fn with_tolerance(self, tolerance: Duration) -> Self {
        Verifier { tolerance, ..self }
    }

    /// Checks one message.
    ///
    /// Accepts if the timestamp is within the tolerance of `now_unix` and any `v1,`
    /// signature in `signature_header` matches any secret. Comparisons are constant-time.
    pub fn verify(
        &self,
        msg_id: &str,
        timestamp_header: &str,
        signature_header: &str,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), VerifyError> {
        if v1_signatures(signature_header).next().is_none() {
            return Err(VerifyError::MissingSignature);
        }
        let timestamp = self.check_timestamp(timestamp_header, now_unix)?;

        for secret in &self.secrets {
            let expected = compute_mac(secret, msg_id, timestamp, body);
            // A malformed candidate can never match, so it is skipped, not an error.
            // `CtOutput`'s `==` is constant-time.
            let matched = v1_signatures(signature_header)
                .filter_map(decode_signature)
                .any(|candidate| candidate == expected);
            if matched {
                return Ok(());
            }
        }
        Err(VerifyError::NoMatchingSignature)
    }

    /// [`Verifier::verify`] reading `webhook-id`, `webhook-timestamp` and
    /// `webhook-signature` through `header` (called with lower-case names).
    pub fn verify_headers<'h, F>(
        &self,
        header: F,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), VerifyError>
    where
        F: Fn(&str) -> Option<&'h str>,
    {
        let id = header(ID_HEADER).ok_or(VerifyError::MissingMessageId)?;
        let ts = header(TIMESTAMP_HEADER).ok_or(VerifyError::MissingTimestamp)?;
        let sig = header(SIGNATURE_HEADER).ok_or(VerifyError::MissingSignature)?;
        self.verify(id, ts, sig, body, now_unix)
    }

    /// Parses the timestamp and checks it against the tolerance window.
    fn check_timestamp(&self, header: &str, now_unix: i64) -> Result<i64, VerifyError> {
        let ts: i64 = header.parse().map_err(|_| {
            let mut echo = header;
            if echo.len() > ECHO_MAX {
                let mut end = ECHO_MAX;
                while !echo.is_char_boundary(end) {
                    end -= 1;
                }
                echo = &echo[..end];
            }
            VerifyError::BadTimestamp(echo.to_owned())
        })?;
        let tolerance_secs = self.tolerance.as_secs();
        if ts <= now_unix {
            let age_secs = now_unix.abs_diff(ts);
            if age_secs > tolerance_secs {
                return Err(VerifyError::TimestampTooOld {
                    age_secs,
                    tolerance_secs,
                });
            }
        } else {
            let ahead_secs = ts.abs_diff(now_unix);
            if ahead_secs > tolerance_secs {
                return Err(VerifyError::TimestampInFuture {
                    ahead_secs,
                    tolerance_secs,
                });
            }
        }
        Ok(ts)
    }
}

/// The base64 part of each `v1,` entry; other versions and blank entries are skipped.
fn v1_signatures(header: &str) -> impl Iterator<Item = &str> {
    header
        .split(' ')
        .filter_map(|entry| entry.strip_prefix(V1_PREFIX))
}

/// Decodes one base64 signature; `None` unless it is exactly a 32-byte MAC.
fn decode_signature(b64: &str) -> Option<CtOutput<HmacSha256>> {
    // 32 bytes encode to 44 characters; anything much longer cannot be ours.
    if b64.len() > 48 {
        return None;
    }
    let mut buf = [0u8; 48];
    let n = STANDARD.decode_slice(b64, &mut buf).ok()?;
    if n != 32 {
        return None;
    }
    Some(CtOutput::new(Output::<HmacSha256>::clone_from_slice(
        &buf[..n],
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_entries() {
        let got: Vec<_> = v1_signatures("v2,abc v1,AAA  v1a,x v1,BBB").collect();
        assert_eq!(got, ["AAA", "BBB"]);
        assert_eq!(v1_signatures("").count(), 0);
    }

    #[test]
    fn decode_rejects_wrong_lengths_and_garbage() {
        assert!(decode_signature("g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=").is_some());
        assert!(decode_signature("AAAA").is_none());
        assert!(decode_signature("!!!!").is_none());
        assert!(decode_signature(&"A".repeat(200)).is_none());
    }

    #[test]
    fn bad_timestamp_echo_is_bounded() {
        let v = Verifier::new(vec![]);
        let long = "é".repeat(40);
        match v.check_timestamp(&long, 0) {
            Err(VerifyError::BadTimestamp(echo)) => assert!(echo.len() <= ECHO_MAX),
            other => panic!("unexpected {other:?}"),
        }
    }
}
