//! The `herald` binary's library half: assembling a node from its roles
//! ([`node`]), the command-line configuration layers ([`settings`]), logging
//! ([`logging`]), the command line ([`cli`]) and its client commands
//! ([`client`]), and the local key-material commands ([`keys`]). `main.rs` only calls [`cli::main`], so tests can start a
//! node in-process or as a process of their own binary.
#![forbid(unsafe_code)]

pub mod cli;
pub mod client;
pub mod keys;
pub mod logging;
pub mod node;
pub mod settings;
