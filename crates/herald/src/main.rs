//! `herald`: see [`herald::cli`] for the commands.
#![forbid(unsafe_code)]

/// mimalloc instead of the system allocator: the hot path allocates per
/// request (headers, bodies, futures) on every worker thread, and glibc's
/// arenas spent a fifth of the CPU of a steady run in malloc/free and their
/// lock (see docs/benchmarks.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    herald::cli::main()
}
