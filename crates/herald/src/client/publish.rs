//! `herald publish`: sending one event through the gRPC `EventService`,
//! to one endpoint (`--endpoint`) or fanned out to every subscribed endpoint
//! of an application (`--app`, with `--channel` labels).
//!
//! Owns the publish flags (exactly one target; clap refuses the rest) and
//! where the payload comes from (`--data` inline, `@file`, or `-` for stdin). The payload is checked to be JSON here so a typo
//! fails before any network call; it is sent as given (only trimmed), never
//! re-serialised.
use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::builder::NonEmptyStringValueParser;
use herald_proto::v1::event_service_client::EventServiceClient;
use herald_proto::v1::PublishRequest;

use super::output::{self, PublishedView};
use super::{rpc, ClientOpts};

/// Flags of `herald publish`.
#[derive(clap::Args, Debug)]
#[command(group(
    clap::ArgGroup::new("target")
        .args(["endpoint", "app"])
        .required(true)
        .multiple(false)
))]
pub struct PublishArgs {
    /// Endpoint the event is delivered to (or --app to fan out).
    #[arg(long, value_name = "ID", value_parser = NonEmptyStringValueParser::new())]
    endpoint: Option<String>,
    /// Fan out instead of naming an endpoint: every enabled endpoint of this
    /// application subscribed to the event type (and a channel, and whose
    /// filter matches) gets its own copy.
    #[arg(long, value_name = "APP", value_parser = NonEmptyStringValueParser::new())]
    app: Option<String>,
    /// A channel label on a fan-out event (repeatable); an endpoint that
    /// lists channels receives only events carrying one of them.
    // Not `requires = "app"`: clap drops a requirement that conflicts with a
    // flag given (here --endpoint, through the target group).
    #[arg(long = "channel", value_name = "CHANNEL", conflicts_with = "endpoint")]
    channels: Vec<String>,
    /// Event type, e.g. invoice.paid.
    #[arg(long = "type", value_name = "TYPE")]
    event_type: String,
    /// JSON payload: inline JSON, @FILE to read a file, or - to read stdin.
    #[arg(long, value_name = "JSON|@FILE|-", value_parser = parse_data)]
    data: DataSource,
    /// Makes a retried publish harmless: the same key for the same endpoint
    /// (or application) always yields the same event (or message) id.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// Caller-chosen event id (sent as webhook-id); generated when omitted.
    /// Not with --app: each endpoint's event id derives from the message id.
    #[arg(long, value_name = "ID", conflicts_with = "app")]
    event_id: Option<String>,
    /// Deliver at or after this time: unix ms or RFC 3339
    /// (2025-01-31T12:00:00Z). At most grpc.max_schedule_delay ahead.
    #[arg(long, value_name = "TIME", value_parser = parse_instant, conflicts_with = "delay")]
    deliver_at: Option<i64>,
    /// Deliver this long after publishing, e.g. 90s, 5m, 5d.
    #[arg(long, value_name = "DURATION", value_parser = parse_delay)]
    delay: Option<u64>,
}

/// Unix ms or an RFC 3339 time.
fn parse_instant(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return if ms >= 0 {
            Ok(ms)
        } else {
            Err("a time cannot be before 1970 (unix ms 0)".to_owned())
        };
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            format!("{e}; give unix milliseconds or an RFC 3339 time such as 2025-01-31T12:00:00Z")
        })?;
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000))
        .ok()
        .filter(|&ms| ms >= 0)
        .ok_or_else(|| "a time cannot be before 1970 (unix ms 0)".to_owned())
}

/// A duration such as 90s or 5d, in ms.
fn parse_delay(s: &str) -> Result<u64, String> {
    let d = herald_core::duration::parse(s).map_err(|e| e.to_string())?;
    u64::try_from(d.as_millis()).map_err(|_| format!("{s:?} is too long"))
}

/// Where `--data` comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum DataSource {
    Inline(String),
    File(PathBuf),
    Stdin,
}

fn parse_data(s: &str) -> Result<DataSource, String> {
    match s {
        "-" | "@-" => Ok(DataSource::Stdin),
        "@" => Err("missing file name after '@' (use @FILE, or - for stdin)".to_owned()),
        _ => Ok(match s.strip_prefix('@') {
            Some(path) => DataSource::File(PathBuf::from(path)),
            None => DataSource::Inline(s.to_owned()),
        }),
    }
}

impl DataSource {
    fn describe(&self) -> String {
        match self {
            DataSource::Inline(_) => "--data".to_owned(),
            DataSource::File(path) => format!("--data @{}", path.display()),
            DataSource::Stdin => "--data from stdin".to_owned(),
        }
    }
}

/// Reads the payload (`stdin` is used only for [`DataSource::Stdin`]) and
/// checks that it is one JSON value; returns it trimmed.
fn read_payload(source: &DataSource, stdin: &mut dyn Read) -> anyhow::Result<String> {
    let text = match source {
        DataSource::Inline(text) => text.clone(),
        DataSource::File(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", source.describe()))?,
        DataSource::Stdin => {
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .with_context(|| format!("cannot read {}", source.describe()))?;
            text
        }
    };
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.is_empty() {
        bail!(
            "{} is empty; the payload must be JSON, e.g. '{{}}'",
            source.describe()
        );
    }
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .with_context(|| format!("{} is not valid JSON", source.describe()))?;
    Ok(text.to_owned())
}

/// The request for `args` and the payload read from `--data`. An empty
/// `endpoint_id` with an `app_id` is the protocol's fan-out.
fn publish_request(args: PublishArgs, payload: String) -> PublishRequest {
    PublishRequest {
        endpoint_id: args.endpoint.unwrap_or_default(),
        event_type: args.event_type,
        payload,
        idempotency_key: args.idempotency_key.unwrap_or_default(),
        event_id: args.event_id.unwrap_or_default(),
        app_id: args.app.unwrap_or_default(),
        channels: args.channels,
        deliver_at_ms: args.deliver_at.unwrap_or(0),
        delay_ms: args.delay.unwrap_or(0),
    }
}

/// Publishes one event to `opts.server` and prints where it was stored.
pub async fn run_publish(opts: &ClientOpts, args: PublishArgs) -> anyhow::Result<()> {
    let source = args.data.clone();
    let payload =
        tokio::task::spawn_blocking(move || read_payload(&source, &mut std::io::stdin().lock()))
            .await
            .context("reading --data")??;
    let request = publish_request(args, payload);
    let server = opts.server.as_str();
    let mut client = EventServiceClient::new(rpc::connect(opts).await?);
    let response = client
        .publish(request)
        .await
        .map_err(|s| rpc::rpc_error(server, "Publish", s))?
        .into_inner();
    output::print(opts.output, &PublishedView::from(response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: PublishArgs,
    }

    fn no_stdin() -> impl Read {
        std::io::empty()
    }

    #[test]
    fn data_source_forms() {
        assert_eq!(parse_data("-").unwrap(), DataSource::Stdin);
        assert_eq!(parse_data("@-").unwrap(), DataSource::Stdin);
        assert_eq!(
            parse_data("@a/b.json").unwrap(),
            DataSource::File("a/b.json".into())
        );
        assert_eq!(
            parse_data(r#"{"a":1}"#).unwrap(),
            DataSource::Inline(r#"{"a":1}"#.into())
        );
        assert!(parse_data("@").is_err());
    }

    #[test]
    fn inline_json_is_checked_and_kept_verbatim() {
        let src = DataSource::Inline(r#" {"b":1.50,"a":2} "#.into());
        assert_eq!(
            read_payload(&src, &mut no_stdin()).unwrap(),
            r#"{"b":1.50,"a":2}"#
        );
        let err = read_payload(&DataSource::Inline("{nope".into()), &mut no_stdin()).unwrap_err();
        assert!(
            format!("{err:#}").starts_with("--data is not valid JSON: "),
            "{err:#}"
        );
        let err = read_payload(&DataSource::Inline("{} {}".into()), &mut no_stdin()).unwrap_err();
        assert!(format!("{err:#}").contains("not valid JSON"), "{err:#}");
    }

    #[test]
    fn file_payload() {
        let dir = std::env::temp_dir().join(format!("herald-publish-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("event.json");
        std::fs::write(&path, "\u{feff}{\"id\": 1}\n").unwrap();
        let src = parse_data(&format!("@{}", path.display())).unwrap();
        assert_eq!(read_payload(&src, &mut no_stdin()).unwrap(), "{\"id\": 1}");

        let missing = DataSource::File(dir.join("missing.json"));
        let err = read_payload(&missing, &mut no_stdin()).unwrap_err();
        assert!(
            format!("{err:#}").starts_with("cannot read --data @"),
            "{err:#}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stdin_payload() {
        let mut stdin = &b"[1, 2]\n"[..];
        assert_eq!(
            read_payload(&DataSource::Stdin, &mut stdin).unwrap(),
            "[1, 2]"
        );
        let err = read_payload(&DataSource::Stdin, &mut &b"  \n"[..]).unwrap_err();
        assert!(
            err.to_string().starts_with("--data from stdin is empty"),
            "{err}"
        );
    }

    #[test]
    fn flags() {
        let cli = Cli::try_parse_from([
            "publish",
            "--endpoint",
            "ep_1",
            "--type",
            "invoice.paid",
            "--data",
            "-",
            "--idempotency-key",
            "k1",
            "--event-id",
            "evt_1",
        ])
        .unwrap();
        assert_eq!(cli.args.endpoint.as_deref(), Some("ep_1"));
        assert_eq!(cli.args.event_type, "invoice.paid");
        assert_eq!(cli.args.data, DataSource::Stdin);
        assert_eq!(cli.args.idempotency_key.as_deref(), Some("k1"));
        assert_eq!(cli.args.event_id.as_deref(), Some("evt_1"));
        assert!(Cli::try_parse_from(["publish", "--endpoint", "e", "--type", "t"]).is_err());
    }

    fn parse(args: &[&str]) -> Result<PublishArgs, clap::Error> {
        let base = ["publish", "--type", "order.created", "--data", "{}"];
        Cli::try_parse_from(base.iter().chain(args)).map(|c| c.args)
    }

    #[test]
    fn one_endpoint_request() {
        let args = parse(&["--endpoint", "ep_1", "--idempotency-key", "k"]).unwrap();
        assert_eq!(
            publish_request(args, "{}".into()),
            PublishRequest {
                endpoint_id: "ep_1".into(),
                event_type: "order.created".into(),
                payload: "{}".into(),
                idempotency_key: "k".into(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn fan_out_request_names_the_app_and_channels_but_no_endpoint() {
        let args = parse(&["--app", "shop", "--channel", "eu", "--channel", "vip"]).unwrap();
        assert_eq!(
            publish_request(args, r#"{"amount":5}"#.into()),
            PublishRequest {
                endpoint_id: String::new(),
                event_type: "order.created".into(),
                payload: r#"{"amount":5}"#.into(),
                app_id: "shop".into(),
                channels: vec!["eu".into(), "vip".into()],
                ..Default::default()
            }
        );
    }

    #[test]
    fn exactly_one_target() {
        use clap::error::ErrorKind;
        let err = parse(&[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        let text = err.to_string();
        assert!(
            text.contains("--endpoint <ID>") && text.contains("--app <APP>"),
            "{text}"
        );
        let err = parse(&["--endpoint", "ep_1", "--app", "shop"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        assert!(parse(&["--endpoint", ""]).is_err());
        assert!(parse(&["--app", ""]).is_err());
    }

    #[test]
    fn channels_and_event_ids_belong_to_one_kind_of_publish() {
        use clap::error::ErrorKind;
        let err = parse(&["--endpoint", "ep_1", "--channel", "eu"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        assert!(err.to_string().contains("--channel <CHANNEL>"), "{err}");
        let err = parse(&["--channel", "eu"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        let err = parse(&["--app", "shop", "--event-id", "evt_1"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
    }
}
