//! `herald attempts`: the attempt log of an endpoint, of one event, or of a
//! whole fan-out (every endpoint of one message), newest first, through
//! `EventService.ListAttempts`.

use herald_proto::v1::event_service_client::EventServiceClient;
use herald_proto::v1::{Attempt, ListAttemptsRequest};
use serde::Serialize;

use super::dlq::parse_time;
use super::output::{self, format_unix_ms, Render};
use super::{rpc, ClientOpts};

/// Flags of `herald attempts`.
#[derive(clap::Args, Debug)]
pub struct AttemptsArgs {
    /// Whose attempts (optional with --event).
    #[arg(long, value_name = "ID", required_unless_present = "event")]
    endpoint: Option<String>,
    /// With --endpoint: only this event's attempts. Alone: every attempt of
    /// this message, at every endpoint (a fan-out's message id `msg_…`, or
    /// a direct publish's event id).
    #[arg(long, value_name = "EVENT_OR_MESSAGE_ID")]
    event: Option<String>,
    /// Only attempts at or after: unix ms, RFC 3339, or an age such as 2h.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<i64>,
    /// At most this many (server default 100).
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
}

/// One attempt as printed.
#[derive(Serialize, Debug)]
struct AttemptView {
    event_id: String,
    message_id: String,
    endpoint_id: String,
    event_type: String,
    attempt: u32,
    at_ms: i64,
    status: u32,
    latency_ms: u32,
    outcome: String,
    error: String,
    response_body: String,
    node: String,
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        Self {
            event_id: a.event_id,
            message_id: a.message_id,
            endpoint_id: a.endpoint_id,
            event_type: a.event_type,
            attempt: a.attempt,
            at_ms: a.at_ms,
            status: a.status,
            latency_ms: a.latency_ms,
            outcome: a.outcome,
            error: a.error,
            response_body: a.response_body,
            node: a.node,
        }
    }
}

#[derive(Serialize, Debug)]
#[serde(transparent)]
struct AttemptList(Vec<AttemptView>);

impl Render for AttemptList {
    fn to_text(&self) -> String {
        if self.0.is_empty() {
            return "no attempts\n".to_owned();
        }
        let mut out = String::new();
        for a in &self.0 {
            let status = if a.status == 0 {
                "-".to_owned()
            } else {
                a.status.to_string()
            };
            out.push_str(&format!(
                "{}  {}  {}  #{}  {}  {}  status={}  {}ms  node={}\n",
                format_unix_ms(a.at_ms),
                a.endpoint_id,
                a.event_id,
                a.attempt,
                a.event_type,
                a.outcome,
                status,
                a.latency_ms,
                a.node
            ));
            if !a.error.is_empty() {
                out.push_str(&format!("    error: {}\n", a.error));
            }
            if !a.response_body.is_empty() {
                let body: String = a.response_body.chars().take(200).collect();
                out.push_str(&format!("    response: {}\n", body.replace('\n', " ")));
            }
        }
        out
    }
}

/// Prints the attempts matching `args` from `opts.server`.
pub async fn run_attempts(opts: &ClientOpts, args: AttemptsArgs) -> anyhow::Result<()> {
    let server = opts.server.as_str();
    let mut client = EventServiceClient::new(rpc::connect(opts).await?);
    let (event_id, message_id) = match (&args.endpoint, args.event) {
        // One endpoint, optionally one of its events.
        (Some(_), event) => (event.unwrap_or_default(), String::new()),
        // No endpoint: the whole message (every endpoint of a fan-out).
        (None, Some(message)) => (String::new(), message),
        (None, None) => anyhow::bail!("give --endpoint ID, --event ID, or both"),
    };
    let resp = client
        .list_attempts(ListAttemptsRequest {
            endpoint_id: args.endpoint.unwrap_or_default(),
            event_id,
            since_ms: args.since.unwrap_or(0),
            limit: args.limit.unwrap_or(0),
            message_id,
        })
        .await
        .map_err(|s| rpc::rpc_error(server, "ListAttempts", s))?
        .into_inner();
    output::print(
        opts.output,
        &AttemptList(resp.attempts.into_iter().map(AttemptView::from).collect()),
    )
}
