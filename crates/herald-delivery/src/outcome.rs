//! What one attempt produced: [`AttemptResult`], and [`AttemptError`] classified from the
//! error's type (never from its message text).
//!
//! Owns classification only; whether an outcome is retried is the dispatcher's decision.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::io;
use std::time::Duration;

use bytes::Bytes;

use crate::guard::TargetRefused;
use crate::retry_after::RetryAfter;

/// Why an attempt did not complete. The strings describe the cause chain for logs and
/// dead-letter headers; match on the variant, not on the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttemptError {
    /// No connection: DNS failure, refused, unreachable, or `connect_timeout` passed.
    #[error("could not connect to the endpoint: {0}")]
    Connect(String),
    /// `request_timeout` passed before the response headers and capped body arrived.
    #[error("the endpoint did not answer within the request timeout")]
    Timeout,
    /// The TLS handshake failed (certificate, protocol or alert).
    #[error("TLS handshake with the endpoint failed: {0}")]
    Tls(String),
    /// The connection failed after it was established (reset, closed early, bad HTTP).
    #[error("the request to the endpoint failed: {0}")]
    Request(String),
    /// The response headers arrived but reading the body failed; `status` is set.
    #[error("reading the endpoint's response body failed: {0}")]
    BodyRead(String),
    /// Nothing was sent: the request itself is unusable (relative URL, message id that is
    /// not a valid header value). Retrying cannot help.
    #[error("the request could not be built: {0}")]
    InvalidRequest(String),
    /// Nothing was sent: the endpoint's host is, or resolves only to, addresses the egress
    /// policy refuses (loopback, private, link-local, cloud metadata, …). The text names
    /// the address, why, and the allow-list setting. Final until the URL, its DNS or the
    /// policy changes.
    #[error("the egress policy refuses the endpoint: {0}")]
    Refused(String),
}

impl AttemptError {
    /// A fixed, low-cardinality name for metrics labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            AttemptError::Connect(_) => "connect",
            AttemptError::Timeout => "timeout",
            AttemptError::Tls(_) => "tls",
            AttemptError::Request(_) => "request",
            AttemptError::BodyRead(_) => "body_read",
            AttemptError::InvalidRequest(_) => "invalid_request",
            AttemptError::Refused(_) => "refused",
        }
    }
}

/// Everything one attempt observed.
///
/// `status` is set as soon as response headers arrived; `error` is set when the attempt
/// failed, either before a status (then `status` is `None`) or while reading the body
/// (then both are set, and the receiver's answer still stands).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttemptResult {
    /// HTTP status code, if response headers arrived.
    pub status: Option<u16>,
    /// What went wrong, if anything.
    pub error: Option<AttemptError>,
    /// From the start of the attempt to its end (body read included).
    pub latency: Duration,
    /// The first `max_response_body` bytes of the response body; after a timeout or a
    /// body read error, the bytes that had arrived.
    pub body_snippet: Bytes,
    /// The parsed `Retry-After` header, if present and valid.
    pub retry_after: Option<RetryAfter>,
    /// The `Location` header of a 3xx answer (redirects are never followed).
    pub location: Option<String>,
}

impl AttemptResult {
    /// The receiver answered 2xx.
    pub fn is_success(&self) -> bool {
        matches!(self.status, Some(200..=299))
    }
}

/// Classifies why no connection could be made, by the types in the cause chain of the
/// connector's error (egress policy, TLS name, TLS handshake, or TCP).
pub(crate) fn connect_error(err: &(dyn StdError + 'static)) -> AttemptError {
    let message = describe(err);
    if let Some(refused) = find_cause::<TargetRefused>(err) {
        AttemptError::Refused(refused.to_string())
    } else if find_cause::<rustls::pki_types::InvalidDnsNameError>(err).is_some() {
        // hyper-rustls checks the name before connecting: nothing was sent, and an
        // `https://` URL whose host no certificate can name never works.
        AttemptError::InvalidRequest(format!(
            "the endpoint's host is not a valid TLS server name ({message})"
        ))
    } else if find_cause::<rustls::Error>(err).is_some() {
        AttemptError::Tls(message)
    } else {
        AttemptError::Connect(message)
    }
}

/// Classifies an error of an established connection (sending the request or reading the
/// response head): TLS when rustls is in the chain, otherwise a request error.
pub(crate) fn request_error(err: &hyper::Error) -> AttemptError {
    let message = describe(err);
    if find_cause::<rustls::Error>(err).is_some() {
        AttemptError::Tls(message)
    } else {
        AttemptError::Request(message)
    }
}

/// An error while reading the response body.
pub(crate) fn body_read_error(err: &hyper::Error) -> AttemptError {
    AttemptError::BodyRead(describe(err))
}

/// Walks the cause chain, also looking inside `io::Error`s that wrap another error
/// (`io::Error::source` skips the wrapped error itself).
fn causes<'e>(
    err: &'e (dyn StdError + 'static),
) -> impl Iterator<Item = &'e (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |&e: &&'e (dyn StdError + 'static)| match e
        .downcast_ref::<io::Error>()
    {
        Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
        None => e.source(),
    })
}

/// The first error of type `T` in `err`'s chain.
fn find_cause<'e, T: StdError + 'static>(err: &'e (dyn StdError + 'static)) -> Option<&'e T> {
    causes(err).find_map(|e| e.downcast_ref::<T>())
}

/// `"outer: inner: root"`, skipping `io::Error` wrappers (they print their inner error).
fn describe(err: &(dyn StdError + 'static)) -> String {
    let mut out = String::new();
    for e in causes(err) {
        if e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.get_ref().is_some())
        {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        let _ = write!(out, "{e}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] io::Error);

    #[test]
    fn finds_causes_inside_io_wrappers() {
        let root = rustls::Error::General("bad cert".into());
        let wrapped = Outer(io::Error::other(io::Error::new(
            io::ErrorKind::InvalidData,
            root,
        )));
        assert!(find_cause::<rustls::Error>(&wrapped).is_some());
        assert_eq!(describe(&wrapped), "outer: unexpected error: bad cert");
        let plain = Outer(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(find_cause::<rustls::Error>(&plain).is_none());
        assert_eq!(describe(&plain), "outer: connection refused");
    }

    #[test]
    fn kinds_are_fixed_names() {
        assert_eq!(AttemptError::Timeout.kind(), "timeout");
        assert_eq!(AttemptError::Connect(String::new()).kind(), "connect");
    }

    #[test]
    fn success_is_2xx() {
        let mut r = AttemptResult::default();
        assert!(!r.is_success());
        r.status = Some(204);
        assert!(r.is_success());
        r.status = Some(302);
        assert!(!r.is_success());
    }
}
