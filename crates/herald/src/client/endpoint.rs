//! `herald endpoint create|get|list|update|delete|test`: managing the endpoint
//! registry through the gRPC `EndpointService`.
//!
//! Owns the flags of those subcommands and their translation into requests
//! (pure functions, unit-tested in `endpoint/tests.rs`). The flags of an
//! endpoint's application and fan-out subscription are in
//! `endpoint/subscription.rs`, `herald endpoint test` in
//! `endpoint/test_event.rs`. Printing lives in `output.rs`, connecting and
//! error reporting in `rpc.rs`.
use std::collections::HashMap;

use anyhow::{bail, Context as _};
use herald_proto::v1::endpoint_service_client::EndpointServiceClient;
use herald_proto::v1::{
    CreateEndpointRequest, DeleteEndpointRequest, GetEndpointRequest, HeaderMap,
    ListEndpointsRequest, RateLimit, UpdateEndpointRequest,
};
use subscription::{CreateSubscription, UpdateSubscription};

use super::output::{self, CreatedEndpointView, DeletedView, EndpointListView, EndpointView};
use super::{pages, rpc, ClientOpts, OutputFormat};

mod subscription;
mod test_event;

/// Page size `list --all` asks for when `--page-size` is not given (the server maximum).
const ALL_PAGE_SIZE: u32 = 1000;

/// Manage webhook endpoints.
#[derive(clap::Subcommand, Debug)]
pub enum EndpointCmd {
    /// Register an endpoint; prints its signing secret (only this once).
    Create(CreateArgs),
    /// Show one endpoint.
    Get {
        /// Endpoint id.
        id: String,
    },
    /// List endpoints, one page at a time or `--all`.
    List(ListArgs),
    /// Change an endpoint; flags not given keep their value.
    Update(UpdateArgs),
    /// Delete an endpoint.
    Delete {
        /// Endpoint id.
        id: String,
    },
    /// Send a test event through the normal delivery path and print what
    /// its first attempt got back (exit status 1 unless it succeeded).
    Test(test_event::TestArgs),
}

/// Flags of `herald endpoint create`.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// URL Herald POSTs deliveries to.
    #[arg(long)]
    url: String,
    /// Endpoint id ([A-Za-z0-9._-], at most 128 characters); generated when omitted.
    #[arg(long)]
    id: Option<String>,
    /// Signing secret; generated when omitted.
    #[arg(long, value_name = "whsec_...", conflicts_with = "secret_file")]
    secret: Option<String>,
    /// Read the signing secret from a file ('-' = standard input), so it
    /// never appears in the process list or shell history.
    #[arg(long, value_name = "PATH")]
    secret_file: Option<std::path::PathBuf>,
    /// Free text shown in listings.
    #[arg(long)]
    description: Option<String>,
    /// Create the endpoint disabled.
    #[arg(long)]
    disabled: bool,
    /// Let deliveries overlap (up to --max-in-flight); endpoints are ordered by default.
    #[arg(long)]
    unordered: bool,
    /// Requests per second (0 = the node default).
    #[arg(long, value_name = "N")]
    rate_limit: Option<u32>,
    /// Requests allowed at once above the rate (0 = same as the rate).
    #[arg(long, value_name = "N")]
    burst: Option<u32>,
    /// Concurrent deliveries for an unordered endpoint (0 = the node default).
    #[arg(long, value_name = "N")]
    max_in_flight: Option<u32>,
    /// Custom header sent with every delivery, as 'Name: value' (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<Header>,
    /// A custom header whose value is secret (e.g. 'Authorization: Bearer …'):
    /// sealed at rest and never shown again (repeatable).
    #[arg(long = "sensitive-header", value_name = "NAME: VALUE", value_parser = parse_header)]
    sensitive_headers: Vec<Header>,
    /// Delays before each retry, replacing the node's schedule, e.g. '5s,1m,10m'.
    #[arg(long, value_name = "DELAYS", value_parser = parse_schedule)]
    retry_schedule: Option<Schedule>,
    /// Events older than this are dead-lettered instead of retried, e.g. '2d'.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    max_age: Option<u64>,
    /// Total timeout of one delivery attempt, e.g. '5s' (capped by the node's).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    timeout: Option<u64>,
    /// Batched delivery: up to N events per request, as a JSON array (2 to 1000).
    #[arg(long, value_name = "N")]
    batch_max: Option<u32>,
    /// How long a batch waits to fill after its first event was published,
    /// e.g. '20ms' (needs --batch-max).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms, requires = "batch_max")]
    batch_linger: Option<u64>,
    #[command(flatten)]
    subscription: CreateSubscription,
}

/// Flags of `herald endpoint list`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// At most this many endpoints per page (server default 50, at most 1000).
    #[arg(long, value_name = "N")]
    page_size: Option<u32>,
    /// Continue from a previous page.
    #[arg(long, value_name = "TOKEN", conflicts_with = "all")]
    page_token: Option<String>,
    /// Fetch every page.
    #[arg(long)]
    all: bool,
    /// Only the endpoints of this application.
    #[arg(long, value_name = "APP")]
    app: Option<String>,
}

/// Flags of `herald endpoint update`.
#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// Endpoint id.
    id: String,
    /// New delivery URL.
    #[arg(long)]
    url: Option<String>,
    /// New description (`--description ''` clears it).
    #[arg(long)]
    description: Option<String>,
    /// Enable the endpoint.
    #[arg(long, conflicts_with = "disable")]
    enable: bool,
    /// Disable the endpoint.
    #[arg(long)]
    disable: bool,
    /// Deliver one at a time, in order.
    #[arg(long, conflicts_with = "unordered")]
    ordered: bool,
    /// Let deliveries overlap (up to --max-in-flight).
    #[arg(long)]
    unordered: bool,
    /// Requests per second (0 = the node default); the burst is kept unless --burst is given.
    #[arg(long, value_name = "N")]
    rate_limit: Option<u32>,
    /// Requests allowed at once above the rate (0 = same as the rate).
    #[arg(long, value_name = "N")]
    burst: Option<u32>,
    /// Concurrent deliveries for an unordered endpoint (0 = the node default).
    #[arg(long, value_name = "N")]
    max_in_flight: Option<u32>,
    /// Custom header as 'Name: value' (repeatable); replaces all custom headers.
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = parse_header, conflicts_with = "clear_headers")]
    headers: Vec<Header>,
    /// Sensitive custom header, as 'Name: value' (repeatable); replaces all
    /// sensitive headers. Values are sealed at rest and never shown again.
    #[arg(long = "sensitive-header", value_name = "NAME: VALUE", value_parser = parse_header, conflicts_with = "clear_headers")]
    sensitive_headers: Vec<Header>,
    /// Remove all custom headers, sensitive ones included.
    #[arg(long)]
    clear_headers: bool,
    /// New signing secret; the previous one keeps being sent alongside it
    /// for the node's secrets.rotation_grace (24 h by default).
    #[arg(long, value_name = "whsec_...", conflicts_with = "rotate_secret_file")]
    rotate_secret: Option<String>,
    /// Read the new signing secret from a file ('-' = standard input).
    #[arg(long, value_name = "PATH")]
    rotate_secret_file: Option<std::path::PathBuf>,
    /// Delays before each retry, e.g. '5s,1m,10m'; 'default' restores the node's schedule.
    #[arg(long, value_name = "DELAYS", value_parser = parse_schedule)]
    retry_schedule: Option<Schedule>,
    /// Events older than this are dead-lettered instead of retried, e.g. '2d' ('0' = node default).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    max_age: Option<u64>,
    /// Total timeout of one delivery attempt, e.g. '5s' ('0' = node default).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    timeout: Option<u64>,
    /// Batched delivery: up to N events per request (2 to 1000; '0' = off).
    #[arg(long, value_name = "N")]
    batch_max: Option<u32>,
    /// How long a batch waits to fill after its first event was published, e.g. '20ms'.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    batch_linger: Option<u64>,
    #[command(flatten)]
    subscription: UpdateSubscription,
}

/// One `--header 'Name: value'` flag.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Header {
    name: String,
    value: String,
}

/// Parses `Name: value`; the name must be a valid HTTP header name and the
/// value a valid header value (surrounding whitespace is trimmed).
fn parse_header(s: &str) -> Result<Header, String> {
    let Some((name, value)) = s.split_once(':') else {
        return Err(format!("expected 'Name: value', got {s:?}"));
    };
    let (name, value) = (name.trim(), value.trim());
    if name.is_empty() {
        return Err(format!(
            "missing header name in {s:?} (expected 'Name: value')"
        ));
    }
    hyper::header::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid HTTP header name"))?;
    hyper::header::HeaderValue::from_str(value).map_err(|_| {
        format!("the value of header {name:?} contains characters HTTP does not allow")
    })?;
    Ok(Header {
        name: name.to_owned(),
        value: value.to_owned(),
    })
}

/// Collects `--header` flags, refusing a name given twice (names are case-insensitive).
fn header_map(headers: Vec<Header>) -> anyhow::Result<HashMap<String, String>> {
    let mut map = HashMap::with_capacity(headers.len());
    let mut seen = std::collections::HashSet::new();
    for h in headers {
        if !seen.insert(h.name.to_ascii_lowercase()) {
            bail!("--header {:?} is given more than once", h.name);
        }
        map.insert(h.name, h.value);
    }
    Ok(map)
}

/// A secret given as a flag, or read from a file ('-' = standard input).
fn secret_value(
    flag: Option<String>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<String>> {
    let Some(path) = file else {
        return Ok(flag);
    };
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .context("cannot read the secret from standard input")?
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the secret file {}", path.display()))?
    };
    let secret = text.trim();
    if secret.is_empty() {
        anyhow::bail!("the secret file {} is empty", path.display());
    }
    Ok(Some(secret.to_string()))
}

fn create_request(args: CreateArgs) -> anyhow::Result<CreateEndpointRequest> {
    let rate_limit = (args.rate_limit.is_some() || args.burst.is_some()).then(|| RateLimit {
        per_second: args.rate_limit.unwrap_or(0),
        burst: args.burst.unwrap_or(0),
    });
    let mut request = CreateEndpointRequest {
        id: args.id.unwrap_or_default(),
        url: args.url,
        secret: secret_value(args.secret, args.secret_file.as_deref())?.unwrap_or_default(),
        description: args.description.unwrap_or_default(),
        enabled: args.disabled.then_some(false),
        ordered: args.unordered.then_some(false),
        rate_limit,
        max_in_flight: args.max_in_flight.unwrap_or(0),
        headers: header_map(args.headers)?,
        sensitive_headers: header_map(args.sensitive_headers)?,
        retry_schedule_ms: args.retry_schedule.map(|s| s.0).unwrap_or_default(),
        max_age_ms: args.max_age.unwrap_or(0),
        timeout_ms: args
            .timeout
            .map_or(0, |t| t.min(u64::from(u32::MAX)) as u32),
        batch_max_events: args.batch_max.unwrap_or(0),
        batch_linger_ms: args.batch_linger.map_or(0, clamp_ms),
        ..Default::default()
    };
    args.subscription.apply(&mut request);
    Ok(request)
}

/// A retry schedule given on the command line, in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(Vec<u64>);

/// Parses `5s,1m,10m` (or `default`, the empty schedule).
fn parse_schedule(s: &str) -> Result<Schedule, String> {
    if s.trim() == "default" {
        return Ok(Schedule(Vec::new()));
    }
    s.split(',')
        .map(parse_duration_ms)
        .collect::<Result<_, _>>()
        .map(Schedule)
}

/// Parses one duration such as `500ms`, `5s`, `2h` or `3d` into milliseconds.
fn parse_duration_ms(s: &str) -> Result<u64, String> {
    herald_core::duration::parse(s).map(|d| d.as_millis() as u64)
}

impl UpdateArgs {
    /// True when only one of `--rate-limit`/`--burst` is given: the request
    /// carries both, so the other has to be read from the server first.
    fn needs_current_rate(&self) -> bool {
        self.rate_limit.is_some() != self.burst.is_some()
    }

    /// Refuses an update that would change nothing (before any RPC is made).
    fn ensure_changes(&self) -> anyhow::Result<()> {
        if self.changes_nothing() {
            bail!(
                "nothing to update: pass at least one of --url, --description, \
                 --enable/--disable, --ordered/--unordered, --rate-limit, --burst, \
                 --max-in-flight, --header, --sensitive-header, --clear-headers, --rotate-secret, \
                 --retry-schedule, --max-age, --timeout, --batch-max, --batch-linger, {}",
                UpdateSubscription::FLAGS
            );
        }
        Ok(())
    }

    fn changes_nothing(&self) -> bool {
        self.url.is_none()
            && self.description.is_none()
            && !self.enable
            && !self.disable
            && !self.ordered
            && !self.unordered
            && self.rate_limit.is_none()
            && self.burst.is_none()
            && self.max_in_flight.is_none()
            && self.headers.is_empty()
            && self.sensitive_headers.is_empty()
            && !self.clear_headers
            && self.rotate_secret.is_none()
            && self.rotate_secret_file.is_none()
            && self.retry_schedule.is_none()
            && self.max_age.is_none()
            && self.timeout.is_none()
            && self.batch_max.is_none()
            && self.batch_linger.is_none()
            && self.subscription.is_empty()
    }
}

/// Builds the update; `current` is the endpoint's rate limit today, needed
/// only when [`UpdateArgs::needs_current_rate`].
fn update_request(
    args: UpdateArgs,
    current: Option<RateLimit>,
) -> anyhow::Result<UpdateEndpointRequest> {
    args.ensure_changes()?;
    let current = current.unwrap_or_default();
    let rate_limit = (args.rate_limit.is_some() || args.burst.is_some()).then(|| RateLimit {
        per_second: args.rate_limit.unwrap_or(current.per_second),
        burst: args.burst.unwrap_or(current.burst),
    });
    // --clear-headers clears both kinds; each flag replaces its own kind.
    let replace = |given: Vec<Header>| -> anyhow::Result<Option<HeaderMap>> {
        Ok(if args.clear_headers {
            Some(HeaderMap::default())
        } else if given.is_empty() {
            None
        } else {
            Some(HeaderMap {
                headers: header_map(given)?,
            })
        })
    };
    let headers = replace(args.headers)?;
    let sensitive_headers = replace(args.sensitive_headers)?;
    let mut request = UpdateEndpointRequest {
        id: args.id,
        url: args.url,
        description: args.description,
        enabled: flag_pair(args.enable, args.disable),
        ordered: flag_pair(args.ordered, args.unordered),
        rate_limit,
        max_in_flight: args.max_in_flight,
        headers,
        sensitive_headers,
        rotate_secret: secret_value(args.rotate_secret, args.rotate_secret_file.as_deref())?,
        retry_schedule: args
            .retry_schedule
            .map(|s| herald_proto::v1::RetrySchedule { delays_ms: s.0 }),
        max_age_ms: args.max_age,
        timeout_ms: args.timeout.map(clamp_ms),
        batch_max_events: args.batch_max,
        batch_linger_ms: args.batch_linger.map(clamp_ms),
        ..Default::default()
    };
    args.subscription.apply(&mut request);
    Ok(request)
}

/// Milliseconds from a parsed duration, for a `uint32` field (the server
/// refuses what is out of range, naming the field).
fn clamp_ms(ms: u64) -> u32 {
    ms.min(u64::from(u32::MAX)) as u32
}

/// `--x` → Some(true), `--no-x`-style opposite → Some(false), neither → None.
fn flag_pair(yes: bool, no: bool) -> Option<bool> {
    match (yes, no) {
        (true, _) => Some(true),
        (false, true) => Some(false),
        (false, false) => None,
    }
}

/// Runs one `herald endpoint …` subcommand against `opts.server`.
pub async fn run_endpoint(opts: &ClientOpts, cmd: EndpointCmd) -> anyhow::Result<()> {
    let server = opts.server.as_str();
    match cmd {
        EndpointCmd::Create(args) => {
            let request = create_request(args)?;
            let mut client = client(opts).await?;
            let response = client
                .create_endpoint(request)
                .await
                .map_err(|s| rpc::rpc_error(server, "CreateEndpoint", s))?
                .into_inner();
            output::print(opts.output, &CreatedEndpointView::from(response))
        }
        EndpointCmd::Get { id } => {
            let mut client = client(opts).await?;
            let endpoint = get(&mut client, server, id).await?;
            output::print(opts.output, &EndpointView::from(endpoint))
        }
        EndpointCmd::List(args) => list(opts, args).await,
        EndpointCmd::Update(args) => {
            let rotated = args.rotate_secret.is_some() || args.rotate_secret_file.is_some();
            args.ensure_changes()?;
            let mut client = client(opts).await?;
            let current = if args.needs_current_rate() {
                get(&mut client, server, args.id.clone()).await?.rate_limit
            } else {
                None
            };
            let request = update_request(args, current)?;
            let id = request.id.clone();
            let endpoint = client
                .update_endpoint(request)
                .await
                .map_err(|s| rpc::rpc_error(server, "UpdateEndpoint", s))?
                .into_inner();
            if opts.output == OutputFormat::Text {
                println!("updated endpoint {id}");
                if rotated {
                    println!(
                        "secret rotated; the previous secret is still sent alongside it \
                         for the grace period (secrets.rotation_grace, 24 h by default)"
                    );
                }
            }
            output::print(opts.output, &EndpointView::from(endpoint))
        }
        EndpointCmd::Delete { id } => {
            let mut client = client(opts).await?;
            client
                .delete_endpoint(DeleteEndpointRequest { id: id.clone() })
                .await
                .map_err(|s| rpc::rpc_error(server, "DeleteEndpoint", s))?;
            output::print(opts.output, &DeletedView { id, deleted: true })
        }
        EndpointCmd::Test(args) => test_event::run(opts, args).await,
    }
}

/// `herald secrets rotate-master`: asks the server to re-seal every
/// endpoint under its active master key; prints the counts.
pub async fn run_reseal(opts: &ClientOpts) -> anyhow::Result<()> {
    let mut client = client(opts).await?;
    let r = client
        .reseal_secrets(herald_proto::v1::ResealSecretsRequest {})
        .await
        .map_err(|s| rpc::rpc_error(&opts.server, "ResealSecrets", s))?
        .into_inner();
    match opts.output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({
                "active_key_id": r.active_key_id,
                "resealed": r.resealed,
                "already_current": r.already_current,
            })
        ),
        OutputFormat::Text => println!(
            "re-sealed {} endpoints under master key {:?}; {} already were",
            r.resealed, r.active_key_id, r.already_current
        ),
    }
    Ok(())
}

async fn client(opts: &ClientOpts) -> anyhow::Result<EndpointServiceClient<rpc::Conn>> {
    Ok(EndpointServiceClient::new(rpc::connect(opts).await?))
}

async fn get(
    client: &mut EndpointServiceClient<rpc::Conn>,
    server: &str,
    id: String,
) -> anyhow::Result<herald_proto::v1::Endpoint> {
    Ok(client
        .get_endpoint(GetEndpointRequest { id })
        .await
        .map_err(|s| rpc::rpc_error(server, "GetEndpoint", s))?
        .into_inner())
}

async fn list(opts: &ClientOpts, args: ListArgs) -> anyhow::Result<()> {
    let server = opts.server.as_str();
    let client = client(opts).await?;
    let page_size = match (args.page_size, args.all) {
        (Some(n), _) => n,
        (None, true) => ALL_PAGE_SIZE,
        (None, false) => 0,
    };
    let first = args.page_token.unwrap_or_default();
    let app_id = args.app.unwrap_or_default();
    let (endpoints, next_token) =
        pages::collect(first, args.all, "ListEndpoints", server, |token| {
            let mut client = client.clone();
            let req = ListEndpointsRequest {
                page_size,
                page_token: token,
                app_id: app_id.clone(),
            };
            async move {
                let page = client
                    .list_endpoints(req)
                    .await
                    .map_err(|s| rpc::rpc_error(server, "ListEndpoints", s))?
                    .into_inner();
                let views = page.endpoints.into_iter().map(EndpointView::from).collect();
                Ok((views, page.next_page_token))
            }
        })
        .await?;
    output::print(opts.output, &EndpointListView(endpoints))?;
    pages::hint_more(opts.output, "endpoints", &next_token);
    Ok(())
}

#[cfg(test)]
mod tests;
