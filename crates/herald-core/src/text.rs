//! Bounds on text that someone else controls (a receiver's error text, a
//! redirect `Location`, a record key) before Herald stores or forwards it:
//! a retry or dead-letter record must never grow past what Kafka accepts
//! because a receiver said something long.

/// Marker appended to text that was cut.
const CUT: &str = "…";

/// `text` cut to at most `max` bytes on a character boundary, with a marker
/// when it was cut.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let room = max.saturating_sub(CUT.len());
    let mut end = room;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + CUT.len());
    out.push_str(&text[..end]);
    if max >= CUT.len() {
        out.push_str(CUT);
    }
    out
}

/// `text` safe to print on a terminal: control characters (escape
/// sequences among them) and bidirectional overrides become visible
/// `\u{..}` escapes, so text a receiver or another user controls cannot
/// move the cursor, recolour, retitle or reorder what an operator sees.
/// Line breaks and tabs are kept.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_defuses_escape_sequences() {
        assert_eq!(printable("plain\ttext\nline"), "plain\ttext\nline");
        assert_eq!(
            printable("\u{1b}[2J\u{1b}]0;owned\u{7}x"),
            "\\u{1b}[2J\\u{1b}]0;owned\\u{7}x"
        );
        assert_eq!(printable("a\rb"), "a\\u{d}b");
        assert_eq!(printable("\u{9b}31m"), "\\u{9b}31m", "C1 CSI");
        assert_eq!(printable("ab\u{202e}cd"), "ab\\u{202e}cd", "bidi override");
        assert_eq!(printable("café ✓"), "café ✓");
    }
    use proptest::prelude::*;

    #[test]
    fn short_text_is_kept() {
        assert_eq!(bounded("HTTP 503", 512), "HTTP 503");
        assert_eq!(bounded("", 0), "");
    }

    #[test]
    fn long_text_is_cut_with_a_marker() {
        let s = "x".repeat(10_000);
        let b = bounded(&s, 100);
        assert!(b.len() <= 100);
        assert!(b.ends_with(CUT));
    }

    proptest! {
        #[test]
        fn never_longer_never_splits_a_char(s in ".{0,300}", max in 0usize..400) {
            let b = bounded(&s, max);
            prop_assert!(b.len() <= max || b == s);
            // What is kept is a prefix of the original (plus the marker).
            let kept = b.strip_suffix(CUT).unwrap_or(&b);
            prop_assert!(s.starts_with(kept));
        }
    }
}
