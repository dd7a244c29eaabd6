//! `herald listen`: a local webhook receiver for trying Herald by hand.
//!
//! Owns a small hyper HTTP server that prints one block per delivery (method,
//! path, `webhook-id`, the payload's `type`, the signature verdict, the body
//! pretty-printed by serde_json) and answers `--status`, or 401 when
//! `--secret` is set and the Standard Webhooks signature does not verify.
//! The body keeps the sender's key order (serde_json's `preserve_order`);
//! numbers are shown as serde_json reads them (`2.50` as `2.5`, an integer
//! beyond 64 bits as a float), and of a repeated key only the last value. It does not
//! de-duplicate, store or forward anything. The signature maths is
//! `herald-signing`'s; the verdict and the printed block are pure functions
//! ([`inspect`]) tested without a socket.
use std::convert::Infallible;
use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use herald_signing::{Secret, Verifier};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Bodies above this are refused with 413 instead of being buffered.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Flags of `herald listen`.
#[derive(clap::Args, Debug)]
pub struct ListenArgs {
    /// Port to listen on (0 picks a free one; the first output line names it).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The endpoint's signing secret; without it signatures are not verified.
    #[arg(
        long,
        env = "HERALD_LISTEN_SECRET",
        hide_env_values = true,
        value_name = "whsec_..."
    )]
    secret: Option<String>,
    /// HTTP status to answer every delivery with (401 replaces it when a signature is invalid).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(100..=599))]
    status: u16,
}

/// Where printed blocks go: stdout in the binary, a buffer in tests. Each call
/// gets one complete block, so concurrent deliveries never interleave.
type Sink = Arc<dyn Fn(&str) + Send + Sync>;

/// Binds `--host:--port`, prints `listening on http://ADDR` as the first line,
/// then prints every delivery until `shutdown` resolves.
pub async fn run_listen(
    args: ListenArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let verifier = match args.secret.as_deref() {
        Some(s) => Some(Verifier::new(vec![Secret::parse(s.trim()).map_err(
            |e| anyhow::anyhow!("invalid --secret / HERALD_LISTEN_SECRET: {e}"),
        )?])),
        None => None,
    };
    let status = StatusCode::from_u16(args.status).context("invalid --status")?;
    let listener = TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let addr = listener.local_addr().context("reading the bound address")?;

    let sink = stdout_sink();
    sink(&format!("listening on http://{addr}\n"));
    sink(if verifier.is_some() {
        "verifying Standard Webhooks signatures with the given secret\n"
    } else {
        "no --secret given: signatures are NOT verified (set --secret or HERALD_LISTEN_SECRET)\n"
    });
    serve(listener, Receiver { verifier, status }, sink, shutdown).await;
    Ok(())
}

fn stdout_sink() -> Sink {
    Arc::new(|text: &str| {
        let mut out = std::io::stdout().lock();
        // A closed stdout (e.g. `| head`) must not take the receiver down.
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    })
}

/// What the server needs to answer a delivery.
struct Receiver {
    /// `None` when no secret was given: signatures are not checked.
    verifier: Option<Verifier>,
    /// The answer to every delivery that is not refused.
    status: StatusCode,
}

/// Accepts connections until `shutdown` resolves, then drops the open ones.
async fn serve(
    listener: TcpListener,
    receiver: Receiver,
    sink: Sink,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let receiver = Arc::new(receiver);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let receiver = Arc::clone(&receiver);
                    let sink = Arc::clone(&sink);
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let receiver = Arc::clone(&receiver);
                            let sink = Arc::clone(&sink);
                            async move { Ok::<_, Infallible>(receiver.handle(req, &sink).await) }
                        });
                        // A client hanging up mid-request is not worth reporting.
                        let _ = auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                Err(err) => {
                    // e.g. out of file descriptors: back off instead of spinning.
                    eprintln!("listen: accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
}

impl Receiver {
    async fn handle(&self, req: Request<Incoming>, sink: &Sink) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) => {
                let too_large = err.is::<http_body_util::LengthLimitError>();
                sink(&format!(
                    "--> {} {}  body not read: {err}\n\n",
                    parts.method,
                    path_of(&parts.uri)
                ));
                let status = if too_large {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                return text_response(status, "");
            }
        };
        let seen = inspect(
            &parts.method,
            &parts.uri,
            &parts.headers,
            &body,
            self.verifier.as_ref(),
            unix_now(),
        );
        sink(&seen.block);
        match seen.verdict {
            Verdict::Invalid(reason) => text_response(
                StatusCode::UNAUTHORIZED,
                &format!("signature invalid: {reason}\n"),
            ),
            Verdict::Verified | Verdict::Unchecked => text_response(self.status, ""),
        }
    }
}

fn text_response(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *response.status_mut() = status;
    if !body.is_empty() {
        response.headers_mut().insert(
            CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn path_of(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}

/// The outcome of signature checking for one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// A secret was given and one signature matched.
    Verified,
    /// A secret was given and the delivery does not verify; the reason says why.
    Invalid(String),
    /// No secret was given.
    Unchecked,
}

/// One delivery as `herald listen` reports it.
#[derive(Debug)]
struct Inspection {
    verdict: Verdict,
    /// The printed block, ending with a blank line.
    block: String,
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks the signature and renders the block for one delivery (pure: the
/// time is passed in).
fn inspect(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    verifier: Option<&Verifier>,
    now_unix: i64,
) -> Inspection {
    let id = header(headers, "webhook-id");
    let verdict = match verifier {
        None => Verdict::Unchecked,
        Some(verifier) => {
            let missing = |name: &str| Verdict::Invalid(format!("missing {name} header"));
            match (
                id,
                header(headers, "webhook-timestamp"),
                header(headers, "webhook-signature"),
            ) {
                (None, _, _) => missing("webhook-id"),
                (_, None, _) => missing("webhook-timestamp"),
                (_, _, None) => missing("webhook-signature"),
                (Some(id), Some(ts), Some(sig)) => {
                    match verifier.verify(id, ts, sig, body, now_unix) {
                        Ok(()) => Verdict::Verified,
                        Err(err) => Verdict::Invalid(err.to_string()),
                    }
                }
            }
        }
    };

    let text = std::str::from_utf8(body).ok();
    let json = text.and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok());
    let event_type = json
        .as_ref()
        .and_then(|v| v.get("type"))
        .and_then(|t| t.as_str());

    let mut block = format!(
        "--> {method} {}  webhook-id={}",
        path_of(uri),
        id.unwrap_or("(none)")
    );
    if let Some(t) = event_type {
        block.push_str("  type=");
        block.push_str(t);
    }
    block.push_str("  ");
    match &verdict {
        Verdict::Verified => block.push_str("verified ✔"),
        Verdict::Invalid(reason) => {
            block.push_str("SIGNATURE INVALID (");
            block.push_str(reason);
            block.push(')');
        }
        Verdict::Unchecked => block.push_str("unverified (no --secret)"),
    }
    block.push('\n');
    match (text, &json) {
        _ if body.is_empty() => block.push_str("(empty body)"),
        // serde_json's `preserve_order` keeps the sender's key order.
        (Some(text), Some(json)) => match serde_json::to_string_pretty(json) {
            Ok(pretty) => block.push_str(&pretty),
            Err(_) => block.push_str(text.trim_end()),
        },
        (Some(text), None) => {
            block.push_str("(body is not JSON)\n");
            block.push_str(text.trim_end());
        }
        (None, _) => block.push_str(&format!("({} bytes of non-UTF-8 data)", body.len())),
    }
    block.push_str("\n\n");
    // The sender controls the path, the type and the body: no escape
    // sequence of theirs reaches the terminal.
    let block = herald_core::text::printable(&block).into_owned();
    Inspection { verdict, block }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NOW: i64 = 1_700_000_000;
    const BODY: &str = r#"{"type":"invoice.paid","data":{"id":1}}"#;

    fn verifier() -> Verifier {
        Verifier::new(vec![Secret::parse(SECRET).unwrap()])
    }

    fn signed_headers(id: &str, ts: i64, body: &str) -> HeaderMap {
        let signature =
            herald_signing::sign(&Secret::parse(SECRET).unwrap(), id, ts, body.as_bytes());
        let mut h = HeaderMap::new();
        h.insert("webhook-id", id.parse().unwrap());
        h.insert("webhook-timestamp", ts.to_string().parse().unwrap());
        h.insert("webhook-signature", signature.parse().unwrap());
        h
    }

    fn run(headers: &HeaderMap, body: &str, verifier: Option<&Verifier>) -> Inspection {
        inspect(
            &Method::POST,
            &"/hooks/a?x=1".parse().unwrap(),
            headers,
            body.as_bytes(),
            verifier,
            NOW,
        )
    }

    #[test]
    fn valid_signature_is_verified_and_body_pretty_printed() {
        let seen = run(&signed_headers("msg_1", NOW, BODY), BODY, Some(&verifier()));
        assert_eq!(seen.verdict, Verdict::Verified);
        assert_eq!(
            seen.block,
            "--> POST /hooks/a?x=1  webhook-id=msg_1  type=invoice.paid  verified ✔\n\
             {\n  \"type\": \"invoice.paid\",\n  \"data\": {\n    \"id\": 1\n  }\n}\n\n"
        );
    }

    #[test]
    fn pretty_printing_keeps_the_senders_key_order() {
        let body = r#" {"z":[1,2.5,{"b":"x\"y, {z}"}],"a":{},"m":[ ],"e":null} "#;
        let seen = run(&HeaderMap::new(), body, None);
        assert!(
            seen.block.ends_with(
                "\n{\n  \"z\": [\n    1,\n    2.5,\n    {\n      \"b\": \"x\\\"y, {z}\"\n    }\n  ],\n  \
                 \"a\": {},\n  \"m\": [],\n  \"e\": null\n}\n\n"
            ),
            "{}",
            seen.block
        );
    }

    #[test]
    fn escape_sequences_from_the_sender_are_defused() {
        let body = "{\"type\":\"\\u001b]0;pwned\\u0007\",\"x\":\"\\u001b[2J\"}";
        let seen = run(&HeaderMap::new(), body, None);
        assert!(!seen.block.contains('\u{1b}'), "{:?}", seen.block);
        assert!(!seen.block.contains('\u{7}'), "{:?}", seen.block);
        let raw = run(&HeaderMap::new(), "not json \u{1b}[31mred", None);
        assert!(!raw.block.contains('\u{1b}'), "{:?}", raw.block);
        assert!(raw.block.contains("\\u{1b}[31mred"), "{:?}", raw.block);
    }

    #[test]
    fn tampered_body_is_invalid_with_reason() {
        let seen = run(
            &signed_headers("msg_1", NOW, BODY),
            r#"{"type":"x"}"#,
            Some(&verifier()),
        );
        let Verdict::Invalid(reason) = &seen.verdict else {
            panic!("{:?}", seen.verdict)
        };
        assert!(seen
            .block
            .starts_with("--> POST /hooks/a?x=1  webhook-id=msg_1  type=x  SIGNATURE INVALID ("));
        assert!(seen.block.contains(reason.as_str()));
    }

    #[test]
    fn stale_timestamp_and_missing_headers_are_invalid() {
        let seen = run(
            &signed_headers("msg_1", NOW - 3600, BODY),
            BODY,
            Some(&verifier()),
        );
        assert!(matches!(seen.verdict, Verdict::Invalid(_)));
        let seen = run(&HeaderMap::new(), BODY, Some(&verifier()));
        assert_eq!(
            seen.verdict,
            Verdict::Invalid("missing webhook-id header".into())
        );
        assert!(seen.block.contains("webhook-id=(none)"));
        let mut h = signed_headers("msg_1", NOW, BODY);
        h.remove("webhook-signature");
        assert_eq!(
            run(&h, BODY, Some(&verifier())).verdict,
            Verdict::Invalid("missing webhook-signature header".into())
        );
    }

    #[test]
    fn without_secret_nothing_is_checked() {
        let seen = run(&HeaderMap::new(), "[1]", None);
        assert_eq!(seen.verdict, Verdict::Unchecked);
        assert_eq!(
            seen.block,
            "--> POST /hooks/a?x=1  webhook-id=(none)  unverified (no --secret)\n[\n  1\n]\n\n"
        );
    }

    #[test]
    fn non_json_and_empty_bodies() {
        let seen = run(&HeaderMap::new(), "hello\n", None);
        assert!(
            seen.block.ends_with("\n(body is not JSON)\nhello\n\n"),
            "{}",
            seen.block
        );
        let seen = run(&HeaderMap::new(), "", None);
        assert!(seen.block.ends_with("\n(empty body)\n\n"), "{}", seen.block);
        // A `type` that is not a string is not shown.
        let seen = run(&HeaderMap::new(), r#"{"type":5}"#, None);
        assert!(!seen.block.contains("type="), "{}", seen.block);
    }

    #[test]
    fn flags() {
        use clap::Parser;
        #[derive(Parser, Debug)]
        struct Cli {
            #[command(flatten)]
            args: ListenArgs,
        }
        let cli = Cli::try_parse_from(["listen"]).unwrap();
        assert_eq!(
            (cli.args.port, cli.args.host.as_str(), cli.args.status),
            (8080, "127.0.0.1", 200)
        );
        assert!(Cli::try_parse_from(["listen", "--status", "42"]).is_err());
    }

    /// Sends one raw HTTP/1.1 POST and returns the whole response.
    async fn post(addr: std::net::SocketAddr, headers: &HeaderMap, body: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut request = format!(
            "POST /hook HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn server_answers_status_or_401_and_prints_each_delivery() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let printed = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink: Sink = {
            let printed = Arc::clone(&printed);
            Arc::new(move |s: &str| printed.lock().unwrap().push(s.to_owned()))
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let receiver = Receiver {
            verifier: Some(verifier()),
            status: StatusCode::ACCEPTED,
        };
        let server = tokio::spawn(serve(listener, receiver, sink, async {
            let _ = stopped.await;
        }));

        let good = post(addr, &signed_headers("msg_ok", unix_now(), BODY), BODY).await;
        assert!(good.starts_with("HTTP/1.1 202"), "{good}");
        let bad = post(addr, &signed_headers("msg_bad", unix_now(), BODY), "{}").await;
        assert!(bad.starts_with("HTTP/1.1 401"), "{bad}");
        assert!(bad.contains("signature invalid: "), "{bad}");

        stop.send(()).unwrap();
        server.await.unwrap();
        let printed = printed.lock().unwrap();
        assert_eq!(printed.len(), 2, "{printed:?}");
        assert!(printed[0]
            .starts_with("--> POST /hook  webhook-id=msg_ok  type=invoice.paid  verified ✔\n"));
        assert!(printed[1].starts_with("--> POST /hook  webhook-id=msg_bad  SIGNATURE INVALID ("));
    }
}
