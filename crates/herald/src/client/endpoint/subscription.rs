//! The flags of an endpoint's application and fan-out subscription on
//! `herald endpoint create|update` (`--app`, `--event-type`, `--channel`,
//! `--filter` and, on update, the flags that clear them), and the request
//! fields they set. The server judges patterns, channels and filters (its
//! errors name the failing place); this module only carries them.
use herald_proto::v1::{CreateEndpointRequest, StringList, UpdateEndpointRequest};

/// The application and subscription flags of `herald endpoint create`.
#[derive(clap::Args, Debug)]
pub(super) struct CreateSubscription {
    /// The application (tenant) the endpoint belongs to; fixed once created
    /// (default: the "default" application).
    #[arg(long, value_name = "APP")]
    app: Option<String>,
    /// Receive fan-out publishes of this event type: a name, or a pattern
    /// whose `*` segments match one segment each, e.g. 'order.*' ('*' alone =
    /// every type). Repeatable; none = every type.
    #[arg(long = "event-type", value_name = "PATTERN")]
    event_types: Vec<String>,
    /// Receive only fan-out events that carry this channel (repeatable;
    /// none = any channel).
    #[arg(long = "channel", value_name = "CHANNEL")]
    channels: Vec<String>,
    /// CEL expression a fan-out event's payload must satisfy, e.g.
    /// 'amount > 1000 && customer.tier == "gold"'.
    #[arg(long, value_name = "CEL")]
    filter: Option<String>,
}

impl CreateSubscription {
    /// Sets the request's application and subscription (empty = the server's defaults).
    pub(super) fn apply(self, req: &mut CreateEndpointRequest) {
        req.app_id = self.app.unwrap_or_default();
        req.event_types = self.event_types;
        req.channels = self.channels;
        req.filter = self.filter.unwrap_or_default();
    }
}

/// The subscription flags of `herald endpoint update`: each list given
/// replaces the endpoint's, a `--all-…`/`--any-…`/`--no-…` flag clears it.
#[derive(clap::Args, Debug)]
pub(super) struct UpdateSubscription {
    /// Not allowed: an endpoint's application is fixed when it is created.
    /// Declared only so that clap says so ([`app_is_fixed`] refuses every value).
    #[arg(long, hide = true, value_name = "APP", value_parser = app_is_fixed)]
    #[allow(dead_code)]
    app: Option<String>,
    /// Event type pattern, e.g. 'order.*' (repeatable); replaces the
    /// endpoint's patterns.
    #[arg(
        long = "event-type",
        value_name = "PATTERN",
        conflicts_with = "all_event_types"
    )]
    event_types: Vec<String>,
    /// Subscribe to every event type (clears the patterns).
    #[arg(long)]
    all_event_types: bool,
    /// Channel (repeatable); replaces the endpoint's channels.
    #[arg(
        long = "channel",
        value_name = "CHANNEL",
        conflicts_with = "any_channel"
    )]
    channels: Vec<String>,
    /// Accept events on any channel (clears the channels).
    #[arg(long)]
    any_channel: bool,
    /// New CEL filter on the payload of fan-out events.
    #[arg(long, value_name = "CEL", conflicts_with = "no_filter")]
    filter: Option<String>,
    /// Remove the filter.
    #[arg(long)]
    no_filter: bool,
}

impl UpdateSubscription {
    /// The flags, for the "nothing to update" message.
    pub(super) const FLAGS: &'static str =
        "--event-type, --all-event-types, --channel, --any-channel, --filter, --no-filter";

    /// True when no subscription flag is given.
    pub(super) fn is_empty(&self) -> bool {
        self.event_types.is_empty()
            && !self.all_event_types
            && self.channels.is_empty()
            && !self.any_channel
            && self.filter.is_none()
            && !self.no_filter
    }

    /// Sets the request's subscription fields; those not given stay unset
    /// (the server keeps them).
    pub(super) fn apply(self, req: &mut UpdateEndpointRequest) {
        req.event_types = replace_list(self.event_types, self.all_event_types);
        req.channels = replace_list(self.channels, self.any_channel);
        // "" is the protocol's "remove the filter".
        req.filter = if self.no_filter {
            Some(String::new())
        } else {
            self.filter
        };
    }
}

/// The value parser of `endpoint update --app`, which always refuses.
fn app_is_fixed(_: &str) -> Result<String, String> {
    Err("an endpoint's application is fixed when it is created; \
         create a new endpoint with --app (and delete this one) to move it"
        .to_owned())
}

/// A list flag of `update`: given values replace the list, `clear`
/// empties it, neither keeps it.
fn replace_list(given: Vec<String>, clear: bool) -> Option<StringList> {
    if clear {
        Some(StringList::default())
    } else if given.is_empty() {
        None
    } else {
        Some(StringList { values: given })
    }
}
