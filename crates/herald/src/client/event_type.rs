//! `herald event-type create|list|get|update|archive`: the catalogue of event
//! types through the gRPC `EventTypeService`.
//!
//! Owns the flags of those subcommands, where a schema comes from
//! (`--schema` inline or `--schema-file`, `-` for stdin; checked to be a JSON
//! object or boolean here so a typo fails before any network call, then sent
//! as given) and the translation into requests (pure functions, unit-tested
//! in `event_type/tests.rs`). It does not judge a schema beyond that, nor
//! type names: the server does, and its error names the failing place.
//! Printing lives in `output/event_type.rs`, connecting in `rpc.rs`.
use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use herald_proto::v1::event_type_service_client::EventTypeServiceClient;
use herald_proto::v1::{
    ArchiveEventTypeRequest, CreateEventTypeRequest, GetEventTypeRequest, ListEventTypesRequest,
    UpdateEventTypeRequest,
};

use super::output::{self, EventTypeListView, EventTypeView};
use super::{pages, rpc, ClientOpts, OutputFormat};

/// Page size `list --all` asks for when `--page-size` is not given (the server maximum).
const ALL_PAGE_SIZE: u32 = 1000;

/// Manage the event type catalogue.
#[derive(clap::Subcommand, Debug)]
pub enum EventTypeCmd {
    /// Add an event type (a dot-separated name such as order.shipped),
    /// optionally with a JSON Schema its payloads must match.
    Create(CreateArgs),
    /// List event types by name, one page at a time or `--all`.
    List(ListArgs),
    /// Show one event type with its schema.
    Get {
        /// Event type name, e.g. order.shipped.
        name: String,
    },
    /// Change an event type; flags not given keep their value.
    Update(UpdateArgs),
    /// Archive an event type (it can no longer be published; it stays
    /// listed with --include-archived), or bring it back with --undo.
    Archive {
        /// Event type name.
        name: String,
        /// Unarchive: the type can be published again.
        #[arg(long)]
        undo: bool,
    },
}

/// Flags of `herald event-type create`.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Event type name: dot-separated segments of [A-Za-z0-9_-], e.g. order.shipped.
    name: String,
    /// Free text shown in listings.
    #[arg(long)]
    description: Option<String>,
    #[command(flatten)]
    schema: SchemaArgs,
}

/// `--schema JSON` or `--schema-file PATH`, at most one.
#[derive(clap::Args, Debug)]
struct SchemaArgs {
    /// JSON Schema the payloads must match, inline (draft 2020-12 unless its
    /// $schema names another).
    #[arg(long, value_name = "JSON", conflicts_with = "schema_file")]
    schema: Option<String>,
    /// Read the JSON Schema from a file ('-' = standard input).
    #[arg(long, value_name = "PATH")]
    schema_file: Option<PathBuf>,
}

/// Flags of `herald event-type list`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Also list archived types.
    #[arg(long)]
    include_archived: bool,
    /// At most this many types per page (server default 50, at most 1000).
    #[arg(long, value_name = "N")]
    page_size: Option<u32>,
    /// Continue from a previous page.
    #[arg(long, value_name = "TOKEN", conflicts_with = "all")]
    page_token: Option<String>,
    /// Fetch every page.
    #[arg(long)]
    all: bool,
}

/// Flags of `herald event-type update`.
#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// Event type name.
    name: String,
    /// New description (`--description ''` clears it).
    #[arg(long)]
    description: Option<String>,
    #[command(flatten)]
    schema: SchemaArgs,
    /// Remove the schema: any JSON payload is accepted.
    #[arg(long, conflicts_with_all = ["schema", "schema_file"])]
    no_schema: bool,
    /// Archive (true) or unarchive (false) the type.
    #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
    archived: Option<bool>,
}

/// Where a schema comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum SchemaSource {
    Inline(String),
    File(PathBuf),
    Stdin,
}

impl SchemaArgs {
    fn source(&self) -> Option<SchemaSource> {
        match (&self.schema, &self.schema_file) {
            (Some(text), _) => Some(SchemaSource::Inline(text.clone())),
            (None, Some(path)) if path.as_os_str() == "-" => Some(SchemaSource::Stdin),
            (None, Some(path)) => Some(SchemaSource::File(path.clone())),
            (None, None) => None,
        }
    }
}

impl SchemaSource {
    fn describe(&self) -> String {
        match self {
            SchemaSource::Inline(_) => "--schema".to_owned(),
            SchemaSource::File(path) => format!("--schema-file {}", path.display()),
            SchemaSource::Stdin => "--schema-file - (standard input)".to_owned(),
        }
    }

    /// Reads the schema (`stdin` only for [`SchemaSource::Stdin`]) and checks
    /// that it is one JSON object or boolean, the two forms a JSON Schema
    /// takes; returns it trimmed, otherwise as given.
    fn read(&self, stdin: &mut dyn Read) -> anyhow::Result<String> {
        let text = match self {
            SchemaSource::Inline(text) => text.clone(),
            SchemaSource::File(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", self.describe()))?,
            SchemaSource::Stdin => {
                let mut text = String::new();
                stdin
                    .read_to_string(&mut text)
                    .with_context(|| format!("cannot read {}", self.describe()))?;
                text
            }
        };
        let text = text.trim_start_matches('\u{feff}').trim();
        if text.is_empty() {
            bail!(
                "{} is empty; a JSON Schema is a JSON object such as \
                 '{{\"type\":\"object\"}}' (to remove a schema, use --no-schema)",
                self.describe()
            );
        }
        let value: serde_json::Value = serde_json::from_str(text)
            .with_context(|| format!("{} is not valid JSON", self.describe()))?;
        if !(value.is_object() || value.is_boolean()) {
            bail!(
                "{} is not a JSON Schema: a schema is a JSON object (or true/false), \
                 e.g. '{{\"type\":\"object\",\"required\":[\"id\"]}}'",
                self.describe()
            );
        }
        Ok(text.to_owned())
    }
}

fn create_request(
    args: CreateArgs,
    stdin: &mut dyn Read,
) -> anyhow::Result<CreateEventTypeRequest> {
    let schema_json = match args.schema.source() {
        Some(source) => source.read(stdin)?,
        None => String::new(),
    };
    Ok(CreateEventTypeRequest {
        name: args.name,
        description: args.description.unwrap_or_default(),
        schema_json,
    })
}

impl UpdateArgs {
    /// Refuses an update that would change nothing (before any RPC is made).
    fn ensure_changes(&self) -> anyhow::Result<()> {
        let schema = self.schema.schema.is_some() || self.schema.schema_file.is_some();
        if self.description.is_none() && !schema && !self.no_schema && self.archived.is_none() {
            bail!(
                "nothing to update: pass at least one of --description, --schema, \
                 --schema-file, --no-schema, --archived"
            );
        }
        Ok(())
    }
}

fn update_request(
    args: UpdateArgs,
    stdin: &mut dyn Read,
) -> anyhow::Result<UpdateEventTypeRequest> {
    args.ensure_changes()?;
    let schema_json = if args.no_schema {
        // "" is the protocol's "remove the schema".
        Some(String::new())
    } else {
        args.schema.source().map(|s| s.read(stdin)).transpose()?
    };
    Ok(UpdateEventTypeRequest {
        name: args.name,
        description: args.description,
        schema_json,
        archived: args.archived,
    })
}

fn list_request(args: &ListArgs, page_token: String) -> ListEventTypesRequest {
    let page_size = match (args.page_size, args.all) {
        (Some(n), _) => n,
        (None, true) => ALL_PAGE_SIZE,
        (None, false) => 0,
    };
    ListEventTypesRequest {
        include_archived: args.include_archived,
        page_size,
        page_token,
    }
}

/// Reads a schema from standard input off the async runtime's threads.
async fn with_stdin<T: Send + 'static>(
    build: impl FnOnce(&mut dyn Read) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(move || build(&mut std::io::stdin().lock()))
        .await
        .context("reading the schema")?
}

/// Runs one `herald event-type …` subcommand against `opts.server`.
pub async fn run_event_type(opts: &ClientOpts, cmd: EventTypeCmd) -> anyhow::Result<()> {
    let server = opts.server.as_str();
    match cmd {
        EventTypeCmd::Create(args) => {
            let request = with_stdin(move |stdin| create_request(args, stdin)).await?;
            let mut client = client(opts).await?;
            let created = client
                .create_event_type(request)
                .await
                .map_err(|s| rpc::rpc_error(server, "CreateEventType", s))?
                .into_inner();
            print_changed(opts, "created", created)
        }
        EventTypeCmd::Get { name } => {
            let mut client = client(opts).await?;
            let ty = client
                .get_event_type(GetEventTypeRequest { name })
                .await
                .map_err(|s| rpc::rpc_error(server, "GetEventType", s))?
                .into_inner();
            output::print(opts.output, &EventTypeView::from(ty))
        }
        EventTypeCmd::List(args) => list(opts, args).await,
        EventTypeCmd::Update(args) => {
            args.ensure_changes()?;
            let request = with_stdin(move |stdin| update_request(args, stdin)).await?;
            let mut client = client(opts).await?;
            let updated = client
                .update_event_type(request)
                .await
                .map_err(|s| rpc::rpc_error(server, "UpdateEventType", s))?
                .into_inner();
            print_changed(opts, "updated", updated)
        }
        EventTypeCmd::Archive { name, undo } => {
            let mut client = client(opts).await?;
            let ty = client
                .archive_event_type(ArchiveEventTypeRequest {
                    name,
                    unarchive: undo,
                })
                .await
                .map_err(|s| rpc::rpc_error(server, "ArchiveEventType", s))?
                .into_inner();
            print_changed(opts, if undo { "unarchived" } else { "archived" }, ty)
        }
    }
}

/// Prints a changed type: in text preceded by `<verb> event type <name>`.
fn print_changed(
    opts: &ClientOpts,
    verb: &str,
    ty: herald_proto::v1::EventType,
) -> anyhow::Result<()> {
    let view = EventTypeView::from(ty);
    if opts.output == OutputFormat::Text {
        println!(
            "{verb} event type {}",
            herald_core::text::printable(&view.name)
        );
    }
    output::print(opts.output, &view)
}

async fn client(opts: &ClientOpts) -> anyhow::Result<EventTypeServiceClient<rpc::Conn>> {
    Ok(EventTypeServiceClient::new(rpc::connect(opts).await?))
}

async fn list(opts: &ClientOpts, args: ListArgs) -> anyhow::Result<()> {
    let server = opts.server.as_str();
    let client = client(opts).await?;
    let first = args.page_token.clone().unwrap_or_default();
    let (types, next_token) = pages::collect(first, args.all, "ListEventTypes", server, |token| {
        let (mut client, req) = (client.clone(), list_request(&args, token));
        async move {
            let page = client
                .list_event_types(req)
                .await
                .map_err(|s| rpc::rpc_error(server, "ListEventTypes", s))?
                .into_inner();
            let views = page
                .event_types
                .into_iter()
                .map(EventTypeView::from)
                .collect();
            Ok((views, page.next_page_token))
        }
    })
    .await?;
    output::print(opts.output, &EventTypeListView(types))?;
    pages::hint_more(opts.output, "event types", &next_token);
    Ok(())
}

#[cfg(test)]
mod tests;
