//! `herald`: see [`herald::cli`] for the commands.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    herald::cli::main()
}
