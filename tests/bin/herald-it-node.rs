//! The `herald` command line, built inside the test crate so integration
//! tests can start dispatchers, ingest nodes and the mock broker as real
//! processes (`env!("CARGO_BIN_EXE_herald-it-node")`) and kill them.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    herald::cli::main()
}
