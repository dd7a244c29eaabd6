//! One webhook delivery attempt: a signed HTTP POST and what came back.
//!
//! This crate owns the HTTP client (one shared pool of keep-alive connections over hyper's
//! connection API, with rustls), the
//! request layout (Standard Webhooks headers plus endpoint headers), the time bounds of an
//! attempt and the capped reading of the answer. It does not decide whether or when to
//! retry, does not follow redirects and knows nothing about Kafka: the dispatcher reads an
//! [`AttemptResult`] and decides.
//!
//! # Layout
//!
//! - [`config`]: [`DeliveryConfig`], timeouts, body cap, pool, protocol, egress settings.
//! - [`egress`]: [`EgressPolicy`], [`Cidr`], [`Refusal`]: which addresses may be reached
//!   (pure classification; the file lives in `herald-core/src/egress.rs`).
//! - [`guard`]: resolving targets through the policy, and [`check_url`] for validating
//!   endpoint URLs when they are registered.
//! - `connector`: the TCP layer that enforces the policy, directly or through an HTTP
//!   CONNECT egress proxy.
//! - `client`: builds the HTTPS connector over it (explicit ring provider).
//! - `pool`: the keep-alive connections and sending one request over them; HTTP/1
//!   connections are driven by the attempt's own task (`drive`), idle ones kept per
//!   origin (`idle`).
//! - [`request`]: [`DeliveryRequest`] and how it becomes an HTTP request.
//! - [`deliverer`]: [`Deliverer::deliver`], the attempt itself (bounded, capped read).
//! - [`outcome`]: [`AttemptResult`] and [`AttemptError`], with errors classified by type.
//! - [`retry_after`]: [`RetryAfter`], the parsed `Retry-After` header.
//! - [`error`]: [`DeliveryError`], for building a [`Deliverer`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
pub mod config;
mod connector;
pub mod deliverer;
mod drive;
pub use herald_core::egress;
pub mod error;
pub mod guard;
mod idle;
pub mod outcome;
mod pool;
pub mod request;
pub mod retry_after;

pub use config::DeliveryConfig;
pub use deliverer::Deliverer;
pub use egress::{Cidr, CidrError, EgressPolicy, Refusal};
pub use error::DeliveryError;
pub use guard::{check_url, TargetRefused, UrlCheckError};
pub use outcome::{AttemptError, AttemptResult};
pub use request::DeliveryRequest;
pub use retry_after::RetryAfter;
