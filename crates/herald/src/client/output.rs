//! How client results are shown: serde view structs (`--output json`) and their
//! text rendering (`--output text`), plus small formatting helpers.
//!
//! Owns the field names scripts rely on: they are snake_case and only ever
//! added to, never renamed. It does no I/O beyond writing to stdout in
//! [`print`]; converting from protobuf types happens here so the commands stay
//! thin.
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
        field("url", &self.url);
        if !self.description.is_empty() {
            field("description", &self.description);
        }
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
        field("created", &format_unix_ms(self.created_at_ms));
        field("updated", &format_unix_ms(self.updated_at_ms));
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
                e.url.clone(),
                yes_no(e.enabled).to_owned(),
                yes_no(e.ordered).to_owned(),
                rate_text(e.rate_limit_per_second, e.rate_limit_burst),
            ]
        });
        table(&["ID", "URL", "ENABLED", "ORDERED", "RATE"], rows)
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

/// `publish`: where Kafka stored the event.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublishedView {
    pub event_id: String,
    pub partition: i32,
    pub offset: i64,
    /// True when the server answered from its idempotency cache.
    pub duplicate: bool,
}

impl From<v1::PublishResponse> for PublishedView {
    fn from(r: v1::PublishResponse) -> Self {
        PublishedView {
            event_id: r.event_id,
            partition: r.partition,
            offset: r.offset,
            duplicate: r.duplicate,
        }
    }
}

impl Render for PublishedView {
    fn to_text(&self) -> String {
        let mut out = format!(
            "published {} to partition {} at offset {}",
            self.event_id, self.partition, self.offset
        );
        if self.duplicate {
            out.push_str(" (duplicate: answered from the idempotency cache)");
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
mod tests {
    use super::*;

    fn endpoint() -> v1::Endpoint {
        v1::Endpoint {
            id: "ep_1".into(),
            url: "https://example.com/hook".into(),
            description: "billing".into(),
            enabled: true,
            ordered: false,
            rate_limit: Some(v1::RateLimit {
                per_second: 100,
                burst: 20,
            }),
            max_in_flight: 4,
            headers: [
                ("X-B".to_owned(), "2".to_owned()),
                ("X-A".to_owned(), "1".to_owned()),
            ]
            .into(),
            created_at_ms: 1_700_000_000_123,
            updated_at_ms: 0,
            ..Default::default()
        }
    }

    #[test]
    fn text_output_defuses_escape_sequences_json_escapes_them() {
        let mut e = endpoint();
        e.description = "\u{1b}]0;owned\u{7}\u{1b}[2J".into();
        let view = EndpointView::from(e);
        let text = render(OutputFormat::Text, &view).unwrap();
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(text.contains("\\u{1b}[2J"), "{text:?}");
        let json = render(OutputFormat::Json, &view).unwrap();
        assert!(
            !json.contains('\u{1b}') && json.contains("\\u001b"),
            "{json:?}"
        );
    }

    #[test]
    fn endpoint_view_flattens_rate_limit_and_sorts_headers() {
        let view = EndpointView::from(endpoint());
        assert_eq!(view.rate_limit_per_second, 100);
        assert_eq!(view.rate_limit_burst, 20);
        let json: serde_json::Value = serde_json::to_value(&view).unwrap();
        assert_eq!(json["id"], "ep_1");
        assert_eq!(json["max_in_flight"], 4);
        assert_eq!(json["headers"]["X-A"], "1");
        let keys: Vec<_> = view.headers.keys().cloned().collect();
        assert_eq!(keys, ["X-A", "X-B"]);
    }

    #[test]
    fn missing_rate_limit_means_node_default() {
        let view = EndpointView::from(v1::Endpoint {
            rate_limit: None,
            ..endpoint()
        });
        assert_eq!((view.rate_limit_per_second, view.rate_limit_burst), (0, 0));
        assert_eq!(rate_text(0, 0), "node default");
        assert_eq!(rate_text(5, 0), "5/s");
        assert_eq!(rate_text(5, 9), "5/s, burst 9");
    }

    #[test]
    fn created_json_has_id_and_secret_at_top_level() {
        let view = CreatedEndpointView::from(v1::CreateEndpointResponse {
            endpoint: Some(endpoint()),
            secret: "whsec_abc".into(),
        });
        let line = render(OutputFormat::Json, &view).unwrap();
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(json["id"], "ep_1");
        assert_eq!(json["secret"], "whsec_abc");
        assert_eq!(json["url"], "https://example.com/hook");
    }

    #[test]
    fn created_text_shows_secret_once_warning() {
        let view = CreatedEndpointView::from(v1::CreateEndpointResponse {
            endpoint: Some(endpoint()),
            secret: "whsec_abc".into(),
        });
        let text = render(OutputFormat::Text, &view).unwrap();
        assert!(
            text.contains("\nsecret: whsec_abc (shown once; store it now)\n"),
            "{text}"
        );
        assert!(text.contains("rate limit:    100/s, burst 20\n"), "{text}");
        assert!(
            text.contains("headers:       X-A: 1\n               X-B: 2\n"),
            "{text}"
        );
        assert!(
            text.contains("created:       2023-11-14T22:13:20.123Z\n"),
            "{text}"
        );
    }

    #[test]
    fn publish_views() {
        let view = PublishedView::from(v1::PublishResponse {
            event_id: "evt_1".into(),
            partition: 3,
            offset: 42,
            duplicate: false,
            ..Default::default()
        });
        assert_eq!(
            render(OutputFormat::Text, &view).unwrap(),
            "published evt_1 to partition 3 at offset 42\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(OutputFormat::Json, &view).unwrap()).unwrap();
        assert_eq!(json["event_id"], "evt_1");
        assert_eq!(json["partition"], 3);
        assert_eq!(json["offset"], 42);
        assert_eq!(json["duplicate"], false);
    }

    #[test]
    fn list_is_an_array_in_json_and_an_aligned_table_in_text() {
        let a = EndpointView::from(endpoint());
        let b = EndpointView {
            id: "ep_long_name".into(),
            url: "http://x".into(),
            enabled: false,
            ordered: true,
            rate_limit_per_second: 0,
            ..a.clone()
        };
        let list = EndpointListView(vec![a, b]);
        let json: serde_json::Value =
            serde_json::from_str(&render(OutputFormat::Json, &list).unwrap()).unwrap();
        assert_eq!(json.as_array().unwrap().len(), 2);
        assert_eq!(
            list.to_text(),
            "ID            URL                       ENABLED  ORDERED  RATE\n\
             ep_1          https://example.com/hook  yes      no       100/s, burst 20\n\
             ep_long_name  http://x                  no       yes      node default\n"
        );
        assert_eq!(EndpointListView(vec![]).to_text(), "no endpoints\n");
    }

    #[test]
    fn tables_align_by_display_width() {
        let text = table(&["A", "B"], [["日本", "x"], ["ab", "y"]]);
        assert_eq!(text, "A     B\n日本  x\nab    y\n");
        assert_eq!(table(&["ONLY"], Vec::<[&str; 1]>::new()), "ONLY\n");
    }

    #[test]
    fn timestamps() {
        assert_eq!(format_unix_ms(0), "-");
        assert_eq!(format_unix_ms(1), "1970-01-01T00:00:00.001Z");
        assert_eq!(format_unix_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_unix_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            format_unix_ms(253_402_300_799_999),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(format_unix_ms(i64::MAX), format!("{} (unix ms)", i64::MAX));
    }
}
