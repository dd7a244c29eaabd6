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

#[cfg(test)]
mod tests {
    use super::*;
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
