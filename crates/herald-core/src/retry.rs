//! Whether one attempt's result is a success, worth retrying, or final.
//!
//! A pure table from (HTTP status | transport failure) to [`Verdict`]; *how
//! long* to wait lives in [`crate::backoff`].

/// What an attempt's result means for the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered (2xx).
    Success,
    /// Failed; try again later.
    Retry,
    /// Failed; trying again will not help.
    Final,
}

/// A failure before any HTTP status was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// TCP connect failed or was refused.
    Connect,
    /// No complete answer within the timeout.
    Timeout,
    /// TLS handshake or certificate failure.
    Tls,
    /// Refused by Herald's egress policy (never sent).
    Refused,
    /// Any other transport error (reset, malformed response, ...).
    Other,
}

/// Tunable parts of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryRules {
    /// Treat 4xx other than 408 and 429 as final instead of retrying them.
    pub final_4xx: bool,
}

/// The verdict for a response status (`Some`) or a transport failure (`None`
/// status with a `failure`).
pub fn decide(status: Option<u16>, failure: Option<FailureKind>, rules: RetryRules) -> Verdict {
    match (status, failure) {
        (Some(s), _) => match s {
            200..=299 => Verdict::Success,
            // Redirects are not followed: the endpoint's URL is wrong for now.
            300..=399 => Verdict::Retry,
            408 | 429 => Verdict::Retry,
            // Gone: the receiver says never again.
            410 => Verdict::Final,
            400..=499 if rules.final_4xx => Verdict::Final,
            400..=499 => Verdict::Retry,
            500..=599 => Verdict::Retry,
            // 1xx as final answers, or nonsense codes.
            _ => Verdict::Retry,
        },
        (None, Some(FailureKind::Refused)) => Verdict::Final,
        (None, _) => Verdict::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let d = RetryRules::default();
        let strict = RetryRules { final_4xx: true };
        let cases: &[(Option<u16>, Option<FailureKind>, RetryRules, Verdict)] = &[
            (Some(200), None, d, Verdict::Success),
            (Some(204), None, d, Verdict::Success),
            (Some(299), None, d, Verdict::Success),
            (Some(301), None, d, Verdict::Retry),
            (Some(302), None, d, Verdict::Retry),
            (Some(400), None, d, Verdict::Retry),
            (Some(400), None, strict, Verdict::Final),
            (Some(404), None, strict, Verdict::Final),
            (Some(408), None, strict, Verdict::Retry),
            (Some(429), None, strict, Verdict::Retry),
            (Some(410), None, d, Verdict::Final),
            (Some(500), None, strict, Verdict::Retry),
            (Some(503), None, d, Verdict::Retry),
            (Some(599), None, d, Verdict::Retry),
            (Some(101), None, d, Verdict::Retry),
            (None, Some(FailureKind::Connect), d, Verdict::Retry),
            (None, Some(FailureKind::Timeout), d, Verdict::Retry),
            (None, Some(FailureKind::Tls), d, Verdict::Retry),
            (None, Some(FailureKind::Other), d, Verdict::Retry),
            (None, Some(FailureKind::Refused), d, Verdict::Final),
            (None, None, d, Verdict::Retry),
        ];
        for &(status, failure, rules, want) in cases {
            assert_eq!(
                decide(status, failure, rules),
                want,
                "{status:?} {failure:?} {rules:?}"
            );
        }
    }
}
