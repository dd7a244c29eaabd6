//! Observability plumbing: the one module that names every metric
//! ([`names`]), the Prometheus recorder, readiness state, the board of the
//! worst endpoints ([`worst`]), every counter and histogram registered at
//! zero from start-up ([`zeroes`]), and the small HTTP server that serves
//! `/metrics`, `/healthz` and `/readyz`.
#![forbid(unsafe_code)]

pub mod health;
pub mod names;
pub mod server;
pub mod worst;
pub mod zeroes;

pub use health::Health;
pub use server::{install_recorder, serve_http, upkeep, MetricsHandle};
pub use worst::Worst;
