//! Subscription patterns and channels, and the [`Subscription`] that combines
//! them with an optional payload [`Filter`] to decide whether one event goes
//! to one endpoint.
//!
//! It does not own which endpoints exist, whether they are enabled, or how a
//! subscription is stored: the caller evaluates every candidate endpoint's
//! subscription and writes one record per match.
//!
//! # Patterns
//!
//! A pattern is either an exact event type name (`order.shipped`) or a name
//! in which whole segments are `*`:
//! - `*` in a segment matches exactly one segment: `order.*` matches
//!   `order.shipped` but neither `order` nor `order.shipped.late`;
//!   `*.created` matches `user.created`; `a.*.c` matches `a.b.c`;
//! - a pattern that is a lone `*` matches every event type, whatever its
//!   number of segments;
//! - there is no multi-segment wildcard: `**` is refused (write one pattern
//!   per depth, e.g. `order.*` and `order.*.*`, or use `*`), and so is a `*`
//!   inside a segment (`order.ship*`);
//! - literal segments follow the event type name rules of
//!   [`crate::event_type`] (case-sensitive), with the same length limits.
//!
//! # Channels
//!
//! A channel is a free label a publisher sets per event: 1..=[`MAX_CHANNEL_LEN`]
//! bytes of `A-Z a-z 0-9 _ - . :`. An event carries at most [`MAX_CHANNELS`]
//! of them, and a subscription lists at most as many. A subscription that
//! lists channels accepts only events carrying at least one of them; one that
//! lists none accepts events with any channels, or none.
//!
//! # Matching
//!
//! [`Subscription::matches`] checks, cheapest first: the event type against
//! the patterns (any may match), then the channels, then the filter. A filter
//! that fails to evaluate counts as "no match", with the reason in
//! [`NoMatch::FilterError`].

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

use crate::event_type::{
    check_literal_segment, check_segments, NameError, MAX_NAME_LEN, MAX_SEGMENTS, MAX_SEGMENT_LEN,
};
use crate::filter::{EvalError, EventInput, Filter, FilterError};
use crate::truncate_chars;

/// Most patterns one subscription may list.
pub const MAX_PATTERNS: usize = 64;
/// Most channels one event may carry, and one subscription may list.
pub const MAX_CHANNELS: usize = 32;
/// Longest channel name, in bytes.
pub const MAX_CHANNEL_LEN: usize = 128;

/// Why a subscription pattern is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("pattern is empty; use \"*\" to match every event type")]
    Empty,
    #[error("pattern is {len} bytes long; the limit is {MAX_NAME_LEN}")]
    TooLong { len: usize },
    #[error("pattern has {count} segments; the limit is {MAX_SEGMENTS}")]
    TooManySegments { count: usize },
    #[error(
        "pattern has an empty segment at position {position} (a leading, trailing or doubled '.')"
    )]
    EmptySegment { position: usize },
    #[error(
        "segment {position} of the pattern is {len} bytes long; the limit is {MAX_SEGMENT_LEN}"
    )]
    SegmentTooLong { position: usize, len: usize },
    #[error(
        "pattern contains {found:?} at byte {offset}; segments allow only \
         A-Z, a-z, 0-9, '_', '-', or a whole-segment '*'"
    )]
    InvalidChar { found: char, offset: usize },
    #[error(
        "segment {position} of the pattern, {segment:?}, mixes '*' with other \
         characters; '*' must be a whole segment (e.g. \"order.*\")"
    )]
    PartialWildcard { position: usize, segment: String },
    #[error(
        "segment {position} of the pattern is \"**\"; multi-segment wildcards \
         are not supported: use \"*\" alone for every type, or one pattern \
         per depth (\"order.*\", \"order.*.*\")"
    )]
    MultiSegmentWildcard { position: usize },
}

impl From<NameError> for PatternError {
    fn from(error: NameError) -> Self {
        match error {
            NameError::Empty => PatternError::Empty,
            NameError::TooLong { len } => PatternError::TooLong { len },
            NameError::TooManySegments { count } => PatternError::TooManySegments { count },
            NameError::EmptySegment { position } => PatternError::EmptySegment { position },
            NameError::SegmentTooLong { position, len } => {
                PatternError::SegmentTooLong { position, len }
            }
            NameError::InvalidChar { found, offset } => PatternError::InvalidChar { found, offset },
        }
    }
}

/// A validated subscription pattern (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pattern {
    text: String,
}

impl Pattern {
    /// Validates `text` as a pattern.
    pub fn new(text: impl Into<String>) -> Result<Self, PatternError> {
        let text = text.into();
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if text != "*" {
            check_segments(
                &text,
                |len| PatternError::TooLong { len },
                |count| PatternError::TooManySegments { count },
                check_pattern_segment,
            )?;
        }
        Ok(Self { text })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this is the lone `*` that matches every type.
    pub fn matches_everything(&self) -> bool {
        self.text == "*"
    }

    /// Whether the pattern has no wildcard (it names one event type).
    pub fn is_exact(&self) -> bool {
        !self.text.contains('*')
    }

    /// Whether `event_type` matches. Any text is accepted (an invalid name
    /// simply fails to match a pattern it does not fit).
    pub fn matches(&self, event_type: &str) -> bool {
        if self.matches_everything() {
            return true;
        }
        let mut want = self.text.split('.');
        let mut have = event_type.split('.');
        loop {
            match (want.next(), have.next()) {
                (None, None) => return true,
                (Some(w), Some(h)) if w == "*" || w == h => {}
                _ => return false,
            }
        }
    }
}

fn check_pattern_segment(
    position: usize,
    offset: usize,
    segment: &str,
) -> Result<(), PatternError> {
    match segment {
        "*" => Ok(()),
        "**" => Err(PatternError::MultiSegmentWildcard { position }),
        s if s.contains('*') => Err(PatternError::PartialWildcard {
            position,
            segment: truncate_chars(s, MAX_SEGMENT_LEN),
        }),
        s => check_literal_segment(position, offset, s).map_err(PatternError::from),
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Pattern {
    type Err = PatternError;
    fn from_str(text: &str) -> Result<Self, PatternError> {
        Self::new(text)
    }
}

/// Why a channel, or a list of channels, is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("channel {index} is empty")]
    Empty { index: usize },
    #[error("channel {index} is {len} bytes long; the limit is {MAX_CHANNEL_LEN}")]
    TooLong { index: usize, len: usize },
    #[error(
        "channel {index} contains {found:?} at byte {offset}; channels allow \
         only A-Z, a-z, 0-9, '_', '-', '.' and ':'"
    )]
    InvalidChar {
        index: usize,
        found: char,
        offset: usize,
    },
    #[error("{count} channels given; the limit is {MAX_CHANNELS}")]
    TooMany { count: usize },
}

/// Checks one channel name; `index` (0-based) is only used in the error.
pub fn validate_channel(index: usize, channel: &str) -> Result<(), ChannelError> {
    if channel.is_empty() {
        return Err(ChannelError::Empty { index });
    }
    if let Some((offset, found)) = channel
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(ChannelError::InvalidChar {
            index,
            found,
            offset,
        });
    }
    if channel.len() > MAX_CHANNEL_LEN {
        return Err(ChannelError::TooLong {
            index,
            len: channel.len(),
        });
    }
    Ok(())
}

/// Checks the channels a publisher set on an event (count and each name).
pub fn validate_channels<S: AsRef<str>>(channels: &[S]) -> Result<(), ChannelError> {
    if channels.len() > MAX_CHANNELS {
        return Err(ChannelError::TooMany {
            count: channels.len(),
        });
    }
    channels
        .iter()
        .enumerate()
        .try_for_each(|(i, c)| validate_channel(i, c.as_ref()))
}

/// Why a subscription could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    #[error("a subscription needs at least one event type pattern; use \"*\" for every type")]
    NoPatterns,
    #[error("{count} patterns given; the limit is {MAX_PATTERNS}")]
    TooManyPatterns { count: usize },
    #[error("pattern {index} ({pattern:?}) is invalid: {error}")]
    Pattern {
        index: usize,
        pattern: String,
        error: PatternError,
    },
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Filter(#[from] FilterError),
}

/// Why an event does not go to a subscription's endpoint.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NoMatch {
    #[error("the event type matches none of the subscription's patterns")]
    EventType,
    #[error("the event carries none of the subscription's channels")]
    Channel,
    #[error("the filter evaluated to false")]
    FilteredOut,
    #[error("the filter could not be evaluated, so the event is not delivered: {0}")]
    FilterError(EvalError),
}

/// The decision for one event and one subscription.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub enum Match {
    Matched,
    NoMatch(NoMatch),
}

impl Match {
    pub fn is_match(&self) -> bool {
        matches!(self, Match::Matched)
    }
}

/// What an endpoint subscribes to: event type patterns, optionally channels
/// and a payload filter (compiled once, when the subscription is built).
#[derive(Debug, Clone)]
pub struct Subscription {
    patterns: Vec<Pattern>,
    channels: BTreeSet<String>,
    filter: Option<Filter>,
}

impl Subscription {
    /// Validates and builds a subscription. Duplicate patterns and channels
    /// are kept once; patterns keep their first-seen order. `filter` is CEL
    /// source (see [`crate::filter`]); `None` or blank means no filter.
    pub fn new<P, C>(
        patterns: &[P],
        channels: &[C],
        filter: Option<&str>,
    ) -> Result<Self, SubscriptionError>
    where
        P: AsRef<str>,
        C: AsRef<str>,
    {
        if patterns.is_empty() {
            return Err(SubscriptionError::NoPatterns);
        }
        if patterns.len() > MAX_PATTERNS {
            return Err(SubscriptionError::TooManyPatterns {
                count: patterns.len(),
            });
        }
        let mut parsed: Vec<Pattern> = Vec::with_capacity(patterns.len());
        for (index, text) in patterns.iter().enumerate() {
            let text = text.as_ref();
            let pattern = Pattern::new(text).map_err(|error| SubscriptionError::Pattern {
                index,
                pattern: truncate_chars(text, MAX_NAME_LEN),
                error,
            })?;
            if !parsed.contains(&pattern) {
                parsed.push(pattern);
            }
        }
        validate_channels(channels)?;
        let channels = channels.iter().map(|c| c.as_ref().to_owned()).collect();
        let filter = match filter.map(str::trim) {
            None | Some("") => None,
            Some(source) => Some(Filter::compile(source)?),
        };
        Ok(Self {
            patterns: parsed,
            channels,
            filter,
        })
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// The channels listed (empty = any channels accepted).
    pub fn channels(&self) -> &BTreeSet<String> {
        &self.channels
    }

    pub fn filter(&self) -> Option<&Filter> {
        self.filter.as_ref()
    }

    /// Whether `event_type` matches any pattern.
    pub fn matches_type(&self, event_type: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(event_type))
    }

    /// Whether an event with these channels passes the channel rule.
    pub fn matches_channels<S: AsRef<str>>(&self, channels: &[S]) -> bool {
        self.channels.is_empty() || channels.iter().any(|c| self.channels.contains(c.as_ref()))
    }

    /// Decides one event. For fan-out over many subscriptions prefer
    /// [`Subscription::matches_event`] with one [`EventInput`] per event, so
    /// the payload is converted for the filters only once.
    pub fn matches(&self, event_type: &str, channels: &[String], payload: &Value) -> Match {
        self.matches_event(&EventInput::new(event_type, channels, payload))
    }

    /// Decides one event, prepared once for many subscriptions.
    pub fn matches_event(&self, event: &EventInput<'_>) -> Match {
        if !self.matches_type(event.event_type()) {
            return Match::NoMatch(NoMatch::EventType);
        }
        if !self.matches_channels(event.channels()) {
            return Match::NoMatch(NoMatch::Channel);
        }
        match &self.filter {
            None => Match::Matched,
            Some(filter) => match filter.evaluate(event) {
                Ok(true) => Match::Matched,
                Ok(false) => Match::NoMatch(NoMatch::FilteredOut),
                Err(error) => Match::NoMatch(NoMatch::FilterError(error)),
            },
        }
    }
}

#[cfg(test)]
#[path = "pattern_tests.rs"]
mod tests;
