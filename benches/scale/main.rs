//! `scale`: the measurements behind docs/scaling.md, on one machine, each
//! printing its figures (no criterion: these are whole processes and
//! clusters, timed once per run, medians over `--runs`).
//!
//! ```sh
//! cargo build --release -p herald
//! cargo bench -p herald-benches --bench scale -- registry --endpoints 1000000 --tansu PATH
//! cargo bench -p herald-benches --bench scale -- registry-decode --endpoints 1000000
//! cargo bench -p herald-benches --bench scale -- partitions --partitions 10000
//! cargo bench -p herald-benches --bench scale -- consumers --partitions 10000 --assignor range
//! ```
//!
//! - [`registry`]: a new node loading a registry of N endpoints: time, peak
//!   and settled RSS, bytes per endpoint.
//! - [`decode`]: Herald's own per-record work of that load, in process.
//! - [`partitions`]: `herald dispatch` processes sharing P partitions: time
//!   to assignment, memory and idle CPU per dispatcher, `/metrics` size.
//! - [`consumers`]: plain librdkafka consumers, `range` against
//!   `cooperative-sticky`, for the group protocol alone.
//! - [`procs`]: child processes, `/proc`, `/metrics` (not measured).

mod consumers;
mod decode;
mod partitions;
mod procs;
mod registry;

use clap::Parser as _;

// As in the `herald` binary, so in-process figures use the same allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(clap::Parser, Debug)]
#[command(name = "scale", about = "Scaling measurements (docs/scaling.md)")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(clap::Subcommand, Debug)]
enum Mode {
    /// A new node loading an endpoint registry of N endpoints.
    Registry(registry::Args),
    /// Decoding, unsealing and inserting N registry records, in process.
    RegistryDecode(decode::Args),
    /// `herald dispatch` processes sharing an events topic of P partitions.
    Partitions(partitions::Args),
    /// Plain librdkafka consumers in one group (range or cooperative-sticky).
    Consumers(consumers::Args),
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench` to every bench target.
    let args = std::env::args().filter(|a| a != "--bench");
    match Cli::parse_from(args).mode {
        Mode::Registry(a) => registry::run(a),
        Mode::RegistryDecode(a) => decode::run(a),
        Mode::Partitions(a) => partitions::run(a),
        Mode::Consumers(a) => consumers::run(a),
    }
}
