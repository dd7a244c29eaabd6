//! Builds the one shared hyper client: pooled keep-alive connections, plain HTTP and
//! HTTPS (rustls, Mozilla roots, explicit ring provider), HTTP/2 by ALPN when enabled,
//! over the [`EgressConnector`] (egress policy, optional CONNECT proxy).
//!
//! Owns connector settings only; it does not send anything.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::DeliveryConfig;
use crate::connector::EgressConnector;
use crate::error::DeliveryError;

/// The client type every attempt shares.
pub(crate) type HttpClient = Client<HttpsConnector<EgressConnector>, Full<Bytes>>;

/// How long an idle pooled connection is kept before it is closed.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Builds the client for `cfg`. Needs no runtime; the client spawns on first use. Fails
/// on TLS setup or an unusable proxy URL.
pub(crate) fn build(cfg: &DeliveryConfig) -> Result<HttpClient, DeliveryError> {
    let http = EgressConnector::new(cfg)?;

    // An explicit provider: no dependence on a process-wide rustls default, which another
    // crate in the binary could install differently (or twice, which panics).
    let tls = HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(DeliveryError::Tls)?
        .https_or_http();
    let https = if cfg.http2 {
        tls.enable_all_versions().wrap_connector(http)
    } else {
        tls.enable_http1().wrap_connector(http)
    };

    Ok(Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(cfg.pool_idle_per_host)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https))
}
