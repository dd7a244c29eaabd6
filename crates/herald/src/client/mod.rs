//! The command-line client: `herald endpoint …`, `herald event-type …`,
//! `herald publish`, `herald attempts`, `herald status`, `herald dlq …` and
//! `herald listen`.
//!
//! Owns argument parsing for those subcommands and their I/O with the user
//! (stdout/stderr). It does not own the servers: the commands talk
//! to a running Herald over gRPC (`--server`), and `listen` is a standalone
//! webhook receiver for trying Herald out by hand.
//!
//! Layout:
//! - `endpoint.rs` — `herald endpoint create|get|list|update|delete` (an
//!   endpoint's application and subscription flags in `endpoint/subscription.rs`).
//! - `event_type.rs` — `herald event-type create|list|get|update|archive`.
//! - `publish.rs` — `herald publish`, to one endpoint or fanned out to an application.
//! - `attempts.rs` — `herald attempts`.
//! - `dlq.rs` — `herald dlq list|replay`.
//! - `listen.rs` — `herald listen`, a receiver that prints and verifies deliveries.
//! - `status.rs` — `herald status`.
//! - `rpc.rs` — connecting to the server and turning gRPC failures into errors a
//!   user can act on.
//! - `output.rs` — the serde view structs behind `--output json` and their text
//!   rendering (event types in `output/event_type.rs`).

mod attempts;
mod dlq;
mod endpoint;
mod event_type;
mod listen;
mod output;
mod pages;
mod publish;
mod rpc;
mod status;

pub use attempts::{run_attempts, AttemptsArgs};
pub use dlq::{run_dlq, DlqCmd};
pub use endpoint::{run_endpoint, run_reseal, EndpointCmd};
pub use event_type::{run_event_type, EventTypeCmd};
pub use listen::{run_listen, ListenArgs};
pub use publish::{run_publish, PublishArgs};
pub use status::{run_status, StatusArgs};

/// Options shared by every client subcommand that talks to a Herald server.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientOpts {
    /// gRPC address of a Herald ingest node (`herald dev` listens on the default).
    #[arg(
        long,
        global = true,
        env = "HERALD_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,

    /// A file holding the API token (instead of the HERALD_TOKEN variable;
    /// a token is never taken from a flag's value, which `ps` would show).
    #[arg(long, global = true, env = "HERALD_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<std::path::PathBuf>,

    /// PEM certificate(s) of the CA that signed the server's certificate,
    /// for an `https://` server with a private CA.
    #[arg(long, global = true, env = "HERALD_CA_CERT", value_name = "PATH")]
    pub ca_cert: Option<std::path::PathBuf>,

    /// PEM client certificate for mutual TLS (an `[[auth.clients]]` entry
    /// on the server), instead of a token.
    #[arg(
        long,
        global = true,
        env = "HERALD_CLIENT_CERT",
        value_name = "PATH",
        requires = "client_key"
    )]
    pub client_cert: Option<std::path::PathBuf>,

    /// PEM private key of --client-cert.
    #[arg(
        long,
        global = true,
        env = "HERALD_CLIENT_KEY",
        value_name = "PATH",
        requires = "client_cert"
    )]
    pub client_key: Option<std::path::PathBuf>,

    /// How results are printed: readable text, or one JSON value per command for scripts.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub output: OutputFormat,
}

/// How a client command prints its result.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// Readable lines and tables.
    Text,
    /// One JSON object (an array for `endpoint list` and `event-type list`)
    /// with stable snake_case fields.
    Json,
}
