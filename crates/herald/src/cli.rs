//! The command line: run Herald nodes (`serve`, `ingest`, `dispatch`, `dev`),
//! talk to them (`endpoint`, `event-type`, `publish`, `attempts`, `status`,
//! `dlq`), receive webhooks (`listen`), make key material
//! (`token`, `secrets`) and load-test them (`bench`). `main.rs` only calls [`main`]; test binaries call it too, so
//! tests can run Herald as real processes.

use std::process::ExitCode;

use crate::client::{
    self, AttemptsArgs, ClientOpts, DlqCmd, EndpointCmd, EventTypeCmd, ListenArgs, PublishArgs,
    StatusArgs,
};
use crate::node::{self, Roles};
use crate::settings::{self, ServerFlags};
use clap::{Parser, Subcommand};
use toml::Value;

/// Herald: webhook dispatch on Kafka.
#[derive(Parser, Debug)]
#[command(name = "herald", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run ingest and dispatcher in one process against a Kafka cluster.
    Serve(ServerFlags),
    /// Run only the gRPC ingest API.
    Ingest(ServerFlags),
    /// Run only a dispatcher (consumer group member).
    Dispatch(ServerFlags),
    /// Run everything with an embedded in-memory Kafka broker (nothing is persisted).
    Dev(ServerFlags),
    /// Manage endpoints on a running Herald.
    Endpoint {
        #[command(flatten)]
        client: ClientOpts,
        #[command(subcommand)]
        command: EndpointCmd,
    },
    /// Manage the catalogue of event types (names, descriptions, JSON Schemas).
    EventType {
        #[command(flatten)]
        client: ClientOpts,
        #[command(subcommand)]
        command: EventTypeCmd,
    },
    /// Publish one event, to one endpoint or fanned out to an application.
    Publish {
        #[command(flatten)]
        client: ClientOpts,
        #[command(flatten)]
        args: PublishArgs,
    },
    /// Show the delivery attempts of an endpoint (or one event), newest first.
    Attempts {
        #[command(flatten)]
        client: ClientOpts,
        #[command(flatten)]
        args: AttemptsArgs,
    },
    /// Summarise a running cluster: dispatchers, lag, throughput, failing endpoints.
    Status {
        #[command(flatten)]
        client: ClientOpts,
        #[command(flatten)]
        args: StatusArgs,
    },
    /// List and replay dead letters.
    Dlq {
        #[command(flatten)]
        client: ClientOpts,
        #[command(subcommand)]
        command: DlqCmd,
    },
    /// Receive webhooks locally, verify their signatures and print them.
    Listen(ListenArgs),
    /// Make API tokens (printed once; nodes are configured with their hash).
    Token {
        #[command(subcommand)]
        command: crate::keys::TokenCmd,
    },
    /// Master keys that seal endpoint secrets at rest.
    Secrets {
        #[command(flatten)]
        client: ClientOpts,
        #[command(subcommand)]
        command: crate::keys::SecretsCmd,
    },
    /// Load-test Herald against local receivers and the machine's raw limit
    /// (starts `herald dev` unless --server is given; see docs/benchmarks.md).
    Bench(herald_bench::BenchArgs),
    /// Run only an in-memory Kafka-protocol broker with Herald's topics (for
    /// tests and experiments; nothing is persisted).
    #[command(hide = true)]
    MockBroker(ServerFlags),
}

/// Parses the command line and runs it; the process's exit code.
pub fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(Cli::parse()))
}

async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(f) => run_server(f, Roles::ALL).await,
        Command::Ingest(f) => {
            run_server(
                f,
                Roles {
                    ingest: true,
                    dispatch: false,
                },
            )
            .await
        }
        Command::Dispatch(f) => {
            run_server(
                f,
                Roles {
                    ingest: false,
                    dispatch: true,
                },
            )
            .await
        }
        Command::Dev(f) => run_dev(f).await,
        Command::Endpoint { client, command } => client::run_endpoint(&client, command).await,
        Command::EventType { client, command } => client::run_event_type(&client, command).await,
        Command::Publish { client, args } => client::run_publish(&client, args).await,
        Command::Attempts { client, args } => client::run_attempts(&client, args).await,
        Command::Status { client, args } => client::run_status(&client, args).await,
        Command::Dlq { client, command } => client::run_dlq(&client, command).await,
        Command::Listen(args) => client::run_listen(args, shutdown_signal()).await,
        Command::Token { command } => crate::keys::run_token(command),
        Command::Secrets { client, command } => crate::keys::run_secrets(&client, command).await,
        Command::Bench(args) => run_bench(args).await,
        Command::MockBroker(f) => run_mock_broker(f).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Server messages can quote receiver-controlled text.
            eprintln!("error: {}", herald_core::text::printable(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

async fn run_server(flags: ServerFlags, roles: Roles) -> anyhow::Result<()> {
    let cfg = settings::load(&flags, &[])?;
    crate::logging::init(&cfg.log);
    let node = node::start(cfg, roles).await?;
    tracing::info!(grpc = ?node.grpc_addr, http = %node.http_addr, ?roles, "herald started");
    node.run_until(shutdown_signal()).await
}

async fn run_dev(flags: ServerFlags) -> anyhow::Result<()> {
    let mut defaults = settings::dev_defaults();
    // Loaded once without the broker address to learn the topic names.
    let probe = settings::load(&flags, &defaults)?;
    let broker = herald_kafka::DevBroker::start(&probe.kafka)?;
    defaults.push((
        "kafka.brokers",
        Value::String(broker.bootstrap_servers().to_string()),
    ));
    let mut cfg = settings::load(&flags, &defaults)?;
    // The embedded broker is the only broker, whatever the layers said.
    cfg.kafka.brokers = broker.bootstrap_servers().to_string();
    crate::logging::init(&cfg.log);
    let node = node::start(cfg.clone(), Roles::ALL).await?;
    let grpc = node.grpc_addr.expect("dev runs ingest");
    println!("Herald dev is running");
    println!("  gRPC API        http://{grpc}   (herald endpoint|publish --server http://{grpc})");
    println!(
        "  metrics/health  http://{}/metrics  /healthz  /readyz",
        node.http_addr
    );
    println!(
        "  Kafka (in-memory, embedded)  {}",
        broker.bootstrap_servers()
    );
    println!(
        "  topics          {} ({} partitions), {}, {}, {}",
        cfg.kafka.events_topic,
        cfg.kafka.events_partitions,
        cfg.kafka.retry_topic,
        cfg.kafka.dlq_topic,
        cfg.kafka.endpoints_topic
    );
    println!("WARNING: dev mode keeps everything in memory; nothing is persisted. Loopback targets are allowed.");
    println!("WARNING: the embedded broker keeps about 5 MiB per partition and drops the oldest records beyond that, even unread ones (docs/topics.md).");
    println!("Press Ctrl-C to stop.");
    let result = node.run_until(shutdown_signal()).await;
    drop(broker);
    println!("Herald dev stopped.");
    result
}

async fn run_bench(args: herald_bench::BenchArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let exe = match &args.herald {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("cannot find the herald executable")?,
    };
    herald_bench::run(args, exe).await
}

async fn run_mock_broker(flags: ServerFlags) -> anyhow::Result<()> {
    let cfg = settings::load(&flags, &settings::dev_defaults())?;
    let broker = herald_kafka::DevBroker::start(&cfg.kafka)?;
    println!("bootstrap: {}", broker.bootstrap_servers());
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    shutdown_signal().await;
    drop(broker);
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("herald").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        // Catches conflicts, groups and `requires` naming flags that do not exist.
        Cli::command().debug_assert();
    }

    #[test]
    fn event_type_commands_take_the_client_flags() {
        let cli = parse(&[
            "event-type",
            "list",
            "--all",
            "--server",
            "http://h:1",
            "--output",
            "json",
        ])
        .unwrap();
        match cli.command {
            Command::EventType { client, command } => {
                assert_eq!(client.server, "http://h:1");
                assert_eq!(client.output, client::OutputFormat::Json);
                assert!(matches!(command, EventTypeCmd::List(_)), "{command:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["event-type", "archive", "order.shipped", "--undo"]).is_ok());
    }

    #[test]
    fn publish_names_exactly_one_target() {
        let base = ["publish", "--type", "t", "--data", "{}"];
        assert!(parse(&[&base[..], &["--endpoint", "ep_1"]].concat()).is_ok());
        assert!(parse(&[&base[..], &["--app", "shop", "--channel", "eu"]].concat()).is_ok());
        let err = parse(&base).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let err = parse(&[&base[..], &["--endpoint", "e", "--app", "a"]].concat()).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}
