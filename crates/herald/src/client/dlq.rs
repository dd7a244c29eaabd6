//! `herald dlq list|replay`: inspecting and replaying dead letters through
//! the gRPC `DeadLetterService`.
//!
//! Times are given as unix milliseconds, as RFC 3339 (`2025-01-31T12:00:00Z`)
//! or as an age (`2h` = two hours ago).
//! A replay streams progress; on a terminal it draws a progress bar on
//! stderr, and it ends with the count of what was replayed and skipped.

use std::io::IsTerminal;

use herald_proto::v1::dead_letter_service_client::DeadLetterServiceClient;
use herald_proto::v1::{
    DeadLetter, ListDeadLettersRequest, ReplayDeadLettersRequest, ReplayProgress,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::output::{self, format_unix_ms, Render};
use super::{rpc, ClientOpts, OutputFormat};

/// `herald dlq` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum DlqCmd {
    /// List dead letters, oldest first.
    List(ListArgs),
    /// Re-publish dead letters of one endpoint, in their original order.
    Replay(ReplayArgs),
}

/// Flags of `herald dlq list`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only this endpoint's dead letters.
    #[arg(long, value_name = "ID")]
    endpoint: Option<String>,
    /// Dead-lettered at or after: unix ms, RFC 3339, or an age such as 2h.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<i64>,
    /// Dead-lettered before: unix ms, RFC 3339, or an age such as 30m.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<i64>,
    /// At most this many per page (server default 100).
    #[arg(long, value_name = "N")]
    page_size: Option<u32>,
    /// Fetch every page.
    #[arg(long)]
    all: bool,
}

/// Flags of `herald dlq replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Whose dead letters to replay.
    #[arg(long, value_name = "ID")]
    endpoint: String,
    /// Dead-lettered at or after: unix ms, RFC 3339, or an age such as 2h.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<i64>,
    /// Dead-lettered before: unix ms, RFC 3339, or an age such as 30m.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<i64>,
    /// Deliver to this endpoint instead of the original one.
    #[arg(long, value_name = "ID")]
    to: Option<String>,
    /// Also replay dead letters that an earlier replay already re-published.
    #[arg(long)]
    force: bool,
}

/// Unix ms, an RFC 3339 time (`2025-01-31T12:00:00Z`, as the client prints
/// times), or an age (`90s`, `2h`, `3d`) counted back from now.
pub(crate) fn parse_time(s: &str) -> Result<i64, String> {
    let not_before_1970 = || "a time cannot be before 1970 (unix ms 0)".to_owned();
    if let Ok(ms) = s.parse::<i64>() {
        return if ms >= 0 {
            Ok(ms)
        } else {
            Err(not_before_1970())
        };
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
        return i64::try_from(ms)
            .ok()
            .filter(|&ms| ms >= 0)
            .ok_or_else(not_before_1970);
    }
    let age = herald_core::duration::parse(s).map_err(|e| {
        format!(
            "{e}; give unix milliseconds, an RFC 3339 time such as \
             2025-01-31T12:00:00Z, or an age such as 2h"
        )
    })?;
    Ok(herald_core::time::now_ms() - age.as_millis() as i64)
}

/// One dead letter as printed.
#[derive(Serialize, Debug)]
struct DeadLetterView {
    endpoint_id: String,
    event_id: String,
    event_type: String,
    partition: i32,
    offset: i64,
    dead_lettered_at_ms: i64,
    reason: String,
    attempts: u32,
    last_status: u32,
    last_error: String,
    first_attempt_ms: i64,
    last_attempt_ms: i64,
    origin_topic: String,
    origin_partition: i32,
    origin_offset: i64,
    created_at_ms: i64,
    replayed: bool,
    payload: String,
}

impl From<DeadLetter> for DeadLetterView {
    fn from(d: DeadLetter) -> Self {
        Self {
            endpoint_id: d.endpoint_id,
            event_id: d.event_id,
            event_type: d.event_type,
            partition: d.partition,
            offset: d.offset,
            dead_lettered_at_ms: d.dead_lettered_at_ms,
            reason: d.reason,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            first_attempt_ms: d.first_attempt_ms,
            last_attempt_ms: d.last_attempt_ms,
            origin_topic: d.origin_topic,
            origin_partition: d.origin_partition,
            origin_offset: d.origin_offset,
            created_at_ms: d.created_at_ms,
            replayed: d.replayed,
            payload: d.payload,
        }
    }
}

#[derive(Serialize, Debug)]
#[serde(transparent)]
struct DeadLetterList(Vec<DeadLetterView>);

impl Render for DeadLetterList {
    fn to_text(&self) -> String {
        if self.0.is_empty() {
            return "no dead letters\n".to_owned();
        }
        let mut out = String::new();
        for d in &self.0 {
            let status = if d.last_status == 0 {
                "-".to_owned()
            } else {
                d.last_status.to_string()
            };
            out.push_str(&format!(
                "{}  {}  {}  {}  reason={}  attempts={}  status={}  at={}{}\n    last error: {}\n",
                d.event_id,
                d.endpoint_id,
                d.event_type,
                format_args!("dlq {}:{}", d.partition, d.offset),
                d.reason,
                d.attempts,
                status,
                format_unix_ms(d.dead_lettered_at_ms),
                if d.replayed { "  (replayed)" } else { "" },
                if d.last_error.is_empty() {
                    "-"
                } else {
                    &d.last_error
                },
            ));
        }
        out
    }
}

/// The final count of a replay.
#[derive(Serialize, Debug)]
struct ReplayView {
    total: u32,
    replayed: u32,
    skipped: u32,
    /// Left for another run (a call replays at most 100,000).
    remaining: u32,
}

impl Render for ReplayView {
    fn to_text(&self) -> String {
        let mut text = format!(
            "replayed {} of {} dead letters ({} skipped: already replayed; use --force to send them again)\n",
            self.replayed, self.total, self.skipped
        );
        if self.remaining > 0 {
            text.push_str(&format!(
                "{} more match; run the same command again to replay them\n",
                self.remaining
            ));
        }
        text
    }
}

/// Runs a `herald dlq` subcommand against `opts.server`.
pub async fn run_dlq(opts: &ClientOpts, cmd: DlqCmd) -> anyhow::Result<()> {
    let server = opts.server.as_str();
    let mut client = DeadLetterServiceClient::new(rpc::connect(opts).await?);
    match cmd {
        DlqCmd::List(args) => {
            let mut all = Vec::new();
            let mut token = String::new();
            loop {
                let resp = client
                    .list_dead_letters(ListDeadLettersRequest {
                        endpoint_id: args.endpoint.clone().unwrap_or_default(),
                        from_ms: args.since.unwrap_or(0),
                        to_ms: args.until.unwrap_or(0),
                        page_size: args.page_size.unwrap_or(0),
                        page_token: token,
                    })
                    .await
                    .map_err(|s| rpc::rpc_error(server, "ListDeadLetters", s))?
                    .into_inner();
                all.extend(resp.dead_letters.into_iter().map(DeadLetterView::from));
                token = resp.next_page_token;
                if token.is_empty() {
                    break;
                }
                if !args.all {
                    eprintln!("more dead letters: --all to fetch every page");
                    break;
                }
            }
            output::print(opts.output, &DeadLetterList(all))
        }
        DlqCmd::Replay(args) => {
            let mut stream = client
                .replay_dead_letters(ReplayDeadLettersRequest {
                    endpoint_id: args.endpoint,
                    from_ms: args.since.unwrap_or(0),
                    to_ms: args.until.unwrap_or(0),
                    target_endpoint_id: args.to.unwrap_or_default(),
                    force: args.force,
                })
                .await
                .map_err(|s| rpc::rpc_error(server, "ReplayDeadLetters", s))?
                .into_inner();
            let bar =
                replay_bar(opts.output == OutputFormat::Text && std::io::stderr().is_terminal());
            let mut last = ReplayProgress::default();
            while let Some(p) = stream.message().await.map_err(|s| {
                bar.abandon();
                rpc::rpc_error(server, "ReplayDeadLetters", s)
            })? {
                // Skipped dead letters are not sent: the bar counts what is.
                bar.set_length(u64::from(p.total.saturating_sub(p.skipped)));
                bar.set_position(u64::from(p.replayed));
                last = p;
            }
            if last.done {
                bar.finish();
            } else {
                bar.abandon();
            }
            anyhow::ensure!(
                last.done,
                "the server ended the replay early; replayed {} so far",
                last.replayed
            );
            output::print(
                opts.output,
                &ReplayView {
                    total: last.total,
                    replayed: last.replayed,
                    skipped: last.skipped,
                    remaining: last.remaining,
                },
            )
        }
    }
}

const BAR_TEMPLATE: &str = "[{bar:30}] {pos}/{len} replayed ({elapsed})";

/// `[#####.....] 40/100 replayed (1s)` on stderr, redrawn in place at most a
/// few times a second; hidden when `show` is false (JSON output, or stderr is
/// not a terminal).
fn replay_bar(show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(BAR_TEMPLATE)
        .map(|s| s.progress_chars("#>."))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(0).with_style(style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_ms_or_ages() {
        assert_eq!(parse_time("1700000000000").unwrap(), 1_700_000_000_000);
        let now = herald_core::time::now_ms();
        let two_h = parse_time("2h").unwrap();
        assert!((now - 2 * 3_600_000 - two_h).abs() < 60_000);
        assert!(parse_time("-5").is_err());
        assert_eq!(
            parse_time("2023-11-14T22:13:20.123Z").unwrap(),
            1_700_000_000_123
        );
        assert_eq!(
            parse_time("2023-11-14T23:13:20+01:00").unwrap(),
            1_700_000_000_000
        );
        assert!(parse_time("1969-12-31T23:59:59Z").is_err());
        assert!(parse_time("yesterday").unwrap_err().contains("age"));
    }

    #[test]
    fn the_bar_template_is_valid_and_scripts_get_no_bar() {
        assert!(ProgressStyle::with_template(BAR_TEMPLATE).is_ok());
        assert!(replay_bar(false).is_hidden());
    }

    #[test]
    fn replay_summary_text() {
        let v = ReplayView {
            total: 5,
            replayed: 3,
            skipped: 2,
            remaining: 0,
        };
        assert!(v.to_text().contains("replayed 3 of 5"));
        assert!(!v.to_text().contains("more match"));
        let more = ReplayView { remaining: 7, ..v };
        assert!(more
            .to_text()
            .contains("7 more match; run the same command again"));
    }
}
