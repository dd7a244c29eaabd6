//! An endpoint's fan-out subscription as the endpoint model holds it: the
//! application it belongs to is on [`crate::Endpoint`]; here are the event
//! type patterns, channels and payload filter, kept as written (for the
//! registry record and the API) next to their compiled form (built once,
//! when the endpoint is read or changed; see `herald-catalog`).

use std::sync::Arc;

use herald_catalog::{EventInput, Match, SubscriptionError};

use crate::validate::FieldError;

/// The application an endpoint belongs to when none is named.
pub const DEFAULT_APP: &str = "default";

/// Event type patterns (empty = every type), channels (empty = any) and a
/// CEL filter (empty = none), validated and compiled.
#[derive(Clone)]
pub struct Subscription {
    event_types: Vec<String>,
    channels: Vec<String>,
    filter: String,
    compiled: Arc<herald_catalog::Subscription>,
}

impl PartialEq for Subscription {
    /// Equal when written the same (the compiled form follows from it).
    fn eq(&self, other: &Self) -> bool {
        self.event_types == other.event_types
            && self.channels == other.channels
            && self.filter == other.filter
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("event_types", &self.event_types)
            .field("channels", &self.channels)
            .field("filter", &self.filter)
            .finish()
    }
}

impl Default for Subscription {
    /// Every event type, any channel, no filter.
    fn default() -> Self {
        Self::new(Vec::new(), Vec::new(), String::new()).expect("the default subscription is valid")
    }
}

impl Subscription {
    /// Validates and compiles a subscription; the error names the field
    /// (`event_types[2]`, `channels`, `filter`) and, for a filter, the line
    /// and column of the mistake.
    pub fn new(
        event_types: Vec<String>,
        channels: Vec<String>,
        filter: String,
    ) -> Result<Self, FieldError> {
        let every = ["*"];
        let patterns: &[String] = &event_types;
        let compiled = if patterns.is_empty() {
            herald_catalog::Subscription::new(&every, &channels, Some(&filter))
        } else {
            herald_catalog::Subscription::new(patterns, &channels, Some(&filter))
        }
        .map_err(field_error)?;
        Ok(Self {
            event_types,
            channels,
            filter: filter.trim().to_string(),
            compiled: Arc::new(compiled),
        })
    }

    /// The patterns as written (empty = every type).
    pub fn event_types(&self) -> &[String] {
        &self.event_types
    }

    /// The channels as written (empty = any).
    pub fn channels(&self) -> &[String] {
        &self.channels
    }

    /// The filter's CEL source (empty = none).
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// Whether this subscription takes the event; a filter that fails to
    /// evaluate (missing field, wrong type) does not take it.
    pub fn matches(&self, event: &EventInput<'_>) -> Match {
        self.compiled.matches_event(event)
    }
}

fn field_error(e: SubscriptionError) -> FieldError {
    let field = match &e {
        SubscriptionError::NoPatterns | SubscriptionError::TooManyPatterns { .. } => {
            "event_types".to_string()
        }
        SubscriptionError::Pattern { index, .. } => format!("event_types[{index}]"),
        SubscriptionError::Channel(_) => "channels".to_string(),
        SubscriptionError::Filter(_) => "filter".to_string(),
    };
    FieldError::new(field, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sub(types: &[&str], channels: &[&str], filter: &str) -> Result<Subscription, FieldError> {
        Subscription::new(
            types.iter().map(|s| s.to_string()).collect(),
            channels.iter().map(|s| s.to_string()).collect(),
            filter.to_string(),
        )
    }

    #[test]
    fn empty_means_every_type_and_any_channel() {
        let s = Subscription::default();
        let payload = json!({"a": 1});
        let ev = EventInput::new("order.shipped", &[], &payload);
        assert!(s.matches(&ev).is_match());
    }

    #[test]
    fn patterns_channels_and_filter_all_apply() {
        let s = sub(&["order.*"], &["eu"], "amount > 1000").unwrap();
        let big = json!({"amount": 1500});
        let small = json!({"amount": 10});
        let eu = vec!["eu".to_string()];
        assert!(s
            .matches(&EventInput::new("order.paid", &eu, &big))
            .is_match());
        assert!(!s
            .matches(&EventInput::new("order.paid", &eu, &small))
            .is_match());
        assert!(!s
            .matches(&EventInput::new("order.paid", &[], &big))
            .is_match());
        assert!(!s
            .matches(&EventInput::new("user.created", &eu, &big))
            .is_match());
    }

    #[test]
    fn errors_name_the_field_and_position() {
        let e = sub(&["order.*", "bad**"], &[], "").unwrap_err();
        assert_eq!(e.field, "event_types[1]");
        let e = sub(&[], &[], "amount >").unwrap_err();
        assert_eq!(e.field, "filter");
        assert!(e.message.contains("line 1"), "{}", e.message);
        let e = sub(&[], &["has space"], "").unwrap_err();
        assert_eq!(e.field, "channels");
    }
}
