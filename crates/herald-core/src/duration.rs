//! Human-friendly durations in configuration: `"500ms"`, `"5s"`, `"5m"`,
//! `"2h"`, `"3d"`, or a bare integer of milliseconds.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Parses `"<number><unit>"` with unit `ms`, `s`, `m`, `h` or `d`, or a bare
/// number of milliseconds.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (use e.g. 500ms, 5s, 5m, 2h, 3d)"))?;
    let ms = match unit.trim() {
        "" | "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (use ms, s, m, h or d)"
            ))
        }
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// Formats a duration in the largest unit that divides it exactly.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Text(String),
    Millis(u64),
}

impl Raw {
    fn into_duration<E: serde::de::Error>(self) -> Result<Duration, E> {
        match self {
            Raw::Text(s) => parse(&s).map_err(E::custom),
            Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
        }
    }
}

/// `#[serde(with = "duration::serde_one")]` for a `Duration` field.
pub mod serde_one {
    use super::*;

    /// Serialises as text like `"5m"`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    /// Accepts text like `"5m"` or integer milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Raw::deserialize(d)?.into_duration()
    }
}

/// `#[serde(with = "duration::serde_list")]` for a `Vec<Duration>` field.
pub mod serde_list {
    use super::*;
    use serde::ser::SerializeSeq;

    /// Serialises as a list of texts.
    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for d in v {
            seq.serialize_element(&format(*d))?;
        }
        seq.end()
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        Items(Vec<Raw>),
        Text(String),
    }

    /// Accepts a list of texts or integer milliseconds, or one text of
    /// comma-separated durations (as environment variables give it).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        match List::deserialize(d)? {
            List::Items(items) => items.into_iter().map(Raw::into_duration).collect(),
            List::Text(text) => text
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| parse(p).map_err(serde::de::Error::custom))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("250").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse("3d").unwrap(), Duration::from_secs(3 * 86400));
        assert!(parse("5x").unwrap_err().contains("unknown unit"));
        assert!(parse("soon").is_err());
        assert!(parse("").is_err());
        assert!(parse("99999999999999999999d").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for s in ["500ms", "5s", "5m", "2h", "3d", "90s"] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
    }
}
