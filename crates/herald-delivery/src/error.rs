//! Errors from building a [`crate::Deliverer`] (configuration and TLS setup).
//!
//! Failures of a single attempt are not errors here: they are data, see
//! [`crate::AttemptError`].

/// Why a [`crate::Deliverer`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// `user_agent` contains bytes a header value cannot hold.
    #[error("delivery user_agent {value:?} is not a valid HTTP header value; use visible ASCII")]
    InvalidUserAgent {
        /// The rejected value.
        value: String,
    },
    /// A timeout is zero, which would fail every attempt.
    #[error("delivery {field} must be greater than zero")]
    ZeroTimeout {
        /// Which setting (`connect_timeout` or `request_timeout`).
        field: &'static str,
    },
    /// `proxy` is not an `http://host:port` URL.
    #[error("delivery proxy {value} cannot be used: {reason}")]
    InvalidProxy {
        /// The proxy URL, password hidden.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the TLS configuration.
    #[error("cannot set up TLS for deliveries: {0}")]
    Tls(#[source] rustls::Error),
}
