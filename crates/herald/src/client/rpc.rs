//! Connecting the client to a Herald server and reporting gRPC failures.
//!
//! Owns the channel set-up (address normalisation, timeouts, TLS for
//! `https://` servers, the API token from `HERALD_TOKEN` or `--token-file`
//! sent as `authorization: Bearer`) and the mapping
//! from `tonic::Status` to an `anyhow::Error` of the form
//! `<Method> failed at <server>: <CODE>: <message>`. It does not know any RPC.
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::Code;

use super::ClientOpts;

/// A connection that sends the caller's credentials with every request.
pub(crate) type Conn = InterceptedService<Channel, Credentials>;

/// Adds `authorization: Bearer <token>` to every request when a token is set.
#[derive(Clone)]
pub(crate) struct Credentials(Option<MetadataValue<Ascii>>);

impl Interceptor for Credentials {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// The API token: `HERALD_TOKEN`, or the file `--token-file` names.
fn token(opts: &ClientOpts) -> anyhow::Result<Option<String>> {
    let from_env = std::env::var("HERALD_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty());
    let from_file = match &opts.token_file {
        None => None,
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?,
        ),
    };
    let token = match (from_env, from_file) {
        (Some(_), Some(_)) => anyhow::bail!(
            "both HERALD_TOKEN and --token-file / HERALD_TOKEN_FILE are set; keep one"
        ),
        (t, None) | (None, t) => t,
    };
    Ok(token
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty()))
}

fn credentials(opts: &ClientOpts) -> anyhow::Result<Credentials> {
    let Some(token) = token(opts)? else {
        return Ok(Credentials(None));
    };
    let value = format!("Bearer {token}")
        .parse::<MetadataValue<Ascii>>()
        .map_err(|_| anyhow::anyhow!("the API token contains characters a header cannot carry; copy it again from `herald token create`"))?;
    Ok(Credentials(Some(value)))
}

/// How long to wait for the TCP/HTTP2 connection to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for one RPC; publish waits for Kafka's acks=all, so be generous.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects to the server named by `--server` with the caller's
/// credentials; a failure names the address and says how to start a server.
pub(crate) async fn connect(opts: &ClientOpts) -> anyhow::Result<Conn> {
    let credentials = credentials(opts)?;
    let server = opts.server.as_str();
    let uri = normalize_server(server);
    let mut endpoint = Endpoint::from_shared(uri.clone())
        .with_context(|| format!("invalid --server address {server:?}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT);
    if uri.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_webpki_roots();
        if let Some(path) = &opts.ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let (Some(cert), Some(key)) = (&opts.client_cert, &opts.client_key) {
            let read = |p: &std::path::Path| {
                std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
            };
            tls = tls.identity(tonic::transport::Identity::from_pem(
                read(cert)?,
                read(key)?,
            ));
        }
        endpoint = endpoint
            .tls_config(tls)
            .with_context(|| format!("cannot set up TLS for {uri}"))?;
    } else if opts.ca_cert.is_some() || opts.client_cert.is_some() {
        anyhow::bail!("--ca-cert / --client-cert are set but the server {uri} is not https://");
    }
    let channel = endpoint.connect().await.map_err(|err| {
        anyhow::anyhow!(
            "cannot connect to the Herald server at {uri} ({}); start one with `herald dev`, \
             or point --server / HERALD_SERVER at a running server",
            cause_chain(&err)
        )
    })?;
    Ok(InterceptedService::new(channel, credentials))
}

/// Accepts `host:port` as shorthand for `http://host:port`.
pub(crate) fn normalize_server(server: &str) -> String {
    let server = server.trim();
    if server.contains("://") {
        server.to_owned()
    } else {
        format!("http://{server}")
    }
}

/// A gRPC status a server answered with, kept in the error chain so callers can
/// downcast it and match on the code.
#[derive(Debug)]
pub(crate) struct RpcStatus {
    pub(crate) code: Code,
    pub(crate) message: String,
}

impl fmt::Display for RpcStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", code_name(self.code), self.message)?;
        if self.code == Code::Unavailable {
            f.write_str(" (is the Herald server running? try `herald dev`)")?;
        }
        Ok(())
    }
}

impl StdError for RpcStatus {}

/// Wraps a failed call as `<method> failed at <server>: <CODE>: <message>`.
pub(crate) fn rpc_error(server: &str, method: &str, status: tonic::Status) -> anyhow::Error {
    let message = if status.message().is_empty() {
        status.code().description().to_owned()
    } else {
        status.message().to_owned()
    };
    anyhow::Error::new(RpcStatus {
        code: status.code(),
        message,
    })
    .context(format!("{method} failed at {}", normalize_server(server)))
}

/// The canonical upper-case name of a gRPC status code, as in `INVALID_ARGUMENT`.
pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `transport error: tcp connect error: Connection refused`, without repeats.
fn cause_chain(err: &dyn StdError) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&dyn StdError> = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_host_port_gets_http_scheme() {
        assert_eq!(
            normalize_server("127.0.0.1:50051"),
            "http://127.0.0.1:50051"
        );
        assert_eq!(normalize_server(" https://h:1 "), "https://h:1");
    }

    #[test]
    fn status_renders_code_name_and_server() {
        let err = rpc_error(
            "127.0.0.1:50051",
            "CreateEndpoint",
            tonic::Status::invalid_argument("url: must be http(s)"),
        );
        assert_eq!(
            format!("{err:#}"),
            "CreateEndpoint failed at http://127.0.0.1:50051: INVALID_ARGUMENT: url: must be http(s)"
        );
        let status = err
            .downcast_ref::<RpcStatus>()
            .expect("status kept in chain");
        assert_eq!(status.code, Code::InvalidArgument);
    }

    #[test]
    fn empty_message_falls_back_to_code_description() {
        let err = rpc_error(
            "http://h:1",
            "GetEndpoint",
            tonic::Status::new(Code::NotFound, ""),
        );
        assert!(format!("{err:#}").ends_with("NOT_FOUND: Some requested entity was not found"));
    }
}
