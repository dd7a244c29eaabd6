//! How client results are shown: serde view structs (`--output json`) and their
//! text rendering (`--output text`), plus small formatting helpers.
//!
//! Owns the field names scripts rely on: they are snake_case and only ever
//! added to, never renamed. It does no I/O beyond writing to stdout in
//! [`print`]; converting from protobuf types happens here so the commands stay
//! thin. Event types are shown by `output/event_type.rs`; the unit tests of
//! this file are in `output/tests.rs`.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::Context as _;
use herald_proto::v1;
use serde::Serialize;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

use super::OutputFormat;

mod event_type;

pub(crate) use event_type::{EventTypeListView, EventTypeView};

/// A value a command prints: serialisable for `--output json`, renderable as text.
pub(crate) trait Render: Serialize {
    /// The readable form; every line ends with `\n`.
    fn to_text(&self) -> String;
}

/// Renders `value` in `format`: JSON is one compact line, text as the view chooses.
pub(crate) fn render<T: Render>(format: OutputFormat, value: &T) -> anyhow::Result<String> {
    match format {
        // Text goes to a terminal: nothing a receiver or another user wrote
        // (payloads, error text, descriptions) may carry escape sequences
        // there. JSON escapes control characters itself.
        OutputFormat::Text => Ok(herald_core::text::printable(&value.to_text()).into_owned()),
        OutputFormat::Json => {
            let mut line = serde_json::to_string(value).context("encoding JSON output")?;
            line.push('\n');
            Ok(line)
        }
    }
}

/// Writes `value` to stdout in `format` and flushes.
pub(crate) fn print<T: Render>(format: OutputFormat, value: &T) -> anyhow::Result<()> {
    let text = render(format, value)?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}

/// An endpoint as the client shows it (never with its secret).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointView {
    pub id: String,
    pub url: String,
    pub description: String,
    pub enabled: bool,
    pub ordered: bool,
    /// Requests per second; 0 = the node default.
    pub rate_limit_per_second: u32,
    /// Burst above the rate; 0 = same as the rate.
    pub rate_limit_burst: u32,
    /// Concurrent deliveries for an unordered endpoint; 0 = the node default.
    pub max_in_flight: u32,
    /// Custom headers, sorted by name so output is stable.
    pub headers: BTreeMap<String, String>,
    /// Names of the sensitive custom headers (values are write-only).
    pub sensitive_headers: Vec<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Delays before each retry, ms; empty = the node default.
    pub retry_schedule_ms: Vec<u64>,
    /// Maximum event age, ms; 0 = the node default.
    pub max_age_ms: u64,
    /// Total attempt timeout, ms; 0 = the node default.
    pub timeout_ms: u32,
    /// The application (tenant) the endpoint belongs to.
    pub app_id: String,
    /// Event type patterns it receives fan-out publishes for; empty = every type.
    pub event_types: Vec<String>,
    /// Channels it subscribes to; empty = any channel.
    pub channels: Vec<String>,
    /// CEL filter on the payload of fan-out publishes; empty = none.
    pub filter: String,
    /// Most events per batched request; 0 = one event per request.
    pub batch_max_events: u32,
    /// How long a batch waits to fill, ms.
    pub batch_linger_ms: u32,
}

impl From<v1::Endpoint> for EndpointView {
    fn from(e: v1::Endpoint) -> Self {
        let rate = e.rate_limit.unwrap_or_default();
        EndpointView {
            id: e.id,
            url: e.url,
            description: e.description,
            enabled: e.enabled,
            ordered: e.ordered,
            rate_limit_per_second: rate.per_second,
            rate_limit_burst: rate.burst,
            max_in_flight: e.max_in_flight,
            headers: e.headers.into_iter().collect(),
            sensitive_headers: {
                let mut names = e.sensitive_header_names;
                names.sort();
                names
            },
            created_at_ms: e.created_at_ms,
            updated_at_ms: e.updated_at_ms,
            retry_schedule_ms: e.retry_schedule_ms,
            max_age_ms: e.max_age_ms,
            timeout_ms: e.timeout_ms,
            app_id: e.app_id,
            event_types: e.event_types,
            channels: e.channels,
            filter: e.filter,
            batch_max_events: e.batch_max_events,
            batch_linger_ms: e.batch_linger_ms,
        }
    }
}

fn ms_text(ms: u64) -> String {
    herald_core::duration::format(std::time::Duration::from_millis(ms))
}

impl EndpointView {
    fn write_details(&self, out: &mut String) {
        let mut field = |label: &str, value: &str| {
            let label = if label.is_empty() {
                String::new()
            } else {
                format!("{label}:")
            };
            let _ = writeln!(out, "{label:<15}{value}");
        };
        field("id", &self.id);
        field("app", &self.app_id);
        field("url", &self.url);
        if !self.description.is_empty() {
            field("description", &self.description);
        }
        field("event types", &self.event_types_text());
        field("channels", &self.channels_text());
        field("filter", self.filter_text());
        field("enabled", yes_no(self.enabled));
        field("ordered", yes_no(self.ordered));
        field(
            "rate limit",
            &rate_text(self.rate_limit_per_second, self.rate_limit_burst),
        );
        if !self.ordered {
            let in_flight = match self.max_in_flight {
                0 => "node default".to_owned(),
                n => n.to_string(),
            };
            field("max in flight", &in_flight);
        }
        let lines: Vec<String> = self
            .headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}"))
            .chain(
                self.sensitive_headers
                    .iter()
                    .map(|name| format!("{name}: (sensitive, write-only)")),
            )
            .collect();
        if lines.is_empty() {
            field("headers", "(none)");
        } else {
            for (i, line) in lines.iter().enumerate() {
                field(if i == 0 { "headers" } else { "" }, line);
            }
        }
        let schedule = if self.retry_schedule_ms.is_empty() {
            "node default".to_owned()
        } else {
            self.retry_schedule_ms
                .iter()
                .map(|&ms| ms_text(ms))
                .collect::<Vec<_>>()
                .join(", ")
        };
        field("retries", &schedule);
        if self.max_age_ms > 0 {
            field("max age", &ms_text(self.max_age_ms));
        }
        if self.timeout_ms > 0 {
            field("timeout", &ms_text(u64::from(self.timeout_ms)));
        }
        if self.batch_max_events > 1 {
            field(
                "batches",
                &format!(
                    "up to {} events, linger {}",
                    self.batch_max_events,
                    ms_text(u64::from(self.batch_linger_ms))
                ),
            );
        }
        field("created", &format_unix_ms(self.created_at_ms));
        field("updated", &format_unix_ms(self.updated_at_ms));
    }
}

impl EndpointView {
    /// `order.*, invoice.paid`, or `all` when it subscribes to every type.
    fn event_types_text(&self) -> String {
        if self.event_types.is_empty() {
            "all".to_owned()
        } else {
            self.event_types.join(", ")
        }
    }

    /// `eu, vip`, or `any`.
    fn channels_text(&self) -> String {
        if self.channels.is_empty() {
            "any".to_owned()
        } else {
            self.channels.join(", ")
        }
    }

    /// The filter, or `none`.
    fn filter_text(&self) -> &str {
        if self.filter.is_empty() {
            "none"
        } else {
            &self.filter
        }
    }
}

impl Render for EndpointView {
    fn to_text(&self) -> String {
        let mut out = String::new();
        self.write_details(&mut out);
        out
    }
}

/// `endpoint create`: the endpoint plus the secret, which is shown only this once.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct CreatedEndpointView {
    #[serde(flatten)]
    pub endpoint: EndpointView,
    pub secret: String,
}

impl From<v1::CreateEndpointResponse> for CreatedEndpointView {
    fn from(r: v1::CreateEndpointResponse) -> Self {
        CreatedEndpointView {
            endpoint: r.endpoint.unwrap_or_default().into(),
            secret: r.secret,
        }
    }
}

impl Render for CreatedEndpointView {
    fn to_text(&self) -> String {
        let mut out = format!("created endpoint {}\n", self.endpoint.id);
        self.endpoint.write_details(&mut out);
        let _ = writeln!(out, "secret: {} (shown once; store it now)", self.secret);
        out
    }
}

/// `endpoint list`: a JSON array, or an aligned table.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(transparent)]
pub(crate) struct EndpointListView(pub Vec<EndpointView>);

impl Render for EndpointListView {
    fn to_text(&self) -> String {
        if self.0.is_empty() {
            return "no endpoints\n".to_owned();
        }
        let rows = self.0.iter().map(|e| {
            [
                e.id.clone(),
                e.app_id.clone(),
                e.url.clone(),
                yes_no(e.enabled).to_owned(),
                yes_no(e.ordered).to_owned(),
                rate_text(e.rate_limit_per_second, e.rate_limit_burst),
                e.event_types_text(),
                e.channels_text(),
                // One row per endpoint, whatever the filter's layout.
                e.filter_text().replace(['\r', '\n'], " "),
            ]
        });
        table(
            &[
                "ID",
                "APP",
                "URL",
                "ENABLED",
                "ORDERED",
                "RATE",
                "EVENT TYPES",
                "CHANNELS",
                "FILTER",
            ],
            rows,
        )
    }
}

/// `endpoint delete`.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeletedView {
    pub id: String,
    pub deleted: bool,
}

impl Render for DeletedView {
    fn to_text(&self) -> String {
        format!("deleted endpoint {}\n", self.id)
    }
}

/// `publish`: where Kafka stored the event, or for a fan-out (`--app`) the
/// message id and how many endpoints got it. Each form has only its own
/// fields in JSON: `event_id`, `partition`, `offset` for one endpoint;
/// `message_id`, `fanned_out` for a fan-out; `duplicate` for both.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublishedView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// Fan-out: the id of the message; each endpoint's event id derives from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Fan-out: how many endpoints got a record (0 = none is subscribed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fanned_out: Option<u32>,
    /// True when the server answered from its idempotency cache.
    pub duplicate: bool,
    /// Scheduled: when the event becomes due, unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliver_at_ms: Option<i64>,
}

impl From<v1::PublishResponse> for PublishedView {
    fn from(r: v1::PublishResponse) -> Self {
        // The server sets a message id on fan-out answers only.
        if r.message_id.is_empty() {
            PublishedView {
                event_id: Some(r.event_id),
                partition: Some(r.partition),
                offset: Some(r.offset),
                message_id: None,
                fanned_out: None,
                duplicate: r.duplicate,
                deliver_at_ms: (r.deliver_at_ms > 0).then_some(r.deliver_at_ms),
            }
        } else {
            PublishedView {
                event_id: None,
                partition: None,
                offset: None,
                message_id: Some(r.message_id),
                fanned_out: Some(r.fanned_out),
                duplicate: r.duplicate,
                deliver_at_ms: (r.deliver_at_ms > 0).then_some(r.deliver_at_ms),
            }
        }
    }
}

impl Render for PublishedView {
    fn to_text(&self) -> String {
        let mut out = match (&self.message_id, self.fanned_out) {
            (Some(message_id), Some(n)) => {
                let mut line = format!(
                    "published {message_id} to {n} endpoint{}",
                    if n == 1 { "" } else { "s" }
                );
                if n == 0 {
                    line.push_str(
                        " (no enabled endpoint of the application is subscribed to this \
                         event type and channels, or their filters did not match)",
                    );
                }
                line
            }
            _ => format!(
                "published {} to partition {} at offset {}",
                self.event_id.as_deref().unwrap_or_default(),
                self.partition.unwrap_or_default(),
                self.offset.unwrap_or_default()
            ),
        };
        if let Some(at) = self.deliver_at_ms {
            out.push_str(&format!(", scheduled for {}", format_unix_ms(at)));
        }
        if self.duplicate {
            out.push_str(" (duplicate: this idempotency key was already answered)");
        }
        out.push('\n');
        out
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// `node default`, `100/s` or `100/s, burst 200`.
pub(crate) fn rate_text(per_second: u32, burst: u32) -> String {
    match (per_second, burst) {
        (0, _) => "node default".to_owned(),
        (r, 0) => format!("{r}/s"),
        (r, b) => format!("{r}/s, burst {b}"),
    }
}

/// Left-aligned columns separated by two spaces under a header row, with no
/// borders and no trailing spaces, laid out by comfy-table (which measures
/// cells by display width, so wide characters keep the columns aligned).
/// Never wrapped: scripts that want fields use `--output json`.
pub(crate) fn table<R, C>(headers: &[&str], rows: R) -> String
where
    R: IntoIterator<Item = C>,
    C: IntoIterator,
    C::Item: Into<comfy_table::Cell>,
{
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(headers.iter().copied());
    for row in rows {
        t.add_row(row);
    }
    let last = headers.len().saturating_sub(1);
    for (i, column) in t.column_iter_mut().enumerate() {
        column.set_padding((0, if i == last { 0 } else { 2 }));
    }
    let mut out = String::new();
    for line in t.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Unix milliseconds as `2025-01-31T12:00:00.000Z` (UTC, always three
/// fractional digits so columns line up); `-` for 0 (unknown). A time outside
/// years -9999..=9999 is shown as its raw number.
pub(crate) fn format_unix_ms(ms: i64) -> String {
    const FORMAT: &[BorrowedFormatItem<'_>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    if ms == 0 {
        return "-".to_owned();
    }
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_else(|| format!("{ms} (unix ms)"))
}

#[cfg(test)]
mod tests;
