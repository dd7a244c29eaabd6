//! Validation of what users send: publish requests and endpoint fields.
//!
//! Every check returns a [`FieldError`] naming the offending field, so the
//! gRPC layer can answer `INVALID_ARGUMENT` with a message a caller can act on.

use std::fmt;

/// Longest event type accepted.
pub const MAX_EVENT_TYPE_LEN: usize = 256;
/// Most custom headers one endpoint may carry.
pub const MAX_CUSTOM_HEADERS: usize = 32;
/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// Header names Herald sets itself; custom headers may not replace them.
pub const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "connection",
    "transfer-encoding",
    "user-agent",
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
    serde_json::from_str::<serde::de::IgnoredAny>(value)
        .map(|_| ())
        .map_err(|e| FieldError::new("payload", format!("is not valid JSON: {e}")))
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
    let field = format!("headers[{name}]");
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
    fn id_checks() {
        assert!(id("endpoint_id", "ep_1").is_ok());
        assert_eq!(
            id("endpoint_id", "").unwrap_err().to_string(),
            "endpoint_id: is required"
        );
        assert!(id("endpoint_id", "a b").is_err());
    }
}
