//! The `Retry-After` response header: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
//!
//! Owns parsing only; how long the dispatcher actually waits (caps, jitter) is its policy.

use std::time::{Duration, SystemTime};

use http::HeaderValue;

/// When the receiver asked to be called again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: 120`: this many seconds after the response.
    Seconds(u64),
    /// `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`: not before this instant.
    At(SystemTime),
}

impl RetryAfter {
    /// Parses a header value; `None` if it is neither form. Surrounding whitespace is
    /// ignored; a delay too large for `u64` saturates. All three HTTP-date formats
    /// (IMF-fixdate, RFC 850, asctime) are accepted.
    pub fn parse(value: &str) -> Option<RetryAfter> {
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        if value.bytes().all(|b| b.is_ascii_digit()) {
            return Some(RetryAfter::Seconds(value.parse().unwrap_or(u64::MAX)));
        }
        httpdate::parse_http_date(value).ok().map(RetryAfter::At)
    }

    /// [`RetryAfter::parse`] for a raw header value (non-ASCII values are `None`).
    pub fn from_header(value: &HeaderValue) -> Option<RetryAfter> {
        value.to_str().ok().and_then(RetryAfter::parse)
    }

    /// How long to wait from `now`; a date in the past means no wait.
    pub fn delay(&self, now: SystemTime) -> Duration {
        match *self {
            RetryAfter::Seconds(secs) => Duration::from_secs(secs),
            RetryAfter::At(at) => at.duration_since(now).unwrap_or(Duration::ZERO),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    /// 2015-10-21T07:28:00Z.
    fn oct_21_2015() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_445_412_480)
    }

    #[test]
    fn parses_delay_seconds() {
        assert_eq!(RetryAfter::parse("120"), Some(RetryAfter::Seconds(120)));
        assert_eq!(RetryAfter::parse("0"), Some(RetryAfter::Seconds(0)));
        assert_eq!(RetryAfter::parse(" 7 "), Some(RetryAfter::Seconds(7)));
        assert_eq!(
            RetryAfter::parse("99999999999999999999999"),
            Some(RetryAfter::Seconds(u64::MAX))
        );
    }

    #[test]
    fn parses_all_http_date_formats() {
        for text in [
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Wednesday, 21-Oct-15 07:28:00 GMT",
            "Wed Oct 21 07:28:00 2015",
        ] {
            assert_eq!(
                RetryAfter::parse(text),
                Some(RetryAfter::At(oct_21_2015())),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_garbage() {
        for text in [
            "",
            "  ",
            "-1",
            "1.5",
            "soon",
            "+3",
            "Wed, 32 Oct 2015 07:28:00 GMT",
        ] {
            assert_eq!(RetryAfter::parse(text), None, "{text:?}");
        }
        assert_eq!(
            RetryAfter::from_header(&HeaderValue::from_bytes(b"\xff12").unwrap()),
            None
        );
        assert_eq!(
            RetryAfter::from_header(&HeaderValue::from_static("3")),
            Some(RetryAfter::Seconds(3))
        );
    }

    #[test]
    fn delay_from_now() {
        let now = oct_21_2015();
        assert_eq!(RetryAfter::Seconds(5).delay(now), Duration::from_secs(5));
        let later = RetryAfter::At(now + Duration::from_secs(30));
        assert_eq!(later.delay(now), Duration::from_secs(30));
        let past = RetryAfter::At(now - Duration::from_secs(30));
        assert_eq!(past.delay(now), Duration::ZERO);
    }
}
