//! The endpoint and publish validators on arbitrary text: never panic; an
//! accepted URL has a host, an accepted header has no line break, an
//! accepted payload is JSON.
#![no_main]
use herald_core::validate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{1f}');
    let (a, b, c) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    if let Ok(uri) = validate::url(a) {
        assert!(uri.host().is_some_and(|h| !h.is_empty()));
    }
    if validate::header(a, b).is_ok() {
        assert!(!b.contains('\n') && !b.contains('\r'));
    }
    let _ = validate::id("id", a);
    let _ = validate::event_type(a);
    let _ = validate::description(c);
    if validate::payload(c, 1 << 20).is_ok() {
        assert!(serde_json_ok(c));
    }
});

fn serde_json_ok(text: &str) -> bool {
    // The validator walks JSON without building it; an accepted payload
    // must be a JSON document (its first non-space byte starts a value).
    let t = text.trim_start();
    matches!(t.as_bytes().first(), Some(b'{' | b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9'))
}
