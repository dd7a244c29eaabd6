//! `herald endpoint test ID [--type T] [--data JSON] [--wait SECONDS]`:
//! sends a test event through `EndpointService.SendTestEvent` (the normal
//! delivery path) and prints what the first attempt got back, so a user
//! wiring up a URL sees at once whether it works. Exits non-zero when the
//! attempt did not succeed.

use anyhow::bail;
use herald_proto::v1::{SendTestEventRequest, SendTestEventResponse};
use serde::Serialize;

use crate::client::output::{self, Render};
use crate::client::{rpc, ClientOpts};

/// Flags of `herald endpoint test`.
#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// Endpoint id.
    pub id: String,
    /// Event type of the test event (default `herald.test`).
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,
    /// JSON payload (default: a payload marked `"test": true`).
    #[arg(long, value_name = "JSON")]
    pub data: Option<String>,
    /// Seconds to wait for the first attempt (default 30, at most 120).
    #[arg(long, value_name = "SECONDS")]
    pub wait: Option<u32>,
}

/// The request `args` make.
pub fn request(args: TestArgs) -> anyhow::Result<SendTestEventRequest> {
    if let Some(data) = &args.data {
        if let Err(e) = serde_json::from_str::<serde_json::Value>(data) {
            bail!("--data is not JSON: {e}");
        }
    }
    Ok(SendTestEventRequest {
        id: args.id,
        event_type: args.event_type.unwrap_or_default(),
        payload: args.data.unwrap_or_default(),
        wait_ms: args.wait.map_or(0, |s| s.min(120).saturating_mul(1000)),
    })
}

/// What `herald endpoint test` prints.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct TestedView {
    pub id: String,
    pub event_id: String,
    pub attempted: bool,
    pub status: u32,
    pub latency_ms: u32,
    pub outcome: String,
    pub error: String,
    pub response_body: String,
}

impl TestedView {
    fn new(id: String, r: SendTestEventResponse) -> Self {
        Self {
            id,
            event_id: r.event_id,
            attempted: r.attempted,
            status: r.status,
            latency_ms: r.latency_ms,
            outcome: r.outcome,
            error: r.error,
            response_body: r.response_body,
        }
    }

    fn succeeded(&self) -> bool {
        self.attempted && self.outcome == "success"
    }
}

impl Render for TestedView {
    fn to_text(&self) -> String {
        let mut out = format!("test event {} to endpoint {}\n", self.event_id, self.id);
        if !self.attempted {
            out.push_str(&format!("no attempt yet: {}\n", self.error));
            return out;
        }
        let status = if self.status == 0 {
            "no response".to_string()
        } else {
            format!("HTTP {}", self.status)
        };
        out.push_str(&format!(
            "first attempt: {} ({status}) in {} ms\n",
            self.outcome, self.latency_ms
        ));
        if !self.error.is_empty() {
            out.push_str(&format!("error: {}\n", self.error));
        }
        if !self.response_body.is_empty() {
            out.push_str(&format!("response body: {}\n", self.response_body));
        }
        out
    }
}

/// Runs `herald endpoint test`.
pub async fn run(opts: &ClientOpts, args: TestArgs) -> anyhow::Result<()> {
    let server = opts.server.as_str();
    let id = args.id.clone();
    let req = request(args)?;
    let mut client = super::client(opts).await?;
    let resp = client
        .send_test_event(req)
        .await
        .map_err(|s| rpc::rpc_error(server, "SendTestEvent", s))?
        .into_inner();
    let view = TestedView::new(id, resp);
    output::print(opts.output, &view)?;
    if !view.succeeded() {
        bail!("the test delivery did not succeed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(data: Option<&str>, wait: Option<u32>) -> TestArgs {
        TestArgs {
            id: "ep".into(),
            event_type: None,
            data: data.map(str::to_string),
            wait,
        }
    }

    #[test]
    fn requests_default_and_bounded() {
        let r = request(args(None, None)).unwrap();
        assert_eq!(
            (r.id.as_str(), r.payload.as_str(), r.wait_ms),
            ("ep", "", 0)
        );
        assert_eq!(
            request(args(Some(r#"{"a":1}"#), Some(500)))
                .unwrap()
                .wait_ms,
            120_000
        );
        let e = request(args(Some("{nope"), None)).unwrap_err();
        assert!(e.to_string().contains("--data is not JSON"), "{e}");
    }

    #[test]
    fn text_says_what_happened() {
        let view = TestedView {
            id: "ep".into(),
            event_id: "test_1".into(),
            attempted: true,
            status: 500,
            latency_ms: 12,
            outcome: "retryable".into(),
            error: "HTTP 500".into(),
            response_body: "not today".into(),
        };
        let text = view.to_text();
        assert!(
            text.contains("first attempt: retryable (HTTP 500) in 12 ms"),
            "{text}"
        );
        assert!(text.contains("response body: not today"), "{text}");
        assert!(!view.succeeded());
        let waiting = TestedView {
            attempted: false,
            error: "no attempt within 30s".into(),
            ..view
        };
        assert!(waiting
            .to_text()
            .contains("no attempt yet: no attempt within 30s"));
    }
}
