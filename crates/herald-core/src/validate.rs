//! Validation of what users send: publish requests and endpoint fields.
//!
//! Every check returns a [`FieldError`] naming the offending field, so the
//! gRPC layer can answer `INVALID_ARGUMENT` with a message a caller can act on.

use std::fmt;
use std::time::Duration;

pub use crate::endpoint::Batching;

/// Longest event type accepted.
pub const MAX_EVENT_TYPE_LEN: usize = 256;
/// Most custom headers one endpoint may carry.
pub const MAX_CUSTOM_HEADERS: usize = 32;
/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// Longest endpoint description accepted.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// Longest custom header name accepted.
pub const MAX_HEADER_NAME_LEN: usize = 128;
/// Longest custom header value accepted.
pub const MAX_HEADER_VALUE_LEN: usize = 4096;
/// Highest `rate_limit.per_second` and `rate_limit.burst` accepted.
pub const MAX_RATE_PER_SECOND: u32 = 100_000;
/// Highest `max_in_flight` accepted.
pub const MAX_IN_FLIGHT: u32 = 1_000;
/// Shortest and longest delay of a per-endpoint retry schedule, and its length.
pub const MIN_RETRY_DELAY_MS: u64 = 50;
/// Longest delay of a per-endpoint retry schedule (7 days).
pub const MAX_RETRY_DELAY_MS: u64 = 7 * 86_400_000;
/// Most delays in a per-endpoint retry schedule.
pub const MAX_RETRY_SCHEDULE_LEN: usize = 50;
/// Shortest and longest per-endpoint `timeout_ms` (0 = the node default).
pub const MIN_TIMEOUT_MS: u32 = 100;
/// Longest per-endpoint `timeout_ms`; the node's `delivery.timeout_ms` also caps it.
pub const MAX_TIMEOUT_MS: u32 = 300_000;
/// Shortest and longest per-endpoint `max_age_ms` (0 = the node default).
pub const MIN_MAX_AGE_MS: u64 = 1_000;
/// Longest per-endpoint `max_age_ms` (30 days).
pub const MAX_MAX_AGE_MS: u64 = 30 * 86_400_000;
/// Most events in one batched request.
pub const MAX_BATCH_EVENTS: u32 = 1_000;
/// Longest batch linger, ms.
pub const MAX_BATCH_LINGER_MS: u32 = 10_000;

/// Header names Herald sets itself; custom headers may not replace them.
pub const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "connection",
    "transfer-encoding",
    "user-agent",
    // Hop-by-hop headers (RFC 9110 section 7.6.1) and others a client never forwards.
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "expect",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// A request field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name as the API spells it (e.g. `payload`, `headers[X-A]`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A new error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// An id field (`endpoint_id`, `event_id`, `id`) must be `[A-Za-z0-9._-]{1,128}`.
pub fn id(field: &str, value: &str) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    if !crate::ids::is_valid_id(value) {
        return Err(FieldError::new(
            field,
            format!(
                "must be 1 to {} characters of A-Z a-z 0-9 . _ -",
                crate::ids::MAX_ID_LEN
            ),
        ));
    }
    Ok(())
}

/// An event type is non-empty, at most 256 characters, without control characters.
pub fn event_type(value: &str) -> Result<(), FieldError> {
    if value.trim().is_empty() {
        return Err(FieldError::new(
            "event_type",
            "is required (e.g. \"invoice.paid\")",
        ));
    }
    if value.len() > MAX_EVENT_TYPE_LEN {
        return Err(FieldError::new(
            "event_type",
            format!(
                "is {} bytes; at most {MAX_EVENT_TYPE_LEN} allowed",
                value.len()
            ),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(
            "event_type",
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// A payload is valid JSON of at most `max_bytes` bytes.
pub fn payload(value: &str, max_bytes: usize) -> Result<(), FieldError> {
    if value.len() > max_bytes {
        return Err(FieldError::new(
            "payload",
            format!("is {} bytes; the limit is {max_bytes} bytes", value.len()),
        ));
    }
    if value.trim().is_empty() {
        return Err(FieldError::new("payload", "is required (a JSON document)"));
    }
    serde_json::from_str::<StrictJson>(value)
        .map(|_| ())
        .map_err(|e| FieldError::new("payload", format!("is not valid JSON: {e}")))
}

/// Walks a JSON document without building it, decoding every string (and
/// key) on the way: unlike `IgnoredAny`, which skips strings unread, this
/// refuses escapes that are not text, such as a lone surrogate `"\ud800"`,
/// which receivers' JSON parsers would reject or mangle.
struct StrictJson;

impl<'de> serde::Deserialize<'de> for StrictJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = StrictJson;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }
    fn visit_i64<E>(self, _: i64) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }
    fn visit_u64<E>(self, _: u64) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }
    fn visit_f64<E>(self, _: f64) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }
    fn visit_str<E>(self, _: &str) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }
    fn visit_unit<E>(self) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<StrictJson, A::Error> {
        while seq.next_element::<StrictJson>()?.is_some() {}
        Ok(StrictJson)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<StrictJson, A::Error> {
        while map.next_entry::<StrictJson, StrictJson>()?.is_some() {}
        Ok(StrictJson)
    }
}

/// An endpoint URL is an absolute `http` or `https` URL with a host.
pub fn url(value: &str) -> Result<http::Uri, FieldError> {
    const HINT: &str = "must be an absolute http:// or https:// URL with a host";
    if value.len() > MAX_URL_LEN {
        return Err(FieldError::new(
            "url",
            format!("is longer than {MAX_URL_LEN} bytes"),
        ));
    }
    let uri: http::Uri = value
        .parse()
        .map_err(|e| FieldError::new("url", format!("{HINT} ({e})")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(FieldError::new("url", format!("{HINT}; got {value:?}"))),
    }
    match uri.host() {
        Some(h) if !h.is_empty() => {}
        _ => {
            return Err(FieldError::new(
                "url",
                format!("{HINT}; no host in {value:?}"),
            ))
        }
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(FieldError::new(
            "url",
            "must not contain credentials (user:pass@)",
        ));
    }
    Ok(uri)
}

/// One custom header: a valid name that Herald does not set itself, and a
/// value of visible ASCII characters.
pub fn header(name: &str, value: &str) -> Result<(), FieldError> {
    let field = format!(
        "headers[{}]",
        crate::text::bounded(name, MAX_HEADER_NAME_LEN)
    );
    if name.len() > MAX_HEADER_NAME_LEN {
        return Err(FieldError::new(
            field,
            format!("name is longer than {MAX_HEADER_NAME_LEN} bytes"),
        ));
    }
    if value.len() > MAX_HEADER_VALUE_LEN {
        return Err(FieldError::new(
            field,
            format!(
                "value is {} bytes; at most {MAX_HEADER_VALUE_LEN} allowed",
                value.len()
            ),
        ));
    }
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !name_ok {
        return Err(FieldError::new(field, "is not a valid HTTP header name"));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&lower.as_str()) {
        return Err(FieldError::new(
            field,
            "is set by Herald and cannot be overridden",
        ));
    }
    if !value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        return Err(FieldError::new(
            field,
            "value must be visible ASCII (no line breaks)",
        ));
    }
    Ok(())
}

/// All custom headers of an endpoint.
pub fn headers<'a>(
    items: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
) -> Result<(), FieldError> {
    if items.len() > MAX_CUSTOM_HEADERS {
        return Err(FieldError::new(
            "headers",
            format!("at most {MAX_CUSTOM_HEADERS} custom headers are allowed"),
        ));
    }
    for (k, v) in items {
        header(k, v)?;
    }
    Ok(())
}

/// An endpoint description: at most [`MAX_DESCRIPTION_LEN`] bytes, no
/// control characters other than line breaks and tabs.
pub fn description(value: &str) -> Result<(), FieldError> {
    if value.len() > MAX_DESCRIPTION_LEN {
        return Err(FieldError::new(
            "description",
            format!(
                "is {} bytes; at most {MAX_DESCRIPTION_LEN} allowed",
                value.len()
            ),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        return Err(FieldError::new(
            "description",
            "must not contain control characters other than line breaks and tabs",
        ));
    }
    Ok(())
}

/// A rate limit as the API takes it: `per_second` 0 means none; a `burst`
/// of 0 means "as many as `per_second`". Both are at most
/// [`MAX_RATE_PER_SECOND`].
pub fn rate_limit(per_second: u32, burst: u32) -> Result<Option<(u32, u32)>, FieldError> {
    if per_second == 0 {
        return Ok(None);
    }
    if per_second > MAX_RATE_PER_SECOND {
        return Err(FieldError::new(
            "rate_limit.per_second",
            format!(
                "is {per_second}; at most {MAX_RATE_PER_SECOND} requests per second (0 = no limit)"
            ),
        ));
    }
    if burst > MAX_RATE_PER_SECOND {
        return Err(FieldError::new(
            "rate_limit.burst",
            format!("is {burst}; at most {MAX_RATE_PER_SECOND}"),
        ));
    }
    Ok(Some((
        per_second,
        if burst == 0 { per_second } else { burst },
    )))
}

/// `max_in_flight`: 0 (the node default) to [`MAX_IN_FLIGHT`].
pub fn max_in_flight(value: u32) -> Result<u32, FieldError> {
    if value > MAX_IN_FLIGHT {
        return Err(FieldError::new(
            "max_in_flight",
            format!("is {value}; at most {MAX_IN_FLIGHT} (0 = the node default)"),
        ));
    }
    Ok(value)
}

/// A per-endpoint retry schedule: at most [`MAX_RETRY_SCHEDULE_LEN`]
/// delays, each from [`MIN_RETRY_DELAY_MS`] to [`MAX_RETRY_DELAY_MS`].
pub fn retry_schedule(field: &str, delays_ms: &[u64]) -> Result<Vec<Duration>, FieldError> {
    if delays_ms.len() > MAX_RETRY_SCHEDULE_LEN {
        return Err(FieldError::new(
            field,
            format!("at most {MAX_RETRY_SCHEDULE_LEN} delays"),
        ));
    }
    if let Some(bad) = delays_ms
        .iter()
        .find(|&&d| !(MIN_RETRY_DELAY_MS..=MAX_RETRY_DELAY_MS).contains(&d))
    {
        return Err(FieldError::new(
            field,
            format!("delay {bad} ms is out of range ({MIN_RETRY_DELAY_MS} ms to {MAX_RETRY_DELAY_MS} ms)"),
        ));
    }
    Ok(delays_ms
        .iter()
        .map(|&d| Duration::from_millis(d))
        .collect())
}

/// A per-endpoint attempt timeout: 0 (the node default) or
/// [`MIN_TIMEOUT_MS`] to [`MAX_TIMEOUT_MS`].
pub fn timeout_ms(field: &str, ms: u32) -> Result<Option<Duration>, FieldError> {
    match ms {
        0 => Ok(None),
        ms if !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&ms) => Err(FieldError::new(
            field,
            format!("is {ms}; must be 0 (the node default) or {MIN_TIMEOUT_MS} to {MAX_TIMEOUT_MS} ms (the node's delivery.timeout_ms also caps it)"),
        )),
        ms => Ok(Some(Duration::from_millis(u64::from(ms)))),
    }
}

/// Batched delivery settings: `max_events` 0 or 1 (off) or 2 to
/// [`MAX_BATCH_EVENTS`]; `linger_ms` 0 to [`MAX_BATCH_LINGER_MS`], and only
/// with batching on.
pub fn batching(max_events: u32, linger_ms: u32) -> Result<Option<Batching>, FieldError> {
    if max_events > MAX_BATCH_EVENTS {
        return Err(FieldError::new(
            "batch_max_events",
            format!(
                "is {max_events}; must be 0 (one event per request) or 2 to {MAX_BATCH_EVENTS}"
            ),
        ));
    }
    if linger_ms > MAX_BATCH_LINGER_MS {
        return Err(FieldError::new(
            "batch_linger_ms",
            format!("is {linger_ms}; must be 0 to {MAX_BATCH_LINGER_MS} ms"),
        ));
    }
    if max_events <= 1 {
        if linger_ms > 0 {
            return Err(FieldError::new(
                "batch_linger_ms",
                "is set, but batching is off (batch_max_events is 0 or 1)",
            ));
        }
        return Ok(None);
    }
    Ok(Some(Batching {
        max_events,
        linger: Duration::from_millis(u64::from(linger_ms)),
    }))
}

/// A per-endpoint maximum event age: 0 (the node default) or
/// [`MIN_MAX_AGE_MS`] to [`MAX_MAX_AGE_MS`].
pub fn max_age_ms(field: &str, ms: u64) -> Result<Option<Duration>, FieldError> {
    match ms {
        0 => Ok(None),
        ms if !(MIN_MAX_AGE_MS..=MAX_MAX_AGE_MS).contains(&ms) => Err(FieldError::new(
            field,
            format!("is {ms}; must be 0 (the node default) or {MIN_MAX_AGE_MS} ms to 30 days"),
        )),
        ms => Ok(Some(Duration::from_millis(ms))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_checks() {
        assert!(payload(r#"{"a":1}"#, 100).is_ok());
        assert_eq!(payload("{", 100).unwrap_err().field, "payload");
        assert!(payload("{", 100)
            .unwrap_err()
            .message
            .contains("not valid JSON"));
        assert!(payload("", 100).unwrap_err().message.contains("required"));
        // Lone surrogates in values and keys are not text.
        for bad in [
            r#"{"a":"\ud800"}"#,
            r#"{"\udc00":1}"#,
            r#"["ok","\ud83d x"]"#,
        ] {
            assert!(payload(bad, 100).is_err(), "{bad}");
        }
        // A proper surrogate pair, escapes and nesting are fine.
        assert!(payload(
            r#"{"e":"\ud83d\ude00","n":[1,-2,3.5e3,null,true,{"k":"\n"}]}"#,
            200
        )
        .is_ok());
        // Nesting beyond serde_json's limit is an error, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(payload(&deep, 100_000).is_err());
        let big = format!("\"{}\"", "x".repeat(200));
        assert!(payload(&big, 100)
            .unwrap_err()
            .message
            .contains("limit is 100"));
    }

    #[test]
    fn event_type_checks() {
        assert!(event_type("invoice.paid").is_ok());
        assert_eq!(event_type("").unwrap_err().field, "event_type");
        assert!(event_type("a\nb").is_err());
        assert!(event_type(&"x".repeat(257)).is_err());
    }

    #[test]
    fn url_checks() {
        assert!(url("https://example.com/hook").is_ok());
        assert!(url("http://127.0.0.1:8080/x?y=1").is_ok());
        for bad in [
            "",
            "example.com/hook",
            "ftp://example.com",
            "/relative",
            "http://u:p@h/",
        ] {
            let e = url(bad).unwrap_err();
            assert_eq!(e.field, "url", "{bad}");
        }
    }

    #[test]
    fn header_checks() {
        assert!(header("X-Tenant", "acme").is_ok());
        assert!(header("Webhook-Signature", "x").is_err());
        assert!(header("bad header", "x").is_err());
        assert!(header("X-A", "line\r\nbreak").is_err());
        let e = header("Content-Type", "text/plain").unwrap_err();
        assert_eq!(e.field, "headers[Content-Type]");
    }

    #[test]
    fn numeric_bounds() {
        assert_eq!(rate_limit(0, 5).unwrap(), None);
        assert_eq!(rate_limit(10, 0).unwrap(), Some((10, 10)));
        let e = rate_limit(u32::MAX, 1).unwrap_err();
        assert_eq!(e.field, "rate_limit.per_second");
        assert!(e.message.contains("at most 100000"), "{e}");
        assert_eq!(
            rate_limit(10, u32::MAX).unwrap_err().field,
            "rate_limit.burst"
        );
        assert!(max_in_flight(u32::MAX).is_err());
        assert_eq!(max_in_flight(8).unwrap(), 8);
        assert!(retry_schedule("s", &[1])
            .unwrap_err()
            .message
            .contains("50 ms"));
        assert!(retry_schedule("s", &[u64::MAX]).is_err());
        assert!(retry_schedule("s", &[100; 51]).is_err());
        assert_eq!(retry_schedule("s", &[50, 100]).unwrap().len(), 2);
        assert!(timeout_ms("t", 1).is_err());
        assert!(timeout_ms("t", u32::MAX).is_err());
        assert_eq!(timeout_ms("t", 0).unwrap(), None);
    }

    #[test]
    fn batching_bounds_name_the_field() {
        assert_eq!(batching(0, 0).unwrap(), None);
        assert_eq!(batching(1, 0).unwrap(), None);
        let b = batching(50, 20).unwrap().unwrap();
        assert_eq!((b.max_events, b.linger.as_millis()), (50, 20));
        assert_eq!(batching(1001, 0).unwrap_err().field, "batch_max_events");
        assert_eq!(batching(10, 10_001).unwrap_err().field, "batch_linger_ms");
        let off = batching(0, 5).unwrap_err();
        assert_eq!(off.field, "batch_linger_ms");
        assert!(off.to_string().contains("batching is off"), "{off}");
        assert!(max_age_ms("a", u64::MAX).is_err());
        assert!(max_age_ms("a", 10).is_err());
    }

    /// Known limit: an endpoint's own `max_age_ms` is not checked against
    /// the retry topic's retention (default 14 days); 20 days is accepted.
    #[test]
    fn a_max_age_beyond_the_retry_retention_is_accepted() {
        let retention = crate::config::KafkaConfig::default().retry_retention;
        let ms = 20 * 86_400_000;
        assert!(Duration::from_millis(ms) > retention);
        assert_eq!(max_age_ms("m", ms), Ok(Some(Duration::from_millis(ms))));
    }

    #[test]
    fn sizes_and_hop_by_hop_headers() {
        assert!(description(&"d".repeat(1025)).is_err());
        assert!(description("two\nlines").is_ok());
        assert!(description("bell\u{7}").is_err());
        assert!(header("X-A", &"v".repeat(4097)).is_err());
        assert!(header(&"n".repeat(129), "v").is_err());
        for name in [
            "TE",
            "Upgrade",
            "keep-alive",
            "CONNECTION",
            "Host",
            "user-agent",
            "Trailer",
        ] {
            let e = header(name, "x").unwrap_err();
            assert!(e.message.contains("set by Herald"), "{name}: {e}");
        }
    }

    #[test]
    fn id_checks() {
        assert!(id("endpoint_id", "ep_1").is_ok());
        assert_eq!(
            id("endpoint_id", "").unwrap_err().to_string(),
            "endpoint_id: is required"
        );
        assert!(id("endpoint_id", "a b").is_err());
    }
}
