//! The `herald` binary's library half: assembling a node from its roles
//! ([`node`]), the command-line configuration layers ([`settings`]), logging
//! ([`logging`]) and the command-line client ([`client`]). `main.rs` only
//! parses arguments and calls into here, so tests can start a node in-process.
#![forbid(unsafe_code)]

pub mod client;
pub mod logging;
pub mod node;
pub mod settings;
